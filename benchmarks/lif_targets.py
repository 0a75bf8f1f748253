"""Steps graphs (LIF) on lava-float, lava-fixed and hw_sim: agreement with the float model and speed.

    .venv/bin/python benchmarks/lif_targets.py [--hidden 196] [--steps 15] [--lava-samples 20] [--samples 1000]
                                               [--weight-bits 8|9] [--threshold neuron|layer]

A seeded random untrained 784-hidden-784 LIF autoencoder (leak 0.9, threshold 1, clamp as Roy et al. 2019;
weights N(0.01, 0.06) encoder, N(0.02, 0.15) decoder, chosen so that both layers spike) on Bernoulli spike trains
p = 0.3 x pixel of the first test images (MNIST, bundled subset without $SNNC_DATA). Timings include building and
starting the Lava processes. Agreement: per layer, the fraction of the float model's spikes matched within 0 and
+-1 steps (greedy per neuron), and whether lava-fixed equals hw_sim bit for bit. Last line: JSON.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from bench_common import ROOT  # noqa: F401  (puts the repository on sys.path)

from hw_sim.lif import run_lif_fixed
from targets.lava_lif import LavaLifFixedTarget, LavaLifFloatTarget
from toolchain.ir import LIF, lif_chain
from toolchain.lif_reference import simulate
from toolchain.spike_metrics import match_spikes
from toolchain.steps_compiler import compile_graph


def matched(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Fraction of the spikes of ``a`` matched in ``b`` within +-k steps (the verifier's optimal matching)."""
    return match_spikes(a, b, k).recall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=196)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--lava-samples", type=int, default=20)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--weight-bits", type=int, default=8)
    ap.add_argument("--threshold", choices=("neuron", "layer"), default="neuron")
    a = ap.parse_args()
    from models.datasets import load_dataset

    rng = np.random.default_rng(0)
    g = lif_chain([rng.normal(0.01, 0.06, (a.hidden, 784)), rng.normal(0.02, 0.15, (784, a.hidden))],
                  [LIF(a.hidden, 0.9, clamp=True), LIF(784, 0.9, clamp=True)])
    images = np.asarray(load_dataset("mnist", "test", limit=a.samples).images, dtype=np.float64)
    x = (rng.random((images.shape[0], a.steps, 784)) < 0.3 * images[:, None, :]).astype(np.uint8)
    t0 = time.perf_counter()
    cs = compile_graph(g, a.steps, weight_bits=a.weight_bits, threshold=a.threshold)
    compile_s = time.perf_counter() - t0
    ref = simulate(g, x).spikes
    run_lif_fixed(cs, x[:1])                      # numba compilation (cached on disk) outside the timing
    c0, t0 = time.process_time(), time.perf_counter()
    hw = run_lif_fixed(cs, x)
    hw_wall, hw_cpu = time.perf_counter() - t0, time.process_time() - c0
    nl = a.lava_samples
    out = {"net": f"784-{a.hidden}-784", "steps": a.steps, "weight_bits": a.weight_bits, "threshold": a.threshold,
           "compile_s": compile_s, "scale_range": [[int(cl.scale.min()), int(cl.scale.max())] for cl in cs.layers],
           "weight_exp": [cl.weight_exp for cl in cs.layers],
           "float_spikes_per_sample": [float(r[:nl].sum() / nl) for r in ref],
           "hw_sim_images_per_s": x.shape[0] / hw_wall, "hw_sim_cpu_s": hw_cpu, "hw_sim_samples": x.shape[0],
           "hw_sim_match0": [matched(r, h, 0) for r, h in zip(ref, hw)],
           "hw_sim_match1": [matched(r, h, 1) for r, h in zip(ref, hw)]}
    for tgt in (LavaLifFloatTarget(), LavaLifFixedTarget()):
        c0 = time.process_time()
        res = tgt.run(cs, x[:nl])
        sp, wall = res.trains, res.wall_s
        out[f"{tgt.name}_images_per_s"] = nl / wall
        out[f"{tgt.name}_parent_cpu_s"] = time.process_time() - c0
        out[f"{tgt.name}_match0"] = [matched(r[:nl], s, 0) for r, s in zip(ref, sp)]
        out[f"{tgt.name}_match1"] = [matched(r[:nl], s, 1) for r, s in zip(ref, sp)]
        if tgt.name == "lava-fixed-lif":
            out["identical"] = all(np.array_equal(h[:nl], s) for h, s in zip(hw, sp))
            out["ratio"] = out["hw_sim_images_per_s"] / out["lava-fixed-lif_images_per_s"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
