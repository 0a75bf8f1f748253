"""The online rule's trace-reset variants (``OnlineRule.trace_reset``, ``snnc train rate --trace-reset``): each
variant's trace arithmetic against a small numpy reference that keeps one explicit eligibility per synapse and
sample (no shared traces, no history trick), so a wrong shrink factor, a reset of the wrong neuron or at the wrong
step shows up as a weight difference."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.rate_online import TRACE_RESETS, OnlineRule, online_batch  # noqa: E402
from toolchain.errors import SnncError  # noqa: E402


def _numpy_reference(w1, w2, x, variant, lr=1e-2, leak=0.9, b1=0.9, b2=0.999, eps=1e-7, n_shrink=784.0):
    """The online rule with an explicit eligibility e[n, post, pre] per layer, float64, per-step Adam.
    After the gradient of step t: authors: e *= 1 - (spikes of the post layer) / n_shrink per sample; layer: the
    same over the post layer's size; neuron: e[n, i, :] = 0 for every post neuron i that spiked; none: nothing."""
    w1, w2 = w1.copy(), w2.copy()
    t_steps, b, n_in = x.shape
    h = w1.shape[0]
    v1, v2 = np.zeros((b, h)), np.zeros((b, n_in))
    e1, e2 = np.zeros((b, h, n_in)), np.zeros((b, n_in, h))
    m = [np.zeros_like(w1), np.zeros_like(w2)]
    s = [np.zeros_like(w1), np.zeros_like(w2)]
    loss = 0.0
    for t in range(t_steps):
        xt = x[t]
        v1 = np.minimum(leak * v1 + xt @ w1.T, 1.0)
        u = v1 - 1.0
        sig = np.exp(-np.abs(u)) / (1 + np.exp(-np.abs(u))) ** 2
        a1 = (v1 >= 1.0).astype(float)
        v1 = v1 * (1 - a1)
        v2 = np.minimum(leak * v2 + a1 @ w2.T, 1.0)
        a2 = (v2 >= 1.0).astype(float)
        err = (xt - v2) * (xt != a2)
        v2 = v2 * (1 - a2)
        loss += 0.5 * (err ** 2).sum() / b
        e1 = leak * e1 + xt[:, None, :]
        e2 = leak * e2 + a1[:, None, :]
        delta = (-err @ w2) * sig
        g1 = np.einsum("ni,nij->ij", delta, e1) / b
        g2 = np.einsum("nj,nji->ji", -err, e2) / b
        for k, (w, g) in enumerate(((w1, g1), (w2, g2))):
            m[k] = b1 * m[k] + (1 - b1) * g
            s[k] = b2 * s[k] + (1 - b2) * g * g
            w -= lr / (1 - b1 ** (t + 1)) * m[k] / (np.sqrt(s[k] / (1 - b2 ** (t + 1))) + eps)
        if variant in ("authors", "layer"):
            n1, n2 = (n_shrink, n_shrink) if variant == "authors" else (h, n_in)
            e1 *= (1 - a1.sum(axis=1) / n1)[:, None, None]
            e2 *= (1 - a2.sum(axis=1) / n2)[:, None, None]
        elif variant == "neuron":
            e1 *= (1 - a1)[:, :, None]
            e2 *= (1 - a2)[:, :, None]
    return w1, w2, loss


def _net(seed=0, n_in=9, h=6, b=4, t_steps=14, scale=1.2, p=0.5):
    rng = np.random.default_rng(seed)
    w1 = rng.uniform(-scale, scale, (h, n_in)) + 0.3          # busy hidden layer: neurons spike several times
    w2 = rng.uniform(-scale, scale, (n_in, h)) + 0.2
    x = (rng.random((t_steps, b, n_in)) < p).astype(np.float64)
    x[:, :, 0] = 0                                            # one pixel never spikes (skipped column)
    return w1, w2, x


