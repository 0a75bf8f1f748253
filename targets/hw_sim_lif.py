"""``hw_sim-lif``: hw_sim's bit-accurate LIF emulation (hw_sim/lif.py) behind the target interface; the steps
counterpart of ``hw_sim``, spike for spike equal to ``lava-fixed-lif``."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from hw_sim.lif import compiled_steps_of, simulate_lif
from targets.base import RunResult


class HwSimLifTarget:
    """Runs a CompiledSteps (or a steps Graph, compiled with the defaults) on (N, T, n_in) 0/1 trains.
    threads: sample-parallel threads (default $SNNC_THREADS or the usable CPUs)."""

    name = "hw_sim-lif"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def run(self, net: Any, inputs: np.ndarray) -> RunResult:
        """``RunResult.trains`` [(N, T, n) uint8] per layer and their first-spike steps in ``times`` (computed by
        the kernel, equal to targets.base.first_spike_steps of the trains); ``info['range_events']`` per layer."""
        t0 = time.perf_counter()
        cs = compiled_steps_of(net, inputs, self.name)
        run = simulate_lif(cs, inputs, self.threads, self.name)
        return RunResult(self.name, run.first, None, time.perf_counter() - t0,
                         {"precision": "fixed_pt", "populations": cs.names, "range_events": run.events,
                          "threads": run.threads}, run.trains)
