"""Spike-time error of the compiled mapping vs the exact model, as a function of S (steps per time unit).

    .venv/bin/python benchmarks/compiler_grid.py [--lava] [--samples 20]

Uses tests/lava_reference.py, the numpy transcription of docs/compiled-format.md that tests/test_lava_targets.py
checks to be bit-identical to lava-fixed (and to follow the same float recurrence as lava-float), so S can be
swept quickly. ``--lava`` also times lava-float / lava-fixed at the default S and checks they agree.
Random networks (untrained): 12-10-8 and 100-32-100 with two pulses per layer, tau = 2, theta = 1.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from lava_reference import reference_run  # noqa: E402

from models.exact import exact_forward  # noqa: E402
from models.network import AlphaLayer, TemporalNetwork  # noqa: E402
from toolchain.compiler import DEFAULT_STEPS_PER_UNIT, compile_network  # noqa: E402


def random_net(sizes, seed=1, tau=2.0) -> TemporalNetwork:
    rng = np.random.default_rng(seed)
    layers = [AlphaLayer(rng.normal(0.8, 1.0, (b, a)) * 4 / a**0.5, np.array([0.05, 0.4]),
                         rng.normal(0.5, 0.5, (b, 2))) for a, b in zip(sizes[:-1], sizes[1:])]
    return TemporalNetwork(tuple(layers), tau=tau, theta=1.0, latency=1.0)


def inputs(n, n_in, seed=5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, n_in))
    x[rng.uniform(size=x.shape) < 0.2] = np.inf
    return x


def compare(ex, times) -> dict:
    """Over all layers: presence agreement, max / mean |dt| (time units) where both spiked."""
    agree, errs = [], []
    for te, tl in zip(ex, times):
        agree.append((np.isfinite(te) == np.isfinite(tl)).ravel())
        both = np.isfinite(te) & np.isfinite(tl)
        errs.append(np.abs(te[both] - tl[both]))
    e = np.concatenate(errs)
    return {"agree": float(np.concatenate(agree).mean()), "max": float(e.max()), "mean": float(e.mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--lava", action="store_true", help="also time lava-float / lava-fixed at the default S")
    args = ap.parse_args()
    print("| net | S | h | window | vth median (layer 0) | tau_eff/tau - 1 | float agree / max / mean | "
          "fixed agree / max / mean | fixed, compensate_tau |")
    print("|---|---|---|---|---|---|---|---|---|")
    for sizes in ((12, 10, 8), (100, 32, 100)):
        net = random_net(sizes)
        x = inputs(args.samples, sizes[0])
        ex = exact_forward(net, x)
        for S in (8, 16, 32, 64, 128, 256):
            cn = compile_network(net, steps_per_unit=S)
            cols = cn.input_columns(x)
            res = {}
            for fixed in (False, True):
                first, _ = reference_run(cn, cols, fixed=fixed)
                res[fixed] = compare(ex, [cn.columns_to_times(c, l) for l, c in enumerate(first)])
            cc = compile_network(net, steps_per_unit=S, compensate_tau=True)
            first, _ = reference_run(cc, cc.input_columns(x), fixed=True)
            qc = compare(ex, [cc.columns_to_times(c, l) for l, c in enumerate(first)])
            f, q = res[False], res[True]
            print(f"| {'-'.join(map(str, sizes))} | {S} | {1 / S:.4f} | {cn.window} | {int(np.median(cn.layers[0].vth))} | "
                  f"{cn.manifest['tau_rel_error']:+.2e} | {f['agree']:.3f} / {f['max']:.4f} / {f['mean']:.4f} | "
                  f"{q['agree']:.3f} / {q['max']:.4f} / {q['mean']:.4f} | "
                  f"{qc['agree']:.3f} / {qc['max']:.4f} / {qc['mean']:.4f} |")
    if args.lava:
        from targets.lava import LavaFixedTarget, LavaFloatTarget

        for sizes in ((12, 10, 8), (784, 32, 784)):
            net = random_net(sizes)
            x = inputs(args.samples, sizes[0])
            cn = compile_network(net, steps_per_unit=DEFAULT_STEPS_PER_UNIT)
            ex = exact_forward(net, x)
            for target in (LavaFloatTarget(), LavaFixedTarget()):
                t0 = time.perf_counter()
                r = target.run(cn, x)
                dt = time.perf_counter() - t0
                ref, _ = reference_run(cn, cn.input_columns(x), fixed=target.fixed)
                same = all(np.array_equal(a, b) for a, b in zip(r.columns, ref))
                c = compare(ex, r.times)
                print(f"{target.name} {'-'.join(map(str, sizes))} S={cn.steps_per_unit} W={cn.window} "
                      f"N={len(x)}: {dt:.2f} s total, {dt / len(x):.3f} s/sample, {dt / len(x) / cn.window * 1e3:.2f}"
                      f" ms/step; == reference: {same}; vs exact agree {c['agree']:.3f}, |dt| max {c['max']:.4f} "
                      f"mean {c['mean']:.4f}")


if __name__ == "__main__":
    main()
