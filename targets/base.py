"""One interface for every backend: run a network on input spikes, return per-layer spikes.

A target is any object with a ``name`` and ``run(net, inputs) -> RunResult``. Adding a backend is one new module in
targets/ plus one line in targets/registry.py. Two model families share the interface:

- alpha family (continuous time, :class:`toolchain.compiled.CompiledNetwork`): ``inputs`` are first-spike times
  (N, n_in) in model time units, ``inf`` = no spike; the result holds first-spike ``times`` per layer.
- steps family (LIF, :class:`toolchain.ir.Graph` with ``time == "steps"`` or a compiled form carrying it as
  ``.graph`` / ``.source``): ``inputs`` are spike trains (N, T, n_in) of 0/1; the result holds the spike ``trains``
  (N, T, n) uint8 of every population node in graph order, aligned to :func:`toolchain.lif_reference.simulate`
  (step t of a train is model step t, whatever delays the backend adds), and ``times`` is their first-spike view
  (:func:`first_spike_steps`, in steps).

First-spike times are a view of spike trains: an alpha neuron spikes at most once, so its train on a grid of
``steps_per_unit`` steps per time unit is one 1 at step floor(t S) (:func:`times_to_trains`), and
:func:`trains_to_times` maps a train back to the start of the step of its first spike.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from toolchain.errors import TargetError
from toolchain.ir import Graph


@dataclass(frozen=True)
class RunResult:
    """Spikes of every layer (hidden and output), per sample.

    times:   [(N, n_l)] float64 first-spike times, inf = no spike: model time units (alpha family) or steps
             (steps family: the view :func:`first_spike_steps` of ``trains``)
    columns: [(N, n_l)] int64 reported source column (steps), -1 = no spike; None for continuous targets
    wall_s:  seconds spent in the backend (build + run)
    info:    backend details (versions, dt, code generation target, ...)
    trains:  steps family only: [(N, T, n_l)] uint8 spike trains per population node, graph order; None otherwise
    potentials: steps family, where the backend records them: [(N, T, n_l)] float64 pre-reset potentials V[t]
             (threshold units, after the clamp; Readout: A[t]); None otherwise
    """

    target: str
    times: list[np.ndarray]
    columns: list[np.ndarray] | None
    wall_s: float
    info: dict = field(default_factory=dict)
    trains: list[np.ndarray] | None = None
    potentials: list[np.ndarray] | None = None

    def spike_trains(self, steps_per_unit: float | None = None, n_steps: int | None = None) -> list[np.ndarray]:
        """Spike trains of every layer: ``trains`` for steps targets; for alpha targets the trains view of the
        first-spike times on a grid of ``steps_per_unit`` steps per time unit over ``n_steps`` steps
        (:func:`times_to_trains`)."""
        if self.trains is not None:
            return self.trains
        if steps_per_unit is None or n_steps is None:
            raise ValueError(f"{self.target} reports first-spike times; pass steps_per_unit and n_steps to view them "
                             "as spike trains")
        return [times_to_trains(t, steps_per_unit, n_steps) for t in self.times]


class Target(Protocol):
    name: str

    def run(self, net: Any, inputs: np.ndarray) -> RunResult:
        """Run every sample: alpha networks take first-spike times (N, n_in), model time units, inf = no spike;
        steps graphs take spike trains (N, T, n_in) of 0/1 and fill ``RunResult.trains``."""
        ...


def steps_result(target: str, trains: list[np.ndarray], wall_s: float, info: dict | None = None,
                 potentials: list[np.ndarray] | None = None) -> RunResult:
    """RunResult of a steps target: ``trains`` plus their first-spike view in ``times`` (steps)."""
    trains = [np.ascontiguousarray(t, dtype=np.uint8) for t in trains]
    return RunResult(target, [first_spike_steps(t) for t in trains], None, wall_s, dict(info or {}), trains,
                     potentials)


def steps_graph(net: Any) -> Graph:
    """The steps :class:`Graph` behind ``net``: the graph itself, or a compiled form's ``.graph`` / ``.source``.

    Raises TargetError when ``net`` carries no steps graph (e.g. an alpha CompiledNetwork)."""
    for g in (net, getattr(net, "graph", None), getattr(net, "source", None)):
        if isinstance(g, Graph):
            if g.time != "steps":
                raise TargetError(f"this target runs steps (LIF) graphs; the network's time is {g.time!r} "
                                  "(run alpha models on 'exact', 'brian2', 'lava-float', ...)")
            return g
    raise TargetError(f"this target runs steps (LIF) graphs (toolchain.ir.Graph); got {type(net).__name__}; "
                      "use a LIF model, or an alpha target such as 'exact' or 'brian2' for alpha models")


def check_input_trains(graph: Graph, spikes_in: np.ndarray) -> np.ndarray:
    """Input spike trains (N, T, n_in) of 0/1 -> uint8; TargetError naming the problem otherwise."""
    from toolchain.lif_reference import check_spike_trains

    try:
        return check_spike_trains(graph, spikes_in)
    except ValueError as exc:
        raise TargetError(f"{exc}; encode inputs as 0/1 spike trains (samples, steps, channels)") from None


def first_spike_steps(trains: np.ndarray) -> np.ndarray:
    """(N, T, n) 0/1 trains -> (N, n) float64 step of the first spike, inf where a neuron never spikes."""
    tr = np.asarray(trains)
    if tr.ndim != 3:
        raise ValueError(f"spike trains must be (samples, steps, neurons), got shape {tr.shape}")
    fired = tr.any(axis=1)
    first = np.argmax(tr != 0, axis=1).astype(np.float64)
    first[~fired] = np.inf
    return first


def times_to_trains(times: np.ndarray, steps_per_unit: float, n_steps: int) -> np.ndarray:
    """Alpha first-spike times (N, n), model time units (inf = none) -> (N, n_steps, n) uint8 trains on a grid of
    ``steps_per_unit`` steps per time unit: one 1 at step floor(t S). Spikes at or after step n_steps are dropped."""
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 2:
        raise ValueError(f"first-spike times must be (samples, neurons), got shape {t.shape}")
    if np.any(np.isnan(t)) or np.any(t < 0):
        raise ValueError("first-spike times must be >= 0 (inf = no spike), found NaN or negative")
    if not (steps_per_unit > 0) or int(n_steps) < 1:
        raise ValueError("steps_per_unit must be > 0 and n_steps >= 1")
    out = np.zeros((t.shape[0], int(n_steps), t.shape[1]), dtype=np.uint8)
    with np.errstate(invalid="ignore"):
        step = np.floor(t * steps_per_unit)
    b, j = np.nonzero(step < n_steps)
    out[b, step[b, j].astype(np.int64), j] = 1
    return out


def trains_to_times(trains: np.ndarray, steps_per_unit: float) -> np.ndarray:
    """Inverse view of :func:`times_to_trains`: first spike of each train -> its step's start time, model time
    units (inf = no spike). trains_to_times(times_to_trains(t, S, T), S) = floor(t S) / S for spikes inside T."""
    return first_spike_steps(trains) / float(steps_per_unit)
