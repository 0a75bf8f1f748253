"""Compiler (quantizer + mapper) and compiled-network file I/O."""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import zipfile

import numpy as np
import pytest

from models.network import AlphaLayer, TemporalNetwork
from toolchain.compiled import CompiledNetwork
from toolchain.compiled_io import load_compiled, save_compiled
from toolchain.compiler import (
    A_IN_MAX, DECAY_UNITY, DEFAULT_STEPS_PER_UNIT, UV_MAX, VTH_MAX, VTH_MIN, compile_alpha_graph, compile_any,
    compile_file, compile_network, decay_constant, deployed_network, effective_tau,
)
from toolchain.errors import ArtifactError, CompileError
from toolchain.ir import AlphaOnce, Dense, Graph, Input
from toolchain.ir_alpha import graph_from_temporal
from toolchain.lower_alpha import AlphaGrid, AlphaOptions, lower_alpha_layer


def random_net(sizes=(10, 8, 6), n_pulses=2, tau=2.0, theta=1.0, seed=0, scale=1.0) -> TemporalNetwork:
    rng = np.random.default_rng(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers.append(AlphaLayer(scale * rng.normal(0.5, 0.6, (b, a)), np.linspace(0.1, 0.6, n_pulses),
                                 scale * rng.normal(0.4, 0.3, (b, n_pulses))))
    return TemporalNetwork(tuple(layers), tau=tau, theta=theta, latency=1.0)


def test_mapping_constants_and_weights():
    net = random_net(theta=1.5)
    S = DEFAULT_STEPS_PER_UNIT
    cn = compile_network(net)
    d = math.exp(-net.tau / S)
    D = int(round(4096 * (1 - d)))
    assert cn.steps_per_unit == S and cn.window >= S * (net.latency + 1) + 1
    for k, (cl, src) in enumerate(zip(cn.layers, net.layers)):
        assert (cl.du, cl.dv) == (D - 1, D)
        assert cl.once and cl.kind == "dense" and cl.num_weight_bits == 8
        assert cl.vth.shape == (cl.n_out,) and cl.vth.min() >= VTH_MIN and cl.vth.max() <= VTH_MAX
        w = np.hstack([cl.weights, cl.pulse_weights])
        assert w.dtype == np.int32 and np.all(w % 2 == 0) and w.min() >= -256 and w.max() <= 254
        scale = ((1 - D / 4096) * cl.vth / net.theta / S)[:, None]  # per neuron
        # pulse copies sum to one pulse's weight; both blocks are on the 1-unit grid (8 bits at exponent -1)
        assert cl.weight_exp == -1 and cl.pulse_exp == -1
        pulses = np.zeros(src.pulse_weights.shape)
        np.add.at(pulses.T, cl.pulse_source, cl.pulse_weights.T.astype(float))
        np.testing.assert_array_equal(cl.pulse_steps, np.floor(src.pulse_times * S + 0.5 * k + 0.5)[cl.pulse_source])
        for w_int, w_src in ((cl.weights, src.weights), (pulses, src.pulse_weights)):
            assert np.all(np.abs(w_int / 2 - w_src * scale) <= 0.5 + 1e-9)
        np.testing.assert_allclose(cl.weights_float, src.weights / S * d)
        copies = np.bincount(cl.pulse_source)[cl.pulse_source]
        np.testing.assert_allclose(cl.pulse_weights_float, (src.pulse_weights / S * d)[:, cl.pulse_source] / copies)
        assert cl.du_float == pytest.approx(1 - d) and cl.vth_float == net.theta
        assert cl.time_offset_steps == 0.5 * k  # centring: layer k's inputs lag k/2 steps on average
        wc = cn.manifest["layers"][cn.layers.index(cl)]["worst_case"]
        assert wc["a_in_max"] <= A_IN_MAX and wc["u_max"] <= UV_MAX and wc["v_neg_max"] <= UV_MAX
    m = cn.manifest
    assert m["decay_D"] == D and m["tau_eff"] == pytest.approx(effective_tau(D, S))
    assert m["tau_rel_error"] == pytest.approx(m["tau_eff"] / net.tau - 1)
    # the deployed float network reproduces the integer weights
    dep = deployed_network(cn)
    assert dep.tau == pytest.approx(m["tau_eff"])
    err = np.abs(dep.layers[0].weights - net.layers[0].weights).max()
    assert err == pytest.approx(m["layers"][0]["weight_quant_max_abs_err"])


def test_explicit_vth_and_compensated_tau():
    net = random_net(tau=2.0)
    cn = compile_network(net, steps_per_unit=320, vth=8192)
    assert all(np.all(cl.vth == 8192) for cl in cn.layers)
    assert cn.manifest["decay_D"] == 26 and cn.manifest["tau_rel_error"] == pytest.approx(0.019, abs=1e-3)
    cc = compile_network(net, steps_per_unit=320, vth=8192, compensate_tau=True)
    S2 = cc.steps_per_unit
    assert S2 == pytest.approx(320 * net.tau / cn.manifest["tau_eff"])
    # on the stretched grid the 12-bit decay is exactly exp(-tau / S')
    assert effective_tau(cc.layers[0].dv, S2) == pytest.approx(net.tau, rel=1e-12)
    assert cc.layers[0].du_float == pytest.approx(26 / DECAY_UNITY)
    assert cc.manifest["compensate_tau"] and cc.manifest["tau_rel_error"] == 0.0
    assert deployed_network(cc).tau == pytest.approx(net.tau, rel=1e-12)
    bad = dataclasses.replace(cc, layers=(dataclasses.replace(cc.layers[0], du=5),) + cc.layers[1:])
    with pytest.raises(CompileError, match="one shared decay"):
        deployed_network(bad)


def _nan_net():
    net = random_net()
    w = net.layers[0].weights.copy()
    w[0, 0] = np.nan
    object.__setattr__(net.layers[0], "weights", w)  # bypass AlphaLayer validation
    return net


@pytest.mark.parametrize("make, kw, words", [
    (lambda: random_net(), {"steps_per_unit": 32.5}, ["integer"]),
    (lambda: random_net(), {"steps_per_unit": 1}, ["outside"]),
    (lambda: random_net(tau=20.0), {"steps_per_unit": 2}, ["too small", "4095"]),
    (lambda: random_net(tau=0.001), {"steps_per_unit": 1 << 19}, ["too large", "rounds to 0"]),
    (lambda: random_net(), {"vth": 0}, ["vth=0", "17-bit"]),
    (lambda: random_net(), {"vth": VTH_MAX + 1}, ["17-bit"]),
    (lambda: random_net(), {"vth": 2.5}, ["vth=2.5"]),
    (lambda: random_net(scale=8.0), {"vth": VTH_MAX}, ["layer0", "weight exponent above the limit 7", "--vth"]),
    (lambda: random_net(scale=4.0), {"vth": 1 << 15}, ["layer0", "exceeds the limit", "vth=32768 you passed"]),
    (lambda: random_net(sizes=(400, 3), scale=100.0), {}, ["layer0", "synaptic input per step", "exceeds the limit",
                                                           "larger --steps-per-unit", "--range calibrated"]),
    (lambda: random_net(sizes=(400, 3), scale=-15.0, tau=0.1), {}, ["layer0", "negative voltage",
                                                                     "exceeds the limit", "--range calibrated",
                                                                     "--weight-decay"]),
    (_nan_net, {}, ["layer0.weights", "NaN"]),
    (lambda: random_net(), {"window": 5}, ["window=5", "too short"]),
    (lambda: "model.onnx", {}, ["TemporalNetwork"]),
    (lambda: random_net(), {"threshold": "row"}, ["threshold='row'", "neuron, layer"]),
    (lambda: random_net(), {"max_pulse_copies": 0}, ["max_pulse_copies=0", "[1, 64]"]),
    (lambda: random_net(), {"horizon_margin": float("nan")}, ["horizon_margin=nan", ">= 0"]),
])
def test_bad_inputs_raise_compile_error(make, kw, words):
    with pytest.raises(CompileError) as info:
        compile_network(make(), **kw)
    msg = str(info.value)
    for w in words:
        assert w in msg, msg
    assert "fix" in msg


def test_pulse_collision_and_weight_exp_limit():
    rng = np.random.default_rng(1)
    layer = AlphaLayer(rng.normal(0, 1, (3, 4)), np.array([0.30, 0.31]), rng.normal(0, 1, (3, 2)))
    net = TemporalNetwork((layer,), tau=1.0, theta=1.0, latency=1.0)
    # two distinct pulses in one step column act as one pulse with the summed weight: recorded, not fatal
    cn = compile_network(net, steps_per_unit=10)
    assert cn.manifest["layers"][0]["pulse_collisions"] == [[0, 1, 3]]
    assert list(cn.layers[0].pulse_steps) == [3, 3]
    assert compile_network(net, steps_per_unit=101).manifest["layers"][0]["pulse_collisions"] == []


def test_weights_that_quantize_to_zero_are_rejected():
    rng = np.random.default_rng(1)
    layer = AlphaLayer(rng.normal(0, 1e-9, (3, 4)), np.zeros(0), np.zeros((3, 0)))
    net = TemporalNetwork((layer,), tau=1.0, theta=1e6, latency=1.0)
    with pytest.raises(CompileError, match="every weight quantizes to 0.*fix"):
        compile_network(net)


def test_range_checks_pick_smaller_vth_for_big_fan_in():
    net = random_net(sizes=(200, 4), scale=1.0, seed=3)
    cn = compile_network(net)
    wc = cn.manifest["layers"][0]["worst_case"]
    assert cn.layers[0].vth.max() < 1 << 16  # the 16-bit input limit forced smaller thresholds
    assert wc["a_in_max"] <= A_IN_MAX


def _assert_same(a, b):
    assert a.steps_per_unit == b.steps_per_unit and type(a.steps_per_unit) is type(b.steps_per_unit)
    assert a.window == b.window and a.manifest == b.manifest
    for la, lb in zip(a.layers, b.layers, strict=True):
        for f in la.__dataclass_fields__:
            va, vb = getattr(la, f), getattr(lb, f)
            if isinstance(va, np.ndarray):
                assert va.dtype == vb.dtype and np.array_equal(va, vb), f
            else:
                assert va == vb and type(va) is type(vb), f
    sa, sb = a.source, b.source
    assert (sa.tau, sa.theta, sa.latency, sa.encoding, sa.metadata) == (sb.tau, sb.theta, sb.latency, sb.encoding,
                                                                         sb.metadata)
    for la, lb in zip(sa.layers, sb.layers, strict=True):
        for f in ("weights", "pulse_times", "pulse_weights"):
            assert np.array_equal(getattr(la, f), getattr(lb, f))


def test_save_load_roundtrip_identical(tmp_path):
    for cn in (compile_network(random_net()), compile_network(random_net(), steps_per_unit=50,
                                                              compensate_tau=True)):
        p = tmp_path / "sub" / "c.npz"
        save_compiled(cn, p)
        _assert_same(cn, load_compiled(p))
        assert [f.name for f in p.parent.iterdir()] == ["c.npz"]  # atomic: no temp files left


def test_load_malformed_files(tmp_path):
    cn = compile_network(random_net())
    good = tmp_path / "good.npz"
    save_compiled(cn, good)
    with pytest.raises(ArtifactError, match="does not exist"):
        load_compiled(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file at all")
    with pytest.raises(ArtifactError, match="cannot read it as npz"):
        load_compiled(junk)

    def rewrite(name, edit):
        with np.load(good, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        edit(data)
        p = tmp_path / name
        with open(p, "wb") as f:
            np.savez(f, **data)
        return p

    with pytest.raises(ArtifactError, match="'meta' entry is missing"):
        load_compiled(rewrite("nometa.npz", lambda d: d.pop("meta")))
    with pytest.raises(ArtifactError, match="not JSON"):
        load_compiled(rewrite("badjson.npz", lambda d: d.update(meta=np.array("{oops"))))

    def bump_version(d):
        import json
        m = json.loads(str(d["meta"]))
        m["format_version"] = 99
        d["meta"] = np.array(json.dumps(m))

    with pytest.raises(ArtifactError, match="format_version 99"):
        load_compiled(rewrite("v99.npz", bump_version))
    with pytest.raises(ArtifactError, match="'layer1.weights' is missing"):
        load_compiled(rewrite("noarr.npz", lambda d: d.pop("layer1.weights")))
    with pytest.raises(ArtifactError, match="dtype float64, expected int32"):
        load_compiled(rewrite("dtype.npz", lambda d: d.update({"layer0.weights": d["layer0.weights"] * 1.0})))
    with pytest.raises(ArtifactError, match="per pulse column"):
        load_compiled(rewrite("shape.npz", lambda d: d.update({"layer0.pulse_steps": np.zeros(5, np.int64)})))
    with pytest.raises(ArtifactError, match="one value per neuron"):
        load_compiled(rewrite("vth.npz", lambda d: d.update({"layer0.vth": d["layer0.vth"][:1]})))
    with pytest.raises(ArtifactError, match="recompile"):
        load_compiled(rewrite("nosrc.npz", lambda d: d.pop("source.layer0.weights")))
    assert zipfile.is_zipfile(good)


def test_compile_file_records_model_hash(tmp_path):
    from toolchain.artifact import save_onnx

    net = random_net()
    p = tmp_path / "model.onnx"
    save_onnx(net, p)
    cn = compile_file(p, steps_per_unit=16)
    assert cn.manifest["source_hash"] == hashlib.sha256(p.read_bytes()).hexdigest()
    assert cn.steps_per_unit == 16 and os.fspath(p) == cn.manifest["source_path"]
    with pytest.raises(ArtifactError, match="does not exist"):
        compile_file(tmp_path / "nope.onnx")


def test_decay_constant():
    d, D = decay_constant(2.0, 320)
    assert D == 26 and d == pytest.approx(math.exp(-2 / 320))


def test_compile_file_rejects_garbage_and_save_rejects_non_json(tmp_path):
    p = tmp_path / "model.onnx"
    p.write_bytes(b"\x00garbage")
    with pytest.raises(ArtifactError):
        compile_file(p)
    cn = compile_network(random_net())
    bad = dataclasses.replace(cn, manifest={"x": object()})
    with pytest.raises(ArtifactError, match="manifest is not JSON-serialisable"):
        save_compiled(bad, tmp_path / "c.npz")
    assert not (tmp_path / "c.npz").exists()
    with pytest.raises(ArtifactError, match="needs a CompiledNetwork"):
        save_compiled("nope", tmp_path / "c.npz")


def _quant_err(cn: CompiledNetwork, net: TemporalNetwork) -> float:
    """Largest |deployed - source| weight over theta (same tau, so only the weight grid counts)."""
    dep = deployed_network(cn)
    return max(float(np.abs(a.all_weights() - b.all_weights()).max()) for a, b in zip(dep.layers, net.layers))


def test_per_neuron_thresholds_scale_each_neuron_to_its_range():
    # rows with very different weight magnitudes: one threshold per layer wastes the small rows' grid
    rng = np.random.default_rng(5)
    w = rng.normal(0.3, 0.3, (6, 50)) * np.array([1, 1, 0.1, 0.1, 0.02, 3.0])[:, None]
    net = TemporalNetwork((AlphaLayer(w, np.array([0.2]), np.full((6, 1), 0.5)),), tau=1.0, theta=1.0, latency=1.0)
    per_neuron = compile_network(net, steps_per_unit=64)
    per_layer = compile_network(net, steps_per_unit=64, threshold="layer")
    assert len(set(per_layer.layers[0].vth.tolist())) == 1 and len(set(per_neuron.layers[0].vth.tolist())) > 1
    assert per_neuron.layers[0].vth[4] > per_neuron.layers[0].vth[5]  # small weights -> larger threshold
    info = per_neuron.manifest["layers"][0]
    assert info["threshold"] == "neuron" and per_layer.manifest["layers"][0]["threshold"] == "layer"
    assert (info["vth_min"], info["vth_max"]) == (per_neuron.layers[0].vth.min(), per_neuron.layers[0].vth.max())
    # relative error per row: the small rows gain most
    rel = []
    for cn in (per_neuron, per_layer):
        dep = deployed_network(cn).layers[0].weights
        rel.append(np.abs(dep - w).max(axis=1) / np.abs(w).max(axis=1))
    assert np.all(rel[0] <= rel[1] + 1e-12) and rel[0][4] < rel[1][4] / 10
    wc = per_neuron.manifest["layers"][0]["worst_case"]
    assert wc["a_in_max"] <= A_IN_MAX and wc["v_neg_max"] <= UV_MAX and wc["v_pos_max"] <= UV_MAX


def test_large_pulse_weights_are_split_over_parallel_copies(tmp_path):
    rng = np.random.default_rng(2)
    layer = AlphaLayer(rng.normal(0.1, 0.05, (4, 20)), np.array([0.2, 0.5]), np.array([[5.0, 0.1]] * 4))
    net = TemporalNetwork((layer,), tau=1.0, theta=1.0, latency=1.0)
    cn = compile_network(net, steps_per_unit=64)
    cl = cn.layers[0]
    copies = np.bincount(cl.pulse_source, minlength=2)
    assert copies[0] > 1 and copies[1] == 1 and cn.manifest["layers"][0]["pulse_copies"] == copies.tolist()
    assert np.all(cl.pulse_steps == np.floor(net.layers[0].pulse_times * 64 + 0.5)[cl.pulse_source])
    assert cl.pulse_exp == cl.weight_exp == -1 and np.abs(cl.pulse_weights).max() <= 254
    one = compile_network(net, steps_per_unit=64, max_pulse_copies=1).layers[0]
    # without copies the pulse must fit one mantissa: a lower threshold (coarser grid for every weight)
    assert one.pulse_weights.shape[1] == 2 and one.vth.max() < cl.vth.min()
    assert _quant_err(cn, net) < _quant_err(compile_network(net, steps_per_unit=64, max_pulse_copies=1), net)
    # copies survive a save/load round trip
    save_compiled(cn, tmp_path / "c.npz")
    back = load_compiled(tmp_path / "c.npz")
    np.testing.assert_array_equal(back.layers[0].pulse_source, cl.pulse_source)


def test_8_bit_weights_at_exponent_minus_1_match_the_9_bit_grid():
    net = random_net(sizes=(3000, 5), scale=0.5, seed=4)  # big fan-in: ranges, not mantissas, bound vth
    c8 = compile_network(net, steps_per_unit=64)
    c9 = compile_network(net, steps_per_unit=64, weight_bits=9)
    assert c8.layers[0].weight_exp == -1 and c9.layers[0].weight_exp == 0
    np.testing.assert_array_equal(c8.layers[0].vth, c9.layers[0].vth)
    np.testing.assert_array_equal(c8.layers[0].weights // 2, c9.layers[0].weights)


def test_sizes_are_checked_before_anything_allocates():
    """A grid whose per-sample buffers would need GiB is refused by the compiler with the size and the caps."""
    net = dataclasses.replace(random_net(tau=1e3), latency=1000.0)
    with pytest.raises(CompileError, match=r"GiB per sample \(caps"):
        compile_network(net, steps_per_unit=2**20)


def test_compiler_refuses_what_every_command_refuses():
    """One validation (toolchain.validate) for load_onnx, save_onnx and the compiler: theta 1e-300 is refused."""
    with pytest.raises(ArtifactError, match="theta"):
        compile_network(random_net(theta=1e-300))


# --- the IR graph entry (compile_alpha_graph), the per-layer lowering and the dispatch on graph.time -----------

def _same_compile(a, b) -> None:
    """Every array and scalar of two CompiledNetworks, and the manifests apart from tool versions, are equal."""
    assert (a.steps_per_unit, a.window, len(a.layers)) == (b.steps_per_unit, b.window, len(b.layers))
    for la, lb in zip(a.layers, b.layers):
        for f in dataclasses.fields(la):
            x, y = getattr(la, f.name), getattr(lb, f.name)
            if isinstance(x, np.ndarray):
                assert x.dtype == y.dtype and np.array_equal(x, y), f.name
            else:
                assert x == y, f.name
    ma, mb = dict(a.manifest), dict(b.manifest)
    ma.pop("tool_versions"), mb.pop("tool_versions")
    assert ma == mb


@pytest.mark.parametrize("kw", [{}, {"threshold": "layer", "weight_bits": 9}, {"vth": 4000, "centre": False},
                                {"compensate_tau": True, "max_pulse_copies": 1}])
def test_graph_entry_and_compile_any_equal_compile_network(kw):
    net = random_net(sizes=(12, 7, 12), seed=4)
    graph = graph_from_temporal(net)
    cn = compile_network(net, **kw)
    _same_compile(compile_alpha_graph(graph, **kw), cn)
    _same_compile(compile_any(graph, **kw), cn)
    src = compile_alpha_graph(graph, **kw).source  # the graph's TemporalNetwork, equal by value
    assert (src.tau, src.theta, src.latency, src.encoding, src.metadata) == \
        (net.tau, net.theta, net.latency, net.encoding, net.metadata)
    for a, b in zip(src.layers, net.layers):
        for f in ("weights", "pulse_times", "pulse_weights"):
            assert np.array_equal(getattr(a, f), getattr(b, f))


def test_lower_alpha_layer_is_the_compiled_layer():
    net = random_net(sizes=(12, 7, 5), seed=2)
    cn = compile_network(net, threshold="layer")
    m = cn.manifest
    graph = graph_from_temporal(net)
    grid = AlphaGrid(S=float(cn.steps_per_unit), D=m["decay_D"], d=m["decay_float"], window=cn.window,
                     theta=net.theta)
    opts = AlphaOptions(threshold="layer")
    for k, (syn, pop) in enumerate(graph.chain()):
        lowered = lower_alpha_layer(k, pop, graph.nodes[syn], graph.nodes[pop], grid, opts)
        _same_compile(dataclasses.replace(cn, layers=(lowered.layer,), manifest={"tool_versions": 0}),
                      dataclasses.replace(cn, layers=(cn.layers[k],), manifest={"tool_versions": 0}))
        assert lowered.manifest == m["layers"][k]


def test_compiled_layers_take_the_alphaonce_node_names():
    graph = graph_from_temporal(random_net(sizes=(6, 4, 6)))
    names = {"input": "pixels", "fc0": "enc", "layer0": "hidden", "fc1": "dec", "layer1": "out"}
    renamed = Graph({names[k]: v for k, v in graph.nodes.items()},
                    tuple((names[a], names[b]) for a, b in graph.edges), "continuous", graph.metadata)
    cn = compile_alpha_graph(renamed)
    assert [cl.name for cl in cn.layers] == ["hidden", "out"]
    assert [lm["name"] for lm in cn.manifest["layers"]] == ["hidden", "out"]


def test_compile_any_dispatches_steps_graphs_to_the_steps_compiler():
    from toolchain.compiled_steps import CompiledSteps
    from toolchain.ir import LIF, lif_chain
    from toolchain.steps_compiler import compile_graph

    rng = np.random.default_rng(0)
    g = lif_chain([rng.uniform(-0.2, 0.4, (5, 8)), rng.uniform(-0.2, 0.4, (8, 5))], [LIF(5, 0.9), LIF(8, 0.9)])
    cs = compile_any(g, max_steps=15, threshold="layer")
    ref = compile_graph(g, 15, threshold="layer")
    assert isinstance(cs, CompiledSteps)
    for a, b in zip(cs.layers, ref.layers):
        assert np.array_equal(a.weights, b.weights) and np.array_equal(a.vth, b.vth) and a.weight_exp == b.weight_exp
    with pytest.raises(CompileError, match="needs max_steps"):
        compile_any(g)
    with pytest.raises(CompileError, match="steps_per_unit do not apply to a steps-time graph"):
        compile_any(g, max_steps=15, steps_per_unit=40)
    with pytest.raises(CompileError, match="max_steps do not apply to a continuous-time graph"):
        compile_any(graph_from_temporal(random_net()), max_steps=15)
    with pytest.raises(CompileError, match="continuous-time .alpha. graphs; this graph's time is 'steps'"):
        compile_alpha_graph(g)


@pytest.mark.parametrize("make, words", [
    (lambda: random_net(), ["needs a toolchain.ir.Graph", "TemporalNetwork"]),
    (lambda: Graph({"input": Input(3), "fc0": Dense(np.ones((2, 3))),
                    "layer0": AlphaOnce(2, 2.0, 1.0, np.zeros(0), np.zeros((2, 0)))},
                   (("input", "fc0"), ("fc0", "layer0")), "continuous", {}),
     ["no 'latency' entry"]),
    (lambda: Graph({"input": Input(3), "fc0": Dense(np.ones((2, 3))),
                    "layer0": AlphaOnce(2, 2.0, 1.0, np.zeros(0), np.zeros((2, 0))),
                    "fc1": Dense(np.ones((3, 2))), "layer1": AlphaOnce(3, 1.0, 1.0, np.zeros(0), np.zeros((3, 0)))},
                   (("input", "fc0"), ("fc0", "layer0"), ("layer0", "fc1"), ("fc1", "layer1")), "continuous",
                   {"latency": 1.0, "encoding": "latency"}),
     ["different tau"]),
])
def test_graph_entry_bad_graphs_raise_compile_error(make, words):
    for entry in (compile_alpha_graph, compile_any):
        with pytest.raises(CompileError) as info:
            entry(make())
        for w in words:
            assert w in str(info.value), str(info.value)
