"""Numba kernels of the conv autoencoder's LIF layers on the CPU (models/conv_model.py, ``LIFSequence``): the
neuron update over T steps forward and its adjoint backward, each one pass over memory per step instead of the
~10 elementwise torch operations (and temporaries) per step of the torch loop. Same equations, same rounding:

forward (per neuron, t = 0 .. T-1):  V = leak V + I[t] (two roundings, as torch's ``mul_``/``add_``);
    with ``clamp``: V < -v_th -> V = v_th (the authors' code);  S[t] = V > v_th;  V = 0 where S[t];
    with ``surrogate``: sg[t] = 1 / (1 + slope |V - v_th|)^2 (the fast sigmoid's derivative at V[t]).
backward (t = T-1 .. 0):  g = carry (1 - S[t]) + g_S[t] d[t]  (d = sg, or S for the code's straight-through);
    g = 0 where clamped;  g_I[t] = g;  carry = g * carry_leak.

Arrays are (T, M) (M = batch x neurons, C order) in float32 or float64; scalars are passed in that dtype so
float32 arithmetic stays float32. Parallel over blocks of neurons (numba threads). No fastmath: the forward's
spikes equal the torch loop's bit for bit (tests/test_conv_train_speed.py).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

_JIT = dict(parallel=True, fastmath=False, cache=True, error_model="numpy")
BLOCK = 2048  # neurons per parallel work item (v and the block's rows stay in L1/L2)


@numba.njit(**_JIT)
def lif_forward(cur, spikes, sg, clamped, v_out, leak, v_th, slope, use_sg, use_clamp):  # pragma: no cover
    """cur (T, M) -> spikes (T, M) 0/1, sg (T, M) surrogate slopes (if use_sg), clamped (T, M) bool (if
    use_clamp), v_out (M,) the potential after the last step's reset (before the final leak)."""
    t_steps, m = cur.shape
    one = v_th - v_th + 1
    zero = v_th - v_th
    n_blocks = (m + BLOCK - 1) // BLOCK
    for blk in prange(n_blocks):
        lo = blk * BLOCK
        hi = min(m, lo + BLOCK)
        v = np.zeros(hi - lo, cur.dtype)
        for t in range(t_steps):
            for j in range(lo, hi):
                vv = leak * v[j - lo]
                vv = vv + cur[t, j]
                if use_clamp:
                    low = vv < -v_th
                    clamped[t, j] = low
                    if low:
                        vv = v_th
                fired = vv > v_th
                spikes[t, j] = one if fired else zero
                if use_sg:
                    d = one + slope * abs(vv - v_th)
                    sg[t, j] = one / (d * d)
                v[j - lo] = zero if fired else vv
        for j in range(lo, hi):
            v_out[j] = v[j - lo]


@numba.njit(**_JIT)
def lif_forward_sg(cur, spikes, sg, v_out, leak, v_th, slope):  # pragma: no cover - compiled
    """:func:`lif_forward` for the default case (surrogate slopes, no clamp), branch-free so that it vectorises."""
    t_steps, m = cur.shape
    one = v_th - v_th + 1
    zero = v_th - v_th
    n_blocks = (m + BLOCK - 1) // BLOCK
    for blk in prange(n_blocks):
        lo = blk * BLOCK
        hi = min(m, lo + BLOCK)
        v = np.zeros(hi - lo, cur.dtype)
        for t in range(t_steps):
            c = cur[t, lo:hi]
            s = spikes[t, lo:hi]
            g = sg[t, lo:hi]
            for j in range(hi - lo):
                vv = leak * v[j]
                vv = vv + c[j]
                fired = vv > v_th
                s[j] = one if fired else zero
                d = one + slope * abs(vv - v_th)
                g[j] = one / (d * d)
                v[j] = zero if fired else vv
        v_out[lo:hi] = v


@numba.njit(**_JIT)
def lif_backward(g_spikes, deriv, spikes, clamped, carry0, g_cur, carry_leak, use_gs, use_clamp):  # pragma: no cover
    """Adjoint of :func:`lif_forward`: g_cur (T, M) = dL/dI from g_spikes (T, M) (if use_gs), the spike
    derivative ``deriv`` (T, M) and carry0 (M,) = dL/dV after the last step's reset."""
    t_steps, m = g_cur.shape
    one = carry_leak - carry_leak + 1
    zero = carry_leak - carry_leak
    n_blocks = (m + BLOCK - 1) // BLOCK
    for blk in prange(n_blocks):
        lo = blk * BLOCK
        hi = min(m, lo + BLOCK)
        carry = carry0[lo:hi].copy()
        for t in range(t_steps - 1, -1, -1):
            for j in range(lo, hi):
                g = carry[j - lo] * (one - spikes[t, j])
                if use_gs:
                    g = g + g_spikes[t, j] * deriv[t, j]
                if use_clamp and clamped[t, j]:
                    g = zero
                g_cur[t, j] = g
                carry[j - lo] = g * carry_leak


def set_threads(n: int) -> int:
    """Set numba's threads for these kernels to min(n, NUMBA_NUM_THREADS); returns the previous count."""
    prev = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    return prev


def forward_np(cur: np.ndarray, leak: float, v_th: float, slope: float, use_sg: bool, use_clamp: bool):
    """(spikes, sg or None, clamped or None, v_last) of ``cur`` (T, M) C-contiguous float32/float64."""
    dt = cur.dtype.type
    t_steps, m = cur.shape
    spikes = np.empty_like(cur)
    sg = np.empty_like(cur) if use_sg else np.empty((1, 1), cur.dtype)
    clamped = np.empty(cur.shape, np.bool_) if use_clamp else np.empty((1, 1), np.bool_)
    v_out = np.empty(m, cur.dtype)
    if use_sg and not use_clamp:
        lif_forward_sg(cur, spikes, sg, v_out, dt(leak), dt(v_th), dt(slope))
        return spikes, sg, None, v_out
    lif_forward(cur, spikes, sg, clamped, v_out, dt(leak), dt(v_th), dt(slope), use_sg, use_clamp)
    return spikes, (sg if use_sg else None), (clamped if use_clamp else None), v_out
