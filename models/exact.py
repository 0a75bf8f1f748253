"""Exact float64 event-driven forward pass of once-spiking alpha neurons (the reference target).

For one neuron, inputs sorted by time; for each prefix k (inputs 0..k):

    A = sum_i w_i e^{tau t_i},  B = sum_i w_i e^{tau t_i} t_i,  V(t) = e^{-tau t} (A t - B)
    t_out = B/A - W0(z) / tau,  z = -(tau theta / A) e^{tau B / A}

valid when t_k <= t_out < t_{k+1}. Intervals whose peak potential (at B/A + 1/tau) stays below theta
are skipped without evaluating W0; the scan stops at the first crossing. All times in model time units.

The kernel also returns the trace (A, B, W, prefix length) that the exact gradients need
(equations 4 and 5 of Comsa et al. 2021), so the trainer and the verifier share one forward pass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from models.network import TemporalNetwork

_INV_E = math.exp(-1.0)


@numba.njit(cache=True, fastmath=False)
def lambertw0(z: float) -> float:
    """Principal branch W0(z) for real z >= -1/e (Halley iteration, ~1e-16 relative)."""
    if z <= -_INV_E:
        return -1.0
    if z == 0.0:
        return 0.0
    if z < -0.3:
        p = math.sqrt(2.0 * (math.e * z + 1.0))
        w = -1.0 + p - p * p / 3.0 + 11.0 / 72.0 * p * p * p
    elif z < 1.0:
        w = z * (1.0 - z + 1.5 * z * z) if z < 0.3 else 0.5 * math.log1p(z) + 0.2
    else:
        lz = math.log(z)
        w = lz - math.log(lz) if z > 3.0 else 0.6 * lz + 0.5
    for _ in range(50):
        ew = math.exp(w)
        f = w * ew - z
        wp1 = w + 1.0
        if wp1 == 0.0:
            break
        dw = f / (ew * wp1 - (w + 2.0) * f / (2.0 * wp1))
        w -= dw
        if abs(dw) <= 1e-15 * (1.0 + abs(w)):
            break
    return w


@numba.njit(cache=True)
def first_spike(t_sorted, w_sorted, n_valid, tau, theta):
    """First threshold crossing of one neuron; inputs already sorted by time (first n_valid finite).

    Returns (t_out, A, B, W, n_prefix); t_out = inf and n_prefix = 0 when the neuron never spikes.
    """
    a = 0.0
    b = 0.0
    for k in range(n_valid):
        ti = t_sorted[k]
        e = w_sorted[k] * math.exp(tau * ti)
        a += e
        b += e * ti
        t_next = t_sorted[k + 1] if k + 1 < n_valid else np.inf
        if t_next == ti or a <= 0.0:
            continue
        bpa = b / a
        tq = bpa + 1.0 / tau
        if tq < ti:
            tq = ti
        if tq > t_next:
            tq = t_next
        if math.exp(-tau * tq) * (a * tq - b) < theta:
            continue
        z = -(tau * theta / a) * math.exp(tau * bpa)
        w = lambertw0(z)
        t = bpa - w / tau
        if t < ti:  # rounding at a crossing exactly at the input time
            t = ti
        if t < t_next:
            return t, a, b, w, k + 1
    return np.inf, 0.0, 0.0, 0.0, 0


@numba.njit(cache=True, parallel=True)
def layer_forward(in_times, weights, tau, theta):
    """Batched exact layer. in_times (N, n_in) with inf = no spike; weights (n_out, n_in).

    Returns t_out, A, B, W (N, n_out) float64, n_prefix (N, n_out) int32 and order (N, n_in) int32,
    the argsort of each sample's input times (the first n_prefix entries are the causal inputs).
    """
    n, n_in = in_times.shape
    n_out = weights.shape[0]
    t_out = np.full((n, n_out), np.inf)
    a_out = np.zeros((n, n_out))
    b_out = np.zeros((n, n_out))
    w_out = np.zeros((n, n_out))
    k_out = np.zeros((n, n_out), dtype=np.int32)
    order = np.empty((n, n_in), dtype=np.int32)
    for s in numba.prange(n):
        idx = np.argsort(in_times[s], kind="mergesort")
        ts = in_times[s][idx]
        n_valid = 0
        while n_valid < n_in and ts[n_valid] < np.inf:
            n_valid += 1
        ws = np.empty(n_in)
        for j in range(n_out):
            for k in range(n_valid):
                ws[k] = weights[j, idx[k]]
            t, a, b, w, kk = first_spike(ts, ws, n_valid, tau, theta)
            t_out[s, j] = t
            a_out[s, j] = a
            b_out[s, j] = b
            w_out[s, j] = w
            k_out[s, j] = kk
        for k in range(n_in):
            order[s, k] = idx[k]
    return t_out, a_out, b_out, w_out, k_out, order


@dataclass(frozen=True)
class LayerTrace:
    """What the exact gradients need from one layer's forward pass (arrays over (N, n_out))."""

    in_times: np.ndarray  # (N, n_in + n_pulses), time units, inf = no spike
    t_out: np.ndarray
    a: np.ndarray
    b: np.ndarray
    w: np.ndarray
    n_prefix: np.ndarray
    order: np.ndarray


def layer_inputs(prev_times: np.ndarray, pulse_times: np.ndarray) -> np.ndarray:
    """Append the layer's pulse times to every sample's input times: (N, n_in + n_pulses)."""
    n = prev_times.shape[0]
    pulses = np.broadcast_to(pulse_times[None, :], (n, pulse_times.shape[0]))
    return np.ascontiguousarray(np.hstack([prev_times, pulses]), dtype=np.float64)


def exact_forward_trace(net: TemporalNetwork, input_times: np.ndarray) -> list[LayerTrace]:
    """Run the network exactly; one :class:`LayerTrace` per layer.

    Uses the layer-major kernel of models/temporal_kernels.py, which gives bit-for-bit the results of
    :func:`layer_forward` (the readable reference above; tests/test_exact.py checks the equality)."""
    x = np.asarray(input_times, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != net.layers[0].n_in:
        raise ValueError(f"input_times must have shape (N, {net.layers[0].n_in}), got {x.shape}")
    if np.any(np.isnan(x)):
        raise ValueError("input_times contain NaN; use inf for 'no spike'")
    from models.temporal_kernels import layer_forward_fast  # bitwise equal to layer_forward, ~4x faster

    traces = []
    for layer in net.layers:
        xin = layer_inputs(x, layer.pulse_times)
        weights_t = np.ascontiguousarray(layer.all_weights().T)
        t, a, b, w, k, order = layer_forward_fast(xin, weights_t, net.tau, net.theta)[:6]
        traces.append(LayerTrace(xin, t, a, b, w, k, order))
        x = t
    return traces


def exact_forward(net: TemporalNetwork, input_times: np.ndarray) -> list[np.ndarray]:
    """First-spike times of every layer, [(N, n_l)], time units, inf = no spike."""
    return [tr.t_out for tr in exact_forward_trace(net, input_times)]
