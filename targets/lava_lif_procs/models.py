"""ProcessModel of ``WindowSink`` (both precisions: it only stores and forwards 0/1 spikes)."""
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

from targets.lava_lif_procs.process import WindowSink  # noqa: E402


@implements(proc=WindowSink, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "fixed_pt")
class PyWindowSinkModel(PyLoihiProcessModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    report: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._window = proc_params["window"]
        self._steps = proc_params["steps"]
        self._phase = proc_params["phase"]
        self._buf = None

    def run_spk(self):
        s = self.s_in.recv()
        if self._buf is None:
            self._buf = np.zeros((self._window,) + s.shape, dtype=np.int32)
        self._buf[self.time_step % self._window] = s != 0
        if self.time_step % self._window == self._phase:
            rows = (np.arange(self.time_step - self._steps + 1, self.time_step + 1)) % self._window
            self.report.send(self._buf[rows])
