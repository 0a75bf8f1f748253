"""Lowering of a :class:`toolchain.ir.Dense` node onto Lava's stock ``lava.proc.dense.Dense`` (fixed point).

The float weights (units of the target population's threshold) are multiplied by the population's integer
``scale`` (integer units per threshold) and rounded to the mantissa grid at the smallest weight exponent that
fits (toolchain/quantize.py): 8-bit mantissas are even integers in [-256, 254]; at exponent -1 the effective
weights are the integers in [-128, 127].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolchain.quantize import MANTISSA, choose_weight_exp, effective_weights, mantissa_round, weight_exp_min


@dataclass(frozen=True)
class DenseQuant:
    """mantissas: (n_out, n_in) int64 on the grid of ``bits``; exp: weight exponent; effective: mantissas * 2**exp
    (int64, the integers the Dense sum realises; plus fine * 2**fine_exp with a second block); max_error: largest
    |effective / scale - w| in threshold units; fine: mantissas of a second Dense block (the rounding residual at
    fine_exp < exp) or None."""

    mantissas: np.ndarray
    exp: int
    effective: np.ndarray
    max_error: float
    fine: np.ndarray | None = None
    fine_exp: int = 0


def lower_dense(name: str, weight_per_threshold: np.ndarray, scale: np.ndarray | int, bits: int, fix: str,
                exp: int | None = None) -> DenseQuant:
    """Quantize ``weight_per_threshold`` (n_out, n_in; IR weight / v_th) at ``scale`` integer units per
    threshold (one per target neuron, (n_out,), or one for all). exp: weight exponent (None = the smallest that
    fits). CompileError (naming ``fix``) when the scaled weights need an exponent above 7."""
    per = np.asarray(weight_per_threshold, dtype=np.float64)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (per.shape[0],))[:, None]
    x = per * scale
    if exp is None:
        exp = choose_weight_exp(x, name, bits, fix)
    m = mantissa_round(x / 2.0**exp, bits)
    eff = effective_weights(m, exp)
    err = float(np.abs(eff / scale - per).max(initial=0.0))
    return DenseQuant(m, int(exp), eff, err)


def add_residual_block(q: DenseQuant, weight_per_threshold: np.ndarray, scale: np.ndarray | int,
                       bits: int) -> DenseQuant:
    """``q`` plus a second Dense block at the smallest exponent (-1 for 8 bits, 0 for 9) holding each weight's
    rounding residual, so every weight lands on the fine grid (grid step 2**(exp - fine_exp) times finer: with
    8-bit mantissas at exp 1, 4x finer, about 10 bits); both blocks feed the same LIF (Lava sums them). ``q``
    unchanged when its exponent is already the smallest. The residual of a rounding is at most half a coarse
    step, so it always fits the fine mantissa."""
    ef = weight_exp_min(bits)
    if q.exp <= ef:
        return q
    per = np.asarray(weight_per_threshold, dtype=np.float64)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (per.shape[0],))[:, None]
    fine = mantissa_round((per * scale - q.effective) / 2.0**ef, bits)
    lo, hi, _ = MANTISSA[bits]
    fine = np.clip(fine, lo, hi)
    eff = q.effective + effective_weights(fine, ef)
    err = float(np.abs(eff / scale - per).max(initial=0.0))
    return DenseQuant(q.mantissas, q.exp, eff, err, fine, int(ef))
