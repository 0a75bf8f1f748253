"""Quantizer and mapper: TemporalNetwork (float alpha neurons) -> CompiledNetwork (Lava CUBA LIF, fixed point).

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

import math
import platform
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from models.network import AlphaLayer, TemporalNetwork
from toolchain.calibration import (
    DEFAULT_CALIBRATION_SAMPLES, DEFAULT_RANGE_MARGIN, Calibration, LayerRanges, check_range_options,
    measure_ranges, training_input_times,
)
from toolchain.compiled import CompiledLayer, CompiledNetwork, shift_weights, sum_pulse_copies
from toolchain.compiled_io import check_sizes
from toolchain.errors import ArtifactError, CompileError
from toolchain.quantize import (  # noqa: F401  (re-exported: the alpha chain's historical names)
    A_IN_BITS, A_IN_MAX, DECAY_BITS, DECAY_UNITY, MANTISSA, STATE_SHIFT, UV_BITS, UV_MAX, VTH_AUTO_MAX, VTH_BITS,
    VTH_MAX, VTH_MIN, WEIGHT_BITS, WEIGHT_EXP_MAX, choose_weight_exp, mantissa_round, weight_exp_min,
)
from toolchain.validate import validate_network

DEFAULT_STEPS_PER_UNIT = 40
MAX_STEPS_PER_UNIT = 1 << 20
THRESHOLD_MODES = ("neuron", "layer")
MAX_PULSE_COPIES = 8  # parallel axons per pulse (pulse weights ~5x input weights need ~4 at full resolution)
DEFAULT_HORIZON_MARGIN = 1.0  # time units simulated after latency + 1 (the last expected output)
QUANT_WARN_FRACTION = 0.01  # warn when a layer's largest weight quantization error exceeds this x theta


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


def _offset(k: int, centre: bool) -> float:
    """Mean lag (steps) of layer k's inputs on the grid: k/2 with centring, else 0 (see module doc)."""
    return 0.5 * k if centre else 0.0


def _pulse_columns(layer: AlphaLayer, S: float, offset: float = 0.0) -> tuple[np.ndarray, list[list[int]]]:
    """Pulse source columns round(t S + offset) (halves round up), and the pairs [i, j, column] of distinct pulse
    times sharing a column.

    Pulses in one column act as one pulse with the summed weight (Dense adds them), so a collision is an
    approximation, not an error: it is recorded in the manifest, shown by ``snnc compile`` and measured by the
    verifier. (Trained pulse times often drift together near t = 0.)
    """
    cols = np.floor(layer.pulse_times * S + offset + 0.5).astype(np.int64)
    times = layer.pulse_times
    collisions = [[i, j, int(cols[i])] for i in range(len(cols)) for j in range(i + 1, len(cols))
                  if cols[i] == cols[j] and times[i] != times[j]]
    return cols, collisions


def _peak_factor(D: int, window: int, repeated: bool) -> float:
    """Worst-case v / (u increment) for one input: max_n (n+1) r^n (once) or sum_n (n+1) r^n (every step)."""
    r = 1.0 - D / DECAY_UNITY
    n = np.arange(window, dtype=np.float64)
    k = (n + 1.0) * r**n
    return float(k.sum() if repeated else k.max())


def _worst_case_rows(w: np.ndarray, vth: np.ndarray, D: int, window: int, inputs_once: bool) -> dict:
    """Worst-case integer magnitudes of every neuron (row) of one layer: every input/pulse at the same step,
    once per window (an all-white latency-coded image comes close).

    w: (n_out, n_in + n_pulses) int64 effective weights w_int * 2**exp of both synapse blocks (pulse copies
    summed); vth: (n_out,) thresholds. Returns arrays (n_out,)."""
    pos = np.where(w > 0, w, 0).sum(axis=1).astype(np.float64)
    neg = np.where(w < 0, -w, 0).sum(axis=1).astype(np.float64)
    a_max = np.maximum(pos, neg)  # |a_in| per step (16-bit)
    r_u = 1.0 - D / DECAY_UNITY  # u decays with du + 1 = D
    u_gain = 1.0 if inputs_once else min(float(window), 1.0 / (1.0 - r_u))
    p = _peak_factor(D, window, not inputs_once)
    return {"a_in_max": a_max, "u_max": a_max * (1 << STATE_SHIFT) * u_gain,
            "v_neg_max": neg * (1 << STATE_SHIFT) * p,
            "v_pos_max": vth * float(1 << STATE_SHIFT) + pos * (1 << STATE_SHIFT) * u_gain}


