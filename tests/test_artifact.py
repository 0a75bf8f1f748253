"""ONNX artifact: round trip, schema, and a clear ArtifactError for every kind of malformed file."""
from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.network import AlphaLayer, TemporalNetwork
from toolchain.artifact import DOMAIN, OP_TYPE, load_onnx, model_hash, save_onnx, to_model_proto
from toolchain.errors import ArtifactError


def _net(seed: int = 0) -> TemporalNetwork:
    rng = np.random.default_rng(seed)
    l0 = AlphaLayer(rng.normal(size=(5, 7)), np.array([0.1, 0.45, 0.9]), rng.normal(size=(5, 3)))
    l1 = AlphaLayer(rng.normal(size=(7, 5)), np.array([0.3, 0.6]), rng.normal(size=(7, 2)))
    return TemporalNetwork(
        (l0, l1), tau=0.172556, theta=0.834236 + 1e-13, latency=1.0 / 3.0,
        metadata={"preset": "noise=0,latency=1,hidden=5", "val_mse": [0.1, 0.05], "epochs": 3},
    )


def test_round_trip_is_bitwise(tmp_path):
    net = _net()
    path = tmp_path / "m.onnx"
    save_onnx(net, path)
    onnx.checker.check_model(onnx.load(str(path)))
    back = load_onnx(path)
    assert (back.tau, back.theta, back.latency, back.encoding) == (net.tau, net.theta, net.latency, net.encoding)
    assert back.metadata == net.metadata
    assert len(back.layers) == len(net.layers)
    for a, b in zip(net.layers, back.layers):
        for name in ("weights", "pulse_times", "pulse_weights"):
            x, y = getattr(a, name), getattr(b, name)
            assert x.dtype == y.dtype == np.float64 and x.shape == y.shape
            assert x.tobytes() == y.tobytes()
    assert model_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    save_onnx(back, tmp_path / "again.onnx")
    assert model_hash(tmp_path / "again.onnx") == model_hash(path)


def test_schema(tmp_path):
    model = to_model_proto(_net())
    props = {p.key: p.value for p in model.metadata_props}
    assert props["snnc.format_version"] == "1" and props["snnc.neuron"] == "alpha_once"
    assert props["snnc.encoding"] == "latency" and float(props["snnc.latency"]) == 1.0 / 3.0
    assert {(o.domain, o.version) for o in model.opset_import} >= {(DOMAIN, 1)}
    assert [n.op_type for n in model.graph.node] == [OP_TYPE, OP_TYPE]
    assert [i.name for i in model.graph.input] == ["input_times"]
    assert [o.name for o in model.graph.output] == ["layer0.spike_times", "layer1.spike_times"]
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.DOUBLE
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    assert shapes["layer0.weights"] == (5, 7) and shapes["layer1.pulse_weights"] == (7, 2)


def _write(tmp_path, model: onnx.ModelProto):
    path = tmp_path / "bad.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _expect(tmp_path, model, *words):
    with pytest.raises(ArtifactError) as err:
        load_onnx(_write(tmp_path, model))
    msg = str(err.value)
    for w in words:
        assert w in msg, msg
    return msg


def _set_tensor(model, name, arr):
    for i, t in enumerate(model.graph.initializer):
        if t.name == name:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, name=name))
            return
    raise KeyError(name)


def test_not_onnx_and_truncated(tmp_path):
    p = tmp_path / "junk.onnx"
    p.write_bytes(b"this is not an onnx file at all \x00\xff\x13")
    with pytest.raises(ArtifactError, match="not a readable ONNX file"):
        load_onnx(p)
    good = to_model_proto(_net()).SerializeToString()
    for cut in (len(good) // 2, len(good) - 3, 10):
        p.write_bytes(good[:cut])
        with pytest.raises(ArtifactError):
            load_onnx(p)
    with pytest.raises(ArtifactError, match="does not exist"):
        load_onnx(tmp_path / "nope.onnx")


def test_missing_tensor(tmp_path):
    model = to_model_proto(_net())
    keep = [t for t in model.graph.initializer if t.name != "layer1.pulse_times"]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    _expect(tmp_path, model, "missing tensor", "layer1.pulse_times", "re-export")


def test_wrong_shapes(tmp_path):
    model = to_model_proto(_net())
    _set_tensor(model, "layer1.weights", np.zeros((7, 4)))
    _expect(tmp_path, model, "layer1.weights", "(7, 4)", "previous layer")
    model = to_model_proto(_net())
    _set_tensor(model, "layer0.pulse_weights", np.zeros((5, 2)))
    _expect(tmp_path, model, "layer0.pulse_weights", "n_pulses")
    model = to_model_proto(_net())
    _set_tensor(model, "layer0.pulse_times", np.zeros((3, 1)))
    _expect(tmp_path, model, "layer0.pulse_times", "1-D")
    model = to_model_proto(_net())
    _set_tensor(model, "layer0.weights", np.zeros((5, 7), dtype=np.float32))
    _expect(tmp_path, model, "layer0.weights", "DOUBLE")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_inf(tmp_path, value):
    model = to_model_proto(_net())
    w = np.ones((7, 5))
    w[2, 3] = value
    _set_tensor(model, "layer1.weights", w)
    _expect(tmp_path, model, "layer1.weights", "NaN or inf")


def test_unknown_format_version(tmp_path):
    model = to_model_proto(_net())
    helper.set_model_props(model, {"snnc.format_version": "99", "snnc.latency": "1.0"})
    _expect(tmp_path, model, "format_version", "'99'", "upgrade snnc")
    model = to_model_proto(_net())
    del model.metadata_props[:]
    _expect(tmp_path, model, "snnc.format_version", "not an snnc artifact")


def test_unknown_op_and_domain(tmp_path):
    model = to_model_proto(_net())
    model.graph.node[1].op_type = "Relu"
    _expect(tmp_path, model, "unknown operator", "Relu", "node 1")
    model = to_model_proto(_net())
    model.graph.node[0].domain = "com.other"
    _expect(tmp_path, model, "unknown operator", "com.other")
    model = to_model_proto(_net())
    keep = [o for o in model.opset_import if o.domain != DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    _expect(tmp_path, model, "operator domain", DOMAIN)


@pytest.mark.parametrize("attr", ["tau", "theta"])
def test_missing_attribute(tmp_path, attr):
    model = to_model_proto(_net())
    node = model.graph.node[0]
    keep = [a for a in node.attribute if a.name != attr]
    del node.attribute[:]
    node.attribute.extend(keep)
    _expect(tmp_path, model, "missing attribute", repr(attr))


def test_inconsistent_constants_and_bad_latency(tmp_path):
    model = to_model_proto(_net())
    node = model.graph.node[1]
    for a in node.attribute:
        if a.name == "tau":
            a.t.CopyFrom(numpy_helper.from_array(np.array(0.5), name="tau"))
    _expect(tmp_path, model, "different tau")
    model = to_model_proto(_net())
    helper.set_model_props(model, {"snnc.format_version": "1", "snnc.latency": "soon"})
    _expect(tmp_path, model, "snnc.latency", "not a number")


def test_unserialisable_metadata_is_refused(tmp_path):
    net = _net()
    bad = TemporalNetwork(net.layers, net.tau, net.theta, net.latency, metadata={"x": object()})
    with pytest.raises(ArtifactError, match="metadata entry 'x'"):
        save_onnx(bad, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
