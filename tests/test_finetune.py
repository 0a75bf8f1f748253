"""``snnc finetune``: hardware-in-the-loop fine-tuning through hw_sim and the hil loopback device (bundled data).

A small alpha model is trained here first (hidden 32, 70 images, 1 epoch: far from converged, so a few deployed
updates lower its deployed loss); the LIF model is a seeded random 784-20-784 chain as in tests/test_steps_cli.py.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from toolchain.artifact import load_onnx
from toolchain.cli import main

S = 16   # a coarse grid keeps the windows short (fast) and the quantization visible


@pytest.fixture(autouse=True)
def bundled_data(monkeypatch):
    # (NUMBA_NUM_THREADS is not touched: numba re-reads it at every compilation and refuses a value other than the
    # pool it has started, which made the LIF test fail whenever the suite ran without that variable set)
    monkeypatch.delenv("SNNC_DATA", raising=False)


@pytest.fixture(scope="module")
def alpha_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("ft-alpha")
    rc = main(["train", "temporal", "--dataset", "mnist", "--limit-train", "70", "--limit-eval", "20",
               "--epochs", "1", "--hidden", "32", "--n-pulses", "3", "--batch-size", "10", "--threads", "1",
               "--no-progress", "--out", str(out)])
    assert rc == 0
    return out / "model.onnx"


@pytest.fixture(scope="module")
def lif_model(tmp_path_factory):
    from toolchain.artifact_graph import save_graph
    from toolchain.ir import LIF, lif_chain

    rng = np.random.default_rng(0)
    g = lif_chain([rng.uniform(-0.1, 0.15, (20, 784)), rng.uniform(-0.3, 0.4, (784, 20))],
                  [LIF(20, 0.9, clamp=True), LIF(784, 0.9, clamp=True)],
                  {"dataset": "mnist", "encoding": "bernoulli", "p_scale": 0.3, "steps": 10, "family": "rate-lif"})
    path = tmp_path_factory.mktemp("ft-lif") / "lif.onnx"
    save_graph(g, path)
    return path


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


CALIBRATED = ("--range", "calibrated", "--calibration-samples", 20)   # the barely trained model's worst case fails
ALPHA_ARGS = ("--limit-train", 70, "--limit-eval", 30, "--batch-size", 10, "--epochs", 2, "--lr", 0.004, "-S", S,
              "-q", *CALIBRATED)


def test_alpha_finetune_on_hw_sim_lowers_the_deployed_loss_and_the_output_compiles(alpha_model, tmp_path, capsys):
    out = tmp_path / "sub" / "ft.onnx"
    rc, stdout, err = run_cli(capsys, "finetune", alpha_model, "--target", "hw_sim", "-o", out, *ALPHA_ARGS,
                              "--eval-every", 3)
    assert rc == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["family"] == "alpha" and summary["compile_options"]["steps_per_unit"] == S
    assert summary["compile_options"]["range_mode"] == "calibrated"
    net = load_onnx(out)
    ft = net.metadata["finetune"]
    assert ft["best_epoch"] >= 1 and ft["updates"] == 14          # 2 epochs x 7 batches of 10
    # the deployed validation loss decreased, and the chosen model is the best one
    assert [h["updates"] for h in ft["history"]] == [3, 6, 7, 9, 12, 14]     # --eval-every 3, and each epoch's end
    assert min(h["val_mse_deployed"] for h in ft["history"]) < ft["val_mse_deployed_before"]
    best = min(ft["history"], key=lambda h: h["val_mse_deployed"])
    assert ft["best_updates"] == best["updates"] and ft["best_epoch"] == best["epoch"]
    assert summary["mse_deployed_after"] < summary["mse_deployed_before"]
    src = load_onnx(alpha_model)
    assert not np.array_equal(net.layers[0].weights, src.layers[0].weights)
    assert net.metadata["dataset"] == "mnist" and net.metadata["hyperparameters"] == src.metadata["hyperparameters"]
    rc, stdout, err = run_cli(capsys, "compile", out, "-S", S, *CALIBRATED, "--out", tmp_path / "c.npz")
    assert rc == 0, err                                            # an ordinary model: compiles and deploys
    assert list(tmp_path.glob("**/.snnc-tmp-*")) == []


def test_alpha_finetune_through_the_hil_device_equals_hw_sim(alpha_model, tmp_path, capsys):
    """The hil device (a real `snnc device serve` on loopback, started by the target) runs hw_sim bit for bit, so
    fine-tuning through it gives the very same model."""
    args = ("--limit-train", 30, "--limit-eval", 10, "--batch-size", 10, "--epochs", 1, "--lr", 0.004, "-S", S, "-q",
            *CALIBRATED)
    assert run_cli(capsys, "finetune", alpha_model, "--target", "hw_sim", "-o", tmp_path / "a.onnx", *args)[0] == 0
    rc, stdout, err = run_cli(capsys, "finetune", alpha_model, "--target", "hil", "-o", tmp_path / "b.onnx", *args)
    assert rc == 0, err
    assert json.loads(stdout.strip().splitlines()[-1])["target"] == "hil"
    a, b = load_onnx(tmp_path / "a.onnx"), load_onnx(tmp_path / "b.onnx")
    for la, lb in zip(a.layers, b.layers):
        assert np.array_equal(la.weights, lb.weights) and np.array_equal(la.pulse_times, lb.pulse_times)
    assert a.layers[0].weights is not None and a.metadata["finetune"]["updates"] == 3


def test_deployed_step_on_the_exact_target_is_exact_training(alpha_model):
    """With a device that reproduces the float model (the 'exact' target), the straight-through gradient is the
    trainer's exact gradient (models/temporal_backprop.reconstruction_gradients)."""
    from models.datasets import load_dataset
    from models.encoding import latency_encode, target_times
    from models.finetune_alpha import deployed_step, hyperparameters_of
    from models.temporal_backprop import reconstruction_gradients
    from targets.exact import ExactTarget
    from toolchain.compiler import compile_network

    net = load_onnx(alpha_model)
    hp = hyperparameters_of(net, None, None)
    imgs = np.asarray(load_dataset("mnist", "train", limit=12).images, np.float64)
    x, tgt = latency_encode(imgs), target_times(imgs)
    cn = compile_network(net, steps_per_unit=S, range_mode="calibrated", calibration_times=x)
    sq, grads, _ = deployed_step(net, cn, ExactTarget(), x, tgt, hp)
    ref = reconstruction_gradients([(l.all_weights(), l.pulse_times) for l in net.layers], x, tgt, net.latency,
                                   net.tau, net.theta, hp.clip_derivative, hp.penalty_no_spike, threads=1)
    assert sq == pytest.approx(ref.sq_error_sum, rel=1e-12)
    for g, r in zip(grads, ref.grads):
        np.testing.assert_allclose(g.weights_all, r.weights_all, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(g.pulse_times, r.pulse_times, rtol=1e-10, atol=1e-14)


def test_lif_finetune_on_hw_sim_lowers_the_deployed_loss_and_the_output_compiles(lif_model, tmp_path, capsys):
    from toolchain.artifact_graph import load_graph
    from toolchain.steps_compiler import compile_graph

    out = tmp_path / "ft.onnx"
    rc, stdout, err = run_cli(capsys, "finetune", lif_model, "--target", "hw_sim", "-o", out, "--limit-train", 60,
                              "--limit-eval", 30, "--batch-size", 20, "--epochs", 2, "--lr", 0.003, "-q")
    assert rc == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["family"] == "lif"
    g = load_graph(out)
    ft = g.metadata["finetune"]
    assert ft["updates"] == 6 and ft["best_epoch"] >= 1
    assert summary["mse_deployed_after"] < summary["mse_deployed_before"]
    assert g.metadata["steps"] == 10 and g.time == "steps"
    assert not np.array_equal(g.nodes["fc0"].weight, load_graph(lif_model).nodes["fc0"].weight)
    assert compile_graph(g, 10).max_steps == 10


def test_ste_loss_is_the_bptt_loss_when_the_device_matches_the_float_model():
    import torch

    from models.finetune_lif import ste_loss
    from models.rate_bptt import bptt_loss
    from models.rate_model import forward_spikes, make_graph

    rng = np.random.default_rng(3)
    w1, w2 = rng.uniform(-0.2, 0.3, (12, 30)), rng.uniform(-0.3, 0.4, (30, 12))
    x = (rng.random((5, 8, 30)) < 0.3).astype(np.uint8)
    deployed = forward_spikes(make_graph(w1, w2, {}), x)
    graph = make_graph(w1, w2, {})
    from models.rate_model import graph_weights

    pops = graph_weights(graph)[1]
    a = [torch.tensor(w, requires_grad=True) for w in (w1, w2)]
    la = ste_loss(a, pops, x, deployed)
    la.backward()
    b = [torch.tensor(w, requires_grad=True) for w in (w1, w2)]
    lb, _ = bptt_loss(b[0], b[1], torch.from_numpy(x.transpose(1, 0, 2).astype(np.float64)))
    lb.backward()
    assert float(la.detach()) == pytest.approx(float(lb.detach()), rel=1e-12)
    for ga, gb in zip(a, b):
        np.testing.assert_allclose(ga.grad.numpy(), gb.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("extra, words", [
    (("--target", "loihi"), "unknown fine-tuning target 'loihi'"),
    (("--weight-blocks", "1"), "apply to steps (LIF) models only"),
    (("--time-steps", "10"), "apply to steps (LIF) models only"),
    (("-S", "0"), "steps_per_unit=0 is outside"),
    (("-S", "100000000"), "steps_per_unit=100000000 is outside"),
    (("--epochs", "0"), "epochs must be a whole number >= 1"),
    (("--lr", "-1"), "lr must be a finite number > 0"),
    (("--compile-every", "0"), "compile-every must be"),
    (("-O", "nonsense"), "is not KEY=VALUE"),
    (("-O", "colour=3"), "bad option for target hw_sim"),
])
def test_bad_alpha_inputs_exit_2_before_anything_is_written(alpha_model, tmp_path, capsys, extra, words):
    out = tmp_path / "ft.onnx"
    rc, _, err = run_cli(capsys, "finetune", alpha_model, "-o", out, "--limit-train", 20, "--limit-eval", 10,
                         "-q", *CALIBRATED, *extra)
    assert rc == 2 and words in err, err
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra, words", [
    (("--target", "hil"), "fine-tune LIF models with --target hw_sim"),
    (("-S", "32"), "apply to alpha (temporal) models only"),
    (("--compensate-tau",), "apply to alpha (temporal) models only"),
    (("--time-steps", "12"), "drop --time-steps"),
])
def test_bad_lif_inputs_exit_2(lif_model, tmp_path, capsys, extra, words):
    rc, _, err = run_cli(capsys, "finetune", lif_model, "-o", tmp_path / "ft.onnx", "--limit-train", 20, "-q", *extra)
    assert rc == 2 and words in err, err
    assert list(tmp_path.iterdir()) == []


