"""Lowering of one alpha layer, a :class:`toolchain.ir.Dense` feeding a :class:`toolchain.ir.AlphaOnce`
population, onto a Lava CUBA LIF layer (:class:`toolchain.compiled.CompiledLayer`, fixed and float mapping).

toolchain/compiler.py fixes the grid shared by every layer (:class:`AlphaGrid`: S steps per time unit, the 12-bit
decay D, the window) and calls :func:`lower_alpha_layer` once per (Dense, AlphaOnce) pair of the graph. This
module does the per-layer work (derivation: docs/compiler.md):

* pulse block: pulse source columns ``round(t S + k/2)`` (centring, layer k), collisions recorded; a pulse whose
  weights exceed one mantissa goes out on up to ``max_pulse_copies`` parallel axons (:func:`split_pulses`);
* thresholds: one 17-bit vth per neuron (or per layer, or the user's), the largest the ranges allow
  (:func:`auto_vth`, bounds from toolchain/alpha_ranges.py), weights scaled by ``h dd vth_j / theta`` integer
  units per model weight unit (h = 1/S, dd = 1 - D/4096);
* input block: toolchain/lower_dense.py's weight quantization (same rounding and exponent choice as every other
  lowering, toolchain/quantize.py);
* range checks (worst case, or calibrated ranges x (1 + margin)) and the quantization-error warning; every failure
  is a CompileError naming the layer, the neuron, the value, the limit and the fixes that apply to what the user
  asked for (:class:`AlphaOptions`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from toolchain.alpha_ranges import (
    LIMITS, calibrated_rows, first_violation, row_violations, violation_kind, vth_caps, worst_case_rows,
)
from toolchain.calibration import LayerRanges
from toolchain.compiled import CompiledLayer, shift_weights, sum_pulse_copies
from toolchain.errors import CompileError
from toolchain.ir import AlphaOnce, Dense
from toolchain.lower_dense import lower_dense
from toolchain.quantize import (
    A_IN_MAX, DECAY_BITS, DECAY_UNITY, MANTISSA, UV_MAX, VTH_AUTO_MAX, VTH_BITS, VTH_MAX, VTH_MIN, WEIGHT_EXP_MAX,
    mantissa_round, weight_exp_min,
)

MAX_PULSE_COPIES = 8  # parallel axons per pulse (pulse weights ~5x input weights need ~4 at full resolution)
QUANT_WARN_FRACTION = 0.01  # warn when a layer's largest weight quantization error exceeds this x theta
WEIGHT_DECAY_FIX = "retrain with weight regularisation (snnc train ... --weight-decay) to shrink the weights"


@dataclass(frozen=True)
class AlphaOptions:
    """What the user asked for (compile_network's options), so that the lowering and its error messages follow it.

    vth: one threshold for every neuron (None = automatic per ``threshold``: "neuron" or "layer");
    range_mode: "worst-case" or "calibrated" (with ``margin``); max_copies: parallel axons per pulse;
    weight_bits: 8 or 9; centre: place layer k's pulses k/2 steps later; quant_warn_fraction: of theta."""

    vth: int | None = None
    range_mode: str = "worst-case"
    threshold: str = "neuron"
    max_copies: int = MAX_PULSE_COPIES
    margin: float = 0.0
    weight_bits: int = 8
    centre: bool = True
    quant_warn_fraction: float = QUANT_WARN_FRACTION

    @property
    def vth_given(self) -> bool:
        return self.vth is not None


@dataclass(frozen=True)
class AlphaGrid:
    """The time grid every layer of one compile shares: S steps per model time unit (a float when the grid is
    stretched by compensate_tau), the 12-bit decay code D, the float per-step decay d, the window (steps) and
    theta (the model's threshold)."""

    S: float
    D: int
    d: float
    window: int
    theta: float


@dataclass(frozen=True)
class AlphaLowered:
    """One lowered layer: the compiled layer, its manifest entry, and its quantization warning (or None)."""

    layer: CompiledLayer
    manifest: dict
    warning: str | None


@dataclass(frozen=True)
class Quantized:
    """w_int: (n_out, n_in) mantissas of the input block; p_int: (n_out, n_copies) mantissas of the pulse block
    (copies of pulses side by side); p_source: (n_copies,) source pulse of each pulse column; effective:
    (n_out, n_in + n_pulses) int64 w_int * 2**exp of both blocks, copies summed; rows: per-neuron worst case."""

    w_int: np.ndarray
    wexp: int
    p_int: np.ndarray
    pexp: int
    p_source: np.ndarray
    effective: np.ndarray
    rows: dict


def fixes(kind: str, opts: AlphaOptions) -> str:
    """The remedies for a failure of ``kind`` ('a_in', 'state', 'weights', 'pulses') given what the user did."""
    out = []
    if opts.vth_given:
        out.append("pass a smaller --vth (vth=...) or leave it unset for the automatic per-neuron choice")
    elif opts.threshold == "layer":
        out.append("use --threshold neuron (each neuron scaled to its own range)")
    if kind in ("a_in", "state") and opts.range_mode == "worst-case":
        out.append("compile with --range calibrated (range_mode='calibrated': ranges measured on training images "
                   "instead of every input at once; saturation is then counted at run time)")
    if kind in ("a_in", "state") and opts.range_mode == "calibrated" and opts.margin > 0:
        out.append(f"a smaller --range-margin (now {opts.margin:g})")
    if kind in ("a_in", "weights", "pulses"):
        out.append("a larger --steps-per-unit (integer increments shrink with the step h)")
    if kind == "pulses":
        out.append(f"a larger --max-pulse-copies (now {opts.max_copies})")
    out.append(WEIGHT_DECAY_FIX)
    return "; or ".join(out)


def layer_offset(k: int, centre: bool) -> float:
    """Mean lag (steps) of layer k's inputs on the grid: k/2 with centring, else 0 (docs/compiler.md)."""
    return 0.5 * k if centre else 0.0


def pulse_columns(pulse_times: np.ndarray, S: float, offset: float = 0.0) -> tuple[np.ndarray, list[list[int]]]:
    """Pulse source columns round(t S + offset) (halves round up) of pulse_times (time units), and the pairs
    [i, j, column] of distinct pulse times sharing a column.

    Pulses in one column act as one pulse with the summed weight (Dense adds them), so a collision is an
    approximation, not an error: it is recorded in the manifest, shown by ``snnc compile`` and measured by the
    verifier. (Trained pulse times often drift together near t = 0.)
    """
    cols = np.floor(pulse_times * S + offset + 0.5).astype(np.int64)
    times = pulse_times
    collisions = [[i, j, int(cols[i])] for i in range(len(cols)) for j in range(i + 1, len(cols))
                  if cols[i] == cols[j] and times[i] != times[j]]
    return cols, collisions


def split_pulses(x: np.ndarray, name: str, bits: int, max_copies: int,
                 opts: AlphaOptions | None = None) -> tuple[np.ndarray, int, np.ndarray]:
    """Scaled pulse weights (n_out, n_p) -> (mantissas (n_out, n_copies), exponent, source pulse per copy).

    A pulse whose weights exceed one mantissa is sent on up to ``max_copies`` parallel axons from the same
    generator (Dense sums them), so pulse weights keep the input block's resolution: the smallest exponent
    with at most ``max_copies`` copies per pulse is used. Copies share the mantissa evenly (on its grid)."""
    _, hi, step = MANTISSA[bits]
    big = float(np.abs(x).max(initial=0.0))
    for e in range(weight_exp_min(bits), WEIGHT_EXP_MAX + 1):
        m = mantissa_round(x / 2.0**e, bits)
        copies = np.maximum(1, -(-np.abs(m).max(axis=0, initial=0) // hi)) if m.size else np.ones(m.shape[1], int)
        if copies.max(initial=1) <= max_copies:
            break
    else:
        raise CompileError(
            f"{name}: scaled pulse weights up to {big:.4g} need more than {max_copies} copies even at the weight "
            f"exponent limit {WEIGHT_EXP_MAX}; fix: {fixes('pulses', opts or AlphaOptions(vth=VTH_MIN))}"
        )
    units = np.abs(m) // step
    parts, source = [], []
    for k, c in enumerate(copies):
        base, rem = units[:, k] // c, units[:, k] % c
        for i in range(int(c)):
            parts.append(np.sign(m[:, k]) * (base + (i < rem)) * step)
            source.append(k)
    p_int = np.stack(parts, axis=1) if parts else np.zeros((x.shape[0], 0), np.int64)
    return p_int.astype(np.int64), e, np.asarray(source, dtype=np.int64)


def quantize_layer(name: str, syn: Dense, pop: AlphaOnce, scale: float, vth: np.ndarray, wexp: int | None, D: int,
                   window: int, inputs_once: bool, opts: AlphaOptions) -> Quantized:
    """Quantize one layer at thresholds ``vth`` (n_out,): weights scaled by scale * vth[j] per neuron j (the input
    block through toolchain/lower_dense.py). wexp: input block exponent (None = the smallest that fits)."""
    bits = opts.weight_bits
    dq = lower_dense(name, syn.weight, scale * vth, bits, fixes("weights", opts), wexp)
    w_int, wexp = dq.mantissas, dq.exp
    lo, hi, _ = MANTISSA[bits]
    if w_int.size and (w_int.min() < lo or w_int.max() > hi):
        raise CompileError(f"{name}: input weights need a larger weight exponent than {wexp}; fix: "
                           f"{fixes('weights', opts)}")
    p_int, pexp, src = split_pulses(pop.pulse_weights * (scale * vth[:, None]), name, bits, opts.max_copies, opts)
    p_sum = sum_pulse_copies(p_int, src, pop.pulse_weights.shape[1])
    effective = np.hstack([dq.effective, shift_weights(p_sum, pexp)])  # exact: even at e = -1
    return Quantized(w_int, wexp, p_int, pexp, src, effective,
                     worst_case_rows(effective, vth.astype(np.float64), D, window, inputs_once))


def range_rows(q: Quantized, vth: np.ndarray, ranges: LayerRanges | None, margin: float) -> dict:
    """The per-neuron magnitudes the range check uses: worst case, or calibrated (measured x (1 + margin))."""
    return q.rows if ranges is None else calibrated_rows(ranges, vth, margin)


def auto_vth(name: str, syn: Dense, pop: AlphaOnce, scale: float, D: int, window: int, inputs_once: bool,
             opts: AlphaOptions, ranges: LayerRanges | None = None) -> tuple[Quantized, np.ndarray]:
    """Quantize with automatic thresholds: per neuron (``opts.threshold == "neuron"``) or one per layer (the
    smallest neuron cap), each as large as the ranges (worst case, or measured ``ranges`` with ``opts.margin``)
    allow, which maximises the relative weight precision; rows that fail after rounding are lowered by 1 % until
    they fit. CompileError when a neuron would need vth < VTH_MIN."""
    per_neuron, margin = opts.threshold == "neuron", float(opts.margin)
    caps, wexp = vth_caps(syn.weight, pop.pulse_weights, scale, D, window, opts.weight_bits, opts.max_copies,
                          ranges, margin)
    vth = np.floor(caps if per_neuron else np.full(caps.shape, caps.min(initial=VTH_AUTO_MAX))).astype(np.int64)
    vth = np.minimum(vth, VTH_AUTO_MAX)
    limits = LIMITS if ranges is None else LIMITS[:3]
    for _ in range(400):
        vv = np.maximum(vth, 1)
        q = quantize_layer(name, syn, pop, scale, vv, wexp, D, window, inputs_once, opts)
        bad = row_violations(range_rows(q, vv, ranges, margin), limits)
        if not bad.any() and vth.min(initial=VTH_MIN) >= VTH_MIN:
            return q, vth
        if vth.min(initial=VTH_MIN) < VTH_MIN:
            break
        lower = bad if per_neuron else np.ones_like(bad)
        vth = np.where(lower, np.floor(vth * 0.99).astype(np.int64), vth)
    low = np.full(vth.shape, VTH_MIN)
    q = quantize_layer(name, syn, pop, scale, low, None, D, window, inputs_once, opts)
    what, value, limit, j = first_violation(range_rows(q, low, ranges, margin), limits) or (
        "threshold", float(vth.min()), VTH_MIN, int(np.argmin(vth)))
    if ranges is None:
        how = ("worst case (every input and pulse of the neuron in the same step; --range worst-case, the "
               "default)")
    else:
        how = f"calibrated range (measured on the calibration inputs x (1 + margin {margin:g}); --range calibrated)"
    raise CompileError(
        f"{name}: neuron {j}: {what} = {value:.4g} exceeds the limit {limit} even at the smallest useful "
        f"automatic threshold vth={VTH_MIN}, by the {how}; fix: {fixes(violation_kind(what), opts)}"
    )


def _given_vth(name: str, syn: Dense, pop: AlphaOnce, scale: float, grid: AlphaGrid, opts: AlphaOptions,
               ranges: LayerRanges | None) -> tuple[Quantized, np.ndarray]:
    """Quantize at the user's single threshold ``opts.vth``; CompileError when a range check fails."""
    v = np.full(pop.n, int(opts.vth), dtype=np.int64)
    q = quantize_layer(name, syn, pop, scale, v, None, grid.D, grid.window, True, opts)
    bad = first_violation(range_rows(q, v, ranges, float(opts.margin)), LIMITS if ranges is None else LIMITS[:3])
    if bad:
        what, value, limit, j = bad
        how = "worst-case" if ranges is None else f"calibrated (x (1 + {float(opts.margin):g}))"
        raise CompileError(
            f"{name}: neuron {j}: {how} {what} = {value:.4g} exceeds the limit {limit} at the vth={int(opts.vth)} "
            f"you passed (--vth); fix: {fixes(violation_kind(what), opts)}"
        )
    return q, v


def lower_alpha_layer(k: int, name: str, syn: Dense, pop: AlphaOnce, grid: AlphaGrid, opts: AlphaOptions,
                      ranges: LayerRanges | None = None) -> AlphaLowered:
    """Lower layer ``k`` (its position in the chain: sets the centring offset k/2 steps) named ``name``: ``syn``
    (Dense, model weights) feeding ``pop`` (AlphaOnce) on ``grid``. ranges: the layer's calibrated ranges
    (range_mode "calibrated") or None (worst case)."""
    S, D, d = grid.S, grid.D, grid.d
    n_in, n_out, n_pulses = syn.weight.shape[1], pop.n, pop.pulse_weights.shape[1]
    offset = layer_offset(k, opts.centre)
    pulse_cols, collisions = pulse_columns(pop.pulse_times, S, offset)
    w_all = np.hstack([syn.weight, pop.pulse_weights])
    h = 1.0 / S
    scale_float = h * d  # w_lava = w h d
    # integer increment per unit weight and unit vth; uses the deployed decay dd = 1 - D/4096 so that the fixed
    # mapping is exactly an alpha network with tau_eff and quantized weights (compiler.deployed_network)
    scale = h * (1.0 - D / DECAY_UNITY) / grid.theta
    inputs_once = True  # inputs and alpha neurons spike at most once per window
    if opts.vth is None:
        q, v = auto_vth(name, syn, pop, scale, D, grid.window, inputs_once, opts, ranges)
    else:
        q, v = _given_vth(name, syn, pop, scale, grid, opts, ranges)
    w_int = np.hstack([q.w_int, q.p_int]).astype(np.int32)
    if not np.any(w_int) and np.any(w_all):
        raise CompileError(
            f"{name}: every weight quantizes to 0 (max |w| / theta = {np.abs(w_all).max() / grid.theta:.3g}), so "
            f"the deployed layer would never spike; fix: check the model's theta ({grid.theta:g}) and weight "
            f"scale, or retrain"
        )
    deployed = q.effective.astype(np.float64) / (scale * v[:, None])
    err = np.abs(deployed - w_all)
    theta, warn_at = grid.theta, opts.quant_warn_fraction
    qerr = float(err.max(initial=0.0) / theta)
    # potential error: rms weight error of the neuron's synapses x the alpha kernel's peak 1/(e tau), over theta
    pot = float(np.sqrt((err**2).sum(axis=1)).max(initial=0.0) / (math.e * pop.tau * theta))
    jq = int(np.unravel_index(np.argmax(err), err.shape)[0]) if err.size else 0
    warning = None
    if qerr > warn_at:
        warning = (
            f"{name}: weight quantization error up to {qerr:.3g} theta exceeds {warn_at:g} theta "
            f"(neuron {jq} at vth={int(v[jq])}: the weight grid is coarse there); expect a larger "
            "reconstruction error on the fixed-point targets; fix: "
            + ("compile with --range calibrated (larger thresholds where real data stay in range), or "
               if opts.range_mode == "worst-case" else "")
            + "a larger --steps-per-unit, or " + WEIGHT_DECAY_FIX)
    copies = np.bincount(q.p_source, minlength=n_pulses)
    wc = {key: float(val.max(initial=0.0)) for key, val in q.rows.items()}
    layer = CompiledLayer(
        name=name,
        weights=np.ascontiguousarray(w_int[:, :n_in]),
        pulse_weights=np.ascontiguousarray(w_int[:, n_in:]),
        pulse_steps=pulse_cols[q.p_source],
        pulse_source=q.p_source,
        weight_exp=int(q.wexp),
        pulse_weight_exp=int(q.pexp),
        time_offset_steps=offset,
        du=D - 1,
        dv=D,
        vth=v,
        once=True,
        weights_float=syn.weight * scale_float,
        pulse_weights_float=(pop.pulse_weights * scale_float)[:, q.p_source] / copies[q.p_source],
        du_float=1.0 - d,
        dv_float=1.0 - d,
        vth_float=float(theta),
        kind="dense",
        num_weight_bits=int(opts.weight_bits),
    )
    margin = opts.margin
    manifest = {
        "name": name, "kind": "dense", "n_in": n_in, "n_out": n_out, "n_pulses": n_pulses,
        "pulse_steps": [int(c) for c in pulse_cols], "pulse_collisions": collisions,
        "pulse_copies": [int(c) for c in copies], "threshold": "one" if opts.vth is not None else opts.threshold,
        "vth_min": int(v.min(initial=VTH_MAX)), "vth_median": float(np.median(v)) if v.size else 0.0,
        "vth_max": int(v.max(initial=0)), "vth_bits": VTH_BITS, "weight_exp": int(q.wexp),
        "pulse_weight_exp": int(q.pexp), "time_offset_steps": offset, "weight_bits": int(opts.weight_bits),
        "weight_scale_min": float(scale * v.min(initial=VTH_MAX) / 2.0**q.wexp),
        "weight_quant_max_abs_err": float(err.max(initial=0.0)),
        "weight_quant_max_abs_err_over_theta": qerr,
        "quant_potential_rms_err_over_theta": pot,
        "quant_warning": bool(qerr > warn_at),
        "range_mode": opts.range_mode,
        "du": D - 1, "dv": D, "decay_bits": DECAY_BITS, "once": True,
        "worst_case": {key: float(val) for key, val in wc.items()},
        **({} if ranges is None else {"calibrated": {
            key: float(val.max(initial=0.0)) for key, val in calibrated_rows(ranges, v, 0.0).items()},
            "calibrated_with_margin": {
            key: float(val.max(initial=0.0)) for key, val in calibrated_rows(ranges, v, margin).items()},
            "calibration_spiking_fraction": float(ranges.spiked.mean()) if ranges.spiked.size else 0.0}),
        "limits": {"a_in": A_IN_MAX, "u": UV_MAX, "v": UV_MAX},
    }
    return AlphaLowered(layer, manifest, warning)
