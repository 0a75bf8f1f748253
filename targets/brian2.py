"""``brian2``: the continuous-time alpha-synapse ODE, integrated exactly by Brian2 2.9.0 on its own dt grid.

Runs the compiled network's float source model (``net.source``), not the integer mapping: it is an independent
simulator of the same equations as ``exact``. One model time unit = 1 s of Brian2 time:

    dv/dt = -tau v + I          (dimensionless)
    dI/dt = -tau I              (Hz)
    spike when v > theta and the neuron has not spiked yet; reset: spiked = True (once-spiking)
    synapse: on_pre I += w      (w in Hz, i.e. per time unit)

so one input of weight w at t_i gives v = w (t - t_i) exp(-tau (t - t_i)), the alpha kernel of models/exact.py.
``method='exact'`` integrates the linear system without discretisation error. Brian2 delivers spikes only at grid
points; by default (``substep=True``) the grid costs almost nothing: an input at t_i is delivered at the next grid
point t_k = k dt with the state it would have had, I += w exp(-tau eps), v += w eps exp(-tau eps), eps = t_k - t_i
(exact for this linear system), and a recorded spike at grid point t_k is moved back to the crossing estimated
from the state there, delta = (v - theta) / (dv/dt) (linear extrapolation, error O(delta^2)); the same delta
sub-steps the spike's delivery to the next layer. ``substep=False`` gives plain Brian2 (inputs rounded to the grid,
spikes at grid points) with optional centring (docs/verifier.md). Samples run as block-diagonal copies of every group, ``chunk`` samples per Brian2 Network;
a fresh Network per chunk. Pulses are one extra SpikeGeneratorGroup per layer shared by all copies.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from targets.base import RunResult
from toolchain.compiled import CompiledNetwork
from toolchain.errors import TargetError

DEFAULT_DT = 1e-3  # time units
DEFAULT_MAX_SYNAPSES = 3_000_000  # per chunk (memory: ~100 bytes per synapse in Brian2)
CODEGEN_CHOICES = ("auto", "cython", "numpy")

_EQS = """
dv/dt = -tau * v + I : 1
dI/dt = -tau * I : Hz
spiked : boolean
tau : Hz (shared, constant)
theta : 1 (shared, constant)
"""


def cython_available() -> bool:
    """True when Cython and a C compiler are present (Brian2's cython target can build extensions)."""
    try:
        import Cython  # noqa: F401
    except ImportError:
        return False
    return any(shutil.which(cc) for cc in (os.environ.get("CC", ""), "cc", "gcc", "clang") if cc)


def default_cache_dir() -> Path:
    """Writable folder for Brian2's compiled Cython extensions ($SNNC_CACHE, else ~/.cache/snnc, else /tmp)."""
    base = os.environ.get("SNNC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "snnc")
    path = Path(base) / "brian2_cython"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_probe"
        probe.write_bytes(b"")
        probe.unlink()
        return path
    except OSError:
        path = Path(tempfile.gettempdir()) / f"snnc-brian2-cython-{os.getuid()}"
        path.mkdir(parents=True, exist_ok=True)
        return path


@contextlib.contextmanager
def _brian2_prefs(codegen: str, cache_dir: Path | None) -> Iterator[None]:
    """Set Brian2's (global) code generation prefs for one run and restore them afterwards."""
    from brian2 import prefs

    saved = {k: prefs[k] for k in ("codegen.target", "codegen.runtime.cython.cache_dir")}
    try:
        prefs["codegen.target"] = codegen
        if cache_dir is not None:
            prefs["codegen.runtime.cython.cache_dir"] = str(cache_dir)
        yield
    finally:
        for k, v in saved.items():
            prefs[k] = v


class Brian2Target:
    """Brian2 simulation of the source float model.

    dt:            integration step, time units (= seconds of Brian2 time); default 1e-3
    codegen:       "auto" (cython when Cython and a C compiler are available, else numpy; falls back to numpy
                   if the Cython build fails), "cython" or "numpy"
    duration:      simulated time per sample, time units; default: the compiled window (window / S)
    max_synapses:  synapses per Brian2 Network; sets how many samples run together as block-diagonal copies
    cache_dir:     where Cython extensions are cached (default: see :func:`default_cache_dir`)
    substep:       deliver inputs, pulses and spikes with their sub-dt timing and report interpolated crossing
                   times (default True; see the module doc). False: plain grid behaviour, then ``centre`` applies.
    centre:        (substep=False only) remove the grid's systematic latency (default True). Brian2 records a spike at the first grid
                   point after the crossing, on average dt/2 late, and that lag adds up over layers. With
                   centring, layer l's pulses are fed l dt/2 late (so they keep their timing relative to the
                   layer's lagging inputs) and layer l's recorded spikes are reported (l + 1) dt/2 earlier.
                   With centre=False the raw Brian2 spike times are returned.
    """

    name = "brian2"

    def __init__(
        self,
        dt: float = DEFAULT_DT,
        codegen: str = "auto",
        duration: float | None = None,
        max_synapses: int = DEFAULT_MAX_SYNAPSES,
        cache_dir: str | os.PathLike | None = None,
        centre: bool = True,
        substep: bool = True,
    ) -> None:
        dt = float(dt)
        if not np.isfinite(dt) or not (1e-7 <= dt <= 0.1):
            raise TargetError(f"brian2 dt={dt} time units is out of range; use a value in [1e-7, 0.1] (default 1e-3)")
        if codegen not in CODEGEN_CHOICES:
            raise TargetError(f"unknown brian2 codegen {codegen!r}; choose one of {', '.join(CODEGEN_CHOICES)}")
        if codegen == "cython" and not cython_available():
            raise TargetError("brian2 codegen 'cython' needs Cython and a C compiler (cc/gcc); use codegen='numpy'")
        if duration is not None and not (np.isfinite(duration) and duration > 0):
            raise TargetError(f"brian2 duration={duration} must be a positive number of time units")
        if int(max_synapses) < 1:
            raise TargetError(f"brian2 max_synapses={max_synapses} must be >= 1")
        self.dt = dt
        self._auto = codegen == "auto"
        self.codegen = ("cython" if cython_available() else "numpy") if self._auto else codegen
        self.duration = None if duration is None else float(duration)
        self.max_synapses = int(max_synapses)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.centre = bool(centre)
        self.substep = bool(substep)

    def _lag(self, l: int) -> float:
        """Mean grid latency of layer l's inputs (time units): l dt/2 when centring, else 0."""
        return 0.5 * l * self.dt if self.centre and not self.substep else 0.0

    def chunk_size(self, net: CompiledNetwork) -> int:
        """Samples per Brian2 Network (block-diagonal copies) under the synapse budget."""
        per_sample = sum(int(np.count_nonzero(l.weights)) for l in net.source.layers)
        per_sample += sum(int(np.count_nonzero(l.pulse_weights)) for l in net.source.layers)
        return max(1, self.max_synapses // max(per_sample, 1))

    def run(self, net: CompiledNetwork, input_times: np.ndarray) -> RunResult:
        x = np.asarray(input_times, dtype=np.float64)
        src = net.source
        if x.ndim != 2 or x.shape[1] != src.layers[0].n_in:
            raise TargetError(f"input_times must have shape (N, {src.layers[0].n_in}), got {x.shape}")
        if np.any(np.isnan(x)) or np.any(x[np.isfinite(x)] < 0):
            raise TargetError("input_times must be >= 0 time units, inf for 'no spike' (found NaN or negative)")
        duration = self.duration if self.duration is not None else net.window / net.steps_per_unit
        cache_dir = self.cache_dir
        if self.codegen == "cython" and cache_dir is None:
            cache_dir = default_cache_dir()
        t0 = time.perf_counter()
        chunk = self.chunk_size(net)
        codegen, fallback = self.codegen, None
        try:
            outs = self._run_all(net, x, duration, chunk, codegen, cache_dir)
        except TargetError as exc:
            if not (self._auto and codegen == "cython"):
                raise
            # "auto": a broken C toolchain (headers, permissions) must not stop the run; numpy gives the same times
            codegen, fallback = "numpy", str(exc.__cause__ or exc)[:300]
            outs = self._run_all(net, x, duration, chunk, codegen, None)
        times = [
            np.concatenate(o, axis=0) if o else np.zeros((0, layer.n_out)) for o, layer in zip(outs, src.layers)
        ]
        import brian2

        info = {
            "dt": self.dt,
            "codegen": codegen,
            "centre": self.centre,
            "substep": self.substep,
            "duration": duration,
            "chunk": chunk,
            "brian2": brian2.__version__,
            "time_unit": "1 model time unit = 1 s of Brian2 time",
        }
        if codegen == "cython" and cache_dir is not None:
            info["cache_dir"] = str(cache_dir)
        if fallback:
            info["codegen_fallback"] = f"cython failed, ran numpy: {fallback}"
        return RunResult(self.name, times, None, time.perf_counter() - t0, info)

    def _run_all(self, net: CompiledNetwork, x: np.ndarray, duration: float, chunk: int, codegen: str,
                 cache_dir: Path | None) -> list[list[np.ndarray]]:
        outs: list[list[np.ndarray]] = [[] for _ in net.source.layers]
        with _brian2_prefs(codegen, cache_dir):
            for start in range(0, x.shape[0], chunk):
                for l, t in enumerate(self._run_chunk(net, x[start : start + chunk], duration)):
                    outs[l].append(t)
        return outs

    def _run_chunk(self, net: CompiledNetwork, x: np.ndarray, duration: float) -> list[np.ndarray]:
        """One fresh Brian2 Network for B = len(x) samples; first-spike times per layer, (B, n_l)."""
        import brian2 as b2

        src = net.source
        bsz = x.shape[0]
        dt = self.dt
        # SpikeGeneratorGroup floors times to the grid: +dt/2 makes it round to the nearest grid point (plain mode);
        # with substep, every spike goes to the next grid point at or after it and carries eps = t_grid - t.
        half = 0.5 * dt
        clock = b2.Clock(dt=dt * b2.second, name="snnc_clock")
        objs: list = []
        b_idx, k_idx = np.nonzero(np.isfinite(x))
        t_in, eps_in = self._grid(x[b_idx, k_idx])
        eps = np.zeros(bsz * src.layers[0].n_in)
        eps[b_idx * src.layers[0].n_in + k_idx] = eps_in
        inp = b2.SpikeGeneratorGroup(
            bsz * src.layers[0].n_in,
            (b_idx * src.layers[0].n_in + k_idx).astype(np.int64),
            t_in * b2.second,
            clock=clock,
            name="snnc_input",
        )
        objs.append(inp)
        prev, prev_n = inp, src.layers[0].n_in
        monitors = []
        for l, layer in enumerate(src.layers):
            grp = b2.NeuronGroup(
                bsz * layer.n_out,
                _EQS,
                threshold="v > theta and not spiked",
                reset="spiked = True",
                method="exact",
                clock=clock,
                name=f"snnc_layer{l}",
            )
            grp.tau = src.tau * b2.Hz
            grp.theta = src.theta
            objs.append(grp)
            objs.append(self._connect(prev, grp, layer.weights, bsz, prev_n, clock, f"snnc_syn{l}",
                                      eps=eps if l == 0 else None))
            if layer.n_pulses:
                t_p, eps_p = self._grid(layer.pulse_times + self._lag(l))
                pulses = b2.SpikeGeneratorGroup(
                    layer.n_pulses,
                    np.arange(layer.n_pulses),
                    t_p * b2.second,
                    clock=clock,
                    name=f"snnc_pulses{l}",
                )
                objs.append(pulses)
                objs.append(self._connect(pulses, grp, layer.pulse_weights, bsz, 0, clock, f"snnc_psyn{l}",
                                          eps=eps_p))
            mon = b2.SpikeMonitor(grp, variables=["v", "I"] if self.substep else [], name=f"snnc_mon{l}")
            objs.append(mon)
            monitors.append((mon, layer.n_out))
            prev, prev_n = grp, layer.n_out
        network = b2.Network(*objs)
        try:
            network.run(duration * b2.second, namespace={})
        except Exception as exc:  # Brian2 raises BrianObjectException etc.; surface as a target failure
            raise TargetError(f"Brian2 run failed ({type(exc).__name__}: {exc}); try codegen='numpy'") from exc
        out = []
        for l, (mon, n) in enumerate(monitors):
            t = np.full((bsz, n), np.inf)
            idx = np.asarray(mon.i[:], dtype=np.int64)
            ts = np.asarray(mon.t_[:], dtype=np.float64)
            # once-spiking: at most one spike per neuron; keep the earliest defensively
            if self.substep and ts.size:  # back to the crossing: delta = (v - theta) / (dv/dt), within one dt
                v, i_ = np.asarray(mon.v[:], np.float64), np.asarray(mon.I_[:], np.float64)
                ts = ts - _crossing_delta(v, i_, src.tau, src.theta, dt)
            order = np.argsort(ts, kind="stable")[::-1]
            t.reshape(-1)[idx[order]] = ts[order]
            out.append(t - self._lag(l + 1))
        return out

    def _grid(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Spike times -> (times to give SpikeGeneratorGroup, eps = delivery grid point - t, time units)."""
        dt = self.dt
        if not self.substep:
            return t + 0.5 * dt, np.zeros_like(t)
        k = np.maximum(np.ceil(t / dt - 1e-9), 0.0)
        return (k + 0.5) * dt, np.clip(k * dt - t, 0.0, dt)  # +dt/2: Brian2 floors, this lands on k exactly

    def _connect(self, pre, post, weights: np.ndarray, bsz: int, n_pre_per_sample: int, clock, name: str,
                 eps: np.ndarray | None = None):
        """Block-diagonal Synapses: copy b of pre (or the shared pre when n_pre_per_sample == 0) -> copy b of post.

        With substep: a spike generator's spike carries its eps (per source neuron) in per-synapse weights
        ``we = w exp(-tau eps)``, ``wv = w eps exp(-tau eps)``; a neuron group's spike is sub-stepped on the fly by
        the crossing delta estimated from the presynaptic state."""
        import brian2 as b2

        n_out = weights.shape[0]
        jj, kk = np.nonzero(weights)
        w = weights[jj, kk]
        if not self.substep:
            syn = b2.Synapses(pre, post, "w : Hz", on_pre="I_post += w", clock=clock, name=name)
        elif eps is not None:
            syn = b2.Synapses(pre, post, "we : Hz\nwv : 1", on_pre="I_post += we\nv_post += wv", clock=clock,
                              name=name)
        else:
            syn = b2.Synapses(pre, post, "w : Hz", on_pre=_ON_PRE_INTERPOLATED, clock=clock, name=name)
        if jj.size == 0:
            return syn
        b = np.repeat(np.arange(bsz, dtype=np.int64), jj.size)
        i = np.tile(kk.astype(np.int64), bsz) + b * n_pre_per_sample
        j = np.tile(jj.astype(np.int64), bsz) + b * n_out
        syn.connect(i=i, j=j)
        w_all = np.tile(w, bsz)
        if self.substep and eps is not None:
            decay = np.exp(-float(np.asarray(post.tau_[:]).ravel()[0]) * eps[i])
            syn.we = w_all * decay * b2.Hz
            syn.wv = w_all * eps[i] * decay
        else:
            syn.w = w_all * b2.Hz
        return syn


# a spike of a neuron group, delivered at grid point t_k, happened delta = (v - theta) / (dv/dt) earlier
_ON_PRE_INTERPOLATED = """
delta = clip((v_pre - theta_pre) / (abs(I_pre - tau_pre * v_pre) + 1e-12 * Hz), 0 * second, dt)
I_post += w * exp(-tau_post * delta)
v_post += w * delta * exp(-tau_post * delta)
"""


def _crossing_delta(v: np.ndarray, current: np.ndarray, tau: float, theta: float, dt: float) -> np.ndarray:
    """Time since the threshold crossing for spikes recorded with state (v, I), clipped to [0, dt]."""
    slope = np.abs(current - tau * v) + 1e-12
    return np.clip((v - theta) / slope, 0.0, dt)
