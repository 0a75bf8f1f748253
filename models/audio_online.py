"""Event-driven online rule for the audiocoder (58,500-2,048-196): Roy et al.'s rule (models/rate_online.py) with
a sparse input layer and lazy Adam on the input weights.

The equations of models/rate_online.py per step t (potentials and weights in threshold units, V_th = 1), with
two differences:

- the target of the output layer is the image autoencoder's hidden spike map ``y[t]`` (not the input):
  ``E = (V_th y[t] - V2pre) * (y[t] XOR a2)``;
- the input layer is event-driven: about 65 of 58,500 inputs spike per clip and step. The hidden current is the sum
  of the weight rows of the inputs that spiked (W1 is stored transposed, (n_in, H), one contiguous row per input).
  The eligibility trace of an input is kept only for its spikes of the last ``window`` steps
  (``tr1 = sum_{s > t - window} prod_{u=s}^{t-1} (leak shrink_b(u)) x[s]``; window = T is the exact trace of
  models/rate_online.py), so the gradient of W1 at step t is non-zero only in the rows of those inputs, and Adam
  updates only those rows (lazy Adam, the semantics of torch.optim.SparseAdam: rows with a zero gradient in a step
  keep their moments and weights; bias correction by the step t of the batch; moments start at 0 every batch as in
  the authors' code). With window = T and every input spiking in every step this is exactly the dense rule.
- W2 (196 x 2,048) is dense and updated every step with the fused Adam of models/rate_kernels.py.

Cost per step: O(events in the window x H) instead of O(n_in x H) (~120 M weights).
"""
from __future__ import annotations

import math

import numba
import numpy as np

from models.rate_online import OnlineRule


@numba.njit(cache=True, fastmath=True)
def _sig_prime(u):  # pragma: no cover - compiled
    e = math.exp(-abs(u))
    return e / ((1.0 + e) * (1.0 + e))


