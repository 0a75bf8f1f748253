"""``lava-float`` / ``lava-fixed``: run a CompiledNetwork on Lava 0.10.0 (Loihi2SimCfg floating_pt / fixed_pt).

Layout (docs/compiled-format.md, section 4): K samples per Lava run, each in its own window of W steps;
RingBuffer sources for inputs (+ layer 0 pulses) and for the pulses of deeper layers, stock ``Dense`` synapses,
``targets.lava_procs.OnceLIF`` neurons (LIFReset + once mask) whose per-window report (first-spike columns and
spike counts) reaches this process through an external pipe: K messages per layer and run, no per-step sink.
Every run is stopped in ``finally`` (errors, timeouts, Ctrl-C, and SIGTERM under the ``snnc`` CLI, which raises
it like Ctrl-C); a run that exceeds ``timeout_s`` raises TargetError after its OS processes are terminated. On
Linux the OS processes a run forks are also tied to this process with ``PR_SET_PDEATHSIG``: if it dies without
cleaning up (SIGKILL, a crash), the kernel kills them too, so no Lava process outlives its parent.
"""
from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.process
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from targets.base import RunResult
from targets.grid_contract import check_grid_network, grid_input_columns
from toolchain.compiled import CompiledNetwork
from toolchain.errors import TargetError

DEFAULT_CHUNK = 100  # samples per Lava run
_POLL_S = 1e-3
_ALIVE_CHECK_S = 0.5
_STOP_TIMEOUT_S = 30.0


