"""Spiking conv autoencoder (issue [F] sections 1-2): forward pass = the IR graph's equations, BPTT gradients,
regularisers, statistics, the trainer and ``snnc train conv`` / ``snnc eval``."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.conv_model import (SPIKING, ConvArch, SpikingConvAE, bernoulli_spikes, from_graph, init_weights,
                               make_graph, reconstruct)
from models.conv_regularisers import RegWeights, regulariser_loss, resolve_weights
from models.conv_stats import layer_stats, stats_png_bytes
from toolchain.artifact_graph import load_graph, save_graph
from toolchain.errors import SnncError
from toolchain.ir import LIF, Conv2d, ConvTranspose2d, Dense, Flatten, Readout

SMALL = ConvArch(c1=2, c2=3, latent=6, kernel=3, side=10)


def _run_cli(argv):
    from toolchain.cli import main

    return main(argv)


# ---------------------------------------------------------------- numpy reference of the IR docstrings

def _np_conv(s, node: Conv2d):
    """I[o, y, x] = sum_{c,i,j} W[o, c, i, j] s[c, y*sh + i - ph, x*sw + j - pw] (ir.Conv2d docstring)."""
    c_in, h, w = node.input_shape
    co, ho, wo = node.output_shape
    x = s.reshape(c_in, h, w)
    out = np.zeros((co, ho, wo))
    kh, kw = node.weight.shape[2:]
    for o in range(co):
        for y in range(ho):
            for xx in range(wo):
                acc = 0.0
                for c in range(c_in):
                    for i in range(kh):
                        for j in range(kw):
                            yy, xj = y * node.stride[0] + i - node.padding[0], xx * node.stride[1] + j - node.padding[1]
                            if 0 <= yy < h and 0 <= xj < w:
                                acc += node.weight[o, c, i, j] * x[c, yy, xj]
                out[o, y, xx] = acc
    return out.ravel()


def _np_conv_t(s, node: ConvTranspose2d):
    """I[o, y*sh + i - ph, x*sw + j - pw] += W[c, o, i, j] s[c, y, x] (ir.ConvTranspose2d docstring)."""
    c_in, h, w = node.input_shape
    co, ho, wo = node.output_shape
    x = s.reshape(c_in, h, w)
    out = np.zeros((co, ho, wo))
    kh, kw = node.weight.shape[2:]
    for c, y, xx in zip(*np.nonzero(x)):
        for o in range(co):
            for i in range(kh):
                for j in range(kw):
                    yy, xj = y * node.stride[0] + i - node.padding[0], xx * node.stride[1] + j - node.padding[1]
                    if 0 <= yy < ho and 0 <= xj < wo:
                        out[o, yy, xj] += node.weight[c, o, i, j] * x[c, y, xx]
    return out.ravel()


def _np_simulate(graph, spikes):
    """Spike trains {pop: (T, n)} and readout potentials (T, n) of one sample, straight from the node docstrings."""
    t_steps = spikes.shape[0]
    src = {graph.input_name: spikes.astype(np.float64)}
    out = {}
    for name in graph.order():
        node = graph.nodes[name]
        if name == graph.input_name:
            continue
        prev = src[graph.sources(name)[0]]
        if isinstance(node, Flatten):
            src[name] = prev
        elif isinstance(node, (Dense, Conv2d, ConvTranspose2d)):
            f = {Dense: lambda s: node.weight @ s, Conv2d: lambda s: _np_conv(s, node),
                 ConvTranspose2d: lambda s: _np_conv_t(s, node)}[type(node)]
            src[name] = np.stack([f(prev[t]) for t in range(t_steps)])
        elif isinstance(node, LIF):
            v = np.zeros(node.n)
            s_out = np.zeros((t_steps, node.n))
            for t in range(t_steps):
                v = node.leak * v + prev[t]
                fired = v > node.v_th if node.strict else v >= node.v_th
                s_out[t] = fired
                v = np.where(fired, 0.0, v)
            src[name] = out[name] = s_out
        elif isinstance(node, Readout):
            a = np.zeros(node.n)
            rec = np.zeros((t_steps, node.n))
            for t in range(t_steps):
                a = node.leak * (a + prev[t])
                rec[t] = a
            out[name] = rec
    return out


def _strong_weights(arch, seed):
    """Init weights scaled so that every layer spikes in a short run (a stronger test of the spike paths)."""
    w = init_weights(arch, np.random.default_rng(seed))
    return {k: v * 2.5 for k, v in w.items()}


def test_torch_forward_is_the_graph_of_the_ir_docstrings():
    arch = SMALL
    w = _strong_weights(arch, 0)
    model = SpikingConvAE(arch, w, dtype=torch.float64, p_scale=0.5)
    graph = make_graph(arch, w, {"steps": 12, "p_scale": 0.5})
    assert [k for k in graph.populations()] == list(SPIKING) + ["out"]
    gen = torch.Generator().manual_seed(3)
    img = torch.rand(3, arch.side ** 2, generator=gen, dtype=torch.float64)
    x = bernoulli_spikes(img, 12, 0.5, gen)
    with torch.no_grad():
        out = model(x)
    for b in range(3):
        ref = _np_simulate(graph, x[:, b].numpy())
        for pop in SPIKING:
            np.testing.assert_array_equal(out["spikes"][pop][:, b].numpy(), ref[pop], err_msg=pop)
        np.testing.assert_allclose(out["readout"][:, b].numpy(), ref["out"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(out["image"][b].numpy(), ref["out"].max(axis=0) / (12 * 0.5), rtol=1e-10)
    assert all(out["spikes"][p].sum() > 0 for p in SPIKING)  # every layer exercised


def test_forward_equals_toolchain_reference_simulate():
    """The trained model is exactly the graph toolchain.lif_reference.simulate runs (the deployment's reference)."""
    from toolchain.lif_reference import simulate

    arch = SMALL
    w = _strong_weights(arch, 1)
    graph = make_graph(arch, w, {"steps": 10, "p_scale": 0.5})
    gen = torch.Generator().manual_seed(4)
    x = bernoulli_spikes(torch.rand(4, arch.side ** 2, generator=gen, dtype=torch.float64), 10, 0.5, gen)
    trace = simulate(graph, x.numpy().transpose(1, 0, 2))
    with torch.no_grad():
        out = SpikingConvAE(arch, w, dtype=torch.float64, p_scale=0.5)(x)
    for name, s in zip(trace.names, trace.spikes):
        if name in SPIKING:
            np.testing.assert_array_equal(s, out["spikes"][name].numpy().transpose(1, 0, 2), err_msg=name)
    np.testing.assert_allclose(trace.potentials[trace.names.index("out")],
                               out["readout"].numpy().transpose(1, 0, 2), rtol=1e-9, atol=1e-12)


def test_lif_backward_matches_per_step_autograd():
    from models.conv_model import _lif_function, autograd_lif

    gen = torch.Generator().manual_seed(0)
    cur = (torch.randn(15, 4, 7, generator=gen, dtype=torch.float64) * 0.8 + 0.3).requires_grad_(True)
    gs = torch.randn(15, 4, 7, generator=gen, dtype=torch.float64)
    gu = torch.randn(4, 7, generator=gen, dtype=torch.float64)
    s1, u1 = _lif_function().apply(cur, 0.99, 1.0, 5.0)
    (g1,) = torch.autograd.grad((s1 * gs).sum() + (u1 * gu).sum(), cur)
    s2, u2 = autograd_lif(cur, 0.99, 1.0, 5.0)
    (g2,) = torch.autograd.grad((s2 * gs).sum() + (u2 * gu).sum(), cur)
    assert 0 < s1.detach().mean() < 1
    torch.testing.assert_close(s1, s2.detach())
    torch.testing.assert_close(u1, u2.detach())
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)


