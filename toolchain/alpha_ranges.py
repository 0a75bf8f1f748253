"""Range checks of one alpha (AlphaOnce) layer in fixed point: worst-case and calibrated integer magnitudes per
neuron, the limits they must respect, and the largest thresholds those limits allow (docs/compiler.md, section 3).

Units: weights are integer increments of the synaptic input per step (``w_int * 2**exp``); ``vth`` is the 17-bit
threshold mantissa; u and v are the 24-bit states (``a_in << 6`` per step, toolchain/quantize.py). Used by
toolchain/lower_alpha.py only.
"""
from __future__ import annotations

import numpy as np

from toolchain.calibration import LayerRanges
from toolchain.quantize import (
    A_IN_MAX, DECAY_UNITY, MANTISSA, STATE_SHIFT, UV_MAX, VTH_AUTO_MAX, VTH_MIN, WEIGHT_EXP_MAX, weight_exp_min,
)

#: (key, what, limit) of every checked magnitude; calibrated mode checks the first three (positive v saturates only
#: in the step the neuron spikes, which it still does)
LIMITS = (("a_in_max", "synaptic input per step |a_in|", A_IN_MAX),
          ("u_max", "current |u| (24-bit, wraps)", UV_MAX),
          ("v_neg_max", "negative voltage |v| (24-bit, saturates)", UV_MAX),
          ("v_pos_max", "positive voltage v (24-bit, saturates)", UV_MAX))


def peak_factor(D: int, window: int, repeated: bool) -> float:
    """Worst-case v / (u increment) for one input: max_n (n+1) r^n (once) or sum_n (n+1) r^n (every step)."""
    r = 1.0 - D / DECAY_UNITY
    n = np.arange(window, dtype=np.float64)
    k = (n + 1.0) * r**n
    return float(k.sum() if repeated else k.max())


def worst_case_rows(w: np.ndarray, vth: np.ndarray, D: int, window: int, inputs_once: bool) -> dict:
    """Worst-case integer magnitudes of every neuron (row) of one layer: every input/pulse at the same step,
    once per window (an all-white latency-coded image comes close).

    w: (n_out, n_in + n_pulses) int64 effective weights w_int * 2**exp of both synapse blocks (pulse copies
    summed); vth: (n_out,) thresholds. Returns arrays (n_out,)."""
    pos = np.where(w > 0, w, 0).sum(axis=1).astype(np.float64)
    neg = np.where(w < 0, -w, 0).sum(axis=1).astype(np.float64)
    a_max = np.maximum(pos, neg)  # |a_in| per step (16-bit)
    r_u = 1.0 - D / DECAY_UNITY  # u decays with du + 1 = D
    u_gain = 1.0 if inputs_once else min(float(window), 1.0 / (1.0 - r_u))
    p = peak_factor(D, window, not inputs_once)
    return {"a_in_max": a_max, "u_max": a_max * (1 << STATE_SHIFT) * u_gain,
            "v_neg_max": neg * (1 << STATE_SHIFT) * p,
            "v_pos_max": vth * float(1 << STATE_SHIFT) + pos * (1 << STATE_SHIFT) * u_gain}


def calibrated_rows(ranges: LayerRanges, vth: np.ndarray, margin: float) -> dict:
    """Integer magnitudes per neuron predicted from the measured ranges (theta units) at thresholds vth, times
    (1 + margin): the quantities of worst_case_rows, under the same keys."""
    v = vth.astype(np.float64) * (1.0 + margin)
    return {"a_in_max": ranges.a_in * v, "u_max": ranges.u * v * (1 << STATE_SHIFT),
            "v_neg_max": ranges.v_neg * v * (1 << STATE_SHIFT), "v_pos_max": ranges.v_pos * v * (1 << STATE_SHIFT)}


def row_violations(rows: dict, limits: tuple = LIMITS) -> np.ndarray:
    """(n_out,) bool: neurons whose magnitudes (worst case or calibrated) exceed a limit."""
    bad = np.zeros(rows["a_in_max"].shape, dtype=bool)
    for key, _, limit in limits:
        bad |= rows[key] > limit
    return bad


def first_violation(rows: dict, limits: tuple = LIMITS) -> tuple[str, float, int, int] | None:
    """(what, value, limit, neuron) of the largest violation of the first limit that is exceeded, else None."""
    for key, what, limit in limits:
        if np.any(rows[key] > limit):
            j = int(np.argmax(rows[key]))
            return what, float(rows[key][j]), limit, j
    return None


def violation_kind(what: str) -> str:
    """'a_in' for the synaptic-input limit, else 'state' (selects the remedies an error names)."""
    return "a_in" if what.startswith("synaptic input") else "state"


def vth_caps(weights: np.ndarray, pulse_weights: np.ndarray, scale: float, D: int, window: int, bits: int,
             max_copies: int, ranges: LayerRanges | None = None, margin: float = 0.0) -> tuple[np.ndarray, int]:
    """Largest threshold per neuron that the ranges allow (float, before rounding), capped at
    2**16, at the pulse weights that ``max_copies`` copies carry at the finest exponent (unless that is below
    VTH_MIN), and so that the input block keeps the smallest exponent that leaves every neuron >= VTH_MIN;
    returns (caps (n_out,), that exponent). weights (n_out, n_in), pulse_weights (n_out, n_pulses): float weights
    (model units); scale: integer increment per unit weight and unit vth. ranges: measured ranges (calibrated
    mode, with ``margin``) instead of the worst case."""
    signed = np.hstack([weights, pulse_weights])
    A = np.abs(signed) * scale  # integer increment per unit vth
    pos = np.where(signed > 0, A, 0.0).sum(axis=1)
    neg = np.where(signed < 0, A, 0.0).sum(axis=1)
    p = peak_factor(D, window, False)
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
        w_big = np.abs(weights).max(axis=1, initial=0.0) * scale
        hi = MANTISSA[bits][1]
        p_big = np.abs(pulse_weights).max(axis=1, initial=0.0) * scale
        pulse_cap = max_copies * (hi - 0.5) * 2.0 ** weight_exp_min(bits) / p_big  # pulses at the finest exponent
        caps = np.where(pulse_cap >= VTH_MIN, np.minimum(caps, pulse_cap), caps)
        for wexp in range(weight_exp_min(bits), WEIGHT_EXP_MAX + 1):
            mant_cap = (hi - 0.5) * 2.0**wexp / w_big  # keeps the rounded mantissa <= hi at this exponent
            if np.all(np.minimum(caps, mant_cap) >= min(VTH_MIN, caps.min())) or wexp == WEIGHT_EXP_MAX:
                break
    return np.minimum(caps, mant_cap), wexp