class _ChildrenDieWithParent:
    """While :meth:`active` (entered by the thread that starts a Lava run), every process that thread forks asks
    the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)``, Linux only; a no-op
    elsewhere). Lava 0.10.0 forks one OS process per ProcessModel plus a shared-memory manager, none of which
    would notice a parent killed by SIGKILL.

    ``os.register_at_fork`` cannot be undone, so the hook is registered once per interpreter (the one piece of
    process-wide state here, held by the module-level instance below) and does nothing unless the forking thread
    is inside :meth:`active`; processes forked by other threads, and the children's own forks, are untouched.
    """

    PR_SET_PDEATHSIG = 1

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth: dict[int, int] = {}     # thread ident -> nesting depth of active(), in process self._pid
        self._pid = os.getpid()
        self._prctl = None

    @contextlib.contextmanager
    def active(self):
        """Context in which this thread's forks die with this process."""
        if not sys.platform.startswith("linux"):
            yield
            return
        with self._lock:
            if self._prctl is None:
                self._prctl = ctypes.CDLL(None, use_errno=True).prctl
                os.register_at_fork(after_in_child=self._after_fork_in_child)
            if self._pid != os.getpid():     # we are a forked copy: forget the parent's bookkeeping
                self._pid, self._depth = os.getpid(), {}
            tid = threading.get_ident()
            self._depth[tid] = self._depth.get(tid, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._depth[tid] -= 1
                if not self._depth[tid]:
                    del self._depth[tid]

    def _after_fork_in_child(self) -> None:
        parent, forked_by_run = self._pid, threading.get_ident() in self._depth
        self._pid, self._depth = os.getpid(), {}   # this child's own forks are not tied to it
        self._lock = threading.Lock()              # another thread of the parent may have held it at the fork
        if not forked_by_run or parent == os.getpid():
            return
        self._prctl(ctypes.c_int(self.PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0),
                    ctypes.c_ulong(0), ctypes.c_ulong(0))
        if os.getppid() != parent:                 # the parent died before prctl took effect
            os._exit(1)


_CHILDREN = _ChildrenDieWithParent()


@dataclass
class _Graph:
    entry: object  # any process of the connected graph (run/stop go through it)
    lifs: list  # OnceLIF per layer; their ``report`` ports are external pipes to this process
    n_steps: int  # K W + 1: the last window's report is sent at its last update, time step K W + 1


def _import_lava():
    from targets.lava_procs import OnceLIF  # applies toolchain.lava_compat.install()

    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.source import RingBuffer
    from lava.utils.weightutils import SignMode

    return dict(RunSteps=RunSteps, Loihi2SimCfg=Loihi2SimCfg, Dense=Dense, RingBuffer=RingBuffer, SignMode=SignMode, OnceLIF=OnceLIF)


class _LavaTarget:
    name = "lava"
    fixed = False

    def __init__(self, chunk_size: int = DEFAULT_CHUNK, timeout_s: float | None = None) -> None:
        """chunk_size: samples per Lava run; timeout_s: wall-clock limit per run (default 60 s + 20 ms per step
        and layer)."""
        if int(chunk_size) < 1:
            raise TargetError(f"chunk_size={chunk_size} must be >= 1; fix: pass e.g. chunk_size={DEFAULT_CHUNK}")
        if timeout_s is not None and not timeout_s > 0:
            raise TargetError(f"timeout_s={timeout_s} must be > 0 seconds; fix: pass e.g. timeout_s=600")
        self.chunk_size = int(chunk_size)
        self.timeout_s = timeout_s

    # ---------------------------------------------------------------- public
    def run(self, net: CompiledNetwork, input_times: np.ndarray) -> RunResult:
        """First-spike times and columns of every layer for every sample (rows of input_times, time units)."""
        t0 = time.perf_counter()
        check_grid_network(net, self.name, fixed=self.fixed)
        cols = grid_input_columns(net, input_times)
        n = cols.shape[0]
        out_cols = [np.full((n, cl.n_out), -1, dtype=np.int64) for cl in net.layers]
        counts = [np.zeros((n, cl.n_out), dtype=np.int64) for cl in net.layers]
        n_runs = 0
        for start in range(0, n, self.chunk_size):
            stop = min(n, start + self.chunk_size)
            first, cnt = self._run_chunk(net, cols[start:stop])
            for l in range(len(net.layers)):
                out_cols[l][start:stop] = first[l]
                counts[l][start:stop] = cnt[l]
            n_runs += 1
        times = [net.columns_to_times(c, l) for l, c in enumerate(out_cols)]
        info = {"precision": "fixed_pt" if self.fixed else "floating_pt", "lava": "0.10.0", "runs": n_runs,
                "chunk_size": self.chunk_size, "window": net.window, "steps_per_unit": net.steps_per_unit,
                "spike_counts": counts}
        return RunResult(self.name, times, out_cols, time.perf_counter() - t0, info)

    # ---------------------------------------------------------------- helpers
    def _layer_params(self, cl):
        """OnceLIF parameters: lava-fixed gets one 17-bit threshold per neuron (``cl.vth``, shape (n_out,));
        lava-float the scalar theta of the float mapping (broadcast by OnceLIF to every neuron)."""
        if self.fixed:
            return dict(du=int(cl.du), dv=int(cl.dv), vth=cl.vth.astype(np.int32))
        return dict(du=float(cl.du_float), dv=float(cl.dv_float), vth=float(cl.vth_float))

    def _dense(self, lv, w_int: np.ndarray, w_float: np.ndarray, weight_exp: int, num_bits: int):
        if self.fixed:
            return lv["Dense"](weights=np.ascontiguousarray(w_int, dtype=np.int32), weight_exp=int(weight_exp),
                               num_weight_bits=int(num_bits), sign_mode=lv["SignMode"].MIXED)
        return lv["Dense"](weights=np.ascontiguousarray(w_float, dtype=np.float64))

    def _build(self, lv, net: CompiledNetwork, cols: np.ndarray) -> _Graph:
        K = cols.shape[0]
        W = net.window
        T = K * W
        base = (np.arange(K, dtype=np.int64) * W)[:, None]
        n_in = net.layers[0].n_in
        data0 = np.zeros((n_in, T), dtype=np.float64 if not self.fixed else np.int32)
        k_idx, i_idx = np.nonzero(cols >= 0)
        data0[i_idx, (base[:, 0][k_idx] + cols[k_idx, i_idx])] = 1
        src = lv["RingBuffer"](data=data0)
        # every layer's pulses: rows of one pulse source, each layer's through its own Dense (own weight exponent)
        pulses = [(l, int(c)) for l, cl in enumerate(net.layers) for c in cl.pulse_steps]
        psrc = None
        if pulses:
            pdata = np.zeros((len(pulses), T), dtype=data0.dtype)
            for row, (_, c) in enumerate(pulses):
                pdata[row, base[:, 0] + c] = 1
            psrc = lv["RingBuffer"](data=pdata)
        lifs = []
        prev = src
        for l, cl in enumerate(net.layers):
            lif = lv["OnceLIF"](shape=(cl.n_out,), reset_interval=W, reset_offset=2, once=bool(cl.once),
                                **self._layer_params(cl))
            dense = self._dense(lv, cl.weights, cl.weights_float, cl.weight_exp, cl.num_weight_bits)
            prev.s_out.connect(dense.s_in)
            rows = [r for r, (ll, _) in enumerate(pulses) if ll == l]
            if rows:
                pw_int = np.zeros((cl.n_out, len(pulses)), dtype=np.int32)
                pw_float = np.zeros((cl.n_out, len(pulses)))
                pw_int[:, rows] = cl.pulse_weights
                pw_float[:, rows] = cl.pulse_weights_float
                pdense = self._dense(lv, pw_int, pw_float, cl.pulse_exp, cl.num_weight_bits)
                psrc.s_out.connect(pdense.s_in)
                pdense.a_out.connect(lif.a_in)
            dense.a_out.connect(lif.a_in)
            lif.report.flag_external_pipe(buffer_size=max(1, min(K, 64)))
            lifs.append(lif)
            prev = lif
        return _Graph(entry=src, lifs=lifs, n_steps=T + 1)

    def _run_chunk(self, net: CompiledNetwork, cols: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        lv = _import_lava()
        K = cols.shape[0]
        g = self._build(lv, net, cols)
        T = g.n_steps
        timeout = self.timeout_s if self.timeout_s is not None else 60.0 + 0.02 * T * len(net.layers)
        cfg = lv["Loihi2SimCfg"](select_tag="fixed_pt" if self.fixed else "floating_pt")
        first = [np.full((K, cl.n_out), -1, dtype=np.int64) for cl in net.layers]
        counts = [np.zeros((K, cl.n_out), dtype=np.int64) for cl in net.layers]

        def keep(l: int, k: int, rep: np.ndarray) -> None:
            first[l][k] = rep[0]
            counts[l][k] = rep[1]

        run_and_receive(self.name, g.entry, lv["RunSteps"](num_steps=T, blocking=False), cfg,
                        lambda: [lif.report.external_pipe_csp_recv_port for lif in g.lifs], K, T, timeout, keep,
                        "compiled network (docs/compiled-format.md)")
        return first, counts


def run_and_receive(name: str, entry, condition, run_cfg, report_ports: Callable[[], list], n_samples: int,
                    n_steps: int, timeout: float, on_report: Callable[[int, int, np.ndarray], None],
                    what: str) -> None:
    """Run a built Lava network and hand every report to ``on_report(layer, sample, report)``: one report per
    layer and sample, in sample order, read from the pipes ``report_ports()`` gives once the run has started.

    While it waits: a deadline of ``timeout`` seconds and, when no data comes for a while, a check that every Lava
    process is alive (TargetError naming the sample). Lava's own failures become a TargetError naming ``what`` to
    check. The forked processes die with this one (PDEATHSIG); a finished run is stopped, an interrupted one
    (error, timeout, Ctrl-C, SIGTERM) has processes blocked mid-step, which stop() cannot reach: they are
    terminated."""
    deadline = time.monotonic() + timeout
    completed = False
    ports: list = []
    with _CHILDREN.active():  # its OS processes die with this one, even if this one is killed
        try:
            entry.run(condition=condition, run_cfg=run_cfg)
            ports = report_ports()
            for k in range(n_samples):
                for l, port in enumerate(ports):
                    waited = 0.0
                    while not port.probe():
                        if time.monotonic() > deadline:
                            raise TargetError(
                                f"{name}: the Lava run of {n_samples} samples ({n_steps} steps) did not finish "
                                f"within {timeout:g} s (stuck in sample {k}); fix: pass a larger timeout_s or a "
                                "smaller chunk_size, and check that no other heavy job is starving the machine")
                        time.sleep(_POLL_S)
                        waited += _POLL_S
                        if waited >= _ALIVE_CHECK_S:  # no data for a while: are all Lava processes alive?
                            waited = 0.0
                            _check_alive(name, entry, k)
                    on_report(l, k, np.asarray(port.recv()))
            entry.wait()
            completed = True
        except TargetError:
            raise
        except Exception as exc:  # Lava's own failures (compilation, runtime) as a user-facing error
            raise TargetError(f"{name}: Lava failed ({type(exc).__name__}: {exc}); fix: check the {what} and "
                              "the Lava installation (`make venv`)") from exc
        finally:
            _shutdown(entry, force=not completed)
            _close_pipes(ports)


def _close_pipes(ports) -> None:
    """Stop the receiver threads that each external pipe starts in this process (Lava's stop() does not join
    them, so every run would leak one thread per layer)."""
    for port in ports:
        try:
            port.join()
        except Exception:  # best effort: the run is over either way
            pass


def _check_alive(target: str, proc, sample: int) -> None:
    """TargetError when one of the run's OS processes has exited (a crashed ProcessModel) instead of waiting
    for the timeout."""
    actors, _, _ = _runtime_actors(proc)
    dead = [a for a in actors if not a.is_alive()]
    if dead:
        exc = getattr(dead[0], "exception", None)
        detail = f": {exc[0]!r}" if isinstance(exc, tuple) and exc else ""
        raise TargetError(f"{target}: a Lava process exited during the run (sample {sample}){detail}; fix: check the "
                          "compiled network (docs/compiled-format.md) and the Lava installation (`make venv`)")


def _runtime_actors(proc) -> tuple:
    rt = getattr(proc, "runtime", None) or getattr(proc, "_runtime", None)
    mi = getattr(rt, "_messaging_infrastructure", None)
    return list(getattr(mi, "actors", []) or []), rt, mi


def _force_kill(proc) -> None:
    """Terminate every OS process of the run (used when a run hangs or stop() does not return)."""
    actors, rt, mi = _runtime_actors(proc)
    for a in actors:
        try:
            if a.is_alive():
                a.terminate()
        except (ValueError, AssertionError, OSError):
            pass
    for a in actors:
        try:  # Lava's SystemProcess.join() takes no timeout: use the base class's
            multiprocessing.process.BaseProcess.join(a, 5)
            if a.is_alive():
                a.kill()
                multiprocessing.process.BaseProcess.join(a, 5)
        except (ValueError, AssertionError, OSError):
            pass
    for obj, meth in ((getattr(mi, "smm", None), "shutdown"), (getattr(rt, "_watchdog_manager", None), "stop")):
        try:
            if obj is not None:
                getattr(obj, meth)()
        except Exception:  # best effort: the processes are already gone
            pass
    if rt is not None:
        rt._is_started = False
        rt._is_running = False


def _shutdown(proc, force: bool) -> None:
    """stop() the run (in a helper thread with a time limit); fall back to terminating its processes."""
    if force:
        _force_kill(proc)
        return
    done = threading.Event()
    errors: list[BaseException] = []

    def _stop():
        try:
            proc.stop()
        except BaseException as exc:  # reported below, after cleanup
            errors.append(exc)
        finally:
            done.set()

    th = threading.Thread(target=_stop, daemon=True)
    th.start()
    try:
        finished = done.wait(_STOP_TIMEOUT_S)
    except KeyboardInterrupt:
        finished = False
    if not finished or errors:
        _force_kill(proc)


class LavaFloatTarget(_LavaTarget):
    """Lava ``Loihi2SimCfg(select_tag="floating_pt")``: the float mapping (du = dv = 1 - d, w h d, theta)."""

    name = "lava-float"
    fixed = False


class LavaFixedTarget(_LavaTarget):
    """Lava ``Loihi2SimCfg(select_tag="fixed_pt")``: bit-accurate integers (docs/compiled-format.md)."""

    name = "lava-fixed"
    fixed = True


__all__ = ["LavaFloatTarget", "LavaFixedTarget"]
