"""Compiler entry for steps-time graphs (toolchain/ir.py): Dense -> LIF chains onto Lava's stock Dense and LIF.

``compile_graph(graph, max_steps)`` lowers each (synapse, population) pair with its own module
(toolchain/lower_dense.py, toolchain/lower_lif.py) and returns a :class:`toolchain.compiled_steps.CompiledSteps`
(saved by toolchain/compiled_steps_io.py). Node kinds without a lowering (Readout, AlphaOnce, anything but Dense
synapses) are refused with a CompileError before anything is quantized.
"""
from __future__ import annotations

import numpy as np

from toolchain.compiled_steps import MAX_STEPS, CompiledSteps, validate_compiled_steps
from toolchain.errors import CompileError
from toolchain.ir import LIF, Dense, Graph, lif_chain
from toolchain.lower_lif import THRESHOLD_MODES, lower_lif_layer
from toolchain.quantize import MANTISSA, STATE_SHIFT, UV_MAX, VTH_MAX, VTH_MIN, WEIGHT_BITS
from toolchain.steps_calibration import DEFAULT_RANGE_MARGIN, check_range_options, measure_steps_ranges


V_FLOOR_THRESHOLDS = UV_MAX / ((1 << STATE_SHIFT) * VTH_MIN)   # ~512: v's 24-bit floor at the smallest scale


class _Margin:
    """Measured maxima x (1 + margin): what the calibrated range checks bound (threshold units). A neuron whose
    negative potential would force its scale below VTH_MIN (the 24-bit v floor, -(2**23 - 1), reached at fewer
    than v_neg thresholds) is not refused: its bound is capped at V_FLOOR_THRESHOLDS, so it keeps scale VTH_MIN
    and its v saturates at -(2**23 - 1) = -512 thresholds below that depth, as Lava's (and Loihi's) v does
    (hw_sim counts the saturations; ``floored``: those neurons)."""

    def __init__(self, measured, margin: float) -> None:
        self.a_in = measured.a_in * (1.0 + margin)
        v_neg = measured.v_neg * (1.0 + margin)
        self.floored = v_neg > V_FLOOR_THRESHOLDS
        self.v_neg = np.minimum(v_neg, V_FLOOR_THRESHOLDS)


def check_lowering_options(max_steps, weight_bits, scale, threshold, example_steps: int) -> None:
    """CompileError unless max_steps is an integer in [1, MAX_STEPS], weight_bits one of MANTISSA's, scale None or
    an integer in [VTH_MIN, VTH_MAX] and threshold one of THRESHOLD_MODES (the options every steps lowering takes;
    ``example_steps`` is the max_steps the message suggests)."""
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or not 1 <= max_steps <= MAX_STEPS:
        raise CompileError(f"max_steps={max_steps!r} must be an integer in [1, {MAX_STEPS}]; fix: pass the number "
                           f"of steps per sample, e.g. max_steps={example_steps}")
    if weight_bits not in MANTISSA:
        raise CompileError(f"weight_bits={weight_bits!r} is not supported; fix: use 8 (default) or 9")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, np.integer))
                              or not VTH_MIN <= scale <= VTH_MAX):
        raise CompileError(f"scale={scale!r} must be an integer in [{VTH_MIN}, {VTH_MAX}] (integer units per "
                           "threshold, 17-bit); fix: leave it unset for the automatic choice")
    if threshold not in THRESHOLD_MODES:
        raise CompileError(f"threshold={threshold!r} is not one of {THRESHOLD_MODES}; fix: use 'neuron' (default)")


def calibration_trains(calibration_spikes, n_in: int) -> np.ndarray:
    """``calibration_spikes`` as an array, checked to be (samples >= 1, steps >= 1, n_in) trains of 0 and 1;
    CompileError otherwise."""
    xc = np.asarray(calibration_spikes)
    if xc.ndim != 3 or xc.shape[0] < 1 or xc.shape[1] < 1 or xc.shape[2] != n_in \
            or xc.dtype.kind not in "biuf" or not np.all((xc == 0) | (xc == 1)):
        raise CompileError(f"calibration_spikes must be (samples, steps, {n_in}) trains of 0 and 1, got shape "
                           f"{xc.shape} {xc.dtype}; fix: pass Bernoulli-encoded training images")
    return xc


