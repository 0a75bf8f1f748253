"""Float and bit-accurate ProcessModels of :class:`OnceLIF` (subclasses of Lava's LIFReset models)."""
from __future__ import annotations

import numpy as np

from toolchain.lava_compat import install

install()

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.ports import PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402
from lava.proc.lif.models import PyLifResetModelBitAcc, PyLifResetModelFloat  # noqa: E402

from targets.lava_procs.process import OnceLIF  # noqa: E402


class _OnceMixin:
    """Window bookkeeping shared by the float and the bit-accurate model."""

    def _init_once(self, proc_params) -> None:
        self.once = bool(proc_params["once"])

    def _window_start(self) -> bool:
        if (self.time_step % self.reset_interval) == self.reset_offset:
            self.u *= 0
            self.v *= 0
            self.fired[:] = 0
            self.first_col[:] = -1
            self.count[:] = 0
            return True
        return False

    def _emit(self, spikes: np.ndarray) -> np.ndarray:
        """Mask spikes (last update of a window, once), record them, send the window report at its end."""
        spikes = np.asarray(spikes, dtype=bool).copy()
        last = (self.time_step % self.reset_interval) == (self.reset_offset - 1) % self.reset_interval
        if last:
            spikes[:] = False
        if self.once:
            spikes &= self.fired == 0
            self.fired[spikes] = 1
        if spikes.any():
            col = (self.time_step - self.reset_offset) % self.reset_interval + 1
            self.first_col[spikes & (self.first_col < 0)] = col
            self.count[spikes] += 1
        self.reset_voltage(spike_vector=spikes)
        self.s_out.send(spikes)
        if last and self.time_step > self.reset_offset:
            self.report.send(np.stack([self.first_col, self.count]).astype(np.int32))
        return spikes


_VARS = dict(
    fired=LavaPyType(np.ndarray, np.int32, precision=1),
    first_col=LavaPyType(np.ndarray, np.int32, precision=24),
    count=LavaPyType(np.ndarray, np.int32, precision=24),
    report=LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24),
)


@implements(proc=OnceLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyOnceLifModelFloat(_OnceMixin, PyLifResetModelFloat):
    implements_process = None
    implements_protocol = None
    vth: np.ndarray = LavaPyType(np.ndarray, float)  # one threshold per neuron (Lava's LIF: a scalar)
    fired: np.ndarray = _VARS["fired"]
    first_col: np.ndarray = _VARS["first_col"]
    count: np.ndarray = _VARS["count"]
    report: PyOutPort = _VARS["report"]

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._init_once(proc_params)

    def run_spk(self):
        a_in_data = self.a_in.recv()
        self._window_start()
        self.subthr_dynamics(activation_in=a_in_data)
        self._emit(self.spiking_activation())


@implements(proc=OnceLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyOnceLifModelBitAcc(_OnceMixin, PyLifResetModelBitAcc):
    implements_process = None
    implements_protocol = None
    # one 17-bit threshold mantissa per neuron (Lava's LIF: a scalar); scale_threshold() shifts the whole vector
    # (effective_vth = vth << 6) and spiking_activation() compares v[j] > effective_vth[j]
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=17)
    fired: np.ndarray = _VARS["fired"]
    first_col: np.ndarray = _VARS["first_col"]
    count: np.ndarray = _VARS["count"]
    report: PyOutPort = _VARS["report"]

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._init_once(proc_params)

    def run_spk(self):
        a_in_data = self.a_in.recv()
        self._window_start()
        self.scale_bias()
        if not self.isthrscaled:
            self.scale_threshold()
        self.subthr_dynamics(activation_in=a_in_data)
        self._emit(self.spiking_activation())
