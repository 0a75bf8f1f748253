"""The trained temporal network as an ONNX file (schema: docs/artifact-format.md).

One node per layer, op ``AlphaLayer`` in the custom domain ``ai.snnc``. The graph input ``input_times``
is float64 (N, n_in) in model time units (inf = no spike); each node outputs its layer's first-spike
times, and every layer's output is a graph output. Parameters are float64 initializers
``layer{k}.weights`` (n_out, n_in), ``layer{k}.pulse_times`` (n_pulses,), ``layer{k}.pulse_weights``
(n_out, n_pulses). ``tau`` (1 / time unit) and ``theta`` are node attributes holding float64 scalar tensors
(an ONNX float attribute is only float32). Model-level ``metadata_props`` carry ``snnc.format_version``,
``snnc.latency`` (time units, Python float repr), ``snnc.encoding``, ``snnc.neuron`` (``alpha_once``) and
``snnc.meta.<key>`` = JSON of every ``TemporalNetwork.metadata`` entry.

Format version 2 (one op per IR node kind, any model family) is written by toolchain/artifact_graph.py; ``load_onnx``
also reads a v2 file of a continuous-time (alpha) network and refuses a v2 steps (LIF) file with a message naming
``toolchain.artifact_graph.load_graph``.

``load_onnx(save_onnx(net))`` reproduces ``net`` bitwise. Any malformed file raises ArtifactError; both directions
check the network with toolchain.validate.validate_network (ranges: docs/artifact-format.md), and a file that is
not ONNX at all (a PyTorch checkpoint, a compiled.npz, ...) is named as what it is.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models.network import AlphaLayer, TemporalNetwork
from toolchain.atomic import atomic_write_bytes
from toolchain.errors import ArtifactError
from toolchain.validate import validate_network

DOMAIN = "ai.snnc"
OP_TYPE = "AlphaLayer"
DOMAIN_VERSION = 1
FORMAT_VERSION = "1"
GRAPH_FORMAT_VERSION = "2"  # the IR graph format written by toolchain.artifact_graph.save_graph
NEURON_KIND = "alpha_once"
INPUT_NAME = "input_times"
ONNX_OPSET = 17
ONNX_IR_VERSION = 8
_PARAMS = ("weights", "pulse_times", "pulse_weights")
_META_PREFIX = "snnc.meta."
_FIX_RESAVE = "re-export the model with snnc (toolchain.artifact.save_onnx) or retrain it"


def _tensor_name(k: int, param: str) -> str:
    return f"layer{k}.{param}"


def _output_name(k: int) -> str:
    return f"layer{k}.spike_times"


def to_model_proto(net: TemporalNetwork) -> onnx.ModelProto:
    """Build the ONNX ModelProto for ``net`` (see the module docstring for the schema)."""
    nodes, inits, outputs = [], [], []
    prev = INPUT_NAME
    for k, layer in enumerate(net.layers):
        names = [_tensor_name(k, p) for p in _PARAMS]
        for name, arr in zip(names, (layer.weights, layer.pulse_times, layer.pulse_weights)):
            inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float64), name=name))
        out = _output_name(k)
        nodes.append(
            helper.make_node(
                OP_TYPE,
                [prev, *names],
                [out],
                name=f"layer{k}",
                domain=DOMAIN,
                tau=numpy_helper.from_array(np.array(net.tau, dtype=np.float64), name="tau"),
                theta=numpy_helper.from_array(np.array(net.theta, dtype=np.float64), name="theta"),
            )
        )
        outputs.append(helper.make_tensor_value_info(out, TensorProto.DOUBLE, ["N", layer.n_out]))
        prev = out
    graph = helper.make_graph(
        nodes,
        "snnc_temporal_network",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.DOUBLE, ["N", net.layers[0].n_in])],
        outputs,
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET), helper.make_opsetid(DOMAIN, DOMAIN_VERSION)],
        producer_name="snnc",
        ir_version=ONNX_IR_VERSION,
        doc_string="Temporal-coding spiking network (alpha-synapse once-spiking neurons); see docs/artifact-format.md",
    )
    props = {
        "snnc.format_version": FORMAT_VERSION,
        "snnc.latency": repr(float(net.latency)),
        "snnc.encoding": net.encoding,
        "snnc.neuron": NEURON_KIND,
    }
    for key, value in net.metadata.items():
        if not isinstance(key, str):
            raise ArtifactError(f"metadata key {key!r} is not a string; use string keys in TemporalNetwork.metadata")
        try:
            props[_META_PREFIX + key] = json.dumps(value, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ArtifactError(
                f"metadata entry {key!r} cannot be stored as JSON ({exc}); use plain numbers, strings, lists, dicts"
            ) from None
    helper.set_model_props(model, props)
    return model


def save_onnx(net: TemporalNetwork, path: str | os.PathLike) -> None:
    """Write ``net`` to ``path`` as an ONNX file, atomically; the model passes onnx.checker."""
    validate_network(net, f"model to be saved as {path}")
    model = to_model_proto(net)
    onnx.checker.check_model(model)
    atomic_write_bytes(path, model.SerializeToString())


def model_hash(path: str | os.PathLike) -> str:
    """sha256 hex digest of the file bytes (identifies an artifact in reports)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise ArtifactError(f"cannot read model file {path}: {exc.strerror}; check the path") from None


