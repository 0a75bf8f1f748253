"""ONNX artifact format version 2: any IR :class:`toolchain.ir.Graph` as an ONNX file (docs/artifact-format.md).

One custom op per IR node kind in the domain ``ai.snnc`` (version 2): ``Dense``, ``Conv2d``, ``ConvTranspose2d``,
``Flatten``, ``AlphaOnce``, ``LIF``, ``Readout``; the IR ``Input`` node is the graph input, named after the node. Every node's output value carries the
node's name, so the ONNX wiring is the IR's edges. Parameters are float64 initializers ``<node>.weight``,
``<node>.pulse_times``, ``<node>.pulse_weights``; float scalars (tau, theta, leak, v_th, dt_ms) are TENSOR
attributes holding a float64 scalar (an ONNX FLOAT attribute is float32 and would lose bits); sizes and flags are
INT attributes, shapes and (h, w) pairs (input_shape, stride, padding, output_padding) INTS, ``reset`` a STRING. Model ``metadata_props``: ``snnc.format_version`` = "2", ``snnc.time`` =
steps|continuous, ``snnc.meta.<key>`` = JSON of every ``Graph.metadata`` entry.

``load_graph(save_graph(g))`` equals ``g`` bitwise (:func:`toolchain.ir_equal.same_graph`). ``load_graph`` also
reads a format 1 file (toolchain/artifact.py) as the equivalent continuous graph. Both directions validate the
graph with toolchain.validate.validate_graph; every malformed file raises ArtifactError naming the problem.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from toolchain.artifact import (DOMAIN, FORMAT_VERSION, GRAPH_FORMAT_VERSION, ONNX_IR_VERSION, ONNX_OPSET,
                                check_onnx, double_tensor, from_model_proto, metadata_props, read_metadata_props,
                                read_model)
from toolchain.atomic import atomic_write_bytes
from toolchain.errors import ArtifactError
from toolchain.ir import LIF, AlphaOnce, Conv2d, ConvTranspose2d, Dense, Flatten, Graph, Input, Node, Readout
from toolchain.ir_alpha import graph_from_temporal
from toolchain.validate import validate_graph

DOMAIN_VERSION = 2
_FIX = "re-save the model with toolchain.artifact_graph.save_graph (or retrain it)"

# op type -> (float64 scalar attributes, int attributes, string attributes, parameter tensors (name, ndim))
_SCHEMA: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[tuple[str, int], ...]]] = {
    "Dense": ((), (), (), (("weight", 2),)),
    "AlphaOnce": (("tau", "theta"), ("n",), (), (("pulse_times", 1), ("pulse_weights", 2))),
    "LIF": (("leak", "v_th", "dt_ms"), ("n", "clamp", "strict"), ("reset",), ()),
    "Readout": (("leak",), ("n",), (), ()),
    "Conv2d": ((), (), (), (("weight", 4),)),
    "ConvTranspose2d": ((), (), (), (("weight", 4),)),
    "Flatten": ((), (), (), ()),
}
# op type -> INTS attributes (shapes and (h, w) pairs)
_INTS: dict[str, tuple[str, ...]] = {
    "Conv2d": ("input_shape", "stride", "padding"),
    "ConvTranspose2d": ("input_shape", "stride", "padding", "output_padding"),
    "Flatten": ("input_shape",),
}
_OP_OF = {Dense: "Dense", Conv2d: "Conv2d", ConvTranspose2d: "ConvTranspose2d", Flatten: "Flatten",
          AlphaOnce: "AlphaOnce", LIF: "LIF", Readout: "Readout"}


def _f64_attr(name: str, value: float) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, dtype=np.float64), name=name)


def _node_proto(name: str, node: Node, sources: list[str]) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    op = _OP_OF.get(type(node))
    if op is None:
        raise ArtifactError(f"node {name!r} has kind {type(node).__name__}, which format 2 cannot store; "
                            f"use {', '.join(_SCHEMA)} nodes")
    floats, ints, strings, params = _SCHEMA[op]
    attrs: dict = {a: _f64_attr(a, getattr(node, a)) for a in floats}
    attrs.update({a: int(getattr(node, a)) for a in ints})
    attrs.update({a: str(getattr(node, a)) for a in strings})
    attrs.update({a: [int(x) for x in getattr(node, a)] for a in _INTS.get(op, ())})
    inits = [numpy_helper.from_array(np.ascontiguousarray(getattr(node, p), dtype=np.float64), name=f"{name}.{p}")
             for p, _ in params]
    proto = helper.make_node(op, [*sources, *(t.name for t in inits)], [name], name=name, domain=DOMAIN, **attrs)
    return proto, inits


def _value_info(graph: Graph, name: str) -> onnx.ValueInfoProto:
    """Graph input / output type: steps spike trains UINT8 (N, T, n), Readout potentials DOUBLE (N, T, n);
    continuous spike times DOUBLE (N, n)."""
    node = graph.nodes[name]
    n = node.n_out
    if graph.time == "continuous":
        return helper.make_tensor_value_info(name, TensorProto.DOUBLE, ["N", n])
    elem = TensorProto.DOUBLE if isinstance(node, Readout) else TensorProto.UINT8
    return helper.make_tensor_value_info(name, elem, ["N", "T", n])


def graph_to_proto(graph: Graph) -> onnx.ModelProto:
    """The format 2 ONNX ModelProto of ``graph`` (no range validation: :func:`save_graph` validates)."""
    order = graph.order()
    input_name = graph.input_name
    nodes, inits = [], []
    for name in order:
        if name == input_name:
            continue
        proto, tensors = _node_proto(name, graph.nodes[name], graph.sources(name))
        nodes.append(proto)
        inits += tensors
    names = [t.name for t in inits]
    clash = set(names) & set(graph.nodes)
    if clash or len(set(names)) != len(names):
        raise ArtifactError(f"node names {sorted(clash) or names} collide with the parameter tensor names "
                            f"'<node>.<param>'; rename the nodes")
    outputs = [_value_info(graph, k) for k in graph.populations()]
    onnx_graph = helper.make_graph(nodes, "snnc_graph", [_value_info(graph, input_name)], outputs,
                                   initializer=inits)
    model = helper.make_model(
        onnx_graph,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET), helper.make_opsetid(DOMAIN, DOMAIN_VERSION)],
        producer_name="snnc",
        ir_version=ONNX_IR_VERSION,
        doc_string=f"snnc network IR ({graph.time} time); see docs/artifact-format.md, format version 2",
    )
    props = {"snnc.format_version": GRAPH_FORMAT_VERSION, "snnc.time": graph.time}
    props.update(metadata_props(graph.metadata, "Graph.metadata"))
    helper.set_model_props(model, props)
    return model


def save_graph(graph: Graph, path: str | os.PathLike) -> None:
    """Validate ``graph`` and write it to ``path`` as a format 2 ONNX file, atomically (passes onnx.checker)."""
    validate_graph(graph, f"model to be saved as {path}")
    model = graph_to_proto(graph)
    check_onnx(model, f"model to be saved as {path}", fix="report this as an snnc bug")
    atomic_write_bytes(path, model.SerializeToString())


# ---- reading -------------------------------------------------------------------------------------------------------

def _attrs(node: onnx.NodeProto, op: str, where: str) -> dict:
    floats, ints, strings, _ = _SCHEMA[op]
    want = {**{a: onnx.AttributeProto.TENSOR for a in floats}, **{a: onnx.AttributeProto.INT for a in ints},
            **{a: onnx.AttributeProto.STRING for a in strings},
            **{a: onnx.AttributeProto.INTS for a in _INTS.get(op, ())}}
    out: dict = {}
    for attr in node.attribute:
        if attr.name not in want:
            raise ArtifactError(f"{where}: unknown attribute {attr.name!r} for {DOMAIN}::{op} (expected "
                                f"{sorted(want)}); {_FIX}")
        if attr.name in out:
            raise ArtifactError(f"{where}: attribute {attr.name!r} appears twice; {_FIX}")
        kind = want[attr.name]
        if attr.type != kind:
            raise ArtifactError(f"{where}: attribute {attr.name!r} has type "
                                f"{onnx.AttributeProto.AttributeType.Name(attr.type)}, expected "
                                f"{onnx.AttributeProto.AttributeType.Name(kind)}"
                                f"{' (a float64 scalar)' if kind == onnx.AttributeProto.TENSOR else ''}; {_FIX}")
        if kind == onnx.AttributeProto.TENSOR:
            if attr.t.data_type != TensorProto.DOUBLE:
                raise ArtifactError(f"{where}: attribute {attr.name!r} has type "
                                    f"{TensorProto.DataType.Name(attr.t.data_type)}, expected DOUBLE (float64); "
                                    f"{_FIX}")
            try:
                arr = numpy_helper.to_array(attr.t)
            except Exception as exc:
                raise ArtifactError(f"{where}: attribute {attr.name!r} cannot be decoded ({exc}); {_FIX}") from None
            if arr.size != 1:
                raise ArtifactError(f"{where}: attribute {attr.name!r} must be a scalar, got shape {arr.shape}; "
                                    f"{_FIX}")
            value = float(arr.reshape(()))
            if not np.isfinite(value):
                raise ArtifactError(f"{where}: attribute {attr.name!r} is {value} (not finite); {_FIX}")
            out[attr.name] = value
        elif kind == onnx.AttributeProto.INT:
            out[attr.name] = int(attr.i)
        elif kind == onnx.AttributeProto.INTS:
            out[attr.name] = tuple(int(x) for x in attr.ints)
        else:
            out[attr.name] = attr.s.decode("utf-8", errors="replace")
    missing = sorted(set(want) - set(out))
    if missing:
        raise ArtifactError(f"{where}: missing attribute(s) {missing} of {DOMAIN}::{op}; {_FIX}")
    for flag in ("clamp", "strict"):
        if flag in out and out[flag] not in (0, 1):
            raise ArtifactError(f"{where}: attribute {flag!r} = {out[flag]} must be 0 or 1; {_FIX}")
    return out


def _make_node(op: str, attrs: dict, arrays: dict) -> Node:
    if op == "Dense":
        return Dense(arrays["weight"])
    if op == "AlphaOnce":
        return AlphaOnce(attrs["n"], attrs["tau"], attrs["theta"], arrays["pulse_times"], arrays["pulse_weights"])
    if op == "LIF":
        return LIF(attrs["n"], leak=attrs["leak"], v_th=attrs["v_th"], reset=attrs["reset"],
                   clamp=bool(attrs["clamp"]), strict=bool(attrs["strict"]), dt_ms=attrs["dt_ms"])
    if op == "Conv2d":
        return Conv2d(arrays["weight"], attrs["input_shape"], attrs["stride"], attrs["padding"])
    if op == "ConvTranspose2d":
        return ConvTranspose2d(arrays["weight"], attrs["input_shape"], attrs["stride"], attrs["padding"],
                               attrs["output_padding"])
    if op == "Flatten":
        return Flatten(attrs["input_shape"])
    return Readout(attrs["n"], leak=attrs["leak"])


def _input_node(model: onnx.ModelProto, time: str, source: str) -> tuple[str, Input]:
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ArtifactError(f"{source}: graph inputs are {[i.name for i in inputs]}, expected exactly one (the "
                            f"IR Input node); {_FIX}")
    vi = inputs[0]
    rank = 3 if time == "steps" else 2
    dims = list(vi.type.tensor_type.shape.dim) if vi.type.HasField("tensor_type") else []
    what = "(N, T, n_in) spike trains" if time == "steps" else "(N, n_in) spike times"
    if len(dims) != rank or not dims[-1].HasField("dim_value") or dims[-1].dim_value < 1:
        raise ArtifactError(f"{source}: graph input {vi.name!r} must be {rank}-D {what} with a fixed n_in >= 1; "
                            f"{_FIX}")
    return vi.name, Input(int(dims[-1].dim_value))


def graph_from_proto(model: onnx.ModelProto, source: str = "model") -> Graph:
    """Validate an snnc ONNX model (format 2, or format 1 = a continuous alpha graph) and rebuild its Graph."""
    props = {p.key: p.value for p in model.metadata_props}
    version = props.get("snnc.format_version")
    if version == FORMAT_VERSION:
        return validate_graph(graph_from_temporal(from_model_proto(model, source)), source)
    if version is None:
        raise ArtifactError(f"{source} has no snnc.format_version metadata: not an snnc artifact; {_FIX}")
    if version != GRAPH_FORMAT_VERSION:
        raise ArtifactError(f"{source} has snnc.format_version {version!r}, this snnc reads versions "
                            f"{FORMAT_VERSION!r} and {GRAPH_FORMAT_VERSION!r}; upgrade snnc or re-save the model "
                            f"with this version")
    time = props.get("snnc.time")
    if time not in ("steps", "continuous"):
        raise ArtifactError(f"{source}: snnc.time is {time!r}, expected 'steps' or 'continuous'; {_FIX}")
    domains = {op.domain: op.version for op in model.opset_import}
    if domains.get(DOMAIN) != DOMAIN_VERSION:
        got = "no import" if DOMAIN not in domains else f"version {domains[DOMAIN]}"
        raise ArtifactError(f"{source} must import the {DOMAIN!r} operator domain version {DOMAIN_VERSION} "
                            f"(found {got}); {_FIX}")
    input_name, input_node = _input_node(model, time, source)
    inits = {t.name: t for t in model.graph.initializer}
    nodes: dict[str, Node] = {input_name: input_node}
    edges: list[tuple[str, str]] = []
    used: set[str] = set()
    for k, node in enumerate(model.graph.node):
        where = f"{source}, node {k} ({node.name or node.op_type})"
        if node.domain != DOMAIN or node.op_type not in _SCHEMA:
            raise ArtifactError(f"{where}: unknown operator {node.domain or 'ai.onnx'}::{node.op_type}; format 2 "
                                f"holds only {', '.join(f'{DOMAIN}::{o}' for o in _SCHEMA)} nodes; upgrade snnc if a "
                                f"newer snnc wrote the file, else {_FIX}")
        name = node.name
        if not name or name in nodes or name in inits:
            raise ArtifactError(f"{where}: node name {name!r} is empty or not unique; {_FIX}")
        if list(node.output) != [name]:
            raise ArtifactError(f"{where}: outputs are {list(node.output)}, expected [{name!r}] (a node's output "
                                f"value carries its name); {_FIX}")
        params = _SCHEMA[node.op_type][3]
        n_src = len(node.input) - len(params)
        sources, tensor_names = list(node.input[:max(n_src, 0)]), list(node.input[max(n_src, 0):])
        expected = [f"{name}.{p}" for p, _ in params]
        one_source = node.op_type in ("Dense", *_INTS)  # synapses and views read exactly one node
        if n_src < 1 or tensor_names != expected or (one_source and n_src != 1):
            raise ArtifactError(f"{where}: inputs are {list(node.input)}, expected "
                                f"{['<source>', *expected]}; {_FIX}")
        for s in sources:
            if s not in nodes:
                raise ArtifactError(f"{where}: input {s!r} is not the graph input or an earlier node (nodes must "
                                    f"be in topological order); {_FIX}")
        attrs = _attrs(node, node.op_type, where)
        arrays = {p: double_tensor(inits, f"{name}.{p}", ndim, source, _FIX) for p, ndim in params}
        used.update(expected)
        try:
            nodes[name] = _make_node(node.op_type, attrs, arrays)
        except ValueError as exc:
            raise ArtifactError(f"{where}: {exc}; {_FIX}") from None
        edges += [(s, name) for s in sources]
    unused = sorted(set(inits) - used)
    if unused:
        raise ArtifactError(f"{source}: tensor(s) {unused} belong to no node; {_FIX}")
    try:
        graph = Graph(nodes, tuple(edges), time, read_metadata_props(props, source, _FIX))
    except ValueError as exc:
        raise ArtifactError(f"{source}: {exc}; {_FIX}") from None
    return validate_graph(graph, source)


def load_graph(path: str | os.PathLike) -> Graph:
    """Read and validate an snnc ONNX artifact (format 2, or format 1 as its continuous alpha graph) as a Graph;
    any problem raises ArtifactError naming it and the fix."""
    path = Path(path)
    model = read_model(path)
    graph = graph_from_proto(model, str(path))
    check_onnx(model, str(path), _FIX)
    return graph
