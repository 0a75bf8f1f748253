"""Alpha-family compiler: TemporalNetwork / continuous-time IR graph (float alpha neurons) -> CompiledNetwork
(Lava CUBA LIF, fixed point), plus :func:`compile_any`, the one entry for graphs of either family.

Structure (docs/compiler.md, section 0):

* :func:`compile_network` (TemporalNetwork; signature and output unchanged) converts the network to its IR graph
  (toolchain.ir_alpha.graph_from_temporal) and calls :func:`compile_alpha_graph`;
* :func:`compile_alpha_graph` (this module) does the orchestration: option checks, the time grid (S, the 12-bit
  decay D, ``compensate_tau``), the window, the calibration run (toolchain/calibration.py) and the manifest;
* toolchain/lower_alpha.py lowers each (Dense, AlphaOnce) pair: pulse block and pulse copies, per-neuron
  thresholds, centring offsets, range checks (toolchain/alpha_ranges.py), the input block through
  toolchain/lower_dense.py; all share the quantization core toolchain/quantize.py;
* :func:`compile_any` dispatches on ``graph.time``: "steps" -> toolchain.steps_compiler.compile_graph (LIF family,
  CompiledSteps), "continuous" -> :func:`compile_alpha_graph` (CompiledNetwork).

Mapping (derivation and measured errors: docs/compiler.md, format: docs/compiled-format.md):

* time grid: S steps per model time unit, h = 1/S; input at time t -> source column round(t S); a spike of
  layer l acts on layer l + 1 at the end of its step, on average h/2 late, so layer l's inputs lag by l/2 steps
  on average: its pulses are placed at round(t S + l/2) and its reported columns are read back l/2 steps earlier
  (``CompiledLayer.time_offset_steps``), which removes the systematic lag (docs/compiler.md);
* alpha synapse = CUBA LIF with equal current and voltage decay d = exp(-tau h), deployed dd = 1 - D/4096:
  float: du = dv = 1 - d, w_lava = w h d, vth = theta;
  fixed: D = round(4096 (1 - d)), du = D - 1, dv = D (Lava's u decay carries an offset of 1),
  w_int = round(w h dd vth_j / theta / 2**wexp) for neuron j, with the smallest wexp that fits the mantissa:
  8 bits mixed sign = even values in [-256, 254] (Lava masks the LSB) from wexp = -1 (the right shift of even
  sums is exact: the 9-bit integer grid), 9 bits = [-256, 255] from wexp = 0; ordinary inputs and pulses are two
  synapse blocks with their own exponents, and a pulse too large for one mantissa goes out on up to
  ``max_pulse_copies`` parallel axons (pulse weights are typically 5x larger than input weights);
* vth (17-bit mantissa, spike when v > vth_j * 64) is chosen per neuron unless given (``threshold="layer"``: one
  per layer): the largest value <= 2**16 that the neuron's worst-case ranges, largest input weight and pulse
  copies allow, which scales each neuron's weights to its own range (finest relative weight grid);
* worst-case magnitudes (16-bit input per step, 24-bit wrapping u, 24-bit saturating v) are checked per neuron:
  a value that can overflow raises CompileError naming the layer, the neuron, the value, the limit, what the user
  asked for and the fixes that apply; ``range_mode="calibrated"`` replaces the worst case by the ranges measured
  on training inputs (toolchain/calibration.py) times (1 + margin), and hw_sim counts the saturations that inputs
  beyond them cause;
* a layer whose largest weight quantization error exceeds ``quant_warn_fraction`` (0.01) of theta gets a warning
  in the manifest (``warnings``), which ``snnc compile`` prints.
"""
from __future__ import annotations

