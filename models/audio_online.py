"""Event-driven online rule for the audiocoder (58,500-2,048-196): Roy et al.'s rule (models/rate_online.py) with
a sparse input layer and deferred (catch-up) Adam on the input weights.

The equations of models/rate_online.py per step t (potentials and weights in threshold units, V_th = 1), with
two differences:

- the target of the output layer is the image autoencoder's hidden spike map ``y[t]`` (not the input):
  ``E = (V_th y[t] - V2pre) * (y[t] XOR a2)``, optionally times ``miss_weight`` where y[t] = 1 and a2 = 0 (a remedy
  of the rate compression, docs/audio.md; 1 = the authors' rule);
- the input layer is event-driven: about 65 of 58,500 inputs spike per clip and step. The hidden current is the sum
  of the weight rows of the inputs that spiked (W1 is stored transposed, (n_in, H), one contiguous row per input).

The eligibility trace of input i in sample b is ``tr1[t] = sum_{s <= t, s > t - window} c_b(s, t) x[s]`` with
``c_b(s, t) = prod_{u=s}^{t-1} leak (1 - hidden spikes_b(u) / n_shrink)`` (window >= T: the exact trace of
models/rate_online.py; c_b is kept as running log sums per sample, so a trace is one exp per (event, step)). The
gradient row of input i at step t is ``sum over its events e in the window of c_{b_e}(t_e, t) delta1_{b_e}[t] / B``:
zero for inputs that have not spiked yet in the batch (then Adam, whose moments start at 0 in every batch, leaves
the row unchanged, exactly as the dense rule does).

Deferred updates (the exact-trace speed-up): a row of W1 is needed only when its input spikes (forward pass) and at
the end of the batch. So the kernel stores the hidden errors ``delta1[t]`` (T, B, H) and applies the per-step Adam
updates of a row only then ("catch-up"): before step t's forward pass, for the ~3,000 rows whose inputs spike at
t, the updates of the steps since that row's last catch-up; after the last step, for every row touched in the
batch. Each catch-up runs the row in chunks of 512 weights whose weight, moments and gradient stay in L1 across
the steps it covers, so the cost per (row, step) is compute (one multiply-add per active event and one Adam
update) instead of three trips of 24 KB through memory. The result is the same per-step rule, update for update
(tests/test_audio_train.py: against the dense rule, and against a plain per-step numpy version for short windows
and persistent moments). Adam moments of a row are stored only between its catch-ups (rows whose input spikes in
one step of the batch only never store them); ``--adam persistent`` keeps them in (n_in, H) arrays instead.

- Rows whose trace window holds no event at a step get no update in that step (lazy Adam, the semantics of
  torch.optim.SparseAdam). With window >= T and per-batch moments that is exactly the dense rule (a row with no
  event yet has zero moments); with ``--adam persistent`` or a short window it is a documented deviation.
- W2 (196 x 2,048) is dense and updated every step with Adam (the fused form of models/rate_kernels.py).
- Tiny values are flushed to 0 (subnormal float32 arithmetic is ~100x slower on x86, and a trained hidden layer
  has potentials far below threshold, whose surrogate derivative s'(V - 1) underflows): hidden errors delta1 below
  D_FLUSH = 1e-30 and W1 gradients below G_FLUSH = 1e-17 (their Adam step is below 1e-10 lr, under the float32
  resolution of any weight above 1e-3 lr). Measured on the small front end after 2 epochs: 2.0 -> 0.24 CPU s per
  batch; the result differs from the unflushed rule only in such negligible steps.
- Adam's constants are those of models/rate_kernels.adam_consts (1 - float32(b) taken in float64, as the authors'
  float64 code computes them; tests/test_rate_adam.py says why).

Cost per step: O(events x H) for the forward pass, O(active events x H) for the catch-up gradient and
O(rows with an event so far x H) for the Adam updates, instead of O(n_in x H) (~120 M weights).
"""
from __future__ import annotations

import math

import numba
import numpy as np

from models.rate_kernels import adam_consts
from models.rate_online import OnlineRule

CHUNK = 512   # weights per catch-up chunk: weight, moments and gradient (4 x 2 KB) stay in L1
G_FLUSH = np.float32(1e-17)   # |gradient| below this counts as 0 (see _batch: subnormal arithmetic)
D_FLUSH = np.float32(1e-30)   # |hidden error| below this counts as 0