_LIMITS = (("a_in_max", "synaptic input per step |a_in|", A_IN_MAX),
           ("u_max", "current |u| (24-bit, wraps)", UV_MAX),
           ("v_neg_max", "negative voltage |v| (24-bit, saturates)", UV_MAX),
           ("v_pos_max", "positive voltage v (24-bit, saturates)", UV_MAX))


def _row_violations(rows: dict, limits: tuple = _LIMITS) -> np.ndarray:
    """(n_out,) bool: neurons whose magnitudes (worst case or calibrated) exceed a limit."""
    bad = np.zeros(rows["a_in_max"].shape, dtype=bool)
    for key, _, limit in limits:
        bad |= rows[key] > limit
    return bad


def _first_violation(rows: dict, limits: tuple = _LIMITS) -> tuple[str, float, int, int] | None:
    """(what, value, limit, neuron) of the largest violation of the first limit that is exceeded, else None."""
    for key, what, limit in limits:
        if np.any(rows[key] > limit):
            j = int(np.argmax(rows[key]))
            return what, float(rows[key][j]), limit, j
    return None


@dataclass(frozen=True)
class _Quantized:
    w_int: np.ndarray  # (n_out, n_in) mantissas of the input block
    wexp: int
    p_int: np.ndarray  # (n_out, n_copies) mantissas of the pulse block (copies of pulses side by side)
    pexp: int
    p_source: np.ndarray  # (n_copies,) source pulse of each pulse column
    effective: np.ndarray  # (n_out, n_in + n_pulses) int64 w_int * 2**exp of both blocks, copies summed
    rows: dict  # per-neuron worst case (_worst_case_rows)


@dataclass(frozen=True)
class _Ctx:
    """What the user asked for, so that error messages name it and the fixes that apply."""

    vth_given: bool = False
    range_mode: str = "worst-case"
    threshold: str = "neuron"
    max_copies: int = MAX_PULSE_COPIES
    margin: float = 0.0


_WEIGHT_DECAY_FIX = "retrain with weight regularisation (snnc train ... --weight-decay) to shrink the weights"


def _fixes(kind: str, ctx: _Ctx) -> str:
    """The remedies for a failure of ``kind`` ('a_in', 'state', 'weights', 'pulses') given what the user did."""
    out = []
    if ctx.vth_given:
        out.append("pass a smaller --vth (vth=...) or leave it unset for the automatic per-neuron choice")
    elif ctx.threshold == "layer":
        out.append("use --threshold neuron (each neuron scaled to its own range)")
    if kind in ("a_in", "state") and ctx.range_mode == "worst-case":
        out.append("compile with --range calibrated (range_mode='calibrated': ranges measured on training images "
                   "instead of every input at once; saturation is then counted at run time)")
    if kind in ("a_in", "state") and ctx.range_mode == "calibrated" and ctx.margin > 0:
        out.append(f"a smaller --range-margin (now {ctx.margin:g})")
    if kind in ("a_in", "weights", "pulses"):
        out.append("a larger --steps-per-unit (integer increments shrink with the step h)")
    if kind == "pulses":
        out.append(f"a larger --max-pulse-copies (now {ctx.max_copies})")
    out.append(_WEIGHT_DECAY_FIX)
    return "; or ".join(out)


def _split_pulses(x: np.ndarray, name: str, bits: int, max_copies: int,
                  ctx: _Ctx | None = None) -> tuple[np.ndarray, int, np.ndarray]:
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
            f"exponent limit {WEIGHT_EXP_MAX}; fix: {_fixes('pulses', ctx or _Ctx(vth_given=True))}"
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


