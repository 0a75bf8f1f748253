"""``snnc compile | run | verify | deploy``: compile an ONNX model, run it on a target, verify spike times.

Steps (LIF) models (format-2 ONNX with ``snnc.time = steps``, or their compiled npz) are handled by
toolchain/cli_steps.py with the same commands and target names (Bernoulli inputs, spike-train verifier); everything
below describes alpha (temporal) models.

    snnc compile MODEL.onnx [--steps-per-unit S] [--out compiled.npz]
    snnc run COMPILED.npz --target T [--dataset D] [--limit N] [--out spikes.npz]
    snnc verify MODEL.onnx --targets lava-fixed,lava-float,brian2 [--dataset D] [--limit N] [--out DIR]
    snnc deploy MODEL.onnx --target T [--dataset D] [--limit N] [--out DIR]

``--dataset`` defaults to the dataset the model records (ONNX metadata ``snnc.meta.dataset``, written by
``snnc train``; kept in compiled.npz). ``--target`` and ``--targets`` are the same option (``run`` and ``deploy``
take one target, ``verify`` a comma-separated list). ``verify`` and ``deploy`` print progress per target to
stderr (``--quiet``: none).

Backend options: ``--brian2-dt``, ``--brian2-codegen`` and, for any target, ``-o TARGET.KEY=VALUE``
(e.g. ``-o lava-fixed.chunk_size=50``, ``-o hil.port=7341``).

Every input is checked before anything runs (model file, compile ranges and grid, dataset shape, target names
and options); a bad one exits with code 2 and a message naming the problem and the fix. ``verify`` and
``deploy`` exit 1 when a verification gate fails (docs/verifier.md).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from toolchain.atomic import check_output_path
from toolchain.errors import ArtifactError, CompileError, DataError

DEFAULT_LIMIT = 100
DATASETS = ("mnist", "fashion-mnist")


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
    p.add_argument("--weight-blocks", type=int, choices=(1, 2), default=None,
                   help="LIF models: Dense blocks per layer: 2 (default) adds a block of rounding residuals at the "
                        "smallest exponent (a finer grid for up to twice the synapses; docs/compiler.md), 1 = one")
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
    _time_steps_arg(p)


def _time_steps_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--time-steps", type=int, default=None, metavar="T",
                   help="steps (LIF) models only: time steps per sample (default: the model's recorded T)")


def _data_args(p: argparse.ArgumentParser, limit_default: int | None = DEFAULT_LIMIT) -> None:
    p.add_argument("--dataset", default=None, choices=DATASETS,
                   help="images to run (default: the dataset the model records, from snnc train)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="dataset split (default test)")
    p.add_argument("--data-dir", default=None,
                   help="folder with mnist/ and fashion-mnist/ (default $SNNC_DATA; neither: the bundled subset)")
    p.add_argument("--limit", type=int, default=limit_default,
                   help=f"use the first N images of the split (default {limit_default})")
    p.add_argument("--noise", type=float, default=0.0,
                   help="input spike-time noise eta, time units: t + eta r, r ~ N(noise_mean, 1) with the model's "
                        "noise_mean (default 0: noise-free inputs)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the input noise, or of the Bernoulli input spikes of steps models (default 0)")
    p.add_argument("--p-scale", type=float, default=None,
                   help="steps (LIF) models only: spike probability per step at pixel 1 (default: the model's)")


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--margin", type=float, default=None,
                   help="near-threshold margin, relative (default 0.02; steps models 1e-6)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    p.add_argument("--plot-sample", type=int, default=0,
                   help="sample shown in raster.png and first of reconstructions.png (default 0)")
    p.add_argument("--plot-neurons", default=None, metavar="LIST",
                   help="neurons shown in raster.png, every layer: START:STOP or i,j,k (default the first 100)")


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
    if getattr(args, "weight_blocks", None) is not None:
        raise CompileError("--weight-blocks is for LIF (steps) models; alpha models split large pulse weights "
                           "over parallel axons instead (--max-pulse-copies); fix: drop --weight-blocks")
    if args.weight_bits is not None:
        kw["weight_bits"] = args.weight_bits
    if args.threshold is not None:
        kw["threshold"] = args.threshold
    if args.max_pulse_copies is not None:
        kw["max_pulse_copies"] = args.max_pulse_copies
    if args.horizon_margin is not None:
        kw["horizon_margin"] = args.horizon_margin
    mode = getattr(args, "range_mode", None)
    if mode is not None:
        kw["range_mode"] = mode
    kw.update(calibration_flags(args))
    if mode == "calibrated" and getattr(args, "data_dir", None):
        kw["data_dir"] = args.data_dir
    return kw


def calibration_flags(args) -> dict:
    """The calibration options given (--calibration-samples, --calibration-dataset, --range-margin) by keyword;
    CompileError when any is given without --range calibrated (both model families)."""
    calib = {k: getattr(args, k, None) for k in ("calibration_samples", "calibration_dataset", "range_margin")}
    given = {k: v for k, v in calib.items() if v is not None}
    if given and getattr(args, "range_mode", None) != "calibrated":
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise CompileError(f"{flags} only apply to calibrated ranges; fix: add --range calibrated or drop them")
    return given


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
            flags = ", ".join("--" + {"range_mode": "range"}.get(k, k).replace("_", "-") for k in given)
            raise ArtifactError(f"{p} is already compiled; drop the compile options ({flags}) or pass "
                                f"the ONNX model instead")
        cn = load_compiled(p)
    else:
        cn = compile_file(p, **_compile_kwargs(args))
    for w in cn.manifest.get("warnings", []):  # quantization warnings, also when verify/deploy compile for you
        print(f"warning: {w}", file=sys.stderr)
    return cn


def dataset_of(cn, args) -> str:
    """``--dataset``, else the dataset the model records (``snnc train`` writes it into the ONNX metadata)."""
    if getattr(args, "dataset", None):
        return args.dataset
    recorded = cn.source.metadata.get("dataset")
    if recorded in DATASETS:
        return recorded
    if recorded:
        raise DataError(f"the model records dataset {recorded!r}, which this command cannot load; pass --dataset "
                        f"({' or '.join(DATASETS)})")
    raise DataError(f"the model does not record the dataset it was trained on; pass --dataset "
                    f"({' or '.join(DATASETS)})")


def load_inputs(cn, args) -> tuple[np.ndarray, np.ndarray]:
    """Dataset images (N, 784) in [0, 1] and their input spike times (time units, ``--noise`` added), checked
    against the network's shape. Sets ``args.dataset`` (from the model when not given) and ``args.data_source``."""
    from models.datasets import load_dataset
    from models.encoding import latency_encode

    src = cn.source
    if src.encoding != "latency":
        raise ArtifactError(f"the model uses input encoding {src.encoding!r}; this command supports 'latency'")
    if args.limit is not None and args.limit < 1:
        raise DataError(f"--limit must be a positive number of images, got {args.limit}")
    noise = float(getattr(args, "noise", 0.0) or 0.0)
    if not (noise >= 0.0 and np.isfinite(noise)):
        raise DataError(f"--noise must be a finite number >= 0 (time units), got {noise}")
    args.dataset = dataset_of(cn, args)
    ds = load_dataset(args.dataset, args.split, data_dir=args.data_dir, limit=args.limit)
    args.data_source = ds.source
    n_px = ds.images.shape[1]
    if src.layers[0].n_in != n_px:
        raise DataError(f"the model has {src.layers[0].n_in} inputs but {args.dataset} images have {n_px} pixels; "
                        f"use a model trained on 28x28 images (784 inputs)")
    if src.layers[-1].n_out != n_px:
        raise DataError(f"the model has {src.layers[-1].n_out} outputs but reconstructing {args.dataset} needs "
                        f"{n_px}; use an autoencoder (784-...-784)")
    images = np.asarray(ds.images, dtype=np.float64)
    if noise > 0:
        rng = np.random.default_rng(getattr(args, "seed", 0))
        noise_mean = float(src.metadata.get("noise_mean", 1.0))
        return images, latency_encode(images, noise, noise_mean, rng)
    return images, latency_encode(images)


