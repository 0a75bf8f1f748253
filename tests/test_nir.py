"""NIR export / import (toolchain/nir_export.py, toolchain/nir_import.py, toolchain/cli_nir.py): exact round trips
for every IR node kind, the Euler semantics of the exported NIR nodes, a NIR graph built by hand with nir's API
compiled and run on hw_sim-lif, and the errors for bad NIR files (issue [I] sections 1 and 3)."""
from __future__ import annotations

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from toolchain.cli import main  # noqa: E402
from toolchain.errors import ArtifactError  # noqa: E402
from toolchain.ir import (LIF, Conv2d, ConvTranspose2d, Dense, Flatten, Graph, Input,  # noqa: E402
                          Readout, lif_chain)
from toolchain.ir_equal import graph_differences  # noqa: E402
from toolchain.lif_reference import simulate  # noqa: E402
from toolchain.nir_export import conv_transpose_matrix, graph_to_nir, write_nir  # noqa: E402
from toolchain.nir_import import load_nir, nir_to_graph, read_nir  # noqa: E402


def chain_graph(seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    return lif_chain([rng.normal(0.1, 0.5, (12, 9)), rng.normal(0.1, 0.5, (7, 12)), rng.normal(0, 0.5, (5, 7)),
                      rng.normal(0, 0.5, (4, 5))],
                     [LIF(12, 0.9, clamp=True), LIF(7, 0.75, v_th=0.8, reset="subtract", strict=True, dt_ms=1.0),
                      LIF(5, 1.0, v_th=1.3), Readout(4, 0.95)], {"dataset": "mnist", "steps": 10})


def conv_graph(seed: int = 1) -> Graph:
    rng = np.random.default_rng(seed)
    nodes = {"input": Input(2 * 6 * 6),
             "c0": Conv2d(rng.normal(0.2, 1, (3, 2, 3, 3)), (2, 6, 6), stride=1, padding=1), "p0": LIF(108, 0.9),
             "c1": Conv2d(rng.normal(0.1, 1, (4, 3, 3, 3)), (3, 6, 6), stride=2, padding=1), "p1": LIF(36, 0.8),
             "fl": Flatten((4, 3, 3)), "fc": Dense(rng.normal(0.05, 0.3, (5, 36))), "p2": LIF(5, 0.9),
             "ct": ConvTranspose2d(rng.normal(0, 1, (5, 2, 3, 3)), (5, 1, 1), stride=2), "p3": Readout(18, 1.0)}
    edges = [("input", "c0"), ("c0", "p0"), ("p0", "c1"), ("c1", "p1"), ("p1", "fl"), ("fl", "fc"), ("fc", "p2"),
             ("p2", "ct"), ("ct", "p3")]
    return Graph(nodes, tuple(edges), "steps", {"family": "conv"})


def alpha_graph(seed: int = 2) -> Graph:
    from models.network import AlphaLayer, TemporalNetwork
    from toolchain.ir_alpha import graph_from_temporal

    rng = np.random.default_rng(seed)
    layers = tuple(AlphaLayer(rng.normal(0.5, 0.6, (b, a)), np.linspace(0.1, 0.6, 2), rng.normal(0.4, 0.3, (b, 2)))
                   for a, b in ((6, 4), (4, 6)))
    return graph_from_temporal(TemporalNetwork(layers, tau=1.5, theta=1.1, latency=1.0))


def spikes(rng, n: int, t: int, d: int, p: float = 0.3) -> np.ndarray:
    return (rng.random((n, t, d)) < p).astype(np.uint8)


# ---- round trips -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, layout", [(chain_graph, None), (conv_graph, "maps"), (conv_graph, "flat"),
                                          (alpha_graph, None)])
@pytest.mark.parametrize("dt_s, form", [(None, "lif"), (1e-4, "lif"), (1e-3, "cuba")])
def test_export_then_import_gives_the_identical_graph(make, layout, dt_s, form, tmp_path):
    g = make()
    if form == "cuba" and any(isinstance(v, LIF) and v.leak == 1.0 for v in g.nodes.values()):
        with pytest.raises(ArtifactError, match="no CubaLIF form"):
            write_nir(g, tmp_path / "m.nir", dt_s, form, layout)
        return
    write_nir(g, tmp_path / "m.nir", dt_s, form, layout)
    assert graph_differences(g, load_nir(tmp_path / "m.nir")) == []


