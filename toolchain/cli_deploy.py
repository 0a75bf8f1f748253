"""``snnc compile | run | verify | deploy``: compile an ONNX model, run it on a target, verify spike times.

    snnc compile MODEL.onnx [--steps-per-unit S] [--out compiled.npz]
    snnc run COMPILED.npz --target T --dataset D [--limit N] [--out spikes.npz]
    snnc verify MODEL.onnx --targets lava-fixed,lava-float,brian2 --dataset mnist --limit N [--out DIR]
    snnc deploy MODEL.onnx --target T --dataset D [--limit N] [--out DIR]

Backend options: ``--brian2-dt``, ``--brian2-codegen`` and, for any target, ``-o TARGET.KEY=VALUE``
(e.g. ``-o lava-fixed.chunk_size=50``, ``-o hil.port=7341``).

Every input is checked before anything runs (model file, compile ranges and grid, dataset shape, target names
and options); a bad one exits with code 2 and a message naming the problem and the fix. ``verify`` and
``deploy`` exit 1 when a verification gate fails (docs/verifier.md).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from toolchain.errors import ArtifactError, DataError

DEFAULT_LIMIT = 100


# ---- hooks and helpers --------------------------------------------------------------------------------------------

def resource_table_hook(cn) -> str | None:
    """Resource table of the compiled network on a Loihi-like chip (hw_sim.resources), or None if unavailable.

    A design-rule violation does not stop compilation (Lava, Brian2 and hw_sim still run the network); it is
    returned as a line starting with ``DRC:`` so the user sees which chip limit the network exceeds.
    """
    try:
        from hw_sim.resources import format_resource_table, partition
    except ImportError:
        return None
    from toolchain.errors import DRCError

    try:
        return format_resource_table(partition(cn))
    except DRCError as exc:
        return f"DRC: the network does not fit the default chip: {exc}"


def compile_summary(cn) -> str:
    """Plain-text summary of a CompiledNetwork: grid, decay, per-layer integer parameters and ranges."""
    m = cn.manifest
    src = cn.source
    lines = [
        f"network {'-'.join(map(str, src.sizes))}, tau={src.tau:g} /unit, theta={src.theta:g}, "
        f"latency={src.latency:g}",
        f"grid S={cn.steps_per_unit:g} steps/unit (h={cn.dt:.4g}), window {cn.window} steps",
    ]
    if "decay_D" in m:
        lines.append(f"decay D={m['decay_D']} (du=D-1, dv=D), tau_eff={m.get('tau_eff', src.tau):.6g} "
                     f"({100 * m.get('tau_rel_error', 0.0):+.3f} %)")
    mode = m.get("range_mode", "worst-case")
    cal = m.get("calibration") or {}
    lines.append(f"ranges: {mode}" + (f" ({cal.get('samples')} samples of {cal.get('source') or 'given inputs'}, "
                                      f"margin {cal.get('margin', 0):g}; run-time saturation is counted by hw_sim)"
                                      if mode == "calibrated" else " (every input of a neuron at once)"))
    lines.append("layer     n_in  n_out  pulse axons  vth (min..max)   wexp/pexp  bits  max|w_int|  max quant err/theta")
    lm = m.get("layers", [{}] * len(cn.layers))
    for layer, info in zip(cn.layers, lm):
        wmax = int(max(np.abs(layer.weights).max(initial=0), np.abs(layer.pulse_weights).max(initial=0)))
        qerr = info.get("weight_quant_max_abs_err_over_theta")
        vth = f"{layer.vth.min()}..{layer.vth.max()}" if layer.n_out else "-"
        lines.append(f"{layer.name:<9} {layer.n_in:>4}  {layer.n_out:>5}  {layer.pulse_weights.shape[1]:>11}  "
                     f"{vth:<15}  {f'{layer.weight_exp}/{layer.pulse_exp}':>9}  {layer.num_weight_bits:>4}  "
                     f"{wmax:>10}  "
                     f"{'-' if qerr is None else f'{qerr:.3g}'}")
    for info in lm:
        for i, j, col in info.get("pulse_collisions", []):
            lines.append(f"note: {info['name']} pulses {i} and {j} share step column {col} (they act as one pulse "
                         f"with the summed weight; a larger --steps-per-unit separates them)")
    for w in m.get("warnings", []):
        lines.append(f"warning: {w}")
    if m.get("source_hash"):
        lines.append(f"source sha256 {m['source_hash']}")
    return "\n".join(lines)


def _compile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps-per-unit", "-S", type=int, default=None,
                   help="time grid, steps per model time unit (default: the compiler's, see docs/compiler.md)")
    p.add_argument("--vth", type=int, default=None,
                   help="one 17-bit threshold mantissa for every neuron (default: automatic, see --threshold)")
    p.add_argument("--threshold", choices=("neuron", "layer"), default=None,
                   help="automatic thresholds: one per neuron (default; finest weight grid) or one per layer")
    p.add_argument("--horizon-margin", type=float, default=None,
                   help="time units simulated after latency + 1, the last expected output (default 1.0); raise it "
                        "when the verifier reports 'late' spikes")
    p.add_argument("--max-pulse-copies", type=int, default=None,
                   help="parallel axons a large pulse weight may be split over (default 8; 1 = none)")
    p.add_argument("--weight-bits", type=int, choices=(8, 9), default=None,
                   help="synaptic weight bits: 8 (Loihi 2, Lava's default; default) or 9 (Loihi 1)")
    p.add_argument("--compensate-tau", action="store_true",
                   help="stretch the grid so the 12-bit decay realises tau exactly (docs/compiler.md)")
    p.add_argument("--range", dest="range_mode", choices=("worst-case", "calibrated"), default=None,
                   help="how thresholds are bounded: worst-case (default, safe: every input of a neuron at once) or "
                        "calibrated (ranges measured on training images + --range-margin; saturation is counted "
                        "at run time by hw_sim)")
    p.add_argument("--calibration-samples", type=int, default=None,
                   help="training images used by --range calibrated (default 200)")
    p.add_argument("--calibration-dataset", choices=("mnist", "fashion-mnist"), default=None,
                   help="dataset whose training split calibrates the ranges (default: the model's, from its "
                        "metadata)")
    p.add_argument("--range-margin", type=float, default=None,
                   help="relative headroom over the calibrated ranges (default 0.5 = 50 %%)")


def _data_args(p: argparse.ArgumentParser, limit_default: int | None = DEFAULT_LIMIT) -> None:
    p.add_argument("--dataset", required=True, choices=("mnist", "fashion-mnist"))
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--data-dir", default=None,
                   help="folder with mnist/ and fashion-mnist/ (default $SNNC_DATA; neither: the bundled subset)")
    p.add_argument("--limit", type=int, default=limit_default,
                   help=f"use the first N images of the split (default {limit_default})")


def _target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--brian2-dt", type=float, default=None, help="brian2 integration step, time units (1e-3)")
    p.add_argument("--brian2-codegen", default=None, choices=("auto", "cython", "numpy"),
                   help="brian2 code generation (default auto: cython when a C compiler is available)")
    p.add_argument("--option", "-o", action="append", default=[], metavar="TARGET.KEY=VALUE",
                   help="backend option, repeatable, e.g. -o lava-fixed.chunk_size=50 -o hil.port=7341 "
                        "(VALUE is read as JSON when it parses, else as a string)")


def parse_option(text: str) -> tuple[str, str, object]:
    """'hil.port=7341' -> ('hil', 'port', 7341)."""
    from targets.registry import TARGETS
    from toolchain.errors import TargetError

    key, sep, raw = text.partition("=")
    target, dot, name = key.rpartition(".")
    if not sep or not dot or not target or not name.isidentifier():
        raise TargetError(f"option {text!r} is not TARGET.KEY=VALUE; e.g. -o lava-fixed.chunk_size=50")
    if target not in TARGETS:
        raise TargetError(f"option {text!r} names unknown target {target!r}; choose from: {', '.join(TARGETS)}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return target, name, value


def _target_options(args) -> dict[str, dict]:
    opts: dict[str, dict] = {"brian2": {}}
    if getattr(args, "brian2_dt", None) is not None:
        opts["brian2"]["dt"] = args.brian2_dt
    if getattr(args, "brian2_codegen", None) is not None:
        opts["brian2"]["codegen"] = args.brian2_codegen
    for text in getattr(args, "option", None) or []:
        target, name, value = parse_option(text)
        opts.setdefault(target, {})[name] = value
    return opts


def _compile_kwargs(args) -> dict:
    kw = {}
    if args.steps_per_unit is not None:
        kw["steps_per_unit"] = args.steps_per_unit
    if args.vth is not None:
        kw["vth"] = args.vth
    if args.compensate_tau:
        kw["compensate_tau"] = True
    if args.weight_bits is not None:
        kw["weight_bits"] = args.weight_bits
    if args.threshold is not None:
        kw["threshold"] = args.threshold
    if args.max_pulse_copies is not None:
        kw["max_pulse_copies"] = args.max_pulse_copies
    if args.horizon_margin is not None:
        kw["horizon_margin"] = args.horizon_margin
    mode = getattr(args, "range_mode", None)
    calib = {k: getattr(args, a, None) for k, a in (("calibration_samples", "calibration_samples"),
                                                    ("calibration_dataset", "calibration_dataset"),
                                                    ("range_margin", "range_margin"))}
    if mode != "calibrated" and any(v is not None for v in calib.values()):
        from toolchain.errors import CompileError

        flags = ", ".join("--" + k.replace("_", "-") for k, v in calib.items() if v is not None)
        raise CompileError(f"{flags} only apply to calibrated ranges; fix: add --range calibrated or drop them")
    if mode is not None:
        kw["range_mode"] = mode
    kw.update({k: v for k, v in calib.items() if v is not None})
    if mode == "calibrated" and getattr(args, "data_dir", None):
        kw["data_dir"] = args.data_dir
    return kw


def load_model(path: str, args) -> "object":
    """An ONNX model (compiled now with the CLI's options) or an already compiled .npz -> CompiledNetwork."""
    from toolchain.compiled_io import load_compiled
    from toolchain.compiler import compile_file

    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"model file {p} does not exist; pass a model.onnx (snnc train) or compiled.npz "
                            f"(snnc compile)")
    if p.suffix == ".npz":
        given = _compile_kwargs(args)
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise ArtifactError(f"{p} is already compiled; drop the compile options ({flags}) or pass "
                                f"the ONNX model instead")
        return load_compiled(p)
    return compile_file(p, **_compile_kwargs(args))