def test_graph_round_trip_and_reconstruct(tmp_path):
    arch = SMALL
    w = _strong_weights(arch, 2)
    graph = make_graph(arch, w, {"steps": 6, "p_scale": 0.2, "dataset": "mnist"})
    save_graph(graph, tmp_path / "m.onnx")
    loaded = load_graph(tmp_path / "m.onnx")
    arch2, w2, leak = from_graph(loaded)
    assert arch2 == arch and leak == 0.99
    for k in w:
        np.testing.assert_array_equal(w2[k], w[k])
    imgs = np.random.default_rng(0).random((5, arch.side ** 2))
    rec, counts = reconstruct(loaded, imgs, steps=6, p_scale=0.2, seed=1)
    rec2, _ = reconstruct(graph, imgs, steps=6, p_scale=0.2, seed=1)
    assert rec.shape == imgs.shape and set(counts) == set(SPIKING)
    np.testing.assert_array_equal(rec, rec2)


def test_regulariser_terms_by_hand():
    s = {"a": torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]]), "latent": torch.tensor([[[1.0, 0.0, 1.0]],
                                                                                  [[0.0, 0.0, 1.0]]])}
    u = {"a": torch.tensor([[-2.0, 4.0]]), "latent": torch.tensor([[0.0, -1.0, 2.0]])}
    # T = 2, B = 1: r_a = [1, .5], u_a = [-1, 2]; r_lat = [.5, 0, 1], u_lat = [0, -.5, 1]
    one = lambda **k: float(regulariser_loss(s, u, RegWeights(**k)))  # noqa: E731
    assert one(lambda1=1) == pytest.approx(1.5 + 1.5)
    assert one(lambda2=1) == pytest.approx(1.25 + 1.25)
    assert one(beta1=1) == pytest.approx(3 + 1.5)
    assert one(beta2=1) == pytest.approx(5 + 1.25)
    assert one(gamma_example=1) == pytest.approx(1.5 ** 2)
    assert one(gamma_neuron=1) == pytest.approx(0.25 + 1)
    assert one(gamma_count=1) == pytest.approx(1.5)
    assert one(beta1=1, layers="latent") == pytest.approx(1.5)  # the per-layer terms on the latent layer only
    assert one(gamma_count=1, layers="latent") == pytest.approx(1.5)
    with pytest.raises(SnncError, match="'all' or 'latent'"):
        RegWeights(layers="decoder")
    assert resolve_weights("dense", {"beta1": 0.0}).beta1 == 0.0
    with pytest.raises(SnncError, match="unknown regulariser preset"):
        resolve_weights("loose", {})
    with pytest.raises(SnncError, match="finite number >= 0"):
        RegWeights(beta1=-1)


