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

:func:`validate_graph` checks an IR :class:`toolchain.ir.Graph` (artifact v2, toolchain/artifact_graph.py) with
the same bounds: Dense weights finite with ``|w| <= WEIGHT_ABS_MAX``; LIF ``leak`` in (0, 1], ``v_th`` in
[THETA_MIN, THETA_MAX], ``dt_ms`` in [DT_MS_MIN, DT_MS_MAX]; Readout ``leak`` in (0, 1]; a feed-forward structure
(Input -> synapse -> population -> synapse ...) whose sizes chain; a continuous (alpha) graph must convert to a
:class:`TemporalNetwork` (toolchain/ir_alpha.py) that passes :func:`validate_network`.
"""
from __future__ import annotations

import math

import numpy as np

from models.encoding import ENCODINGS
from models.network import TemporalNetwork
from toolchain.errors import ArtifactError
from toolchain.ir import (LIF, POPULATIONS, SYNAPSES, VIEWS, AlphaOnce, Conv2d, ConvTranspose2d, Dense, Flatten, Graph,
                          Input, Readout)

TAU_MIN, TAU_MAX = 1e-6, 1e6  # 1 / time unit
THETA_MIN, THETA_MAX = 1e-6, 1e6  # threshold, same units as the weights
WEIGHT_ABS_MAX = 1e6  # |weight| and |pulse weight|
MAX_HORIZON = 1e3  # time units: largest latency and pulse time
DT_MS_MIN, DT_MS_MAX = 1e-6, 1e6  # ms: duration of one step of a steps (LIF) graph

_FIX = "fix: retrain the model or repair the field, then re-export it with toolchain.artifact.save_onnx"
_FIX_GRAPH = "fix: retrain the model or repair the field, then re-save it with toolchain.artifact_graph.save_graph"


def _bad(source: str, field: str, value: object, allowed: str, fix: str = _FIX) -> ArtifactError:
    return ArtifactError(f"{source}: {field} = {value} is outside the allowed range {allowed}; {fix}")


def _check_scalar(source: str, field: str, value: float, lo: float, hi: float, lo_open: bool = False,
                  fix: str = _FIX) -> None:
    ok = math.isfinite(value) and (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        raise _bad(source, field, f"{value:.6g}", f"{'(' if lo_open else '['}{lo:g}, {hi:g}]", fix)


def _check_array(source: str, field: str, a: np.ndarray, lo: float, hi: float, fix: str = _FIX) -> None:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return
    finite = np.isfinite(a)
    bad = ~finite | (a < lo) | (a > hi)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise _bad(source, f"{field}[{', '.join(map(str, idx))}]", f"{a[idx]:.6g}", f"[{lo:g}, {hi:g}]", fix)


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


def _check_structure(graph: Graph, source: str) -> None:
    """Feed-forward Input -> synapse -> population -> synapse ... with sizes that chain."""
    inputs = [k for k, v in graph.nodes.items() if isinstance(v, Input)]
    if len(inputs) != 1:
        raise ArtifactError(f"{source}: the graph has {len(inputs)} Input nodes, expected exactly one; {_FIX_GRAPH}")
    if not any(isinstance(v, POPULATIONS) for v in graph.nodes.values()):
        raise ArtifactError(f"{source}: the graph has no neuron population (LIF, AlphaOnce, Readout); {_FIX_GRAPH}")
    for name, node in graph.nodes.items():
        src, dst = graph.sources(name), graph.targets(name)
        kind = type(node).__name__
        if isinstance(node, Input):
            if src:
                raise ArtifactError(f"{source}: Input node {name!r} has incoming edges from {src}; {_FIX_GRAPH}")
        elif isinstance(node, SYNAPSES):
            if len(src) != 1 or len(dst) != 1:
                raise ArtifactError(f"{source}: synapse {name!r} ({kind}) needs one source and one target, got "
                                    f"{src} -> {dst}; {_FIX_GRAPH}")
            if not isinstance(graph.nodes[src[0]], (Input,) + POPULATIONS + VIEWS):
                raise ArtifactError(f"{source}: synapse {name!r} is fed by {src[0]!r} "
                                    f"({type(graph.nodes[src[0]]).__name__}); a synapse reads an Input, a "
                                    f"population or a view (Flatten); {_FIX_GRAPH}")
            if not isinstance(graph.nodes[dst[0]], POPULATIONS):
                raise ArtifactError(f"{source}: synapse {name!r} feeds {dst[0]!r} "
                                    f"({type(graph.nodes[dst[0]]).__name__}); a synapse feeds a population; "
                                    f"{_FIX_GRAPH}")
            n_src, n_dst = graph.nodes[src[0]].n_out, graph.nodes[dst[0]].n_out
            if (node.n_in, node.n_out) != (n_src, n_dst):
                raise ArtifactError(f"{source}: {name} ({kind}) maps {node.n_in} inputs to {node.n_out} outputs "
                                    f"(weight shape {node.weight.shape}), but it connects {src[0]!r} ({n_src}) to "
                                    f"{dst[0]!r} ({n_dst}); {_FIX_GRAPH}")
        elif isinstance(node, VIEWS):
            if len(src) != 1 or len(dst) != 1:
                raise ArtifactError(f"{source}: view {name!r} ({kind}) needs one source and one target, got "
                                    f"{src} -> {dst}; {_FIX_GRAPH}")
            if not isinstance(graph.nodes[src[0]], (Input,) + POPULATIONS) or \
                    not isinstance(graph.nodes[dst[0]], SYNAPSES):
                raise ArtifactError(f"{source}: view {name!r} ({kind}) must sit between a population (or the Input) "
                                    f"and a synapse, got {src[0]!r} -> {dst[0]!r}; {_FIX_GRAPH}")
            if graph.nodes[src[0]].n_out != node.n_in:
                raise ArtifactError(f"{source}: {name} flattens a {node.input_shape} map ({node.n_in} values) but "
                                    f"{src[0]!r} has {graph.nodes[src[0]].n_out}; {_FIX_GRAPH}")
        else:
            if not src:
                raise ArtifactError(f"{source}: population {name!r} ({kind}) has no incoming synapse; {_FIX_GRAPH}")
            for s in src:
                if not isinstance(graph.nodes[s], SYNAPSES):
                    raise ArtifactError(f"{source}: population {name!r} is fed directly by {s!r} "
                                        f"({type(graph.nodes[s]).__name__}); put a synapse node between; "
                                        f"{_FIX_GRAPH}")


def validate_graph(graph: Graph, source: str = "model") -> Graph:
    """Check every node of an IR ``graph`` against the documented ranges; return ``graph`` or raise ArtifactError.

    Steps (LIF) graphs: Dense, Conv2d and ConvTranspose2d weights finite, ``|w| <= WEIGHT_ABS_MAX``; LIF leak in (0, 1] (per step), v_th in
    [THETA_MIN, THETA_MAX], dt_ms in [DT_MS_MIN, DT_MS_MAX] ms; Readout leak in (0, 1]. Continuous (alpha) graphs
    are converted to a TemporalNetwork and checked with :func:`validate_network` (the same message as v1 files).
    ``source`` names the file (or object) in the message."""
    if not isinstance(graph, Graph):
        raise ArtifactError(f"{source}: expected a toolchain.ir.Graph, got {type(graph).__name__}; "
                            "fix: load the model with toolchain.artifact_graph.load_graph")
    if graph.time not in ("steps", "continuous"):
        raise ArtifactError(f"{source}: time = {graph.time!r}; expected 'steps' or 'continuous'; {_FIX_GRAPH}")
    _check_structure(graph, source)
    for name, node in graph.nodes.items():
        if isinstance(node, Input):
            continue
        if isinstance(node, Dense):
            if node.weight.ndim != 2 or min(node.weight.shape) < 1:
                raise ArtifactError(f"{source}: {name}.weight has shape {node.weight.shape}; a Dense node needs "
                                    f"at least one input and one output; {_FIX_GRAPH}")
            _check_array(source, f"{name}.weight", node.weight, -WEIGHT_ABS_MAX, WEIGHT_ABS_MAX, _FIX_GRAPH)
        elif isinstance(node, (Conv2d, ConvTranspose2d)):
            _check_array(source, f"{name}.weight", node.weight, -WEIGHT_ABS_MAX, WEIGHT_ABS_MAX, _FIX_GRAPH)
        elif isinstance(node, Flatten):
            pass
        elif isinstance(node, LIF):
            _check_scalar(source, f"{name}.leak", node.leak, 0.0, 1.0, lo_open=True, fix=_FIX_GRAPH)
            _check_scalar(source, f"{name}.v_th", node.v_th, THETA_MIN, THETA_MAX, fix=_FIX_GRAPH)
            _check_scalar(source, f"{name}.dt_ms", node.dt_ms, DT_MS_MIN, DT_MS_MAX, fix=_FIX_GRAPH)
            if node.reset not in ("zero", "subtract"):
                raise ArtifactError(f"{source}: {name}.reset = {node.reset!r}; expected 'zero' or 'subtract'; "
                                    f"{_FIX_GRAPH}")
        elif isinstance(node, Readout):
            _check_scalar(source, f"{name}.leak", node.leak, 0.0, 1.0, lo_open=True, fix=_FIX_GRAPH)
        elif isinstance(node, AlphaOnce):
            if graph.time != "continuous":
                raise ArtifactError(f"{source}: {name} (AlphaOnce) runs in continuous time but the graph is "
                                    f"{graph.time}; {_FIX_GRAPH}")
        else:
            raise ArtifactError(f"{source}: node {name!r} has unknown kind {type(node).__name__}; {_FIX_GRAPH}")
        if isinstance(node, (LIF, Readout, Conv2d, ConvTranspose2d, Flatten)) and graph.time != "steps":
            raise ArtifactError(f"{source}: {name} ({type(node).__name__}) runs in steps but the graph is "
                                f"{graph.time}; {_FIX_GRAPH}")
    if graph.time == "continuous":
        from toolchain.ir_alpha import temporal_from_graph  # imports models.network, as this module does

        validate_network(temporal_from_graph(graph, source), source)
    return graph