import inspect
import math
import platform
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.network import AlphaLayer, TemporalNetwork
from toolchain.calibration import (
    DEFAULT_CALIBRATION_SAMPLES, DEFAULT_RANGE_MARGIN, Calibration, check_range_options, measure_ranges,
    training_input_times,
)
from toolchain.compiled import CompiledNetwork, sum_pulse_copies
from toolchain.compiled_io import check_sizes
from toolchain.compiled_steps import CompiledSteps
from toolchain.errors import ArtifactError, CompileError
from toolchain.ir import Graph
from toolchain.ir_alpha import graph_from_temporal, temporal_from_graph
from toolchain.lower_alpha import (  # noqa: F401  (MAX_PULSE_COPIES, QUANT_WARN_FRACTION: historical names)
    MAX_PULSE_COPIES, QUANT_WARN_FRACTION, AlphaGrid, AlphaOptions, layer_offset, lower_alpha_layer, pulse_columns,
)
from toolchain.quantize import (  # noqa: F401  (re-exported: the alpha chain's historical names)
    A_IN_BITS, A_IN_MAX, DECAY_BITS, DECAY_UNITY, MANTISSA, STATE_SHIFT, UV_BITS, UV_MAX, VTH_AUTO_MAX, VTH_BITS,
    VTH_MAX, VTH_MIN, WEIGHT_BITS, WEIGHT_EXP_MAX, choose_weight_exp, mantissa_round, weight_exp_min,
)
from toolchain.steps_compiler import compile_graph
from toolchain.validate import validate_network

DEFAULT_STEPS_PER_UNIT = 40
MAX_STEPS_PER_UNIT = 1 << 20
THRESHOLD_MODES = ("neuron", "layer")
DEFAULT_HORIZON_MARGIN = 1.0  # time units simulated after latency + 1 (the last expected output)


def decay_constant(tau: float, steps_per_unit: float) -> tuple[float, int]:
    """(d, D): float per-step decay d = exp(-tau / S) and its 12-bit code D = round(4096 (1 - d))."""
    d = math.exp(-tau / steps_per_unit)
    return d, int(round(DECAY_UNITY * (1.0 - d)))


def effective_tau(D: int, steps_per_unit: float) -> float:
    """Decay rate (1 / time unit) that the 12-bit decay D realises on a grid of S steps per unit."""
    return -steps_per_unit * math.log(1.0 - D / DECAY_UNITY)


def _check_grid(net: TemporalNetwork, S: float) -> tuple[float, int]:
    if not (isinstance(S, (int, np.integer)) and not isinstance(S, bool)):
        raise CompileError(f"steps_per_unit must be an integer, got {S!r}; fix: pass e.g. steps_per_unit=32")
    if S < 2 or S > MAX_STEPS_PER_UNIT:
        raise CompileError(
            f"steps_per_unit={S} is outside [2, {MAX_STEPS_PER_UNIT}]; fix: use e.g. {DEFAULT_STEPS_PER_UNIT}"
        )
    d, D = decay_constant(net.tau, S)
    if D < 1:
        s_max = int(net.tau / -math.log(1.0 - 0.5 / DECAY_UNITY))
        raise CompileError(
            f"steps_per_unit={S} is too large for tau={net.tau:g}: the 12-bit decay 4096 (1 - exp(-tau/S)) = "
            f"{DECAY_UNITY * (1 - d):.3g} rounds to 0 (limit: >= 1, i.e. no decay at all); "
            f"fix: use steps_per_unit <= {s_max}"
        )
    if D >= DECAY_UNITY:
        s_min = int(math.ceil(net.tau / math.log(2 * DECAY_UNITY))) + 1
        raise CompileError(
            f"steps_per_unit={S} is too small for tau={net.tau:g}: the 12-bit decay rounds to {D} "
            f"(limit: <= {DECAY_UNITY - 1}; the neuron would forget everything in one step); "
            f"fix: use steps_per_unit >= {s_min}"
        )
    return d, D


def _check_finite(net: TemporalNetwork) -> None:
    for k, layer in enumerate(net.layers):
        for field in ("weights", "pulse_times", "pulse_weights"):
            a = getattr(layer, field)
            if not np.all(np.isfinite(a)):
                raise CompileError(f"layer{k}.{field} contains NaN or inf; fix: retrain or repair the model")
    for field in ("tau", "theta", "latency"):
        v = getattr(net, field)
        if not math.isfinite(v):
            raise CompileError(f"{field}={v} is not finite; fix: repair the model's {field}")


