"""``exact``: the float64 closed-form reference (models/exact.py) behind the target interface."""
from __future__ import annotations

import time

import numpy as np

from models.exact import exact_forward
from targets.base import RunResult
from toolchain.compiled import CompiledNetwork


class ExactTarget:
    """Runs the compiled network's source float model exactly (no time grid, no quantization)."""

    name = "exact"

    def run(self, net: CompiledNetwork, input_times: np.ndarray) -> RunResult:
        t0 = time.perf_counter()
        times = exact_forward(net.source, input_times)
        return RunResult(self.name, times, None, time.perf_counter() - t0, {"precision": "float64"})
