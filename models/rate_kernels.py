"""Numba kernels of the online rule (models/rate_online.py): one step of each layer, the backpropagated hidden
error, and Adam fused with the gradient (or with a gradient computed by BLAS).

Layouts (per batch, B samples): input weights transposed, ``w1t`` (n_active, H): row k holds the weights of input
pixel k, so one input spike adds one contiguous row; output weights ``w2`` (n_out, H) as the model stores them,
so one masked output error adds one contiguous row. Potentials, traces and spikes are (B, n) arrays of the
weights' dtype (float32 or float64). Input spikes of the batch come as index lists per (step, sample)
(:func:`spike_lists`), so the input current costs one row add per spike instead of a dense product.

Every kernel computes in the arrays' dtype: scalars are passed in that dtype (``_consts``), because numba would
promote ``1 - float32`` to float64 and lose the float32 vector width (the old fused Adam ran in float64 for this
reason). ``error_model="numpy"`` keeps divisions branch-free so that loops vectorise. Threads: numba's
(``numba.set_num_threads``); parallel over samples or weight rows, each element's arithmetic is the same for any
thread count.

Adam, per element (m, v reset per batch by the caller): m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
w -= lr_bc1 m / (sqrt(v inv_bc2) + eps) with lr_bc1 = lr / (1 - b1^t), inv_bc2 = 1 / (1 - b2^t).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

_JIT = dict(parallel=True, fastmath=True, cache=True, error_model="numpy")


@numba.njit(**_JIT)
def _adam(w, g, m, v, g_scale, lr_bc1, b1, c1, b2, c2, inv_bc2, eps):  # pragma: no cover - compiled
    rows, cols = w.shape
    for i in prange(rows):
        for j in range(cols):
            gij = g[i, j] * g_scale
            mij = b1 * m[i, j] + c1 * gij
            vij = b2 * v[i, j] + c2 * gij * gij
            m[i, j] = mij
            v[i, j] = vij
            w[i, j] -= lr_bc1 * mij / (np.sqrt(vij * inv_bc2) + eps)


def adam_consts(dtype, lr: float, b1: float, b2: float, step: int, eps: float) -> tuple:
    """(lr_bc1, b1, 1 - b1, b2, 1 - b2, inv_bc2, eps) as scalars of ``dtype`` for Adam step ``step`` (1-based).

    1 - b is computed in float64 from b rounded to ``dtype``, as the fused Adam of commit 7c08753 did: in float32
    1 - b2 = 0.99998713e-3 (not 1.0000000e-3), so v_hat = 0.999987 g^2 at step 1 and full steps are 6.6e-6
    (relative) longer; float64 is unchanged. docs/training.md, "Fashion-1024 after one epoch", says why."""
    dt = np.dtype(dtype).type
    b1d, b2d = dt(b1), dt(b2)
    return (dt(lr / (1.0 - b1 ** step)), b1d, dt(1.0 - float(b1d)), b2d, dt(1.0 - float(b2d)),
            dt(1.0 / (1.0 - b2 ** step)), dt(eps))


def adam_update(w: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, b1: float, b2: float,
                step: int, eps: float, g_scale: float = 1.0) -> None:
    """Bias-corrected Adam step ``step`` (1-based) in place on 2-D C-contiguous arrays of one dtype, with gradient
    ``g * g_scale``."""
    dt = w.dtype.type
    _adam(w, g, m, v, dt(g_scale), *adam_consts(w.dtype, lr, b1, b2, step, eps))


@numba.njit(parallel=True, cache=True)
def spike_lists(x):  # pragma: no cover - compiled
    """x (T, B, n) 0/1 -> (ptr (T*B + 1,) int64, idx (nnz,) int32): the spiking columns of (t, n) are
    idx[ptr[t*B + n]:ptr[t*B + n + 1]], in increasing order. Parallel over rows: a branch-free count, then each
    row compacted branch-free into a scratch row and copied (3.7x faster than a sequential double pass)."""
    t_steps, b, n = x.shape
    rows = t_steps * b
    cnt = np.zeros(rows, np.int64)
    for r in prange(rows):
        xr = x[r // b, r % b]
        c = 0
        for k in range(n):
            c += 1 if xr[k] != 0 else 0
        cnt[r] = c
    ptr = np.zeros(rows + 1, np.int64)
    for r in range(rows):
        ptr[r + 1] = ptr[r] + cnt[r]
    idx = np.empty(ptr[-1], np.int32)
    for r in prange(rows):
        xr = x[r // b, r % b]
        buf = np.empty(n + 1, np.int32)
        p = 0
        for k in range(n):
            buf[p] = k
            p += 1 if xr[k] != 0 else 0
        idx[ptr[r]:ptr[r] + p] = buf[:p]
    return ptr, idx


@numba.njit(parallel=True, cache=True)
def take_columns(x, cols):  # pragma: no cover - compiled
    """x[:, :, cols] as a new C-contiguous array (numpy's fancy indexing on the last axis is ~10x slower here)."""
    t_steps, b, _ = x.shape
    out = np.empty((t_steps, b, cols.size), x.dtype)
    for r in prange(t_steps * b):
        t, s = r // b, r % b
        for j in range(cols.size):
            out[t, s, j] = x[t, s, cols[j]]
    return out


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def add_rows(o, src, idx, p, p_end):  # pragma: no cover - compiled
    """o += sum of the rows src[idx[k]] for k in [p, p_end), four rows per pass over o (20 % less memory traffic
    than one row per pass); inlined into the calling kernel."""
    n = o.shape[0]
    while p + 4 <= p_end:
        ra, rb, rc, rd = src[idx[p]], src[idx[p + 1]], src[idx[p + 2]], src[idx[p + 3]]
        for i in range(n):
            o[i] += (ra[i] + rb[i]) + (rc[i] + rd[i])
        p += 4
    while p < p_end:
        ra = src[idx[p]]
        for i in range(n):
            o[i] += ra[i]
        p += 1


@numba.njit(**_JIT)
def layer1_step(ptr, idx, row0, w1t, xt, v1, u1, a1, tr1, tr1p, counts, leak, v_th, one, zero,
                inv_shrink):  # pragma: no cover - compiled
    """Hidden layer, one step, in place. Current of sample n = sum of rows w1t[k] over its input spikes k
    (idx[ptr[row0 + n]:ptr[row0 + n + 1]]); V = min(leak V + I, v_th); u1 = V - v_th (<= 0; the caller takes
    e^u1 with torch's vectorised exp, numba's is a scalar libm call); a1 = V >= v_th; V = 0 where a1;
    tr1 = leak tr1p + x; tr1p = tr1 (1 - spikes / n_shrink). counts[n] = hidden spikes of sample n."""
    b, h = v1.shape
    n_in = tr1.shape[1]
    for n in prange(b):
        cur = np.zeros(h, v1.dtype)
        add_rows(cur, w1t, idx, ptr[row0 + n], ptr[row0 + n + 1])
        cnt = zero
        for i in range(h):
            v = min(leak * v1[n, i] + cur[i], v_th)
            u1[n, i] = v - v_th
            fired = v >= v_th
            a1[n, i] = one if fired else zero
            v1[n, i] = zero if fired else v
            cnt += one if fired else zero
        shrink = one - cnt * inv_shrink
        for k in range(n_in):
            tr = leak * tr1p[n, k] + xt[n, k]
            tr1[n, k] = tr
            tr1p[n, k] = tr * shrink
        counts[n] = cnt


@numba.njit(**_JIT)
def layer2_step(cur2, xt, a1, v2, tr2, tr2p, err, out_counts, sq_err, leak, v_th, one, zero,
                inv_shrink):  # pragma: no cover - compiled
    """Output layer, one step, in place, after cur2 = a1 @ w2^T: V = min(leak V + I, v_th); a2 = V >= v_th;
    err = (v_th x - V) where x != a2, else 0 (the masked loss term); V = 0 where a2; out_counts += a2;
    tr2 = leak tr2p + a1; tr2p = tr2 (1 - output spikes / n_shrink); sq_err[n] = sum_j err^2 of sample n."""
    b, n_out = v2.shape
    h = a1.shape[1]
    for n in prange(b):
        cnt = zero
        sq = zero
        for j in range(n_out):
            v = leak * v2[n, j] + cur2[n, j]
            if v > v_th:
                v = v_th
            x = xt[n, j]
            fired = v >= v_th
            if (x != zero) != fired:
                e = v_th * x - v
                err[n, j] = e
                sq += e * e
            else:
                err[n, j] = zero
            if fired:
                v2[n, j] = zero
                out_counts[n, j] += one
                cnt += one
            else:
                v2[n, j] = v
        shrink = one - cnt * inv_shrink
        for i in range(h):
            tr = leak * tr2p[n, i] + a1[n, i]
            tr2[n, i] = tr
            tr2p[n, i] = tr * shrink
        sq_err[n] = sq


@numba.njit(**_JIT)
def hidden_error(err, w2, e1, delta, one, zero, tiny):  # pragma: no cover - compiled
    """delta = ((-err) @ w2) * s'(V1 - v_th), s' = e1 / (1 + e1)^2 with e1 = e^(V1 - v_th), summing only the rows
    of w2 whose output has a non-zero error. Subnormal results (|delta| < tiny, the smallest normal number of the
    dtype: s' underflows for V < -86 in float32) are flushed to 0: they change no weight by more than lr * 1e-31
    (Adam's eps is 1e-7), and subnormal operands make the gradient product ~10x slower (measured: 13 ms instead of
    1 ms per step for the 1024 network)."""
    b, n_out = err.shape
    h = w2.shape[1]
    for n in prange(b):
        acc = np.zeros(h, w2.dtype)
        rows = np.empty(n_out, np.int64)              # outputs with a non-zero error, four per pass over acc
        nr = 0
        for j in range(n_out):
            if err[n, j] != zero:
                rows[nr] = j
                nr += 1
        q = 0
        while q + 4 <= nr:
            ja, jb, jc, jd = rows[q], rows[q + 1], rows[q + 2], rows[q + 3]
            ea, eb, ec, ed = err[n, ja], err[n, jb], err[n, jc], err[n, jd]
            ra, rb, rc, rd = w2[ja], w2[jb], w2[jc], w2[jd]
            for i in range(h):
                acc[i] -= (ea * ra[i] + eb * rb[i]) + (ec * rc[i] + ed * rd[i])
            q += 4
        while q < nr:
            j = rows[q]
            e = err[n, j]
            rj = w2[j]
            for i in range(h):
                acc[i] -= e * rj[i]
            q += 1
        for i in range(h):
            e = e1[n, i]
            d = acc[i] * (e / ((one + e) * (one + e)))
            delta[n, i] = d if abs(d) >= tiny else zero


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def adam_row(w2, m2, s2, j, g, g_scale, lr_bc1, b1, c1, b2, c2, inv_bc2, eps):  # pragma: no cover - compiled
    """One Adam step of row j of w2 (moments m2, s2) with the gradient g * g_scale (never stored): the fused
    output-layer updates of the online rule (here and in models/rate_trace_reset.py)."""
    for i in range(g.shape[0]):
        gi = g[i] * g_scale
        mi = b1 * m2[j, i] + c1 * gi
        vi = b2 * s2[j, i] + c2 * gi * gi
        m2[j, i] = mi
        s2[j, i] = vi
        w2[j, i] -= lr_bc1 * mi / (np.sqrt(vi * inv_bc2) + eps)


@numba.njit(**_JIT)
def adam_output_layer(w2, m2, s2, err, tr2, g_scale, lr_bc1, b1, c1, b2, c2, inv_bc2, eps,
                      zero):  # pragma: no cover - compiled
    """Adam on w2 (n_out, H) with g2 = (-err)^T tr2 * g_scale fused in: row j's gradient sums only the samples
    whose output j has a non-zero error, and is never stored."""
    n_out, h = w2.shape
    b = err.shape[0]
    for j in prange(n_out):
        g = np.zeros(h, w2.dtype)
        ns = np.empty(b, np.int64)                    # samples with an error at output j, four per pass over g
        nn = 0
        for n in range(b):
            if err[n, j] != zero:
                ns[nn] = n
                nn += 1
        q = 0
        while q + 4 <= nn:
            na, nb, nc, nd = ns[q], ns[q + 1], ns[q + 2], ns[q + 3]
            ea, eb, ec, ed = err[na, j], err[nb, j], err[nc, j], err[nd, j]
            ta, tb, tc, td = tr2[na], tr2[nb], tr2[nc], tr2[nd]
            for i in range(h):
                g[i] -= (ea * ta[i] + eb * tb[i]) + (ec * tc[i] + ed * td[i])
            q += 4
        while q < nn:
            n = ns[q]
            e = err[n, j]
            tn = tr2[n]
            for i in range(h):
                g[i] -= e * tn[i]
            q += 1
        adam_row(w2, m2, s2, j, g, g_scale, lr_bc1, b1, c1, b2, c2, inv_bc2, eps)