def checked_exponent(exponent: str, weight_blocks: int) -> str:
    """``exponent`` ("mantissa" or "fine") if it can be compiled with ``weight_blocks``; CompileError for an unknown
    one or "fine" with one block."""
    if exponent not in ("mantissa", "fine") or (exponent == "fine" and weight_blocks != 2):
        raise CompileError(f"exponent={exponent!r} with weight_blocks={weight_blocks!r}: use 'fine' with "
                           "weight_blocks=2 (the grid of both weight blocks, the default there), 'mantissa' (the "
                           "first block's grid), or leave it unset")
    return exponent


def compile_graph(graph: Graph, max_steps: int, weight_bits: int = WEIGHT_BITS, scale: int | None = None,
                  threshold: str = "neuron", source_hash: str = "", range_mode: str = "worst-case",
                  calibration_spikes: np.ndarray | None = None, range_margin: float = DEFAULT_RANGE_MARGIN,
                  calibration_source: str = "", weight_blocks: int = 2, exponent: str = "mantissa") -> CompiledSteps:
    """Lower a feed-forward steps graph for samples of up to ``max_steps`` steps (the worst-case range checks of
    leak-free layers grow with it). weight_bits: 8 (Loihi 2 / Lava default) or 9; scale: integer units per
    threshold for every neuron (None = automatic); threshold: "neuron" (default: each neuron's weights scaled to
    its own range, one vth per neuron) or "layer" (one vth per layer).
    range_mode: "worst-case" (default, safe: no input can wrap u or saturate v) or "calibrated": the ranges the
    float model reaches on ``calibration_spikes`` ((N, T, n_in) 0/1 trains, e.g. Bernoulli-coded training
    images; toolchain/steps_calibration.py) times (1 + ``range_margin``) bound the scales instead; inputs beyond
    the calibration may then saturate (hw_sim counts the events). A neuron whose calibrated negative potential is
    deeper than v's 24-bit floor at the smallest scale (~512 thresholds) keeps scale VTH_MIN and saturates there
    (manifest ``v_floor_neurons``) instead of refusing the model; |a_in| beyond 16 bits is still refused. calibration_source: recorded in the manifest.
    weight_blocks: 2 (default: where a layer's exponent is above the smallest, a second Dense block holds each
    weight's rounding residual at the smallest exponent and feeds the same LIF: a finer weight grid, e.g. about
    10 bits from two 8-bit blocks, for up to twice the synapses; docs/compiler.md) or 1 (one Dense per layer).
    exponent: "mantissa" (default: each layer's weight exponent is chosen for the first block's grid) or "fine"
    (needs weight_blocks=2: chosen for the grid of both blocks, 2**fine_exp / scale, so scales grow up to what the
    ranges allow; toolchain/lower_lif._best_exp; better spike agreement for +11-13 % synapses, but hw_sim-lif runs
    its larger integer weights ~1.7x slower: docs/compiler.md "Exponent for two blocks")."""
    if not isinstance(graph, Graph):
        raise CompileError(f"compile_graph needs a toolchain.ir.Graph, got {type(graph).__name__}; fix: build one "
                           "with toolchain.ir.lif_chain or load an artifact")
    if graph.time != "steps":
        raise CompileError(f"compile_graph lowers steps graphs (LIF family); this graph's time is {graph.time!r}; "
                           "fix: compile alpha models with toolchain.compiler.compile_network")
    check_lowering_options(max_steps, weight_bits, scale, threshold, example_steps=15)
    check_range_options(range_mode, range_margin, calibration_spikes)
    if weight_blocks not in (1, 2) or isinstance(weight_blocks, bool):
        raise CompileError(f"weight_blocks={weight_blocks!r} must be 1 or 2 (Dense blocks per layer); fix: use 2 for "
                           "a finer weight grid from a second block of rounding residuals, else 1")
    exponent = checked_exponent(exponent, weight_blocks)
    try:
        pairs = graph.chain()
    except ValueError as exc:
        raise CompileError(f"the graph is not a feed-forward chain ({exc}); fix: build it with "
                           "toolchain.ir.lif_chain") from exc
    for syn_name, pop_name in pairs:
        syn, pop = graph.nodes[syn_name], graph.nodes[pop_name]
        if not isinstance(syn, Dense):
            raise CompileError(f"node {syn_name!r} is a {type(syn).__name__}, which compile_graph cannot lower "
                               "yet (supported: Dense synapses); fix: use Dense layers")
        if not isinstance(pop, LIF):
            raise CompileError(f"node {pop_name!r} is a {type(pop).__name__}, which has no lowering onto Lava's "
                               "stock processes yet (supported: LIF populations); fix: use LIF populations")
    measured = [None] * len(pairs)
    calibration = None
    if range_mode == "calibrated":
        xc = calibration_trains(calibration_spikes, graph.nodes[graph.input_name].n)
        measured = measure_steps_ranges(graph, xc)
        calibration = {"samples": int(xc.shape[0]), "steps": int(xc.shape[1]), "margin": float(range_margin),
                       "source": calibration_source,
                       "quantities": "per neuron over every sample and step, threshold units: |a_in| per step, "
                                     "negative v, pre-reset v; the bound is the maximum x (1 + margin)"}
    layers, entries = [], []
    for (syn_name, pop_name), meas in zip(pairs, measured):
        cal = None if meas is None else _Margin(meas, float(range_margin))
        layer, entry = lower_lif_layer(syn_name, graph.nodes[syn_name], pop_name, graph.nodes[pop_name],
                                       int(max_steps), int(weight_bits), None if scale is None else int(scale),
                                       threshold, cal, meas, int(weight_blocks), exponent)
        if cal is not None:
            entry["v_floor_neurons"] = int(cal.floored.sum())
            entry["v_floor_thresholds"] = float(UV_MAX / ((1 << STATE_SHIFT) * np.maximum(layer.scale, 1)).min())
        layers.append(layer)
        entries.append(entry)
    manifest = {"kind": "steps", "max_steps": int(max_steps), "weight_bits": int(weight_bits), "threshold": threshold,
                "weight_blocks": int(weight_blocks), "exponent": exponent,
                "source_hash": source_hash, "range_mode": range_mode, "calibration": calibration, "layers": entries,
                "notes": ["layer k lags the float model by k + 2 Lava steps (source + one per Dense); targets "
                          "shift results back", "clamp of V at v_th does not change spikes with reset to zero"]}
    return validate_compiled_steps(CompiledSteps(tuple(layers), int(max_steps), manifest, graph.input_name))