@numba.njit(cache=True, fastmath=True)
def _sig_prime(u):  # pragma: no cover - compiled
    e = math.exp(-abs(u))
    return e / ((1.0 + e) * (1.0 + e))


@numba.njit(cache=True, fastmath=True, inline="always")
def _current_penalty(cur, lam, bound):  # pragma: no cover - compiled
    """The input-current penalty 0.5 lam relu(|I| - K)^2 of one neuron and step: (dP/dI, P)."""
    ex = abs(cur) - bound
    if ex <= 0.0:
        return 0.0, 0.0
    return lam * ex * (1.0 if cur > 0 else -1.0), 0.5 * lam * ex * ex


@numba.njit(cache=True, fastmath=True, error_model="numpy")
def _catch_up(s, upto, n_steps, w1t, cols, sl_ptr, sl_ev, ev_t, ev_b, nxt, fresh, m1, s1, mrow, store_last, dhist,
              logc, window, inv_b, lr_bc1, inv_bc2, fb1, c1, fb2, c2, feps, phist):  # pragma: no cover - compiled
    """Apply to the W1 row of slot s the per-step Adam updates of steps nxt[s] .. upto (then nxt[s] = upto + 1).

    The gradient at step u: sum over the slot's events e with u - window < t_e <= u (in event order, (t, b)) of
    float32(c_b(t_e, u) / B) delta1[u, b_e]. Moments: rows mrow[s] of m1/s1 (mrow -1: never stored, start at 0);
    fresh[s]: the stored moments are not yet valid (start at 0); stored back unless this is the batch's last step
    and not store_last. phist (T, B, H), empty when off: the input-current penalty's dP/dI per step (--current-
    penalty), added with weight 1 / B for the events of the step itself (its gradient needs no trace)."""
    a = nxt[s]
    if a > upto:
        return
    nxt[s] = upto + 1
    e0, e1 = sl_ptr[s], sl_ptr[s + 1]
    n_u = upto - a + 1
    wts = np.empty((n_u, e1 - e0), np.float32)
    bs = np.empty((n_u, e1 - e0), np.int64)
    pen = phist.shape[0] > 0
    now = np.zeros((n_u if pen else 0, e1 - e0), np.bool_)  # the event is of step u itself (penalty term only)
    cnt = np.zeros(n_u, np.int64)
    work = False
    for ui in range(n_u):
        u = a + ui
        c = 0
        for q in range(e0, e1):
            e = sl_ev[q]
            te = ev_t[e]
            if te > u:
                break
            if te <= u - window:
                continue
            b = ev_b[e]
            w = 1.0
            if te < u:
                w = math.exp(logc[u, b] - logc[te, b])
            wts[ui, c] = np.float32(w * inv_b)
            bs[ui, c] = b
            if pen:
                now[ui, c] = te == u
            c += 1
        cnt[ui] = c
        if c > 0:
            work = True
    if not work:
        return
    h = w1t.shape[1]
    row = w1t[cols[s]]
    mr = mrow[s]
    load = mr >= 0 and not fresh[s]
    store = mr >= 0 and (store_last or upto < n_steps - 1)
    if mr >= 0:
        fresh[s] = False
    g = np.empty(CHUNK, np.float32)
    ml = np.empty(CHUNK, np.float32)
    sl = np.empty(CHUNK, np.float32)
    for j0 in range(0, h, CHUNK):
        n = min(h, j0 + CHUNK) - j0
        rw = row[j0:j0 + n]
        if load:
            ml[:n] = m1[mr, j0:j0 + n]
            sl[:n] = s1[mr, j0:j0 + n]
        else:
            ml[:n] = 0.0
            sl[:n] = 0.0
        for ui in range(n_u):
            c = cnt[ui]
            if c == 0:
                continue
            u = a + ui
            for j in range(n):
                g[j] = 0.0
            for k in range(c):
                wk = wts[ui, k]
                d = dhist[u, bs[ui, k], j0:j0 + n]
                for j in range(n):
                    g[j] += wk * d[j]
                if pen and now[ui, k]:               # wk = 1 / B at the event's own step
                    p = phist[u, bs[ui, k], j0:j0 + n]
                    for j in range(n):
                        g[j] += wk * p[j]
            lb = lr_bc1[u]
            ib = inv_bc2[u]
            for j in range(n):
                gj = g[j]
                if abs(gj) < G_FLUSH:
                    gj = np.float32(0.0)
                mj = fb1 * ml[j] + c1 * gj
                sj = fb2 * sl[j] + c2 * gj * gj
                ml[j] = mj
                sl[j] = sj
                rw[j] -= lb * mj / (math.sqrt(sj * ib) + feps)
        if store:
            m1[mr, j0:j0 + n] = ml[:n]
            s1[mr, j0:j0 + n] = sl[:n]


