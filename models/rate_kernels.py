"""Fused Adam update (numba, parallel over rows) for the per-step updates of the online rule.

One pass over w, g, m, v instead of torch's five: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
w -= lr_bc1 * m / (sqrt(v * inv_bc2) + eps), with lr_bc1 = lr / (1 - b1^t) and inv_bc2 = 1 / (1 - b2^t).
Scalars are passed in the arrays' dtype so that float32 arrays stay float32 (and vectorise). Threads: numba's
(``numba.set_num_threads``). Measured (1 thread, 784 x 1024 float32): 0.47 ms CPU vs 1.77 ms for the torch ops.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, fastmath=True, cache=True)
def _adam(w, g, m, v, lr_bc1, b1, b2, inv_bc2, eps):  # pragma: no cover - compiled
    rows, cols = w.shape
    c1 = 1 - b1
    c2 = 1 - b2
    for i in numba.prange(rows):
        for j in range(cols):
            gij = g[i, j]
            mij = b1 * m[i, j] + c1 * gij
            vij = b2 * v[i, j] + c2 * gij * gij
            m[i, j] = mij
            v[i, j] = vij
            w[i, j] -= lr_bc1 * mij / (np.sqrt(vij * inv_bc2) + eps)


def adam_update(w: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, b1: float, b2: float,
                step: int, eps: float) -> None:
    """Bias-corrected Adam step ``step`` (1-based) in place on 2-D C-contiguous arrays of one dtype."""
    dt = w.dtype.type
    _adam(w, g, m, v, dt(lr / (1.0 - b1 ** step)), dt(b1), dt(b2), dt(1.0 / (1.0 - b2 ** step)), dt(eps))