def load_inputs(cn, args) -> tuple[np.ndarray, np.ndarray]:
    """Dataset images (N, 784) in [0, 1] and their input spike times, checked against the network's shape."""
    from models.datasets import load_dataset
    from models.encoding import latency_encode

    src = cn.source
    if src.encoding != "latency":
        raise ArtifactError(f"the model uses input encoding {src.encoding!r}; this command supports 'latency'")
    if args.limit is not None and args.limit < 1:
        raise DataError(f"--limit must be a positive number of images, got {args.limit}")
    ds = load_dataset(args.dataset, args.split, data_dir=args.data_dir, limit=args.limit)
    n_px = ds.images.shape[1]
    if src.layers[0].n_in != n_px:
        raise DataError(f"the model has {src.layers[0].n_in} inputs but {args.dataset} images have {n_px} pixels; "
                        f"use a model trained on 28x28 images (784 inputs)")
    if src.layers[-1].n_out != n_px:
        raise DataError(f"the model has {src.layers[-1].n_out} outputs but reconstructing {args.dataset} needs "
                        f"{n_px}; use an autoencoder (784-...-784)")
    images = np.asarray(ds.images, dtype=np.float64)
    return images, latency_encode(images)


def _single_target(text: str) -> str:
    from targets.registry import parse_target_list
    from toolchain.errors import TargetError

    names = parse_target_list(text)
    if len(names) != 1:
        raise TargetError(f"--target takes one target, got {', '.join(names)}; use `snnc verify --targets` for several")
    return names[0]


