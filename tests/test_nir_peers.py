"""Cross-simulator check (issue [I] section 1): our steps models exported to NIR, loaded into snnTorch and Norse
through their own NIR importers (targets/nir_peers.py), run on the same input spike trains and compared spike by
spike with the float model; ``snnc verify --nir-peers``."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("nir")
pytest.importorskip("snntorch")
pytest.importorskip("norse")

from targets.registry import get_target  # noqa: E402
from toolchain.cli import main  # noqa: E402
from toolchain.errors import TargetError  # noqa: E402
from toolchain.ir import LIF, Conv2d, ConvTranspose2d, Dense, Flatten, Graph, Input, Readout, lif_chain  # noqa: E402
from toolchain.lif_reference import simulate  # noqa: E402

PEERS = ("snntorch-nir", "norse-nir")


def small_graph(seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    return lif_chain([rng.normal(0.1, 0.5, (20, 16)), rng.normal(0.1, 0.5, (8, 20))],
                     [LIF(20, 0.9, clamp=True), LIF(8, 0.8)])


def conv_graph(seed: int = 1) -> Graph:
    rng = np.random.default_rng(seed)
    nodes = {"input": Input(72), "c0": Conv2d(rng.normal(0.2, 1, (3, 2, 3, 3)), (2, 6, 6), stride=1, padding=1),
             "p0": LIF(108, 0.9), "fl": Flatten((3, 6, 6)), "fc": Dense(rng.normal(0.05, 0.3, (5, 108))),
             "p1": LIF(5, 0.9)}
    edges = [("input", "c0"), ("c0", "p0"), ("p0", "fl"), ("fl", "fc"), ("fc", "p1")]
    return Graph(nodes, tuple(edges), "steps")


def trains_in(seed: int, n: int, t: int, d: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, t, d)) < 0.3).astype(np.uint8)


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("peer", PEERS)
def test_peers_reproduce_the_float_model_spike_by_spike(peer, precision):
    g = small_graph()
    x = trains_in(2, 6, 30, 16)
    ref = simulate(g, x)
    res = get_target(peer, precision=precision).run(g, x)
    assert res.target == peer and res.info["precision"] == precision and res.info["batched"]
    assert sum(int(s.sum()) for s in ref.spikes) > 300
    for want, got in zip(ref.spikes, res.trains):
        np.testing.assert_array_equal(got, want)


def test_convention_mismatches_are_caught():
    """What happens without the documented conventions: snnTorch reads every file as dt = 1e-4 s (a file written
    for 1 ms gives beta = 0.99 and a 10x threshold), Norse drops r on LIF nodes (a potential scaled by 1 - leak)."""
    from toolchain.spike_metrics import match_spikes

    g = small_graph()
    x = trains_in(3, 6, 30, 16)
    ref = simulate(g, x)
    for peer, opts in (("snntorch-nir", {"dt_s": 1e-3}), ("norse-nir", {"lif_form": "lif"})):
        res = get_target(peer, **opts).run(g, x)
        m = match_spikes(ref.spikes[0], res.trains[0], k=1)
        assert m.fraction < 0.5, (peer, m)
    # snnTorch also reads the CubaLIF form exactly
    res = get_target("snntorch-nir", lif_form="cuba").run(g, x)
    for want, got in zip(ref.spikes, res.trains):
        np.testing.assert_array_equal(got, want)


def autoencoder_graph(seed: int = 0) -> Graph:
    """A small Hübotter-style convolutional autoencoder: conv, conv, flatten, dense latent, dense, two stride-1
    transposed convolutions, readout."""
    rng = np.random.default_rng(seed)
    nodes = {"input": Input(64), "c0": Conv2d(rng.normal(0.3, 0.5, (2, 1, 3, 3)), (1, 8, 8)), "p0": LIF(72, 0.9),
             "c1": Conv2d(rng.normal(0.2, 0.5, (3, 2, 3, 3)), (2, 6, 6)), "p1": LIF(48, 0.9),
             "fl": Flatten((3, 4, 4)), "fc0": Dense(rng.normal(0.1, 0.4, (5, 48))), "lat": LIF(5, 0.9),
             "fc1": Dense(rng.normal(0.3, 0.6, (48, 5))), "p2": LIF(48, 0.9),
             "ct0": ConvTranspose2d(rng.normal(0.2, 0.5, (3, 2, 3, 3)), (3, 4, 4)), "p3": LIF(72, 0.9),
             "ct1": ConvTranspose2d(rng.normal(0.2, 0.5, (2, 1, 3, 3)), (2, 6, 6), padding=1), "p4": LIF(36, 0.8),
             "ct2": ConvTranspose2d(rng.normal(0.3, 0.5, (1, 1, 2, 2)), (1, 6, 6), stride=2, padding=2),
             "out": Readout(64, 0.99)}
    order = list(nodes)
    return Graph(nodes, tuple(zip(order[:-1], order[1:])), "steps")


def torch_reference(graph: Graph, x: np.ndarray) -> list[np.ndarray]:
    """The IR's equations (toolchain/ir.py docstrings) in float64 with torch's reference convolutions: the
    float model of a conv graph until toolchain/lif_reference.py runs convolutions."""
    import torch
    import torch.nn.functional as F

    out, s = {}, {graph.input_name: torch.tensor(x, dtype=torch.float64)}
    n, t_steps = x.shape[:2]
    for name in graph.order():
        node = graph.nodes[name]
        src = graph.sources(name)
        if isinstance(node, Flatten):
            s[name] = s[src[0]]
        elif isinstance(node, Dense):
            s[name] = s[src[0]] @ torch.tensor(node.weight).T
        elif isinstance(node, (Conv2d, ConvTranspose2d)):
            a = s[src[0]].reshape((n * t_steps,) + node.input_shape)
            w = torch.tensor(node.weight)
            c = F.conv2d(a, w, stride=node.stride, padding=node.padding) if isinstance(node, Conv2d) else \
                F.conv_transpose2d(a, w, stride=node.stride, padding=node.padding,
                                   output_padding=node.output_padding)
            s[name] = c.reshape(n, t_steps, -1)
        elif isinstance(node, (LIF, Readout)):
            cur, v = s[src[0]], torch.zeros(n, node.n, dtype=torch.float64)
            z = torch.zeros(n, t_steps, node.n, dtype=torch.float64)
            for t in range(t_steps):
                if isinstance(node, Readout):
                    v = node.leak * (v + cur[:, t])
                    continue
                v = node.leak * v + cur[:, t]
                if node.clamp:
                    v = torch.clamp(v, max=node.v_th)
                fired = v > node.v_th if node.strict else v >= node.v_th
                z[:, t] = fired.double()
                v = torch.where(fired, torch.zeros_like(v) if node.reset == "zero" else v - node.v_th, v)
            s[name] = z
            out[name] = z.numpy().astype(np.uint8)
    return [out[p] for p in graph.populations()]


def test_conv_autoencoders_run_batched_in_both_peers_and_match_the_float_model():
    """Layout "maps" (every synapse a NIR Conv2d, no Flatten): snnTorch and Norse run batches and reproduce the IR's
    equations spike by spike, dense layers and stride-1 and stride-2 transposed convolutions included."""
    g = autoencoder_graph()
    x = trains_in(4, 5, 20, 64)
    want = torch_reference(g, x)
    assert all(int(w.sum()) > 20 for w in want[:-1])
    for peer in PEERS:
        res = get_target(peer).run(g, x)
        assert res.info["batched"] and res.info["readouts_never_spiking"] == ["out"]
        for p, w, got in zip(g.populations(), want, res.trains):
            np.testing.assert_array_equal(got, w, err_msg=f"{peer} {p}")
    try:
        ref = simulate(g, x)
    except ValueError as exc:
        pytest.skip(f"the float model does not run convolutions yet ({exc})")
    for w, r in zip(want, ref.spikes):
        np.testing.assert_array_equal(r, w)


def test_conv_graphs_in_the_flat_layout_run_one_sample_at_a_time():
    from targets.nir_peers import NorseNirTarget, SnntorchNirTarget

    g = conv_graph()
    x = trains_in(4, 3, 20, 72)
    want = torch_reference(g, x)
    for cls in (SnntorchNirTarget, NorseNirTarget):
        t = cls(conv_layout="flat")
        res = t.run(g, x)
        assert not res.info["batched"]        # NIR Flatten vs torch.nn.Flatten: no batch dimension
        for w, got in zip(want, res.trains):
            np.testing.assert_array_equal(got, w)


def test_readout_populations_run_as_never_spiking_neurons_whose_potential_is_the_trace():
    rng = np.random.default_rng(5)
    g = lif_chain([rng.normal(0.3, 0.5, (12, 10)), rng.normal(0.1, 0.5, (6, 12)), rng.normal(0, 1, (3, 6))],
                  [LIF(12, 0.9), LIF(6, 0.9), Readout(3, 0.9)])
    x = trains_in(0, 4, 20, 10)
    ref = simulate(g, x)
    assert ref.spikes[1].sum() > 20
    for peer in PEERS:
        res = get_target(peer).run(g, x)
        assert res.info["readouts_never_spiking"] == ["layer2"]
        for want, got in zip(ref.spikes, res.trains):
            np.testing.assert_array_equal(got, want)
        assert res.potentials[0] is None and res.potentials[1] is None
        # both importers hold leak and time constants in float32 (also in double runs): A agrees to ~1e-5
        np.testing.assert_allclose(res.potentials[2], ref.potentials[2], rtol=1e-4, atol=1e-6)
    g1 = lif_chain([rng.normal(0, 1, (4, 10)), rng.normal(0, 1, (2, 4))], [LIF(4, 0.9), Readout(2, 1.0)])
    for peer in PEERS:
        with pytest.raises(TargetError, match="no leak"):
            get_target(peer).run(g1, x)


@pytest.mark.parametrize("strided", [True, False])
def test_the_projects_conv_autoencoders_match_the_float_model_in_both_peers(strided):
    """tests/conv_nets.py's Hübotter-shaped autoencoder (strided and stride-1 variants, non-square kernels in the
    maps layout) in snnTorch and Norse: spikes identical to toolchain/lif_reference.py, the Readout's trace equal."""
    from conv_nets import conv_autoencoder, input_trains

    rng = np.random.default_rng(0)
    g = conv_autoencoder(rng, strided=strided)
    x = input_trains(rng, n=4)
    ref = simulate(g, x)
    assert sum(int(s.sum()) for s in ref.spikes) > 500
    for peer in PEERS:
        res = get_target(peer).run(g, x)
        assert res.info["batched"]
        for p, want, got in zip(ref.names, ref.spikes, res.trains):
            np.testing.assert_array_equal(got, want, err_msg=f"{peer} {p}")
        np.testing.assert_allclose(res.potentials[-1], ref.potentials[-1], rtol=1e-4, atol=1e-6)


