"""brian2 conv target (issue [F], task conv-deploy item 4): the discrete LIF equations run by Brian2 with the
convolutions expanded into Synapses from PyTorch's definitions; it reproduces the float model's spikes (like
lava-float) and the Readout's trace, brian2-lif hands conv graphs to it, and graphs too large are refused."""
from __future__ import annotations

import numpy as np
import pytest

from conv_nets import conv_autoencoder, input_trains, mnist_conv_autoencoder
from targets.brian2_conv import Brian2ConvTarget, expand_synapse, synapse_bound
from targets.registry import get_target
from toolchain.conv_compiler import compile_conv_graph
from toolchain.errors import TargetError
from toolchain.ir import Conv2d, ConvTranspose2d, Dense
from toolchain.lif_reference import simulate, synapse_current


@pytest.mark.parametrize("node", [
    Conv2d(np.random.default_rng(0).normal(size=(3, 2, 3, 3)), (2, 7, 6)),
    Conv2d(np.random.default_rng(1).normal(size=(2, 3, 4, 3)), (3, 9, 8), stride=(2, 3), padding=(1, 2)),
    ConvTranspose2d(np.random.default_rng(2).normal(size=(2, 3, 3, 3)), (2, 4, 5), stride=2, padding=1,
                    output_padding=1),
    ConvTranspose2d(np.random.default_rng(3).normal(size=(3, 1, 5, 5)), (3, 6, 6)),
    Dense(np.where(np.random.default_rng(4).random((5, 7)) < 0.5, 0.0, 1.5)),
], ids=["conv", "conv-strided-padded", "convT-strided", "convT", "dense-sparse"])
def test_expanded_synapses_are_the_pytorch_sums(node):
    pre, post, w = expand_synapse(node)
    m = np.zeros((node.n_out, node.n_in))
    np.add.at(m, (post, pre), w)
    assert len(pre) <= synapse_bound(node) and np.all(w != 0)
    assert len(set(zip(pre.tolist(), post.tolist()))) == len(pre)        # each synapse once
    np.testing.assert_allclose(m.T, synapse_current(node, np.eye(node.n_in)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("strided", [True, False], ids=["strided", "stride-1"])
def test_brian2_conv_reproduces_the_float_model(strided):
    rng = np.random.default_rng(30 + strided)
    g = conv_autoencoder(rng, strided=strided)
    x = input_trains(rng, n=5, steps=12)
    ref = simulate(g, x)
    res = Brian2ConvTarget(max_synapses=20_000).run(g, x)       # samples side by side and in successive windows
    chunk = res.info["chunk"]
    assert chunk == 20_000 // res.info["synapses_per_sample"] and res.info["windows"] == -(-5 // chunk) >= 2
    assert chunk >= 2 or not strided
    for name, a, b in zip(res.info["populations"], ref.spikes, res.trains):
        assert np.array_equal(a, b), name
    assert sum(int(t.sum()) for t in res.trains) > 100
    np.testing.assert_allclose(res.potentials[-1], ref.potentials[-1], rtol=1e-9, atol=1e-9)


def test_brian2_lif_hands_conv_networks_over_and_the_verifier_passes_it():
    from toolchain.verify_trains import verify_steps

    rng = np.random.default_rng(7)
    g = conv_autoencoder(rng)
    x = input_trains(rng, n=3, steps=12)
    cc = compile_conv_graph(g, 12)
    res = get_target("brian2-lif").run(cc, x)
    assert res.target == "brian2-lif" and res.info["synapses_per_sample"] > 0
    img = np.clip(x.mean(axis=1) / 0.5, 0, 1)
    rep = verify_steps(cc, x, img, {"brian2-lif": res})
    t = rep.targets[0]
    assert t.passed, rep.summary()
    assert all(s.flips["unexplained"] == 0 for s in t.layers)
    assert abs(t.metrics_rel["mse_readout"]) < 1e-6


def test_too_large_a_graph_is_refused_before_anything_is_built():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from conv_targets import paper_graph

    g = paper_graph(np.random.default_rng(0), 100)
    with pytest.raises(TargetError, match=r"expands to up to 13,260,800 synapses per sample, more than "
                                          r"max_synapses=3,000,000.*fix: verify networks of this size on hw_sim"):
        get_target("brian2-conv").run(g, np.zeros((1, 2, 784), np.uint8))


def test_cli_verifies_a_conv_model_on_brian2(tmp_path, capsys):
    import json

    from toolchain.artifact_graph import save_graph
    from toolchain.cli import main

    g = mnist_conv_autoencoder(np.random.default_rng(8), steps=6)
    save_graph(g, tmp_path / "m.onnx")
    assert main(["compile", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "c.npz")]) == 0
    rc = main(["verify", str(tmp_path / "c.npz"), "--targets", "exact,brian2,hw_sim", "--limit", "3",
               "--out", str(tmp_path / "v")])
    out = capsys.readouterr().out
    rep = json.loads((tmp_path / "v" / "report.json").read_text())
    assert rc == 0 and rep["passed"] and "brian2-lif" in rep["targets"]
    assert "brian2-lif (float" in out and "verdict: PASS" in out
