"""Float64 reference simulation of a steps-time graph (toolchain/ir.py): the model every LIF target is checked
against.

It runs the equations of :class:`toolchain.ir.LIF` and :class:`toolchain.ir.Readout` exactly as their docstrings
state, batched over samples, with the current of step t computed from the source's spikes of the same step (no
hardware delay: targets that add one step per connection shift their results back before comparing). Synapses:
:class:`toolchain.ir.Dense`, :class:`toolchain.ir.Conv2d` and :class:`toolchain.ir.ConvTranspose2d` (their
docstring sums, evaluated in float64 by :func:`synapse_current`); :class:`toolchain.ir.Flatten` views are
identities on the flat C-order vectors populations hold.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolchain.ir import LIF, Conv2d, ConvTranspose2d, Dense, Graph, Readout


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


_CHUNK_VALUES = 1 << 22  # float64 values per block of a convolution (memory bound, ~32 MB)


def _conv2d(x: np.ndarray, node: Conv2d) -> np.ndarray:
    """(M, C_in, H, W) float64 -> (M, C_out, H_out, W_out): the Conv2d docstring's sum, one kernel tap at a time."""
    (ph, pw), (sh, sw) = node.padding, node.stride
    _, ho, wo = node.output_shape
    kh, kw = node.weight.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = np.zeros((x.shape[0], node.weight.shape[0], ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]   # (M, C_in, ho, wo)
            out += np.einsum("mcyx,oc->moyx", patch, node.weight[:, :, i, j], optimize=True)
    return out


def _conv_transpose2d(x: np.ndarray, node: ConvTranspose2d) -> np.ndarray:
    """(M, C_in, H, W) float64 -> (M, C_out, H_out, W_out): every source pixel adds its kernel at stride offsets
    (the ConvTranspose2d docstring), accumulated on an uncropped canvas, then the padding is cut away."""
    (ph, pw), (sh, sw) = node.padding, node.stride
    _, h, w = node.input_shape
    c_out, ho, wo = node.output_shape
    kh, kw = node.weight.shape[2:]
    canvas = np.zeros((x.shape[0], c_out, max((h - 1) * sh + kh, ph + ho), max((w - 1) * sw + kw, pw + wo)))
    for i in range(kh):
        for j in range(kw):
            contrib = np.einsum("mcyx,co->moyx", x, node.weight[:, :, i, j], optimize=True)
            canvas[:, :, i:i + sh * (h - 1) + 1:sh, j:j + sw * (w - 1) + 1:sw] += contrib
    return canvas[:, :, ph:ph + ho, pw:pw + wo]


def synapse_current(node: Dense | Conv2d | ConvTranspose2d, spikes: np.ndarray) -> np.ndarray:
    """Input current of a synapse node for source activity ``spikes`` (..., n_in) (flat C-order maps), float64
    (..., n_out) in threshold units, exactly the sum of the node's docstring (Dense: W s)."""
    s = np.asarray(spikes, dtype=np.float64)
    if s.shape[-1] != node.n_in:
        raise ValueError(f"{type(node).__name__} expects {node.n_in} inputs, got {s.shape[-1]}")
    if isinstance(node, Dense):
        return s @ node.weight.T
    if not isinstance(node, (Conv2d, ConvTranspose2d)):
        raise ValueError(f"no synapse current for node kind {type(node).__name__}")
    lead = s.shape[:-1]
    flat = s.reshape((-1,) + tuple(node.input_shape))
    out = np.empty((flat.shape[0], node.n_out))
    per = max(1, _CHUNK_VALUES // max(node.n_in, node.n_out))
    fn = _conv2d if isinstance(node, Conv2d) else _conv_transpose2d
    for a in range(0, flat.shape[0], per):
        out[a:a + per] = fn(flat[a:a + per], node).reshape(-1, node.n_out)
    return out.reshape(lead + (node.n_out,))


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
        if not isinstance(syn, (Dense, Conv2d, ConvTranspose2d)):
            raise ValueError(f"simulate supports Dense, Conv2d and ConvTranspose2d synapses, got "
                             f"{type(syn).__name__} ({syn_name!r})")
        current = synapse_current(syn, src)              # (N, T, n_out): I[t] from s[t]
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
