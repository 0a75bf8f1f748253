"""Convolutional steps graphs (CompiledConv, toolchain/compiled_conv.py) on Lava 0.10's stock processes:
``lava.proc.conv`` Conv, ``lava.proc.sparse`` Sparse (transposed convolutions Conv cannot express),
``lava.proc.dense`` Dense and ``lava.proc.lif`` LIFReset, in both precisions; ``lava-float-lif`` /
``lava-fixed-lif`` hand CompiledConv networks to these classes, so the CLI's target names serve conv models too.

Layout (the Dense-chain target's, targets/lava_lif.py): K samples per run, sample k in a window of W = T + L + R
steps (R relay stages); input column s of sample k is played at step kW + s + 1; population l answers at
kW + s + lag_l with lag_l = 2 + l + (relay stages up to l) (one step of delay per connection process, one more per
relay of a split fan-in, fixed point only: ``CompiledConv.lag_steps``) and is zeroed by LIFReset at kW + lag_l; a
``WindowSink`` per LIF population and a ``ReadoutSink`` (targets/lava_conv_procs) for a final Readout report sample
k's T steps shifted back by lag_l, so every train is aligned to the float model. Map populations are (W, H, C)
processes (Lava's Conv order); Dense
weights touching them are permuted, reports are converted back to PyTorch's C-order (C, H, W) flat vectors
(toolchain/lower_conv.py).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from hw_sim.conv import check_conv_input, compiled_conv_of
from targets.base import RunResult, steps_result
from targets.lava import run_and_receive
from toolchain.compiled_conv import CompiledConv
from toolchain.errors import TargetError
from toolchain.lower_conv import (
    conv_transpose_matrix, from_lava_map, lava_conv_weights, lava_dense_weights, lava_mapping, lava_shapes,
    lava_scale_per_neuron, to_lava_map,
)

DEFAULT_CHUNK = 20  # samples per Lava run (Lava's Conv is slow: keep runs short)


def _import_lava() -> dict:
    from targets.lava_conv_procs import ReadoutSink  # applies toolchain.lava_compat.install()
    from targets.lava_lif_procs import WindowSink

    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense
    from lava.proc.graded.process import GradedVec
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIFReset
    from lava.proc.sparse.process import Sparse
    from lava.utils.weightutils import SignMode

    return dict(RunSteps=RunSteps, Loihi2SimCfg=Loihi2SimCfg, Conv=Conv, Dense=Dense, Sparse=Sparse,
                GradedVec=GradedVec,
                RingBuffer=RingBuffer, LIFReset=LIFReset, WindowSink=WindowSink, ReadoutSink=ReadoutSink,
                SignMode=SignMode)


def _lava_shape(shape: tuple | None, n: int) -> tuple:
    return (n,) if shape is None else (shape[2], shape[1], shape[0])


class LavaConvTarget:
    """Runs a CompiledConv on Lava; ``fixed`` selects the precision. chunk_size: samples per Lava run;
    timeout_s: wall-clock limit per run (default 120 s + 0.2 s per step)."""

    name = "lava-conv"

    def __init__(self, fixed: bool, name: str | None = None, chunk_size: int = DEFAULT_CHUNK,
                 timeout_s: float | None = None) -> None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise TargetError(f"chunk_size={chunk_size!r} must be an integer >= 1; fix: pass e.g. "
                              f"chunk_size={DEFAULT_CHUNK}")
        if timeout_s is not None and not timeout_s > 0:
            raise TargetError(f"timeout_s={timeout_s} must be > 0 seconds; fix: pass e.g. timeout_s=600")
        self.fixed = bool(fixed)
        self.name = name or ("lava-fixed-lif" if fixed else "lava-float-lif")
        self.chunk_size = int(chunk_size)
        self.timeout_s = timeout_s

    def run(self, net: Any, inputs: np.ndarray) -> RunResult:
        """Trains of every population [(N, T, n) uint8] aligned to the float model, and ``potentials`` [None per
        LIF population, (N, T, n) float64 A for a final Readout]."""
        t0 = time.perf_counter()
        cc = compiled_conv_of(net, self.name)
        x = check_conv_input(cc, inputs, self.name)
        n, t_steps = x.shape[:2]
        out = [np.zeros((n, t_steps, cl.n_out), dtype=np.uint8) for cl in cc.layers]
        pots: list = [np.zeros((n, t_steps, cl.n_out)) if cl.population == "readout" else None for cl in cc.layers]
        runs = 0
        for start in range(0, n, self.chunk_size):
            stop = min(n, start + self.chunk_size)
            for l, (s, p) in enumerate(zip(*self._run_chunk(cc, x[start:stop]))):
                out[l][start:stop] = s
                if p is not None:
                    pots[l][start:stop] = p
            runs += 1
        info = {"precision": "fixed_pt" if self.fixed else "floating_pt", "lava": "0.10.0", "runs": runs,
                "blocks": [cl.blocks if self.fixed else 1 for cl in cc.layers],
                "chunk_size": self.chunk_size,
                "window": t_steps + len(cc.layers) + self._relays(cc, len(cc.layers) - 1),
                "relay_stages": self._relays(cc, len(cc.layers) - 1),
                "populations": cc.names,
                "mapping": [lava_mapping(cl) for cl in cc.layers]}
        return steps_result(self.name, out, time.perf_counter() - t0, info, pots)

    def _relays(self, cc: CompiledConv, l: int) -> int:
        """Relay stages up to layer l in this precision (lava-float runs split layers unsplit: no relays)."""
        return cc.relay_stages(l) if self.fixed else 0

    def _relayed(self, lv: dict, cl, blocks: list, src_port, src, dst) -> list:
        """A Dense layer whose fan-in is split (``fan_in_groups`` k): per group of contiguous Lava-order inputs, the
        blocks' Dense processes restricted to the group's columns feed a GradedVec (vth 0: it sends its integer
        partial sum every step as a graded spike), and a graded Dense with identity weights (mantissa 2, exponent
        -1: exactly 1) delivers it to the population, which sums the k partial sums: the unsplit sum, one step
        later. Returns the identity Dense processes' output ports."""
        k = cl.fan_in_groups
        bounds = np.linspace(0, cl.n_in, k + 1).astype(np.int64)
        eye = np.ascontiguousarray(2 * np.eye(cl.n_out, dtype=np.int32))
        ports = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            relay = lv["GradedVec"](shape=(cl.n_out,), vth=0)
            for m, e in blocks:
                mat = lava_dense_weights(m, src, dst)
                part = np.zeros_like(mat, dtype=np.int32)
                part[:, lo:hi] = mat[:, lo:hi]
                proc = lv["Dense"](weights=part, weight_exp=int(e), num_weight_bits=int(cl.num_weight_bits),
                                   sign_mode=lv["SignMode"].MIXED)
                (src_port.flatten() if src is not None else src_port).connect(proc.s_in)
                proc.a_out.connect(relay.a_in)
            ident = lv["Dense"](weights=eye, weight_exp=-1, num_weight_bits=8, sign_mode=lv["SignMode"].MIXED,
                                num_message_bits=24)
            relay.s_out.connect(ident.s_in)
            ports.append(ident.a_out.reshape(_lava_shape(dst, cl.n_out)) if dst is not None else ident.a_out)
        return ports

    def _synapse(self, lv: dict, cc: CompiledConv, l: int, src_port, shapes: list) -> list:
        """Build layer l's connection processes (one per weight block: a second block of rounding residuals is a
        second process of the same kind and geometry, and Lava sums both into the population's input); returns
        their output ports, reshaped to the population's Lava shape."""
        cl = cc.layers[l]
        src, dst = shapes[l], shapes[l + 1]
        mapping = lava_mapping(cl)
        dst_shape = _lava_shape(dst, cl.n_out)
        if self.fixed:     # (IR-layout integers or mantissas, exponent) per block
            blocks = [(cl.weights, cl.weight_exp)] + ([(cl.fine_weights, cl.fine_exp)] if cl.blocks == 2 else [])
        else:
            blocks = [(cl.weights_float, 0)]
        if mapping == "Dense" and self.fixed and cl.fan_in_groups > 1:
            return self._relayed(lv, cl, blocks, src_port, src, dst)
        ports = []
        for m, e in blocks:
            if mapping == "Conv":       # Lava's Conv ignores weight_exp: it gets the effective integers
                w = (np.asarray(m, np.int64) << e if e >= 0 else np.asarray(m, np.int64) >> -e) if self.fixed else m
                kernel, padding, stride = lava_conv_weights(np.asarray(w), cl)
                proc = lv["Conv"](weight=kernel.astype(np.int32) if self.fixed else kernel.astype(np.float64),
                                  input_shape=_lava_shape(src, cl.n_in), padding=padding, stride=stride)
                src_port.connect(proc.s_in)
                ports.append(proc.a_out)
                continue
            if mapping == "Sparse":
                mat = conv_transpose_matrix(np.asarray(m), cl)
                kw = dict(weight_exp=int(e), num_weight_bits=int(cl.num_weight_bits),
                          sign_mode=lv["SignMode"].MIXED) if self.fixed else {}
                proc = lv["Sparse"](weights=mat.astype(np.int32) if self.fixed else mat.astype(np.float64), **kw)
            else:
                mat = lava_dense_weights(m, src, dst)
                if self.fixed:
                    proc = lv["Dense"](weights=np.ascontiguousarray(mat, dtype=np.int32), weight_exp=int(e),
                                       num_weight_bits=int(cl.num_weight_bits), sign_mode=lv["SignMode"].MIXED)
                else:
                    proc = lv["Dense"](weights=np.ascontiguousarray(mat, dtype=np.float64))
            (src_port.flatten() if src is not None else src_port).connect(proc.s_in)
            ports.append(proc.a_out.reshape(dst_shape) if dst is not None else proc.a_out)
        return ports

    def _build(self, lv: dict, cc: CompiledConv, x: np.ndarray):
        K, T, _ = x.shape
        L = len(cc.layers)
        W = T + L + self._relays(cc, L - 1)
        shapes = lava_shapes(cc)
        data = np.zeros((cc.n_in, K * W))
        for k in range(K):
            data[:, k * W:k * W + T] = x[k].T
        if shapes[0] is not None:
            data = to_lava_map(data.T, shapes[0]).transpose(1, 2, 3, 0)    # (W, H, C, K W)
        src = lv["RingBuffer"](data=np.ascontiguousarray(data, dtype=np.int32 if self.fixed else np.float64))
        port, sinks = src.s_out, []
        for l, cl in enumerate(cc.layers):
            a_outs = self._synapse(lv, cc, l, port, shapes)
            lag = 2 + l + self._relays(cc, l)       # Lava steps from an input column to this population's answer
            shape = _lava_shape(shapes[l + 1], cl.n_out)
            if cl.population == "readout":
                scale = lava_scale_per_neuron(cl.scale, shapes[l + 1]).reshape(shape) if self.fixed else 1.0
                sink = lv["ReadoutSink"](shape=shape, window=W, steps=T, phase=T - 1 + lag, reset=lag, leak=cl.leak,
                                         scale=scale)
                for a_out in a_outs:
                    a_out.connect(sink.a_in)
            else:
                if self.fixed:
                    vth = lava_scale_per_neuron(cl.vth, shapes[l + 1]).reshape(shape).astype(np.int32)
                    lif = lv["LIFReset"](shape=shape, du=int(cl.du), dv=int(cl.dv),
                                         vth=int(vth.flat[0]) if np.all(vth == vth.flat[0]) else vth,
                                         reset_interval=W, reset_offset=lag)
                else:
                    lif = lv["LIFReset"](shape=shape, du=float(cl.du_float), dv=float(cl.dv_float),
                                         vth=float(cl.vth_float), reset_interval=W, reset_offset=lag)
                for a_out in a_outs:
                    a_out.connect(lif.a_in)
                sink = lv["WindowSink"](shape=shape, window=W, steps=T, phase=T - 1 + lag)
                lif.s_out.connect(sink.s_in)
                port = lif.s_out
            sink.report.flag_external_pipe(buffer_size=max(1, min(K, 64)))
            sinks.append(sink)
        return src, sinks, K * W, shapes

    def _run_chunk(self, cc: CompiledConv, x: np.ndarray) -> tuple[list[np.ndarray], list]:
        lv = _import_lava()
        K, T, _ = x.shape
        entry, sinks, n_steps, shapes = self._build(lv, cc, x)
        timeout = self.timeout_s if self.timeout_s is not None else 120.0 + 0.2 * n_steps
        cfg = lv["Loihi2SimCfg"](select_tag="fixed_pt" if self.fixed else "floating_pt")
        out = [np.zeros((K, T, cl.n_out), dtype=np.uint8) for cl in cc.layers]
        pots = [np.zeros((K, T, cl.n_out)) if cl.population == "readout" else None for cl in cc.layers]

        def keep(l: int, k: int, rep: np.ndarray) -> None:   # one (T, *shape) report per population and sample
            flat = rep.reshape(T, -1) if shapes[l + 1] is None else from_lava_map(rep, shapes[l + 1])
            if pots[l] is not None:
                pots[l][k] = flat
            else:
                out[l][k] = flat != 0

        run_and_receive(self.name, entry, lv["RunSteps"](num_steps=n_steps, blocking=False), cfg,
                        lambda: [sink.report.external_pipe_csp_recv_port for sink in sinks], K, n_steps, timeout,
                        keep, "compiled conv graph (docs/conv-deploy.md)")
        return out, pots


__all__ = ["LavaConvTarget"]