def default_window(net: TemporalNetwork, steps_per_unit: float, margin: float = DEFAULT_HORIZON_MARGIN) -> int:
    """Steps per sample window: covers crossings up to max(latency + 1, last pulse, 1) + margin time units."""
    last_pulse = max((float(l.pulse_times.max()) for l in net.layers if l.n_pulses), default=0.0)
    horizon = max(net.latency + 1.0, last_pulse, 1.0) + margin
    return int(math.ceil(horizon * steps_per_unit)) + 1


def _versions() -> dict:
    v = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        from importlib.metadata import version

        v["lava-nc"] = version("lava-nc")
    except Exception:  # lava is optional for compiling
        v["lava-nc"] = None
    return v


def _check_options(horizon_margin: float, threshold: str, max_pulse_copies: int, weight_bits: int, range_mode: str,
                   range_margin: float, calibration_times: np.ndarray | None, quant_warn_fraction: float) -> None:
    """CompileError for an option outside what compile_network accepts (vth and the grid are checked later)."""
    if not (isinstance(horizon_margin, (int, float)) and math.isfinite(horizon_margin) and horizon_margin >= 0):
        raise CompileError(f"horizon_margin={horizon_margin!r} must be a finite number of time units >= 0; "
                           "fix: e.g. 1.0 (the default) or 2.0 when the verifier reports 'late' spikes")
    if threshold not in THRESHOLD_MODES:
        raise CompileError(f"threshold={threshold!r} is not supported; fix: use one of {', '.join(THRESHOLD_MODES)}")
    if isinstance(max_pulse_copies, bool) or not isinstance(max_pulse_copies, (int, np.integer)) \
            or not 1 <= max_pulse_copies <= 64:
        raise CompileError(f"max_pulse_copies={max_pulse_copies!r} must be an integer in [1, 64]; fix: e.g. 8")
    if weight_bits not in MANTISSA:
        raise CompileError(f"weight_bits={weight_bits!r} is not supported; fix: use 8 (Loihi 2) or 9 (Loihi 1)")
    check_range_options(range_mode, range_margin, calibration_times)
    if not (isinstance(quant_warn_fraction, (int, float)) and quant_warn_fraction > 0):
        raise CompileError(f"quant_warn_fraction={quant_warn_fraction!r} must be a number > 0 (fraction of theta); "
                           f"fix: e.g. {QUANT_WARN_FRACTION}")


def compile_network(net: TemporalNetwork, steps_per_unit: int = DEFAULT_STEPS_PER_UNIT, vth: int | None = None,
                    compensate_tau: bool = False, source_hash: str = "", window: int | None = None,
                    horizon_margin: float = DEFAULT_HORIZON_MARGIN, weight_bits: int = WEIGHT_BITS,
                    centre: bool = True, threshold: str = "neuron",
                    max_pulse_copies: int = MAX_PULSE_COPIES, range_mode: str = "worst-case",
                    calibration_times: np.ndarray | None = None, range_margin: float = DEFAULT_RANGE_MARGIN,
                    calibration_source: str = "", quant_warn_fraction: float = QUANT_WARN_FRACTION
                    ) -> CompiledNetwork:
    """Quantize and map ``net`` onto Lava CUBA LIF neurons (fixed and float mapping).

    Converts ``net`` to its IR graph (toolchain.ir_alpha.graph_from_temporal) and compiles that with
    :func:`compile_alpha_graph`; the options are that function's.
    """
    _check_options(horizon_margin, threshold, max_pulse_copies, weight_bits, range_mode, range_margin,
                   calibration_times, quant_warn_fraction)
    if not isinstance(net, TemporalNetwork):
        raise CompileError(f"compile_network needs a TemporalNetwork, got {type(net).__name__}; "
                           "fix: load the model with toolchain.artifact.load_onnx")
    _check_finite(net)
    validate_network(net, "model")
    try:
        graph = graph_from_temporal(net)
    except ArtifactError as exc:
        raise CompileError(f"the model cannot be expressed as an IR graph: {exc}") from None
    return compile_alpha_graph(
        graph, steps_per_unit=steps_per_unit, vth=vth, compensate_tau=compensate_tau, source_hash=source_hash,
        window=window, horizon_margin=horizon_margin, weight_bits=weight_bits, centre=centre, threshold=threshold,
        max_pulse_copies=max_pulse_copies, range_mode=range_mode, calibration_times=calibration_times,
        range_margin=range_margin, calibration_source=calibration_source, quant_warn_fraction=quant_warn_fraction)


