"""The authors' gradient and dynamics options of the spiking conv autoencoder (issue [F] section 2, dead latent
neurons): ``--surrogate code`` against a port of jhuebotter/SpikingVAE's ``lif_sneuron`` in plain autograd,
``--clamp-negative`` (V < -1 -> +1), the per-batch dead fraction the authors log, and ``--device``."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.conv_model import ConvArch, SpikingConvAE, _lif_function, bernoulli_spikes, init_weights
from models.conv_stats import layer_stats, silent_fraction
from toolchain.errors import SnncError


def _code_lif(current, threshold: float, decay: float, clamp: bool):
    """jhuebotter/SpikingVAE src/models/spiking_layers.py, ``lif_sneuron`` (reset=True) with its ``SpikingNN``
    straight-through spike and ``Conv2dLIF.forward``'s ``V = V + I``, ported line by line (clamp optional)."""

    class SpikingNN(torch.autograd.Function):
        @staticmethod
        def forward(ctx, inp):
            ctx.save_for_backward(inp)
            return inp.gt(0).to(inp.dtype)

        @staticmethod
        def backward(ctx, grad_output):
            (inp,) = ctx.saved_tensors
            g = grad_output.clone()
            g[inp <= 0.0] = 0
            return g

    v = torch.zeros_like(current[0])
    spikes = []
    for t in range(current.shape[0]):
        v = v + current[t]
        if clamp:
            v = torch.where(v < -1 * threshold, torch.full_like(v, threshold), v)
        ex = torch.where(v > threshold, v, torch.zeros_like(v))
        v = v - ex
        out = SpikingNN.apply(ex)
        v = decay * v.detach() + v - v.detach()
        out = out.detach() + torch.div(out, threshold) - torch.div(out, threshold).detach()
        spikes.append(out)
    return torch.stack(spikes), v


@pytest.mark.parametrize("clamp", [False, True])
def test_code_surrogate_equals_the_authors_lif(clamp):
    gen = torch.Generator().manual_seed(1)
    cur = (torch.randn(25, 3, 9, generator=gen, dtype=torch.float64) * 1.2 + 0.1).requires_grad_(True)
    gs = torch.randn(25, 3, 9, generator=gen, dtype=torch.float64)
    s1, _ = _lif_function().apply(cur, 0.99, 1.0, 5.0, True, clamp)
    (g1,) = torch.autograd.grad((s1 * gs).sum(), cur)
    s2, _ = _code_lif(cur, 1.0, 0.99, clamp)
    (g2,) = torch.autograd.grad((s2 * gs).sum(), cur)
    assert 0 < s1.detach().mean() < 1
    torch.testing.assert_close(s1, s2.detach())
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)
    if clamp:  # the clamp really acted: a strongly inhibited neuron came back to the threshold
        unclamped, _ = _lif_function().apply(cur.detach(), 0.99, 1.0, 5.0, True, False)
        assert not torch.equal(unclamped, s1.detach())


def test_silent_neuron_gets_gradient_only_from_the_fast_sigmoid():
    cur = torch.full((20, 1, 2), 0.002, dtype=torch.float64)
    cur[:, 0, 1] = 0.3  # neuron 1 fires, neuron 0 never does (V stays far below 1)
    cur.requires_grad_(True)
    g = {}
    for code in (False, True):
        s, _ = _lif_function().apply(cur, 0.99, 1.0, 5.0, code, False)
        assert s[:, 0, 0].sum() == 0 and s[:, 0, 1].sum() > 0
        (g[code],) = torch.autograd.grad(s.sum(), cur)
    assert g[False][:, 0, 0].abs().min() > 0          # fast sigmoid: every step of the silent neuron
    assert torch.all(g[True][:, 0, 0] == 0)           # the code's straight-through: none
    assert g[True][:, 0, 1].abs().sum() > 0


def test_clamp_forward_is_the_code_rule():
    cur = torch.tensor([[-3.0], [0.5], [-0.2], [0.6], [-5.0], [0.005], [0.02]], dtype=torch.float64)
    s, _ = _lif_function().apply(cur.unsqueeze(1), 0.99, 1.0, 5.0, False, True)
    # V: -3 -> +1 (no spike, 1 > 1 is false), 0.99+0.5 -> spike, reset; -0.2; -0.198+0.6 = 0.402; -5 -> +1;
    # 0.99 + 0.005 = 0.995 (no spike); 0.98505 + 0.02 = 1.00505 -> spike
    assert s.flatten().tolist() == [0, 1, 0, 0, 0, 0, 1]


def test_code_readout_trace_has_gradient_factor_one():
    """Same forward; the code's trace passes gradient with factor 1 per step (its leak is applied to a detached
    copy), ours with 0.99 per step: checked on the last trace value's gradient w.r.t. up1's weights."""
    import torch.nn.functional as F

    arch = ConvArch(c1=2, c2=2, latent=3, kernel=3, side=8)
    w = {k: v * 3 for k, v in init_weights(arch, np.random.default_rng(0)).items()}
    steps = 6
    x = bernoulli_spikes(torch.rand(2, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64), steps,
                         0.5, torch.Generator().manual_seed(1))
    outs, grads = {}, {}
    for sur in ("fast-sigmoid", "code"):
        m = SpikingConvAE(arch, w, surrogate=sur, dtype=torch.float64)
        outs[sur] = m(x)
        (grads[sur],) = torch.autograd.grad(outs[sur]["readout"][-1].sum(), m.w["up1"])
    torch.testing.assert_close(outs["code"]["readout"], outs["fast-sigmoid"]["readout"], rtol=0, atol=0)
    h = outs["code"]["spikes"]["lif3"].detach().reshape(steps * 2, arch.c1, arch.s1, arch.s1)
    wu = torch.tensor(w["up1"], requires_grad=True)
    cur = F.conv_transpose2d(h, wu).reshape(steps, 2, -1)
    assert cur.abs().sum() > 0
    for sur, factor in (("fast-sigmoid", 0.99), ("code", 1.0)):  # A_T = sum_t 0.99^(T - t) I_t (t = 1..T)
        weights = torch.tensor([factor ** (steps - t) for t in range(steps)], dtype=torch.float64)
        (want,) = torch.autograd.grad((cur.sum(dim=(1, 2)) * weights).sum(), wu, retain_graph=True)
        torch.testing.assert_close(grads[sur], want)