def _make_targets(names: list[str], options: dict[str, dict]) -> dict:
    """Instantiate every target first so that bad options fail before anything runs."""
    from toolchain.verifier import make_target

    return {n: make_target(n, **options.get(n, {})) for n in names}


# ---- commands -----------------------------------------------------------------------------------------------------

def _cmd_compile(args) -> int:
    from toolchain.compiled_io import save_compiled
    from toolchain.compiler import compile_file

    model = Path(args.model)
    cn = compile_file(model, **_compile_kwargs(args))
    out = Path(args.out) if args.out else model.with_name(model.stem + ".compiled.npz")
    save_compiled(cn, out)
    print(compile_summary(cn))
    table = resource_table_hook(cn)
    if table:
        print()
        print(table)
    print(f"\nwrote {out}")
    return 0


def _cmd_run(args) -> int:
    from models.encoding import reconstruction_mse
    from toolchain.atomic import atomic_path
    from toolchain.compiled_io import load_compiled

    name = _single_target(args.target)
    p = Path(args.compiled)
    if p.suffix == ".onnx":
        raise ArtifactError(f"{p} is an ONNX model; compile it first (`snnc compile {p}`) or use `snnc deploy`")
    cn = load_compiled(p)
    target = _make_targets([name], _target_options(args))[name]
    images, times = load_inputs(cn, args)
    res = target.run(cn, times)
    mse = reconstruction_mse(res.times[-1], images, cn.source.latency)
    out = Path(args.out) if args.out else p.with_name(f"{p.stem}.{name}.{args.dataset}.spikes.npz")
    arrays = {f"layer{l}.times": t for l, t in enumerate(res.times)}
    if res.columns is not None:
        arrays.update({f"layer{l}.columns": c for l, c in enumerate(res.columns)})
    meta = {"target": name, "dataset": args.dataset, "split": args.split, "n_samples": int(times.shape[0]),
            "mse": mse, "wall_s": res.wall_s, "info": res.info, "time_unit": "model time units, inf = no spike"}
    arrays["meta"] = np.array(json.dumps(meta, default=str))
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    print(f"{name}: {times.shape[0]} samples in {res.wall_s:.2f} s ({res.wall_s / max(times.shape[0], 1):.4g} "
          f"s/sample), reconstruction MSE {mse:.5f}")
    print(f"wrote {out}")
    return 0


