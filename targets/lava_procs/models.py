"""Float and bit-accurate ProcessModels of :class:`OnceLIF` (subclasses of Lava's LIFReset models)."""
from __future__ import annotations

import numpy as np

from toolchain.lava_compat import install

install()

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402
from lava.proc.lif.models import PyLifResetModelBitAcc, PyLifResetModelFloat  # noqa: E402

from targets.lava_procs.process import OnceLIF  # noqa: E402


def _mask(model, spikes: np.ndarray) -> np.ndarray:
    """Apply the last-update suppression and the once mask; returns the spikes to emit."""
    spikes = np.asarray(spikes, dtype=bool).copy()
    if (model.time_step % model.reset_interval) == (model.reset_offset - 1) % model.reset_interval:
        spikes[:] = False
    if model.once:
        spikes &= model.fired == 0
        model.fired[spikes] = 1
    return spikes


@implements(proc=OnceLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyOnceLifModelFloat(PyLifResetModelFloat):
    implements_process = None
    implements_protocol = None
    fired: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=1)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.once = bool(proc_params["once"])

    def run_spk(self):
        a_in_data = self.a_in.recv()
        if (self.time_step % self.reset_interval) == self.reset_offset:
            self.u *= 0
            self.v *= 0
            self.fired[:] = 0
        self.subthr_dynamics(activation_in=a_in_data)
        s_out = _mask(self, self.spiking_activation())
        self.reset_voltage(spike_vector=s_out)
        self.s_out.send(s_out)


@implements(proc=OnceLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyOnceLifModelBitAcc(PyLifResetModelBitAcc):
    implements_process = None
    implements_protocol = None
    fired: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=1)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.once = bool(proc_params["once"])

    def run_spk(self):
        a_in_data = self.a_in.recv()
        if (self.time_step % self.reset_interval) == self.reset_offset:
            self.u *= 0
            self.v *= 0
            self.fired[:] = 0
        self.scale_bias()
        if not self.isthrscaled:
            self.scale_threshold()
        self.subthr_dynamics(activation_in=a_in_data)
        s_out = _mask(self, self.spiking_activation())
        self.reset_voltage(spike_vector=s_out)
        self.s_out.send(s_out)