def test_dead_per_batch_is_the_authors_measure():
    c = np.zeros((80, 3))
    c[0, 0] = 2      # neuron 0 fires on one image of batch 1 only
    c[:, 1] = 1      # neuron 1 always
    st = layer_stats({"latent": c}, steps=10, batch=40)["latent"]
    assert st["dead"] == pytest.approx(1 / 3)             # over all 80 images: only neuron 2 silent
    assert st["dead_batch"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert silent_fraction(c[40:]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="batch"):
        layer_stats({"latent": c}, steps=10, batch=0)
    from models.conv_stats import stats_png_bytes

    hist = [{"epoch": 1, "layers": {"latent": st}, "latent_dead_per_batch": [0.1, 0.5, 0.9]}]
    with_batches, without = stats_png_bytes(hist), stats_png_bytes([{"epoch": 1, "layers": {"latent": st}}])
    assert with_batches[:8] == without[:8] == b"\x89PNG\r\n\x1a\n" and with_batches != without


TINY = ["--c1", "2", "--c2", "2", "--latent", "4", "--steps", "4", "--limit-train", "80", "--limit-eval", "40",
        "--no-progress", "--threads", "1", "--epochs", "1"]


def _cli(argv):
    from toolchain.cli import main

    return main(argv)


def test_cli_code_surrogate_and_clamp(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SNNC_DATA", raising=False)
    out = tmp_path / "code"
    assert _cli(["train", "conv", *TINY, "--surrogate", "code", "--clamp-negative", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["surrogate"] == "code" and m["config"]["clamp"] is True and m["device"] == "cpu"
    h = m["history"][0]
    assert len(h["latent_dead_per_batch"]) == 2 and all(0 <= d <= 1 for d in h["latent_dead_per_batch"])
    assert 0 <= h["layers"]["latent"]["dead_batch"] <= 1
    assert not (out / "model.onnx").exists()                 # the clamp is no IR LIF: nothing to deploy
    assert "model.onnx not written" in capsys.readouterr().out
    # resuming with another surrogate is refused (part of the run's identity)
    assert _cli(["train", "conv", *TINY, "--epochs", "2", "--clamp-negative", "--out", str(out), "--resume"]) == 2
    assert "surrogate" in capsys.readouterr().err


@pytest.mark.parametrize("extra, match", [
    (["--model", "ae", "--surrogate", "code"], "apply to the spiking model"),
    (["--model", "vae", "--clamp-negative"], "apply to the spiking model"),
])
def test_cli_bad_surrogate_and_device(tmp_path, monkeypatch, capsys, extra, match):
    monkeypatch.delenv("SNNC_DATA", raising=False)
    out = tmp_path / "bad"
    assert _cli(["train", "conv", *TINY, "--out", str(out), *extra]) == 2
    assert match in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("extra", [["--surrogate", "exact"], ["--device", "tpu"]])
def test_cli_unknown_choices(tmp_path, capsys, extra):
    with pytest.raises(SystemExit) as exc:
        _cli(["train", "conv", *TINY, "--out", str(tmp_path / "bad"), *extra])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_device_cuda(tmp_path, monkeypatch, capsys):
    """Without CUDA: a clear error naming the fix before anything is written. With CUDA: a tiny run trains there."""
    from models.conv_trainer import resolve_device

    monkeypatch.delenv("SNNC_DATA", raising=False)
    out = tmp_path / "cuda"
    if not torch.cuda.is_available():
        assert _cli(["train", "conv", *TINY, "--device", "cuda", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "torch.cuda.is_available() is False" in err and "--device cpu" in err
        assert not out.exists() or not any(out.iterdir())
        with pytest.raises(SnncError, match="--device cpu"):
            resolve_device("cuda")
    else:
        assert _cli(["train", "conv", *TINY, "--device", "cuda", "--out", str(out)]) == 0
        assert json.loads((out / "metrics.json").read_text())["device"].startswith("cuda")
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(SnncError, match="unknown --device"):
        resolve_device("gpu")


def test_resume_of_a_checkpoint_from_before_the_surrogate_option(tmp_path, monkeypatch):
    """Checkpoints written before --surrogate/--clamp-negative existed hold no such keys: they resume as the
    defaults they were trained with."""
    monkeypatch.delenv("SNNC_DATA", raising=False)
    out = tmp_path / "old"
    assert _cli(["train", "conv", *TINY, "--out", str(out)]) == 0
    ck = out / "checkpoint.pt"
    state = torch.load(ck, weights_only=True)
    del state["config"]["surrogate"], state["config"]["clamp"]
    torch.save(state, ck)
    assert _cli(["train", "conv", *TINY[:-2], "--epochs", "2", "--out", str(out), "--resume"]) == 0
    assert [h["epoch"] for h in json.loads((out / "metrics.json").read_text())["history"]] == [1, 2]
