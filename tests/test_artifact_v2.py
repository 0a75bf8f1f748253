"""ONNX artifact format 2 (toolchain/artifact_graph.py): IR graphs of every node kind, bitwise round trips, the
alpha <-> IR converters (toolchain/ir_alpha.py), v1 compatibility, and a clear ArtifactError for malformed files."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.network import AlphaLayer, TemporalNetwork
from toolchain.artifact import DOMAIN, load_onnx, save_onnx, to_model_proto
from toolchain.artifact_graph import DOMAIN_VERSION, graph_from_proto, graph_to_proto, load_graph, save_graph
from toolchain.errors import ArtifactError
from toolchain.ir import LIF, Dense, Graph, Input, Readout, lif_chain
from toolchain.ir_alpha import graph_from_temporal, temporal_from_graph
from toolchain.ir_equal import graph_differences, same_graph
from toolchain.validate import validate_graph


def lif_graph(seed: int = 0) -> Graph:
    """A Roy-style 8-5-8 clamped LIF autoencoder plus a Readout layer, with awkward float values."""
    rng = np.random.default_rng(seed)
    return lif_chain(
        [rng.uniform(-0.1, 0.1, (5, 8)), rng.normal(size=(8, 5)), rng.normal(size=(3, 8))],
        [LIF(5, leak=0.9, clamp=True), LIF(8, leak=1.0 - 1e-13, v_th=0.7 + 1e-15, reset="subtract", strict=True,
                                          dt_ms=0.1),
         Readout(3, leak=1.0 / 3.0)],
        {"dataset": "mnist", "steps": 15, "encoding": "bernoulli", "max_rate_hz": 300.0, "history": [0.5, 0.25]},
    )


def alpha_net(seed: int = 0, hidden: int = 5) -> TemporalNetwork:
    rng = np.random.default_rng(seed)
    l0 = AlphaLayer(rng.normal(size=(hidden, 7)), np.array([0.1, 0.45, 0.9]), rng.normal(size=(hidden, 3)))
    l1 = AlphaLayer(rng.normal(size=(7, hidden)), np.array([0.3, 0.6]), rng.normal(size=(7, 2)))
    return TemporalNetwork((l0, l1), tau=0.172556, theta=0.834236 + 1e-13, latency=1.0 / 3.0,
                           metadata={"preset": "noise=0,latency=1,hidden=5", "val_mse": [0.1, 0.05], "epochs": 3})


def assert_same_net(a: TemporalNetwork, b: TemporalNetwork) -> None:
    assert (a.tau, a.theta, a.latency, a.encoding) == (b.tau, b.theta, b.latency, b.encoding)
    assert a.metadata == b.metadata and len(a.layers) == len(b.layers)
    for x, y in zip(a.layers, b.layers):
        for name in ("weights", "pulse_times", "pulse_weights"):
            u, v = getattr(x, name), getattr(y, name)
            assert u.dtype == v.dtype == np.float64 and u.shape == v.shape and u.tobytes() == v.tobytes()


# ---- round trips ---------------------------------------------------------------------------------------------------

def test_steps_graph_round_trip_is_bitwise(tmp_path):
    g = lif_graph()
    path = tmp_path / "lif.onnx"
    save_graph(g, path)
    back = load_graph(path)
    assert graph_differences(g, back) == []
    assert back.edges == g.edges and list(back.nodes) == list(g.nodes) and back.time == "steps"
    assert back.metadata == g.metadata
    assert back.nodes["layer1"].reset == "subtract" and back.nodes["layer1"].strict is True
    assert back.nodes["layer1"].v_th == 0.7 + 1e-15 and back.nodes["layer2"].leak == 1.0 / 3.0
    save_graph(back, tmp_path / "again.onnx")
    assert (tmp_path / "again.onnx").read_bytes() == path.read_bytes()
    onnx.checker.check_model(onnx.load(str(path)))


def test_same_graph_sees_one_changed_bit():
    g = lif_graph()
    w = g.nodes["fc1"].weight.copy()
    w[3, 2] = np.nextafter(w[3, 2], np.inf)
    nodes = dict(g.nodes, fc1=Dense(w))
    assert not same_graph(g, Graph(nodes, g.edges, g.time, g.metadata))
    nodes = dict(g.nodes, layer0=LIF(5, leak=np.nextafter(0.9, 0), clamp=True))
    assert graph_differences(g, Graph(nodes, g.edges, g.time, g.metadata)) == [
        "layer0.leak: 0.9 vs 0.8999999999999999"]
    assert not same_graph(g, Graph(g.nodes, g.edges, g.time, {**g.metadata, "steps": 16}))


def test_schema_of_a_steps_graph():
    model = graph_to_proto(lif_graph())
    props = {p.key: p.value for p in model.metadata_props}
    assert props["snnc.format_version"] == "2" and props["snnc.time"] == "steps"
    assert props["snnc.meta.steps"] == "15"
    assert {(o.domain, o.version) for o in model.opset_import} >= {(DOMAIN, DOMAIN_VERSION)}
    assert [(n.op_type, n.name) for n in model.graph.node] == [
        ("Dense", "fc0"), ("LIF", "layer0"), ("Dense", "fc1"), ("LIF", "layer1"), ("Dense", "fc2"),
        ("Readout", "layer2")]
    assert list(model.graph.node[0].input) == ["input", "fc0.weight"]
    assert list(model.graph.node[1].input) == ["fc0"] and list(model.graph.node[1].output) == ["layer0"]
    assert [i.name for i in model.graph.input] == ["input"]
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert [o.name for o in model.graph.output] == ["layer0", "layer1", "layer2"]
    attrs = {a.name: a for a in model.graph.node[1].attribute}
    assert attrs["leak"].t.data_type == TensorProto.DOUBLE and attrs["reset"].s == b"zero" and attrs["clamp"].i == 1
    assert {t.name: t.data_type for t in model.graph.initializer} == {
        "fc0.weight": TensorProto.DOUBLE, "fc1.weight": TensorProto.DOUBLE, "fc2.weight": TensorProto.DOUBLE}


def test_load_onnx_refuses_a_steps_file_naming_the_fix(tmp_path):
    save_graph(lif_graph(), tmp_path / "lif.onnx")
    with pytest.raises(ArtifactError, match="steps-time .*load_graph"):
        load_onnx(tmp_path / "lif.onnx")
