"""Converters between the alpha (temporal) model :class:`models.network.TemporalNetwork` and the IR graph.

A TemporalNetwork of L layers is the continuous-time graph

    input (Input n_in) -> fc0 (Dense, layer 0 weights) -> layer0 (AlphaOnce) -> fc1 (Dense) -> layer1 -> ...

Each ``layer{k}`` AlphaOnce node carries the network's shared ``tau`` (1 / time unit) and ``theta`` and the layer's
own synchronisation pulses (``pulse_times`` in time units, ``pulse_weights``). The network's ``latency`` (time
units) and ``encoding`` are graph metadata entries ``"latency"`` and ``"encoding"`` beside every entry of
``net.metadata``. :func:`temporal_from_graph` is the exact inverse of :func:`graph_from_temporal`: every array and
scalar comes back bitwise (arrays are copied both ways, so neither object shares buffers with the other).
"""
from __future__ import annotations

import numpy as np

from models.network import AlphaLayer, TemporalNetwork
from toolchain.errors import ArtifactError
from toolchain.ir import AlphaOnce, Dense, Graph, Input, Node

#: graph metadata keys that carry TemporalNetwork fields (not entries of TemporalNetwork.metadata)
LATENCY_KEY = "latency"
ENCODING_KEY = "encoding"
_FIX = "build the graph with toolchain.ir_alpha.graph_from_temporal (or load the model with toolchain.artifact.load_onnx)"


def graph_from_temporal(net: TemporalNetwork) -> Graph:
    """The continuous-time IR graph of ``net`` (node names input, fc{k}, layer{k}); arrays are copied."""
    for key, value in ((LATENCY_KEY, net.latency), (ENCODING_KEY, net.encoding)):
        if key in net.metadata and net.metadata[key] != value:
            raise ArtifactError(
                f"TemporalNetwork.metadata[{key!r}] = {net.metadata[key]!r} differs from net.{key} = {value!r}; "
                f"the graph stores net.{key} under that key: rename the metadata entry"
            )
    nodes: dict[str, Node] = {"input": Input(net.layers[0].n_in)}
    edges = []
    prev = "input"
    for k, layer in enumerate(net.layers):
        nodes[f"fc{k}"] = Dense(np.array(layer.weights, dtype=np.float64, copy=True))
        nodes[f"layer{k}"] = AlphaOnce(
            n=layer.n_out, tau=net.tau, theta=net.theta,
            pulse_times=np.array(layer.pulse_times, dtype=np.float64, copy=True),
            pulse_weights=np.array(layer.pulse_weights, dtype=np.float64, copy=True),
        )
        edges += [(prev, f"fc{k}"), (f"fc{k}", f"layer{k}")]
        prev = f"layer{k}"
    metadata = dict(net.metadata)
    metadata[LATENCY_KEY] = float(net.latency)
    metadata[ENCODING_KEY] = net.encoding
    return Graph(nodes, tuple(edges), "continuous", metadata)


def temporal_from_graph(graph: Graph, source: str = "graph") -> TemporalNetwork:
    """The TemporalNetwork of a continuous-time chain Input -> Dense -> AlphaOnce -> Dense -> AlphaOnce ...

    Every AlphaOnce node must carry the same tau and theta (a TemporalNetwork shares them); the metadata must hold
    ``latency`` (a number, time units) and ``encoding`` (a string). Anything else raises ArtifactError naming the
    problem; ``source`` names the file or object in the message."""
    if graph.time != "continuous":
        raise ArtifactError(
            f"{source} is a {graph.time}-time graph; only continuous-time (alpha) graphs convert to a "
            f"TemporalNetwork: load it with toolchain.artifact_graph.load_graph and use an LIF-capable command"
        )
    try:
        chain = graph.chain()
    except ValueError as exc:
        raise ArtifactError(f"{source}: {exc}; {_FIX}") from None
    layers, taus, thetas = [], [], []
    expected_src = graph.input_name
    for syn_name, pop_name in chain:
        syn, pop = graph.nodes[syn_name], graph.nodes[pop_name]
        if not isinstance(syn, Dense) or not isinstance(pop, AlphaOnce):
            raise ArtifactError(f"{source}: {syn_name!r} -> {pop_name!r} is {type(syn).__name__} -> "
                                f"{type(pop).__name__}; an alpha network is a chain of Dense -> AlphaOnce; {_FIX}")
        if graph.sources(syn_name) != [expected_src]:
            raise ArtifactError(f"{source}: {syn_name!r} reads {graph.sources(syn_name)}, expected "
                                f"[{expected_src!r}]; an alpha network is a single chain; {_FIX}")
        try:
            layers.append(AlphaLayer(np.array(syn.weight, copy=True), np.array(pop.pulse_times, copy=True),
                                     np.array(pop.pulse_weights, copy=True)))
        except ValueError as exc:
            raise ArtifactError(f"{source}, {pop_name}: {exc}; {_FIX}") from None
        taus.append(pop.tau)
        thetas.append(pop.theta)
        expected_src = pop_name
    if not layers or len(graph.nodes) != 1 + 2 * len(layers):
        raise ArtifactError(f"{source}: the graph has nodes outside the Input -> Dense -> AlphaOnce chain; {_FIX}")
    if len(set(taus)) != 1 or len(set(thetas)) != 1:
        raise ArtifactError(f"{source}: AlphaOnce nodes have different tau {taus} / theta {thetas}; a "
                            f"TemporalNetwork shares one tau and theta across layers; {_FIX}")
    metadata = dict(graph.metadata)
    try:
        latency = metadata.pop(LATENCY_KEY)
        encoding = metadata.pop(ENCODING_KEY)
    except KeyError as exc:
        raise ArtifactError(f"{source}: graph metadata has no {exc.args[0]!r} entry (an alpha network needs "
                            f"latency and encoding); {_FIX}") from None
    if isinstance(latency, bool) or not isinstance(latency, (int, float)):
        raise ArtifactError(f"{source}: metadata latency = {latency!r} is not a number (time units); {_FIX}")
    if not isinstance(encoding, str):
        raise ArtifactError(f"{source}: metadata encoding = {encoding!r} is not a string; {_FIX}")
    try:
        return TemporalNetwork(tuple(layers), tau=taus[0], theta=thetas[0], latency=float(latency),
                               encoding=encoding, metadata=metadata)
    except ValueError as exc:
        raise ArtifactError(f"{source}: {exc}; {_FIX}") from None