def _parse_neurons(text: str | None) -> list[int] | None:
    from toolchain.errors import SnncError

    if not text:
        return None
    try:
        if ":" in text:
            a, _, b = text.partition(":")
            out = list(range(int(a or 0), int(b)))
        else:
            out = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        out = []
    if not out or min(out) < 0:
        raise SnncError(f"--plot-neurons {text!r} is not START:STOP or a list i,j,k of neuron indices >= 0; "
                        f"e.g. --plot-neurons 0:50")
    return out


def _context(cn, args, model_path: Path) -> dict:
    """What a report says was verified: dataset, split, noise, encoding, model file and its sha256."""
    from toolchain.artifact import model_hash

    meta = cn.source.metadata
    return {
        "dataset": args.dataset, "dataset_source": getattr(args, "data_source", None), "split": args.split,
        "limit": args.limit, "noise": float(getattr(args, "noise", 0.0) or 0.0),
        "noise_seed": getattr(args, "seed", None) if getattr(args, "noise", 0.0) else None,
        "trained_noise": (meta.get("hyperparameters") or {}).get("noise"),
        "trained_dataset": meta.get("dataset"), "encoding": cn.source.encoding,
        "model": str(model_path), "model_sha256": model_hash(model_path),
    }


def target_names(text: str, flag: str) -> list[str]:
    """'lava-fixed, brian2' -> ['lava-fixed', 'brian2'], every name checked; errors name ``flag``."""
    from targets.registry import TARGETS
    from toolchain.errors import TargetError

    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise TargetError(f"no target given; e.g. {flag} lava-fixed")
    for n in names:
        if n not in TARGETS:
            raise TargetError(f"unknown target {n!r} in {flag}; choose from: {', '.join(TARGETS)}")
    return names


