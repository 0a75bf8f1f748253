"""Compiled (numba, float64) event-driven kernels for training the temporal-coding network.

Forward: :func:`layer_forward_fast` gives bit-for-bit the same spike times and trace as
``models.exact.layer_forward`` (same operations in the same order), but scans the inputs of a sample once for
all neurons of the layer ("layer-major"), skips intervals whose potential provably stays below threshold
with a multiply instead of an ``exp``, and stops when every neuron has spiked. Cost per sample is
proportional to the number of input spikes times the number of neurons still waiting to spike.

Backward (exact derivatives, equations 4 and 5 of Comsa et al. 2021; W = W0(z) of the forward pass)::

    d t_out / d t_i = w_i e^{tau t_i} (tau (t_i - B/A) + W + 1) / (A (1 + W))
    d t_out / d w_i =     e^{tau t_i} (t_i - B/A + W / tau)     / (A (1 + W))

for the causal inputs (the first ``n_prefix`` in time order) of every spiking neuron, each clipped to
``[-clip, clip]`` (clip <= 0 disables clipping); later inputs get nothing. A neuron that does not spike gets
``-penalty`` on the gradient of every incoming weight (pulses included), once per sample.

Parallelism is deterministic: the forward pass runs in parallel over samples (optionally also over shares of
the neurons; every item writes only its own entries), the backward pass in parallel over fixed chunks of
neurons (each neuron owns its weight-gradient row and sums the samples in order; input-time gradients are
summed per chunk, then over the chunks in order), so results do not depend on the number of threads. With
one numba thread (``numba.set_num_threads(1)``; models/threads.py does this for small batches) the parallel
loops run in the calling thread. The per-sample forward body works on buffers indexed from 0 so that its
accumulation loop vectorises (SIMD, no change in the operations or their order); tests/test_temporal_speed.py
checks every kernel bitwise against a frozen copy of the previous version (tests/reference_temporal_kernels.py).
No dense (N, n_out, n_in) tensor is ever built.
All times are in model time units; ``inf`` means no spike.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from models.exact import lambertw0

# The cheap "stays below threshold" test must be a true upper bound despite rounding: skip only when the
# bound is below theta by this relative margin, otherwise run the exact test of models.exact.first_spike.
_BOUND_MARGIN = 1.0 - 1e-9

# IEEE division (x / 0 = inf) instead of Python's ZeroDivisionError check: the checks' branches stop LLVM from
# vectorising the loops. The kernels never divide by zero on valid inputs, so results are unchanged.
_JIT = {"cache": True, "error_model": "numpy"}


@numba.njit(**_JIT)
def _insertion_sort(vals, perm, k0, k1):
    """Stable in-place insertion sort of perm[k0:k1] by vals[perm]."""
    for u in range(k0 + 1, k1):
        p = perm[u]
        v = vals[p]
        q = u - 1
        while q >= k0 and vals[perm[q]] > v:
            perm[q + 1] = perm[q]
            q -= 1
        perm[q + 1] = p


@numba.njit(**_JIT)
def _stable_argsort(vals, perm):
    """perm = np.argsort(vals, kind="mergesort") for finite vals, in O(n) for spread-out values.

    Bucket sort: buckets filled in index order, then a stable insertion sort inside each bucket;
    falls back to numba's mergesort when a bucket is crowded.
    """
    n = vals.shape[0]
    if n <= 32:
        for k in range(n):
            perm[k] = k
        _insertion_sort(vals, perm, 0, n)
        return
    lo = vals[0]
    hi = vals[0]
    for k in range(1, n):
        v = vals[k]
        if v < lo:
            lo = v
        if v > hi:
            hi = v
    if hi == lo:
        for k in range(n):
            perm[k] = k
        return
    scale = n / (hi - lo)
    bucket = np.empty(n, dtype=np.int64)
    start = np.zeros(n + 1, dtype=np.int64)
    for k in range(n):
        bk = int((vals[k] - lo) * scale)
        if bk >= n:
            bk = n - 1
        bucket[k] = bk
        start[bk + 1] += 1
    crowded = False
    for bk in range(n):
        if start[bk + 1] > 48:
            crowded = True
        start[bk + 1] += start[bk]
    if crowded:
        idx = np.argsort(vals, kind="mergesort")
        for k in range(n):
            perm[k] = idx[k]
        return
    fill = start[:n].copy()
    for k in range(n):
        bk = bucket[k]
        perm[fill[bk]] = k
        fill[bk] += 1
    for bk in range(n):
        if start[bk + 1] - start[bk] > 1:
            _insertion_sort(vals, perm, start[bk], start[bk + 1])


@numba.njit(**_JIT)
def _sort_sample(x, order, ts, es, inv_es, tau):
    """Stable time order of one sample's inputs; returns the number of finite (spiking) inputs.

    Fills ``order`` (all n_in indices: finite ones by time, ties by index, then the silent ones by index,
    i.e. ``np.argsort(x, kind="mergesort")``), and for the first n_valid entries the sorted times ``ts``,
    ``es = exp(tau t)`` and ``inv_es = 1 / es``.
    """
    n_in = x.shape[0]
    n_valid = 0
    for i in range(n_in):
        if x[i] < np.inf:
            n_valid += 1
    fin = np.empty(n_valid, dtype=np.int64)
    vals = np.empty(n_valid)
    c = 0
    c_inf = n_valid
    for i in range(n_in):
        if x[i] < np.inf:
            fin[c] = i
            vals[c] = x[i]
            c += 1
        else:
            order[c_inf] = i
            c_inf += 1
    idx = np.empty(n_valid, dtype=np.int64)
    _stable_argsort(vals, idx)
    for k in range(n_valid):
        i = fin[idx[k]]
        order[k] = i
        t = x[i]
        ts[k] = t
        if k > 0 and t == ts[k - 1]:  # a tie (8-bit pixels give many): the same exp, computed once
            es[k] = es[k - 1]
            inv_es[k] = inv_es[k - 1]
            continue
        e = math.exp(tau * t)
        es[k] = e
        inv_es[k] = 1.0 / e
    return n_valid


@numba.njit(inline="always", **_JIT)
def _try_spike(s, j, k, aj, bj, ti, t_next, t_hi, inv_ek, tau, inv_tau, theta, bound,
               t_out, a_out, b_out, w_out, k_out):
    """Exact threshold test of models.exact.first_spike for neuron j on [ti, t_next); records a spike."""
    if aj <= 0.0:
        return False
    pk = max(aj * inv_tau, aj * ti - bj)
    pk = min(pk, aj * t_hi - bj)
    if pk * inv_ek < bound:
        return False
    bpa = bj / aj
    tq = bpa + inv_tau
    if tq < ti:
        tq = ti
    if tq > t_next:
        tq = t_next
    if math.exp(-tau * tq) * (aj * tq - bj) < theta:
        return False
    z = -(tau * theta / aj) * math.exp(tau * bpa)
    w = lambertw0(z)
    t = bpa - w / tau
    if t < ti:
        t = ti
    if t >= t_next:
        return False
    t_out[s, j] = t
    a_out[s, j] = aj
    b_out[s, j] = bj
    w_out[s, j] = w
    k_out[s, j] = k + 1
    return True


@numba.njit(inline="always", **_JIT)
def _forward_item(x, weights_t, s, j0, j1, tau, inv_tau, theta, bound, t_out, a_out, b_out, w_out, k_out,
                  ordr, ts, es, inv_es, a, b, alive, act):
    """Sample s, neurons j0..j1-1 of a layer: writes their rows of the outputs; returns n_valid.

    ordr, ts, es, inv_es (n_in,) and a, b, alive, act (>= j1 - j0,) are scratch buffers (indexed from 0 for the
    neurons, so that the accumulation loops vectorise). ordr, ts, es come back filled for the sample.
    """
    n_part = j1 - j0
    n_valid = _sort_sample(x, ordr, ts, es, inv_es, tau)
    for q in range(n_part):
        a[q] = 0.0
        b[q] = 0.0
        alive[q] = 1.0  # 1.0 until the neuron spikes
        act[q] = q  # the same neurons as a list, act[:n_act]
    n_act = n_part
    dense = True  # while most neurons wait, update all of them (SIMD) rather than through the list
    for k in range(n_valid):
        ti = ts[k]
        ek = es[k]
        t_next = ts[k + 1] if k + 1 < n_valid else np.inf
        wrow = weights_t[ordr[k], j0:j1]
        if t_next == ti:
            if dense:
                for q in range(n_part):
                    e = wrow[q] * ek
                    a[q] += e
                    b[q] += e * ti
            else:
                for q in range(n_act):
                    jj = act[q]
                    e = wrow[jj] * ek
                    a[jj] += e
                    b[jj] += e * ti
            continue
        # accumulate and count the neurons whose peak potential over [ti, t_next] may reach theta:
        # peak of A t - B is A clamp(B/A + 1/tau, ti, t_next) - B, and e^{-tau t} <= e^{-tau ti} there
        inv_ek = inv_es[k]
        t_hi = t_next if t_next < np.inf else 1e300
        n_cand = 0
        if dense:
            for q in range(n_part):
                e = wrow[q] * ek
                aj = a[q] + e
                bj = b[q] + e * ti
                a[q] = aj
                b[q] = bj
                pk = max(aj * inv_tau, aj * ti - bj)
                pk = min(pk, aj * t_hi - bj)
                if pk * inv_ek * alive[q] >= bound and aj > 0.0:
                    n_cand += 1
        else:
            for q in range(n_act):
                jj = act[q]
                e = wrow[jj] * ek
                aj = a[jj] + e
                bj = b[jj] + e * ti
                a[jj] = aj
                b[jj] = bj
                pk = max(aj * inv_tau, aj * ti - bj)
                pk = min(pk, aj * t_hi - bj)
                if pk * inv_ek >= bound and aj > 0.0:
                    n_cand += 1
        if n_cand == 0:
            continue
        m = 0
        for q in range(n_act):
            jj = act[q]
            if _try_spike(s, j0 + jj, k, a[jj], b[jj], ti, t_next, t_hi, inv_ek, tau, inv_tau, theta, bound,
                          t_out, a_out, b_out, w_out, k_out):
                alive[jj] = 0.0
                continue
            act[m] = jj
            m += 1
        n_act = m
        dense = 2 * n_act > n_part
        if n_act == 0:
            break
    return n_valid


@numba.njit(**_JIT)
def _forward_outputs(n, n_in, n_out):
    return (np.full((n, n_out), np.inf), np.zeros((n, n_out)), np.zeros((n, n_out)), np.zeros((n, n_out)),
            np.zeros((n, n_out), dtype=np.int32), np.empty((n, n_in), dtype=np.int32), np.zeros(n, dtype=np.int32),
            np.empty((n, n_in)), np.empty((n, n_in)))


@numba.njit(**_JIT)
def _save_order(s, n_valid, ordr, ts, es, order, n_valid_out, es_out, ts_out):
    for k in range(ordr.shape[0]):
        order[s, k] = ordr[k]
    for k in range(n_valid):
        es_out[s, k] = es[k]
        ts_out[s, k] = ts[k]
    n_valid_out[s] = n_valid


@numba.njit(parallel=True, **_JIT)
def layer_forward_fast(in_times, weights_t, tau, theta, n_split=1):
    """Batched exact layer, same results as ``models.exact.layer_forward``.

    The work is split into N * n_split parallel items (a sample and a 1 / n_split share of the neurons), which
    balances small batches over the threads; every item writes only its own entries, so results do not depend
    on n_split or on the number of threads. With one numba thread (``numba.set_num_threads(1)``, see
    models/threads.py) the loop runs in the calling thread.

    in_times:  (N, n_in) float64, time units, inf = no spike
    weights_t: (n_in, n_out) float64, the TRANSPOSED weight matrix (ordinary inputs then pulses)
    Returns t_out, A, B, W (N, n_out) float64, n_prefix (N, n_out) int32, order (N, n_in) int32,
    n_valid (N,) int32 (number of spiking inputs), es and ts (N, n_in) float64: exp(tau t) and t of the
    k-th input in time order (k < n_valid; the rest is undefined).
    """
    n, n_in = in_times.shape
    n_out = weights_t.shape[1]
    t_out, a_out, b_out, w_out, k_out, order, n_valid_out, es_out, ts_out = _forward_outputs(n, n_in, n_out)
    inv_tau = 1.0 / tau
    bound = theta * _BOUND_MARGIN
    n_split = max(1, min(n_split, n_out))
    for item in numba.prange(n * n_split):
        s = item // n_split
        part = item % n_split
        j0 = part * n_out // n_split
        j1 = (part + 1) * n_out // n_split
        ordr = np.empty(n_in, dtype=np.int64)
        ts = np.empty(n_in)
        es = np.empty(n_in)
        inv_es = np.empty(n_in)
        a = np.empty(j1 - j0)
        b = np.empty(j1 - j0)
        alive = np.empty(j1 - j0)
        act = np.empty(j1 - j0, dtype=np.int64)
        n_valid = _forward_item(in_times[s], weights_t, s, j0, j1, tau, inv_tau, theta, bound, t_out, a_out,
                                b_out, w_out, k_out, ordr, ts, es, inv_es, a, b, alive, act)
        if part == 0:
            _save_order(s, n_valid, ordr, ts, es, order, n_valid_out, es_out, ts_out)
    return t_out, a_out, b_out, w_out, k_out, order, n_valid_out, es_out, ts_out


# The neurons of a layer are split into this many fixed chunks for the backward pass (independent of the thread
# count, so that sums are always taken in the same order and results are bitwise reproducible).
GRAD_CHUNKS = 8


# Dense (masked, SIMD) backward when at least this fraction of the (sample, neuron, input) triples is causal.
DENSE_CAUSAL_FRACTION = 0.25


@numba.njit(parallel=True, **_JIT)
def layer_grads(ts, es, weights, t_out, a, b, w, n_prefix, order, g, tau, clip, penalty, col_start, mode=-1):
    """Exact gradients of one layer, summed over samples, in one event-driven pass over the causal inputs.

    ts, es:   (N, n_in) input times and exp(tau t) in time order (from :func:`layer_forward_fast`)
    order:    (N, n_in) input index of each of them; n_prefix (N, n_out) causal inputs per neuron
    weights:  (n_out, n_in); t_out, a, b, w: (N, n_out) the forward trace
    g:        (N, n_out) upstream gradient dL/dt_out (ignored where the neuron did not spike)
    clip:     absolute clip of each local derivative (<= 0: none)
    penalty:  subtracted from the gradient of every weight into a silent neuron, per sample
    col_start: input-time gradients are computed for columns >= col_start only
    mode:     -1 auto, 0 walk each neuron's causal inputs in time order, 1 masked loop over all inputs (SIMD;
              needs col_start == 0). Both give bitwise the same result (same sums in the same order).
    Returns gw (n_out, n_in) and gin (N, n_in) (zero below col_start). Parallel over fixed neuron chunks.
    """
    n, n_in = ts.shape
    n_out = weights.shape[0]
    c = clip if clip > 0.0 else np.inf
    n_chunks = min(GRAD_CHUNKS, n_out)
    n_cols = n_in - col_start
    gw = np.zeros((n_out, n_in))
    part = np.zeros((n_chunks, n, n_cols))
    # dense mode: most neurons' causal sets cover most inputs (typical of a small layer feeding a big one)
    tot = 0
    for s in range(n):
        for j in range(n_out):
            tot += n_prefix[s, j]
    dense = col_start == 0 and (mode == 1 or (mode == -1 and 2 * tot > n * n_out * n_in))
    x_idx = np.zeros((n, n_in) if dense else (0, 0))  # inputs, exp(tau t) and time rank in input order
    es_idx = np.zeros((n, n_in) if dense else (0, 0))
    pos = np.full((n, n_in) if dense else (0, 0), n_in, dtype=np.int32)
    if dense:
        for s in range(n):
            kmax = 0  # inputs at time rank >= kmax are causal for no neuron (ts/es are undefined past n_valid)
            for j in range(n_out):
                kmax = max(kmax, n_prefix[s, j])
            for k in range(kmax):
                i = order[s, k]
                pos[s, i] = k
                x_idx[s, i] = ts[s, k]
                es_idx[s, i] = es[s, k]
    for ch in numba.prange(n_chunks):
        pc = part[ch]
        for j in range(ch * n_out // n_chunks, (ch + 1) * n_out // n_chunks):
            gwj = gw[j]
            wrow = weights[j]
            n_silent = 0
            for s in range(n):
                if t_out[s, j] == np.inf:
                    n_silent += 1
                    continue
                gj = g[s, j]
                if gj == 0.0:
                    continue
                aj = a[s, j]
                wj = w[s, j]
                bpa = b[s, j] / aj
                inv_denom = 1.0 / (aj * (1.0 + wj))
                c0 = wj / tau - bpa
                c1 = wj + 1.0 - tau * bpa
                npj = n_prefix[s, j]
                if dense:  # in input order, masked: vectorises when most inputs are causal
                    for i in range(n_in):  # 2-D indexing, not row views: a view costs atomic refcounts
                        ek = es_idx[s, i] * inv_denom
                        tk = x_idx[s, i]
                        dw = min(max(ek * (tk + c0), -c), c)
                        dt = min(max(wrow[i] * ek * (tau * tk + c1), -c), c)
                        causal = pos[s, i] < npj
                        gwj[i] += gj * dw if causal else 0.0
                        pc[s, i] += gj * dt if causal else 0.0
                    continue
                for k in range(npj):
                    i = order[s, k]
                    ek = es[s, k] * inv_denom
                    tk = ts[s, k]
                    gwj[i] += gj * min(max(ek * (tk + c0), -c), c)  # d t_out / d w_i
                    if i >= col_start:  # d t_out / d t_i
                        pc[s, i - col_start] += gj * min(max(wrow[i] * ek * (tau * tk + c1), -c), c)
            if n_silent > 0:
                pen = penalty * n_silent
                for i in range(n_in):
                    gwj[i] -= pen
    gin = np.zeros((n, n_in))
    for ch in range(n_chunks):
        for s in range(n):
            for q in range(n_cols):
                gin[s, col_start + q] += part[ch, s, q]
    return gw, gin


@numba.njit(**_JIT)
def reconstruction_grad(t_out, targets, latency, scale):
    """Authors' reconstruction loss and its gradient wrt the output spike times.

    Per sample, ``sum_k 0.5 (t_k - latency - target_k)^2`` over spiking outputs (the derivative the
    authors' code backpropagates); returns (sum over samples of the per-pixel squared error with a missing
    spike counted as time 1.0 after the latency, gradient ``scale * (t - latency - target)``, 0 where silent).
    """
    n, m = t_out.shape
    g = np.zeros((n, m))
    sq = 0.0
    for s in range(n):
        for k in range(m):
            t = t_out[s, k]
            if t == np.inf:
                d = 1.0 - targets[s, k]
            else:
                d = t - latency - targets[s, k]
                g[s, k] = scale * d
            sq += d * d
    return sq, g
