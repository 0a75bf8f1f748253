"""Hardware-in-the-loop suite: fixtures for every device target present.

* ``hw_sim``: hw_sim served by ``snnc device serve`` in its own process (always present);
* ``loihi2``: a real Loihi 2 through Lava's ``Loihi2HwCfg`` (needs Intel's lava-loihi and a board); skipped with
  the reason otherwise.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/compiled_factory.py


def loihi2_unavailable_reason() -> str | None:
    """Why no real Loihi 2 can be used here (None = it can)."""
    from toolchain.lava_compat import install

    install()
    from lava.utils import loihi

    if not loihi.is_installed():
        return ("lava-loihi (Intel's Loihi 2 extension of Lava, INRC members only) is not installed, so "
                "Loihi2HwCfg cannot compile for or reach a Loihi 2 board")
    if importlib.util.find_spec("targets.lava") is None:
        return "targets/lava.py is missing"
    import targets.lava as lava_target

    if not hasattr(lava_target, "LavaLoihi2Target"):
        return "lava-loihi is installed but targets/lava.py has no Loihi2HwCfg target (LavaLoihi2Target) yet"
    return None


_SKIPPED: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter):
    """Say which hardware-in-the-loop devices were tested and why any was skipped."""
    if _SKIPPED:
        for name, reason in _SKIPPED.items():
            terminalreporter.write_line(f"hil device {name!r} skipped: {reason}")


def _my_device_processes() -> list[int]:
    """Live 'snnc device serve' processes started by this test process (from /proc)."""
    import os

    tag = f"--parent-pid\0{os.getpid()}\0".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
            state = (entry / "status").read_text()
        except OSError:
            continue
        if b"device\0serve" in cmd and tag in cmd and "\nState:\tZ" not in state:
            pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="session", autouse=True)
def no_device_left_behind():
    """After the suite, no device process started by it may still run."""
    yield
    import time

    deadline = time.monotonic() + 10
    while _my_device_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _my_device_processes()
    assert not left, f"device processes left behind: {left}"


@pytest.fixture(scope="session")
def hw_sim_device():
    """One hw_sim device process shared by the suite; stopped (and reaped) at the end."""
    from targets.hil import LocalDevice

    dev = LocalDevice()
    yield dev
    dev.stop()
    assert not dev.alive


@pytest.fixture(params=["hw_sim", "loihi2"])
def device_target(request, hw_sim_device):
    """A target object for each device: a HilTarget on the shared hw_sim device, or a Loihi 2 target."""
    if request.param == "loihi2":
        reason = loihi2_unavailable_reason()
        if reason:
            _SKIPPED["loihi2"] = reason
            pytest.skip(reason)
        import targets.lava as lava_target

        yield lava_target.LavaLoihi2Target()
        return
    from targets.hil import HilTarget

    with HilTarget(host=hw_sim_device.host, port=hw_sim_device.port, batch_size=4, timeout=60) as t:
        yield t


@pytest.fixture(scope="session")
def small_net():
    """A compiled 12-6-4 network from the real compiler (toolchain/compiler.py)."""
    from models.network import AlphaLayer, TemporalNetwork
    from toolchain.compiler import compile_network

    rng = np.random.default_rng(3)
    layers = []
    for n_in, n_out in ((12, 6), (6, 4)):
        layers.append(AlphaLayer(rng.normal(1.2, 0.8, (n_out, n_in)), np.array([0.2]),
                                 rng.normal(0.5, 0.2, (n_out, 1))))
    net = TemporalNetwork(tuple(layers), tau=1.0, theta=1.0, latency=1.0)
    return compile_network(net, steps_per_unit=16)


@pytest.fixture(scope="session")
def inputs():
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (10, 12))
    x[x > 0.85] = np.inf
    return x
