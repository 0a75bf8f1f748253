"""The LIF update of Lava 0.10's stock ``PyLifResetModelBitAcc`` for one step of a population, as numba helpers
inlined into hw_sim's kernels (hw_sim/lif.py for Dense chains, hw_sim/conv.py for convolutional networks).

Integer equations (du = 4095, toolchain/compiled_steps.py): ``u = a_in << 6`` wrapping at 24 bits; ``v =
clip(trunc0(v (4096 - dv) / 4096) + u, +-(2**23 - 1))``; spike where ``v > vth << 6``; ``v = 0`` after a spike.
Range events are counted per call into ``ev`` (4 counters, neuron-steps): a_in beyond 16 bits, u wrapped, v
saturated low, v saturated high.

Every helper takes the synaptic sums ``acc`` (integer array; ``a_in = acc << shift``), ``n_out`` neurons,
``keep = 4096 - dv``, thresholds ``thr`` (int32, ``vth << 6``), the potentials ``v`` (int32, updated), the step's
output spikes ``out_row`` (written, 0/1) and ``ev``. :func:`lif_update` picks the cheapest exact one from a bound
of ``max |acc|``; the three paths give identical results wherever their preconditions hold.
"""
from __future__ import annotations

import numba
import numpy as np

from toolchain.quantize import A_IN_MAX, DECAY_BITS, DECAY_UNITY, STATE_SHIFT, UV_MAX

_LIM = UV_MAX + 1  # Lava's max_uv_val = 2**23
_A_MAX = A_IN_MAX  # 16-bit synaptic input (hardware; Lava's simulation does not limit it)


@numba.njit(cache=True, nogil=True, inline="always")
def max_abs(acc, n_out):  # pragma: no cover  (compiled)
    """max |acc[:n_out]| (int16, int32 or int64 acc) as int64 (a SIMD min/max reduction)."""
    hi = acc.dtype.type(0)
    lo = acc.dtype.type(0)
    for j in range(n_out):
        hi = max(hi, acc[j])
        lo = min(lo, acc[j])
    return max(np.int64(hi), -np.int64(lo))


@numba.njit(cache=True, nogil=True, inline="always")
def _decay32(vj, kp):  # pragma: no cover  (compiled)
    """trunc0(v keep / 4096) on int32 lanes (|v| < 2**23, keep <= 4096): ``(|v| >> 12) keep + ((|v| & 4095) keep)
    >> 12`` with v's sign, so that no product leaves 32 bits."""
    i32 = np.int32
    av = i32(abs(vj))
    d = i32(i32(i32(av >> i32(DECAY_BITS)) * kp)
            + i32(i32(i32(av & i32(DECAY_UNITY - 1)) * kp) >> i32(DECAY_BITS)))
    return i32(-d) if vj < i32(0) else d


@numba.njit(cache=True, nogil=True, inline="always")
def update16(acc, n_out, shift, keep, thr, v, out_row, ev):  # pragma: no cover  (compiled)
    """LIF step for ``|a_in| = max |acc| << shift <= 2**23`` on 32-bit lanes, branch-free (every intermediate is
    cast back to int32: numba would widen int32 arithmetic to int64 and halve the SIMD width)."""
    i32 = np.int32
    e0 = i32(0)
    e1 = i32(0)
    e2 = i32(0)
    e3 = i32(0)
    sh = i32(shift & 15)                # masked: LLVM then knows the shift fits 32-bit lanes (shift <= 8)
    kp = i32(keep)
    for j in range(n_out):
        a = i32(i32(acc[j]) << sh)                                    # |a| <= 2**23
        e0 = i32(e0 + i32((a > i32(_A_MAX)) | (a < i32(-_A_MAX))))
        u = i32(a << i32(STATE_SHIFT))                                # du = 4095: u = a << 6, |u| <= 2**29
        hi = u > i32(_LIM)
        lo = u <= i32(-_LIM)
        u = i32(u - i32(2 * _LIM)) if hi else (i32(u + i32(2 * _LIM)) if lo else u)
        e1 = i32(e1 + i32(hi | lo))
        vv = i32(_decay32(v[j], kp) + u)
        sl = vv < i32(-_LIM + 1)
        sg = vv > i32(_LIM - 1)
        vv = i32(-_LIM + 1) if sl else (i32(_LIM - 1) if sg else vv)
        e2 = i32(e2 + i32(sl))
        e3 = i32(e3 + i32(sg))
        s = vv > thr[j]
        out_row[j] = s
        v[j] = i32(0) if s else vv
    ev[0] += e0
    ev[1] += e1
    ev[2] += e2
    ev[3] += e3


