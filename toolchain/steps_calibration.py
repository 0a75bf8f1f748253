"""Data-calibrated ranges for steps graphs (Dense -> LIF chains): ``compile_graph(..., range_mode="calibrated")``.

The worst-case checks of toolchain/lower_lif.py assume every input of a neuron spikes in every step; for a trained
784-input layer that bound is ~10x above what Bernoulli-coded images produce and refuses the model (or forces
coarse weight grids). Calibration runs the float model (toolchain/lif_reference.py) on sample input trains and
measures per neuron, in units of the neuron's threshold v_th, over every sample and step:

* ``a_in``:  largest |synaptic input of one step| (|sum_i w_ji s_i[t]| / v_th),
* ``v_neg``: largest negative potential |min(V, 0)| / v_th,
* ``v_pos``: largest pre-reset potential / v_th (information only: positive saturation happens only in a step in
  which the neuron crosses its threshold, and it spikes and resets then anyway).

At integer scale s_j (units per threshold) the hardware values are s_j a_in (16-bit input), 64 s_j a_in (24-bit u)
and 64 s_j v_neg (24-bit v); the compiler bounds them after multiplying the measured maxima by 1 + margin. Inputs
beyond the calibration can then wrap u or saturate v; hw_sim counts such events (hw_sim/lif.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolchain.calibration import (DEFAULT_CALIBRATION_SAMPLES, DEFAULT_RANGE_MARGIN, RANGE_MODES, calibration_images,
                                   check_range_options)
from toolchain.errors import CompileError
from toolchain.ir import Graph
from toolchain.lif_reference import simulate, synapse_current

__all__ = ["DEFAULT_CALIBRATION_SAMPLES", "DEFAULT_RANGE_MARGIN", "RANGE_MODES", "StepsRanges",
           "check_range_options", "measure_steps_ranges", "training_input_spikes"]


@dataclass(frozen=True)
class StepsRanges:
    """Measured maxima per neuron of one population, threshold units, over every sample and step.
    a_in, v_neg, v_pos: (n,) float64 (module docstring); rate: (n,) spikes per step (mean)."""

    a_in: np.ndarray
    v_neg: np.ndarray
    v_pos: np.ndarray
    rate: np.ndarray


def measure_steps_ranges(graph: Graph, spikes_in: np.ndarray, chunk: int = 256) -> list[StepsRanges]:
    """Ranges of every population of ``graph`` (chain order) on (N, T, n_in) 0/1 input trains, in chunks of
    ``chunk`` samples (memory: chunk x T x widest layer float64)."""
    x = np.asarray(spikes_in)
    if x.ndim != 3 or x.shape[0] < 1:
        raise CompileError(f"calibration inputs must be (samples, steps, channels) 0/1 trains, got shape {x.shape}; "
                           "fix: pass Bernoulli-encoded training images")
    pairs = graph.chain()
    acc = None
    for lo in range(0, x.shape[0], chunk):
        part = x[lo:lo + chunk]
        tr = simulate(graph, part)
        src = part.astype(np.float64)
        rows = []
        for (syn_name, pop_name), s, v in zip(pairs, tr.spikes, tr.potentials):
            v_th = getattr(graph.nodes[pop_name], "v_th", 1.0)  # a Readout has none: its units are the current's
            a = np.abs(synapse_current(graph.nodes[syn_name], src)).max(axis=(0, 1)) / v_th
            rows.append((a, np.maximum(-v.min(axis=(0, 1)), 0.0) / v_th, v.max(axis=(0, 1)) / v_th,
                         s.sum(axis=(0, 1), dtype=np.float64)))
            src = s.astype(np.float64)
        acc = rows if acc is None else [tuple(np.maximum(p, q) if i < 3 else p + q for i, (p, q) in
                                              enumerate(zip(old, new))) for old, new in zip(acc, rows)]
    steps = float(x.shape[0] * x.shape[1])
    return [StepsRanges(a, vn, vp, n / steps) for a, vn, vp, n in acc]


def training_input_spikes(graph: Graph, dataset: str | None, samples: int, steps: int, p_scale: float | None,
                          seed: int = 0, data_dir: str | None = None) -> tuple[np.ndarray, str]:
    """Bernoulli trains (samples, steps, n_in) of the first ``samples`` training images of ``dataset`` (default: the
    graph's metadata 'dataset') at spike probability ``p_scale`` per step at pixel 1 (default: metadata 'p_scale'),
    from numpy.random.default_rng(seed); and a description of their source."""
    from models.rate_encoding import bernoulli_encode

    images, source = calibration_images(graph.metadata, dataset, samples, graph.nodes[graph.input_name].n, data_dir)
    p = graph.metadata.get("p_scale") if p_scale is None else p_scale
    if p is None:
        raise CompileError("the model does not record p_scale (spike probability per step at pixel 1), which "
                           "calibration needs to encode images; fix: pass --p-scale (e.g. 0.3 for MNIST)")
    x = bernoulli_encode(images, int(steps), float(p), np.random.default_rng(int(seed)))
    return x, f"{source}, Bernoulli p_scale {float(p):g}, T {int(steps)}, seed {int(seed)}"