def compile_alpha_graph(graph: Graph, steps_per_unit: int = DEFAULT_STEPS_PER_UNIT, vth: int | None = None,
                        compensate_tau: bool = False, source_hash: str = "", window: int | None = None,
                        horizon_margin: float = DEFAULT_HORIZON_MARGIN, weight_bits: int = WEIGHT_BITS,
                        centre: bool = True, threshold: str = "neuron",
                        max_pulse_copies: int = MAX_PULSE_COPIES, range_mode: str = "worst-case",
                        calibration_times: np.ndarray | None = None, range_margin: float = DEFAULT_RANGE_MARGIN,
                        calibration_source: str = "", quant_warn_fraction: float = QUANT_WARN_FRACTION
                        ) -> CompiledNetwork:
    """Quantize and map a continuous-time graph Input -> Dense -> AlphaOnce -> Dense -> AlphaOnce ... onto Lava
    CUBA LIF neurons (fixed and float mapping). This function fixes the grid, the window and the calibration and
    writes the manifest; each (Dense, AlphaOnce) pair is lowered by toolchain.lower_alpha.lower_alpha_layer. The
    compiled layers take the AlphaOnce nodes' names; ``CompiledNetwork.source`` is the graph's TemporalNetwork
    (toolchain.ir_alpha.temporal_from_graph).

    steps_per_unit: S, integer steps per model time unit.
    vth:            one 17-bit threshold mantissa for every neuron; None = automatic (see ``threshold``).
    threshold:      "neuron" (default): each neuron gets the largest threshold its own worst-case ranges allow,
                    i.e. its weights are scaled to its own range (finest relative weight grid); "layer": one
                    threshold per layer (the smallest neuron's).
    max_pulse_copies: a pulse whose weights exceed one mantissa is sent on up to this many parallel axons (Dense
                    sums them) before the pulse block's exponent grows; 1 = one axon per pulse.
    compensate_tau: the 12-bit decay D realises tau_eff = -S ln(1 - D/4096) != tau. With True, the time grid is
                    stretched to S' = S tau / tau_eff steps per unit (a float), so the deployed decay per model
                    time unit equals tau exactly (float and fixed mappings both use decay 1 - D/4096).
    window:         steps per sample window (default: :func:`default_window`).
    weight_bits:    8 (Loihi 2, Lava's default; even mantissas) or 9 (Loihi 1: 1-9 bit weights).
    centre:         place layer l's pulses l/2 steps later and read its spikes l/2 steps earlier, cancelling
                    the mean lag of grid spikes (docs/compiler.md); False reproduces the plain mapping.
    range_mode:     "worst-case" (default, safe: no input can overflow u or saturate v) bounds every neuron by all
                    its inputs and pulses in one step; "calibrated" bounds it by the ranges measured on
                    ``calibration_times`` (N, n_in) input spike times (time units) times (1 + ``range_margin``),
                    which allows larger thresholds (finer weights) for wide layers; inputs beyond the calibration
                    may then saturate v / wrap u, which hw_sim counts (``v_saturations``, ``u_wraps``).
    calibration_source: a description of the calibration inputs recorded in the manifest.
    quant_warn_fraction: a layer whose largest weight quantization error exceeds this fraction of theta gets a
                    warning (manifest ``warnings``, printed by ``snnc compile``); docs/compiler.md justifies 0.01.
    """
    if not isinstance(graph, Graph):
        raise CompileError(f"compile_alpha_graph needs a toolchain.ir.Graph, got {type(graph).__name__}; fix: "
                           "build one with toolchain.ir_alpha.graph_from_temporal or load an artifact")
    if graph.time != "continuous":
        raise CompileError(f"compile_alpha_graph lowers continuous-time (alpha) graphs; this graph's time is "
                           f"{graph.time!r}; fix: compile it with toolchain.compiler.compile_any or "
                           "toolchain.steps_compiler.compile_graph")
    try:
        net = temporal_from_graph(graph, "the graph")
    except ArtifactError as exc:
        raise CompileError(str(exc)) from None
    _check_options(horizon_margin, threshold, max_pulse_copies, weight_bits, range_mode, range_margin,
                   calibration_times, quant_warn_fraction)
    _check_finite(net)
    validate_network(net, "model")
    pairs = [(graph.nodes[a], b, graph.nodes[b]) for a, b in graph.chain()]
    d, D = _check_grid(net, steps_per_unit)
    tau_eff = effective_tau(D, steps_per_unit)
    S = float(steps_per_unit)
    if compensate_tau:
        S = steps_per_unit * net.tau / tau_eff
        d = 1.0 - D / DECAY_UNITY
    grid = S if compensate_tau else steps_per_unit
    if vth is not None:
        if isinstance(vth, bool) or not isinstance(vth, (int, np.integer)) or not 1 <= vth <= VTH_MAX:
            raise CompileError(f"vth={vth!r} is not an integer in [1, {VTH_MAX}] (17-bit threshold); "
                               "fix: pass e.g. vth=8192 or leave vth unset for the automatic choice")
    W = default_window(net, S, horizon_margin) if window is None else int(window)
    check_sizes(W, net.sizes, f"steps_per_unit={steps_per_unit}", error=CompileError)
    cols = [pulse_columns(pop.pulse_times, S, layer_offset(k, centre))[0] for k, (_, _, pop) in enumerate(pairs)]
    last_col = max((int(c.max()) for c in cols if c.size), default=0)
    if W < last_col + 2 or W < 3:
        raise CompileError(f"window={W} steps is too short: it must exceed the last pulse column {last_col} "
                           f"by 2 and be >= 3; fix: leave window unset or pass window >= {max(3, last_col + 2)}")

    calib: Calibration | None = None
    if range_mode == "calibrated":
        calib = measure_ranges(net, calibration_times, S, W, cols, 1.0 - D / DECAY_UNITY)
    opts = AlphaOptions(vth=None if vth is None else int(vth), range_mode=range_mode, threshold=threshold,
                        max_copies=max_pulse_copies, margin=float(range_margin), weight_bits=int(weight_bits),
                        centre=bool(centre), quant_warn_fraction=quant_warn_fraction)
    lowered_grid = AlphaGrid(S=S, D=D, d=d, window=W, theta=net.theta)
    lowered = [lower_alpha_layer(k, name, syn, pop, lowered_grid, opts, None if calib is None else calib.layers[k])
               for k, (syn, name, pop) in enumerate(pairs)]
    manifest = {
        "format": "snnc-compiled",
        "source_hash": source_hash,
        "steps_per_unit": S if compensate_tau else int(steps_per_unit),
        "steps_per_unit_requested": int(steps_per_unit),
        "window": W,
        "tau": net.tau,
        "tau_eff": net.tau if compensate_tau else tau_eff,
        "tau_eff_uncompensated": tau_eff,
        "tau_rel_error": 0.0 if compensate_tau else tau_eff / net.tau - 1.0,
        "compensate_tau": bool(compensate_tau),
        "decay_D": D,
        "decay_float": d,
        "theta": net.theta,
        "latency": net.latency,
        "encoding": net.encoding,
        "state_shift": STATE_SHIFT,
        "uv_bits": UV_BITS,
        "a_in_bits": A_IN_BITS,
        "range_mode": range_mode,
        "calibration": None if calib is None else {
            "samples": calib.samples, "margin": float(range_margin), "source": calibration_source,
            "quantities": "per neuron, while it can still spike: |a_in| per step, |u|, negative v, positive v",
        },
        "quant_warn_fraction": float(quant_warn_fraction),
        "warnings": [lw.warning for lw in lowered if lw.warning is not None],
        "layers": [lw.manifest for lw in lowered],
        "tool_versions": _versions(),
    }
    return CompiledNetwork(steps_per_unit=grid, window=W, layers=tuple(lw.layer for lw in lowered), source=net,
                           manifest=manifest)


