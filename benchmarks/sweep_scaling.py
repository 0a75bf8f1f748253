"""Throughput of a sweep with 1 vs 2 local workers (one thread each): ``speedup`` = wall(1 worker) / wall(2), and
where the 2-worker run loses time.

The same grid (``--trials`` temporal-autoencoder trials: hidden 8/16 x noise levels, ``--epochs`` epochs on
``--limit-train`` training images, ``--limit-eval`` validation/test images) runs twice through
``snnc sweep run``, each time into a fresh folder and journal: first with ``--workers 1``, then ``--workers 2``
(``--order``: the sweep's trial order, ``longest-first`` by default or the sampler's shuffled order). The wall
times include everything a user waits for (the parent's start-up, worker start-up, every trial, the journal); CPU
times are those of the child processes (``RUSAGE_CHILDREN``).

Each run is broken down per worker from the trials' trial.json (start and end times of every trial, the worker
process's start): ``parent_s`` (from ``snnc sweep run`` to the worker process), ``startup_s`` (the worker's
imports until its first trial starts), ``busy_s`` (its trials), ``gaps_s`` (between its trials: the storage,
picking the next trial), ``tail_s`` (idle after its last trial until the sweep ended: uneven trials, the idle
worker's poll). ``slowdown`` is the mean trial time with 2 workers over that with 1 (the same trials): what
running two trials at once costs each of them (shared caches, memory bandwidth, the host's scheduling of the 2
virtual CPUs). ``bound`` is the speedup those measured parts allow: wall(1) / (parent + startup + busy(1) x
slowdown / 2), i.e. with perfectly even trials and no gaps.

``--probe`` adds a contention probe that separates the machine from the code: one trial (``snnc train temporal``
with the grid's first config) alone and two copies at once, and a pure-Python integer loop (no memory traffic)
alone and two copies at once. If the loop slows down as much as the trial when paired, the 2 virtual CPUs do not
give 2 cores' worth of throughput (host SMT siblings, frequency, neighbours) and no code change recovers it.

Before the timed runs one small untimed trial fills numba's on-disk cache of the training kernels (a fresh
checkout compiles them once, ~10 s, which would land in the first timed run only). ``--repeat N`` runs the pair
(1 worker, 2 workers) N times and reports the fastest run of each (a busy machine adds noise only upwards); every
run's wall time is kept. Per run also the child processes' system time and minor page faults (``RUSAGE_CHILDREN``).
``slowdown_steady`` compares the same configs' trial times with 1 and with 2 workers, leaving out each worker's
first trial (it also pays imports torch does at the first optimiser, ~1 CPU s); ``throughput_speedup`` is the
ratio of trials per second between the first trial's start and the last trial's end, i.e. without the start-up
and the end of the sweep (the steady rate a long sweep approaches); ``speedup`` stays the wall-time ratio of
the whole command, what a user waits for.

The last line printed is one JSON object (``speedup``, ``bound``, ``slowdown``, the per-run breakdown, and the
probe). Quiet machine: a few minutes with the defaults. Short trials understate the scaling (each worker's start-up,
~2 CPU s, is a fixed cost).

    python benchmarks/sweep_scaling.py [--trials 8] [--epochs 10] [--limit-train 1800] [--order longest-first]
                                       [--repeat 1] [--probe] [--keep DIR]
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
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
ALU_LOOP = "s = 0\nfor i in range({n}):\n    s += i * i % 7\n"


def grid_spec(trials: int, epochs: int, limit_train: int, limit_eval: int, dataset: str,
              order: str = "longest-first") -> str:
    """A grid of ``trials`` configs (hidden 8/16 x the first trials/2 noise levels)."""
    if trials < 2 or trials % 2 or trials // 2 > len(NOISES):
        raise SystemExit(f"--trials must be even, 2..{2 * len(NOISES)}")
    noises = ", ".join(str(n) for n in NOISES[:trials // 2])
    return (f'name = "scaling"\ntrainer = "temporal"\nmetric = "test_mse"\norder = "{order}"\n[args]\n'
            f'dataset = "{dataset}"\nepochs = {epochs}\nlimit-train = {limit_train}\nlimit-eval = {limit_eval}\n'
            f'[grid]\nhidden = [8, 16]\nnoise = [{noises}]\n')


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    env.update({k: "1" for k in THREAD_VARS})
    return env


def breakdown(recs: list[dict], t0: float, t1: float) -> dict:
    """Per worker: parent_s, startup_s, busy_s, gaps_s, tail_s (seconds; they add up to the run's wall time)."""
    out = {}
    for w in sorted({r["worker"] for r in recs}):
        mine = sorted((r for r in recs if r["worker"] == w), key=lambda r: r["started_unix"])
        born = mine[0].get("worker_started_unix") or t0
        gaps = sum(b["started_unix"] - a["finished_unix"] for a, b in zip(mine, mine[1:]))
        out[w] = {"trials": len(mine), "parent_s": round(born - t0, 2),
                  "startup_s": round(mine[0]["started_unix"] - born, 2),
                  "busy_s": round(sum(r["finished_unix"] - r["started_unix"] for r in mine), 2),
                  "gaps_s": round(gaps, 2), "tail_s": round(t1 - mine[-1]["finished_unix"], 2)}
    return out


def _first_trials(recs: list[dict]) -> set[str]:
    """Config hashes of each worker's first trial."""
    first = {}
    for r in recs:
        if r["worker"] not in first or r["started_unix"] < first[r["worker"]]["started_unix"]:
            first[r["worker"]] = r
    return {r["hash"] for r in first.values()}


def warm_cache(dataset: str) -> None:
    """One small untimed trial: numba compiles the training kernels into its on-disk cache if they are not there."""
    with tempfile.TemporaryDirectory(prefix="snnc-sweep-warm-") as d:
        r = subprocess.run([sys.executable, "-m", "toolchain.cli", "train", "temporal", "--epochs", "1",
                            "--limit-train", "40", "--limit-eval", "20", "--dataset", dataset, "--hidden", "8",
                            "--threads", "1", "--no-progress", "--out", d, "--force"], env=_env(), cwd=ROOT,
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"warm-up trial failed:\n{r.stdout}\n{r.stderr}")


def steady_slowdown(r1: dict, r2: dict) -> float | None:
    """Mean over configs of trial time with 2 workers / with 1, each worker's first trial left out."""
    skip = set(r1["first_trials"]) | set(r2["first_trials"])
    ratios = [r2["trial_wall_s"][h] / t for h, t in r1["trial_wall_s"].items()
              if h not in skip and h in r2["trial_wall_s"] and t > 0]
    return sum(ratios) / len(ratios) if ratios else None


def run(spec: Path, out: Path, workers: int) -> dict:
    """One ``snnc sweep run`` with ``workers`` workers: wall and child CPU seconds, trial times, breakdown."""
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0u, t0 = time.time(), time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "toolchain.cli", "sweep", "run", str(spec), "--workers",
                        str(workers), "--out", str(out)], env=_env(), cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    t1u = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"sweep with {workers} worker(s) failed:\n{r.stdout}\n{r.stderr}")
    recs = [json.loads(p.read_text()) for p in out.glob("trials/*/trial.json")]
    order = [f"h{r['config']['args']['hidden']}/n{r['config']['args']['noise']}"
             for r in sorted(recs, key=lambda r: r["trial"])]
    return {"workers": workers, "wall_s": round(wall, 2),
            "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2),
            "sys_s": round(after.ru_stime - before.ru_stime, 2), "minor_faults": after.ru_minflt - before.ru_minflt,
            "trial_span_s": round(max(r["finished_unix"] for r in recs) - min(r["started_unix"] for r in recs), 2),
            "trial_wall_s": {r["hash"]: round(r["wall_s"], 3) for r in recs},
            "first_trials": sorted(_first_trials(recs)),
            "trials": len(recs), "trials_per_s": len(recs) / wall,
            "mean_trial_wall_s": round(sum(r["wall_s"] for r in recs) / max(1, len(recs)), 3),
            "mean_trial_cpu_s": round(sum(r["cpu_s"] for r in recs) / max(1, len(recs)), 3),
            "trial_order": order, "per_worker": breakdown(recs, t0u, t1u), "load_avg_1min_before": load}