def _quantize_layer(name: str, layer: AlphaLayer, scale: float, vth: np.ndarray, wexp: int | None, D: int,
                    window: int, inputs_once: bool, bits: int, max_copies: int, ctx: _Ctx | None = None
                    ) -> _Quantized:
    """Quantize one layer at thresholds ``vth`` (n_out,): weights scaled by scale * vth[j] per neuron j.
    wexp: input block exponent (None = the smallest that fits)."""
    ctx = ctx or _Ctx(vth_given=True)
    x = layer.weights * (scale * vth[:, None])
    if wexp is None:
        wexp = choose_weight_exp(x, name, bits, _fixes("weights", ctx))
    w_int = mantissa_round(x / 2.0**wexp, bits)
    lo, hi, _ = MANTISSA[bits]
    if w_int.size and (w_int.min() < lo or w_int.max() > hi):
        raise CompileError(f"{name}: input weights need a larger weight exponent than {wexp}; fix: "
                           f"{_fixes('weights', ctx)}")
    p_int, pexp, src = _split_pulses(layer.pulse_weights * (scale * vth[:, None]), name, bits, max_copies, ctx)
    p_sum = sum_pulse_copies(p_int, src, layer.n_pulses)
    effective = np.hstack([shift_weights(w_int, wexp), shift_weights(p_sum, pexp)])  # exact: even at e = -1
    return _Quantized(w_int, wexp, p_int, pexp, src, effective,
                      _worst_case_rows(effective, vth.astype(np.float64), D, window, inputs_once))


def _calibrated_rows(ranges: LayerRanges, vth: np.ndarray, margin: float) -> dict:
    """Integer magnitudes per neuron predicted from the measured ranges (theta units) at thresholds vth, times
    (1 + margin): the quantities of _worst_case_rows, under the same keys."""
    v = vth.astype(np.float64) * (1.0 + margin)
    return {"a_in_max": ranges.a_in * v, "u_max": ranges.u * v * (1 << STATE_SHIFT),
            "v_neg_max": ranges.v_neg * v * (1 << STATE_SHIFT), "v_pos_max": ranges.v_pos * v * (1 << STATE_SHIFT)}


def _kind(what: str) -> str:
    return "a_in" if what.startswith("synaptic input") else "state"


def _vth_caps(layer: AlphaLayer, scale: float, D: int, window: int, bits: int,
              max_copies: int, ranges: LayerRanges | None = None, margin: float = 0.0) -> tuple[np.ndarray, int]:
    """Largest threshold per neuron that the ranges allow (float, before rounding), capped at
    2**16, at the pulse weights that ``max_copies`` copies carry at the finest exponent (unless that is below
    VTH_MIN),
    and so that the input block keeps the smallest exponent that leaves every neuron >= VTH_MIN;
    returns (caps (n_out,), that exponent). ranges: measured ranges (calibrated mode, with ``margin``) instead of
    the worst case."""
    A = np.abs(layer.all_weights()) * scale  # integer increment per unit vth
    signed = layer.all_weights()
    pos = np.where(signed > 0, A, 0.0).sum(axis=1)
    neg = np.where(signed < 0, A, 0.0).sum(axis=1)
    p = _peak_factor(D, window, False)
    with np.errstate(divide="ignore"):
        if ranges is None:
            bounds = [A_IN_MAX / np.maximum(pos, neg),
                      UV_MAX / ((1 << STATE_SHIFT) * np.maximum(pos, neg)),
                      UV_MAX / ((1 << STATE_SHIFT) * p * neg),
                      (UV_MAX / (1 << STATE_SHIFT)) / (1.0 + pos)]
        else:  # positive v is not bounded: it saturates only in the step the neuron spikes, which it still does
            k = 1.0 + margin
            bounds = [A_IN_MAX / (k * ranges.a_in),
                      UV_MAX / ((1 << STATE_SHIFT) * k * ranges.u),
                      UV_MAX / ((1 << STATE_SHIFT) * k * ranges.v_neg)]
        caps = np.minimum.reduce([np.full(pos.shape, float(VTH_AUTO_MAX))] + bounds)
        w_big = np.abs(layer.weights).max(axis=1, initial=0.0) * scale
        hi = MANTISSA[bits][1]
        p_big = np.abs(layer.pulse_weights).max(axis=1, initial=0.0) * scale
        pulse_cap = max_copies * (hi - 0.5) * 2.0 ** weight_exp_min(bits) / p_big  # pulses at the finest exponent
        caps = np.where(pulse_cap >= VTH_MIN, np.minimum(caps, pulse_cap), caps)
        for wexp in range(weight_exp_min(bits), WEIGHT_EXP_MAX + 1):
            mant_cap = (hi - 0.5) * 2.0**wexp / w_big  # keeps the rounded mantissa <= hi at this exponent
            if np.all(np.minimum(caps, mant_cap) >= min(VTH_MIN, caps.min())) or wexp == WEIGHT_EXP_MAX:
                break
    return np.minimum(caps, mant_cap), wexp