def compile_any(graph: Graph, **options) -> CompiledNetwork | CompiledSteps:
    """Compile an IR graph of either family, dispatching on ``graph.time``: "steps" (LIF family) ->
    toolchain.steps_compiler.compile_graph (a CompiledSteps; ``max_steps`` is required), "continuous" (alpha
    family) -> :func:`compile_alpha_graph` (a CompiledNetwork). ``options`` are the chosen entry's keyword
    arguments; an option the entry does not take is a CompileError naming the entry's options."""
    if not isinstance(graph, Graph):
        raise CompileError(f"compile_any needs a toolchain.ir.Graph, got {type(graph).__name__}; fix: load the "
                           "artifact with toolchain.artifact_graph.load_graph (or build the graph with toolchain.ir)")
    entry = compile_graph if graph.time == "steps" else compile_alpha_graph
    params = inspect.signature(entry).parameters
    unknown = sorted((set(options) - set(params)) | ({"graph"} & set(options)))
    if unknown:
        accepted = ", ".join(p for p in params if p != "graph")
        raise CompileError(f"option(s) {', '.join(unknown)} do not apply to a {graph.time}-time graph "
                           f"({entry.__module__}.{entry.__name__}); fix: use only {accepted}")
    if entry is compile_graph and "max_steps" not in options:
        raise CompileError("a steps-time graph needs max_steps (steps per sample, e.g. max_steps=15); fix: pass "
                           "compile_any(graph, max_steps=...)")
    return entry(graph, **options)

