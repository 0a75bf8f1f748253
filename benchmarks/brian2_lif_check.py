"""brian2-lif against the float LIF model on a seeded random Roy-shaped autoencoder (untrained: for timing and
agreement; a trained model's activity differs).

    python benchmarks/brian2_lif_check.py --hidden 196 --steps 15 --samples 100 --codegen numpy

Inputs: Bernoulli trains p = rate * pixel of the bundled MNIST test images (or $SNNC_DATA). Prints the verifier's
summary and, last, one JSON line: codegen, shape, spikes per population, matched fraction at 0 steps, verdict,
target wall seconds and the process CPU seconds.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.datasets import load_dataset  # noqa: E402
from targets.brian2_lif import Brian2LifTarget  # noqa: E402
from toolchain.ir import LIF, lif_chain  # noqa: E402
from toolchain.verify_trains import verify_steps  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hidden", type=int, default=196)
    p.add_argument("--steps", type=int, default=15, help="T, steps per sample")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--codegen", default="numpy", choices=("numpy", "cython", "auto"))
    p.add_argument("--rate", type=float, default=0.3, help="spike probability per step of a white pixel")
    p.add_argument("--wmin", type=float, default=-0.1, help="weights ~ U(wmin, wmax) (Roy et al. init)")
    p.add_argument("--wmax", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    g = lif_chain([rng.uniform(a.wmin, a.wmax, (a.hidden, 784)), rng.uniform(a.wmin, a.wmax, (784, a.hidden))],
                  [LIF(a.hidden, 0.9, clamp=True), LIF(784, 0.9, clamp=True)])
    img = load_dataset("mnist", "test", limit=a.samples).images
    x = (rng.uniform(size=(a.samples, a.steps, 784)) < a.rate * img[:, None, :]).astype(np.uint8)
    c0 = time.process_time()
    rep = verify_steps(g, x, img, targets=[Brian2LifTarget(codegen=a.codegen)])
    print(rep.summary())
    t = rep.targets[0]
    out = {"codegen": t.info.get("codegen"), "shape": f"784-{a.hidden}-784", "steps": a.steps, "samples": a.samples,
           "spikes": [s.n_reference for s in t.layers], "matched0": [s.fraction[0] for s in t.layers],
           "passed": rep.passed, "target_wall_s": round(t.wall_s, 2), "cpu_s": round(time.process_time() - c0, 2)}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
