"""``OnceLIF``: LIFReset + once-per-window spiking + no spike on the window's last update + a per-window report
of first-spike columns and spike counts (docs/compiled-format.md)."""
from __future__ import annotations

import typing as ty

import numpy as np

from toolchain.lava_compat import install

install()

from lava.magma.core.process.ports.ports import OutPort  # noqa: E402
from lava.magma.core.process.variable import Var  # noqa: E402
from lava.proc.lif.process import LIFReset  # noqa: E402


class OnceLIF(LIFReset):
    """CUBA LIF with a reset every ``reset_interval`` (= window W) steps at ``reset_offset``.

    once:       True = a neuron spikes at most once between two resets (alpha neurons); False = plain LIF.
    The update just before each reset (time step % W == reset_offset - 1) never emits a spike, so no spike is
    attributed to the next window. ``fired`` (0/1 per neuron) marks neurons that spiked since the last reset.
    vth:        a scalar (every neuron) or one threshold per neuron (array of ``shape``). Unlike Lava's LIF,
                whose ``vth`` Var has shape (1,), OnceLIF's ``vth`` Var always has the population's shape; the
                float and bit-accurate models compare each neuron's v with its own threshold.
    report:     OutPort of shape (2, n), int32, sent once per window at its last update (not at time step 1):
                row 0 = first spike column of each neuron in that window (update index + 1, -1 = none),
                row 1 = its spike count. ``report.flag_external_pipe()`` lets the host read it directly,
                without a per-step sink.
    """

    def __init__(self, *, shape: ty.Tuple[int, ...], once: bool = True,
                 vth: ty.Union[float, np.ndarray] = 10, **kwargs) -> None:
        shape = tuple(shape)
        super().__init__(shape=shape, **kwargs)
        vth_arr = np.asarray(vth)
        if vth_arr.ndim and vth_arr.shape != shape:
            raise ValueError(f"OnceLIF: vth has shape {vth_arr.shape}, expected a scalar or the population's "
                             f"shape {shape}")
        # replaces LIFReset's Var(shape=(1,)): the Vars are collected after __init__ (AbstractProcess._post_init)
        self.vth = Var(shape=shape, init=np.broadcast_to(vth_arr, shape).copy())
        self.proc_params["once"] = bool(once)
        self.fired = Var(shape=shape, init=np.zeros(shape, dtype=np.int32))
        self.first_col = Var(shape=shape, init=np.full(shape, -1, dtype=np.int32))
        self.count = Var(shape=shape, init=np.zeros(shape, dtype=np.int32))
        self.report = OutPort(shape=(2,) + tuple(shape))