def _single_target(text: str, command: str) -> str:
    from toolchain.errors import TargetError

    names = target_names(text, "--target")
    if len(names) != 1:
        raise TargetError(f"`snnc {command} --target` takes one target, got {', '.join(names)}; use `snnc verify "
                          f"--targets {','.join(names)}` for several")
    return names[0]


def _make_targets(names: list[str], options: dict[str, dict]) -> dict:
    """Instantiate every target first so that bad options fail before anything runs."""
    from toolchain.verifier import make_target

    return {n: make_target(n, **options.get(n, {})) for n in names}


# ---- commands -----------------------------------------------------------------------------------------------------

def _steps(path: str, args) -> bool:
    """True when ``path`` is a steps (LIF) model (toolchain/cli_steps.py runs it); for alpha models the options
    only steps models take are refused."""
    from toolchain.cli_steps import is_steps_model

    if is_steps_model(path):
        return True
    given = [f for f, d in (("--time-steps", "time_steps"), ("--p-scale", "p_scale")) if getattr(args, d, None)
             is not None]
    if given:
        raise DataError(f"{', '.join(given)} apply to steps (LIF) models only; {path} is not one: drop them")
    return False


def _cmd_compile(args) -> int:
    from toolchain.compiled_io import save_compiled
    from toolchain.compiler import compile_file

    if _steps(args.model, args):
        from toolchain import cli_steps

        return cli_steps.cmd_compile(args)
    model = Path(args.model)
    out = check_output_path(Path(args.out) if args.out else model.with_name(model.stem + ".compiled.npz"),
                            "file")
    cn = compile_file(model, **_compile_kwargs(args))
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

    if _steps(args.compiled, args):
        from toolchain import cli_steps

        return cli_steps.cmd_run(args)
    name = _single_target(args.target, "run")
    p = Path(args.compiled)
    if p.suffix == ".onnx":
        raise ArtifactError(f"{p} is an ONNX model; compile it first (`snnc compile {p}`) or use `snnc deploy`")
    cn = load_compiled(p)
    target = _make_targets([name], _target_options(args))[name]
    images, times = load_inputs(cn, args)
    default = p.with_name(f"{p.stem}.{name}.{args.dataset}.spikes.npz")
    out = check_output_path(Path(args.out) if args.out else default, "file")
    res = target.run(cn, times)
    mse = reconstruction_mse(res.times[-1], images, cn.source.latency)
    arrays = {f"layer{l}.times": t for l, t in enumerate(res.times)}
    if res.columns is not None:
        arrays.update({f"layer{l}.columns": c for l, c in enumerate(res.columns)})
    meta = {"target": name, "dataset": args.dataset, "split": args.split, "n_samples": int(times.shape[0]),
            "noise": args.noise, "mse": mse, "wall_s": res.wall_s, "info": res.info,
            "time_unit": "model time units, inf = no spike"}
    arrays["meta"] = np.array(json.dumps(meta, default=str))
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    print(f"{name}: {times.shape[0]} samples in {res.wall_s:.2f} s ({res.wall_s / max(times.shape[0], 1):.4g} "
          f"s/sample), reconstruction MSE {mse:.5f}")
    print(f"wrote {out}")
    return 0


def _progress(args):
    if getattr(args, "quiet", False):
        return None

    def say(msg: str) -> None:
        print(f"verify: {msg}", file=sys.stderr, flush=True)

    return say