def _range_rows(q: _Quantized, vth: np.ndarray, ranges: LayerRanges | None, margin: float) -> dict:
    """The per-neuron magnitudes the range check uses: worst case, or calibrated (measured x (1 + margin))."""
    return q.rows if ranges is None else _calibrated_rows(ranges, vth, margin)


def _auto_vth(name: str, layer: AlphaLayer, scale: float, D: int, window: int, inputs_once: bool, bits: int,
              per_neuron: bool, max_copies: int, ranges: LayerRanges | None = None, margin: float = 0.0,
              ctx: _Ctx | None = None) -> tuple[_Quantized, np.ndarray]:
    """Quantize with automatic thresholds: per neuron (default) or one per layer (the smallest neuron cap), each
    as large as the ranges (worst case, or measured ``ranges`` with ``margin``) allow, which maximises the relative
    weight precision; rows that fail after rounding are lowered by 1 % until they fit. CompileError when a neuron
    would need vth < VTH_MIN."""
    ctx = ctx or _Ctx()
    caps, wexp = _vth_caps(layer, scale, D, window, bits, max_copies, ranges, margin)
    vth = np.floor(caps if per_neuron else np.full(caps.shape, caps.min(initial=VTH_AUTO_MAX))).astype(np.int64)
    vth = np.minimum(vth, VTH_AUTO_MAX)
    limits = _LIMITS if ranges is None else _LIMITS[:3]
    for _ in range(400):
        vv = np.maximum(vth, 1)
        q = _quantize_layer(name, layer, scale, vv, wexp, D, window, inputs_once, bits, max_copies, ctx)
        bad = _row_violations(_range_rows(q, vv, ranges, margin), limits)
        if not bad.any() and vth.min(initial=VTH_MIN) >= VTH_MIN:
            return q, vth
        if vth.min(initial=VTH_MIN) < VTH_MIN:
            break
        lower = bad if per_neuron else np.ones_like(bad)
        vth = np.where(lower, np.floor(vth * 0.99).astype(np.int64), vth)
    low = np.full(vth.shape, VTH_MIN)
    q = _quantize_layer(name, layer, scale, low, None, D, window, inputs_once, bits, max_copies, ctx)
    what, value, limit, j = _first_violation(_range_rows(q, low, ranges, margin), limits) or (
        "threshold", float(vth.min()), VTH_MIN, int(np.argmin(vth)))
    if ranges is None:
        how = ("worst case (every input and pulse of the neuron in the same step; --range worst-case, the "
               "default)")
    else:
        how = f"calibrated range (measured on the calibration inputs x (1 + margin {margin:g}); --range calibrated)"
    raise CompileError(
        f"{name}: neuron {j}: {what} = {value:.4g} exceeds the limit {limit} even at the smallest useful "
        f"automatic threshold vth={VTH_MIN}, by the {how}; fix: {_fixes(_kind(what), ctx)}"
    )


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