def double_tensor(inits: dict[str, onnx.TensorProto], name: str, ndim: int, source: str,
                  fix: str = _FIX_RESAVE) -> np.ndarray:
    """The finite float64 array of initializer ``name`` with ``ndim`` dimensions, or ArtifactError naming it."""
    if name not in inits:
        raise ArtifactError(f"{source}: missing tensor {name!r}; {fix}")
    tensor = inits[name]
    if tensor.data_type != TensorProto.DOUBLE:
        raise ArtifactError(
            f"{source}: tensor {name!r} has type {TensorProto.DataType.Name(tensor.data_type)}, "
            f"expected DOUBLE (float64); {fix}"
        )
    try:
        arr = numpy_helper.to_array(tensor)
    except Exception as exc:
        raise ArtifactError(f"{source}: tensor {name!r} cannot be decoded ({exc}); {fix}") from None
    if arr.ndim != ndim:
        raise ArtifactError(f"{source}: tensor {name!r} has shape {arr.shape}, expected {ndim}-D; {fix}")
    if not np.all(np.isfinite(arr)):
        raise ArtifactError(f"{source}: tensor {name!r} contains NaN or inf; retrain or repair the model")
    return arr


def _attr_scalar(node: onnx.NodeProto, name: str, where: str) -> float:
    for attr in node.attribute:
        if attr.name == name:
            if attr.type == onnx.AttributeProto.TENSOR:
                arr = numpy_helper.to_array(attr.t)
                if arr.size != 1:
                    raise ArtifactError(f"{where}: attribute {name!r} must be a scalar, got shape {arr.shape}; "
                                        f"{_FIX_RESAVE}")
                value = float(arr.reshape(()))
            elif attr.type == onnx.AttributeProto.FLOAT:
                value = float(attr.f)
            else:
                raise ArtifactError(f"{where}: attribute {name!r} must be a float64 scalar tensor; {_FIX_RESAVE}")
            if not math.isfinite(value):
                raise ArtifactError(f"{where}: attribute {name!r} is {value} (not finite); {_FIX_RESAVE}")
            return value
    raise ArtifactError(f"{where}: missing attribute {name!r} (neuron constant); {_FIX_RESAVE}")


_PASS_ONNX = "pass the model.onnx that `snnc train` writes (or export one with toolchain.artifact.save_onnx)"


def _zip_names(data: bytes) -> list[str]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return []


def sniff_non_onnx(data: bytes) -> str | None:
    """What ``data`` is when its first bytes show it is not ONNX (a PyTorch checkpoint, an npz, ...), else None."""
    if not data:
        return "an empty file (0 bytes)"
    if data[:4] == b"PK\x03\x04":
        names = _zip_names(data)
        if any(n.endswith("data.pkl") for n in names):
            return "a PyTorch checkpoint (torch.save zip archive)"
        if names and all(n.endswith(".npy") for n in names):
            if "meta.npy" in names:
                return "a compiled network (compiled.npz from `snnc compile`)"
            return "a numpy .npz archive"
        return "a zip archive" + (" (truncated)" if not names else "")
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle (e.g. a legacy PyTorch checkpoint)"
    if data[:2] == b"\x1f\x8b":
        return "a gzip file"
    if data[:6] == b"\x93NUMPY":
        return "a numpy .npy array"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "a PNG image"
    if data.lstrip()[:1] in (b"{", b"["):
        return "a JSON/text file"
    return None


