"""``ReadoutSink``: off-chip leaky trace of a connection's output, reported per sample window (see the package
docstring)."""
from __future__ import annotations

import typing as ty

import numpy as np

from toolchain.lava_compat import install

install()

from lava.magma.core.process.ports.ports import InPort, OutPort  # noqa: E402
from lava.magma.core.process.process import AbstractProcess  # noqa: E402


class ReadoutSink(AbstractProcess):
    """Receives a (shape) every step; A = leak (A + a / scale) (float64), A = 0 first at steps tau with
    tau % window == reset % window; at tau % window == phase % window sends the A of steps tau - steps + 1 .. tau
    as one (steps,) + shape float array through ``report`` (flag it as an external pipe).

    shape:  the connection's output shape
    window: W, steps per sample window (>= steps); steps: T, steps reported per window
    phase:  1-based time step (mod W) of the last reported step; reset: time step (mod W) at which A restarts
    leak:   per-step factor; scale: (shape) integer units per unit of A (1 in float mode)
    """

    def __init__(self, *, shape: ty.Tuple[int, ...], window: int, steps: int, phase: int, reset: int, leak: float,
                 scale: np.ndarray, **kwargs) -> None:
        shape = tuple(shape)
        super().__init__(shape=shape, **kwargs)
        if not 1 <= steps <= window:
            raise ValueError(f"ReadoutSink: steps={steps} must lie in [1, window={window}]")
        self.proc_params["window"] = int(window)
        self.proc_params["steps"] = int(steps)
        self.proc_params["phase"] = int(phase) % int(window)
        self.proc_params["reset"] = int(reset) % int(window)
        self.proc_params["leak"] = float(leak)
        self.proc_params["scale"] = np.broadcast_to(np.asarray(scale, dtype=np.float64), shape).copy()
        self.a_in = InPort(shape=shape)
        self.report = OutPort(shape=(int(steps),) + shape)
