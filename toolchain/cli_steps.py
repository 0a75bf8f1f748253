"""Steps (LIF) models in ``snnc compile | run | verify | deploy`` (toolchain/cli_deploy.py dispatches here).

A model is a *steps* model when it is an ONNX artifact of format 2 with ``snnc.time = steps``
(toolchain/artifact_graph.py) or a ``compiled.npz`` of format ``snnc-compiled-steps`` (toolchain/compiled_steps_io.py);
everything else (format 1, continuous alpha graphs, alpha compiled.npz) goes through the alpha code unchanged.

- ``compile``: toolchain.steps_compiler.compile_graph for T = the model's recorded ``steps`` (``--time-steps``
  overrides), ``--weight-bits`` and ``--threshold`` as for alpha models; the graph's metadata (dataset, encoding,
  p_scale, steps) is kept in the manifest (``source_metadata``) so that ``run`` on the compiled file finds it.
- Inputs: the dataset images (``--dataset`` default from the metadata, ``--split``, ``--limit``, ``--data-dir``)
  encoded as Bernoulli spike trains (models.rate_encoding.bernoulli_encode: P(spike per step) = p_scale * pixel)
  with the model's p_scale and T (``--p-scale`` / ``--time-steps`` override) from ``numpy.random.default_rng(--seed)``.
- Target names: the alpha names map to their steps counterparts (targets.registry.steps_target_name: exact ->
  float, brian2 -> brian2-lif, lava-float -> lava-float-lif, lava-fixed -> lava-fixed-lif, hw_sim -> hw_sim-lif);
  the steps names are accepted as well; ``-o NAME.KEY=VALUE`` options follow the same mapping.
- ``verify`` / ``deploy``: toolchain.verify_trains.verify_steps against the float64 model; the report folder holds
  steps_report.json, steps_summary.txt, the plots raster.png and count_maps.png (toolchain/steps_plots.py, sample
  ``--plot-sample``), report.md and report.json (written last; ``deploy`` adds compiled.npz); exit
  1 when a gate fails, 2 for bad input (checked before anything runs).
"""
from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.atomic import check_output_path
from toolchain.errors import ArtifactError, CompileError, DataError, TargetError

DATASETS = ("mnist", "fashion-mnist")
# every name a steps model accepts (alpha names are mapped by targets.registry.steps_target_name)
STEPS_TARGETS = ("float", "brian2-lif", "lava-float-lif", "lava-fixed-lif", "hw_sim-lif")
# compile options of the alpha compiler that have no meaning for a steps graph (dest -> flag)
ALPHA_ONLY_COMPILE = {"steps_per_unit": "--steps-per-unit", "vth": "--vth", "horizon_margin": "--horizon-margin",
                      "max_pulse_copies": "--max-pulse-copies"}
# compile options shared by both families (dest -> flag); a compiled npz takes none of them
STEPS_COMPILE = {"weight_bits": "--weight-bits", "threshold": "--threshold", "range_mode": "--range",
                 "calibration_samples": "--calibration-samples", "calibration_dataset": "--calibration-dataset",
                 "range_margin": "--range-margin", "weight_blocks": "--weight-blocks"}


# ---- which family ------------------------------------------------------------------------------------------------

def is_steps_model(path: str | Path) -> bool:
    """True for a format-2 ONNX artifact whose graph time is 'steps' or a compiled steps npz. Never raises: a file
    that cannot be read is left to the alpha code, whose errors name the problem."""
    p = Path(path)
    try:
        if not p.is_file():
            return False
        if p.suffix == ".npz":
            from toolchain.compiled_conv import FORMAT as CONV_FORMAT
            from toolchain.compiled_steps import FORMAT

            with np.load(p, allow_pickle=False) as z:
                if "meta" not in z.files:
                    return False
                return json.loads(str(z["meta"])).get("format") in (FORMAT, CONV_FORMAT)
        import onnx

        model = onnx.load(str(p), load_external_data=False)
        props = {q.key: q.value for q in model.metadata_props}
        return props.get("snnc.format_version") == "2" and props.get("snnc.time") == "steps"
    except Exception:  # noqa: BLE001 - any unreadable file is the alpha code's to report
        return False