def test_exported_node_kinds_follow_the_documented_table():
    ng = graph_to_nir(chain_graph(), dt_s=1e-3)
    kinds = {k: type(v).__name__ for k, v in ng.nodes.items()}
    assert kinds == {"input": "Input", "fc0": "Linear", "layer0": "LIF", "fc1": "Linear", "layer1": "LIF",
                     "fc2": "Linear", "layer2": "IF", "fc3": "Linear", "layer3": "LI", "output_layer3": "Output"}
    lif = ng.nodes["layer0"]
    np.testing.assert_allclose(lif.tau, 1e-3 / 0.1)          # tau = dt / (1 - leak)
    np.testing.assert_allclose(lif.r, 10.0)                  # r = tau / dt
    np.testing.assert_allclose(ng.nodes["layer2"].r, 1e3)    # IF: r = 1 / dt
    conv = graph_to_nir(conv_graph(), conv_layout="flat")
    kinds = {k: type(v).__name__ for k, v in conv.nodes.items()}
    assert kinds["c0"] == "Conv2d" and kinds["fl"] == "Flatten" and kinds["ct"] == "Linear"
    assert tuple(conv.nodes["input"].input_type["input"]) == (2, 6, 6)
    assert tuple(conv.nodes["p0"].tau.shape) == (3, 6, 6)    # populations of a convolution keep its map
    maps = graph_to_nir(conv_graph())                       # default for conv graphs: every synapse a Conv2d
    kinds = {k: type(v).__name__ for k, v in maps.nodes.items()}
    assert "fl" not in kinds and {kinds[k] for k in ("c0", "c1", "fc", "ct")} == {"Conv2d"}
    assert tuple(maps.nodes["p2"].tau.shape) == (5, 1, 1)
    alpha = graph_to_nir(alpha_graph())
    h = alpha.nodes["layer0"]
    assert type(h).__name__ == "CubaLIF" and np.all(h.tau_syn == h.tau_mem) and np.allclose(h.r, 1 / 1.5 ** 2)
    assert '"once_spiking": true' in h.metadata["snnc"]


def test_conv_transpose_matrix_is_pytorchs_transposed_convolution():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    ct = ConvTranspose2d(rng.normal(0, 1, (3, 2, 3, 2)), (3, 4, 5), stride=(2, 3), padding=(1, 0),
                         output_padding=(1, 2))
    x = rng.normal(0, 1, (1,) + ct.input_shape)
    want = torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(ct.weight), stride=ct.stride,
                                                padding=ct.padding, output_padding=ct.output_padding)
    got = conv_transpose_matrix(ct) @ x.reshape(-1)
    np.testing.assert_allclose(got, want.numpy().reshape(-1), rtol=1e-12, atol=1e-12)


def _euler_nir(ng, x: np.ndarray) -> dict[str, np.ndarray]:
    """A forward-Euler run of the NIR equations, step dt, read from the NIR nodes alone (Linear, LIF, IF, LI)."""
    import json

    dt = json.loads(ng.metadata["snnc"])["dt_s"]
    out, src = {}, x.astype(np.float64)
    for name, node in ng.nodes.items():
        if isinstance(node, nir.Linear):
            cur = src @ node.weight.T
        elif isinstance(node, (nir.LIF, nir.IF, nir.LI)):
            v = np.zeros((x.shape[0], cur.shape[2]))
            z = np.zeros(cur.shape, dtype=np.uint8)
            for t in range(x.shape[1]):
                if isinstance(node, nir.IF):
                    v = v + dt * node.r * cur[:, t]
                else:
                    tau = node.tau
                    v = v + dt / tau * (node.v_leak - v + node.r * cur[:, t])
                if not isinstance(node, nir.LI):
                    z[:, t] = v > node.v_threshold
                    v = np.where(z[:, t] == 1, node.v_reset, v)
            out[name] = z
            src = z.astype(np.float64)
    return out


