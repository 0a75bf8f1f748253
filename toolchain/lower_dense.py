"""Lowering of a :class:`toolchain.ir.Dense` node onto Lava's stock ``lava.proc.dense.Dense`` (fixed point).

The float weights (units of the target population's threshold) are multiplied by the population's integer
``scale`` (integer units per threshold) and rounded to the mantissa grid at the smallest weight exponent that
fits (toolchain/quantize.py): 8-bit mantissas are even integers in [-256, 254]; at exponent -1 the effective
weights are the integers in [-128, 127].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolchain.quantize import choose_weight_exp, effective_weights, mantissa_round


@dataclass(frozen=True)
class DenseQuant:
    """mantissas: (n_out, n_in) int64 on the grid of ``bits``; exp: weight exponent; effective: mantissas * 2**exp
    (int64, the integers the Dense sum realises); max_error: largest |effective / scale - w| in threshold units."""

    mantissas: np.ndarray
    exp: int
    effective: np.ndarray
    max_error: float


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
