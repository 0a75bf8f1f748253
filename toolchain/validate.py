"""One validation of a :class:`TemporalNetwork` for every command (eval, compile, run, verify, deploy, resources).

``load_onnx`` and ``save_onnx`` (toolchain/artifact.py) and ``load_compiled`` (its source network) call
:func:`validate_network`, so a model that one command refuses is refused by all of them, with the same message:
the field, the value, the allowed range and the fix. The ranges are in docs/artifact-format.md ("Ranges").

They are sanity bounds, far outside anything training produces, that keep every later stage finite and its
sizes bounded (e.g. a pulse at t = 1e9 would ask the compiler for a window of 4e10 steps):

* ``tau`` (1 / time unit) in [TAU_MIN, TAU_MAX], ``theta`` in [THETA_MIN, THETA_MAX], both finite;
* ``latency`` (time units) in (0, MAX_HORIZON];
* every weight and pulse weight finite with ``|w| <= WEIGHT_ABS_MAX``;
* every pulse time finite, in [0, MAX_HORIZON] time units;
* at least one layer, every layer at least one input and one neuron, consecutive layers' sizes agree;
* ``encoding`` one of models.encoding.ENCODINGS.
"""
from __future__ import annotations

import math

import numpy as np

from models.encoding import ENCODINGS
from models.network import TemporalNetwork
from toolchain.errors import ArtifactError

TAU_MIN, TAU_MAX = 1e-6, 1e6  # 1 / time unit
THETA_MIN, THETA_MAX = 1e-6, 1e6  # threshold, same units as the weights
WEIGHT_ABS_MAX = 1e6  # |weight| and |pulse weight|
MAX_HORIZON = 1e3  # time units: largest latency and pulse time

_FIX = "fix: retrain the model or repair the field, then re-export it with toolchain.artifact.save_onnx"


def _bad(source: str, field: str, value: object, allowed: str) -> ArtifactError:
    return ArtifactError(f"{source}: {field} = {value} is outside the allowed range {allowed}; {_FIX}")


def _check_scalar(source: str, field: str, value: float, lo: float, hi: float, lo_open: bool = False) -> None:
    ok = math.isfinite(value) and (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        raise _bad(source, field, f"{value:.6g}", f"{'(' if lo_open else '['}{lo:g}, {hi:g}]")


def _check_array(source: str, field: str, a: np.ndarray, lo: float, hi: float) -> None:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return
    finite = np.isfinite(a)
    bad = ~finite | (a < lo) | (a > hi)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise _bad(source, f"{field}[{', '.join(map(str, idx))}]", f"{a[idx]:.6g}", f"[{lo:g}, {hi:g}]")


def validate_network(net: TemporalNetwork, source: str = "model") -> TemporalNetwork:
    """Check every field of ``net`` against the documented ranges; return ``net`` or raise ArtifactError.

    ``source`` names the file (or object) in the message."""
    if not isinstance(net, TemporalNetwork):
        raise ArtifactError(f"{source}: expected a TemporalNetwork, got {type(net).__name__}; "
                            "fix: load the model with toolchain.artifact.load_onnx")
    _check_scalar(source, "tau", net.tau, TAU_MIN, TAU_MAX)
    _check_scalar(source, "theta", net.theta, THETA_MIN, THETA_MAX)
    _check_scalar(source, "latency", net.latency, 0.0, MAX_HORIZON, lo_open=True)
    if net.encoding not in ENCODINGS:
        raise ArtifactError(f"{source}: encoding = {net.encoding!r} is not supported; fix: use one of "
                            f"{', '.join(ENCODINGS)} (re-export the model with toolchain.artifact.save_onnx)")
    if not net.layers:
        raise ArtifactError(f"{source}: the network has no layers; {_FIX}")
    prev_out = None
    for k, layer in enumerate(net.layers):
        name = f"layer{k}"
        if layer.n_in < 1 or layer.n_out < 1:
            raise ArtifactError(f"{source}: {name}.weights has shape {layer.weights.shape}; every layer needs at "
                                f"least one input and one neuron; {_FIX}")
        if prev_out is not None and layer.n_in != prev_out:
            raise ArtifactError(f"{source}: {name}.weights has {layer.n_in} inputs but layer{k - 1} has "
                                f"{prev_out} neurons; {_FIX}")
        if layer.pulse_weights.shape != (layer.n_out, layer.n_pulses):
            raise ArtifactError(f"{source}: {name}.pulse_weights has shape {layer.pulse_weights.shape}, expected "
                                f"({layer.n_out}, {layer.n_pulses}); {_FIX}")
        _check_array(source, f"{name}.weights", layer.weights, -WEIGHT_ABS_MAX, WEIGHT_ABS_MAX)
        _check_array(source, f"{name}.pulse_weights", layer.pulse_weights, -WEIGHT_ABS_MAX, WEIGHT_ABS_MAX)
        _check_array(source, f"{name}.pulse_times", layer.pulse_times, 0.0, MAX_HORIZON)
        prev_out = layer.n_out
    return net