def test_the_euler_step_of_the_exported_nir_equations_is_our_model():
    """The mapping tau = dt / (1 - leak), r = tau / dt (IF: r = 1 / dt) makes NIR's equations, integrated by forward
    Euler with step dt, spike exactly where the float model does (strict threshold test, reset to zero)."""
    rng = np.random.default_rng(4)
    w = [rng.normal(0.15, 0.5, (30, 16)), rng.normal(0.1, 0.5, (10, 30)), rng.normal(0.1, 0.5, (6, 10))]
    g = lif_chain(w, [LIF(30, 0.9, strict=True), LIF(10, 0.7, strict=True), LIF(6, 1.0, strict=True)])
    x = spikes(rng, 8, 25, 16)
    ref = simulate(g, x)
    for dt in (1e-3, 1e-4):
        got = _euler_nir(graph_to_nir(g, dt_s=dt), x)
        n_spikes = 0
        for name, s in zip(ref.names, ref.spikes):
            np.testing.assert_array_equal(got[name], s)
            n_spikes += int(s.sum())
        assert n_spikes > 100


# ---- a NIR graph made elsewhere ----------------------------------------------------------------------------------

def snntorch_style_graph(beta: float = 0.9, vth: float = 1.0, seed: int = 5) -> nir.NIRGraph:
    """What snnTorch's export_to_nir writes for Linear -> Leaky -> Linear -> Leaky (dt = 1e-4 s, float32)."""
    rng = np.random.default_rng(seed)
    dt = 1e-4
    tau = np.float32(dt / (1 - beta))

    def leaky(n):
        return nir.LIF(tau=np.full(n, tau, np.float32), r=np.full(n, tau / np.float32(dt), np.float32),
                       v_leak=np.zeros(n, np.float32), v_threshold=np.full(n, vth, np.float32),
                       v_reset=np.zeros(n, np.float32))

    w0 = rng.normal(0.12, 0.4, (24, 20)).astype(np.float32)
    w1 = rng.normal(0.1, 0.4, (8, 24)).astype(np.float32)
    return nir.NIRGraph(nodes={"input": nir.Input(np.array([20])), "fc1": nir.Affine(w0, np.zeros(24, np.float32)),
                               "lif1": leaky(24), "fc2": nir.Linear(w1), "lif2": leaky(8),
                               "output": nir.Output(np.array([8]))},
                        edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")])


def test_a_hand_built_nir_graph_imports_compiles_and_runs_on_hw_sim_lif(tmp_path):
    from targets.registry import get_target
    from toolchain.spike_metrics import match_spikes
    from toolchain.steps_compiler import compile_graph

    path = tmp_path / "snntorch.nir"
    nir.write(path, snntorch_style_graph())
    with pytest.raises(ArtifactError, match="--dt"):
        load_nir(path)                                           # no dt in the file: it must be given
    g = load_nir(path, dt_s=1e-4)
    assert [type(g.nodes[k]).__name__ for k in g.populations()] == ["LIF", "LIF"]
    lif = g.nodes["lif1"]
    assert abs(lif.leak - 0.9) < 1e-6 and lif.v_th == 1.0 and lif.strict and lif.reset == "zero"
    assert lif.dt_ms == pytest.approx(0.1)
    rng = np.random.default_rng(6)
    x = spikes(rng, 6, 20, 20)
    ref = simulate(g, x)
    cs = compile_graph(g, max_steps=20)
    res = get_target("hw_sim-lif").run(cs, x)
    for s_ref, s_hw in zip(ref.spikes, res.trains):
        m = match_spikes(s_ref, s_hw, k=1)
        assert m.n_reference > 50 and m.fraction >= 0.9


def test_input_scale_r_dt_over_tau_is_folded_into_the_weights():
    g0 = nir_to_graph(snntorch_style_graph(), dt_s=1e-4)
    ng = snntorch_style_graph()
    ng.nodes["lif1"].r = ng.nodes["lif1"].r * 2.0           # R dt / tau = 2: the input counts double
    g2 = nir_to_graph(ng, dt_s=1e-4)
    np.testing.assert_allclose(g2.nodes["fc1"].weight, 2 * g0.nodes["fc1"].weight, rtol=1e-6)
    np.testing.assert_array_equal(g2.nodes["fc2"].weight, g0.nodes["fc2"].weight)


# ---- bad NIR files (issue [I] section 3) -----------------------------------------------------------------------

def _write(tmp_path, ng, name="bad.nir"):
    path = tmp_path / name
    nir.write(path, ng)
    return path


def test_a_file_that_is_not_hdf5_is_refused(tmp_path):
    p = tmp_path / "model.nir"
    p.write_text("not a NIR file\n")
    with pytest.raises(ArtifactError, match="not a NIR file"):
        read_nir(p)
    with pytest.raises(ArtifactError, match="no such file"):
        read_nir(tmp_path / "missing.nir")


def test_an_unknown_node_type_is_named(tmp_path):
    ng = snntorch_style_graph()
    ng.nodes["thr"] = nir.Threshold(np.ones(8))
    ng.edges = [e for e in ng.edges if e != ("lif2", "output")] + [("lif2", "thr"), ("thr", "output")]
    with pytest.raises(ArtifactError, match=r"node 'thr' is a NIR Threshold node.*cannot import"):
        read_nir(_write(tmp_path, ng))
    ng = snntorch_style_graph()
    ng.nodes["pool"] = nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0]))
    with pytest.raises(ArtifactError, match="'pool' is a NIR SumPool2d node"):
        nir_to_graph(ng, 1e-4)


