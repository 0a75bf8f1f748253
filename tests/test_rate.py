"""Rate-coded LIF autoencoder (Roy et al. 2019): encoding, metrics, online rule, BPTT, IR graph, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.rate_bptt import BpttLearner, bptt_loss  # noqa: E402
from models.rate_encoding import bernoulli_encode  # noqa: E402
from models.rate_metrics import rate_metrics, zscore_rows, zscored_mse  # noqa: E402
from models.rate_model import forward_spikes, make_graph  # noqa: E402
from models.rate_online import OnlineRule, online_batch, sigmoid_derivative  # noqa: E402
from models.rate_trainer import parse_arch, resolve_config  # noqa: E402
from toolchain.artifact_graph import load_graph, save_graph  # noqa: E402
from toolchain.errors import SnncError  # noqa: E402
from toolchain.lif_reference import simulate  # noqa: E402


def _sig(u):
    return np.exp(-u) / (1 + np.exp(-u)) ** 2


def _reference_online(w1, w2, x, lr=5e-4, leak=0.9, b1=0.9, b2=0.999, eps=1e-7, n_shrink=784.0):
    """Hand-written loop over samples and neurons of the authors' rule (float64), no vectorised tricks."""
    w1, w2 = w1.copy(), w2.copy()
    t_steps, b, n_in = x.shape
    h, n_out = w1.shape[0], w2.shape[0]
    v1, v2 = np.zeros((b, h)), np.zeros((b, n_out))
    tr1p, tr2p = np.zeros((b, n_in)), np.zeros((b, h))
    m = [np.zeros_like(w1), np.zeros_like(w2)]
    s = [np.zeros_like(w1), np.zeros_like(w2)]
    for t in range(t_steps):
        g1, g2 = np.zeros_like(w1), np.zeros_like(w2)
        for n in range(b):
            xt = x[t, n].astype(float)
            v1[n] = np.minimum(leak * v1[n] + w1 @ xt, 1.0)
            sig = _sig(v1[n] - 1.0)
            tr1 = leak * tr1p[n] + xt
            a1 = (v1[n] >= 1.0).astype(float)
            v1[n][a1 > 0] = 0.0
            tr1p[n] = tr1 * (1 - a1.sum() / n_shrink)
            v2[n] = np.minimum(leak * v2[n] + w2 @ a1, 1.0)
            tr2 = leak * tr2p[n] + a1
            a2 = (v2[n] >= 1.0).astype(float)
            vpre = v2[n].copy()
            v2[n][a2 > 0] = 0.0
            tr2p[n] = tr2 * (1 - a2.sum() / n_shrink)
            mask = np.logical_xor(xt > 0, a2 > 0).astype(float)
            e = mask * (1.0 * xt - vpre)
            for j in range(n_out):
                g2[j] += -e[j] * tr2 / b
            delta = (w2.T @ (-e)) * sig
            for i in range(h):
                g1[i] += delta[i] * tr1 / b
        for k, (w, g) in enumerate(((w1, g1), (w2, g2))):
            m[k] = b1 * m[k] + (1 - b1) * g
            s[k] = b2 * s[k] + (1 - b2) * g * g
            w -= lr * (m[k] / (1 - b1 ** (t + 1))) / (np.sqrt(s[k] / (1 - b2 ** (t + 1))) + eps)
    return w1, w2


def test_sigmoid_derivative_values():
    u = np.array([0.0, -1.0, -3.0])
    np.testing.assert_allclose(sigmoid_derivative(u), [0.25, np.exp(1) / (1 + np.exp(1)) ** 2,
                                                      np.exp(3) / (1 + np.exp(3)) ** 2])
    np.testing.assert_allclose(sigmoid_derivative(torch.tensor(u)).numpy(), sigmoid_derivative(u))


