"""Seconds per sample of lava-float, lava-fixed and brian2 at the default grid S (784-h-784 autoencoder).

    .venv/bin/python benchmarks/deploy_speed.py [--model model.onnx] [--samples 60] [--brian2-codegen auto]

Each target runs the same compiled network on the first N test images (one chunk, timing includes building and
starting the backend: what a user waits for). Brian2 is run once on 2 samples first so that the timed run uses
the cached Cython extension (the first build, ~1 min, is reported separately as brian2_first_run_s).
The last line of stdout is a JSON object with the figures. Runs in < 3 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import time

from bench_common import load_inputs, load_model

from targets.registry import get_target
from toolchain.compiler import DEFAULT_STEPS_PER_UNIT, compile_network


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="ONNX artifact (default: seeded random 784-32-784)")
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--targets", default="lava-float,lava-fixed,brian2")
    ap.add_argument("--brian2-codegen", default="auto", choices=("auto", "cython", "numpy"))
    args = ap.parse_args()

    net, desc = load_model(args.model)
    cn = compile_network(net, steps_per_unit=DEFAULT_STEPS_PER_UNIT)
    _, x = load_inputs(args.dataset, args.samples)
    out = {"model": desc, "steps_per_unit": cn.steps_per_unit, "window": cn.window, "n_samples": int(x.shape[0]),
           "s_per_sample": {}, "wall_s": {}}
    for name in [t.strip() for t in args.targets.split(",") if t.strip()]:
        opts = {"codegen": args.brian2_codegen} if name == "brian2" else {}
        target = get_target(name, **opts)
        if name == "brian2":
            t0 = time.perf_counter()
            target.run(cn, x[:2])
            out["brian2_first_run_s"] = time.perf_counter() - t0
            out["brian2_codegen"] = target.codegen
            out["brian2_dt"] = target.dt
        t0 = time.perf_counter()
        target.run(cn, x)
        wall = time.perf_counter() - t0
        out["wall_s"][name] = wall
        out["s_per_sample"][name] = wall / x.shape[0]
        print(f"{name:<11} {x.shape[0]} samples {wall:7.2f} s  {wall / x.shape[0]:.4f} s/sample", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