def test_a_cycle_is_refused_naming_its_nodes(tmp_path):
    ng = snntorch_style_graph()
    ng.nodes["rec"] = nir.Linear(np.eye(24))
    ng.edges = list(ng.edges) + [("lif1", "rec"), ("rec", "fc1")]
    with pytest.raises(ArtifactError, match=r"cycle through nodes \['fc1', 'lif1', .*'rec'\].*feed-forward"):
        nir_to_graph(ng, 1e-4)


def test_a_nested_recurrent_subgraph_is_refused(tmp_path):
    ng = snntorch_style_graph()
    sub = nir.NIRGraph(nodes={"i": nir.Input(np.array([8])), "l": nir.Linear(np.eye(8)),
                              "o": nir.Output(np.array([8]))}, edges=[("i", "l"), ("l", "o")])
    ng.nodes["sub"] = sub
    ng.edges = [e for e in ng.edges if e != ("lif2", "output")] + [("lif2", "sub"), ("sub", "output")]
    with pytest.raises(ArtifactError, match="'sub' is a nested NIR graph"):
        read_nir(_write(tmp_path, ng))


@pytest.mark.parametrize("edit, match", [
    (lambda ng: setattr(ng.nodes["lif1"], "v_leak", np.full(24, 0.2, np.float32)), "v_leak != 0"),
    (lambda ng: setattr(ng.nodes["lif1"], "v_reset", np.full(24, -0.5, np.float32)), "v_reset != 0"),
    (lambda ng: setattr(ng.nodes["fc1"], "bias", np.ones(24, np.float32)), "non-zero bias"),
    (lambda ng: setattr(ng.nodes["lif2"], "v_threshold", np.linspace(0.5, 1, 8)), "differs between neurons"),
    (lambda ng: setattr(ng.nodes["lif2"], "tau", np.full(8, 5e-5)), "tau = 5e-05 s < dt"),
    (lambda ng: setattr(ng.nodes["lif2"], "v_threshold", np.full(8, 1e9)), "v_th"),
])
def test_parameters_snnc_cannot_express_are_refused(edit, match):
    ng = snntorch_style_graph()
    edit(ng)
    with pytest.raises(ArtifactError, match=match):
        nir_to_graph(ng, 1e-4)


def test_a_cuba_lif_with_a_lasting_synaptic_current_is_refused():
    ng = snntorch_style_graph()
    n = 24
    ng.nodes["lif1"] = nir.CubaLIF(tau_syn=np.full(n, 5e-4), tau_mem=np.full(n, 1e-3), r=np.full(n, 10.0),
                                   v_leak=np.zeros(n), v_threshold=np.ones(n), w_in=np.ones(n))
    with pytest.raises(ArtifactError, match="tau_syn = 0.0005 s != dt"):
        nir_to_graph(ng, 1e-4)


def test_two_inputs_and_direct_population_links_are_refused():
    ng = snntorch_style_graph()
    ng.nodes["input2"] = nir.Input(np.array([24]))
    ng.edges = list(ng.edges) + [("input2", "lif1")]
    with pytest.raises(ArtifactError, match="2 Input nodes"):
        nir_to_graph(ng, 1e-4)
    ng = snntorch_style_graph()
    ng.nodes.pop("fc2")
    ng.edges = [e for e in ng.edges if "fc2" not in e] + [("lif1", "lif2")]
    with pytest.raises(ArtifactError, match="fed directly by 'lif1'"):
        nir_to_graph(ng, 1e-4)


