"""``brian2-conv``: convolutional steps graphs (issue [F]: Conv2d, ConvTranspose2d, Flatten, Dense synapses into LIF
populations, a Readout last) run by Brian2 2.9, an implementation of the float model independent of
toolchain/lif_reference.py (which evaluates convolutions with tensor contractions) and of the Lava / hw_sim
lowerings.

- Connectivity: every synapse node is expanded into explicit (pre, post, weight) Synapses from PyTorch's
  definitions (the IR docstrings), in the IR's C order of (C, H, W) maps (a Flatten is the identity on that order):
  Conv2d      I[o, y, x] += w[o, c, i, j] s[c, y sh + i - ph, x sw + j - pw]
  ConvTranspose2d  I[o, y sh + i - ph, x sw + j - pw] += w[c, o, i, j] s[c, y, x]
  Dense       I[j] += w[j, k] s[k]
  Zero weights and targets outside a map are dropped. This is meant for small networks: a graph needing more than
  ``max_synapses`` synapses for one sample (the paper's shape: 13.3 million) is refused before anything
  is built, with a TargetError naming the count and the fix.
- Neurons, timing and batching are those of ``brian2-lif`` (targets/brian2_lif.py): NeuronGroups with ``v`` and
  ``I`` updated by a per-step ``run_regularly`` (LIF: v = leak v + I, threshold, reset to 0; Readout: v = leak
  (v + I)), one step of Brian2 delay per connection shifted back, samples side by side and in successive windows.
- The Readout's trace A is recorded by a StateMonitor after each step's update and returned as the last
  population's ``potentials`` (the verifier's reconstruction metric reads it).
"""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from targets.base import RunResult, check_input_trains, steps_graph, steps_result
from targets.brian2 import CODEGEN_CHOICES, cython_available
from targets.brian2_lif import Brian2LifTarget, dense_synapses
from toolchain.errors import TargetError
from toolchain.ir import LIF, Conv2d, ConvTranspose2d, Dense, Graph, Readout

DEFAULT_MAX_SYNAPSES = 3_000_000   # per sample and per Network (Brian2 needs ~100 bytes per synapse)


def synapse_bound(node) -> int:
    """Upper bound of the synapses :func:`expand_synapse` creates for ``node`` (before dropping zeros and the
    targets outside the map), computed without building them."""
    if isinstance(node, Dense):
        return int(node.weight.size)
    if isinstance(node, Conv2d):
        return int(node.weight.size) * int(np.prod(node.output_shape[1:]))
    if isinstance(node, ConvTranspose2d):
        return int(node.weight.size) * int(np.prod(node.input_shape[1:]))
    raise TargetError(f"brian2-conv cannot expand a {type(node).__name__}; fix: use Dense, Conv2d or "
                      "ConvTranspose2d synapses")


def expand_synapse(node) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pre, post, weight): every non-zero synapse of a Dense / Conv2d / ConvTranspose2d node, indices in the
    IR's C order of the source and target populations (see the module docstring for the sums)."""
    w = np.asarray(node.weight, dtype=np.float64)
    if isinstance(node, Dense):
        return dense_synapses(w)
    (sh, sw), (ph, pw) = node.stride, node.padding
    _, h, wd = node.input_shape
    _, ho, wo = node.output_shape
    kh, kw = w.shape[2:]
    if isinstance(node, Conv2d):
        o, c, i, j, y, x = np.meshgrid(*(np.arange(n) for n in (w.shape[0], w.shape[1], kh, kw, ho, wo)),
                                       indexing="ij", sparse=True)
        iy, ix = y * sh + i - ph, x * sw + j - pw
        ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < wd)
        pre = (c * h + iy) * wd + ix
        post = (o * ho + y) * wo + x
        val = w[o, c, i, j]
    else:
        c, o, i, j, y, x = np.meshgrid(*(np.arange(n) for n in (w.shape[0], w.shape[1], kh, kw, h, wd)),
                                       indexing="ij", sparse=True)
        oy, ox = y * sh + i - ph, x * sw + j - pw
        ok = (oy >= 0) & (oy < ho) & (ox >= 0) & (ox < wo)
        pre = (c * h + y) * wd + x
        post = (o * ho + oy) * wo + ox
        val = w[c, o, i, j]
    shape = np.broadcast_shapes(ok.shape, np.shape(val))
    ok = np.broadcast_to(ok, shape) & (np.broadcast_to(val, shape) != 0)
    return (np.broadcast_to(pre, shape)[ok].astype(np.int64), np.broadcast_to(post, shape)[ok].astype(np.int64),
            np.broadcast_to(val, shape)[ok])


class Brian2ConvTarget(Brian2LifTarget):
    """Brian2 simulation of a convolutional steps graph (a Graph, or a CompiledConv: its float ``.graph``) on
    (N, T, n_in) 0/1 input trains. Options as ``brian2-lif``: codegen ("numpy" default, "cython", "auto"),
    max_synapses (per sample and per Network: bigger graphs are refused; fewer samples run side by side),
    cache_dir."""

    name = "brian2-conv"

    def __init__(self, codegen: str = "numpy", max_synapses: int = DEFAULT_MAX_SYNAPSES,
                 cache_dir: str | os.PathLike | None = None, name: str | None = None) -> None:
        super().__init__(codegen=codegen, max_synapses=max_synapses, cache_dir=cache_dir)
        self.name = name or "brian2-conv"

    def check_size(self, graph: Graph) -> int:
        """Synapses one sample needs (upper bound); TargetError above max_synapses."""
        bound = sum(synapse_bound(graph.nodes[s]) for s, _ in graph.chain())
        if bound > self.max_synapses:
            raise TargetError(f"{self.name}: the graph expands to up to {bound:,} synapses per sample, more than "
                              f"max_synapses={self.max_synapses:,} (Brian2 holds ~100 bytes per synapse); fix: verify "
                              "networks of this size on hw_sim (bit-exact with lava-fixed) and lava-float, or pass a "
                              "larger max_synapses (-o brian2.max_synapses=N) if memory allows")
        return bound

    def run(self, net: Any, inputs: np.ndarray) -> RunResult:
        """Trains of every population [(N, T, n) uint8] aligned to the float model, and ``potentials``: None per
        LIF population, the Readout's A (N, T, n) float64 when the last population is a Readout."""
        graph = steps_graph(net)
        x = check_input_trains(graph, inputs)
        chain = graph.chain()
        for syn, pop in chain:
            if not isinstance(graph.nodes[pop], (LIF, Readout)):
                raise TargetError(f"{self.name} runs LIF and Readout populations; {pop!r} is a "
                                  f"{type(graph.nodes[pop]).__name__}")
            if isinstance(graph.nodes[pop], LIF) and graph.nodes[pop].reset not in ("zero", "subtract"):
                raise TargetError(f"{self.name}: {pop!r} has reset {graph.nodes[pop].reset!r}")
        per_sample = self.check_size(graph)
        t0 = time.perf_counter()
        syn = [expand_synapse(graph.nodes[s]) for s, _ in chain]
        per_sample = max(1, sum(len(p) for p, _, _ in syn))
        bsz = max(1, min(x.shape[0], self.max_synapses // per_sample))
        trains, pots, info = self._run_chain(graph, syn, x, bsz, prefix="conv", potentials=True)
        info["synapses_per_sample"] = int(sum(len(p) for p, _, _ in syn))
        return steps_result(self.name, trains, time.perf_counter() - t0, info, pots)


__all__ = ["Brian2ConvTarget", "expand_synapse", "synapse_bound", "CODEGEN_CHOICES", "cython_available"]
