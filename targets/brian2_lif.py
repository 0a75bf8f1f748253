"""``brian2-lif``: the discrete LIF equations of :class:`toolchain.ir.LIF` run by Brian2 2.9 from the IR.

An independent implementation of the float model (toolchain/lif_reference.py), written with Brian2's own objects:

- every population is a NeuronGroup with state ``v`` (potential) and ``I`` (current of this step), threshold units;
  a per-step ``run_regularly`` (slot ``groups``) applies the update of the IR node,
  LIF:     v = leak v + I; v = clip(v, -inf, v_th) if clamp; I = 0
  Readout: v = leak (v + I); I = 0
  then Brian2's threshold (``v >= v_th``, ``v > v_th`` when strict) and reset (``v = 0`` or ``v = v - v_th``);
- every Dense node is a Synapses object with ``on_pre: I_post += w`` (weights in threshold units);
- input trains enter through a SpikeGeneratorGroup, one spike per (channel, step) with a 1.

Brian2 propagates a group's spikes in the ``synapses`` slot, after the ``groups`` update of the same step, so each
connection adds one step: population l (0-based, graph order) reports model step t at Brian2 step t + l + 1. The
target shifts every train back, so results are aligned to :func:`toolchain.lif_reference.simulate`.

Many samples per run: ``B`` samples side by side as block-diagonal copies of every group (bounded by
``max_synapses``), and successive chunks of B samples in successive windows of T + L steps of one Brian2 Network
(L populations), with every ``v`` and ``I`` zeroed at the start of each window (a ``run_regularly`` every window in
slot ``start``). One step = 1 ms of Brian2 time (a label only: the equations are per step).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from targets.base import RunResult, check_input_trains, steps_graph, steps_result
from targets.brian2 import CODEGEN_CHOICES, _brian2_prefs, cython_available, default_cache_dir
from toolchain.errors import TargetError
from toolchain.ir import LIF, Dense, Graph, Readout

DEFAULT_MAX_SYNAPSES = 3_000_000  # per Network (memory: ~100 bytes per synapse in Brian2)


def dense_synapses(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pre, post, weight) of the non-zero entries of a Dense weight matrix w (n_out, n_in), one sample's indices."""
    post, pre = np.nonzero(w)
    return pre.astype(np.int64), post.astype(np.int64), w[post, pre]