def test_layouts_for_graphs_nir_cannot_reshape():
    """A convolution reading a dense layer's population needs a reshape, which NIR lacks: the "flat" layout refuses
    it; the "maps" layout writes the dense synapse as a Conv2d from a (n, 1, 1) map, but a dense synapse between
    two spatial maps has no such form."""
    rng = np.random.default_rng(7)
    nodes = {"input": Input(8), "fc": Dense(rng.normal(0, 1, (18, 8))), "p0": LIF(18, 0.9),
             "c": Conv2d(rng.normal(0, 1, (1, 2, 2, 2)), (2, 3, 3)), "p1": LIF(4, 0.9)}
    g = Graph(nodes, (("input", "fc"), ("fc", "p0"), ("p0", "c"), ("c", "p1")), "steps")
    with pytest.raises(ArtifactError, match="NIR has no reshape node"):
        graph_to_nir(g, conv_layout="flat")
    ng = graph_to_nir(g)
    assert type(ng.nodes["fc"]).__name__ == "Conv2d" and tuple(ng.nodes["p0"].tau.shape) == (2, 3, 3)
    assert graph_differences(g, nir_to_graph(ng)) == []
    nodes = {"input": Input(18), "c0": Conv2d(rng.normal(0, 1, (2, 2, 1, 1)), (2, 3, 3)), "p0": LIF(18, 0.9),
             "fc": Dense(rng.normal(0, 1, (18, 18))), "p1": LIF(18, 0.9),
             "c1": Conv2d(rng.normal(0, 1, (1, 2, 2, 2)), (2, 3, 3)), "p2": LIF(4, 0.9)}
    order = list(nodes)
    g = Graph(nodes, tuple(zip(order[:-1], order[1:])), "steps")
    with pytest.raises(ArtifactError, match="no single NIR Conv2d form"):
        graph_to_nir(g)