def _parse(data: bytes, source: str) -> onnx.ModelProto:
    what = sniff_non_onnx(data)
    if what is not None:
        hint = ""
        if what.startswith("a PyTorch") or what.startswith("a Python pickle"):
            hint = " (the trainer writes model.onnx beside checkpoint.pt in its --out folder)"
        elif what.startswith("a compiled network"):
            hint = "; commands that take a compiled network (`snnc run`, `snnc verify`) accept this file"
        raise ArtifactError(f"{source} is not an ONNX model: it looks like {what}; {_PASS_ONNX}{hint}")
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ArtifactError(
            f"{source} is not a readable ONNX file (it may be truncated or not ONNX at all: {exc}); "
            f"export it again with `snnc train` / toolchain.artifact.save_onnx"
        ) from None
    if not model.HasField("graph") or not model.graph.node:
        raise ArtifactError(f"{source} is not an snnc model (empty or truncated ONNX graph); {_FIX_RESAVE}")
    return model


def _temporal_from_v2(model: onnx.ModelProto, source: str) -> TemporalNetwork:
    """A v2 (IR graph) file read as a TemporalNetwork: continuous (alpha) graphs only."""
    from toolchain.artifact_graph import graph_from_proto  # v2 reader; it imports this module
    from toolchain.ir_alpha import temporal_from_graph

    graph = graph_from_proto(model, source)
    if graph.time != "continuous":
        raise ArtifactError(
            f"{source} is a format-2 artifact of a {graph.time}-time (LIF) network, not an alpha network; this "
            f"command runs alpha (temporal) models only: load it with toolchain.artifact_graph.load_graph and use "
            f"a command that runs LIF models"
        )
    return validate_network(temporal_from_graph(graph, source), source)


