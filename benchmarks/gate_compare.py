"""Former (steps, |MSE|) vs current (time units, signed MSE) verifier gates per grid S (docs/verifier.md, sec. 3).

    .venv/bin/python benchmarks/gate_compare.py --model runs/m/model.onnx [--samples 200] [--target hw_sim]
                                                [--steps 16,24,32,40,48,64,96,128] [--compensate 40,128]

For each S (and with --compensate-tau for the S in --compensate): compile, verify one target on the first N test
images, and print per layer p99 |dt| (time units / steps), the MSE change vs exact, the lowest fraction of spikes
within the analytic bound, the verdict of the former gates (median <= 1 step, p99 <= 3 steps, presence >= 0.999,
|MSE / MSE_exact - 1| <= 0.02), the failed current gates and the suggested remedies.
"""
from __future__ import annotations

import argparse

from bench_common import load_inputs

from toolchain.compiler import compile_file
from toolchain.verifier import verify


def former_verdict(t) -> list[str]:
    """Gates as they were before issue D: per-layer step limits and an unsigned MSE limit."""
    out = []
    for s in t.layers:
        if s.dt_median_steps > 1:
            out.append(f"median L{s.layer}")
        if s.dt_p99_steps > 3:
            out.append(f"p99 L{s.layer}")
        if s.presence_agreement < 0.999:
            out.append(f"presence L{s.layer}")
    if t.mse_rel is not None and abs(t.mse_rel) > 0.02:
        out.append("MSE")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="ONNX artifact (snnc train)")
    ap.add_argument("--samples", type=int, default=200, help="test images (default 200)")
    ap.add_argument("--dataset", default="mnist", help="mnist or fashion-mnist (default mnist)")
    ap.add_argument("--target", default="hw_sim", help="one target (default hw_sim, bit-identical to lava-fixed)")
    ap.add_argument("--steps", default="16,24,32,40,48,64,96,128", help="grids S to compile")
    ap.add_argument("--compensate", default="", help="grids S also compiled with --compensate-tau")
    args = ap.parse_args()
    images, x = load_inputs(args.dataset, args.samples)
    comp = {int(v) for v in args.compensate.split(",") if v.strip()}
    for S in (int(v) for v in args.steps.split(",")):
        for compensate in (False, True) if S in comp else (False,):
            cn = compile_file(args.model, steps_per_unit=S, compensate_tau=compensate)
            t = verify(cn, x, images, [args.target]).targets[0]
            now = sorted({g.name + (f" L{g.layer}" if g.layer is not None else "") for g in t.gates if not g.passed})
            p99 = " ".join(f"{s.dt_p99:.4f}/{s.dt_p99_steps:.2f}" for s in t.layers)
            print(f"S={S}{' compensated' if compensate else ''}: MSE {100 * t.mse_rel:+.2f} %  p99 (units/steps) "
                  f"{p99}  within bound >= {100 * min(s.within_bound for s in t.layers):.3f} %  "
                  f"former: {former_verdict(t) or 'pass'}  now: {now or 'pass'}  "
                  f"remedies: {[r.command_line() for r in t.remedies]}", flush=True)


if __name__ == "__main__":
    main()