@pytest.mark.parametrize("variant", TRACE_RESETS)
def test_each_trace_reset_matches_numpy_reference(variant):
    w1, w2, x = _net()
    ref1, ref2, ref_loss = _numpy_reference(w1, w2, x, variant, n_shrink=7.0)
    tw1, tw2 = torch.tensor(w1), torch.tensor(w2)
    r = online_batch(tw1, tw2, torch.tensor(x), OnlineRule(lr=1e-2, n_shrink=7.0, trace_reset=variant))
    assert r["loss"] == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(tw1.numpy(), ref1, rtol=0, atol=1e-10)
    np.testing.assert_allclose(tw2.numpy(), ref2, rtol=0, atol=1e-10)


def test_variants_train_differently_and_the_reset_matters():
    """Each variant gives other weights than every other on a net where neurons spike repeatedly (so a variant
    silently falling back to another would fail), and the busy net does spike more than once per neuron."""
    w1, w2, x = _net(seed=1)
    got = {}
    for v in TRACE_RESETS:
        tw1, tw2 = torch.tensor(w1), torch.tensor(w2)
        r = online_batch(tw1, tw2, torch.tensor(x), OnlineRule(lr=1e-2, n_shrink=7.0, trace_reset=v))
        got[v] = np.concatenate([tw1.numpy().ravel(), tw2.numpy().ravel()])
    assert r["hid_spikes"] > 2 * w1.shape[0] * x.shape[1]
    for i, a in enumerate(TRACE_RESETS):
        for bname in TRACE_RESETS[i + 1:]:
            assert np.abs(got[a] - got[bname]).max() > 1e-6, (a, bname)


def test_layer_variant_uses_each_layers_size():
    """layer = authors with n_shrink set to the post layer's size, when both layers have that size."""
    w1, w2, x = _net(seed=2, n_in=6, h=6)
    ta = [torch.tensor(w1), torch.tensor(w2)]
    tb = [torch.tensor(w1), torch.tensor(w2)]
    online_batch(*ta, torch.tensor(x), OnlineRule(lr=1e-2, n_shrink=6.0))
    online_batch(*tb, torch.tensor(x), OnlineRule(lr=1e-2, n_shrink=784.0, trace_reset="layer"))
    for p, q in zip(ta, tb):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_neuron_reset_float32_close_to_float64():
    w1, w2, x = _net(seed=3, n_in=20, h=12, b=5, t_steps=30, scale=0.6)
    ref1, ref2, _ = _numpy_reference(w1, w2, x, "neuron", lr=1e-3)
    tw1, tw2 = torch.tensor(w1, dtype=torch.float32), torch.tensor(w2, dtype=torch.float32)
    online_batch(tw1, tw2, torch.tensor(x), OnlineRule(lr=1e-3, trace_reset="neuron"))
    np.testing.assert_allclose(tw1.numpy(), ref1, atol=2e-5)
    np.testing.assert_allclose(tw2.numpy(), ref2, atol=2e-5)


def test_bad_trace_reset_is_refused():
    with pytest.raises(SnncError, match="trace reset"):
        OnlineRule(trace_reset="paper")
    from models.rate_trainer import resolve_config

    with pytest.raises(SnncError, match="--trace-reset"):
        resolve_config(preset="mnist-196", trace_reset="sometimes")
    with pytest.raises(SnncError, match="online rule only"):
        resolve_config(preset="mnist-196", mode="bptt", trace_reset="neuron")


def test_cli_trace_reset_trains_and_records_the_variant(tmp_path, monkeypatch, capsys):
    """`snnc train rate --trace-reset neuron` through the CLI on a few bundled images: the variant is in the
    checkpoint's config and the model's metadata, and resuming with another variant is refused."""
    import json

    from toolchain.cli import main

    monkeypatch.delenv("SNNC_DATA", raising=False)
    out = tmp_path / "r"
    args = ["train", "rate", "--arch", "784-16-784", "--steps", "6", "--dataset", "mnist", "--limit-train", "40",
            "--limit-eval", "20", "--batch-size", "20", "--threads", "1", "--no-progress", "--out", str(out)]
    assert main(args + ["--trace-reset", "neuron"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["trace_reset"] == "neuron"
    assert np.isfinite(m["test_spike_mse"])
    from toolchain.artifact_graph import load_graph

    assert load_graph(out / "model.onnx").metadata["trace_reset"] == "neuron"
    assert main(args + ["--trace-reset", "layer", "--epochs", "2", "--resume"]) == 2
    assert "trace_reset" in capsys.readouterr().err