def test_potential_regulariser_revives_dead_latent_neurons():
    """A latent layer made dead (all its input weights negative): without regularisers its potentials only sink
    further (the dead-neuron spiral: no spikes, no useful gradient); beta1 |U/T| reaches it through the final
    potentials, lifts them and brings spikes back."""
    arch = SMALL
    base = _strong_weights(arch, 5)
    base["enc"] = -np.abs(base["enc"])
    img = torch.rand(8, arch.side ** 2, generator=torch.Generator().manual_seed(0))

    def train(weights: RegWeights) -> tuple[float, float, float]:
        m = SpikingConvAE(arch, base, p_scale=0.5)
        opt = torch.optim.Adam(m.parameters(), lr=0.05)
        g = torch.Generator().manual_seed(1)
        u0, active = None, 0.0
        for i in range(30):
            opt.zero_grad()
            o = m(bernoulli_spikes(img, 10, 0.5, g))
            u0 = float(o["final"]["latent"].detach().mean()) if u0 is None else u0
            if i >= 10:
                active = max(active, float((o["spikes"]["latent"].sum((0, 1)) > 0).float().mean()))
            loss = ((o["image"] - img) ** 2).sum() / 8 + regulariser_loss(o["spikes"], o["final"], weights)
            loss.backward()
            opt.step()
        return u0, float(o["final"]["latent"].detach().mean()), active

    u0, u_none, act_none = train(RegWeights())
    assert u0 < -10 and act_none == 0.0 and u_none < u0  # dead from the start, and sinking
    _, u_reg, act_reg = train(RegWeights(beta1=5.0))
    # lifted by at least half and firing
    assert u_reg > u0 / 2 and act_reg >= 0.5


