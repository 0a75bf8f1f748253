"""Throughput of a sweep with 1 vs 2 local workers (one thread each): ``speedup`` = wall(1 worker) / wall(2).

The same grid (``--trials`` temporal-autoencoder trials: hidden 8/16 x noise levels, ``--epochs`` epochs on
``--limit-train`` training images, ``--limit-eval`` validation/test images) runs twice through
``snnc sweep run``, each time into a fresh folder and journal: first with ``--workers 1``, then ``--workers 2``.
The wall times include everything a user waits for (worker start-up, imports, every trial, the journal); the CPU
times are those of the worker processes (``RUSAGE_CHILDREN``). On 2 idle cores the target is >= 1.8x; other
processes on the machine lower it (the output gives the load average before each run).

The last line printed is one JSON object (``speedup``, wall and CPU seconds per worker count, trials per second,
mean trial wall time from the trials' trial.json). A few minutes with the defaults on a quiet 2-core machine. Each
worker process first spends ~2 CPU seconds importing torch/numba/optuna (measured), so short trials understate
the scaling: with 8 trials of ~1 CPU second (``--epochs 2``) that start-up is a third of the work.

    python benchmarks/sweep_scaling.py [--trials 8] [--epochs 10] [--limit-train 1800] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOISES = (0.0, 0.2, 0.4, 0.6, 0.8)


def grid_spec(trials: int, epochs: int, limit_train: int, limit_eval: int, dataset: str) -> str:
    """A grid of ``trials`` configs (hidden 8/16 x the first trials/2 noise levels)."""
    if trials < 2 or trials % 2 or trials // 2 > len(NOISES):
        raise SystemExit(f"--trials must be even, 2..{2 * len(NOISES)}")
    noises = ", ".join(str(n) for n in NOISES[:trials // 2])
    return (f'name = "scaling"\ntrainer = "temporal"\nmetric = "test_mse"\n[args]\ndataset = "{dataset}"\n'
            f'epochs = {epochs}\nlimit-train = {limit_train}\nlimit-eval = {limit_eval}\n'
            f'[grid]\nhidden = [8, 16]\nnoise = [{noises}]\n')


def run(spec: Path, out: Path, workers: int) -> dict:
    """One ``snnc sweep run`` with ``workers`` workers: wall and child CPU seconds, trial times."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "toolchain.cli", "sweep", "run", str(spec), "--workers",
                        str(workers), "--out", str(out)], env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"sweep with {workers} worker(s) failed:\n{r.stdout}\n{r.stderr}")
    recs = [json.loads(p.read_text()) for p in out.glob("trials/*/trial.json")]
    return {"workers": workers, "wall_s": wall,
            "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "trials": len(recs), "trials_per_s": len(recs) / wall,
            "mean_trial_wall_s": sum(r["wall_s"] for r in recs) / max(1, len(recs)),
            "distinct_workers": len({r["worker"] for r in recs}), "load_avg_1min_before": load}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=8, help="trials in the grid (even, 2..10; default 8)")
    ap.add_argument("--epochs", type=int, default=10, help="epochs per trial (default 10: long enough that each "
                                                           "worker's start-up, ~2 CPU seconds, stays small)")
    ap.add_argument("--limit-train", type=int, default=1800, help="training images per trial (default 1800)")
    ap.add_argument("--limit-eval", type=int, default=500, help="validation and test images (default 500)")
    ap.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist"))
    ap.add_argument("--keep", default=None, help="keep the sweep folders here (default: a temporary folder)")
    a = ap.parse_args(argv)
    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="snnc-sweep-scaling-"))
    try:
        spec = root / "scaling.toml"
        root.mkdir(parents=True, exist_ok=True)
        spec.write_text(grid_spec(a.trials, a.epochs, a.limit_train, a.limit_eval, a.dataset))
        results = {}
        for workers in (1, 2):
            out = root / f"workers-{workers}"
            shutil.rmtree(out, ignore_errors=True)
            results[workers] = run(spec, out, workers)
            r = results[workers]
            print(f"{workers} worker(s): {r['trials']} trials in {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, "
                  f"mean trial {r['mean_trial_wall_s']:.1f} s, load before {r['load_avg_1min_before']:.2f}",
                  flush=True)
        speedup = results[1]["wall_s"] / results[2]["wall_s"]
        print(json.dumps({"benchmark": "sweep_scaling", "speedup": round(speedup, 3), "trials": a.trials,
                          "epochs": a.epochs, "limit_train": a.limit_train, "limit_eval": a.limit_eval,
                          "dataset": a.dataset, "data": os.environ.get("SNNC_DATA") or "bundled subset",
                          "cpus": os.cpu_count(), "runs": list(results.values())}))
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
