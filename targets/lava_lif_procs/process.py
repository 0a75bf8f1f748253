"""``WindowSink``: per-window spike-train report of one population (see the package docstring)."""
from __future__ import annotations

import typing as ty

from toolchain.lava_compat import install

install()

from lava.magma.core.process.ports.ports import InPort, OutPort  # noqa: E402
from lava.magma.core.process.process import AbstractProcess  # noqa: E402


class WindowSink(AbstractProcess):
    """Receives spikes (n,) every step; at every Lava time step tau with tau % window == phase % window it sends
    the spikes of steps tau - steps + 1 .. tau as one (steps, n) int32 array through ``report`` (flag it as an
    external pipe to read it on the host).

    shape:  (n,) population shape
    window: W, steps per sample window (>= steps)
    steps:  T, steps reported per window
    phase:  the time step (1-based, modulo W) of the last reported step of the first window
    """

    def __init__(self, *, shape: ty.Tuple[int, ...], window: int, steps: int, phase: int, **kwargs) -> None:
        shape = tuple(shape)
        super().__init__(shape=shape, **kwargs)
        if not 1 <= steps <= window:
            raise ValueError(f"WindowSink: steps={steps} must lie in [1, window={window}]")
        self.proc_params["window"] = int(window)
        self.proc_params["steps"] = int(steps)
        self.proc_params["phase"] = int(phase) % int(window)
        self.s_in = InPort(shape=shape)
        self.report = OutPort(shape=(int(steps),) + shape)