@numba.njit(cache=True, fastmath=True, parallel=True)
def _batch(w1t, w2, ev_ptr, ev_t, ev_b, ev_i, ev_slot, cols, target, window, leak, vth, n_shrink, lr, b1, b2, eps,
           loss_out, counts_out, n_chunks, m1, s1, mrow, m2, s2, step0):  # pragma: no cover - compiled
    """One batch in place. w1t (n_in, H) float32; w2 (n_out, H) float32; events of step t are
    ev_ptr[t]:ev_ptr[t+1] with step ev_t, sample ev_b, input ev_i and slot ev_slot (index into cols, the batch's
    distinct inputs);
    target (T, B, n_out) uint8. loss_out[0] += loss; counts_out (B, n_out) += output spikes.
    Adam moments: m1/s1 rows mrow[slot] (per-batch arrays with mrow = arange, or persistent (n_in, H) arrays with
    mrow = cols); m2/s2 like w2; bias correction by step step0 + t + 1."""
    t_steps, bsz, n_out = target.shape
    h = w1t.shape[1]
    n_slots = cols.shape[0]
    f32 = np.float32
    max_w = 1
    for t in range(t_steps):
        max_w = max(max_w, ev_ptr[t + 1] - ev_ptr[max(0, t - window + 1)])
    g1 = np.zeros((min(max_w, n_slots), h), np.float32)   # gradient rows of this step's touched inputs
    gpos = np.full(n_slots, -1, np.int64)
    tlist = np.empty(n_slots, np.int64)
    v1 = np.zeros((bsz, h), np.float32)
    v2 = np.zeros((bsz, n_out), np.float32)
    tr2p = np.zeros((bsz, h), np.float32)
    logc = np.zeros((t_steps + 1, bsz))          # log prod_{u<t} (leak shrink_b(u)), per sample
    cur1 = np.zeros((bsz, h), np.float32)
    sig1 = np.zeros((bsz, h), np.float32)
    a1 = np.zeros((bsz, h), np.float32)
    delta1 = np.zeros((bsz, h), np.float32)
    neg = np.zeros((bsz, n_out), np.float32)
    loss = 0.0
    for t in range(t_steps):
        csz = (h + n_chunks - 1) // n_chunks
        for ch in numba.prange(n_chunks):        # event-driven input layer, parallel over blocks of neurons
            j0, j1 = ch * csz, min(h, (ch + 1) * csz)
            for b in range(bsz):
                for j in range(j0, j1):
                    cur1[b, j] = 0.0
            for e in range(ev_ptr[t], ev_ptr[t + 1]):
                row = w1t[ev_i[e]]
                c = cur1[ev_b[e]]
                for j in range(j0, j1):
                    c[j] += row[j]
        n_a1 = np.zeros(bsz)
        for b in range(bsz):
            for j in range(h):
                v = leak * v1[b, j] + cur1[b, j]
                if v > vth:
                    v = vth
                sig1[b, j] = _sig_prime(v - vth)
                if v >= vth:
                    a1[b, j] = 1.0
                    v1[b, j] = 0.0
                    n_a1[b] += 1.0
                else:
                    a1[b, j] = 0.0
                    v1[b, j] = v
        # output layer
        tr2 = leak * tr2p + a1
        cur2 = np.dot(a1, w2.T)
        for b in range(bsz):
            n_a2 = 0.0
            for k in range(n_out):
                v = leak * v2[b, k] + cur2[b, k]
                if v > vth:
                    v = vth
                fired = v >= vth
                y = target[t, b, k]
                if fired:
                    n_a2 += 1.0
                    counts_out[b, k] += 1.0
                    v2[b, k] = 0.0
                else:
                    v2[b, k] = v
                err = 0.0
                if fired != (y != 0):
                    err = vth * y - v
                loss += 0.5 * err * err / bsz
                neg[b, k] = -err
            sh = 1.0 - n_a2 / n_shrink
            for j in range(h):
                tr2p[b, j] = tr2[b, j] * sh
            logc[t + 1, b] = logc[t, b] + math.log(max(leak * (1.0 - n_a1[b] / n_shrink), 1e-300))
        g2 = np.dot(neg.T, tr2) / f32(bsz)
        d = np.dot(neg, w2)
        for b in range(bsz):
            for j in range(h):
                delta1[b, j] = d[b, j] * sig1[b, j]
        # sparse gradient of W1: events of the last `window` steps, weighted by their decayed trace
        n_t = 0
        t0 = max(0, t - window + 1)
        inv_b = 1.0 / bsz
        lo, hi = ev_ptr[t0], ev_ptr[t + 1]
        ew = np.empty(hi - lo, np.float32)
        epos = np.empty(hi - lo, np.int64)
        for e in range(lo, hi):
            b = ev_b[e]
            s = ev_slot[e]
            w = 1.0
            if ev_t[e] < t:
                w = math.exp(logc[t, b] - logc[ev_t[e], b])
            ew[e - lo] = f32(w * inv_b)
            if gpos[s] < 0:
                gpos[s] = n_t
                tlist[n_t] = s
                n_t += 1
            epos[e - lo] = gpos[s]
        for ch in numba.prange(n_chunks):
            j0, j1 = ch * csz, min(h, (ch + 1) * csz)
            for e in range(lo, hi):
                gr = g1[epos[e - lo]]
                db = delta1[ev_b[e]]
                wf = ew[e - lo]
                for j in range(j0, j1):
                    gr[j] += wf * db[j]
        # lazy Adam on the touched rows, bias correction by step t + 1
        lr_bc1 = f32(lr / (1.0 - b1 ** (step0 + t + 1)))
        inv_bc2 = f32(1.0 / (1.0 - b2 ** (step0 + t + 1)))
        fb1, fb2, c1, c2, feps = f32(b1), f32(b2), f32(1.0 - b1), f32(1.0 - b2), f32(eps)
        for q in range(n_t):
            gpos[tlist[q]] = -1
        for q in numba.prange(n_t):
            s = tlist[q]
            row = w1t[cols[s]]
            gr = g1[q]
            mr = m1[mrow[s]]
            sr = s1[mrow[s]]
            for j in range(h):
                gj = gr[j]
                mj = fb1 * mr[j] + c1 * gj
                sj = fb2 * sr[j] + c2 * gj * gj
                mr[j] = mj
                sr[j] = sj
                row[j] -= lr_bc1 * mj / (math.sqrt(sj * inv_bc2) + feps)
                gr[j] = 0.0
        # dense Adam on W2 (W2 of this step was used for delta1 above)
        for k in numba.prange(n_out):
            for j in range(h):
                gj = g2[k, j]
                mj = fb1 * m2[k, j] + c1 * gj
                sj = fb2 * s2[k, j] + c2 * gj * gj
                m2[k, j] = mj
                s2[k, j] = sj
                w2[k, j] -= lr_bc1 * mj / (math.sqrt(sj * inv_bc2) + feps)
    loss_out[0] += loss