def _verify_and_report(cn, names: list[str], args, out_dir: Path, results: dict | None = None) -> int:
    from toolchain.report import write_report
    from toolchain.verifier import DEFAULT_MARGIN, verify

    options = _target_options(args)
    images, times = load_inputs(cn, args)
    rep = verify(cn, times, images, names, margin=args.margin if args.margin is not None else DEFAULT_MARGIN,
                 target_options=options, results=results)
    path = write_report(rep, out_dir)
    for t in rep.targets:
        worst = max((s.dt_p99_steps for s in t.layers), default=0.0)
        mse = "-" if t.mse is None else f"{t.mse:.5f}"
        print(f"{t.target:<11} {'PASS' if t.passed else 'FAIL'}  MSE {mse}  worst-layer p99 |dt| "
              f"{worst:.3g} steps  {t.wall_s / max(rep.n_samples, 1):.4g} s/sample")
    for g in rep.failed_gates():
        print(f"  gate failed: {g}")
    print(f"report: {path}")
    return 0 if rep.passed else 1


def _cmd_verify(args) -> int:
    from targets.registry import parse_target_list

    names = parse_target_list(args.targets)
    cn = load_model(args.model, args)
    out = Path(args.out) if args.out else Path("runs") / f"verify-{Path(args.model).stem}"
    return _verify_and_report(cn, names, args, out)


def _cmd_deploy(args) -> int:
    from toolchain.compiled_io import save_compiled

    name = _single_target(args.target)
    model = Path(args.model)
    cn = load_model(args.model, args)
    out = Path(args.out) if args.out else Path("runs") / f"deploy-{model.stem}-{name}"
    _make_targets([name], _target_options(args))
    load_inputs(cn, args)  # dataset/shape problems surface before compiling to disk or running
    print(compile_summary(cn))
    table = resource_table_hook(cn)
    if table:
        print(table)
    if model.suffix != ".npz":
        save_compiled(cn, out / "compiled.npz")
        print(f"wrote {out / 'compiled.npz'}")
    return _verify_and_report(cn, [name], args, out)


def register(subparsers) -> None:
    """Add compile, run, verify and deploy to the snnc command."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("compile", help="compile an ONNX model for Loihi-style fixed point (compiled.npz)",
                              description=__doc__, formatter_class=fmt)
    p.add_argument("model", help="model.onnx written by snnc train / toolchain.artifact.save_onnx")
    _compile_args(p)
    p.add_argument("--out", default=None, help="output .npz (default: <model>.compiled.npz beside the model)")
    p.set_defaults(func=_cmd_compile)

    p = subparsers.add_parser("run", help="run a compiled network on a target; writes spike times and MSE",
                              description=__doc__, formatter_class=fmt)
    p.add_argument("compiled", help="compiled.npz from snnc compile")
    p.add_argument("--target", required=True, help="exact, lava-float, lava-fixed, brian2, hw_sim, hil")
    _data_args(p)
    _target_args(p)
    p.add_argument("--out", default=None, help="output .npz with per-layer spike times (time units) and columns")
    p.set_defaults(func=_cmd_run)

    p = subparsers.add_parser("verify", help="compare targets with the exact model; exit 1 when a gate fails",
                              description=__doc__, formatter_class=fmt)
    p.add_argument("model", help="model.onnx (compiled with the options below) or compiled.npz")
    p.add_argument("--targets", required=True, help="comma-separated, e.g. lava-fixed,lava-float,brian2")
    _compile_args(p)
    _data_args(p)
    _target_args(p)
    p.add_argument("--margin", type=float, default=None, help="near-threshold margin, relative (default 0.02)")
    p.add_argument("--out", default=None, help="report folder (default runs/verify-<model>)")
    p.set_defaults(func=_cmd_verify)

    p = subparsers.add_parser("deploy", help="compile + run + verify one target in one step",
                              description=__doc__, formatter_class=fmt)
    p.add_argument("model", help="model.onnx")
    p.add_argument("--target", required=True, help="lava-fixed, lava-float, brian2, hw_sim, ...")
    _compile_args(p)
    _data_args(p)
    _target_args(p)
    p.add_argument("--margin", type=float, default=None, help="near-threshold margin, relative (default 0.02)")
    p.add_argument("--out", default=None, help="output folder (default runs/deploy-<model>-<target>)")
    p.set_defaults(func=_cmd_deploy)


if __name__ == "__main__":  # pragma: no cover
    from toolchain.cli import main

    sys.exit(main())