def test_bad_files_exit_2(alpha_model, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "finetune", tmp_path / "none.onnx", "-o", tmp_path / "o.onnx")
    assert rc == 2 and "does not exist" in err
    npz = tmp_path / "c.npz"
    npz.write_bytes(b"x")
    rc, _, err = run_cli(capsys, "finetune", npz, "-o", tmp_path / "o.onnx")
    assert rc == 2 and "pass the model.onnx it was compiled from" in err
    rc, _, err = run_cli(capsys, "finetune", alpha_model, "-o", alpha_model)
    assert rc == 2 and "is the input model" in err
    rc, _, err = run_cli(capsys, "finetune", alpha_model, "-o", tmp_path)
    assert rc == 2 and "is a folder, expected a file" in err


def test_an_interrupted_run_leaves_the_earlier_output_intact_and_no_debris(alpha_model, tmp_path, capsys,
                                                                           monkeypatch):
    import models.finetune_alpha as fa

    out = tmp_path / "ft.onnx"
    out.write_bytes(b"earlier result")
    real = fa.deployed_step
    calls = []

    def stop_after_two(*a, **k):
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(fa, "deployed_step", stop_after_two)
    rc, _, _ = run_cli(capsys, "finetune", alpha_model, "-o", out, *ALPHA_ARGS)
    assert rc == 130
    assert out.read_bytes() == b"earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ft.onnx"]

    def fail_save(*a, **k):
        raise OSError("disk full")

    import toolchain.atomic as atomic

    monkeypatch.setattr(fa, "deployed_step", real)
    monkeypatch.setattr(atomic.os, "fsync", fail_save)
    rc, _, err = run_cli(capsys, "finetune", alpha_model, "-o", out, *ALPHA_ARGS[:4], "--epochs", 1, "-S", S, "-q",
                         *CALIBRATED)
    assert rc == 2 and "cannot write" in err
    assert out.read_bytes() == b"earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ft.onnx"]
