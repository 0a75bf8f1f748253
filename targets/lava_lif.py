"""``lava-float-lif`` / ``lava-fixed-lif`` (the steps counterparts of ``lava-float`` / ``lava-fixed``): a CompiledSteps (Dense -> LIF chain) on Lava 0.10's stock
processes (``lava.proc.dense`` Dense, ``lava.proc.lif`` LIFReset, ``lava.proc.io`` RingBuffer; spikes come back through ``targets.lava_lif_procs.WindowSink``).

Layout: K samples per Lava run, sample k in its own window of W = T + L steps (T input steps, then L steps of
zeros so that the last of L layers, which lags by one step per Dense, finishes). Sample k's input column s is
played at Lava step kW + s + 1 by one RingBuffer; layer l (0-based) answers it at step kW + s + 2 + l and is
zeroed (u and v) by LIFReset at step kW + 2 + l, just before the sample's first input reaches it, so every sample
starts from rest exactly as in a run of its own. A ``WindowSink`` per layer sends the T steps kW + 2 + l ..
kW + T + 1 + l of sample k as one (T, n) message through an external pipe, i.e. shifted back by 2 + l steps and
aligned to the float model (toolchain/lif_reference.py). (Var.get() costs one message per element; an Extractor
per layer, one message per step, made a 784-196-784 run ~1.5x slower.)

Process hygiene is the alpha Lava target's (targets/lava.py): the run's OS processes are tied to this one with
PR_SET_PDEATHSIG, every run is stopped in ``finally`` (errors, timeouts, Ctrl-C), a run past ``timeout_s`` raises
TargetError after its processes are terminated, and a crashed Lava process is detected without waiting for the
timeout.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from hw_sim.conv import conv_net_of
from hw_sim.lif import check_steps_input, compiled_steps_of
from targets.base import RunResult, steps_result
from targets.lava import run_and_receive
from toolchain.compiled_steps import CompiledSteps
from toolchain.errors import TargetError

DEFAULT_CHUNK = 100  # samples per Lava run
_POLL_S = 1e-3
_ALIVE_CHECK_S = 0.5


def _import_lava() -> dict:
    from targets.lava_lif_procs import WindowSink  # applies toolchain.lava_compat.install()

    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIFReset
    from lava.utils.weightutils import SignMode

    return dict(RunSteps=RunSteps, Loihi2SimCfg=Loihi2SimCfg, Dense=Dense, WindowSink=WindowSink,
                RingBuffer=RingBuffer, LIFReset=LIFReset, SignMode=SignMode)


class _LavaLifTarget:
    name = "lava-lif"
    fixed = False

    def __init__(self, chunk_size: int = DEFAULT_CHUNK, timeout_s: float | None = None) -> None:
        """chunk_size: samples per Lava run; timeout_s: wall-clock limit per run (default 60 s + 20 ms per step
        and layer)."""
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise TargetError(f"chunk_size={chunk_size!r} must be an integer >= 1; fix: pass e.g. "
                              f"chunk_size={DEFAULT_CHUNK}")
        if timeout_s is not None and not timeout_s > 0:
            raise TargetError(f"timeout_s={timeout_s} must be > 0 seconds; fix: pass e.g. timeout_s=600")
        self.chunk_size = int(chunk_size)
        self.timeout_s = timeout_s

    def run(self, net: Any, inputs: np.ndarray) -> RunResult:
        """Spike trains of every layer for every sample: ``RunResult.trains`` [(N, T, n) uint8] in graph order,
        aligned to the float model (targets/base.py). net: a CompiledSteps, or a steps Graph (compiled here with
        the defaults of toolchain.steps_compiler.compile_graph for the inputs' T); inputs: (N, T, n_in) 0/1."""
        cc = conv_net_of(net, inputs, self.name)
        if cc is not None:   # convolutional graphs: Lava Conv / Sparse processes (targets/lava_conv.py)
            from targets.lava_conv import LavaConvTarget

            return LavaConvTarget(self.fixed, self.name, self.chunk_size, self.timeout_s).run(cc, inputs)
        t0 = time.perf_counter()
        cs = compiled_steps_of(net, inputs, self.name)
        x = check_steps_input(cs, inputs, self.name)
        n, t_steps = x.shape[:2]
        out = [np.zeros((n, t_steps, cl.n_out), dtype=np.uint8) for cl in cs.layers]
        runs = 0
        for start in range(0, n, self.chunk_size):
            stop = min(n, start + self.chunk_size)
            for l, s in enumerate(self._run_chunk(cs, x[start:stop])):
                out[l][start:stop] = s
            runs += 1
        info = {"precision": "fixed_pt" if self.fixed else "floating_pt", "lava": "0.10.0", "runs": runs,
                "chunk_size": self.chunk_size, "window": t_steps + len(cs.layers), "populations": cs.names}
        return steps_result(self.name, out, time.perf_counter() - t0, info)

    def _build(self, lv: dict, cs: CompiledSteps, x: np.ndarray):
        K, T, _ = x.shape
        L = len(cs.layers)
        W = T + L
        data = np.zeros((cs.n_in, K * W), dtype=np.int32 if self.fixed else np.float64)
        for k in range(K):
            data[:, k * W:k * W + T] = x[k].T
        src = lv["RingBuffer"](data=data)
        prev, sinks = src, []
        for l, cl in enumerate(cs.layers):
            if self.fixed:
                dense = lv["Dense"](weights=np.ascontiguousarray(cl.weights, dtype=np.int32),
                                    weight_exp=int(cl.weight_exp), num_weight_bits=int(cl.num_weight_bits),
                                    sign_mode=lv["SignMode"].MIXED)
                vth = cl.vth.astype(np.int32)   # one per neuron: the models broadcast v > vth << 6
                lif = lv["LIFReset"](shape=(cl.n_out,), du=int(cl.du), dv=int(cl.dv),
                                     vth=int(vth[0]) if np.all(vth == vth[0]) else vth,
                                     reset_interval=W, reset_offset=2 + l)
            else:
                dense = lv["Dense"](weights=np.ascontiguousarray(cl.weights_float, dtype=np.float64))
                lif = lv["LIFReset"](shape=(cl.n_out,), du=float(cl.du_float), dv=float(cl.dv_float),
                                     vth=float(cl.vth_float), reset_interval=W, reset_offset=2 + l)
            prev.s_out.connect(dense.s_in)
            dense.a_out.connect(lif.a_in)
            sink = lv["WindowSink"](shape=(cl.n_out,), window=W, steps=T, phase=T + 1 + l)
            lif.s_out.connect(sink.s_in)
            sink.report.flag_external_pipe(buffer_size=max(1, min(K, 64)))
            sinks.append(sink)
            prev = lif
        return src, sinks, K * W, W

    def _run_chunk(self, cs: CompiledSteps, x: np.ndarray) -> list[np.ndarray]:
        lv = _import_lava()
        K, T, _ = x.shape
        L = len(cs.layers)
        entry, sinks, n_steps, W = self._build(lv, cs, x)
        timeout = self.timeout_s if self.timeout_s is not None else 60.0 + 0.02 * n_steps * L
        cfg = lv["Loihi2SimCfg"](select_tag="fixed_pt" if self.fixed else "floating_pt")
        out = [np.zeros((K, T, cl.n_out), dtype=np.uint8) for cl in cs.layers]

        def keep(l: int, k: int, rep: np.ndarray) -> None:  # one (T, n) report per layer and sample
            out[l][k] = rep != 0

        run_and_receive(self.name, entry, lv["RunSteps"](num_steps=n_steps, blocking=False), cfg,
                        lambda: [sink.report.external_pipe_csp_recv_port for sink in sinks], K, n_steps, timeout,
                        keep, "compiled steps graph (docs/compiler.md)")
        return out


class LavaLifFloatTarget(_LavaLifTarget):
    """Lava ``Loihi2SimCfg(select_tag="floating_pt")``: du = 1, dv = 1 - leak, the IR's float weights."""

    name = "lava-float-lif"
    fixed = False


class LavaLifFixedTarget(_LavaLifTarget):
    """Lava ``Loihi2SimCfg(select_tag="fixed_pt")``: the compiled integers (bit for bit = hw_sim.lif)."""

    name = "lava-fixed-lif"
    fixed = True


__all__ = ["LavaLifFloatTarget", "LavaLifFixedTarget"]