def test_online_rule_matches_hand_written_loop():
    rng = np.random.default_rng(1)
    n_in, h, b, t_steps = 12, 5, 3, 6
    w1 = rng.uniform(-0.1, 0.6, (h, n_in))      # large enough for hidden and output spikes
    w2 = rng.uniform(-0.1, 0.9, (n_in, h))
    x = (rng.random((t_steps, b, n_in)) < 0.4).astype(np.uint8)
    x[:, :, 0] = 0                              # a never-active column (skipped by the sparse path)
    rule = OnlineRule(lr=1e-2, n_shrink=7.0)    # shrink visible in a small net
    ref1, ref2 = _reference_online(w1, w2, x, lr=1e-2, n_shrink=7.0)
    tw1, tw2 = torch.tensor(w1), torch.tensor(w2)
    r = online_batch(tw1, tw2, torch.tensor(x), rule)
    np.testing.assert_allclose(tw1.numpy(), ref1, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tw2.numpy(), ref2, rtol=1e-10, atol=1e-12)
    assert r["hid_spikes"] > 0 and float(r["out_spikes"].sum()) > 0
    np.testing.assert_array_equal(tw1.numpy()[:, 0], w1[:, 0])
    # the shrink matters: without it the result differs
    tw1b, tw2b = torch.tensor(w1), torch.tensor(w2)
    online_batch(tw1b, tw2b, torch.tensor(x), OnlineRule(lr=1e-2, n_shrink=1e12))
    assert not np.allclose(tw1b.numpy(), ref1, rtol=1e-10, atol=1e-12)


def test_online_first_step_gradient_by_hand():
    """One sample, one step, lr tiny: the first Adam step moves each weight by -lr * sign(g) (m/sqrt(v) = sign)."""
    w1 = np.array([[0.5, 0.7]])                 # hidden V = 1.2 -> clamped to 1, spikes
    w2 = np.array([[0.4], [1.5]])               # output 0: V = 0.4 (no spike), output 1: V = 1 (spike)
    x = np.array([[[1, 1]]], dtype=np.uint8)
    tw1, tw2 = torch.tensor(w1), torch.tensor(w2)
    online_batch(tw1, tw2, torch.tensor(x), OnlineRule(lr=1e-3))
    # E = mask (x - V2pre): output 0 masked in (x=1, a=0): E0 = 1 - 0.4 = 0.6; output 1 masked out (x=1, a=1)
    # g2 = -E tr2 = [-0.6, 0]; g1 = (W2^T (-E)) s'(0) tr1 = (0.4 * -0.6) * 0.25 * [1, 1] < 0
    np.testing.assert_allclose(tw2.numpy(), [[0.4 + 1e-3], [1.5]], atol=1e-9)
    np.testing.assert_allclose(tw1.numpy(), [[0.5 + 1e-3, 0.7 + 1e-3]], atol=1e-9)


def test_graph_forward_equals_simulate_and_online_forward():
    rng = np.random.default_rng(2)
    w1 = rng.uniform(-0.1, 0.5, (20, 30))
    w2 = rng.uniform(-0.1, 0.5, (30, 20))
    g = make_graph(w1, w2, {"dataset": "mnist", "encoding": "bernoulli", "p_scale": 0.3, "steps": 9})
    x = bernoulli_encode(rng.random((7, 30)), 9, 0.5, rng)
    mine = forward_spikes(g, x, chunk=3)
    ref = simulate(g, x)
    for a, b in zip(mine, ref.spikes):
        np.testing.assert_array_equal(a, b)
    assert ref.spikes[1].sum() > 0
    # the online trainer's own forward pass (lr ~ 0, float64) counts the same output spikes
    r = online_batch(torch.tensor(w1), torch.tensor(w2), torch.tensor(x.transpose(1, 0, 2)),
                     OnlineRule(lr=1e-300))
    np.testing.assert_array_equal(r["out_spikes"].numpy(), ref.spikes[1].sum(axis=1))
    # and BPTT's forward pass too
    _, a2 = bptt_loss(torch.tensor(w1), torch.tensor(w2), torch.tensor(x.transpose(1, 0, 2), dtype=torch.float64))
    np.testing.assert_array_equal(a2.numpy().transpose(1, 0, 2), ref.spikes[1])


def test_artifact_roundtrip_and_simulate(tmp_path):
    rng = np.random.default_rng(3)
    g = make_graph(rng.normal(size=(4, 6)), rng.normal(size=(6, 4)), {"steps": 5, "encoding": "bernoulli"})
    save_graph(g, tmp_path / "m.onnx")
    g2 = load_graph(tmp_path / "m.onnx")
    np.testing.assert_array_equal(g2.nodes["fc0"].weight, g.nodes["fc0"].weight)
    assert g2.nodes["layer1"] == g.nodes["layer1"] and g2.metadata == g.metadata