def from_model_proto(model: onnx.ModelProto, source: str = "model") -> TemporalNetwork:
    """Validate an snnc ONNX model and rebuild the :class:`TemporalNetwork`; errors raise ArtifactError.

    Format 1 files are read directly; a format 2 (IR graph, toolchain/artifact_graph.py) file of a continuous-time
    alpha network is converted with toolchain.ir_alpha.temporal_from_graph; a format 2 steps (LIF) file is refused
    with a message naming toolchain.artifact_graph.load_graph."""
    props = {p.key: p.value for p in model.metadata_props}
    version = props.get("snnc.format_version")
    if version is None:
        raise ArtifactError(f"{source} has no snnc.format_version metadata: not an snnc artifact; {_FIX_RESAVE}")
    if version == GRAPH_FORMAT_VERSION:
        return _temporal_from_v2(model, source)
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{source} has snnc.format_version {version!r}, this snnc reads versions {FORMAT_VERSION!r} and "
            f"{GRAPH_FORMAT_VERSION!r}; upgrade snnc or re-export the model with this version"
        )
    neuron = props.get("snnc.neuron", NEURON_KIND)
    if neuron != NEURON_KIND:
        raise ArtifactError(f"{source} uses neuron kind {neuron!r}; only {NEURON_KIND!r} is supported")
    domains = {op.domain: op.version for op in model.opset_import}
    if DOMAIN not in domains:
        raise ArtifactError(f"{source} does not import the {DOMAIN!r} operator domain; {_FIX_RESAVE}")
    if domains[DOMAIN] != DOMAIN_VERSION:
        raise ArtifactError(
            f"{source} imports {DOMAIN} version {domains[DOMAIN]}, expected {DOMAIN_VERSION}; {_FIX_RESAVE}"
        )
    try:
        latency = float(props["snnc.latency"])
    except KeyError:
        raise ArtifactError(f"{source} has no snnc.latency metadata; {_FIX_RESAVE}") from None
    except ValueError:
        raise ArtifactError(f"{source}: snnc.latency {props['snnc.latency']!r} is not a number; {_FIX_RESAVE}") from None
    if not math.isfinite(latency):
        raise ArtifactError(f"{source}: snnc.latency is {latency} (not finite); {_FIX_RESAVE}")
    metadata = {}
    for key, value in props.items():
        if key.startswith(_META_PREFIX):
            try:
                metadata[key[len(_META_PREFIX):]] = json.loads(value)
            except ValueError:
                raise ArtifactError(f"{source}: metadata {key!r} is not valid JSON; {_FIX_RESAVE}") from None

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    input_names = [i.name for i in graph.input if i.name not in inits]
    if input_names != [INPUT_NAME]:
        raise ArtifactError(f"{source}: graph inputs are {input_names}, expected [{INPUT_NAME!r}]; {_FIX_RESAVE}")

    layers, taus, thetas = [], [], []
    prev = INPUT_NAME
    for k, node in enumerate(graph.node):
        where = f"{source}, node {k} ({node.name or node.op_type})"
        if node.domain != DOMAIN or node.op_type != OP_TYPE:
            raise ArtifactError(
                f"{where}: unknown operator {node.domain or 'ai.onnx'}::{node.op_type}; snnc models contain only "
                f"{DOMAIN}::{OP_TYPE} nodes. {_FIX_RESAVE}"
            )
        expected = [prev] + [_tensor_name(k, p) for p in _PARAMS]
        if list(node.input) != expected:
            raise ArtifactError(f"{where}: inputs are {list(node.input)}, expected {expected}; {_FIX_RESAVE}")
        if len(node.output) != 1:
            raise ArtifactError(f"{where}: must have exactly one output (spike times); {_FIX_RESAVE}")
        taus.append(_attr_scalar(node, "tau", where))
        thetas.append(_attr_scalar(node, "theta", where))
        arrays = [double_tensor(inits, name, ndim, source) for name, ndim in zip(expected[1:], (2, 1, 2))]
        w, pt, pw = arrays
        n_in_expected = layers[-1].n_out if layers else None
        if n_in_expected is not None and w.shape[1] != n_in_expected:
            raise ArtifactError(
                f"{source}: tensor {expected[1]!r} has shape {w.shape}, expected ({w.shape[0]}, {n_in_expected}) "
                f"to match the previous layer's {n_in_expected} neurons; {_FIX_RESAVE}"
            )
        if pw.shape != (w.shape[0], pt.shape[0]):
            raise ArtifactError(
                f"{source}: tensor {expected[3]!r} has shape {pw.shape}, expected (n_out, n_pulses) = "
                f"({w.shape[0]}, {pt.shape[0]}); {_FIX_RESAVE}"
            )
        try:
            layers.append(AlphaLayer(w, pt, pw))
        except ValueError as exc:
            raise ArtifactError(f"{where}: {exc}") from None
        prev = node.output[0]
    if len(set(taus)) != 1 or len(set(thetas)) != 1:
        raise ArtifactError(
            f"{source}: layers have different tau {taus} / theta {thetas}; snnc networks share one tau and theta"
        )
    try:
        net = TemporalNetwork(
            layers=tuple(layers),
            tau=taus[0],
            theta=thetas[0],
            latency=latency,
            encoding=props.get("snnc.encoding", "latency"),
            metadata=metadata,
        )
    except ValueError as exc:
        raise ArtifactError(f"{source}: {exc}") from None
    return validate_network(net, source)


def load_onnx(path: str | os.PathLike) -> TemporalNetwork:
    """Read and validate an snnc ONNX artifact; any problem raises ArtifactError naming it and the fix."""
    path = Path(path)
    model = read_model(path)
    net = from_model_proto(model, str(path))
    check_onnx(model, str(path))
    return net


def read_model(path: Path) -> onnx.ModelProto:
    """Read and parse an ONNX file; ArtifactError for a missing/unreadable file or one that is not ONNX."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"model file {path} does not exist; check the path or train one with `snnc train`") from None
    except OSError as exc:
        raise ArtifactError(f"cannot read model file {path}: {exc.strerror}; check the path and permissions") from None
    return _parse(data, str(path))


def check_onnx(model: onnx.ModelProto, source: str, fix: str = _FIX_RESAVE) -> None:
    """onnx.checker.check_model, its failure as an ArtifactError."""
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ArtifactError(f"{source} fails the ONNX checker ({str(exc).splitlines()[0]}); {fix}") from None