def test_peers_refuse_bad_options_and_alpha_graphs():
    from toolchain.ir import AlphaOnce

    x = trains_in(0, 1, 5, 2)
    alpha = Graph({"input": Input(2), "fc": Dense(np.ones((1, 2))), "a": AlphaOnce(1, 1.0, 1.0, np.zeros(0),
                                                                                    np.zeros((1, 0)))},
                  (("input", "fc"), ("fc", "a")), "continuous")
    for peer in PEERS:
        with pytest.raises(TargetError, match="precision"):
            get_target(peer, precision="float16")
        with pytest.raises(TargetError, match="lif_form"):
            get_target(peer, lif_form="izhikevich")
        with pytest.raises(TargetError, match="steps"):
            get_target(peer).run(alpha, x)


def test_nir_modules_import_lazily():
    code = ("import sys, targets.registry, targets.nir_peers, toolchain.nir_export, toolchain.nir_import, "
            "toolchain.cli_nir; bad = [m for m in ('torch', 'nir', 'snntorch', 'norse') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# ---- snnc verify --nir-peers -------------------------------------------------------------------------------------

META = {"dataset": "mnist", "encoding": "bernoulli", "p_scale": 0.3, "steps": 10, "family": "rate-lif"}


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_verify_nir_peers_compares_both_packages_with_the_float_model(tmp_path, capsys):
    import json

    from toolchain.artifact_graph import save_graph

    rng = np.random.default_rng(0)
    g = lif_chain([rng.uniform(-0.1, 0.15, (20, 784)), rng.uniform(-0.3, 0.4, (784, 20))],
                  [LIF(20, 0.9, clamp=True), LIF(784, 0.9, clamp=True)], META)
    save_graph(g, tmp_path / "lif.onnx")
    out = tmp_path / "rep"
    rc, so, err = run_cli(capsys, "verify", tmp_path / "lif.onnx", "--targets", "float", "--nir-peers",
                          "snntorch,norse", "--limit", 4, "--out", out, "--quiet")
    assert rc == 0, so + err
    rep = json.loads((out / "report.json").read_text())
    assert rep["targets"] == ["float", "snntorch-nir", "norse-nir"] and rep["passed"]
    per = {t["target"]: t for t in rep["verification"]["targets"]}
    for peer in PEERS:
        assert [pop["layer"] for pop in per[peer]["layers"]] == ["layer0", "layer1"]
        for pop in per[peer]["layers"]:
            assert pop["n_reference"] > 0 and pop["n_target"] == pop["n_reference"]
            assert pop["differing_trains"] == 0
    rc, so, err = run_cli(capsys, "verify", tmp_path / "lif.onnx", "--targets", "float", "--nir-peers", "brian2",
                          "--out", tmp_path / "r2")
    assert rc == 2 and "unknown NIR peer 'brian2'" in err and not (tmp_path / "r2").exists()


def test_verify_nir_peers_on_a_conv_model_with_a_readout(tmp_path, capsys):
    import json

    from conv_nets import mnist_conv_autoencoder

    from toolchain.artifact_graph import save_graph

    save_graph(mnist_conv_autoencoder(np.random.default_rng(0)), tmp_path / "conv.onnx")
    rc, so, err = run_cli(capsys, "verify", tmp_path / "conv.onnx", "--targets", "float", "--nir-peers",
                          "snntorch,norse", "--limit", 3, "--out", tmp_path / "rep", "--quiet")
    assert rc == 0, so + err
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    per = {t["target"]: t for t in rep["verification"]["targets"]}
    for peer in PEERS:
        assert all(pop["differing_trains"] == 0 for pop in per[peer]["layers"])
        assert per[peer]["metrics"]["mse_readout"] == pytest.approx(per["float"]["metrics"]["mse_readout"],
                                                                     rel=1e-5)


def test_verify_nir_peers_refuses_alpha_models(tmp_path, capsys):
    from models.network import AlphaLayer, TemporalNetwork
    from toolchain.artifact import save_onnx

    rng = np.random.default_rng(1)
    net = TemporalNetwork((AlphaLayer(rng.normal(0.5, 0.6, (4, 784)), np.linspace(0.1, 0.6, 2),
                                      rng.normal(0.4, 0.3, (4, 2))),
                           AlphaLayer(rng.normal(0.5, 0.6, (784, 4)), np.linspace(0.1, 0.6, 2),
                                      rng.normal(0.4, 0.3, (784, 2)))), tau=2.0, theta=1.0, latency=1.0)
    save_onnx(net, tmp_path / "alpha.onnx")
    rc, so, err = run_cli(capsys, "verify", tmp_path / "alpha.onnx", "--targets", "exact", "--nir-peers", "norse",
                          "--out", tmp_path / "r")
    assert rc == 2 and "--nir-peers runs steps (LIF) models" in err


# ---- a network made in snnTorch, exported by snnTorch --------------------------------------------------------------

def _snntorch_net(reset: str):
    import torch
    import snntorch as snn

    torch.manual_seed(0)
    # per-neuron beta / threshold tensors: snnTorch 1.0's export_to_nir fails on scalar ones (shape () vs (n,))
    net = torch.nn.Sequential(
        torch.nn.Linear(16, 20, bias=False),
        snn.Leaky(beta=torch.full((20,), 0.85), threshold=torch.ones(20), init_hidden=True, reset_mechanism=reset),
        torch.nn.Linear(20, 6, bias=False),
        snn.Leaky(beta=torch.full((6,), 0.7), threshold=torch.full((6,), 0.8), init_hidden=True,
                  reset_mechanism=reset))
    with torch.no_grad():
        net[0].weight.mul_(3).add_(0.3)
        net[2].weight.mul_(2).add_(0.2)
    return net


def _snntorch_run(net, x: np.ndarray) -> list[np.ndarray]:
    import torch
    from snntorch import utils

    rec: dict[int, list] = {1: [], 3: []}
    hooks = [net[i].register_forward_hook(lambda m, a, o, i=i: rec[i].append(o)) for i in rec]
    utils.reset(net)
    with torch.no_grad():
        for t in range(x.shape[1]):
            net(torch.tensor(x[:, t], dtype=torch.float32))
    for h in hooks:
        h.remove()
    return [torch.stack(rec[i], 1).numpy().astype(np.uint8) for i in (1, 3)]


def test_a_network_exported_by_snntorch_imports_and_runs_like_snntorch(tmp_path):
    """snnTorch -> export_to_nir -> nir.write -> snnc import (dt 1e-4) -> our float model: the same spikes as
    snnTorch's own run, for Leaky with reset to zero. snnTorch's exporter writes v_reset = 0 whatever the reset
    mechanism, so its default (subtract) does not survive the export: measured here as a difference."""
    import nir
    from snntorch.export_nir import export_to_nir

    from toolchain.nir_import import load_nir

    x = trains_in(1, 30, 40, 16)
    for reset, identical in (("zero", True), ("subtract", False)):
        net = _snntorch_net(reset)
        nir.write(tmp_path / f"{reset}.nir", export_to_nir(net, __import__("torch").zeros(16)))
        g = load_nir(tmp_path / f"{reset}.nir", dt_s=1e-4)
        ours = simulate(g, x).spikes
        theirs = _snntorch_run(net, x)
        assert sum(int(s.sum()) for s in theirs) > 1000
        same = all(np.array_equal(a, b) for a, b in zip(ours, theirs))
        assert same is identical, reset


def test_maps_layout_input_read_by_a_dense_layer_runs_in_the_peers():
    """In the "maps" layout an Input read by a dense synapse is a (n, 1, 1) map; the peers feed it that shape."""
    rng = np.random.default_rng(9)
    nodes = {"input": Input(8), "fc": Dense(rng.normal(0.3, 0.6, (18, 8))), "p0": LIF(18, 0.9),
             "c": Conv2d(rng.normal(0.3, 0.6, (2, 2, 2, 2)), (2, 3, 3)), "p1": LIF(8, 0.9)}
    g = Graph(nodes, (("input", "fc"), ("fc", "p0"), ("p0", "c"), ("c", "p1")), "steps")
    x = trains_in(6, 4, 15, 8)
    want = torch_reference(g, x)
    assert all(int(w.sum()) > 10 for w in want)
    for peer in PEERS:
        res = get_target(peer).run(g, x)
        for w, got in zip(want, res.trains):
            np.testing.assert_array_equal(got, w)