def deployed_graph(cs: CompiledSteps) -> Graph:
    """The float steps graph that lava-fixed realises: weights w_eff / vth per neuron (quantized weights in
    threshold units), leak = 1 - dv / 4096, threshold 1, strict test (Lava's ``v > vth << 6``). The integer run
    equals :func:`toolchain.lif_reference.simulate` of this graph apart from the truncation of v toward zero each
    step (measured: 0.03 % / 0.2 % of the hidden / output spikes of benchmarks/lif_targets.py's net): it
    separates quantization error from the mapping."""
    validate_compiled_steps(cs)
    weights = [cl.effective / np.maximum(cl.vth, 1)[:, None] for cl in cs.layers]
    neurons = [LIF(cl.n_out, leak=cl.leak_eff, v_th=1.0, strict=True) for cl in cs.layers]
    graph = lif_chain(weights, neurons, {"deployed_from": "CompiledSteps"})
    names = {f"fc{k}": cl.synapse for k, cl in enumerate(cs.layers)} | {f"layer{k}": cl.name
                                                                       for k, cl in enumerate(cs.layers)}
    return Graph({names.get(k, k): v for k, v in graph.nodes.items()},
                 tuple((names.get(a, a), names.get(b, b)) for a, b in graph.edges), "steps", graph.metadata)
