"""Numba kernels of the hand-written surrogate-gradient BPTT (models/rate_bptt.py): the LIF recurrences of both
layers forward over T steps and their adjoints backward; the matrix products between them are BLAS (torch).

Arrays are (T, B, n) in the weights' dtype (float32 or float64; scalars passed in that dtype so that numba does
not promote float32 arithmetic to float64), parallel over samples (numba threads). Per layer, forward:
V_t = min(leak R_{t-1} + I_t, v_th) (clamp), a_t = V_t >= v_th, R_t = V_t (1 - a_t) (reset to 0). Backward, with
the clamp straight through and the reset factor (1 - a_t) not differentiated:
G_t = dL/dV_t = (direct term)_t + leak (1 - a_t) G_{t+1}; dL/dI_t = G_t.
Subnormal surrogate derivatives and adjoints (|x| < tiny, the dtype's smallest normal number) are flushed to 0:
they change no weight by more than ~1e-31 after Adam, and subnormal operands slow the products ~10x.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from models.rate_kernels import add_rows

_JIT = dict(parallel=True, fastmath=True, cache=True, error_model="numpy")


@numba.njit(**_JIT)
def hidden_forward(i1, a1, u1, nspk, spk, leak, v_th, one, zero):  # pragma: no cover - compiled
    """Hidden layer over all steps: a1 = spikes (0/1), u1 = V - v_th (<= 0, clamped; the caller turns it into
    e^u with torch's vectorised exp: numba's exp is a scalar libm call here, 30 ms per batch); the spikes also as
    lists: row r = t B + n spiked at neurons spk[r, :nspk[r]]."""
    t_steps, b, h = i1.shape
    for n in prange(b):
        v = np.zeros(h, i1.dtype)
        for t in range(t_steps):
            a = a1[t, n]
            uu = u1[t, n]
            cur = i1[t, n]
            for i in range(h):                      # branch-free: vectorises
                vv = min(leak * v[i] + cur[i], v_th)
                uu[i] = vv - v_th
                fired = vv >= v_th
                a[i] = one if fired else zero
                v[i] = zero if fired else vv
            r = t * b + n
            c = 0
            for i in range(h):
                if a[i] != zero:
                    spk[r, c] = i
                    c += 1
            nspk[r] = c


@numba.njit(**_JIT)
def output_forward(i2, x, a2, err, counts, sq_err, leak, v_th, one, zero):  # pragma: no cover - compiled
    """Output layer over all steps: a2 spikes (uint8), err = (v_th x - V) where x != a2 else 0 (masked loss
    term), counts[n, j] = output spikes summed over steps, sq_err[n] = sum of err^2 of sample n."""
    t_steps, b, n_out = i2.shape
    for n in prange(b):
        v = np.zeros(n_out, i2.dtype)
        sq = zero
        for t in range(t_steps):
            for j in range(n_out):
                vv = leak * v[j] + i2[t, n, j]
                if vv > v_th:
                    vv = v_th
                xx = x[t, n, j]
                fired = vv >= v_th
                if (xx != zero) != fired:
                    e = v_th * xx - vv
                    err[t, n, j] = e
                    sq += e * e
                else:
                    err[t, n, j] = zero
                if fired:
                    a2[t, n, j] = 1
                    counts[n, j] += one
                    v[j] = zero
                else:
                    a2[t, n, j] = 0
                    v[j] = vv
        sq_err[n] = sq


@numba.njit(**_JIT)
def output_backward(err, a2, g2, scale, leak, one, zero, tiny):  # pragma: no cover - compiled
    """G2_t = scale err_t + leak (1 - a2_t) G2_{t+1} (scale = -1/B: dL/dV of 0.5 sum err^2 / B)."""
    t_steps, b, n_out = err.shape
    for n in prange(b):
        g = np.zeros(n_out, err.dtype)
        for t in range(t_steps - 1, -1, -1):
            for j in range(n_out):
                gn = scale * err[t, n, j] + (zero if a2[t, n, j] else leak * g[j])
                gn = gn if abs(gn) >= tiny else zero
                g[j] = gn
                g2[t, n, j] = gn


@numba.njit(**_JIT)
def hidden_backward(da1, e1, a1, g1, leak, one, zero, tiny):  # pragma: no cover - compiled
    """G1_t = dL/da1_t s'(V1_t - v_th) + leak (1 - a1_t) G1_{t+1}, with e1 = e^(V1 - v_th) and
    s' = e1 / (1 + e1)^2 (flushed to 0 below tiny)."""
    t_steps, b, h = da1.shape
    for n in prange(b):
        g = np.zeros(h, da1.dtype)
        for t in range(t_steps - 1, -1, -1):
            for i in range(h):
                e = e1[t, n, i]
                sg = e / ((one + e) * (one + e))
                sg = sg if sg >= tiny else zero
                gn = da1[t, n, i] * sg + leak * (one - a1[t, n, i]) * g[i]
                gn = gn if abs(gn) >= tiny else zero
                g[i] = gn
                g1[t, n, i] = gn


@numba.njit(**_JIT)
def gather_rows(nspk, spk, src, out, zero):  # pragma: no cover - compiled
    """out[r] = sum of src[i] over the spikes i of row r (= a1 @ src for a sparse 0/1 a1, src (H, n))."""
    rows, n = out.shape
    for r in prange(rows):
        o = out[r]
        for j in range(n):
            o[j] = zero
        add_rows(o, src, spk[r], 0, nspk[r])


@numba.njit(**_JIT)
def gather_csr(ptr, idx, src, out, zero):  # pragma: no cover - compiled
    """out[r] = sum of src[k] over k in idx[ptr[r]:ptr[r + 1]] (= x @ src for a sparse 0/1 x given as index lists,
    models.rate_kernels.spike_lists), src (n_in, H), out (rows, H); four rows per pass over out[r]."""
    rows, h = out.shape
    for r in prange(rows):
        o = out[r]
        for i in range(h):
            o[i] = zero
        add_rows(o, src, idx, ptr[r], ptr[r + 1])


@numba.njit(**_JIT)
def scatter_rows(nspk, spk, src, out, n_blocks, zero):  # pragma: no cover - compiled
    """out[i] = sum of src[r] over the rows r in which neuron i spiked (= a1^T @ src), out (H, n). Parallel over
    n_blocks ranges of i (each scans all spike lists), so no two threads write the same row."""
    rows = src.shape[0]
    h, n = out.shape
    for c in prange(n_blocks):
        lo = c * h // n_blocks
        hi = (c + 1) * h // n_blocks
        for i in range(lo, hi):
            o = out[i]
            for j in range(n):
                o[j] = zero
        for r in range(rows):
            s = src[r]
            for p in range(nspk[r]):
                i = spk[r, p]
                if lo <= i < hi:
                    o = out[i]
                    for j in range(n):
                        o[j] += s[j]
