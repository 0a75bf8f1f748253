"""Numba kernels of the online rule's per-neuron derivative reset (``OnlineRule(trace_reset="neuron")``, the
paper's text: "reset the derivative of a neuron that spiked"), used by models/rate_online.py.

The eligibility of weight (i, j) in sample n restarts when its postsynaptic neuron i spikes:
e_nij(t) = leak e'_nij(t-1) + a_nj(t), e'_nij(t) = 0 if neuron i spiked at t, else e_nij(t). The gradient of step t
uses e(t) (before this step's reset, as the authors' shrink). With the unshrunk per-sample trace
tr_nj(t) = leak tr_nj(t-1) + a_nj(t) and s = the last step < t at which neuron i spiked in sample n,

    e_nij(t) = tr_nj(t) - leak^(t - s) tr_nj(s)          (e_nij(t) = tr_nj(t) if i has not spiked yet)

so the gradient is the shared-trace product minus a correction from the stored trace history:
g[i, j] = sum_n c_ni tr_nj(t) - sum_n c_ni leak^(t - s_ni) tr_nj(s_ni), c_ni the neuron's error factor. Costs one
row update of length n_pre per (sample, postsynaptic neuron) that has spiked: ~B H n_in multiply-adds per step
for the hidden layer (as dense as the gradient product itself), sparse in the masked output errors for the
output layer. Units: traces in spikes (leak-weighted counts), errors in threshold units.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from models.rate_kernels import adam_row

_JIT = dict(parallel=True, fastmath=True, cache=True, error_model="numpy")


@numba.njit(**_JIT)
def subtract_reset_part(g1t, delta, last, hist, leak_pow, t, corr):  # pragma: no cover - compiled
    """g1t (n_pre, H) -= the reset part: corr[i] = sum_n delta[n, i] leak^(t - s) hist[s, n] with s = last[n, i]
    (skipped where last < 0: no spike yet); hist (T, B, n_pre) holds the unshrunk traces of every step,
    leak_pow[d] = leak^d. ``corr`` (H, n_pre) is scratch."""
    b, h = delta.shape
    n_pre = g1t.shape[0]
    for i in prange(h):
        acc = corr[i]
        for k in range(n_pre):
            acc[k] = 0.0
        for n in range(b):
            s = last[n, i]
            d = delta[n, i]
            if s >= 0 and d != 0.0:
                c = d * leak_pow[t - s]
                row = hist[s, n]
                for k in range(n_pre):
                    acc[k] += c * row[k]
    blk = 64
    for kb in prange((n_pre + blk - 1) // blk):
        k0 = kb * blk
        k1 = min(k0 + blk, n_pre)
        for i in range(h):
            ci = corr[i]
            for k in range(k0, k1):
                g1t[k, i] -= ci[k]


@numba.njit(**_JIT)
def adam_output_layer_reset(w2, m2, s2, err, tr2, hist2, last2, leak_pow, t, g_scale, lr_bc1, b1, c1, b2, c2,
                            inv_bc2, eps, zero):  # pragma: no cover - compiled
    """Adam on w2 (n_out, H) with g2[j] = sum_n (-err[n, j]) e_nj(t) * g_scale fused in, e_nj(t) = tr2[n] -
    leak^(t - s) hist2[s, n] with s = last2[n, j] (the output neuron's last spike before t; none: tr2[n]); only
    the samples with a non-zero error at output j are summed."""
    n_out, h = w2.shape
    b = err.shape[0]
    for j in prange(n_out):
        g = np.zeros(h, w2.dtype)
        for n in range(b):
            e = err[n, j]
            if e == zero:
                continue
            tn = tr2[n]
            for i in range(h):
                g[i] -= e * tn[i]
            s = last2[n, j]
            if s >= 0:
                ce = e * leak_pow[t - s]
                hn = hist2[s, n]
                for i in range(h):
                    g[i] += ce * hn[i]
        adam_row(w2, m2, s2, j, g, g_scale, lr_bc1, b1, c1, b2, c2, inv_bc2, eps)


@numba.njit(parallel=True, cache=True)
def note_spikes(last1, a1, last2, out_counts, prev_counts, t):  # pragma: no cover - compiled
    """last1[n, i] = t where hidden neuron i spiked at step t (a1 != 0); last2[n, j] = t where output neuron j
    spiked (its count rose since ``prev_counts``, which is then brought up to date)."""
    b, h = a1.shape
    n_out = out_counts.shape[1]
    for n in prange(b):
        for i in range(h):
            if a1[n, i] != 0.0:
                last1[n, i] = t
        for j in range(n_out):
            if out_counts[n, j] != prev_counts[n, j]:
                last2[n, j] = t
                prev_counts[n, j] = out_counts[n, j]