@numba.njit(cache=True, fastmath=True, parallel=True, error_model="numpy")
def _batch(w1t, w2, ev_ptr, ev_t, ev_b, ev_i, cols, sl_ptr, sl_ev, st_ptr, st_slot, target, window, leak, vth,
           n_shrink, lr_bc1, inv_bc2, fb1, c1, fb2, c2, feps, loss_out, counts_out, n_chunks, m1, s1, mrow, fresh,
           store_last, m2, s2, pen_lam, pen_k, phist, miss_w, lr1_bc1):  # pragma: no cover - compiled
    """One batch in place. w1t (n_in, H) float32; w2 (n_out, H) float32; events of step t are ev_ptr[t]:ev_ptr[t+1]
    with step ev_t, sample ev_b, input ev_i (sorted by step, then sample); slots = the batch's distinct inputs
    cols; the events of slot s are sl_ev[sl_ptr[s]:sl_ptr[s+1]] (in event order); the distinct slots spiking in
    step t are st_slot[st_ptr[t]:st_ptr[t+1]]. target (T, B, n_out) uint8. lr_bc1/inv_bc2 (T,) float32: Adam's
    bias-corrected step size and 1 / (1 - b2^step) per step of the batch. loss_out[0] += loss; counts_out (B, n_out)
    += output spikes. Moments: W1 rows see _catch_up; m2/s2 like w2. miss_w: factor on the error of a target spike
    the output missed (1: the authors' rule); lr1_bc1 (T,): lr_bc1 of the W1 rows (lr_bc1 unless the input layer
    has its own step size). pen_lam > 0: the input-current penalty
    0.5 pen_lam relu(|I| - pen_k)^2 of the hidden and the output layer per step and sample (I in threshold units,
    averaged over the batch like the loss; dP/dI of the hidden layer kept in phist (T, B, H) for the catch-ups);
    loss_out[1] += it."""
    pen_loss = 0.0
    pen2 = np.zeros((target.shape[1], target.shape[2]), np.float32)
    t_steps, bsz, n_out = target.shape
    h = w1t.shape[1]
    n_slots = cols.shape[0]
    f32 = np.float32
    inv_b = 1.0 / bsz
    nxt = np.empty(n_slots, np.int64)
    for s in range(n_slots):
        nxt[s] = ev_t[sl_ev[sl_ptr[s]]]
    dhist = np.zeros((t_steps, bsz, h), np.float32)   # delta1 per step: the catch-ups' gradients
    logc = np.zeros((t_steps + 1, bsz))          # log prod_{u<t} (leak shrink_b(u)), per sample
    v1 = np.zeros((bsz, h), np.float32)
    v2 = np.zeros((bsz, n_out), np.float32)
    tr2p = np.zeros((bsz, h), np.float32)
    cur1 = np.zeros((bsz, h), np.float32)
    sig1 = np.zeros((bsz, h), np.float32)
    a1 = np.zeros((bsz, h), np.float32)
    neg = np.zeros((bsz, n_out), np.float32)
    loss = 0.0
    csz = (h + n_chunks - 1) // n_chunks
    for t in range(t_steps):
        if t > 0:                                # rows read in this step: bring them up to step t - 1
            for q in numba.prange(st_ptr[t], st_ptr[t + 1]):
                _catch_up(st_slot[q], t - 1, t_steps, w1t, cols, sl_ptr, sl_ev, ev_t, ev_b, nxt, fresh, m1, s1, mrow,
                          store_last, dhist, logc, window, inv_b, lr1_bc1, inv_bc2, fb1, c1, fb2, c2, feps, phist)
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
                if pen_lam > 0.0:
                    phist[t, b, j], dl = _current_penalty(cur1[b, j], pen_lam, pen_k)
                    pen_loss += dl / bsz
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
                if pen_lam > 0.0:
                    pen2[b, k], dl = _current_penalty(cur2[b, k], pen_lam, pen_k)
                    pen_loss += dl / bsz
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
                    if y != 0:
                        err *= miss_w
                loss += 0.5 * err * err / bsz
                neg[b, k] = -err
            sh = 1.0 - n_a2 / n_shrink
            for j in range(h):
                tr2p[b, j] = tr2[b, j] * sh
            logc[t + 1, b] = logc[t, b] + math.log(max(leak * (1.0 - n_a1[b] / n_shrink), 1e-300))
        g2 = np.dot(neg.T, tr2) / f32(bsz)
        if pen_lam > 0.0:
            g2 += np.dot(pen2.T, a1) / f32(bsz)
        d = np.dot(neg, w2)                      # W2 before this step's update
        for b in range(bsz):
            for j in range(h):
                x = d[b, j] * sig1[b, j]
                dhist[t, b, j] = x if abs(x) >= D_FLUSH else f32(0.0)
        lb, ib = lr_bc1[t], inv_bc2[t]
        for k in numba.prange(n_out):           # dense Adam on W2
            for j in range(h):
                gj = g2[k, j]
                mj = fb1 * m2[k, j] + c1 * gj
                sj = fb2 * s2[k, j] + c2 * gj * gj
                m2[k, j] = mj
                s2[k, j] = sj
                w2[k, j] -= lb * mj / (math.sqrt(sj * ib) + feps)
    for s in numba.prange(n_slots):             # the rest of every touched row's updates
        _catch_up(s, t_steps - 1, t_steps, w1t, cols, sl_ptr, sl_ev, ev_t, ev_b, nxt, fresh, m1, s1, mrow, store_last,
                  dhist, logc, window, inv_b, lr1_bc1, inv_bc2, fb1, c1, fb2, c2, feps, phist)
    loss_out[0] += loss
    loss_out[1] += pen_loss


