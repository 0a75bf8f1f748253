"""Quantization core shared by every lowering: Loihi/Lava 0.10 field widths, 12-bit decay codes, weight mantissas
and exponents.

Widths (Lava ``PyLifModelBitAcc`` / ``PyDenseModelBitAcc``, /work/shared/docs/lava-brian2-notes.md section 1):

* decays du, dv: 12-bit unsigned codes; the per-step factor is 1 - code/4096 (u adds an offset of 1 to du);
* threshold vth: 17-bit unsigned mantissa; Lava spikes when v > vth << 6 (``STATE_SHIFT``);
* u, v: 24-bit signed; u wraps, v saturates at +-(2**23 - 1) (``UV_MAX``);
* synaptic input per step a_in: 16-bit signed on hardware (not enforced by Lava's simulation);
* weights: mixed-sign mantissas; 8 bits = even integers in [-256, 254] (Lava zeroes the LSB), 9 bits = integers
  in [-256, 255]; the Dense sum is shifted by ``weight_exp`` in [-1, 7] (-1 is exact for even 8-bit mantissas,
  so the effective weights w / 2 are the integers in [-128, 127], the 9-bit grid at half the range).

``toolchain/compiler.py`` (alpha chain) and the steps-graph lowerings (``toolchain/lower_*.py``) import these;
the alpha compiler re-exports them under their old names.
"""
from __future__ import annotations

import math

import numpy as np

from toolchain.errors import CompileError

DECAY_BITS = 12
DECAY_UNITY = 1 << DECAY_BITS  # 4096
DECAY_MAX = DECAY_UNITY - 1  # largest 12-bit decay code
VTH_BITS = 17
VTH_MAX = (1 << VTH_BITS) - 1  # 131071
VTH_AUTO_MAX = 1 << 16  # default cap when vth is chosen automatically
VTH_MIN = 256  # below this the weight grid (2 / vth theta per step) is too coarse to be useful
UV_BITS = 24
UV_MAX = (1 << (UV_BITS - 1)) - 1  # |u|, |v| must stay <= 2**23 - 1
STATE_SHIFT = 6  # Lava shifts a_in and vth left by 6 bits
A_IN_BITS = 16
A_IN_MAX = (1 << (A_IN_BITS - 1)) - 1  # signed 16-bit synaptic input per step
WEIGHT_BITS = 8  # default: Loihi 2 / Lava Dense default; 9 is allowed (Loihi 1 supports 1-9 bit weights)
MANTISSA = {8: (-256, 254, 2), 9: (-256, 255, 1)}  # mixed sign: (min, max, step); 8 bits: Lava masks the LSB
WEIGHT_EXP_MAX = 7


def mantissa_round(x: np.ndarray, bits: int = WEIGHT_BITS) -> np.ndarray:
    """Round to the mantissa grid of ``bits``-bit mixed-sign weights (8: even integers, 9: integers)."""
    step = MANTISSA[bits][2]
    return (step * np.rint(np.asarray(x, dtype=np.float64) / step)).astype(np.int64)


def weight_exp_min(bits: int) -> int:
    """Smallest useful Dense weight exponent: -1 for 8 bits (even mantissas, so Lava's right shift of the summed
    weights is exact and the effective weights w / 2 form the same integer grid as 9 bits), 0 for 9 bits."""
    return -int(math.log2(MANTISSA[bits][2]))


def choose_weight_exp(x: np.ndarray, layer: str, bits: int = WEIGHT_BITS, fix: str | None = None) -> int:
    """Smallest exponent e >= weight_exp_min(bits) with the rounded mantissas of x / 2**e inside the range.
    fix: the remedy named in the CompileError (default: the remedies of an explicit vth)."""
    lo, hi, _ = MANTISSA[bits]
    big = float(np.abs(x).max(initial=0.0))
    for e in range(weight_exp_min(bits),
                   WEIGHT_EXP_MAX + 1 if math.isfinite(big) and big / 2.0**WEIGHT_EXP_MAX <= 256.0 else 0):
        q = mantissa_round(x / 2.0**e, bits)
        if q.size == 0 or (q.min() >= lo and q.max() <= hi):
            return e
    raise CompileError(
        f"{layer}: scaled weights up to {big:.4g} need a weight exponent above the limit "
        f"{WEIGHT_EXP_MAX}; fix: {fix or f'pass a smaller --vth (e.g. vth={VTH_MIN}) or a larger --steps-per-unit'}"
    )


def effective_weights(mantissas: np.ndarray, exp: int) -> np.ndarray:
    """Integer weights the Dense sum realises: mantissa * 2**exp (exact for exp = -1 on even mantissas)."""
    m = np.asarray(mantissas, dtype=np.int64)
    return m << exp if exp >= 0 else m >> -exp


def leak_decay_code(leak: float) -> int:
    """12-bit voltage decay code of a per-step leak factor: dv = round(4096 (1 - leak)); Lava's v decays by
    1 - dv / 4096 per step (no offset on v). May return 4096 (leak < 1/8192), which the caller must refuse."""
    return int(round(DECAY_UNITY * (1.0 - float(leak))))


def realised_leak(leak: float) -> float:
    """The per-step leak factor the chip realises for ``leak``: 1 - dv / 4096 with dv = leak_decay_code(leak)
    (e.g. 0.9 -> 1 - 410/4096 = 0.89990234375, exact in float64); a leak already on that grid maps to itself."""
    return 1.0 - leak_decay_code(leak) / DECAY_UNITY