def _timed_pair(cmds: list[list[str]], cwd: Path) -> list[float]:
    """Start every command at once; their wall times (s)."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, env=_env(), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for c in cmds]
    walls = []
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"probe command failed: {err.decode(errors='replace')[-2000:]}")
        walls.append(time.perf_counter() - t0)
    return walls


def probe(root: Path, trial_argv: list[str], alu_n: int) -> dict:
    """One trial and one integer loop, alone and two at once (wall seconds; ``slowdown`` = paired / alone)."""
    res = {}
    loop = [sys.executable, "-c", ALU_LOOP.format(n=alu_n)]
    runs = {"trial": lambda i: [sys.executable, "-m", "toolchain.cli", *trial_argv, "--out",
                                str(root / f"probe-{i}")], "alu_loop": lambda i: loop}
    for name, cmd in runs.items():
        _timed_pair([cmd(9)], ROOT)  # warm: numba's cache, the page cache
        alone = _timed_pair([cmd(0)], ROOT)[0]
        paired = _timed_pair([cmd(1), cmd(2)], ROOT)
        res[name] = {"alone_s": round(alone, 2), "paired_s": [round(x, 2) for x in paired],
                     "slowdown": round(sum(paired) / len(paired) / alone, 3)}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=8, help="trials in the grid (even, 2..10; default 8)")
    ap.add_argument("--epochs", type=int, default=10, help="epochs per trial (default 10: long enough that each "
                                                           "worker's start-up, ~2 CPU seconds, stays small)")
    ap.add_argument("--limit-train", type=int, default=1800, help="training images per trial (default 1800)")
    ap.add_argument("--limit-eval", type=int, default=500, help="validation and test images (default 500)")
    ap.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist"))
    ap.add_argument("--order", default="longest-first", choices=("longest-first", "sampler"),
                    help="the sweep's trial order (spec key order; default longest-first)")
    ap.add_argument("--repeat", type=int, default=1, help="run 1 and 2 workers this many times each, alternating; "
                                                          "the fastest run of each counts (default 1)")
    ap.add_argument("--probe", action="store_true", help="also time one trial and an integer loop alone and paired")
    ap.add_argument("--alu-n", type=int, default=30_000_000, help="iterations of the probe's integer loop")
    ap.add_argument("--keep", default=None, help="keep the sweep folders here (default: a temporary folder)")
    a = ap.parse_args(argv)
    if a.repeat < 1:
        ap.error("--repeat must be >= 1")
    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="snnc-sweep-scaling-"))
    try:
        spec = root / "scaling.toml"
        root.mkdir(parents=True, exist_ok=True)
        spec.write_text(grid_spec(a.trials, a.epochs, a.limit_train, a.limit_eval, a.dataset, a.order))
        warm_cache(a.dataset)
        all_runs: dict[int, list[dict]] = {1: [], 2: []}
        for rep in range(a.repeat):
            for workers in (1, 2):
                out = root / f"workers-{workers}-{rep}"
                shutil.rmtree(out, ignore_errors=True)
                all_runs[workers].append(r := run(spec, out, workers))
                print(f"{workers} worker(s): {r['trials']} trials in {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU "
                      f"({r['sys_s']:.2f} s system, {r['minor_faults']} minor faults), mean trial "
                      f"{r['mean_trial_wall_s']:.2f} s, load before {r['load_avg_1min_before']:.2f}; order "
                      f"{' '.join(r['trial_order'])}", flush=True)
                for w, b in r["per_worker"].items():
                    print(f"  {w}: {b}", flush=True)
                if not a.keep:
                    shutil.rmtree(out, ignore_errors=True)
        results = {w: min(runs, key=lambda r: r["wall_s"]) for w, runs in all_runs.items()}
        speedup = results[1]["wall_s"] / results[2]["wall_s"]
        throughput = (results[2]["trials"] / results[2]["trial_span_s"]) / (results[1]["trials"] /
                                                                           results[1]["trial_span_s"])
        slowdown = results[2]["mean_trial_wall_s"] / results[1]["mean_trial_wall_s"]
        steady = steady_slowdown(results[1], results[2])
        w1 = next(iter(results[1]["per_worker"].values()))
        bound = results[1]["wall_s"] / (w1["parent_s"] + w1["startup_s"] + w1["busy_s"] * slowdown / 2)
        report = {"benchmark": "sweep_scaling", "speedup": round(speedup, 3),
                  "throughput_speedup": round(throughput, 3), "bound": round(bound, 3),
                  "slowdown": round(slowdown, 3), "slowdown_steady": None if steady is None else round(steady, 3),
                  "walls_s": {w: [r["wall_s"] for r in runs] for w, runs in all_runs.items()},
                  "repeat": a.repeat, "order": a.order, "trials": a.trials, "epochs": a.epochs,
                  "limit_train": a.limit_train, "limit_eval": a.limit_eval, "dataset": a.dataset,
                  "data": os.environ.get("SNNC_DATA") or "bundled subset", "cpus": os.cpu_count(),
                  "load_avg": os.getloadavg(), "runs": list(results.values())}
        if a.probe:
            first = (f'--epochs {a.epochs} --limit-train {a.limit_train} --limit-eval {a.limit_eval} '
                     f'--dataset {a.dataset} --hidden 16 --noise 0.0 --threads 1 --no-progress').split()
            report["probe"] = probe(root, ["train", "temporal", *first], a.alu_n)
            print(f"probe: {report['probe']}", flush=True)
        print(json.dumps(report))
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