def test_maps_layout_synapses_compute_what_the_ir_says():
    """Every snnc synapse in the "maps" layout is a NIR Conv2d whose output (torch's conv2d) is the synapse's
    current: dense to (n, 1, 1), dense from (n, 1, 1) to a map, stride-1 transposed convolution flipped."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from toolchain.nir_export import dense_as_conv, flip_convt

    rng = np.random.default_rng(8)
    m = rng.normal(0, 1, (12, 18))
    x = rng.normal(0, 1, 18)
    for src, dst in (((2, 3, 3), (12, 1, 1)), ((18, 1, 1), (3, 2, 2))):
        k, pad = dense_as_conv(m, src, dst)
        y = F.conv2d(torch.tensor(x.reshape((1,) + src)), torch.tensor(k), padding=pad)
        assert tuple(y.shape[1:]) == dst
        np.testing.assert_allclose(y.numpy().reshape(-1), m @ x, rtol=1e-12, atol=1e-12)
    ct = ConvTranspose2d(rng.normal(0, 1, (3, 2, 3, 2)), (3, 4, 5), padding=(1, 0))
    a = torch.tensor(rng.normal(0, 1, (1, 3, 4, 5)))
    want = F.conv_transpose2d(a, torch.tensor(ct.weight), padding=ct.padding)
    got = F.conv2d(a, torch.tensor(flip_convt(ct.weight)), padding=(3 - 1 - 1, 2 - 1 - 0))
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)


# ---- CLI ---------------------------------------------------------------------------------------------------------

def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_export_and_import_round_trip(tmp_path, capsys):
    from toolchain.artifact_graph import load_graph, save_graph

    g = chain_graph()
    save_graph(g, tmp_path / "m.onnx")
    rc, out, err = run_cli(capsys, "export", "nir", tmp_path / "m.onnx", "-o", tmp_path / "m.nir", "--dt", "1e-4")
    assert rc == 0, err
    assert "wrote" in out and "LIF" in out
    rc, out, err = run_cli(capsys, "import", "nir", tmp_path / "m.nir", "-o", tmp_path / "back.onnx")
    assert rc == 0, err
    assert graph_differences(g, load_graph(tmp_path / "back.onnx")) == []
    # a NIR file from elsewhere needs --dt
    nir.write(tmp_path / "ext.nir", snntorch_style_graph())
    rc, out, err = run_cli(capsys, "import", "nir", tmp_path / "ext.nir", "-o", tmp_path / "ext.onnx")
    assert rc == 2 and "--dt" in err and not (tmp_path / "ext.onnx").exists()
    rc, out, err = run_cli(capsys, "import", "nir", tmp_path / "ext.nir", "-o", tmp_path / "ext.onnx", "--dt", "1e-4")
    assert rc == 0, err
    assert "lif1 (LIF 24)" in out


def test_cli_bad_files_exit_2_and_leave_no_output(tmp_path, capsys):
    (tmp_path / "x.nir").write_text("garbage")
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, out, err = run_cli(capsys, "import", "nir", tmp_path / "x.nir", "-o", tmp_path / "x.onnx")
    assert rc == 2 and "not a NIR file" in err
    rc, out, err = run_cli(capsys, "export", "nir", tmp_path / "x.nir", "-o", tmp_path / "y.nir")
    assert rc == 2
    rc, out, err = run_cli(capsys, "import", "nir", tmp_path / "x.nir", "-o", tmp_path / "x.nir")
    assert rc == 2 and "overwrite the NIR file" in err
    with pytest.raises(SystemExit) as exc:
        main(["export", "nir", str(tmp_path / "x.nir"), "--dt=-1"])
    assert exc.value.code == 2 and "positive number of seconds" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_the_alpha_neuron_as_cuba_lif_has_the_alpha_kernel():
    """NIR's CubaLIF equations with tau_syn = tau_mem = 1/tau, r = 1/tau**2, w_in = 1, integrated finely after one
    input spike of weight w (a Dirac impulse), give V(t) = w t exp(-tau t): the alpha kernel of AlphaOnce."""
    node = graph_to_nir(alpha_graph()).nodes["layer0"]
    tau_syn, tau_mem, r = float(node.tau_syn[0]), float(node.tau_mem[0]), float(node.r[0])
    tau, w, h = 1.5, 0.7, 1e-4
    i_syn, v, t = w * float(node.w_in[0]) / tau_syn, 0.0, 0.0
    for check in (0.3, 0.6667, 1.5, 3.0):
        while t < check - h / 2:              # midpoint (RK2) steps
            di = -i_syn / tau_syn
            dv = (-v + r * i_syn) / tau_mem
            i_mid, v_mid = i_syn + 0.5 * h * di, v + 0.5 * h * dv
            i_syn += h * (-i_mid / tau_syn)
            v += h * (-v_mid + r * i_mid) / tau_mem
            t += h
        assert v == pytest.approx(w * t * np.exp(-tau * t), rel=1e-6)


def test_cli_import_records_the_input_settings_of_steps_models(tmp_path, capsys):
    from toolchain.artifact_graph import load_graph

    nir.write(tmp_path / "ext.nir", snntorch_style_graph())
    rc, out, err = run_cli(capsys, "import", "nir", tmp_path / "ext.nir", "-o", tmp_path / "ext.onnx", "--dt",
                           "1e-4", "--dataset", "mnist", "--time-steps", "12", "--p-scale", "0.3")
    assert rc == 0, err
    meta = load_graph(tmp_path / "ext.onnx").metadata
    assert meta["dataset"] == "mnist" and meta["steps"] == 12 and meta["p_scale"] == 0.3
    assert meta["encoding"] == "bernoulli"
    write_nir(alpha_graph(), tmp_path / "a.nir")
    rc, out, err = run_cli(capsys, "import", "nir", tmp_path / "a.nir", "-o", tmp_path / "a.onnx", "--time-steps", 5)
    assert rc == 2 and "steps (LIF) models" in err and not (tmp_path / "a.onnx").exists()


@pytest.mark.parametrize("strided", [True, False])
@pytest.mark.parametrize("layout", ["maps", "flat"])
def test_the_projects_conv_autoencoders_round_trip(strided, layout, tmp_path):
    """tests/conv_nets.py's autoencoders (non-square maps and kernels in the maps layout) export and import back
    identical. nir 1.0.8's Conv2d types its output with the kernel height for both dimensions, so such a file does
    not pass ``nir.read``'s default type check; read_nir reads without it."""
    from conv_nets import conv_autoencoder

    g = conv_autoencoder(np.random.default_rng(0), strided=strided)
    write_nir(g, tmp_path / "c.nir", conv_layout=layout)
    assert graph_differences(g, load_nir(tmp_path / "c.nir")) == []
    if layout == "maps" and not strided:
        with pytest.raises(ValueError, match="type mismatch"):
            nir.read(tmp_path / "c.nir")
