"""``hw_sim``: the bit-accurate emulator (hw_sim/emulator.py) behind the target interface.

Spike-for-spike identical to ``lava-fixed`` (docs/compiled-format.md), thousands of times faster, and it counts
the hardware activity (synaptic ops, neuron updates, spikes) that the energy model (hw_sim/energy.py) needs.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from hw_sim.emulator import default_threads
from targets.base import RunResult
from toolchain.compiled import CompiledNetwork
from toolchain.errors import TargetError

_FIX = "recompile the model with `snnc compile` (toolchain.compiler.compile_network)"


def check_contract(net: CompiledNetwork) -> None:
    """Reject what lava-fixed rejects (values Lava would silently clip, mask or wrap), with the same wording."""
    W = int(net.window)
    if W < 3:
        raise TargetError(f"window={W} steps is too short (>= 3 needed); fix: {_FIX}")
    for cl in net.layers:
        if cl.kind != "dense":
            raise TargetError(f"{cl.name}: layer kind {cl.kind!r} is not supported by hw_sim (only 'dense'); "
                              "fix: run this network on a target that supports it")
        if cl.pulse_steps.size and (cl.pulse_steps.min() < 0 or cl.pulse_steps.max() > W - 2):
            raise TargetError(f"{cl.name}: pulse columns {cl.pulse_steps.tolist()} must lie in [0, {W - 2}]; "
                              f"fix: {_FIX}")
        w = np.hstack([cl.weights, cl.pulse_weights])
        nwb = int(cl.num_weight_bits)
        if nwb == 8 and w.size and (w.min() < -256 or w.max() > 254 or np.any(w % 2)):
            raise TargetError(f"{cl.name}: 8-bit mixed-sign weight mantissas must be even values in [-256, 254] "
                              f"(Lava would clip/mask them), got [{w.min()}, {w.max()}]; fix: {_FIX}")
        if nwb == 9 and w.size and (w.min() < -256 or w.max() > 255):
            raise TargetError(f"{cl.name}: 9-bit mixed-sign weight mantissas must lie in [-256, 255] (Lava would "
                              f"clip them), got [{w.min()}, {w.max()}]; fix: {_FIX}")
        if nwb not in (8, 9):
            raise TargetError(f"{cl.name}: num_weight_bits={nwb} is not supported by hw_sim (8 or 9); fix: {_FIX}")
        pexp = cl.pulse_exp
        if not (0 <= cl.du <= 4095 and 0 <= cl.dv <= 4095 and 0 < cl.vth <= 131071 and 0 <= cl.weight_exp <= 7
                and 0 <= pexp <= 7):
            raise TargetError(f"{cl.name}: du={cl.du}, dv={cl.dv} (12 bit), vth={cl.vth} (17 bit), "
                              f"weight_exp={cl.weight_exp} or pulse_weight_exp={pexp} (0..7) is out of range; "
                              f"fix: {_FIX}")


def input_columns(net: CompiledNetwork, input_times: np.ndarray) -> np.ndarray:
    """Input times (N, n_in), time units, inf = no spike -> source columns, checked against the window."""
    x = np.asarray(input_times, dtype=np.float64)
    n_in = net.layers[0].n_in
    if x.ndim != 2 or x.shape[1] != n_in:
        raise TargetError(f"input_times must have shape (N, {n_in}), got {x.shape}; "
                          "fix: pass one row of spike times per sample")
    if np.isnan(x).any():
        raise TargetError("input_times contain NaN; fix: use inf for 'no spike'")
    if np.isneginf(x).any():
        raise TargetError("input_times contain -inf; fix: use inf for 'no spike' and times >= 0")
    cols = net.input_columns(x)
    bad = np.isfinite(x) & ((cols < 0) | (cols > net.window - 1))
    if bad.any():
        t = x[bad][0]
        raise TargetError(
            f"input time {t:g} maps to step column {int(np.rint(t * net.steps_per_unit))}, outside the sample "
            f"window [0, {net.window - 1}]; fix: use input times in [0, {(net.window - 1) / net.steps_per_unit:g}]"
            " or recompile with a longer window"
        )
    return cols


@numba.njit("void(int64[:, :], float64, float64, float64[:, :])", cache=True, nogil=True)  # any layout, one compile
def _times(cols, offset, S, out):
    n, m = cols.shape
    for i in range(n):
        for j in range(m):
            c = cols[i, j]
            out[i, j] = (c - 0.5 - offset) / S if c >= 0 else np.inf


def columns_to_times(net: CompiledNetwork, cols: np.ndarray, layer: int) -> np.ndarray:
    """``CompiledNetwork.columns_to_times`` for layer ``layer``: the same values, (c - 1/2 - offset) / S with the
    layer's ``time_offset_steps``, inf where c < 0, computed in parallel in one pass without temporaries (the
    mask-and-scatter version dominated hw_sim's run time on 10,000 MNIST images)."""
    c = np.asarray(cols, dtype=np.int64)
    offset = float(net.layers[layer].time_offset_steps)
    out = np.empty(c.shape, np.float64)
    if c.ndim != 2:
        raise TargetError(f"spike columns must be (samples, neurons), got shape {c.shape}")
    n_threads = min(default_threads(), max(1, c.shape[0] // 1000))
    bounds = np.linspace(0, c.shape[0], n_threads + 1).astype(int)
    S = float(net.steps_per_unit)
    if n_threads == 1:
        _times(c, offset, S, out)
    else:
        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            for f in [pool.submit(_times, c[a:b], offset, S, out[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]:
                f.result()
    return out


class HwSimTarget:
    """Bit-accurate emulation of lava-fixed; ``info`` carries spike counts and per-sample activity counters."""

    name = "hw_sim"

    def __init__(self, threads: int | None = None, strict: bool = True) -> None:
        """threads: worker threads (default $SNNC_THREADS or all usable CPUs); strict: reject networks that
        lava-fixed rejects (False: emulate Lava's clipping/masking of out-of-contract values instead)."""
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise TargetError(f"threads={threads!r} must be a positive integer; fix: pass e.g. threads=2")
        self.threads = threads
        self.strict = bool(strict)

    def run(self, net: CompiledNetwork, input_times: np.ndarray) -> RunResult:
        from hw_sim.emulator import simulate

        t0 = time.perf_counter()
        if self.strict:
            check_contract(net)
        cols = input_columns(net, input_times)
        sim = simulate(net, cols, threads=self.threads)
        times = [columns_to_times(net, c, l) for l, c in enumerate(sim.columns)]
        info = {
            "precision": "fixed_pt (bit-accurate emulation of lava-fixed)",
            "window": net.window,
            "steps_per_unit": net.steps_per_unit,
            "threads": self.threads or default_threads(),
            "spike_counts": sim.spike_counts,
            "counters": sim.counters(),
            "sim_wall_s": sim.wall_s,
        }
        return RunResult(self.name, times, sim.columns, time.perf_counter() - t0, info)


__all__ = ["HwSimTarget", "check_contract", "columns_to_times", "input_columns"]
