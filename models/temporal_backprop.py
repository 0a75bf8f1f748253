"""Exact backpropagation through a stack of alpha layers with the compiled kernels (plain numpy in and out).

:func:`layer_forward` / :func:`layer_backward` are one layer; :func:`reconstruction_gradients` runs the whole
network on a batch, applies the authors' reconstruction loss and returns the gradient of every parameter.
This is the trainer's fast path; ``models/temporal_autograd.py`` wraps the same two layer functions in a
``torch.autograd.Function`` (and the tests check that both give the same gradients).

Gradient conventions follow the authors' code (google/ihmehimmeli): per sample the loss gradient wrt output
spike time k is ``t_k - latency - target_k`` (that of 0.5 * sum_k (t_k - latency - target_k)^2; a missing
output spike contributes no gradient), the gradient of the batch is the mean over samples, local derivatives
are clipped at ``clip`` and every weight into a neuron that did not spike gets ``-penalty`` per sample.
Times in model time units.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numba
import numpy as np

from models import temporal_kernels as K
from models.threads import AdaptiveThreads, batch_threads, numba_threads


@dataclass(frozen=True)
class LayerState:
    """One layer's forward trace (what the backward pass needs). Arrays over samples N."""

    in_times: np.ndarray  # (N, n_in + n_pulses) time units, inf = no spike; pulses last
    t_out: np.ndarray  # (N, n_out)
    a: np.ndarray
    b: np.ndarray
    w: np.ndarray
    n_prefix: np.ndarray  # (N, n_out) int32, causal inputs of each neuron
    order: np.ndarray  # (N, n_in + n_pulses) int32, time order of the inputs
    es: np.ndarray  # (N, n_in + n_pulses) exp(tau t) of the inputs in time order
    ts: np.ndarray  # (N, n_in + n_pulses) the input times in time order
    n_pulses: int


@dataclass(frozen=True)
class LayerGrads:
    """Gradients of one layer. ``in_times`` is None unless asked for."""

    weights_all: np.ndarray  # (n_out, n_in + n_pulses): ordinary input weights, then pulse weights
    pulse_times: np.ndarray  # (n_pulses,)
    in_times: np.ndarray | None  # (N, n_in)


def layer_inputs(prev_times: np.ndarray, pulse_times: np.ndarray) -> np.ndarray:
    """(N, n_in + n_pulses) float64: the previous layer's spike times, then this layer's pulses."""
    n = prev_times.shape[0]
    out = np.empty((n, prev_times.shape[1] + pulse_times.shape[0]))
    out[:, : prev_times.shape[1]] = prev_times
    out[:, prev_times.shape[1]:] = pulse_times[None, :]
    return out


def layer_forward(prev_times: np.ndarray, weights_all: np.ndarray, pulse_times: np.ndarray, tau: float,
                  theta: float) -> LayerState:
    """Exact first-spike times of one layer (bitwise equal to ``models.exact.layer_forward``) and its trace.

    weights_all: (n_out, n_in + n_pulses), ordinary inputs first, then pulses (``AlphaLayer.all_weights()``).
    """
    xin = layer_inputs(np.asarray(prev_times, dtype=np.float64), np.asarray(pulse_times, dtype=np.float64))
    wt = np.ascontiguousarray(np.asarray(weights_all, dtype=np.float64).T)
    n, n_out = xin.shape[0], wt.shape[1]
    threads = numba.get_num_threads()
    # small batch, big layer: also split the neurons so that every thread gets about 4 work items
    n_split = min(8, -(-4 * threads // n)) if (n < 4 * threads and n_out >= 128) else 1
    t, a, b, w, k, order, _, es, ts = K.layer_forward_fast(xin, wt, float(tau), float(theta), n_split)
    return LayerState(xin, t, a, b, w, k, order, es, ts, int(np.shape(pulse_times)[0]))


def layer_backward(state: LayerState, weights_all: np.ndarray, grad_out: np.ndarray, tau: float, clip: float,
                   penalty: float, need_input_grad: bool = True) -> LayerGrads:
    """Exact gradients of one layer given dL/dt_out (N, n_out); entries of silent neurons are ignored.

    clip: absolute clip of each local derivative d t_out / d t_i and d t_out / d w_i (<= 0: none).
    penalty: subtracted from the gradient of every weight into a silent neuron, once per sample.
    """
    st = state
    n_in = st.in_times.shape[1] - st.n_pulses
    w_all = np.ascontiguousarray(weights_all, dtype=np.float64)
    g = np.ascontiguousarray(grad_out, dtype=np.float64)
    gw, gin = K.layer_grads(st.ts, st.es, w_all, st.t_out, st.a, st.b, st.w, st.n_prefix, st.order, g,
                            float(tau), float(clip), float(penalty), 0 if need_input_grad else n_in)
    return LayerGrads(gw, gin[:, n_in:].sum(axis=0), gin[:, :n_in] if need_input_grad else None)


@dataclass(frozen=True)
class BatchResult:
    """Outcome of one batch: summed squared error (missing spike = 1.0), per-layer grads, output times."""

    sq_error_sum: float  # sum over samples and pixels of (t - latency - target)^2
    grads: list[LayerGrads]
    t_out: np.ndarray


def reconstruction_gradients(params: list[tuple[np.ndarray, np.ndarray]], input_times: np.ndarray,
                             targets: np.ndarray, latency: float, tau: float, theta: float, clip: float,
                             penalty: float, threads: int | AdaptiveThreads | None = None) -> BatchResult:
    """Forward the batch through every layer, then backpropagate the authors' reconstruction loss.

    params: per layer (weights_all (n_out, n_in + P), pulse_times (P,)).
    input_times (N, n_in) and targets (N, n_out_last) in time units (targets relative to the latency).
    Gradients are means over the batch (penalty per sample, so also averaged).
    threads: the kernels' thread count; None = ``models.threads.batch_threads`` (batches smaller than
    ``PARALLEL_MIN_BATCH`` in the calling thread, larger ones on numba's threads); an ``AdaptiveThreads``
    chooses per batch from the measured times. The results are the same whatever the thread count.
    """
    n = input_times.shape[0]
    if isinstance(threads, AdaptiveThreads):
        n_thr = threads.choose(n)
        t0 = time.perf_counter()
        res = reconstruction_gradients(params, input_times, targets, latency, tau, theta, clip, penalty, n_thr)
        threads.record(n_thr, time.perf_counter() - t0, n)
        return res
    with numba_threads(batch_threads(n) if threads is None else threads):
        states = []
        x = input_times
        for w_all, pt in params:
            st = layer_forward(x, w_all, pt, tau, theta)
            states.append(st)
            x = st.t_out
        sq, g = K.reconstruction_grad(x, np.ascontiguousarray(targets, dtype=np.float64), float(latency), 1.0 / n)
        grads: list[LayerGrads] = [None] * len(params)  # type: ignore[list-item]
        for li in range(len(params) - 1, -1, -1):
            lg = layer_backward(states[li], params[li][0], g, tau, clip, penalty / n, need_input_grad=li > 0)
            grads[li] = lg
            g = lg.in_times
    return BatchResult(float(sq), grads, x)
