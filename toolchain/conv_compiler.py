"""Compiler entry for convolutional steps graphs (issue [F]): Conv2d / ConvTranspose2d / Flatten / Dense synapses
feeding LIF populations, the last population optionally a Readout, lowered for Lava 0.10 (toolchain/lower_conv.py)
into a :class:`toolchain.compiled_conv.CompiledConv`.

Dense -> LIF pairs are lowered exactly as the Dense chain compiler does (toolchain/lower_lif.py: one scale per
neuron); convolutions get one scale per output channel; a Readout is an off-chip trace of its integer input.
Everything that cannot run is refused with a CompileError before anything is quantized (docs/conv-deploy.md,
"Bad input").
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from toolchain.compiled_conv import CompiledConv, CompiledConvLayer, validate_compiled_conv
from toolchain.errors import CompileError
from toolchain.ir import LIF, Conv2d, ConvTranspose2d, Dense, Flatten, Graph, Readout
from toolchain.lower_conv import check_expressible, lava_mapping, lower_conv_layer
from toolchain.lower_lif import lower_lif_layer
from toolchain.quantize import WEIGHT_BITS
from toolchain.steps_calibration import DEFAULT_RANGE_MARGIN, check_range_options, measure_steps_ranges
from toolchain.steps_compiler import calibration_trains, check_lowering_options, checked_exponent

_CONV_KINDS = (Conv2d, ConvTranspose2d, Flatten, Readout)


def needs_conv_compiler(graph: Graph) -> bool:
    """True for steps graphs holding node kinds the Dense-chain compiler (toolchain/steps_compiler.py) does not
    lower: Conv2d, ConvTranspose2d, Flatten or Readout."""
    return isinstance(graph, Graph) and graph.time == "steps" and any(isinstance(n, _CONV_KINDS)
                                                                      for n in graph.nodes.values())


def check_conv_graph(graph: Graph) -> list[tuple[str, str, str]]:
    """The (flatten, synapse, population) triples of a deployable graph; CompileError naming the node and the fix
    for anything the mapping cannot express."""
    if not isinstance(graph, Graph):
        raise CompileError(f"compile_conv_graph needs a toolchain.ir.Graph, got {type(graph).__name__}")
    if graph.time != "steps":
        raise CompileError(f"compile_conv_graph lowers steps graphs; this graph's time is {graph.time!r}; fix: "
                           "compile alpha models with toolchain.compiler.compile_network")
    try:
        pairs = graph.chain()
    except ValueError as exc:
        raise CompileError(f"the graph is not a feed-forward chain ({exc}); fix: connect input -> synapse -> "
                           "population -> ... with one synapse per population") from exc
    out = []
    for k, (syn_name, pop_name) in enumerate(pairs):
        syn, pop = graph.nodes[syn_name], graph.nodes[pop_name]
        src = graph.sources(syn_name)[0]
        flatten = src if isinstance(graph.nodes[src], Flatten) else ""
        if flatten and isinstance(graph.nodes[graph.sources(flatten)[0]], Flatten):
            raise CompileError(f"{flatten!r} follows another Flatten; fix: use one Flatten view between a "
                               "population and a Dense node")
        if flatten and not isinstance(syn, Dense):
            raise CompileError(f"Flatten {flatten!r} feeds {type(syn).__name__} {syn_name!r}; fix: feed a Flatten "
                               "into a Dense node only (convolutions read the (C, H, W) map directly)")
        if not isinstance(syn, (Dense, Conv2d, ConvTranspose2d)):
            raise CompileError(f"node {syn_name!r} is a {type(syn).__name__}, which has no lowering; fix: use "
                               "Dense, Conv2d or ConvTranspose2d synapses")
        if isinstance(syn, (Conv2d, ConvTranspose2d)):
            check_expressible(syn_name, syn)
        if isinstance(pop, Readout):
            if k != len(pairs) - 1 or graph.targets(pop_name):
                raise CompileError(f"Readout {pop_name!r} feeds further nodes; fix: make the Readout the last "
                                   "population (its potentials are read off-chip)")
        elif not isinstance(pop, LIF):
            raise CompileError(f"node {pop_name!r} is a {type(pop).__name__}, which has no lowering onto Lava's "
                               "stock LIF; fix: use LIF populations (and a Readout last)")
        elif pop.reset != "zero":
            raise CompileError(f"{pop_name}: LIF reset {pop.reset!r} cannot run on Lava's stock LIF, which resets v "
                               "to 0; fix: train with reset='zero'")
        out.append((flatten, syn_name, pop_name))
    return out


def _from_steps_layer(sl, flatten: str, in_shape: tuple) -> CompiledConvLayer:
    """A Dense -> LIF layer of toolchain/lower_lif.py as a CompiledConvLayer (kind 'dense')."""
    return CompiledConvLayer(
        name=sl.name, synapse=sl.synapse, kind="dense", population="lif", flatten=flatten, weights=sl.weights,
        weight_exp=sl.weight_exp, num_weight_bits=sl.num_weight_bits, in_shape=in_shape, out_shape=(sl.n_out, 1, 1),
        stride=(1, 1), padding=(0, 0), output_padding=(0, 0), du=sl.du, dv=sl.dv, vth=sl.vth, scale=sl.scale,
        weights_float=sl.weights_float, du_float=sl.du_float, dv_float=sl.dv_float, vth_float=sl.vth_float,
        leak=sl.leak, v_th=sl.v_th, strict=sl.strict, clamp=sl.clamp, dt_ms=sl.dt_ms, fine_weights=sl.fine_weights,
        fine_exp=sl.fine_exp)


class _Margin:
    """Measured maxima x (1 + margin), threshold units (what the calibrated checks bound)."""

    def __init__(self, measured, margin: float) -> None:
        self.a_in = measured.a_in * (1.0 + margin)
        self.v_neg = measured.v_neg * (1.0 + margin)


def as_compiled_conv(net) -> CompiledConv:
    """A CompiledConv itself, or a CompiledSteps (Dense -> LIF chain) as the equivalent CompiledConv (the same
    integers; used by the conv resource model)."""
    if isinstance(net, CompiledConv):
        return net
    layers = tuple(_from_steps_layer(cl, "", (cl.n_in, 1, 1)) for cl in net.layers)
    return validate_compiled_conv(CompiledConv(layers, net.max_steps, dict(net.manifest), net.input_name))


def compile_conv_graph(graph: Graph, max_steps: int, weight_bits: int = WEIGHT_BITS, scale: int | None = None,
                       threshold: str = "neuron", source_hash: str = "", range_mode: str = "worst-case",
                       calibration_spikes: np.ndarray | None = None, range_margin: float = DEFAULT_RANGE_MARGIN,
                       calibration_source: str = "", weight_blocks: int = 2,
                       max_fan_in: int | None | str = "chip", exponent: str = "mantissa") -> CompiledConv:
    """Lower a convolutional steps graph for samples of up to ``max_steps`` steps.
    weight_bits: 8 or 9; scale: integer units per threshold for every neuron (None = automatic: per neuron for
    Dense layers, per output channel for convolutions); threshold: 'neuron' or 'layer' (one scale per layer).
    range_mode: 'worst-case' (default: no input can overflow) or 'calibrated': the ranges the float model reaches
    on ``calibration_spikes`` ((N, T, n_in) 0/1 trains) times (1 + ``range_margin``) bound the scales (per output
    channel for convolutions); inputs beyond them may saturate (hw_sim counts range events).
    weight_blocks: 2 (default) = where a layer's exponent is above the smallest, a second connection process of
    the same kind and geometry (Conv, Sparse or Dense) holds each weight's rounding residual at the smallest
    exponent and feeds the same population (a finer grid: about 10 bits from two 8-bit blocks, for up to twice
    the synapses; a convolution keeps one block where a block's sum over a channel's taps could leave 24 bits);
    1 = one block per layer (docs/conv-deploy.md).
    max_fan_in: a Dense layer with more inputs is split into ceil(n_in / max_fan_in) groups whose partial sums are
    relayed as graded spikes and summed exactly by the population, one step later (``fan_in_groups``; a neuron's
    dendritic sum cannot span cores); "chip" (default) = the input axons of a core of hw_sim.resources.LOIHI2
    (4,096: the paper's latent layer, 12,800 inputs, becomes 4 groups), None = never split.
    exponent: the weight-exponent choice of the Dense layers (toolchain.steps_compiler.compile_graph):
    "mantissa" (default) or "fine" (two blocks only); a split fan-in always takes "mantissa" (its relayed
    partial sums are not range-checked per group, so its scales are not raised). Convolutions choose their own
    (toolchain/lower_conv.py: already the grid of both blocks)."""
    check_range_options(range_mode, range_margin, calibration_spikes)
    if isinstance(max_fan_in, str) and max_fan_in == "chip":
        from hw_sim.resources import LOIHI2

        max_fan_in = LOIHI2.max_fan_in_axons
    if max_fan_in is not None and (isinstance(max_fan_in, bool) or not isinstance(max_fan_in, (int, np.integer))
                                   or max_fan_in < 1):
        raise CompileError(f"max_fan_in={max_fan_in!r} must be an integer >= 1 (input axons per core), 'chip' or None; "
                           "fix: leave it at 'chip' (4,096) or pass None to keep every Dense layer unsplit")
    if weight_blocks not in (1, 2) or isinstance(weight_blocks, bool):
        raise CompileError(f"weight_blocks={weight_blocks!r} must be 1 or 2 (connection processes per layer); fix: "
                           "use 2 for a finer weight grid from a second block of rounding residuals, else 1")
    check_lowering_options(max_steps, weight_bits, scale, threshold, example_steps=100)
    exponent = checked_exponent(exponent, weight_blocks)
    triples = check_conv_graph(graph)
    measured, calibration = [None] * len(triples), None
    if range_mode == "calibrated":
        xc = calibration_trains(calibration_spikes, graph.nodes[graph.input_name].n)
        measured = measure_steps_ranges(graph, xc, chunk=8)   # conv maps are wide: 8 samples per chunk
        calibration = {"samples": int(xc.shape[0]), "steps": int(xc.shape[1]), "margin": float(range_margin),
                       "source": calibration_source,
                       "quantities": "per neuron over every sample and step, threshold units: |a_in| per step, "
                                     "negative v, pre-reset v; convolutions use each channel's maximum; the bound is "
                                     "the maximum x (1 + margin)"}
    layers, entries = [], []
    for (flatten, syn_name, pop_name), meas in zip(triples, measured):
        cal = None if meas is None else _Margin(meas, float(range_margin))
        syn, pop = graph.nodes[syn_name], graph.nodes[pop_name]
        in_shape = tuple(graph.nodes[flatten].input_shape) if flatten else None
        if isinstance(syn, Dense) and isinstance(pop, LIF):
            split = max_fan_in is not None and syn.n_in > max_fan_in
            sl, entry = lower_lif_layer(syn_name, syn, pop_name, pop, int(max_steps), int(weight_bits),
                                        None if scale is None else int(scale), threshold, cal, meas,
                                        int(weight_blocks), "mantissa" if split else exponent)
            entry = dict(entry, exponent="mantissa" if split else exponent)
            layer = _from_steps_layer(sl, flatten, in_shape or (syn.n_in, 1, 1))
            entry = dict(entry, kind="dense", population="lif", lava="Dense")
        else:
            layer, entry = lower_conv_layer(syn_name, syn, pop_name, pop, int(max_steps), int(weight_bits),
                                            None if scale is None else int(scale), threshold, flatten, in_shape,
                                            cal, int(weight_blocks))
            if meas is not None:
                entry["measured"] = {
                    "a_in_max": float(meas.a_in.max(initial=0.0)), "v_neg_max": float(meas.v_neg.max(initial=0.0)),
                    "v_pos_max": float(meas.v_pos.max(initial=0.0)), "spikes_per_step": float(meas.rate.sum()),
                    "silent_neurons": int((meas.rate == 0).sum())}
        if layer.kind == "dense" and max_fan_in is not None and layer.n_in > max_fan_in:
            groups = -(-layer.n_in // int(max_fan_in))
            layer = replace(layer, fan_in_groups=groups)
            entry = dict(entry, fan_in_groups=groups,
                         lava=f"Dense x {groups} input groups -> GradedVec relays -> graded Dense (+1 step)")
        layers.append(layer)
        entries.append(entry)
    manifest = {"kind": "conv", "max_steps": int(max_steps), "weight_bits": int(weight_bits),
                "weight_blocks": int(weight_blocks), "blocks_used": [cl.blocks for cl in layers],
                "threshold": threshold, "source_hash": source_hash, "range_mode": range_mode,
                "calibration": calibration,
                "layers": entries, "source_metadata": dict(graph.metadata),
                "notes": ["population k lags the float model by k + 2 Lava steps (source + one per connection) plus "
                          "one per relay stage (a Dense fan-in split into groups) up to it; targets shift results back",
                          "convolutions: one scale per output channel (shared weights); Lava Conv gets the effective "
                          "integer weights (it ignores weight_exp)",
                          "a Readout is integrated off-chip from its integer synaptic input: A = leak (A + a / scale)"]}
    return validate_compiled_conv(CompiledConv(tuple(layers), int(max_steps), manifest, graph.input_name))


__all__ = ["compile_conv_graph", "needs_conv_compiler", "check_conv_graph", "lava_mapping"]