@numba.njit(cache=True, nogil=True, inline="always")
def update16_quiet(acc, n_out, shift, keep, thr, v, out_row, ev):  # pragma: no cover  (compiled)
    """:func:`update16` for a step whose sums rule out |a_in| beyond 16 bits and so a wrap of u (the caller checks
    ``max |acc| << shift <= A_IN_MAX``): v's saturation high is counted (ev[3]) but not clipped, since a v above
    2**23 - 1 > vth << 6 spikes and resets to 0 either way; v is kept unclipped low and a second pass (only when
    some v fell below -(2**23 - 1)) saturates it and counts it (ev[2]). Spikes are unaffected: a clipped-low v
    cannot exceed vth >= 0."""
    i32 = np.int32
    sh = i32((shift + STATE_SHIFT) & 31)
    kp = i32(keep)
    low = i32(0)
    high = i32(0)
    for j in range(n_out):
        u = i32(i32(acc[j]) << sh)                                    # a_in << 6, |u| <= 2**21
        vv = i32(_decay32(v[j], kp) + u)
        low = min(low, vv)
        high = i32(high + i32(vv > i32(_LIM - 1)))
        s = vv > thr[j]
        out_row[j] = s
        v[j] = i32(0) if s else vv
    ev[3] += high
    if low < i32(-_LIM + 1):
        for j in range(n_out):
            if v[j] < -_LIM + 1:
                v[j] = -_LIM + 1
                ev[2] += 1


@numba.njit(cache=True, nogil=True, inline="always")
def update64(acc, n_out, shift, keep, thr, v, out_row, ev):  # pragma: no cover  (compiled)
    """LIF step from sums of any size (the rare path), per neuron in int64 arithmetic."""
    for j in range(n_out):
        a = np.int64(acc[j]) << shift
        if a > _A_MAX or a < -_A_MAX:
            ev[0] += 1
        u = a << STATE_SHIFT
        if u > _LIM:
            u -= 2 * _LIM
            ev[1] += 1
        elif u <= -_LIM:
            u += 2 * _LIM
            ev[1] += 1
        x = np.int64(v[j]) * keep
        d = (x >> DECAY_BITS) if x >= 0 else -((-x) >> DECAY_BITS)
        vv = d + u
        if vv < -_LIM + 1:
            vv = -_LIM + 1
            ev[2] += 1
        elif vv > _LIM - 1:
            vv = _LIM - 1
            ev[3] += 1
        s = vv > thr[j]
        out_row[j] = s
        v[j] = 0 if s else vv


@numba.njit(cache=True, nogil=True, inline="always")
def lif_update(acc, n_out, shift, keep, thr, v, out_row, ev, bound):  # pragma: no cover  (compiled)
    """One LIF step of n_out neurons on the cheapest exact path for ``bound`` >= max |acc[:n_out]| (a looser
    bound only picks a more general path): :func:`update16_quiet` when ``bound << shift`` fits 16 bits,
    :func:`update16` when it is at most 2**23, else :func:`update64`."""
    if bound << shift <= _A_MAX:
        update16_quiet(acc, n_out, shift, keep, thr, v, out_row, ev)
    elif bound << shift <= _LIM:
        update16(acc, n_out, shift, keep, thr, v, out_row, ev)
    else:
        update64(acc, n_out, shift, keep, thr, v, out_row, ev)