def batch_events(spikes: list[list[np.ndarray]]) -> dict:
    """Events of a batch, sorted by step then sample: spikes[b][t] = input indices (int) that spike in step t of
    sample b. Returns arrays: ptr (T + 1,) (events of step t: ptr[t]:ptr[t+1]), t, b, i (E,) step, sample, input;
    slot (E,) index into cols (the distinct inputs, sorted); sl_ptr (n_slots + 1,), sl_ev (E,) the events of each
    slot in event order; st_ptr (T + 1,), st_slot: the distinct slots spiking in each step; steps_per_slot
    (n_slots,): in how many steps each slot spikes."""
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
    slot = slot.astype(np.int64).reshape(-1)
    n_slots = cols.shape[0]
    sl_ev = np.argsort(slot, kind="stable").astype(np.int64)
    sl_ptr = np.concatenate([[0], np.cumsum(np.bincount(slot, minlength=n_slots))]).astype(np.int64)
    key = np.unique(ev_t * max(n_slots, 1) + slot)
    st_slot, st_t = key % max(n_slots, 1), key // max(n_slots, 1)
    st_ptr = np.searchsorted(st_t, np.arange(t_steps + 1)).astype(np.int64)
    return {"ptr": np.cumsum(counts), "t": ev_t, "b": ev_b, "i": ev_i, "slot": slot, "cols": cols.astype(np.int64),
            "sl_ptr": sl_ptr, "sl_ev": sl_ev, "st_ptr": st_ptr, "st_slot": st_slot.astype(np.int64),
            "steps_per_slot": np.bincount(st_slot, minlength=n_slots)}


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


