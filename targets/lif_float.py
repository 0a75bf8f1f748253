"""``float``: the float64 steps reference (toolchain/lif_reference.simulate) behind the target interface.

The LIF family's counterpart of ``exact``: it runs the IR's equations with no quantization and no hardware delay,
so its trains are the ones every other steps target is verified against.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from targets.base import RunResult, check_input_trains, steps_graph, steps_result
from toolchain.lif_reference import simulate


class FloatStepsTarget:
    """Runs a steps graph (or a compiled form's ``.graph`` / ``.source``) in float64 on (N, T, n_in) 0/1 trains.

    ``RunResult.potentials`` holds the pre-reset potentials [(N, T, n)] (threshold units) that the
    verifier uses to classify near-threshold flips."""

    name = "float"

    def run(self, net: Any, inputs: np.ndarray) -> RunResult:
        graph = steps_graph(net)
        x = check_input_trains(graph, inputs)
        t0 = time.perf_counter()
        tr = simulate(graph, x)
        return steps_result(self.name, tr.spikes, time.perf_counter() - t0,
                            {"precision": "float64", "populations": tr.names}, tr.potentials)
