"""The time grid S vs spike-time error vs run time, through the verifier (table for docs/compiler.md).

    .venv/bin/python benchmarks/grid_sweep.py [--model model.onnx] [--samples 20] [--targets lava-fixed]
                                              [--steps 16,32,64,128,255] [--out runs/grid_sweep.md]

For each S: compile, run every target on the first N test images, verify against exact. Per S and target: the
worst layer's median / p99 |dt| in time units and in steps, presence agreement (worst layer), output MSE change vs
exact, gate verdict, and seconds per sample. Prints a markdown table (also written to --out) and a final JSON line.
Lava's run time grows with S (window = S x horizon steps): S = 255 with 20 samples takes about a minute per target.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_common import load_inputs, load_model

from toolchain.atomic import atomic_write_text
from toolchain.compiler import compile_network
from toolchain.errors import SnncError
from toolchain.verifier import verify


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="ONNX artifact (default: seeded random 784-32-784)")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--targets", default="lava-fixed")
    ap.add_argument("--steps", default="16,32,64,128,255")
    ap.add_argument("--out", default=None, help="also write the markdown table here")
    args = ap.parse_args()

    net, desc = load_model(args.model)
    images, x = load_inputs(args.dataset, args.samples)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    rows = []
    for S in [int(s) for s in args.steps.split(",")]:
        try:
            cn = compile_network(net, steps_per_unit=S)
        except SnncError as exc:
            print(f"S={S}: not compilable: {exc}", flush=True)
            rows.append({"S": S, "error": str(exc)})
            continue
        rep = verify(cn, x, images, targets, target_options={"brian2": {"codegen": "numpy"}})
        for t in rep.targets:
            worst_med = max(s.dt_median for s in t.layers)
            worst_p99 = max(s.dt_p99 for s in t.layers)
            row = {
                "S": S, "target": t.target, "window": cn.window,
                "median_dt": worst_med, "p99_dt": worst_p99, "median_dt_steps": worst_med * S,
                "p99_dt_steps": worst_p99 * S, "max_dt": max(s.dt_max for s in t.layers),
                "presence": min(s.presence_agreement for s in t.layers),
                "unexplained": sum(s.unexplained for s in t.layers),
                "mse_rel": t.mse_rel, "passed": t.passed, "s_per_sample": t.wall_s / rep.n_samples,
                "tau_rel_error": cn.manifest.get("tau_rel_error"),
            }
            rows.append(row)
            print(f"S={S:<4} {t.target:<11} median {worst_med:.4g} p99 {worst_p99:.4g} time units, "
                  f"presence {row['presence']:.4f}, {row['s_per_sample']:.3f} s/sample", flush=True)
    lines = [f"Model: {desc}; {x.shape[0]} {args.dataset} test images; worst layer per column.", "",
             "| S | target | window | median \\|dt\\| (units / steps) | p99 \\|dt\\| (units / steps) | max \\|dt\\| | "
             "presence | MSE vs exact | tau error | gates | s/sample |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['S']} | - | - | not compilable: {r['error']} | | | | | | | |")
            continue
        mse = "-" if r["mse_rel"] is None else f"{100 * r['mse_rel']:+.2f} %"
        tau = "-" if r["tau_rel_error"] is None else f"{100 * r['tau_rel_error']:+.2f} %"
        lines.append(f"| {r['S']} | {r['target']} | {r['window']} | {r['median_dt']:.4f} / {r['median_dt_steps']:.2f} | "
                     f"{r['p99_dt']:.4f} / {r['p99_dt_steps']:.2f} | {r['max_dt']:.4f} | {100 * r['presence']:.2f} % | "
                     f"{mse} | {tau} | {'pass' if r['passed'] else 'FAIL'} | {r['s_per_sample']:.3f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        atomic_write_text(Path(args.out), table + "\n")
    print(json.dumps({"model": desc, "n_samples": int(x.shape[0]), "rows": rows}))


if __name__ == "__main__":
    main()
