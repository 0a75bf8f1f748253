"""Bit-accurate emulation of a CompiledSteps (Dense -> LIF chain) as ``lava-fixed`` runs it on Lava 0.10's stock
``PyDenseModelBitAcc`` and ``PyLifResetModelBitAcc`` (toolchain/compiled_steps.py states the integer equations).

A numba kernel, layer by layer, samples split over threads (GIL-free); synaptic sums are event-driven (only the
inputs that spiked in a step are added), u and v follow Lava's integer code. Results are aligned to the float
model (toolchain/lif_reference.py): the Dense delay and the source step are not simulated, since they only shift
each layer's train by a constant number of steps (targets/lava_lif.py shifts Lava's results back by the same
amount).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from hw_sim.emulator import default_threads
from toolchain.compiled_steps import CompiledSteps, validate_compiled_steps
from toolchain.errors import ArtifactError, TargetError
from toolchain.quantize import A_IN_MAX, DECAY_BITS, DECAY_UNITY, STATE_SHIFT, UV_MAX, effective_weights


def compiled_steps_of(net, inputs, target: str) -> CompiledSteps:
    """``net`` itself when it is a valid CompiledSteps; a steps Graph compiled with compile_graph's defaults for
    the inputs' number of steps; TargetError naming the problem otherwise."""
    from toolchain.ir import Graph

    if isinstance(net, Graph):
        from toolchain.errors import CompileError
        from toolchain.steps_compiler import compile_graph

        shape = np.shape(inputs)
        if len(shape) != 3:
            raise TargetError(f"{target}: input spike trains must have shape (samples, steps, channels), got "
                              f"{shape}; fix: pass one (steps, channels) 0/1 array per sample")
        try:
            return compile_graph(net, int(shape[1]))
        except CompileError as exc:
            raise TargetError(f"{target}: {exc}") from None
    try:
        return validate_compiled_steps(net, f"{target} input")
    except ArtifactError as exc:
        raise TargetError(str(exc)) from None


def check_steps_input(cs: CompiledSteps, spikes_in: np.ndarray, target: str) -> np.ndarray:
    """(N, T, n_in) 0/1 spike trains with 1 <= T <= cs.max_steps -> uint8; TargetError naming the problem."""
    x = np.asarray(spikes_in)
    if x.ndim != 3 or x.shape[2] != cs.n_in or x.shape[0] < 1 or x.shape[1] < 1:
        raise TargetError(f"{target}: input spike trains must have shape (samples, steps, {cs.n_in}), got "
                          f"{x.shape}; fix: pass one (steps, {cs.n_in}) 0/1 array per sample")
    if x.dtype.kind not in "biuf" or not np.all((x == 0) | (x == 1)):
        raise TargetError(f"{target}: input spike trains must hold only 0 and 1; fix: encode the inputs as spike "
                          "trains (one spike per channel and step at most)")
    if x.shape[1] > cs.max_steps:
        raise TargetError(f"{target}: samples have {x.shape[1]} steps but the network was compiled (and its ranges "
                          f"checked) for at most {cs.max_steps}; fix: recompile with max_steps={x.shape[1]}")
    return x.astype(np.uint8)


_LIM = UV_MAX + 1  # Lava's max_uv_val = 2**23
_A_MAX = A_IN_MAX  # 16-bit synaptic input (hardware; Lava's simulation does not limit it)
RANGE_EVENTS = ("a_in_over_16bit", "u_wrapped", "v_saturated_low", "v_saturated_high")