class Brian2LifTarget:
    """Brian2 simulation of a steps (LIF) graph on (N, T, n_in) 0/1 input trains.

    codegen:       "numpy" (default), "cython" or "auto" (cython when Cython and a C compiler are available, else
                   numpy; falls back to numpy if the Cython build fails). numpy is the default because the work is
                   mostly building synapses: 784-196-784, T = 15, 100 samples took 4.4 s with numpy and 3.5 s with
                   cached cython, but cython's first build took 136 s; 784-1024-784, T = 60: numpy 25 s, cached
                   cython 14 s (busy 2-core machine, docs/verifier.md)
    max_synapses:  synapses per Brian2 Network; sets how many samples run side by side
    cache_dir:     where Cython extensions are cached (default: targets.brian2.default_cache_dir())
    """

    name = "brian2-lif"

    def __init__(self, codegen: str = "numpy", max_synapses: int = DEFAULT_MAX_SYNAPSES,
                 cache_dir: str | os.PathLike | None = None) -> None:
        if codegen not in CODEGEN_CHOICES:
            raise TargetError(f"unknown brian2 codegen {codegen!r}; choose one of {', '.join(CODEGEN_CHOICES)}")
        if codegen == "cython" and not cython_available():
            raise TargetError("brian2 codegen 'cython' needs Cython and a C compiler (cc/gcc); use codegen='numpy'")
        if int(max_synapses) < 1:
            raise TargetError(f"brian2 max_synapses={max_synapses} must be >= 1")
        self._auto = codegen == "auto"
        self.codegen = ("cython" if cython_available() else "numpy") if self._auto else codegen
        self.max_synapses = int(max_synapses)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

    def chunk_size(self, graph: Graph) -> int:
        """Samples side by side in one window under the synapse budget."""
        per_sample = sum(int(np.count_nonzero(graph.nodes[s].weight)) for s, _ in graph.chain())
        return max(1, self.max_synapses // max(per_sample, 1))

    def run(self, net: Any, inputs: np.ndarray) -> RunResult:
        graph = steps_graph(net)
        from toolchain.conv_compiler import needs_conv_compiler

        if needs_conv_compiler(graph):     # convolutions / Readout: synapses expanded by targets/brian2_conv.py
            from targets.brian2_conv import Brian2ConvTarget

            return Brian2ConvTarget(codegen="auto" if self._auto else self.codegen, max_synapses=self.max_synapses,
                                    cache_dir=self.cache_dir, name=self.name).run(graph, inputs)
        x = check_input_trains(graph, inputs)
        chain = graph.chain()
        for syn, pop in chain:
            if not isinstance(graph.nodes[syn], Dense) or not isinstance(graph.nodes[pop], (LIF, Readout)):
                raise TargetError(f"brian2-lif runs Dense synapses into LIF/Readout populations; {syn!r} -> {pop!r} "
                                  f"is {type(graph.nodes[syn]).__name__} -> {type(graph.nodes[pop]).__name__}")
        bsz = min(x.shape[0], self.chunk_size(graph))
        t0 = time.perf_counter()
        syn = [dense_synapses(graph.nodes[s].weight) for s, _ in chain]
        trains, _, info = self._run_chain(graph, syn, x, bsz, prefix="lif", potentials=False)
        return steps_result(self.name, trains, time.perf_counter() - t0, info)

    def _run_chain(self, graph: Graph, syn: list, x: np.ndarray, bsz: int, *, prefix: str,
                   potentials: bool) -> tuple[list[np.ndarray], list, dict]:
        """Simulate the chain with the synapses ``syn`` [(pre, post, w) per layer, one sample's indices] in the
        configured codegen (``auto``: cython, numpy when cython fails); returns trains, Readout potentials (None per
        population unless ``potentials``) and the run's info."""
        cache_dir = self.cache_dir
        if self.codegen == "cython" and cache_dir is None:
            cache_dir = default_cache_dir()
        codegen, fallback = self.codegen, None
        try:
            with _brian2_prefs(codegen, cache_dir):
                trains, pots = self._simulate(graph, syn, x, bsz, prefix, potentials)
        except TargetError as exc:
            if not (self._auto and codegen == "cython"):
                raise
            codegen, fallback, cache_dir = "numpy", str(exc.__cause__ or exc)[:300], None
            with _brian2_prefs(codegen, None):
                trains, pots = self._simulate(graph, syn, x, bsz, prefix, potentials)
        import brian2

        info = {"codegen": codegen, "chunk": bsz, "windows": -(-x.shape[0] // bsz), "brian2": brian2.__version__,
                "populations": [p for _, p in graph.chain()], "time_unit": "1 step = 1 ms of Brian2 time"}
        if codegen == "cython" and cache_dir is not None:
            info["cache_dir"] = str(cache_dir)
        if fallback:
            info["codegen_fallback"] = f"cython failed, ran numpy: {fallback}"
        return trains, pots, info

    def _simulate(self, graph: Graph, syn: list, x: np.ndarray, bsz: int, prefix: str,
                  potentials: bool) -> tuple[list[np.ndarray], list]:
        """One Brian2 Network per call: ``bsz`` samples side by side (block-diagonal Synapses, copy b of pre -> copy
        b of post, on_pre I_post += w), windows of samples one after the other."""
        import brian2 as b2

        n_samples, t_steps, n_in = x.shape
        chain = graph.chain()
        window = t_steps + len(chain)
        n_windows = -(-n_samples // bsz)
        clock = b2.Clock(dt=1 * b2.ms, name=f"snnc_{prefix}_clock")
        inp = self._input(b2, x, bsz, window, clock, f"snnc_{prefix}_input")
        objs: list = [inp]
        monitors = []
        prev, prev_n = inp, n_in
        for l, ((_, pop_name), (pre, post, w)) in enumerate(zip(chain, syn)):
            pop = graph.nodes[pop_name]
            grp = self._group(b2, pop, bsz, clock, l, window)
            objs.append(grp)
            if len(pre):    # Brian2 refuses a Synapses object without synapses; all-zero weights add nothing
                s = b2.Synapses(prev, grp, "w : 1", on_pre="I_post += w", clock=clock, name=f"snnc_{prefix}_syn{l}")
                rep = np.repeat(np.arange(bsz, dtype=np.int64), len(pre))
                s.connect(i=np.tile(pre, bsz) + rep * prev_n, j=np.tile(post, bsz) + rep * pop.n)
                s.w = np.tile(w, bsz)
                objs.append(s)
            if isinstance(pop, LIF):
                mon = b2.SpikeMonitor(grp, record=True, name=f"snnc_{prefix}_mon{l}")
            elif potentials:     # Readout: A after each step's update
                mon = b2.StateMonitor(grp, "v", record=True, when="end", clock=clock, name=f"snnc_{prefix}_state{l}")
            else:
                mon = None
            if mon is not None:
                objs.append(mon)
            monitors.append(mon)
            prev, prev_n = grp, pop.n
        network = b2.Network(*objs)
        try:
            network.run(n_windows * window * b2.ms, namespace={})
        except Exception as exc:  # Brian2 raises BrianObjectException etc.; surface as a target failure
            raise TargetError(f"Brian2 run failed ({type(exc).__name__}: {exc}); try codegen='numpy'") from exc
        trains, pots = [], []
        for l, ((_, pop_name), mon) in enumerate(zip(chain, monitors)):
            n = graph.nodes[pop_name].n
            out = np.zeros((n_samples, t_steps, n), dtype=np.uint8)
            pot = None
            if isinstance(mon, b2.SpikeMonitor):
                if mon.num_spikes:
                    step = np.rint(np.asarray(mon.t_[:]) * 1e3).astype(np.int64)   # 1 step = 1 ms
                    idx = np.asarray(mon.i[:], dtype=np.int64)
                    w_, s_in_w = np.divmod(step, window)
                    t = s_in_w - (l + 1)                   # one step of Brian2 delay per connection
                    b_, j = np.divmod(idx, n)
                    s = w_ * bsz + b_
                    keep = (t >= 0) & (t < t_steps) & (s < n_samples)
                    out[s[keep], t[keep], j[keep]] = 1
            elif mon is not None:
                v = np.asarray(mon.v[:], dtype=np.float64)          # (bsz n, windows x window steps)
                v = v.reshape(bsz, n, n_windows, window)[:, :, :, l + 1:l + 1 + t_steps]
                pot = v.transpose(2, 0, 3, 1).reshape(n_windows * bsz, t_steps, n)[:n_samples].copy()
            trains.append(out)
            pots.append(pot)
        return trains, pots

    @staticmethod
    def _input(b2, x: np.ndarray, bsz: int, window: int, clock, name: str):
        """Input spikes (N, T, n_in) as one SpikeGeneratorGroup: sample s = w B + b, channel k, step t -> neuron
        b n_in + k at Brian2 step w window + t (windows of ``bsz`` samples side by side)."""
        n_in = x.shape[2]
        s_idx, t_idx, k_idx = np.nonzero(x)
        win, b = np.divmod(s_idx, bsz)
        return b2.SpikeGeneratorGroup(bsz * n_in, (b * n_in + k_idx).astype(np.int64),
                                      (win * window + t_idx).astype(np.float64) * b2.ms, clock=clock, name=name)

    @staticmethod
    def _group(b2, pop: LIF | Readout, bsz: int, clock, l: int, window: int):
        eqs = "v : 1\nI : 1\nleak : 1 (shared, constant)\nv_th : 1 (shared, constant)"
        if isinstance(pop, LIF):
            grp = b2.NeuronGroup(bsz * pop.n, eqs, threshold="v > v_th" if pop.strict else "v >= v_th",
                                 reset="v = 0" if pop.reset == "zero" else "v = v - v_th", clock=clock,
                                 name=f"snnc_lif_layer{l}")
            update = "v = leak * v + I\n" + ("v = clip(v, -inf, v_th)\n" if pop.clamp else "") + "I = 0"
            grp.v_th = pop.v_th
        else:
            grp = b2.NeuronGroup(bsz * pop.n, eqs, clock=clock, name=f"snnc_lif_layer{l}")
            update = "v = leak * (v + I)\nI = 0"
            grp.v_th = 1.0
        grp.leak = pop.leak
        grp.run_regularly(update, when="groups", name=f"snnc_lif_update{l}")
        # a fresh state for every window of samples (also drops spikes still in flight from the previous window)
        grp.run_regularly("v = 0\nI = 0", dt=window * b2.ms, when="start", name=f"snnc_lif_zero{l}")
        return grp