def compile_file(onnx_path: str | Path, calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
                 calibration_dataset: str | None = None, data_dir: str | None = None, **kw) -> CompiledNetwork:
    """Load an ONNX artifact (toolchain.artifact.load_onnx) and compile it; the file's SHA-256 goes in the
    manifest as ``source_hash``. With ``range_mode="calibrated"`` and no ``calibration_times``, the first
    ``calibration_samples`` training images of ``calibration_dataset`` (default: the dataset in the model's
    metadata; read from ``data_dir`` / $SNNC_DATA, else the bundled subset) calibrate the ranges."""
    from toolchain.artifact import load_onnx, model_hash

    path = Path(onnx_path)
    if not path.is_file():
        raise ArtifactError(f"model file {path} does not exist; fix: pass the path of a model.onnx "
                            "written by `snnc train` or toolchain.artifact.save_onnx")
    net = load_onnx(path)
    kw.setdefault("source_hash", model_hash(path))
    if kw.get("range_mode") == "calibrated" and kw.get("calibration_times") is None:
        times, source = training_input_times(net, calibration_dataset, calibration_samples, data_dir)
        kw["calibration_times"] = times
        kw.setdefault("calibration_source", source)
    cn = compile_network(net, **kw)
    cn.manifest["source_path"] = str(path)
    return cn


def deployed_network(cn: CompiledNetwork) -> TemporalNetwork:
    """The float alpha network that the fixed-point mapping realises (for analysis and verification):
    weights w_int 2**e theta / (vth_j h dd) (pulse copies summed) and tau_eff = -S ln(dd), dd = 1 - dv/4096, from the integers
    themselves (so hand-built compiled networks work too). Pulse times stay the source's."""
    S = float(cn.steps_per_unit)
    dvs = {int(cl.dv) for cl in cn.layers}
    if len(dvs) != 1 or any(cl.du != cl.dv - 1 for cl in cn.layers):
        raise CompileError("deployed_network needs alpha layers with one shared decay (du = D - 1, dv = D in every "
                           f"layer), got du/dv {[(cl.du, cl.dv) for cl in cn.layers]}; fix: compile the network "
                           "with toolchain.compiler.compile_network")
    (D,) = dvs
    dd = 1.0 - D / DECAY_UNITY
    layers = []
    for cl, src in zip(cn.layers, cn.source.layers):
        scale = (dd * cl.vth / (S * cn.source.theta))[:, None]  # per neuron
        pulses = sum_pulse_copies(cl.pulse_weights, cl.pulse_source, src.n_pulses)
        layers.append(AlphaLayer(cl.weights * 2.0**cl.weight_exp / scale, src.pulse_times,
                                 pulses * 2.0**cl.pulse_exp / scale))
    return replace(cn.source, layers=tuple(layers), tau=effective_tau(D, S))
