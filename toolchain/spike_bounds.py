"""Per-spike quantities of the exact float model that the verifier needs (see docs/verifier.md).

* ``peak_potential``: max over t of the layer's potential V(t) (inputs and pulses, no reset), to tell
  near-threshold neurons (peak within a relative margin of theta) from robust ones.
* ``grazes``: whether the potential touches theta at a local maximum between two times (the spike time jumps
  there, so a spike beyond the first-order bound is explained);
* ``grid_bound``: first-order bound on |t_target - t_exact| for a target that places inputs on a grid of step g
  and reports a spike with error <= g/2, propagated through the layers with the exact sensitivities
  d t_out / d t_i = w_i e^{tau t_i} (tau (t_i - B/A) + W + 1) / (A (1 + W))   (Comsa et al. 2021, eq. 4).

All times in model time units.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from models.exact import LayerTrace


@numba.njit(cache=True, parallel=True)
def _peak_potential(in_times, order, weights, tau):
    n, n_in = in_times.shape
    n_out = weights.shape[0]
    out = np.full((n, n_out), -np.inf)
    for s in numba.prange(n):
        idx = order[s]
        n_valid = 0
        while n_valid < n_in and in_times[s, idx[n_valid]] < np.inf:
            n_valid += 1
        for j in range(n_out):
            a = 0.0
            b = 0.0
            best = 0.0 if n_valid > 0 else -np.inf
            for k in range(n_valid):
                ti = in_times[s, idx[k]]
                e = weights[j, idx[k]] * math.exp(tau * ti)
                a += e
                b += e * ti
                t_next = in_times[s, idx[k + 1]] if k + 1 < n_valid else np.inf
                # V at the interval start (the kernel of the new input is 0 there, so V is continuous)
                v0 = math.exp(-tau * ti) * (a * ti - b)
                if v0 > best:
                    best = v0
                if a > 0.0:
                    tq = b / a + 1.0 / tau  # stationary point: the maximum when A > 0
                    if tq > ti and tq < t_next:
                        vq = math.exp(-tau * tq) * (a * tq - b)
                        if vq > best:
                            best = vq
            out[s, j] = best
    return out


def peak_potential(trace: LayerTrace, weights_all: np.ndarray, tau: float) -> np.ndarray:
    """(N, n_out): max_t V(t) of every neuron over all its inputs (ordinary + pulses), ignoring the spike/reset.

    weights_all: (n_out, n_in + n_pulses), the layer's ``all_weights()``; trace from ``exact_forward_trace``.
    """
    return _peak_potential(trace.in_times, trace.order, np.ascontiguousarray(weights_all, dtype=np.float64),
                           float(tau))


def grazes(trace: LayerTrace, weights_all: np.ndarray, tau: float, theta: float, sample: int, neuron: int,
           t0: float, t1: float, margin: float, n_points: int = 1024) -> bool:
    """True when V(t) of ``neuron`` in ``sample`` has a local maximum in [t0, t1] (time units) within ``margin``
    (relative) of theta: the potential touches the threshold and turns back, so the first crossing jumps between
    that touch and a later rise (or an earlier touch becomes a crossing) under a small perturbation.

    V is sampled on ``n_points`` points (no reset, inputs and pulses), which is enough for the few spikes the
    verifier asks about (those beyond the analytic bound)."""
    tin = trace.in_times[sample]
    live = np.isfinite(tin)
    ts = np.linspace(min(t0, t1), max(t0, t1), n_points)
    d = np.clip(ts[:, None] - tin[live][None, :], 0.0, None)
    v = (weights_all[neuron, live] * d * np.exp(-tau * d)).sum(axis=1) / theta
    peak = (v[1:-1] >= v[:-2]) & (v[1:-1] >= v[2:])
    return bool(np.any(peak & (np.abs(v[1:-1] - 1.0) <= margin)))


@numba.njit(cache=True, parallel=True)
def _grid_bound(in_times, in_err, order, n_prefix, a_arr, b_arr, w_arr, t_out, weights, tau, report_err):
    n, n_in = in_times.shape
    n_out = weights.shape[0]
    out = np.full((n, n_out), np.inf)
    for s in numba.prange(n):
        idx = order[s]
        for j in range(n_out):
            if not t_out[s, j] < np.inf:
                continue
            a = a_arr[s, j]
            ww = w_arr[s, j]
            denom = a * (1.0 + ww)
            if denom <= 0.0:
                continue  # tangent crossing: sensitivities unbounded
            bpa = b_arr[s, j] / a
            acc = report_err
            for k in range(n_prefix[s, j]):
                i = idx[k]
                ti = in_times[s, i]
                sens = weights[j, i] * math.exp(tau * ti) * (tau * (ti - bpa) + ww + 1.0) / denom
                acc += abs(sens) * in_err[s, i]
            out[s, j] = acc
    return out


def grid_bound(traces: list[LayerTrace], weights_all: list[np.ndarray], tau: float, grid: float,
               spike_input_lag: float) -> list[np.ndarray]:
    """First-order bound (time units) on each exact spike's error for a grid target, per layer (N, n_l).

    grid:            step g (time units). Network inputs and pulses are placed on the grid (error <= g/2);
                     reported spike times are within g/2 of the crossing of the target's own dynamics.
    spike_input_lag: extra error (time units) with which a reported spike acts on the next layer: g/2 for a
                     target that feeds the next layer with the grid point after the crossing while it reports
                     the mid-step estimate (Lava, hw_sim); 0 for a target that removes that lag (brian2).
    inf where the exact model spikes at a tangent (1 + W = 0) and where it does not spike.
    """
    half = 0.5 * grid
    bounds = []
    prev = None
    for tr, w_all in zip(traces, weights_all):
        err = np.full(tr.in_times.shape, half)  # network inputs and pulses: grid placement
        if prev is not None:  # previous layer's spikes come first, pulses after them
            err[:, : prev.shape[1]] = prev + spike_input_lag
        b = _grid_bound(tr.in_times, err, tr.order, tr.n_prefix, tr.a, tr.b, tr.w, tr.t_out,
                        np.ascontiguousarray(w_all, dtype=np.float64), float(tau), half)
        bounds.append(b)
        prev = b
    return bounds
