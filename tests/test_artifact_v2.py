"""ONNX artifact format 2 (toolchain/artifact_graph.py): IR graphs of every node kind, bitwise round trips, the
alpha <-> IR converters (toolchain/ir_alpha.py), v1 compatibility, and a clear ArtifactError for malformed files."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.network import AlphaLayer, TemporalNetwork
from toolchain.artifact import DOMAIN, load_onnx, save_onnx
from toolchain.artifact_graph import DOMAIN_VERSION, graph_to_proto, load_graph, save_graph
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


# ---- alpha model <-> IR ----------------------------------------------------------------------------------------------

def test_alpha_converters_are_exact_inverses_on_a_trained_size_net():
    """784-32-784 with 10 pulses per layer (the MNIST hidden-32 shape of [A]/[B]): bitwise both ways, no sharing."""
    rng = np.random.default_rng(3)
    pt0, pt1 = np.sort(rng.uniform(0, 1, 10)), np.sort(rng.uniform(0.5, 2, 10))
    l0 = AlphaLayer(rng.normal(0, 0.05, (32, 784)), pt0, rng.normal(0, 1, (32, 10)))
    l1 = AlphaLayer(rng.normal(0, 0.3, (784, 32)), pt1, rng.normal(0, 1, (784, 10)))
    net = TemporalNetwork((l0, l1), tau=1.0 / 0.7, theta=np.pi / 3, latency=1.0 + 2 ** -40,
                          metadata={"dataset": "mnist", "hyperparameters": {"hidden": 32, "lr": 1e-3}})
    g = graph_from_temporal(net)
    assert g.order() == ["input", "fc0", "layer0", "fc1", "layer1"] and g.time == "continuous"
    assert g.metadata["latency"] == net.latency and g.metadata["encoding"] == "latency"
    assert g.nodes["layer1"].tau == net.tau and g.nodes["layer1"].pulse_weights.shape == (784, 10)
    assert not np.shares_memory(g.nodes["fc0"].weight, l0.weights) and l0.weights.flags.writeable
    back = temporal_from_graph(g)
    assert_same_net(net, back)
    assert same_graph(graph_from_temporal(back), g)


def test_v2_alpha_file_round_trips_and_loads_with_load_onnx(tmp_path):
    net = alpha_net()
    g = graph_from_temporal(net)
    save_graph(g, tmp_path / "v2.onnx")
    assert graph_differences(load_graph(tmp_path / "v2.onnx"), g) == []
    assert_same_net(load_onnx(tmp_path / "v2.onnx"), net)          # the alpha chain reads v2 alpha files
    model = onnx.load(str(tmp_path / "v2.onnx"))
    assert [n.op_type for n in model.graph.node] == ["Dense", "AlphaOnce", "Dense", "AlphaOnce"]
    assert {p.key: p.value for p in model.metadata_props}["snnc.time"] == "continuous"
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.DOUBLE


def test_v1_file_loads_as_the_equivalent_continuous_graph(tmp_path):
    net = alpha_net()
    save_onnx(net, tmp_path / "v1.onnx")
    assert graph_differences(load_graph(tmp_path / "v1.onnx"), graph_from_temporal(net)) == []
    assert_same_net(load_onnx(tmp_path / "v1.onnx"), net)          # v1 reading unchanged


def test_v2_alpha_file_compiles_to_the_same_integers_as_v1(tmp_path):
    from toolchain.compiler import compile_file

    net = alpha_net(hidden=6)
    save_onnx(net, tmp_path / "v1.onnx")
    save_graph(graph_from_temporal(net), tmp_path / "v2.onnx")
    a, b = compile_file(tmp_path / "v1.onnx"), compile_file(tmp_path / "v2.onnx")
    assert (a.steps_per_unit, a.window) == (b.steps_per_unit, b.window)
    for la, lb in zip(a.layers, b.layers):
        for f in ("weights", "pulse_weights", "pulse_steps", "vth"):
            assert np.array_equal(getattr(la, f), getattr(lb, f)), f
        assert (la.weight_exp, la.du, la.dv, la.pulse_weight_exp) == (lb.weight_exp, lb.du, lb.dv, lb.pulse_weight_exp)


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    """A tiny temporal model trained by `snnc train temporal` on the bundled subset (about 2 s)."""
    from toolchain.cli import main

    out = tmp_path_factory.mktemp("trained") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SNNC_DATA", raising=False)
        assert main(["train", "temporal", "--dataset", "mnist", "--limit-train", "20", "--limit-eval", "10",
                     "--epochs", "1", "--hidden", "4", "--n-pulses", "3", "--batch-size", "10", "--threads", "1",
                     "--no-progress", "--out", str(out)]) == 0
    return out / "model.onnx"


def test_trained_model_survives_v1_to_v2_to_alpha(trained_model, tmp_path):
    net = load_onnx(trained_model)
    g = load_graph(trained_model)                                   # v1 file as a graph
    assert g.metadata["hyperparameters"] == net.metadata["hyperparameters"]
    save_graph(g, tmp_path / "v2.onnx")
    assert_same_net(load_onnx(tmp_path / "v2.onnx"), net)
    assert_same_net(temporal_from_graph(load_graph(tmp_path / "v2.onnx")), net)


# ---- malformed files and graphs: one ArtifactError naming the problem ------------------------------------------------

def _expect(tmp_path, model: onnx.ModelProto, *words: str) -> str:
    path = tmp_path / "bad.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ArtifactError) as err:
        load_graph(path)
    msg = str(err.value)
    for w in words:
        assert w in msg, msg
    return msg


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


def _set_attr(node: onnx.NodeProto, name: str, attr: onnx.AttributeProto | None) -> None:
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep + ([attr] if attr is not None else []))


def _set_tensor(model: onnx.ModelProto, name: str, arr: np.ndarray) -> None:
    for t in model.graph.initializer:
        if t.name == name:
            t.CopyFrom(numpy_helper.from_array(arr, name=name))
            return
    raise KeyError(name)


def test_not_onnx_truncated_and_missing_files(tmp_path):
    import zipfile

    p = tmp_path / "ckpt.onnx"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("archive/data.pkl", b"x")
    with pytest.raises(ArtifactError, match="PyTorch checkpoint"):
        load_graph(p)
    good = graph_to_proto(lif_graph()).SerializeToString()
    for cut in (len(good) // 2, len(good) - 3, 10):
        p.write_bytes(good[:cut])
        with pytest.raises(ArtifactError):
            load_graph(p)
    with pytest.raises(ArtifactError, match="does not exist"):
        load_graph(tmp_path / "nope.onnx")


def _drop_tensor(m, name):
    keep = [t for t in m.graph.initializer if t.name != name]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)


def _swap_nodes(m):
    nodes = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend([nodes[1], nodes[0]] + nodes[2:])


MUTATIONS = {
    "missing tensor": (lambda m: _drop_tensor(m, "fc1.weight"), ["missing tensor", "'fc1.weight'", "save_graph"]),
    "float32 tensor": (lambda m: _set_tensor(m, "fc0.weight", np.zeros((5, 8), np.float32)), ["fc0.weight", "DOUBLE"]),
    "nan": (lambda m: _set_tensor(m, "fc1.weight", np.full((8, 5), np.nan)), ["fc1.weight", "NaN or inf"]),
    "rank": (lambda m: _set_tensor(m, "fc0.weight", np.zeros(40)), ["fc0.weight", "2-D"]),
    "size chain": (lambda m: _set_tensor(m, "fc1.weight", np.zeros((8, 4))), ["'fc1'", "expects 4 inputs"]),
    "huge weight": (lambda m: _set_tensor(m, "fc0.weight", np.full((5, 8), 1e300)),
                    ["fc0.weight[0, 0]", "outside the allowed range"]),
    "unknown op": (lambda m: setattr(_node(m, "layer0"), "op_type", "Relu"), ["unknown operator", "Relu"]),
    "other domain": (lambda m: setattr(_node(m, "fc0"), "domain", "com.other"), ["unknown operator", "com.other"]),
    "missing attribute": (lambda m: _set_attr(_node(m, "layer0"), "v_th", None), ["missing attribute", "v_th"]),
    "float32 attribute": (lambda m: _set_attr(_node(m, "layer0"), "leak", helper.make_attribute("leak", 0.9)),
                          ["'leak'", "FLOAT", "float64"]),
    "unknown attribute": (lambda m: _set_attr(_node(m, "layer0"), "refractory", helper.make_attribute("refractory", 2)),
                          ["unknown attribute", "refractory"]),
    "leak above 1": (lambda m: _set_attr(_node(m, "layer0"), "leak", helper.make_attribute(
        "leak", numpy_helper.from_array(np.array(1.5), "leak"))), ["leak must lie in (0, 1]"]),
    "zero threshold": (lambda m: _set_attr(_node(m, "layer1"), "v_th", helper.make_attribute(
        "v_th", numpy_helper.from_array(np.array(0.0), "v_th"))), ["v_th must be"]),
    "tiny threshold": (lambda m: _set_attr(_node(m, "layer1"), "v_th", helper.make_attribute(
        "v_th", numpy_helper.from_array(np.array(1e-300), "v_th"))), ["layer1.v_th", "outside the allowed range"]),
    "bad reset": (lambda m: _set_attr(_node(m, "layer0"), "reset", helper.make_attribute("reset", "hold")),
                  ["reset must be"]),
    "bad flag": (lambda m: _set_attr(_node(m, "layer0"), "clamp", helper.make_attribute("clamp", 7)),
                 ["'clamp' = 7", "0 or 1"]),
    "neuron count": (lambda m: _set_attr(_node(m, "layer0"), "n", helper.make_attribute("n", 6)),
                     ["'fc0' has 5 outputs", "'layer0' has 6"]),
    "order": (_swap_nodes, ["not the graph input or an earlier node", "topological"]),
    "output name": (lambda m: _node(m, "fc0").output.__setitem__(0, "fc0.out"), ["outputs are", "'fc0.out'"]),
    "inputs": (lambda m: _node(m, "fc0").input.__setitem__(1, "fc1.weight"), ["inputs are", "'fc0.weight'"]),
    "unused tensor": (lambda m: m.graph.initializer.append(numpy_helper.from_array(np.zeros(2), "extra")),
                      ["'extra'", "belong to no node"]),
    "time": (lambda m: helper.set_model_props(m, {"snnc.format_version": "2", "snnc.time": "ticks"}),
             ["snnc.time", "'ticks'"]),
    "version": (lambda m: helper.set_model_props(m, {"snnc.format_version": "3"}), ["'3'", "upgrade snnc"]),
    "no version": (lambda m: m.ClearField("metadata_props"), ["snnc.format_version", "not an snnc artifact"]),
    "domain version": (lambda m: [o.__setattr__("version", 1) for o in m.opset_import if o.domain == DOMAIN],
                       ["ai.snnc", "version 2", "found version 1"]),
    "bad json": (lambda m: helper.set_model_props(m, {"snnc.format_version": "2", "snnc.time": "steps",
                                                      "snnc.meta.x": "{oops"}), ["'snnc.meta.x'", "not valid JSON"]),
    "input rank": (lambda m: m.graph.input[0].CopyFrom(helper.make_tensor_value_info("input", TensorProto.UINT8,
                                                                                     ["N", 8])),
                   ["graph input 'input'", "3-D"]),
}


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_malformed_steps_file_is_refused_by_name(tmp_path, case):
    mutate, words = MUTATIONS[case]
    model = graph_to_proto(lif_graph())
    mutate(model)
    _expect(tmp_path, model, *words)


def test_malformed_alpha_graph_files(tmp_path):
    g = graph_from_temporal(alpha_net())
    model = graph_to_proto(g)
    _set_attr(_node(model, "layer1"), "tau", helper.make_attribute("tau", numpy_helper.from_array(np.array(0.5), "tau")))
    _expect(tmp_path, model, "different tau")
    model = graph_to_proto(Graph(g.nodes, g.edges, g.time, {"encoding": "latency"}))
    _expect(tmp_path, model, "no 'latency' entry")
    model = graph_to_proto(Graph(g.nodes, g.edges, g.time, {**g.metadata, "latency": -1.0}))
    _expect(tmp_path, model, "latency = -1", "outside the allowed range")
    model = graph_to_proto(g)
    _set_tensor(model, "layer0.pulse_times", np.array([0.1, 0.45, 1e9]))
    _expect(tmp_path, model, "layer0.pulse_times[2]", "outside the allowed range")
    model = graph_to_proto(g)
    _set_tensor(model, "layer0.pulse_weights", np.zeros((5, 2)))
    _expect(tmp_path, model, "pulse_weights has shape")
    with pytest.raises(ArtifactError, match="an alpha network is a single chain"):
        temporal_from_graph(_with_extra_layer(g))


def _with_extra_layer(g: Graph) -> Graph:
    """An alpha graph with a second population hanging off the input: valid IR, not a TemporalNetwork."""
    node = g.nodes["layer0"]
    extra = {"fcx": Dense(np.ones((node.n, 7))), "layerx": node}
    return Graph({**g.nodes, **extra}, g.edges + (("input", "fcx"), ("fcx", "layerx")), g.time, g.metadata)


def test_validate_graph_checks_structure_and_save_graph_writes_nothing_bad(tmp_path):
    direct = Graph({"input": Input(2), "l": LIF(2, 0.9)}, (("input", "l"),), "steps")   # no synapse in between
    with pytest.raises(ArtifactError, match="fed directly by 'input'"):
        validate_graph(direct)
    with pytest.raises(ArtifactError, match="no neuron population"):
        validate_graph(Graph({"input": Input(2)}, (), "steps"))
    g = lif_graph()
    huge = Graph(dict(g.nodes, fc1=Dense(np.full((8, 5), -1e7))), g.edges, g.time, g.metadata)
    with pytest.raises(ArtifactError, match=r"fc1.weight\[0, 0\] = -1e\+07 is outside the allowed range"):
        save_graph(huge, tmp_path / "m.onnx")
    with pytest.raises(ArtifactError, match="metadata entry 'x'"):
        save_graph(Graph(g.nodes, g.edges, g.time, {"x": object()}), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ArtifactError, match="expected a toolchain.ir.Graph"):
        validate_graph(alpha_net())


def test_graph_with_a_skip_connection_round_trips(tmp_path):
    """Format 2 stores any feed-forward IR graph, not only chains: a population fed by two Dense nodes."""
    rng = np.random.default_rng(5)
    nodes = {"x": Input(4), "fa": Dense(rng.normal(size=(3, 4))), "a": LIF(3, 0.8),
             "fb": Dense(rng.normal(size=(2, 3))), "skip": Dense(rng.normal(size=(2, 4))), "b": Readout(2, 0.5)}
    edges = (("x", "fa"), ("fa", "a"), ("a", "fb"), ("fb", "b"), ("x", "skip"), ("skip", "b"))
    g = Graph(nodes, edges, "steps", {})
    save_graph(g, tmp_path / "skip.onnx")
    back = load_graph(tmp_path / "skip.onnx")
    assert same_graph(g, back) and back.input_name == "x"
    assert list(onnx.load(str(tmp_path / "skip.onnx")).graph.node[-1].input) == ["fb", "skip"]


def test_node_names_that_collide_with_parameter_tensors_are_refused():
    rng = np.random.default_rng(0)
    g = Graph({"input": Input(2), "fc0": Dense(rng.normal(size=(2, 2))), "fc0.weight": LIF(2, 0.9)},
              (("input", "fc0"), ("fc0", "fc0.weight")), "steps")
    with pytest.raises(ArtifactError, match="collide with the parameter tensor names"):
        graph_to_proto(g)
