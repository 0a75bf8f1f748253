"""Stopping ``snnc`` from outside: SIGTERM is handled like Ctrl-C (Lava runs stopped, exit code 143), and after
SIGKILL of ``snnc`` the Lava processes it forked die too (PR_SET_PDEATHSIG). Real Lava runs, no mocks.

Each ``snnc`` runs in its own session, so every process it left behind is found by session id (/proc, no psutil),
even after it was re-parented; whatever a failing test leaves is killed by pid at the end.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from procs import proc_table

ROOT = Path(__file__).resolve().parents[1]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and prctl (Linux)")


def _children(pid: int) -> list[int]:
    return [p for p, ppid, _, state in proc_table() if ppid == pid and state != "Z"]


def _in_session(sid: int) -> list[int]:
    return [p for p, _, s, state in proc_table() if s == sid and state != "Z"]


@pytest.fixture(scope="module")
def compiled_path(tmp_path_factory) -> Path:
    """A 784-8-784 network compiled by the real compiler: a Lava run of the bundled MNIST takes many seconds."""
    from models.network import AlphaLayer, TemporalNetwork
    from toolchain.compiled_io import save_compiled
    from toolchain.compiler import compile_network

    rng = np.random.default_rng(0)
    layers = (AlphaLayer(rng.normal(0.05, 0.1, (8, 784)), np.array([0.1]), rng.normal(0.5, 0.1, (8, 1))),
              AlphaLayer(rng.normal(0.4, 0.5, (784, 8)), np.array([0.9]), rng.normal(0.5, 0.1, (784, 1))))
    path = tmp_path_factory.mktemp("signals") / "net.compiled.npz"
    save_compiled(compile_network(TemporalNetwork(layers, tau=2.0, theta=1.0, latency=1.0), steps_per_unit=8), path)
    return path


def _start_verify(compiled: Path, out: Path) -> tuple[subprocess.Popen, Path]:
    """`snnc verify --targets lava-fixed` in its own session; returns once its Lava processes are stepping."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    env.pop("SNNC_DATA", None)                          # the bundled subset
    err = out.parent / "stderr.txt"
    with open(err, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "toolchain.cli", "verify", str(compiled), "--targets",
                                 "lava-fixed", "--dataset", "mnist", "--limit", "1000", "--out", str(out)],
                                stdout=subprocess.DEVNULL, stderr=f, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True, cwd=str(out.parent))
    deadline = time.monotonic() + 120                   # imports + Lava compilation on a busy 2-core machine
    while len(_children(proc.pid)) < 8:
        if proc.poll() is not None or time.monotonic() > deadline:
            _kill_session(proc)
            pytest.fail(f"snnc verify did not start its Lava processes (rc {proc.poll()}): "
                        f"{err.read_text()[-2000:]}")
        time.sleep(0.05)
    time.sleep(1.0)                                     # the run is stepping now
    return proc, err


def _kill_session(proc: subprocess.Popen) -> None:
    """Clean up after a failed test: SIGKILL every process of the session, by pid."""
    for pid in _in_session(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _session_empties_within(sid: int, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    left = _in_session(sid)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _in_session(sid)
    return left


@linux_only
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_stopping_snnc_verify_leaves_no_lava_process(compiled_path, tmp_path, sig):
    proc, err = _start_verify(compiled_path, tmp_path / "report")
    sid = proc.pid
    lava = _children(proc.pid)
    try:
        os.kill(proc.pid, sig)
        rc = proc.wait(timeout=60)
        left = _session_empties_within(sid, 10)
        assert not left, f"{len(left)} of the {len(lava)} processes of snnc verify outlived it: {left}"
        if sig == signal.SIGTERM:
            assert rc == 143, err.read_text()[-2000:]
            assert "snnc: terminated (SIGTERM)" in err.read_text()
            assert "Traceback" not in err.read_text()
        else:
            assert rc == -signal.SIGKILL
        assert not (tmp_path / "report" / "report.json").exists()    # nothing half-written
    finally:
        _kill_session(proc)


@linux_only
def test_only_forks_of_an_active_lava_run_are_tied_to_their_parent():
    """Inside ``_CHILDREN.active()`` a fork asks for SIGKILL at its parent's death; outside it does not."""
    import ctypes

    from targets.lava import _CHILDREN

    PR_GET_PDEATHSIG = 2

    def child_pdeathsig() -> int:
        pid = os.fork()
        if pid == 0:                                   # child: report the parent-death signal as exit code
            value = ctypes.c_int(-1)
            ctypes.CDLL(None, use_errno=True).prctl(PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0)
            os._exit(value.value)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    assert child_pdeathsig() == 0
    with _CHILDREN.active():
        assert child_pdeathsig() == signal.SIGKILL
        with _CHILDREN.active():                       # nested (several chunks) is fine
            assert child_pdeathsig() == signal.SIGKILL
        assert child_pdeathsig() == signal.SIGKILL
    assert child_pdeathsig() == 0


def test_cli_restores_the_sigterm_handler():
    """``main`` handles SIGTERM only while its command runs (callers' handlers are left as they were)."""
    from toolchain.cli import main

    before = signal.getsignal(signal.SIGTERM)
    assert main(["device", "serve", "--host", "10.1.2.3", "--port", "0"]) == 2
    assert signal.getsignal(signal.SIGTERM) is before
