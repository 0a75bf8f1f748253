"""Convolutional autoencoder (Hübotter et al. 2021's shape) on lava-fixed, hw_sim and lava-float: speed and
agreement with the float model (issue [F] section 3).

    .venv/bin/python benchmarks/conv_targets.py [--model conv.onnx] [--steps 100] [--lava-samples 2]
                                                [--samples 20] [--lava-float] [--threads 0]
                                                [--range calibrated] [--weight-bits 8]
                                                [--weight-blocks 1|2] [--max-fan-in chip|none|N]

Without --model: a seeded random untrained network of the paper's shape: 1x28x28 -> Conv 16 k5 -> Conv 32 k5 ->
Flatten -> FC 12800 -> 100 (latent) -> FC 100 -> 12800 -> ConvT 32 -> 16 k5 -> ConvT 16 -> 1 k5 -> Readout
(leak 0.99, threshold 1, reset to zero; init N(0, sqrt(2 / (k^2 C_in))) for the convolutions and N(0, 2 sqrt(2 /
fan_in)) for the FC layers, as the authors' code; Readout leak 0.99). With --model: a trained steps artifact
(format 2). Inputs: Bernoulli p = p_scale x pixel (0.2 or the model's) of the first MNIST test images (bundled
subset without $SNNC_DATA). Compiled with calibrated ranges (``--range``; the first ``--calibration-samples``
training images, margin 0.5; the random FC 12800 -> 100 layer does not fit the worst-case 16-bit input bound).

Timings: lava-fixed on ``--lava-samples`` images (build and start of the Lava processes included), hw_sim on the
same images (numba compiled beforehand) and on ``--samples`` images; ratio = lava-fixed seconds per image / hw_sim
seconds per image (wall), and the same ratio in CPU seconds (Lava's forked processes counted once reaped:
less sensitive to a busy machine). Agreement: lava-fixed = hw_sim bit for bit (spikes and Readout); per population
of hw_sim, the float model's spikes matched within 0 and +-1 steps; the Readout's reconstruction MSE
(max_t A / (T p_scale) against the image) for float and hw_sim. Last line: JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from bench_common import ROOT  # noqa: F401  (puts the repository on sys.path)

from hw_sim.conv import run_conv_fixed
from hw_sim.emulator import default_threads
from toolchain.conv_compiler import compile_conv_graph
from toolchain.ir import LIF, Conv2d, ConvTranspose2d, Dense, Flatten, Graph, Input, Readout
from toolchain.lif_reference import simulate
from toolchain.spike_metrics import match_spikes
from toolchain.verify_trains import readout_images


def _cpu_with_children() -> float:
    """CPU seconds of this process and its reaped children (Lava's processes are children, reaped at stop())."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def paper_graph(rng: np.random.Generator, steps: int) -> Graph:
    """Random network of Hübotter et al.'s shape (see the module docstring)."""
    conv = lambda co, ci: rng.normal(0, np.sqrt(2 / (25 * ci)), (co, ci, 5, 5))  # noqa: E731
    fc = lambda o, i: rng.normal(0, 2 * np.sqrt(2 / i), (o, i))  # noqa: E731
    nodes = {"input": Input(784),
             "conv0": Conv2d(conv(16, 1), (1, 28, 28)), "lif0": LIF(16 * 576, 0.99),
             "conv1": Conv2d(conv(32, 16), (16, 24, 24)), "lif1": LIF(12800, 0.99),
             "flat": Flatten((32, 20, 20)), "enc": Dense(fc(100, 12800)), "latent": LIF(100, 0.99),
             "dec": Dense(fc(12800, 100)), "lif2": LIF(12800, 0.99),
             "up0": ConvTranspose2d(conv(16, 32).transpose(1, 0, 2, 3), (32, 20, 20)), "lif3": LIF(16 * 576, 0.99),
             "up1": ConvTranspose2d(conv(1, 16).transpose(1, 0, 2, 3), (16, 24, 24)), "out": Readout(784, 0.99)}
    order = list(nodes)
    return Graph(nodes, tuple(zip(order[:-1], order[1:])), "steps",
                 {"p_scale": 0.2, "steps": steps, "encoding": "bernoulli", "family": "conv (random, untrained)"})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--lava-samples", type=int, default=2)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--lava-float", action="store_true", help="also run lava-float on the lava samples")
    ap.add_argument("--threads", type=int, default=0, help="hw_sim threads (0: its default, all usable CPUs)")
    ap.add_argument("--range", dest="range_mode", choices=("worst-case", "calibrated"), default="calibrated")
    ap.add_argument("--calibration-samples", type=int, default=10)
    ap.add_argument("--weight-bits", type=int, default=8, choices=(8, 9))
    ap.add_argument("--weight-blocks", type=int, default=2, choices=(1, 2),
                    help="connection processes per layer (2: a second block of rounding residuals; the default)")
    ap.add_argument("--max-fan-in", default="chip",
                    help="split Dense fan-ins beyond this into relayed groups: 'chip' (4,096, default), 'none', or N")
    a = ap.parse_args()
    from models.datasets import load_dataset
    from targets.lava_conv import LavaConvTarget

    rng = np.random.default_rng(0)
    if a.model:
        from toolchain.artifact_graph import load_graph

        g = load_graph(a.model)
    else:
        g = paper_graph(rng, a.steps)
    p = float(g.metadata.get("p_scale", 0.2))
    n = max(a.samples, a.lava_samples)
    images = np.asarray(load_dataset("mnist", "test", limit=n).images, dtype=np.float64).reshape(n, -1)
    x = (rng.random((n, a.steps, 784)) < p * images[:, None, :]).astype(np.uint8)
    t0 = time.perf_counter()
    kw = {}
    if a.range_mode == "calibrated":   # the first training images, encoded like the test inputs
        train = np.asarray(load_dataset("mnist", "train", limit=a.calibration_samples).images,
                           dtype=np.float64).reshape(a.calibration_samples, -1)
        kw = dict(range_mode="calibrated", calibration_spikes=(rng.random((a.calibration_samples, a.steps, 784))
                                                               < p * train[:, None, :]).astype(np.uint8))
    mfi = {"chip": "chip", "none": None}.get(a.max_fan_in.lower(), None)
    if a.max_fan_in.lower() not in ("chip", "none"):
        mfi = int(a.max_fan_in)
    cc = compile_conv_graph(g, a.steps, weight_bits=a.weight_bits, weight_blocks=a.weight_blocks, max_fan_in=mfi,
                            **kw)
    compile_s = time.perf_counter() - t0
    nl = a.lava_samples
    run_conv_fixed(cc, x[:1, :2], threads=1)                       # numba compilation outside the timing
    t0 = time.perf_counter()
    hw_l, hw_pl, _ = run_conv_fixed(cc, x[:max(nl, 1)], threads=a.threads or None)
    hw_lava_wall = time.perf_counter() - t0
    c0, t0 = time.process_time(), time.perf_counter()
    hw, hw_p, events = run_conv_fixed(cc, x, threads=a.threads or None)
    hw_wall, hw_cpu = time.perf_counter() - t0, time.process_time() - c0
    if nl:
        c0, t0 = _cpu_with_children(), time.perf_counter()
        lf = LavaConvTarget(True, chunk_size=nl).run(cc, x[:nl])
        lava_wall, lava_cpu = time.perf_counter() - t0, _cpu_with_children() - c0
        identical = all(np.array_equal(p_, q) for p_, q in zip(hw_l, lf.trains)) and \
            np.array_equal(hw_pl[-1], lf.potentials[-1])
    else:
        lava_wall, lava_cpu, identical, nl = float("nan"), float("nan"), None, 1
    t0 = time.perf_counter()
    ref = simulate(g, x)
    float_wall = time.perf_counter() - t0
    out = {"net": "random paper shape" if not a.model else a.model, "steps": a.steps, "samples": n,
           "range_mode": a.range_mode, "weight_bits": a.weight_bits, "weight_blocks": a.weight_blocks,
           "blocks_used": [cl.blocks for cl in cc.layers], "fan_in_groups": [cl.fan_in_groups for cl in cc.layers],
           "lava_samples": nl, "threads": a.threads or default_threads(), "compile_s": round(compile_s, 3),
           "lava_mapping": [e["lava"] for e in cc.manifest["layers"]],
           "scales": [[e["scale_min"], e["scale_max"]] for e in cc.manifest["layers"]],
           "lava_fixed_s_per_sample": lava_wall / nl, "lava_fixed_cpu_s_per_sample": lava_cpu / nl,
           "hw_sim_s_per_sample_on_lava_set": hw_lava_wall / max(nl, 1),
           "hw_sim_s_per_sample": hw_wall / n, "hw_sim_cpu_s_per_sample": hw_cpu / n,
           "float_s_per_sample": float_wall / n,
           "ratio_hw_sim_vs_lava_fixed": (lava_wall / nl) / (hw_wall / n),
           "ratio_cpu_hw_sim_vs_lava_fixed": (lava_cpu / nl) / (hw_cpu / n),
           "identical_lava_fixed_hw_sim": identical, "range_events": events}
    layers = {}
    for name, r, h in zip(cc.names, ref.spikes, hw):
        layers[name] = {"float_spikes_per_sample": float(r.sum() / n), "hw_sim_spikes_per_sample": float(h.sum() / n),
                        "matched_0": match_spikes(r, h, 0).fraction if r.sum() or h.sum() else 1.0,
                        "matched_1": match_spikes(r, h, 1).fraction if r.sum() or h.sum() else 1.0}
    out["layers"] = layers
    mse_f = float(np.mean((readout_images(g, ref.potentials[-1]) - images) ** 2))
    mse_h = float(np.mean((readout_images(g, hw_p[-1]) - images) ** 2))
    out.update(mse_readout_float=mse_f, mse_readout_hw_sim=mse_h, mse_readout_rel=(mse_h - mse_f) / mse_f)
    if a.lava_float:
        t0 = time.perf_counter()
        lfl = LavaConvTarget(False, chunk_size=nl).run(cc, x[:nl])
        out["lava_float_s_per_sample"] = (time.perf_counter() - t0) / nl
        out["lava_float_matched_0"] = {nm: (match_spikes(r[:nl], f, 0).fraction if r[:nl].sum() or f.sum() else 1.0)
                                       for nm, r, f in zip(cc.names, ref.spikes, lfl.trains)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