def test_layer_stats_and_plot():
    counts = {"x": np.array([[0, 3, 10, 0], [0, 1, 9, 0]]), "y": np.array([[1], [0]])}
    st = layer_stats(counts, steps=10, burst_rate=0.5)
    assert st["x"] == {"dead": 0.5, "active": 0.5, "bursting": 0.25, "mean_rate": pytest.approx(23 / 80),
                       "dead_batch": 0.5}
    assert st["y"]["dead"] == 0.0
    png = stats_png_bytes([{"epoch": 1, "layers": st}, {"epoch": 2, "layers": st}])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_arch_checks_and_macs():
    assert ConvArch().macs_per_step() == 13_260_800  # the issue's ~13 M multiply-adds per sample and step
    assert ConvArch().sizes["lif1"] == 12_800
    with pytest.raises(SnncError, match="leave nothing"):
        ConvArch(kernel=15)
    with pytest.raises(SnncError, match="integer >= 1"):
        ConvArch(latent=0)


TINY = ["--c1", "2", "--c2", "2", "--latent", "4", "--steps", "4", "--limit-train", "40", "--limit-eval", "20",
        "--no-progress", "--threads", "1"]


def test_cli_train_conv_snn_resume_and_eval(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SNNC_DATA", raising=False)
    out = tmp_path / "run"
    assert _run_cli(["train", "conv", *TINY, "--reg", "dense", "--epochs", "1", "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {"checkpoint.pt", "model.onnx", "metrics.json", "reconstructions.png", "stats.png"}
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["steps"] == 4 and m["config"]["reg_preset"] == "dense" and m["n_train"] == 40
    assert set(m["history"][0]["layers"]) == set(SPIKING) and 0 <= m["test_latent_active"] <= 1
    assert m["test_mse"] == pytest.approx(m["test_sse_per_image"] / 784)
    # an existing run is refused without --resume/--force; --resume continues to epoch 2
    assert _run_cli(["train", "conv", *TINY, "--reg", "dense", "--epochs", "2", "--out", str(out)]) == 2
    assert "already holds a trained run" in capsys.readouterr().err
    assert _run_cli(["train", "conv", *TINY, "--reg", "dense", "--epochs", "2", "--out", str(out), "--resume"]) == 0
    m2 = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in m2["history"]] == [1, 2] and m2["history"][0] == m["history"][0]
    # resuming with other settings is refused
    assert _run_cli(["train", "conv", *TINY, "--reg", "none", "--epochs", "3", "--out", str(out), "--resume"]) == 2
    assert "different settings" in capsys.readouterr().err
    graph = load_graph(out / "model.onnx")
    assert graph.metadata["family"] == "conv-lif" and graph.metadata["steps"] == 4
    capsys.readouterr()
    js = tmp_path / "eval.json"
    assert _run_cli(["eval", str(out / "model.onnx"), "--limit", "20", "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "sum of squared errors per image" in text
    r = json.loads(js.read_text())
    assert r["kind"] == "conv" and r["mse"] == pytest.approx(r["sse"] / 784) and r["n_images"] == 20
    assert (tmp_path / "run" / "model_eval_mnist_test.png").is_file()


@pytest.mark.parametrize("model", ["ae", "vae"])
def test_cli_train_conv_baselines(tmp_path, model, monkeypatch):
    monkeypatch.delenv("SNNC_DATA", raising=False)
    out = tmp_path / model
    assert _run_cli(["train", "conv", *TINY, "--model", model, "--epochs", "1", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["model"] == model and m["test_sse_per_image"] > 0
    assert not (out / "model.onnx").exists() and (out / "reconstructions.png").is_file()


@pytest.mark.parametrize("extra, match", [
    (["--steps", "0"], "--steps must be an integer >= 1"),
    (["--model", "ae", "--beta1", "0.1"], "regulariser weights apply to the spiking model"),
    (["--beta1", "-1"], "beta1 must be a finite number >= 0"),
    (["--limit-train", "10"], "fewer than one batch"),
    (["--lr", "0"], "lr must be a finite number > 0"),
    (["--weight-decay", "0.1"], "--weight-decay is not part"),
])
def test_cli_train_conv_bad_input(tmp_path, capsys, extra, match, monkeypatch):
    monkeypatch.delenv("SNNC_DATA", raising=False)
    out = tmp_path / "bad"
    assert _run_cli(["train", "conv", *TINY, "--epochs", "1", "--out", str(out), *extra]) == 2
    assert match in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