def compile_network(net: TemporalNetwork, steps_per_unit: int = DEFAULT_STEPS_PER_UNIT, vth: int | None = None,
                    compensate_tau: bool = False, source_hash: str = "", window: int | None = None,
                    horizon_margin: float = DEFAULT_HORIZON_MARGIN, weight_bits: int = WEIGHT_BITS,
                    centre: bool = True, threshold: str = "neuron",
                    max_pulse_copies: int = MAX_PULSE_COPIES, range_mode: str = "worst-case",
                    calibration_times: np.ndarray | None = None, range_margin: float = DEFAULT_RANGE_MARGIN,
                    calibration_source: str = "", quant_warn_fraction: float = QUANT_WARN_FRACTION
                    ) -> CompiledNetwork:
    """Quantize and map ``net`` onto Lava CUBA LIF neurons (fixed and float mapping).

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
    if not isinstance(net, TemporalNetwork):
        raise CompileError(f"compile_network needs a TemporalNetwork, got {type(net).__name__}; "
                           "fix: load the model with toolchain.artifact.load_onnx")
    check_range_options(range_mode, range_margin, calibration_times)
    if not (isinstance(quant_warn_fraction, (int, float)) and quant_warn_fraction > 0):
        raise CompileError(f"quant_warn_fraction={quant_warn_fraction!r} must be a number > 0 (fraction of theta); "
                           f"fix: e.g. {QUANT_WARN_FRACTION}")
    _check_finite(net)
    validate_network(net, "model")
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
    last_col = 0
    for k, layer in enumerate(net.layers):
        if layer.n_pulses:
            last_col = max(last_col, int(_pulse_columns(layer, S, _offset(k, centre))[0].max()))
    if W < last_col + 2 or W < 3:
        raise CompileError(f"window={W} steps is too short: it must exceed the last pulse column {last_col} "
                           f"by 2 and be >= 3; fix: leave window unset or pass window >= {max(3, last_col + 2)}")

    h = 1.0 / S
    scale_float = h * d  # w_lava = w h d
    calib: Calibration | None = None
    if range_mode == "calibrated":
        calib = measure_ranges(net, calibration_times, S, W,
                               [_pulse_columns(layer, S, _offset(k, centre))[0] for k, layer in enumerate(net.layers)],
                               1.0 - D / DECAY_UNITY)
    ctx = _Ctx(vth_given=vth is not None, range_mode=range_mode, threshold=threshold, max_copies=max_pulse_copies,
               margin=float(range_margin))
    layers: list[CompiledLayer] = []
    layer_manifest = []
    warnings: list[str] = []
    for k, layer in enumerate(net.layers):
        name = f"layer{k}"
        pulse_cols, collisions = _pulse_columns(layer, S, _offset(k, centre))
        w_all = layer.all_weights()
        # integer increment per unit weight and unit vth; uses the deployed decay dd = 1 - D/4096 so that the
        # fixed mapping is exactly an alpha network with tau_eff and quantized weights (deployed_network)
        scale = h * (1.0 - D / DECAY_UNITY) / net.theta
        inputs_once = True  # inputs and alpha neurons spike at most once per window
        ranges = calib.layers[k] if calib is not None else None
        if vth is None:
            q, v = _auto_vth(name, layer, scale, D, W, inputs_once, weight_bits, threshold == "neuron",
                             max_pulse_copies, ranges, float(range_margin), ctx)
        else:
            v = np.full(layer.n_out, int(vth), dtype=np.int64)
            q = _quantize_layer(name, layer, scale, v, None, D, W, inputs_once, weight_bits, max_pulse_copies, ctx)
            bad = _first_violation(_range_rows(q, v, ranges, float(range_margin)),
                                   _LIMITS if ranges is None else _LIMITS[:3])
            if bad:
                what, value, limit, j = bad
                how = "worst-case" if ranges is None else f"calibrated (x (1 + {float(range_margin):g}))"
                raise CompileError(
                    f"{name}: neuron {j}: {how} {what} = {value:.4g} exceeds the limit {limit} at the vth={int(vth)} "
                    f"you passed (--vth); fix: {_fixes(_kind(what), ctx)}"
                )
        w_int = np.hstack([q.w_int, q.p_int]).astype(np.int32)
        if not np.any(w_int) and np.any(w_all):
            raise CompileError(
                f"{name}: every weight quantizes to 0 (max |w| / theta = {np.abs(w_all).max() / net.theta:.3g}), so "
                f"the deployed layer would never spike; fix: check the model's theta ({net.theta:g}) and weight "
                f"scale, or retrain"
            )
        deployed = q.effective.astype(np.float64) / (scale * v[:, None])
        err = np.abs(deployed - w_all)
        qerr = float(err.max(initial=0.0) / net.theta)
        # potential error: rms weight error of the neuron's synapses x the alpha kernel's peak 1/(e tau), over theta
        pot = float(np.sqrt((err**2).sum(axis=1)).max(initial=0.0) / (math.e * net.tau * net.theta))
        jq = int(np.unravel_index(np.argmax(err), err.shape)[0]) if err.size else 0
        if qerr > quant_warn_fraction:
            warnings.append(
                f"{name}: weight quantization error up to {qerr:.3g} theta exceeds {quant_warn_fraction:g} theta "
                f"(neuron {jq} at vth={int(v[jq])}: the weight grid is coarse there); expect a larger "
                "reconstruction error on the fixed-point targets; fix: "
                + ("compile with --range calibrated (larger thresholds where real data stay in range), or "
                   if range_mode == "worst-case" else "")
                + "a larger --steps-per-unit, or " + _WEIGHT_DECAY_FIX)
        copies = np.bincount(q.p_source, minlength=layer.n_pulses)
        wc = {key: float(val.max(initial=0.0)) for key, val in q.rows.items()}
        layers.append(CompiledLayer(
            name=name,
            weights=np.ascontiguousarray(w_int[:, : layer.n_in]),
            pulse_weights=np.ascontiguousarray(w_int[:, layer.n_in:]),
            pulse_steps=pulse_cols[q.p_source],
            pulse_source=q.p_source,
            weight_exp=int(q.wexp),
            pulse_weight_exp=int(q.pexp),
            time_offset_steps=_offset(k, centre),
            du=D - 1,
            dv=D,
            vth=v,
            once=True,
            weights_float=layer.weights * scale_float,
            pulse_weights_float=(layer.pulse_weights * scale_float)[:, q.p_source] / copies[q.p_source],
            du_float=1.0 - d,
            dv_float=1.0 - d,
            vth_float=float(net.theta),
            kind="dense",
            num_weight_bits=int(weight_bits),
        ))
        layer_manifest.append({
            "name": name, "kind": "dense", "n_in": layer.n_in, "n_out": layer.n_out, "n_pulses": layer.n_pulses,
            "pulse_steps": [int(c) for c in pulse_cols], "pulse_collisions": collisions,
            "pulse_copies": [int(c) for c in copies], "threshold": "one" if vth is not None else threshold,
            "vth_min": int(v.min(initial=VTH_MAX)), "vth_median": float(np.median(v)) if v.size else 0.0,
            "vth_max": int(v.max(initial=0)), "vth_bits": VTH_BITS, "weight_exp": int(q.wexp),
            "pulse_weight_exp": int(q.pexp), "time_offset_steps": _offset(k, centre), "weight_bits": int(weight_bits),
            "weight_scale_min": float(scale * v.min(initial=VTH_MAX) / 2.0**q.wexp),
            "weight_quant_max_abs_err": float(err.max(initial=0.0)),
            "weight_quant_max_abs_err_over_theta": qerr,
            "quant_potential_rms_err_over_theta": pot,
            "quant_warning": bool(qerr > quant_warn_fraction),
            "range_mode": range_mode,
            "du": D - 1, "dv": D, "decay_bits": DECAY_BITS, "once": True,
            "worst_case": {key: float(val) for key, val in wc.items()},
            **({} if ranges is None else {"calibrated": {
                key: float(val.max(initial=0.0)) for key, val in _calibrated_rows(ranges, v, 0.0).items()},
                "calibrated_with_margin": {
                key: float(val.max(initial=0.0)) for key, val in _calibrated_rows(ranges, v, range_margin).items()},
                "calibration_spiking_fraction": float(ranges.spiked.mean()) if ranges.spiked.size else 0.0}),
            "limits": {"a_in": A_IN_MAX, "u": UV_MAX, "v": UV_MAX},
        })
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
        "warnings": warnings,
        "layers": layer_manifest,
        "tool_versions": _versions(),
    }
    return CompiledNetwork(steps_per_unit=grid, window=W, layers=tuple(layers), source=net, manifest=manifest)


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
