"""The trained temporal-coding network as plain data: the IR that the ONNX artifact stores.

Model time is dimensionless ("time units"): input spikes lie in [0, 1], outputs near ``latency + [0, 1]``.
Neurons are alpha-synapse, once-spiking (Comsa et al. 2021):

    V_j(t) = sum_i w_ji (t - t_i) exp(-tau (t - t_i))   over inputs t_i <= t (inputs and pulses)

and neuron j spikes the first time V_j reaches ``theta``; it never spikes again. A missing spike is ``inf``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NO_SPIKE = np.inf


def _as_f64(name: str, a: np.ndarray, ndim: int) -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf; retrain or repair the model (all parameters must be finite)")
    return a


@dataclass(frozen=True)
class AlphaLayer:
    """Dense layer of once-spiking alpha neurons with its own synchronisation pulses.

    weights:       (n_out, n_in)   dimensionless (same units as theta)
    pulse_times:   (n_pulses,)     time units, >= 0; every neuron of the layer receives every pulse
    pulse_weights: (n_out, n_pulses)
    """

    weights: np.ndarray
    pulse_times: np.ndarray
    pulse_weights: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", _as_f64("weights", self.weights, 2))
        object.__setattr__(self, "pulse_times", _as_f64("pulse_times", self.pulse_times, 1))
        object.__setattr__(self, "pulse_weights", _as_f64("pulse_weights", self.pulse_weights, 2))
        if self.pulse_weights.shape != (self.n_out, self.n_pulses):
            raise ValueError(
                f"pulse_weights has shape {self.pulse_weights.shape}, expected (n_out, n_pulses) = "
                f"({self.n_out}, {self.n_pulses})"
            )
        if np.any(self.pulse_times < 0):
            raise ValueError("pulse_times must be >= 0 time units")

    @property
    def n_in(self) -> int:
        return self.weights.shape[1]

    @property
    def n_out(self) -> int:
        return self.weights.shape[0]

    @property
    def n_pulses(self) -> int:
        return self.pulse_times.shape[0]

    def all_weights(self) -> np.ndarray:
        """(n_out, n_in + n_pulses): ordinary inputs first, then pulses."""
        return np.hstack([self.weights, self.pulse_weights])


@dataclass(frozen=True)
class TemporalNetwork:
    """Feed-forward stack of :class:`AlphaLayer` with the neuron constants shared by all layers.

    tau:      decay rate, 1 / time unit
    theta:    firing threshold (dimensionless)
    latency:  target output latency, time units (output for pixel time t is expected at latency + t)
    encoding: input encoding name (see models/encoding.py), stored so the compiler/verifier encode alike
    """

    layers: tuple[AlphaLayer, ...]
    tau: float
    theta: float
    latency: float
    encoding: str = "latency"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ValueError("a TemporalNetwork needs at least one layer")
        for name in ("tau", "theta", "latency"):
            v = float(getattr(self, name))
            if not np.isfinite(v):
                raise ValueError(f"{name} must be finite, got {v}")
            object.__setattr__(self, name, v)
        if self.tau <= 0 or self.theta <= 0:
            raise ValueError(f"tau and theta must be > 0, got tau={self.tau}, theta={self.theta}")
        for i in range(1, len(self.layers)):
            if self.layers[i].n_in != self.layers[i - 1].n_out:
                raise ValueError(
                    f"layer {i} expects {self.layers[i].n_in} inputs but layer {i - 1} has "
                    f"{self.layers[i - 1].n_out} neurons"
                )

    @property
    def sizes(self) -> list[int]:
        """[n_in, n_hidden..., n_out]."""
        return [self.layers[0].n_in] + [layer.n_out for layer in self.layers]