def batch_events(spikes: list[list[np.ndarray]]) -> tuple[np.ndarray, ...]:
    """Events of a batch, sorted by step then sample: spikes[b][t] = input indices (int) that spike in step t of
    sample b. Returns (ptr (T + 1,), sample (E,), input (E,), slot (E,), distinct inputs (n_slots,))."""
    bsz, t_steps = len(spikes), len(spikes[0])
    bs, ins, ts, counts = [], [], [], np.zeros(t_steps + 1, np.int64)
    for t in range(t_steps):
        for b in range(bsz):
            idx = spikes[b][t]
            ins.append(np.asarray(idx, np.int64))
            bs.append(np.full(len(idx), b, np.int64))
            ts.append(np.full(len(idx), t, np.int64))
            counts[t + 1] += len(idx)
    ev_i = np.concatenate(ins) if ins else np.zeros(0, np.int64)
    ev_b = np.concatenate(bs) if bs else np.zeros(0, np.int64)
    ev_t = np.concatenate(ts) if ts else np.zeros(0, np.int64)
    cols, slot = np.unique(ev_i, return_inverse=True)
    return np.cumsum(counts), ev_t, ev_b, ev_i, slot.astype(np.int64).reshape(-1), cols.astype(np.int64)


class AdamState:
    """Adam moments kept across batches (``--adam persistent``): m1/s1 (n_in, H) float32 for W1 transposed (lazy:
    a row's moments change only in steps that update that row), m2/s2 like W2, and the number of steps taken
    (bias correction by the global step, as torch.optim.SparseAdam / Adam). 2 x 4 bytes per weight of memory."""

    def __init__(self, w1t: np.ndarray, w2: np.ndarray) -> None:
        self.m1 = np.zeros_like(w1t, dtype=np.float32)
        self.s1 = np.zeros_like(w1t, dtype=np.float32)
        self.m2 = np.zeros_like(w2, dtype=np.float32)
        self.s2 = np.zeros_like(w2, dtype=np.float32)
        self.step = 0


def online_batch_sparse(w1t: np.ndarray, w2: np.ndarray, spikes: list[list[np.ndarray]], target: np.ndarray,
                        rule: OnlineRule, window: int, state: AdamState | None = None) -> dict:
    """Train one batch in place. w1t (n_in, H) float32 C-contiguous (W1 transposed); w2 (n_out, H) float32;
    spikes[b][t]: input indices spiking in step t of sample b; target (T, B, n_out) 0/1; window: trace length in
    steps (>= 1; T = the full trace). ``state`` None: Adam moments start at 0 in every batch and the bias
    correction counts the batch's steps (the authors' code); an :class:`AdamState`: moments and step count carry
    over between batches (updated in place). Returns {"loss": sum over steps of 0.5 sum E^2 / B, "out_spikes":
    (B, n_out) output spike counts, "events": input spikes in the batch}."""
    ptr, ev_t, ev_b, ev_i, slot, cols = batch_events(spikes)
    tgt = np.ascontiguousarray(target, dtype=np.uint8)
    loss = np.zeros(1)
    counts = np.zeros((tgt.shape[1], tgt.shape[2]), np.float32)
    if state is None:
        h = w1t.shape[1]
        m1, s1 = np.zeros((cols.shape[0], h), np.float32), np.zeros((cols.shape[0], h), np.float32)
        mrow = np.arange(cols.shape[0], dtype=np.int64)
        m2, s2, step0 = np.zeros_like(w2), np.zeros_like(w2), 0
    else:
        m1, s1, mrow, m2, s2, step0 = state.m1, state.s1, cols, state.m2, state.s2, state.step
    _batch(w1t, w2, ptr, ev_t, ev_b, ev_i, slot, cols, tgt, int(window), np.float32(rule.leak),
           np.float32(rule.v_th), float(rule.n_shrink), rule.lr, rule.beta1, rule.beta2, rule.eps, loss, counts,
           int(numba.get_num_threads()), m1, s1, mrow, m2, s2, int(step0))
    if state is not None:
        state.step += tgt.shape[0]
    return {"loss": float(loss[0]), "out_spikes": counts, "events": int(ev_i.shape[0])}