class Workspace:
    """Scratch for the per-batch Adam moments of W1 rows between their catch-ups (``--adam batch``), kept across
    batches so that its pages are mapped once: rows x H float32, grown when a batch needs more rows."""

    def __init__(self) -> None:
        self.m1 = np.zeros((0, 0), np.float32)
        self.s1 = np.zeros((0, 0), np.float32)

    def rows(self, n: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        if self.m1.shape[1] != h or self.m1.shape[0] < n:
            n_new = max(n, int(1.25 * self.m1.shape[0]) if self.m1.shape[1] == h else n)
            self.m1 = np.empty((n_new, h), np.float32)
            self.s1 = np.empty((n_new, h), np.float32)
        return self.m1, self.s1


def online_batch_sparse(w1t: np.ndarray, w2: np.ndarray, spikes: list[list[np.ndarray]], target: np.ndarray,
                        rule: OnlineRule, window: int, state: AdamState | None = None,
                        work: Workspace | None = None, current_penalty: tuple[float, float] = (0.0, 0.0),
                        miss_weight: float = 1.0, lr_input_scale: float = 1.0) -> dict:
    """Train one batch in place. w1t (n_in, H) float32 C-contiguous (W1 transposed); w2 (n_out, H) float32;
    spikes[b][t]: input indices spiking in step t of sample b; target (T, B, n_out) 0/1; window: trace length in
    steps (>= 1; >= T = the exact trace). ``state`` None: Adam moments start at 0 in every batch and the bias
    correction counts the batch's steps (the authors' code); an :class:`AdamState`: moments and step count carry
    over between batches (updated in place). ``work``: a :class:`Workspace` reused across batches (optional).
    ``current_penalty`` (lam, K): adds 0.5 lam relu(|I| - K)^2 per step, sample and neuron of the hidden and the
    output layer's input current I (threshold units; lam 0: off, the authors' rule) to the loss, a deviation that
    keeps the per-step input within K thresholds so that the compiler can use fine scales (docs/audio.md, "The
    decoder's +-1 step gate"); its gradient is local (the input spikes of step t). "penalty" in the result.
    ``miss_weight``: factor on the output error where the target spikes and the output does not (1: the authors'
    rule; > 1 counters the rate compression of the masked loss, docs/audio.md). ``lr_input_scale``: factor on
    the Adam step size of W1 (the input -> hidden weights; 1: one step size for both layers, the authors' rule).
    Returns {"loss": sum over steps of 0.5 sum E^2 / B, "out_spikes": (B, n_out) output spike counts, "events":
    input spikes in the batch}."""
    ev = batch_events(spikes)
    tgt = np.ascontiguousarray(target, dtype=np.uint8)
    t_steps = tgt.shape[0]
    loss = np.zeros(2)
    counts = np.zeros((tgt.shape[1], tgt.shape[2]), np.float32)
    lam, bound = float(current_penalty[0]), float(current_penalty[1])
    phist = np.zeros((t_steps, tgt.shape[1], w1t.shape[1]) if lam > 0 else (0, 0, 0), np.float32)
    n_slots, h = ev["cols"].shape[0], w1t.shape[1]
    if state is None:
        multi = ev["steps_per_slot"] > 1              # rows caught up more than once keep moments in between
        mrow = np.where(multi, np.cumsum(multi) - 1, -1).astype(np.int64)
        m1, s1 = (work or Workspace()).rows(max(int(multi.sum()), 1), h)
        m2, s2, step0, store_last = np.zeros_like(w2), np.zeros_like(w2), 0, False
        fresh = np.ones(n_slots, np.bool_)
    else:
        m1, s1, mrow, m2, s2, step0 = state.m1, state.s1, ev["cols"], state.m2, state.s2, state.step
        store_last, fresh = True, np.zeros(n_slots, np.bool_)
    consts = [adam_consts(np.float32, rule.lr, rule.beta1, rule.beta2, step0 + t + 1, rule.eps)
              for t in range(t_steps)]
    lr_bc1 = np.array([c[0] for c in consts], np.float32)
    inv_bc2 = np.array([c[5] for c in consts], np.float32)
    _, fb1, c1, fb2, c2, _, feps = consts[0]
    _batch(w1t, w2, ev["ptr"], ev["t"], ev["b"], ev["i"], ev["cols"], ev["sl_ptr"], ev["sl_ev"], ev["st_ptr"],
           ev["st_slot"], tgt, int(window), np.float32(rule.leak), np.float32(rule.v_th), float(rule.n_shrink), lr_bc1,
           inv_bc2, fb1, c1, fb2, c2, feps, loss, counts, int(numba.get_num_threads()), m1, s1, mrow, fresh,
           store_last, m2, s2, np.float32(lam), np.float32(bound), phist, np.float32(miss_weight),
           (lr_bc1 * np.float32(lr_input_scale)).astype(np.float32))
    if state is not None:
        state.step += t_steps
    return {"loss": float(loss[0]), "out_spikes": counts, "events": int(ev["i"].shape[0]), "penalty": float(loss[1])}
