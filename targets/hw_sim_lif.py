"""``hw_sim-lif``: hw_sim's bit-accurate LIF emulation (hw_sim/lif.py) behind the target interface; the steps
counterpart of ``hw_sim``, spike for spike equal to ``lava-fixed-lif``. Convolutional graphs (CompiledConv, or a
steps Graph with convolutions) run on hw_sim/conv.py."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from hw_sim.emulator import default_threads
from hw_sim.conv import conv_net_of, run_conv_fixed
from hw_sim.lif import simulate_lif
from targets.base import RunResult, steps_result


class HwSimLifTarget:
    """Runs a CompiledSteps (or a steps Graph, compiled with the defaults) on (N, T, n_in) 0/1 trains.
    threads: sample-parallel threads (default $SNNC_THREADS or the usable CPUs)."""

    name = "hw_sim-lif"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def run(self, net: Any, inputs: np.ndarray) -> RunResult:
        t0 = time.perf_counter()
        cc = conv_net_of(net, inputs, self.name)
        if cc is not None:
            trains, pots, events = run_conv_fixed(cc, inputs, self.threads)
            return steps_result(self.name, trains, time.perf_counter() - t0,
                                {"precision": "fixed_pt", "populations": cc.names, "range_events": events,
                                 "threads": self.threads or default_threads()}, pots)
        run = simulate_lif(net, inputs, self.threads, self.name)
        # times: the trains' first-spike view (hw_sim.lif.FirstSpikeSteps), computed per layer when first read
        return RunResult(self.name, run.first, None, time.perf_counter() - t0,
                         {"precision": "fixed_pt", "populations": run.populations, "range_events": run.events,
                          "threads": run.threads}, run.trains)
