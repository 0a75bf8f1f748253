"""Images per second of hw_sim versus lava-fixed on the same compiled MNIST autoencoder (spikes must be identical).

    .venv/bin/python benchmarks/hw_sim_speed.py [--model runs/mnist-h32/model.onnx] [--lava-samples 20]
                                                [--samples 10000] [--threads N] [--full-verify]

* lava-fixed runs the first ``--lava-samples`` test images in one chunk (timing includes building and starting the
  Lava processes: what a user waits for); hw_sim runs ``--samples`` images three times, the median counts (its
  one-off numba compilation, seconds, is done first and reported separately as ``hw_sim_compile_s``).
* ``identical``: hw_sim's first-spike columns and spike counts equal lava-fixed's on every neuron of every layer
  for the images both ran.
* ``--full-verify`` also times ``snnc verify MODEL --targets hw_sim --dataset mnist --limit 10000`` end to end in a
  fresh process (imports, exact reference, hw_sim, comparison, report), the figure the < 20 s goal refers to.

The model defaults to runs/mnist-h32/model.onnx when it exists, else a seeded random untrained 784-32-784
(benchmarks/bench_common.py). Datasets come from $SNNC_DATA (or the bundled subset, which has fewer images).
The last line of stdout is a JSON object: hw_sim_images_per_s, lava_fixed_images_per_s, ratio, identical, ...
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_common import ROOT, load_inputs, load_model

from targets.registry import get_target
from toolchain.compiler import DEFAULT_STEPS_PER_UNIT, compile_network

TRAINED = ROOT / "runs" / "mnist-h32" / "model.onnx"


def time_full_verify(model_path: str | None, net, limit: int, steps_per_unit: int) -> dict:
    """Wall time of `snnc verify MODEL --targets hw_sim --dataset mnist --limit N` in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        if model_path is None:  # the random model has no file yet: write it as the ONNX artifact
            from toolchain.artifact import save_onnx

            model_path = str(Path(tmp) / "model.onnx")
            save_onnx(net, model_path)
        cmd = [sys.executable, "-m", "toolchain.cli", "verify", model_path, "--targets", "hw_sim", "--dataset",
               "mnist", "--limit", str(limit), "--steps-per-unit", str(steps_per_unit), "--out",
               str(Path(tmp) / "report")]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    print(proc.stdout.strip(), flush=True)
    if proc.returncode not in (0, 1):  # 1 = a gate failed: still a timing
        print(proc.stderr, file=sys.stderr)
        raise SystemExit(f"snnc verify failed with exit code {proc.returncode}")
    return {"full_verify_s": wall, "full_verify_images": limit, "full_verify_exit_code": proc.returncode,
            "full_verify_command": " ".join(["snnc"] + cmd[3:])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None,
                    help="ONNX artifact (default: runs/mnist-h32/model.onnx if present, else seeded random 784-32-784; "
                         "'random' forces the random model)")
    ap.add_argument("--steps-per-unit", type=int, default=DEFAULT_STEPS_PER_UNIT)
    ap.add_argument("--lava-samples", type=int, default=20, help="images run on lava-fixed (slow)")
    ap.add_argument("--samples", type=int, default=10000, help="images run on hw_sim")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--threads", type=int, default=None, help="hw_sim threads (default: all usable CPUs)")
    ap.add_argument("--full-verify", action="store_true",
                    help="also time `snnc verify --targets hw_sim` on 10,000 images end to end")
    args = ap.parse_args()
    if args.lava_samples < 1 or args.samples < 1:
        ap.error("--lava-samples and --samples must be >= 1")

    if args.model == "random":
        model_path = None
    else:
        model_path = args.model or (str(TRAINED) if TRAINED.is_file() else None)
    net, desc = load_model(model_path)
    cn = compile_network(net, steps_per_unit=args.steps_per_unit)
    _, x = load_inputs(args.dataset, max(args.samples, args.lava_samples))
    n_hw, n_lava = min(args.samples, x.shape[0]), min(args.lava_samples, x.shape[0])
    out = {"model": desc, "dataset": args.dataset, "steps_per_unit": cn.steps_per_unit, "window": cn.window,
           "sizes": cn.source.sizes, "cpus": os.cpu_count()}

    hw = get_target("hw_sim", threads=args.threads)
    t0 = time.perf_counter()
    hw.run(cn, x[:2])  # numba compilation (cached on disk after the first run)
    out["hw_sim_compile_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    lava = get_target("lava-fixed", chunk_size=n_lava).run(cn, x[:n_lava])
    lava_wall = time.perf_counter() - t0

    walls = []
    for _ in range(3):  # the machine is shared: report the median of three runs (and the first)
        t0 = time.perf_counter()
        res = hw.run(cn, x[:n_hw])
        walls.append(time.perf_counter() - t0)
    hw_wall = float(np.median(walls))
    out["hw_sim_runs_s"] = walls

    identical = all(
        np.array_equal(res.columns[l][:n_lava], lava.columns[l])
        and np.array_equal(res.info["spike_counts"][l][:n_lava], lava.info["spike_counts"][l])
        for l in range(len(cn.layers))
    )
    out.update({
        "lava_fixed_images": n_lava, "lava_fixed_s": lava_wall, "lava_fixed_images_per_s": n_lava / lava_wall,
        "hw_sim_images": n_hw, "hw_sim_s": hw_wall, "hw_sim_images_per_s": n_hw / hw_wall,
        "hw_sim_threads": res.info["threads"],
        "spikes_per_image": [float(v) for v in res.info["counters"]["spikes"].mean(0)],
    })
    out["ratio"] = out["hw_sim_images_per_s"] / out["lava_fixed_images_per_s"]
    out["identical"] = bool(identical)
    print(f"lava-fixed {n_lava} images {lava_wall:8.2f} s  {out['lava_fixed_images_per_s']:10.1f} images/s", flush=True)
    print(f"hw_sim     {n_hw} images {hw_wall:8.2f} s  {out['hw_sim_images_per_s']:10.1f} images/s  "
          f"ratio {out['ratio']:.0f}x  identical spikes: {identical}", flush=True)
    if args.full_verify:
        out.update(time_full_verify(model_path, net, 10000, args.steps_per_unit))
        print(f"snnc verify --targets hw_sim, 10000 images: {out['full_verify_s']:.1f} s", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
