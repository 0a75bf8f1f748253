"""ProcessModel of ``ReadoutSink`` (both precisions: it only integrates what it receives, in float64)."""
from __future__ import annotations

import numpy as np

from toolchain.lava_compat import install

install()

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.model import PyLoihiProcessModel  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort, PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402

from targets.lava_conv_procs.process import ReadoutSink  # noqa: E402


@implements(proc=ReadoutSink, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "fixed_pt")
class PyReadoutSinkModel(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    report: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._window = proc_params["window"]
        self._steps = proc_params["steps"]
        self._phase = proc_params["phase"]
        self._reset = proc_params["reset"]
        self._leak = proc_params["leak"]
        self._scale = proc_params["scale"]
        self._a = np.zeros(self._scale.shape)
        self._buf = np.zeros((self._window,) + self._scale.shape)

    def run_spk(self):
        a = self.a_in.recv()
        if self.time_step % self._window == self._reset:
            self._a = np.zeros(self._scale.shape)
        self._a = self._leak * (self._a + np.asarray(a, dtype=np.float64) / self._scale)
        self._buf[self.time_step % self._window] = self._a
        if self.time_step % self._window == self._phase:
            rows = (np.arange(self.time_step - self._steps + 1, self.time_step + 1)) % self._window
            self.report.send(self._buf[rows])