@numba.njit(cache=True, nogil=True)
def _lif_layer(src, w_t, dv, thr, lo, hi, out, ev):  # pragma: no cover  (compiled)
    """Samples lo .. hi - 1 of one layer: src (N, T, n_in) uint8, w_t (n_in, n_out) int64 effective weights,
    dv 12-bit decay, thr (n_out,) = vth << 6; writes out (N, T, n_out) uint8 and adds to ev (N, 4) int64 the
    range events of each sample (neuron-steps): |a_in| beyond 16 bits, u wrapped, v saturated low, v saturated
    high. Event-driven sums (only active inputs)."""
    n_in, n_out = w_t.shape
    t_steps = src.shape[1]
    a = np.zeros(n_out, np.int64)
    v = np.zeros(n_out, np.int64)
    keep = DECAY_UNITY - dv
    for k in range(lo, hi):
        v[:] = 0
        for t in range(t_steps):
            a[:] = 0
            for i in range(n_in):
                if src[k, t, i]:
                    for j in range(n_out):
                        a[j] += w_t[i, j]
            for j in range(n_out):
                if a[j] > _A_MAX or a[j] < -_A_MAX:
                    ev[k, 0] += 1
                u = a[j] << STATE_SHIFT                  # du = 4095: u is this step's input
                if u > _LIM:                             # 24-bit wrap, as Lava does it
                    u -= 2 * _LIM
                    ev[k, 1] += 1
                elif u <= -_LIM:
                    u += 2 * _LIM
                    ev[k, 1] += 1
                x = v[j] * keep                          # trunc0(v (4096 - dv) / 4096)
                d = (x >> DECAY_BITS) if x >= 0 else -((-x) >> DECAY_BITS)
                vv = d + u
                if vv < -_LIM + 1:
                    vv = -_LIM + 1
                    ev[k, 2] += 1
                elif vv > _LIM - 1:
                    vv = _LIM - 1
                    ev[k, 3] += 1
                if vv > thr[j]:
                    out[k, t, j] = 1
                    vv = 0
                v[j] = vv


def run_lif_fixed(cs: CompiledSteps, spikes_in: np.ndarray, threads: int | None = None) -> list[np.ndarray]:
    """Spike trains [(N, T, n) uint8] of every layer, aligned to the float model's steps (cs: a CompiledSteps,
    or a steps Graph compiled here with compile_graph's defaults for the inputs' T). Samples run on
    ``threads`` threads (default: hw_sim.emulator.default_threads(), i.e. $SNNC_THREADS or the usable CPUs)."""
    return run_lif_fixed_events(cs, spikes_in, threads)[0]


def run_lif_fixed_events(cs: CompiledSteps, spikes_in: np.ndarray,
                         threads: int | None = None) -> tuple[list[np.ndarray], list[dict[str, int]]]:
    """:func:`run_lif_fixed` plus, per layer, the range events counted in neuron-steps (``RANGE_EVENTS``):
    synaptic inputs beyond 16 bits, wrapped currents u, voltages saturated low / high. A worst-case compiled
    network has none but saturation high (harmless: only in a step that spikes); a calibrated one has them when
    an input exceeds what the calibration saw (lava-fixed does the same arithmetic, so spikes still match it)."""
    cs = compiled_steps_of(cs, spikes_in, "hw_sim")
    x = np.ascontiguousarray(check_steps_input(cs, spikes_in, "hw_sim"))
    n, t_steps = x.shape[:2]
    n_threads = max(1, min(int(threads or default_threads()), n))
    bounds = np.linspace(0, n, n_threads + 1).astype(np.int64)
    src, out, events = x, [], []
    for cl in cs.layers:
        w_t = np.ascontiguousarray(effective_weights(cl.weights, cl.weight_exp).T)
        s_out = np.zeros((n, t_steps, cl.n_out), dtype=np.uint8)
        thr = np.ascontiguousarray(cl.vth, dtype=np.int64) << STATE_SHIFT
        ev = np.zeros((n, len(RANGE_EVENTS)), dtype=np.int64)
        args = [(src, w_t, np.int64(cl.dv), thr, np.int64(lo), np.int64(hi), s_out, ev)
                for lo, hi in zip(bounds[:-1], bounds[1:])]
        if n_threads == 1:
            _lif_layer(*args[0])
        else:
            with ThreadPoolExecutor(max_workers=n_threads) as pool:
                list(pool.map(lambda a: _lif_layer(*a), args))
        out.append(s_out)
        events.append({key: int(c) for key, c in zip(RANGE_EVENTS, ev.sum(axis=0))})
        src = s_out
    return out, events