# ---- compile -----------------------------------------------------------------------------------------------------

def _refuse_alpha_options(args) -> None:
    given = [flag for dest, flag in ALPHA_ONLY_COMPILE.items() if getattr(args, dest, None) is not None]
    if getattr(args, "compensate_tau", False):
        given.append("--compensate-tau")
    if given:
        raise CompileError(f"{', '.join(given)} apply to alpha (temporal) models only; this is a steps (LIF) model: "
                           f"drop them (steps models take --weight-bits, --threshold, --time-steps, --range, "
                           f"--calibration-samples, --calibration-dataset and --range-margin)")


def _positive_int(value: Any, flag: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DataError(f"{flag} must be a whole number of steps >= 1, got {value!r}")
    return int(value)


def compile_steps_model(path: str | Path, args) -> Any:
    """Load a steps ONNX artifact and compile it (CompiledSteps) with the CLI's options; the graph's metadata is
    kept in the manifest as ``source_metadata``."""
    from toolchain.artifact import model_hash
    from toolchain.artifact_graph import load_graph
    from toolchain.steps_compiler import compile_graph

    _refuse_alpha_options(args)
    graph = load_graph(path)
    if graph.time != "steps":
        raise ArtifactError(f"{path} holds a {graph.time} graph, not a steps (LIF) model")
    t = getattr(args, "time_steps", None)
    if t is None:
        t = graph.metadata.get("steps")
        if t is None:
            raise CompileError(f"{path} does not record its number of time steps (metadata 'steps'); pass "
                               f"--time-steps T (the steps per sample the model runs)")
    t = _positive_int(t, "--time-steps")
    kw = {}
    if getattr(args, "weight_bits", None) is not None:
        kw["weight_bits"] = args.weight_bits
    if getattr(args, "threshold", None) is not None:
        kw["threshold"] = args.threshold
    from toolchain.conv_compiler import compile_conv_graph, needs_conv_compiler

    if getattr(args, "weight_blocks", None) is not None:   # Dense chains and conv graphs (docs/conv-deploy.md)
        kw["weight_blocks"] = args.weight_blocks
    kw.update(_range_options(graph, t, args))
    compiler = compile_conv_graph if needs_conv_compiler(graph) else compile_graph   # convolutions: issue [F]
    cs = compiler(graph, t, source_hash=model_hash(path), **kw)
    return replace(cs, manifest={**cs.manifest, "source_metadata": dict(graph.metadata),
                                 "model": str(path)})


def _range_options(graph, t: int, args) -> dict:
    """compile_graph's range keywords from --range / --calibration-samples / --calibration-dataset /
    --range-margin; calibrated mode encodes the first N training images (Bernoulli, the model's p_scale or
    --p-scale, T steps, numpy.random.default_rng(--seed)). Calibration options without --range calibrated are
    refused."""
    from toolchain.steps_calibration import DEFAULT_CALIBRATION_SAMPLES, training_input_spikes

    from toolchain.cli_deploy import calibration_flags

    mode = getattr(args, "range_mode", None) or "worst-case"
    calibration_flags(args)  # refuses calibration options without --range calibrated
    if mode != "calibrated":
        return {"range_mode": mode}
    kw: dict = {"range_mode": mode}
    if getattr(args, "range_margin", None) is not None:
        kw["range_margin"] = args.range_margin
    samples = getattr(args, "calibration_samples", None)
    x, source = training_input_spikes(graph, getattr(args, "calibration_dataset", None),
                                      DEFAULT_CALIBRATION_SAMPLES if samples is None else samples, t,
                                      getattr(args, "p_scale", None), int(getattr(args, "seed", 0) or 0),
                                      getattr(args, "data_dir", None))
    kw.update(calibration_spikes=x, calibration_source=source)
    return kw


def load_steps_model(path: str | Path, args) -> Any:
    """A steps ONNX model (compiled now) or a compiled steps npz -> CompiledSteps (or CompiledConv)."""
    from toolchain.compiled_conv_io import load_compiled_any as load_compiled_steps

    p = Path(path)
    if p.suffix == ".npz":
        _refuse_alpha_options(args)
        given = [f for d, f in STEPS_COMPILE.items() if getattr(args, d, None) is not None]
        if given:
            raise ArtifactError(f"{p} is already compiled; drop the compile options ({', '.join(given)}) or pass "
                                f"the ONNX model instead")
        return load_compiled_steps(p)
    return compile_steps_model(p, args)


def steps_compile_summary(cs) -> str:
    """Plain-text summary of a CompiledSteps: sizes, T, per layer dv / leak, vth range, weight exponent and bits,
    mantissa use and the largest weight quantization error (threshold units)."""
    m = cs.manifest
    sizes = [cs.n_in] + [cl.n_out for cl in cs.layers]
    meta = m.get("source_metadata") or {}
    lines = [f"steps network {'-'.join(map(str, sizes))}, T<={cs.max_steps} steps, weight bits "
             f"{m.get('weight_bits', cs.layers[0].num_weight_bits)}, thresholds per {m.get('threshold', 'neuron')}"
             + (f"; encoding {meta['encoding']} p_scale {meta.get('p_scale')}" if meta.get("encoding") else ""),
             "layer       n_in  n_out   dv  leak -> leak_eff    vth (min..max)   wexp  bits  max|w_int|  mantissa "
             "used  max |w err|/v_th"]
    entries = {e.get("name"): e for e in m.get("layers", [])}
    for cl in cs.layers:
        e = entries.get(cl.name, {})
        wmax = int(np.abs(cl.weights).max(initial=0))
        used = e.get("mantissa_used")
        err = e.get("max_weight_error")
        lines.append(f"{cl.name:<10} {cl.n_in:>5}  {cl.n_out:>5}  {cl.dv:>4}  {cl.leak:<6.4g}-> {cl.leak_eff:<8.6g}  "
                     f"{f'{int(cl.vth.min())}..{int(cl.vth.max())}':<15}  {cl.weight_exp:>4}  {cl.num_weight_bits:>4}  "
                     f"{wmax:>10}  {'-' if used is None else f'{100 * used:.1f} %':>13}  "
                     f"{'-' if err is None else f'{err:.3g}'}")
        if e.get("kind") in ("conv", "conv_transpose") or e.get("population") == "readout":
            lines.append(f"note: {cl.name}: {e.get('kind')} synapse on Lava {e.get('lava')}, "
                         f"{'off-chip Readout' if e.get('population') == 'readout' else 'LIF'}, "
                         f"map {'x'.join(map(str, getattr(cl, 'out_shape', ())))}")
        if e.get("clamp_dropped"):
            lines.append(f"note: {cl.name}: the clamp of V at v_th is dropped (no effect on spikes with reset to zero)")
    cal = m.get("calibration") or {}
    if m.get("range_mode") == "calibrated":
        lines.append(f"ranges: calibrated on {cal.get('samples')} samples ({cal.get('source') or 'given trains'}), "
                     f"margin {cal.get('margin')}; inputs beyond them may saturate (hw_sim-lif counts range_events)")
        for e in m.get("layers", []):
            c, me = e.get("calibrated") or {}, e.get("measured") or {}
            lines.append(f"  {e.get('name')}: bound |a_in| {c.get('a_in', 0):.0f} of 32767, |v_neg| "
                         f"{c.get('v_neg', 0):.0f} of 8388607 (measured max a_in {me.get('a_in_max', 0):.3g}, v_neg "
                         f"{me.get('v_neg_max', 0):.3g} thresholds; worst case a_in {e['worst_case']['a_in']:.3g})")
    else:
        lines.append("ranges: worst-case (every input in every step; safe for any input)")
    for w in m.get("warnings", []):
        lines.append(f"warning: {w}")
    from toolchain.compiled_conv import CompiledConv

    if isinstance(cs, CompiledConv):     # issue [F]: cores and design rules of the conv network
        from hw_sim.conv_resources import conv_partition

        res, _ = conv_partition(cs, strict=False)
        lines.append(f"resources ({res.chip.name}, shared convolution kernels): {res.cores} cores, "
                     f"{res.synaptic_memory_bits / 8192:.1f} KiB synaptic memory"
                     + ("" if not res.violations else f"; {len(res.violations)} design-rule violation(s):"))
        lines += [f"  DRC: {v}" for v in res.violations]
    if m.get("source_hash"):
        lines.append(f"source sha256 {m['source_hash']}")
    return "\n".join(lines)


def cmd_compile(args) -> int:
    """``snnc compile`` of a steps model: writes the compiled steps npz and prints the summary."""
    from toolchain.compiled_conv_io import save_compiled_any as save_compiled_steps

    model = Path(args.model)
    out = check_output_path(Path(args.out) if args.out else model.with_name(model.stem + ".compiled.npz"), "file")
    cs = compile_steps_model(model, args)
    save_compiled_steps(cs, out)
    print(steps_compile_summary(cs))
    print(f"\nwrote {out}")
    return 0


# ---- inputs ------------------------------------------------------------------------------------------------------

def _meta(cs) -> dict:
    return dict(cs.manifest.get("source_metadata") or {})


def steps_inputs(cs, args) -> tuple[np.ndarray, np.ndarray, dict]:
    """Dataset images (N, n_px) in [0, 1] and their Bernoulli input trains (N, T, n_px) uint8, plus the context
    (dataset, split, limit, T, p_scale, seed, source). Every problem raises DataError before anything runs."""
    from models.datasets import load_dataset
    from models.rate_encoding import bernoulli_encode

    meta = _meta(cs)
    enc = meta.get("encoding", "bernoulli")
    if enc != "bernoulli":
        raise ArtifactError(f"the model records input encoding {enc!r}; steps models are run on Bernoulli "
                            f"(rate) spike trains only")
    if float(getattr(args, "noise", 0.0) or 0.0) != 0.0:
        raise DataError("--noise (input spike-time noise) applies to alpha (temporal) models only; drop it")
    if args.limit is not None and args.limit < 1:
        raise DataError(f"--limit must be a positive number of images, got {args.limit}")
    t = getattr(args, "time_steps", None)
    t = _positive_int(meta.get("steps", cs.max_steps) if t is None else t, "--time-steps")
    if t > cs.max_steps:
        raise DataError(f"{t} steps per sample exceed the {cs.max_steps} steps the model was compiled for; pass "
                        f"--time-steps <= {cs.max_steps} or compile again with --time-steps {t}")
    p_scale = getattr(args, "p_scale", None)
    if p_scale is None:
        p_scale = meta.get("p_scale")
        if p_scale is None:
            raise DataError("the model does not record p_scale (spike probability per step at pixel 1); pass "
                            "--p-scale, e.g. 0.3 for MNIST at 300 Hz and dt 1 ms")
    p_scale = float(p_scale)
    if not (np.isfinite(p_scale) and 0.0 < p_scale <= 1.0):
        raise DataError(f"--p-scale must lie in (0, 1] (spikes per step at pixel 1), got {p_scale:g}")
    dataset = getattr(args, "dataset", None)
    if not dataset:
        dataset = meta.get("dataset")
        if dataset not in DATASETS:
            what = f"records dataset {dataset!r}, which this command cannot load" if dataset else \
                "does not record the dataset it was trained on"
            raise DataError(f"the model {what}; pass --dataset ({' or '.join(DATASETS)})")
    ds = load_dataset(dataset, args.split, data_dir=args.data_dir, limit=args.limit)
    images = np.asarray(ds.images, dtype=np.float64).reshape(ds.images.shape[0], -1)
    n_px = images.shape[1]
    if cs.n_in != n_px:
        raise DataError(f"the model has {cs.n_in} inputs but {dataset} images have {n_px} pixels; use a model "
                        f"with {n_px} inputs")
    if cs.layers[-1].n_out != n_px:
        raise DataError(f"the model has {cs.layers[-1].n_out} outputs but reconstructing {dataset} needs {n_px}; "
                        f"use an autoencoder {n_px}-...-{n_px}")
    seed = int(getattr(args, "seed", 0) or 0)
    x = bernoulli_encode(images, t, p_scale, np.random.default_rng(seed))
    ctx = {"dataset": dataset, "dataset_source": ds.source, "split": args.split, "limit": args.limit,
           "samples": int(images.shape[0]), "steps": t, "p_scale": p_scale, "encoding": "bernoulli", "seed": seed,
           "trained_dataset": meta.get("dataset")}
    return images, x, ctx


# ---- targets -----------------------------------------------------------------------------------------------------

def steps_names(text: str, flag: str) -> list[str]:
    """'lava-fixed,brian2' -> ['lava-fixed-lif', 'brian2-lif'] (registry names for steps graphs), checked."""
    from targets.registry import steps_target_name

    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise TargetError(f"no target given; e.g. {flag} lava-fixed")
    out = []
    for n in names:
        m = steps_target_name(n)
        if m not in STEPS_TARGETS:
            raise TargetError(f"target {n!r} cannot run steps (LIF) models; choose from: exact, brian2, lava-float, "
                              f"lava-fixed, hw_sim (or their names {', '.join(STEPS_TARGETS)})")
        if m not in out:
            out.append(m)
    return out


def refuse_conv_targets(cs, names: list[str], targets: dict | None = None) -> None:
    """TargetError before anything runs when a convolutional model (CompiledConv) is too large for brian2-lif,
    which runs conv graphs with every synapse expanded (targets/brian2_conv.py, ``max_synapses``)."""
    from toolchain.compiled_conv import CompiledConv

    if isinstance(cs, CompiledConv) and "brian2-lif" in names:
        from targets.brian2_conv import DEFAULT_MAX_SYNAPSES, Brian2ConvTarget

        t = (targets or {}).get("brian2-lif")
        Brian2ConvTarget(max_synapses=getattr(t, "max_synapses", DEFAULT_MAX_SYNAPSES),
                         name="brian2-lif").check_size(cs.graph)


def steps_targets(names: list[str], args) -> dict[str, Any]:
    """Instantiate every target (bad options fail here, before anything runs). ``--brian2-codegen`` and
    ``-o NAME.KEY=VALUE`` apply to the steps counterpart of NAME."""
    from targets.registry import get_target, steps_target_name
    from toolchain.cli_deploy import parse_option

    if getattr(args, "brian2_dt", None) is not None:
        raise TargetError("--brian2-dt applies to alpha models; brian2-lif runs on the model's step grid: drop it")
    opts: dict[str, dict] = {}
    if getattr(args, "brian2_codegen", None) is not None:
        opts.setdefault("brian2-lif", {})["codegen"] = args.brian2_codegen
    for text in getattr(args, "option", None) or []:
        target, key, value = parse_option(text)
        opts.setdefault(steps_target_name(target), {})[key] = value
    out = {}
    for n in names:
        try:
            out[n] = get_target(n, **opts.get(n, {}))
        except TypeError as exc:
            raise TargetError(f"bad option for target {n!r}: {exc}; check -o {n}.KEY=VALUE") from None
    return out


# ---- run ---------------------------------------------------------------------------------------------------------

def cmd_run(args) -> int:
    """``snnc run`` of a compiled steps npz: per-layer spike trains and the reconstruction metrics in one npz."""
    from toolchain.atomic import atomic_path
    from toolchain.compiled_conv_io import load_compiled_any as load_compiled_steps
    from toolchain.verify_trains import recon_metrics

    p = Path(args.compiled)
    if p.suffix == ".onnx":
        raise ArtifactError(f"{p} is an ONNX model; compile it first (`snnc compile {p}`) or use `snnc deploy`")
    (name,) = _one_target(args.target, "run")
    target = steps_targets([name], args)[name]
    cs = load_compiled_steps(p)
    refuse_conv_targets(cs, [name], {name: target})
    images, x, ctx = steps_inputs(cs, args)
    default = p.with_name(f"{p.stem}.{name}.{ctx['dataset']}.spikes.npz")
    out = check_output_path(Path(args.out) if args.out else default, "file")
    res = target.run(cs, x)
    trains = [np.asarray(t, dtype=np.uint8) for t in res.trains]
    metrics = recon_metrics(cs.graph, x, trains, images, res.potentials)
    arrays = {"input.trains": x} | {f"layer{k}.trains": t for k, t in enumerate(trains)}
    arrays |= {f"layer{k}.potentials": np.asarray(p) for k, p in enumerate(res.potentials or []) if p is not None}
    meta = {"target": name, "family": "steps", "populations": cs.names, **ctx, "metrics": metrics,
            "wall_s": res.wall_s, "info": {k: v for k, v in res.info.items()
                                           if isinstance(v, (str, int, float, bool, list))},
            "layout": "trains (samples, steps, neurons) uint8 0/1, aligned to the float model's steps"}
    arrays["meta"] = np.array(json.dumps(meta, default=str))
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    n = x.shape[0]
    figures = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    print(f"{name}: {n} samples x {x.shape[1]} steps in {res.wall_s:.2f} s ({res.wall_s / max(n, 1):.4g} s/sample), "
          f"{figures}")
    print(f"wrote {out}")
    return 0


def _one_target(text: str, command: str) -> list[str]:
    names = steps_names(text, "--target")
    if len(names) != 1:
        raise TargetError(f"`snnc {command} --target` takes one target, got {', '.join(names)}; use `snnc verify "
                          f"--targets {','.join(names)}` for several")
    return names


# ---- verify / deploy ---------------------------------------------------------------------------------------------

def _markdown(rep, ctx: dict, compile_text: str, plots: list[str] | None = None) -> str:
    lines = [f"# snnc steps verification: {'PASS' if rep.passed else 'FAIL'}", "",
             f"Model `{ctx.get('model')}` (sha256 {ctx.get('model_sha256', '-')}), {ctx['samples']} images of "
             f"{ctx['dataset']} ({ctx['split']}), Bernoulli inputs p_scale {ctx['p_scale']:g}, T = {ctx['steps']}, "
             f"seed {ctx['seed']}.", "", "| target | kind | verdict | " + " | ".join(rep.reference_metrics) +
             " | wall s |", "|---|---|---|" + "---|" * len(rep.reference_metrics) + "---|",
             "| float (reference) | float | - | " + " | ".join(f"{v:.4f}" for v in rep.reference_metrics.values()) +
             " | - |"]
    for t in rep.targets:
        lines.append(f"| {t.target} | {t.kind} | {'PASS' if t.passed else 'FAIL'} | "
                     + " | ".join(f"{t.metrics[m]:.4f} ({100 * t.metrics_rel[m]:+.2f} %)" for m in rep.reference_metrics
                                  if m in t.metrics) + f" | {t.wall_s:.2f} |")
    lines += ["", "Per population (matched spikes, counts, flips) and gates:", "", "```", rep.summary(), "```", ""]
    if plots:
        lines += [f"Plots (sample {ctx.get('plot_sample', 0)}): " + ", ".join(f"`{p}`" for p in plots), ""]
        lines += [f"![{p}]({p})" for p in plots] + [""]
    lines += ["Compiled form:", "", "```", compile_text, "```", ""]
    return "\n".join(lines)


def write_steps_folder(rep, out: Path, ctx: dict, cs, extra: dict | None = None,
                       plots: dict | None = None) -> Path:
    """Write the report folder of a steps verification at once (toolchain.report.staged_dir: nothing changes on a
    failure): ``extra`` files (name -> writer(path)), ``plots`` (name -> writer(path), e.g.
    toolchain.steps_plots.steps_plot_writers; listed in report.md and report.json), steps_report.json +
    steps_summary.txt, report.md and report.json (last). Returns report.json's path."""
    from toolchain.atomic import atomic_write_text
    from toolchain.report import staged_dir
    from toolchain.verify_trains import write_steps_report

    report = {"family": "steps", "passed": rep.passed, "context": ctx, "targets": [t.target for t in rep.targets],
              "failed_gates": failed_gates(rep),
              "compiled": {"max_steps": cs.max_steps, "layers": cs.manifest.get("layers", [])},
              "verification": rep.to_dict()}
    with staged_dir(out) as stage:
        for fname, writer in (extra or {}).items():
            writer(stage / fname)
        written = []
        for fname, writer in (plots or {}).items():
            writer(stage / fname)
            written.append(fname)
        report["plots"] = written
        write_steps_report(rep, stage)
        atomic_write_text(stage / "report.md", _markdown(rep, ctx, steps_compile_summary(cs), written))
        atomic_write_text(stage / "report.json", json.dumps(report, indent=1, allow_nan=False, default=str) + "\n")
    return out / "report.json"


def failed_gates(rep) -> list[str]:
    """One line per failed gate: 'target: gate [population] value vs min|max limit'."""
    return [f"{t.target}: {g.name}{'' if g.layer is None else ' [' + g.layer + ']'} {g.value:.6g} vs {g.kind} "
            f"{g.limit:g}" for t in rep.targets for g in t.gates if not g.passed] + \
        [f"{g.name}: {g.note}" for g in rep.cross_gates if not g.passed]


def verify_and_report(cs, names: list[str], args, out: Path, model_path: Path,
                      extra: dict | None = None) -> int:
    """Check inputs and targets, run verify_steps, write the report folder at the end (nothing on failure), print
    the summary; 0 when every gate passed, 1 otherwise."""
    from toolchain.artifact import model_hash
    from toolchain.steps_plots import steps_plot_writers
    from toolchain.verify_trains import DEFAULT_MARGIN, verify_steps

    targets = steps_targets(names, args)
    refuse_conv_targets(cs, names, targets)
    images, x, ctx = steps_inputs(cs, args)
    margin = args.margin if getattr(args, "margin", None) is not None else DEFAULT_MARGIN
    if not quiet(args):
        print(f"verify: {x.shape[0]} samples x {x.shape[1]} steps on {', '.join(names)} against the float model",
              file=sys.stderr, flush=True)
    sample = int(getattr(args, "plot_sample", 0) or 0)
    if not 0 <= sample < x.shape[0]:
        raise DataError(f"--plot-sample {sample} is outside the {x.shape[0]} samples; pass 0..{x.shape[0] - 1}")
    runs = {name: t.run(cs, x) for name, t in targets.items()}      # kept for the plots
    rep = verify_steps(cs, x, images, runs, tolerance=1, margin=margin)
    ctx.update(model=str(model_path), model_sha256=model_hash(model_path), margin=margin, tolerance=1,
               plot_sample=sample)
    plots = steps_plot_writers(cs, x, images, {n: r.trains for n, r in runs.items()}, sample)
    path = write_steps_folder(rep, out, ctx, cs, extra, plots)
    print(rep.summary())
    for g in failed_gates(rep):
        print(f"  gate failed: {g}")
    print(f"report: {path}")
    return 0 if rep.passed else 1


def quiet(args) -> bool:
    return bool(getattr(args, "quiet", False))


def cmd_verify(args) -> int:
    """``snnc verify`` of a steps model."""
    from toolchain.cli_nir import peer_names

    names = steps_names(args.targets, "--targets")
    names += [n for n in peer_names(getattr(args, "nir_peers", None)) if n not in names]
    default = Path("runs") / f"verify-{Path(args.model).stem}"
    out = check_output_path(Path(args.out) if args.out else default, "folder")
    cs = load_steps_model(args.model, args)
    return verify_and_report(cs, names, args, out, Path(args.model))


def cmd_deploy(args) -> int:
    """``snnc deploy`` of a steps model: compile (unless given compiled), run one target, verify, report."""
    from toolchain.compiled_conv_io import save_compiled_any as save_compiled_steps

    (name,) = _one_target(args.target, "deploy")
    model = Path(args.model)
    default = Path("runs") / f"deploy-{model.stem}-{args.target.strip()}"
    out = check_output_path(Path(args.out) if args.out else default, "folder")
    cs = load_steps_model(model, args)
    print(steps_compile_summary(cs))
    extra = {} if model.suffix == ".npz" else {"compiled.npz": lambda path: save_compiled_steps(cs, path)}
    rc = verify_and_report(cs, [name], args, out, model, extra=extra)
    if extra:
        print(f"wrote {out / 'compiled.npz'}")
    return rc