def _verify_and_report(cn, names: list[str], args, out_dir: Path, model_path: Path,
                       extra: dict | None = None) -> int:
    """Load the data, verify ``names``, write the report folder (with ``extra`` files) at the end, print a
    summary; 0 when every gate passed, 1 otherwise. Nothing is written when anything fails before."""
    from toolchain.report import write_report
    from toolchain.verifier import DEFAULT_MARGIN, verify

    options = _target_options(args)
    neurons = _parse_neurons(args.plot_neurons)
    images, times = load_inputs(cn, args)
    if not 0 <= args.plot_sample < times.shape[0]:
        raise DataError(f"--plot-sample {args.plot_sample} is outside the {times.shape[0]} samples; pass 0.."
                        f"{times.shape[0] - 1}")
    rep = verify(cn, times, images, names, margin=args.margin if args.margin is not None else DEFAULT_MARGIN,
                 target_options=options, context=_context(cn, args, model_path), progress=_progress(args))
    path = write_report(rep, out_dir, sample=args.plot_sample, neurons=neurons, extra=extra)
    for t in rep.targets:
        worst = max((s.dt_p99 for s in t.layers), default=0.0)
        mse = "-" if t.mse is None else f"{t.mse:.5f}"
        rel = "" if t.mse_rel is None else f" ({100 * t.mse_rel:+.2f} % vs exact)"
        energy = ""
        if t.energy and "energy_per_sample_nJ" in t.energy:
            energy = f"  energy {t.energy['energy_per_sample_nJ']['mean']:.4g} nJ/sample (estimate)"
        print(f"{t.target:<11} {'PASS' if t.passed else 'FAIL'}  MSE {mse}{rel}  worst-layer p99 |dt| "
              f"{worst:.3g} time units ({worst * rep.steps_per_unit:.3g} steps)  "
              f"{t.wall_s / max(rep.n_samples, 1):.4g} s/sample{energy}")
    for w in rep.warnings:
        print(f"  WARNING: {w}")
    for g in rep.failed_gates():
        print(f"  gate failed: {g}")
    for r in rep.remedies():
        print(f"  remedy: {r}")
    print(f"report: {path}")
    return 0 if rep.passed else 1


def _cmd_verify(args) -> int:
    if _steps(args.model, args):
        from toolchain import cli_steps

        return cli_steps.cmd_verify(args)
    names = target_names(args.targets, "--targets")
    default = Path("runs") / f"verify-{Path(args.model).stem}"
    out = check_output_path(Path(args.out) if args.out else default, "folder")
    cn = load_model(args.model, args)
    return _verify_and_report(cn, names, args, out, Path(args.model))


def _cmd_deploy(args) -> int:
    from toolchain.compiled_io import save_compiled

    if _steps(args.model, args):
        from toolchain import cli_steps

        return cli_steps.cmd_deploy(args)
    name = _single_target(args.target, "deploy")
    model = Path(args.model)
    default = Path("runs") / f"deploy-{model.stem}-{name}"
    out = check_output_path(Path(args.out) if args.out else default, "folder")
    cn = load_model(args.model, args)
    _make_targets([name], _target_options(args))
    load_inputs(cn, args)  # dataset/shape problems surface before running
    print(compile_summary(cn))
    table = resource_table_hook(cn)
    if table:
        print(table)
    # compiled.npz is written with the report, after the target ran: a failed run leaves `out` as it was
    extra = {} if model.suffix == ".npz" else {"compiled.npz": lambda path: save_compiled(cn, path)}
    rc = _verify_and_report(cn, [name], args, out, model, extra=extra)
    if extra:
        print(f"wrote {out / 'compiled.npz'}")
    return rc


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
    p.add_argument("--target", "--targets", dest="target", required=True,
                   help="one target: exact, lava-float, lava-fixed, brian2, hw_sim, hil")
    _data_args(p)
    _time_steps_arg(p)
    _target_args(p)
    p.add_argument("--out", default=None, help="output .npz with per-layer spike times (time units) and columns "
                                               "(default <compiled>.<target>.<dataset>.spikes.npz)")
    p.set_defaults(func=_cmd_run)

    p = subparsers.add_parser("verify", help="compare targets with the exact model; exit 1 when a gate fails",
                              description=__doc__, formatter_class=fmt)
    p.add_argument("model", help="model.onnx (compiled with the options below) or compiled.npz")
    p.add_argument("--targets", "--target", dest="targets", required=True,
                   help="comma-separated targets, e.g. lava-fixed,lava-float,brian2,hw_sim")
    _compile_args(p)
    _data_args(p)
    _target_args(p)
    _report_args(p)
    p.add_argument("--out", default=None, help="report folder (default runs/verify-<model>)")
    p.set_defaults(func=_cmd_verify)

    p = subparsers.add_parser("deploy", help="compile + run + verify one target in one step",
                              description=__doc__, formatter_class=fmt)
    p.add_argument("model", help="model.onnx or compiled.npz")
    p.add_argument("--target", "--targets", dest="target", required=True,
                   help="one target: lava-fixed, lava-float, brian2, hw_sim, hil, exact")
    _compile_args(p)
    _data_args(p)
    _target_args(p)
    _report_args(p)
    p.add_argument("--out", default=None, help="output folder: compiled.npz and the report "
                                               "(default runs/deploy-<model>-<target>)")
    p.set_defaults(func=_cmd_deploy)


if __name__ == "__main__":  # pragma: no cover
    from toolchain.cli import main

    sys.exit(main())