def test_bptt_loss_decreases_on_tiny_problem():
    torch.manual_seed(0)
    rng = np.random.default_rng(4)
    images = rng.random((20, 16)) * (rng.random((20, 16)) < 0.5)
    x = torch.tensor(bernoulli_encode(images, 10, 0.8, rng).transpose(1, 0, 2))
    lrn = BpttLearner(rng.uniform(-0.1, 0.1, (12, 16)), rng.uniform(-0.1, 0.1, (16, 12)), lr=0.02,
                      dtype=torch.float64)
    losses = [lrn.train_batch(x)["loss"] for _ in range(40)]
    assert losses[-1] < 0.7 * losses[0]


def test_bptt_gradient_through_surrogate():
    """One step, one output neuron below threshold: dL/dW2 = -E * a1 and dL/dW1 = -E W2 s'(V1 - 1) x."""
    w1 = torch.tensor([[0.6, 0.7]], dtype=torch.float64, requires_grad=True)   # V1 = 1.3 -> clamp 1, spikes
    w2 = torch.tensor([[0.4]], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([[[1.0, 1.0]]], dtype=torch.float64)                       # output target: x[0] = 1
    x2 = torch.tensor([[[1.0]]], dtype=torch.float64)
    w1b = torch.tensor([[0.6, 0.7]], dtype=torch.float64, requires_grad=True)
    # a 2-in-1-out autoencoder is not square; use n_out = n_in = 2 with the second output weight 0
    w2 = torch.tensor([[0.4], [0.0]], dtype=torch.float64, requires_grad=True)
    loss, _ = bptt_loss(w1b, w2, x)
    loss.backward()
    e = np.array([1 - 0.4, 1 - 0.0])
    np.testing.assert_allclose(w2.grad.numpy()[:, 0], -e * 1.0)
    np.testing.assert_allclose(w1b.grad.numpy()[0], (-e @ np.array([0.4, 0.0])) * 0.25 * np.array([1, 1]))
    del w1, x2


def test_metrics_by_hand():
    a = np.array([[0.0, 1.0, 2.0], [3.0, 3.0, 3.0]])
    z = zscore_rows(a)
    np.testing.assert_allclose(z[0], [-1.0, 0.0, 1.0])        # mean 1, sample std 1
    np.testing.assert_allclose(z[1], [0.0, 0.0, 0.0])         # std 0 -> divided by 1
    b = np.array([[0.0, 2.0, 4.0], [1.0, 2.0, 3.0]])          # row 0 z = [-1, 0, 1]; row 1 z = [-1, 0, 1]
    assert zscored_mse(a, b) == pytest.approx((0 + 2) / 6)
    m = rate_metrics(a, b, a)
    assert m["spike_mse"] == pytest.approx(2 / 6) and m["pixel_mse"] == 0.0


def test_bad_inputs():
    for bad in ("784-196", "784-x-784", "784-196-100", "0-1-0", ""):
        with pytest.raises(SnncError, match="arch"):
            parse_arch(bad)
    with pytest.raises(SnncError, match="time steps"):
        resolve_config(steps=0)
    with pytest.raises(SnncError, match=r"\(0, 1\]"):
        resolve_config(p_scale=1.5)
    with pytest.raises(SnncError, match=r"\(0, 1\]"):
        bernoulli_encode(np.zeros((1, 4)), 3, float("nan"), np.random.default_rng())
    with pytest.raises(SnncError, match=r"\[0, 1\]"):
        bernoulli_encode(np.full((1, 4), 255.0), 3, 0.3, np.random.default_rng())
    with pytest.raises(SnncError, match="preset"):
        resolve_config(preset="mnist-999")
    with pytest.raises(SnncError, match="fashion-mnist"):
        resolve_config(preset="fmnist-512", dataset="mnist")


def test_bernoulli_rate():
    rng = np.random.default_rng(5)
    x = bernoulli_encode(np.array([[0.0, 0.5, 1.0]]), 20000, 0.3, rng)
    np.testing.assert_allclose(x[0].mean(axis=0), [0.0, 0.15, 0.3], atol=0.01)


@pytest.mark.parametrize("mode", ["online", "bptt"])
def test_cli_end_to_end(tmp_path, mode, monkeypatch):
    from toolchain.cli import main

    monkeypatch.delenv("SNNC_DATA", raising=False)   # the bundled subset, also where CI sets SNNC_DATA

    out = tmp_path / "run"
    args = ["train", "rate", "--arch", "784-32-784", "--steps", "4", "--dataset", "mnist", "--limit-train", "200",
            "--limit-eval", "20", "--out", str(out), "--no-progress", "--mode", mode, "--threads", "1"]
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["data_source"] == "bundled" and m["config"]["mode"] == mode
    assert np.isfinite(m["test_spike_mse"]) and np.isfinite(m["test_pixel_mse"])
    assert (out / "reconstructions.png").read_bytes()[:4] == b"\x89PNG"
    g = load_graph(out / "model.onnx")
    assert g.metadata["encoding"] == "bernoulli" and g.metadata["steps"] == 4
    assert g.nodes["layer0"].clamp and g.nodes["layer0"].leak == 0.9
    assert main(args) == 2                       # occupied --out refused
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    assert len(json.loads((out / "metrics.json").read_text())["history"]) == 2
    assert main(args[:-2] + ["--threads", "1", "--force", "--weight-decay", "0.1"]) == 2


def test_sigmoid_derivative_no_overflow_float32():
    u = torch.tensor([-200.0, -90.0, 0.0, 50.0], dtype=torch.float32)
    s = sigmoid_derivative(u)
    assert torch.all(torch.isfinite(s)) and float(s[0]) == 0.0 and float(s[2]) == 0.25


def test_eval_cli_rate_model(tmp_path, capsys):
    from toolchain.cli import main

    rng = np.random.default_rng(6)
    g = make_graph(rng.uniform(-0.05, 0.3, (16, 784)), rng.uniform(-0.05, 0.6, (784, 16)),
                   {"dataset": "mnist", "encoding": "bernoulli", "p_scale": 0.3, "steps": 5})
    save_graph(g, tmp_path / "model.onnx")
    assert main(["eval", str(tmp_path), "--limit", "12", "--json", str(tmp_path / "m.json"),
                 "--png", str(tmp_path / "r.png")]) == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["kind"] == "rate" and m["sizes"] == [784, 16, 784] and m["n_images"] == 12
    # the same numbers as the trainer's evaluation of the same graph, inputs drawn from the same seed
    from models.datasets import load_dataset
    from models.rate_trainer import evaluate_graph

    ref, _ = evaluate_graph(g, load_dataset("mnist", "test", limit=12).images.astype(np.float64), 5, 0.3, 0)
    assert m["mse"] == pytest.approx(ref["pixel_mse"]) and m["spike_mse"] == pytest.approx(ref["spike_mse"])
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert "Spike-MSE" in capsys.readouterr().out
    assert main(["eval", str(tmp_path / "model.onnx"), "--noise", "0.1", "--limit", "2"]) == 2
    meta_less = make_graph(rng.normal(size=(4, 784)), rng.normal(size=(784, 4)), {"dataset": "mnist"})
    save_graph(meta_less, tmp_path / "x.onnx")
    assert main(["eval", str(tmp_path / "x.onnx"), "--limit", "2"]) == 2


def test_speed_benchmark_cycles_the_bundled_subset(monkeypatch, capsys):
    from bench_loader import load_benchmark

    monkeypatch.delenv("SNNC_DATA", raising=False)
    mod = load_benchmark("train_speed_rate")
    # 19 batches of 100 > the 1,800 bundled MNIST training images: the images are cycled
    assert mod.main(["--networks", "mnist-196", "--batches", "1", "--warmup", "18", "--threads", "1",
                     "--modes", "online"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    row = json.loads(lines[0])
    assert row["data_source"] == "bundled" and 0 < row["hidden_spike_density"] < 1
    assert lines[-2].startswith("extrapolated: 1 timed batches")
    assert json.loads(lines[-1])["seconds_per_epoch"]["mnist-196"]["online"] > 0


def test_speed_benchmark_profile_parts_add_up(monkeypatch, capsys):
    """--profile: per-part CPU seconds for both modes, named after the parts, summing to the mode's CPU time
    (less what lies outside the step: encoding)."""
    from bench_loader import load_benchmark

    monkeypatch.delenv("SNNC_DATA", raising=False)
    mod = load_benchmark("train_speed_rate")
    assert mod.main(["--networks", "mnist-196", "--batches", "2", "--warmup", "1", "--threads", "1",
                     "--profile"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines() if x.startswith('{"network"')]
    assert [r["mode"] for r in rows] == ["online", "bptt"]
    for r in rows:
        parts = r["cpu_seconds_per_epoch_by_part"]
        assert sum(parts.values()) <= r["cpu_seconds_per_epoch"] * 1.05 + 0.5
        assert sum(parts.values()) >= 0.5 * r["cpu_seconds_per_epoch"]
    assert {"Adam W1", "g2 + Adam W2", "tr1^T delta (BLAS)"} <= set(rows[0]["cpu_seconds_per_epoch_by_part"])
    assert {"G2 W2 (BLAS)", "G1^T x (input-spike row sums)", "Adam (torch)"} <= set(
        rows[1]["cpu_seconds_per_epoch_by_part"])               # MNIST at p 0.3: 4 % input spikes, the list path


def test_checkpoint_safe_loader_refuses_code_and_foreign_files(tmp_path):
    import pickle

    from models.rate_trainer import load_checkpoint

    class Evil:
        def __reduce__(self):
            return (print, ("this would run",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"format": "snnc-rate", "x": Evil()}, protocol=2))
    with pytest.raises(SnncError, match="refused|unreadable"):
        load_checkpoint(tmp_path / "evil.pt")
    torch.save({"format": "snnc-temporal", "version": 2}, tmp_path / "other.pt")
    with pytest.raises(SnncError, match="not an snnc rate checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(SnncError, match="without --resume"):
        load_checkpoint(tmp_path / "missing.pt")


# --- speed work (issue [E] section 4): the fast kernels against the slow reference copies --------------------------

def _medium_case(seed, h=48, n=60, t_steps=12, b=9, deep_negative=False):
    rng = np.random.default_rng(seed)
    w1 = rng.uniform(-0.1, 0.35, (h, n))
    if deep_negative:                          # some hidden neurons far below threshold: s' underflows (float32)
        w1[: h // 4] = -30.0
    w2 = rng.uniform(-0.1, 0.45, (n, h))
    x = (rng.random((t_steps, b, n)) < 0.3).astype(np.uint8)
    x[:, :, :3] = 0                            # never-active input columns
    return w1, w2, x


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_online_kernels_match_reference_implementation(dtype, tol):
    from reference_rate import reference_online_batch

    for seed, deep in ((7, False), (8, True)):
        w1, w2, x = _medium_case(seed, deep_negative=deep)
        rule = OnlineRule(lr=5e-3, n_shrink=30.0)
        a1, a2 = torch.tensor(w1, dtype=dtype), torch.tensor(w2, dtype=dtype)
        b1, b2 = torch.tensor(w1, dtype=dtype), torch.tensor(w2, dtype=dtype)
        ref = reference_online_batch(a1, a2, torch.tensor(x), rule)
        new = online_batch(b1, b2, torch.tensor(x), rule)
        assert ref["hid_spikes"] > 0 and ref["hid_spikes"] == new["hid_spikes"]
        np.testing.assert_array_equal(ref["out_spikes"].numpy(), new["out_spikes"].numpy())
        assert new["loss"] == pytest.approx(ref["loss"], rel=1e-5)
        np.testing.assert_allclose(b1.numpy(), a1.numpy(), rtol=0, atol=tol)
        np.testing.assert_allclose(b2.numpy(), a2.numpy(), rtol=0, atol=tol)
        assert not np.allclose(b1.numpy(), w1) and not np.allclose(b2.numpy(), w2)   # it did learn something


def test_online_accepts_float_spikes_and_noncontiguous_w2():
    w1, w2, x = _medium_case(9)
    ta, tb = torch.tensor(w1), torch.tensor(w2.T.copy()).T     # w2 as a transposed (non-contiguous) view
    tc, td = torch.tensor(w1), torch.tensor(w2)
    online_batch(ta, tb, torch.tensor(x, dtype=torch.float64))
    online_batch(tc, td, torch.tensor(x))
    np.testing.assert_array_equal(ta.numpy(), tc.numpy())
    np.testing.assert_array_equal(tb.numpy(), td.numpy())


@pytest.mark.parametrize("lists,input_lists", [(False, False), (True, True), (False, True)])
def test_bptt_hand_written_gradient_equals_autograd(lists, input_lists):
    from models.rate_bptt import bptt_grads
    from reference_rate import reference_bptt_loss

    for seed, deep in ((10, False), (11, True)):
        w1, w2, x = _medium_case(seed, deep_negative=deep)
        tw1 = torch.tensor(w1, requires_grad=True)
        tw2 = torch.tensor(w2, requires_grad=True)
        loss, a2 = reference_bptt_loss(tw1, tw2, torch.tensor(x, dtype=torch.float64))
        loss.backward()
        r = bptt_grads(tw1, tw2, torch.tensor(x), spike_lists=lists, input_lists=input_lists)
        assert r["loss"] == pytest.approx(float(loss.detach()), rel=1e-12)
        np.testing.assert_array_equal(r["out_spikes"].numpy(), a2.detach().sum(dim=0).numpy())
        np.testing.assert_allclose(r["g1"].numpy(), tw1.grad.numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(r["g2"].numpy(), tw2.grad.numpy(), rtol=0, atol=1e-12)
        assert float(tw1.grad.abs().max()) > 1e-3 and float(tw2.grad.abs().max()) > 1e-3
        # the public autograd version agrees too
        uw1, uw2 = torch.tensor(w1, requires_grad=True), torch.tensor(w2, requires_grad=True)
        bptt_loss(uw1, uw2, torch.tensor(x, dtype=torch.float64))[0].backward()
        np.testing.assert_allclose(uw1.grad.numpy(), tw1.grad.numpy(), rtol=0, atol=1e-12)


def test_bptt_learner_step_equals_torch_adam_on_autograd_gradient():
    from reference_rate import reference_bptt_loss

    w1, w2, x = _medium_case(12)
    lrn = BpttLearner(w1, w2, lr=1e-2, dtype=torch.float64)
    r = lrn.train_batch(torch.tensor(x))
    rw1, rw2 = torch.tensor(w1, requires_grad=True), torch.tensor(w2, requires_grad=True)
    opt = torch.optim.Adam([rw1, rw2], lr=1e-2, betas=(0.9, 0.999), eps=1e-7)
    loss, _ = reference_bptt_loss(rw1, rw2, torch.tensor(x, dtype=torch.float64))
    loss.backward()
    opt.step()
    assert r["loss"] == pytest.approx(float(loss.detach()))
    np.testing.assert_allclose(lrn.w1.detach().numpy(), rw1.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(lrn.w2.detach().numpy(), rw2.detach().numpy(), rtol=0, atol=1e-12)


def test_online_float32_on_fashion_sized_batch_matches_reference():
    """One batch of the real 784-1024-784 shape at T = 6 (float32), kernels vs the dense torch reference."""
    from reference_rate import reference_online_batch

    rng = np.random.default_rng(13)
    w1 = rng.uniform(-0.1, 0.1, (1024, 784))
    w2 = rng.uniform(-0.1, 0.1, (784, 1024))
    images = rng.random((100, 784)) * (rng.random((100, 784)) < 0.5)
    x = torch.tensor(bernoulli_encode(images, 6, 0.5, rng).transpose(1, 0, 2).copy())
    a1, a2 = torch.tensor(w1, dtype=torch.float32), torch.tensor(w2, dtype=torch.float32)
    b1, b2 = a1.clone(), a2.clone()
    ref = reference_online_batch(a1, a2, x)
    new = online_batch(b1, b2, x)
    np.testing.assert_array_equal(ref["out_spikes"].numpy(), new["out_spikes"].numpy())
    # Adam divides by sqrt(v): where a float32 gradient nearly cancels, the summation order moves that weight's
    # step by up to a few % of lr (5e-4); all other weights agree to 1e-6.
    for new_w, ref_w in ((b1, a1), (b2, a2)):
        d = np.abs(new_w.numpy() - ref_w.numpy())
        assert d.max() < 2e-5 and np.mean(d > 1e-6) < 1e-4
    assert float((b2 - torch.tensor(w2, dtype=torch.float32)).abs().max()) > 1e-3


def test_online_batch_refuses_bad_inputs():
    from toolchain.errors import DataError

    w1, w2 = torch.zeros((4, 6)), torch.zeros((6, 4))
    x = torch.zeros((3, 2, 6), dtype=torch.uint8)
    cases = [((w1.half(), w2.half(), x), "float32 or float64"),
             ((w1.requires_grad_(True), w2, x), "detach"),
             ((torch.zeros((4, 6)), w2.double(), x), "one dtype"),
             ((torch.zeros((4, 6)), torch.zeros((5, 4)), x), "do not chain"),
             ((torch.zeros((4, 6)), w2, torch.zeros((3, 2, 5))), "do not chain"),
             ((torch.zeros((4, 6)), w2, torch.full((3, 2, 6), 2.0)), "0 or 1"),
             ((torch.zeros((4, 6)), w2, torch.zeros((2, 6))), r"\(T, B, n_in\)")]
    for args, msg in cases:
        with pytest.raises(DataError, match=msg):
            online_batch(*args)


def test_spike_lists_and_take_columns_equal_numpy():
    from models.rate_kernels import spike_lists, take_columns

    rng = np.random.default_rng(3)
    x = (rng.random((7, 5, 33)) < 0.2).astype(np.uint8)
    x[0, 0] = 0                                   # an empty row
    x[1, 2] = 1                                   # a full row
    for arr in (x, x[:, :, ::2], x.astype(np.float32)):
        ptr, idx = spike_lists(arr)
        flat = arr.reshape(-1, arr.shape[2]) if arr.flags.c_contiguous else np.ascontiguousarray(arr).reshape(
            -1, arr.shape[2])
        assert ptr[0] == 0 and ptr.shape == (flat.shape[0] + 1,) and idx.dtype == np.int32
        for r in range(flat.shape[0]):
            np.testing.assert_array_equal(idx[ptr[r]:ptr[r + 1]], np.flatnonzero(flat[r]))
    cols = np.flatnonzero(x.any(axis=(0, 1)))[::3]
    got = take_columns(x, cols)
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, x[:, :, cols])
    np.testing.assert_array_equal(take_columns(x[:, :, ::2], np.array([0, 4, 5])), x[:, :, ::2][:, :, [0, 4, 5]])


def test_bptt_learner_reused_buffers_equal_fresh_ones():
    """BpttLearner keeps bptt_grads' buffers between batches (work dict); the weights equal a loop with fresh
    buffers bit for bit, also when the batch size changes between calls."""
    from models.rate_bptt import _adam, bptt_grads

    w1, w2, _ = _medium_case(13)
    rng = np.random.default_rng(14)
    xs = [torch.tensor((rng.random((12, b, w1.shape[1])) < 0.3).astype(np.uint8)) for b in (9, 9, 5, 9)]
    lrn = BpttLearner(w1, w2, lr=1e-2, dtype=torch.float32)
    f1 = torch.tensor(w1, dtype=torch.float32, requires_grad=True)
    f2 = torch.tensor(w2, dtype=torch.float32, requires_grad=True)
    opt = _adam([f1, f2], lr=1e-2, betas=(0.9, 0.999), eps=1e-7)          # the learner's (fused) Adam
    for x in xs:
        r = lrn.train_batch(x)
        g = bptt_grads(f1, f2, x)
        f1.grad, f2.grad = g["g1"].contiguous(), g["g2"].contiguous()
        opt.step()
        assert r["loss"] == g["loss"]
    assert lrn._work                                     # the buffers were kept
    np.testing.assert_array_equal(lrn.w1.detach().numpy(), f1.detach().numpy())
    np.testing.assert_array_equal(lrn.w2.detach().numpy(), f2.detach().numpy())
    assert not np.array_equal(lrn.w1.detach().numpy(), w1.astype(np.float32))
