"""One interface for every backend: run a compiled network on input spike times, return per-layer spikes.

A target is any object with a ``name`` and ``run(net, input_times) -> RunResult``. Adding a backend is one
new module in targets/ plus one line in targets/registry.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from toolchain.compiled import CompiledNetwork


@dataclass(frozen=True)
class RunResult:
    """First-spike times of every layer (hidden and output), per sample.

    times:   [(N, n_l)] float64 model time units, inf = no spike
    columns: [(N, n_l)] int64 reported source column (steps), -1 = no spike; None for continuous targets
    wall_s:  seconds spent in the backend (build + run)
    info:    backend details (versions, dt, code generation target, ...)
    """

    target: str
    times: list[np.ndarray]
    columns: list[np.ndarray] | None
    wall_s: float
    info: dict = field(default_factory=dict)


class Target(Protocol):
    name: str

    def run(self, net: CompiledNetwork, input_times: np.ndarray) -> RunResult:
        """Run every sample (rows of input_times, model time units, inf = no spike)."""
        ...
