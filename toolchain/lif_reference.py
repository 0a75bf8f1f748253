"""Float64 reference simulation of a steps-time graph (toolchain/ir.py): the model every LIF target is checked
against.

It runs the equations of :class:`toolchain.ir.LIF` and :class:`toolchain.ir.Readout` exactly as their docstrings
state, batched over samples, with the current of step t computed from the source's spikes of the same step (no
hardware delay: targets that add one step per connection shift their results back before comparing).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolchain.ir import LIF, Dense, Graph, Readout


@dataclass(frozen=True)
class StepsTrace:
    """What :func:`simulate` records, one entry per population node in graph order.

    names:      population node names
    spikes:     [(N, T, n) uint8] spike trains (Readout: all zero)
    potentials: [(N, T, n) float64] pre-reset potential V[t] after the clamp (Readout: A[t])
    """

    names: list[str]
    spikes: list[np.ndarray]
    potentials: list[np.ndarray]


def check_spike_trains(graph: Graph, spikes_in: np.ndarray) -> np.ndarray:
    """Input spike trains (N, T, n_in) of 0/1 -> uint8; ValueError naming the problem otherwise."""
    x = np.asarray(spikes_in)
    n_in = graph.nodes[graph.input_name].n
    if x.ndim != 3 or x.shape[2] != n_in or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"input spike trains must have shape (samples, steps, {n_in}), got {x.shape}")
    if not np.all((x == 0) | (x == 1)):
        raise ValueError("input spike trains must hold only 0 and 1 (one spike per channel and step at most)")
    return x.astype(np.uint8)


def simulate(graph: Graph, spikes_in: np.ndarray) -> StepsTrace:
    """Run a feed-forward steps graph on input spike trains (N, T, n_in) in {0, 1}; float64 throughout."""
    if graph.time != "steps":
        raise ValueError(f"simulate runs steps graphs; this graph's time is {graph.time!r}")
    x = check_spike_trains(graph, spikes_in)
    n, t_steps = x.shape[0], x.shape[1]
    src = x.astype(np.float64)
    names, spikes, pots = [], [], []
    for syn_name, pop_name in graph.chain():
        syn, pop = graph.nodes[syn_name], graph.nodes[pop_name]
        if not isinstance(syn, Dense):
            raise ValueError(f"simulate supports Dense synapses only, got {type(syn).__name__} ({syn_name!r})")
        current = src @ syn.weight.T                     # (N, T, n_out): I[t] = W s[t]
        v = np.zeros((n, pop.n))
        s_out = np.zeros((n, t_steps, pop.n), dtype=np.uint8)
        v_rec = np.zeros((n, t_steps, pop.n))
        for t in range(t_steps):
            if isinstance(pop, LIF):
                v = pop.leak * v + current[:, t]
                if pop.clamp:
                    v = np.minimum(v, pop.v_th)
                fired = v > pop.v_th if pop.strict else v >= pop.v_th
                v_rec[:, t] = v
                s_out[:, t] = fired
                v = np.where(fired, 0.0 if pop.reset == "zero" else v - pop.v_th, v)
            elif isinstance(pop, Readout):
                v = pop.leak * (v + current[:, t])
                v_rec[:, t] = v
            else:
                raise ValueError(f"simulate runs LIF and Readout populations, got {type(pop).__name__}")
        names.append(pop_name)
        spikes.append(s_out)
        pots.append(v_rec)
        src = s_out.astype(np.float64)
    return StepsTrace(names, spikes, pots)
