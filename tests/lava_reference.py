"""A direct numpy transcription of docs/compiled-format.md section 2 (per-sample semantics), used by the tests
to check that lava-fixed is bit-exact and lava-float follows the same float recurrence."""
from __future__ import annotations

import numpy as np

from toolchain.compiled import CompiledNetwork


def _trunc_mul(x: np.ndarray, m: int) -> np.ndarray:
    p = x.astype(np.int64) * m
    return np.sign(p) * (np.abs(p) >> 12)


def _shift(w: np.ndarray, e: int) -> np.ndarray:
    return w << e if e >= 0 else w >> -e


def reference_run(cn: CompiledNetwork, input_cols: np.ndarray, fixed: bool) -> tuple[list, list]:
    """(first spike columns per layer (N, n) with -1 = none, spike counts per layer (N, n))."""
    N, W = input_cols.shape[0], cn.window
    ev = np.zeros((N, input_cols.shape[1], W), dtype=np.int64)  # events per column
    k, i = np.nonzero(input_cols >= 0)
    ev[k, i, input_cols[k, i]] = 1
    firsts, counts = [], []
    for cl in cn.layers:
        pe = np.zeros((N, cl.pulse_steps.shape[0], W), dtype=np.int64)
        for p, c in enumerate(cl.pulse_steps):
            pe[:, p, c] = 1
        e = np.concatenate([ev, pe], axis=1)
        if fixed:
            # effective integer weights: each synapse block shifted by its own exponent
            # (a negative exponent: Lava's right shift of the sum, exact for even mantissas, as the contract asks)
            w = np.hstack([_shift(cl.weights.astype(np.int64), cl.weight_exp),
                           _shift(cl.pulse_weights.astype(np.int64), cl.pulse_exp)])
            u = np.zeros((N, cl.n_out), np.int64)
            v = np.zeros((N, cl.n_out), np.int64)
        else:
            w = np.hstack([cl.weights_float, cl.pulse_weights_float])
            u = np.zeros((N, cl.n_out))
            v = np.zeros((N, cl.n_out))
        fired = np.zeros((N, cl.n_out), bool)
        out = np.zeros((N, cl.n_out, W), dtype=np.int64)
        for c in range(W):
            a = e[:, :, c] @ w.T
            if fixed:
                u = _trunc_mul(u, 4096 - (cl.du + 1)) + (a << 6)
                u = np.where(u > 2**23, u - 2**24, np.where(u <= -(2**23), u + 2**24, u))
                v = np.clip(_trunc_mul(v, 4096 - cl.dv) + u, -(2**23 - 1), 2**23 - 1)
                s = v > (cl.vth << 6)
            else:
                u = u * (1 - cl.du_float) + a
                v = v * (1 - cl.dv_float) + u
                s = v > cl.vth_float
            if c == W - 1:
                s[:] = False
            if cl.once:
                s &= ~fired
                fired |= s
            v[s] = 0
            if c + 1 < W:
                out[:, :, c + 1] = s
        first = np.where(out.any(axis=2), out.argmax(axis=2), -1)
        firsts.append(first)
        counts.append(out.sum(axis=2))
        ev = out
    return firsts, counts
