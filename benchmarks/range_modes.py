"""Worst-case vs calibrated ranges: reconstruction MSE of hw_sim vs exact, quantization error, saturation counts.

    .venv/bin/python benchmarks/range_modes.py --model runs/h128/model.onnx [--samples 1000] [--calibration 200]
                                               [--margins 0.5] [--dataset mnist] [--vth 1800,1024]

For each mode (worst-case; calibrated at each margin): compile (S = 40), run hw_sim on the first N test images,
compare with the exact model. Per mode: smallest/median threshold, the largest per-layer weight quantization
error / theta, output MSE and its change vs exact, u wraps and v saturations counted by hw_sim (per image, in
neurons that can still spike). ``--vth`` adds worst-case compiles with one given threshold for every neuron (to
sweep the quantization error). A mode the compiler rejects prints the error. Ends with a JSON line.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
from bench_common import load_inputs, load_model

from hw_sim.emulator import simulate
from models.encoding import reconstruction_mse
from models.exact import exact_forward
from targets.hw_sim import columns_to_times
from toolchain.calibration import training_input_times
from toolchain.compiler import compile_network
from toolchain.errors import SnncError


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="ONNX artifact")
    ap.add_argument("--samples", type=int, default=1000, help="test images")
    ap.add_argument("--calibration", type=int, default=200, help="training images for the calibrated mode")
    ap.add_argument("--margins", default="0.5", help="comma-separated range margins of the calibrated mode")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--vth", default="", help="comma-separated thresholds: extra modes with one vth for all neurons")
    args = ap.parse_args()

    net, desc = load_model(args.model)
    images, x = load_inputs(args.dataset, args.samples)
    mse_exact = reconstruction_mse(exact_forward(net, x)[-1], images, net.latency)
    calib, source = training_input_times(net, args.dataset, args.calibration)
    print(f"{desc}: {'-'.join(map(str, net.sizes))}, {x.shape[0]} test images, exact MSE {mse_exact:.5f}")
    modes = [("worst-case", {})] + [(f"calibrated m={m}", {"range_mode": "calibrated", "calibration_times": calib,
                                                           "range_margin": float(m), "calibration_source": source})
                                    for m in args.margins.split(",")]
    modes += [(f"vth={v}", {"vth": int(v)}) for v in args.vth.split(",") if v.strip()]
    rows = []
    for name, kw in modes:
        try:
            cn = compile_network(net, **kw)
        except SnncError as exc:
            print(f"{name:<16} not compilable: {exc}")
            rows.append({"mode": name, "error": str(exc)})
            continue
        sim = simulate(cn, cn.input_columns(x))
        mse = reconstruction_mse(columns_to_times(cn, sim.columns[-1], len(cn.layers) - 1), images, net.latency)
        qerr = [lm["weight_quant_max_abs_err_over_theta"] for lm in cn.manifest["layers"]]
        row = {"mode": name, "vth_min": [int(l.vth.min()) for l in cn.layers],
               "vth_median": [float(np.median(l.vth)) for l in cn.layers], "quant_err_over_theta": qerr,
               "mse": mse, "mse_rel_vs_exact": mse / mse_exact - 1.0,
               "u_wraps_per_image": float(sim.u_wraps.sum() / x.shape[0]),
               "v_saturations_per_image": float(sim.v_saturations.sum() / x.shape[0]),
               "images_with_saturation": int(((sim.u_wraps + sim.v_saturations).sum(1) > 0).sum()),
               "warnings": len(cn.manifest["warnings"])}
        rows.append(row)
        print(f"{name:<16} vth min {row['vth_min']} median {row['vth_median']} quant err/theta "
              f"{[round(q, 4) for q in qerr]} MSE {mse:.5f} ({100 * row['mse_rel_vs_exact']:+.2f} % vs exact), "
              f"u wraps {row['u_wraps_per_image']:.3g}/image, v saturations {row['v_saturations_per_image']:.3g}/"
              f"image, {row['images_with_saturation']} images with any", flush=True)
    print(json.dumps({"model": desc, "mse_exact": mse_exact, "samples": int(x.shape[0]), "rows": rows}))


if __name__ == "__main__":
    main()
