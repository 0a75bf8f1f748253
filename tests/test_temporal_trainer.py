"""Temporal trainer (models/temporal_trainer.py) and presets (models/presets.py) on the bundled subset."""
from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest

from models.exact import exact_forward
from models.presets import (DEFAULT_PRESET, PRESET_CSV, add_preset_args, get_preset, hyperparameters_from_args,
                            load_table, with_overrides)
from models.temporal_trainer import TrainConfig, evaluate, init_network, train_temporal
from toolchain.artifact import load_onnx
from toolchain.errors import SnncError


@pytest.fixture(autouse=True)
def bundled_data(monkeypatch):
    monkeypatch.delenv("SNNC_DATA", raising=False)  # the small bundled subset, always


def test_presets_come_from_the_table():
    rows = list(csv.DictReader(open(PRESET_CSV)))
    assert len(load_table()) == len(rows) == 75
    hp = get_preset(DEFAULT_PRESET)
    assert (hp.noise, hp.latency, hp.hidden) == (0.0, 1.0, 32)
    assert (hp.batch_size, hp.n_pulses) == (7, 10)
    assert hp.decay_rate_tau == pytest.approx(0.172556) and hp.threshold_theta == pytest.approx(0.834236)
    assert hp.penalty_no_spike == pytest.approx(6.250341) and hp.clip_derivative == pytest.approx(386.058227)
    hp2 = get_preset("hidden=8, latency=16, noise=0.8")
    assert (hp2.batch_size, hp2.n_pulses, hp2.name) == (17, 9, "noise=0.8,latency=16,hidden=8")


def test_preset_overrides_and_errors():
    parser = argparse.ArgumentParser()
    add_preset_args(parser)
    args = parser.parse_args(["--preset", "noise=0.2,latency=2,hidden=16", "--batch-size", "3",
                              "--decay-rate-tau", "0.5", "--hidden", "64"])
    hp = hyperparameters_from_args(args)
    base = get_preset("noise=0.2,latency=2,hidden=32")  # hidden 64 is not in the table: the nearest row's values
    assert (hp.batch_size, hp.decay_rate_tau, hp.hidden) == (3, 0.5, 64)
    assert hp.lr_weights == base.lr_weights and hp.n_pulses == base.n_pulses
    assert hyperparameters_from_args(parser.parse_args([])) == get_preset(DEFAULT_PRESET)

    for spec, words in [("noise=0,latency=1,hidden=64", "pick one"), ("noise=0,latency=1", "lacks hidden"),
                        ("noise=0,lat=1,hidden=8", "bad preset item"), ("noise=x,latency=1,hidden=8", "not a number"),
                        ("", "empty preset")]:
        with pytest.raises(SnncError, match=words):
            get_preset(spec)
    with pytest.raises(SnncError, match="batch_size=0"):
        with_overrides(base, batch_size=0)
    with pytest.raises(SnncError, match="unknown hyperparameter"):
        with_overrides(base, learning_rate=1.0)


def test_initialisation_follows_the_authors():
    hp = get_preset(DEFAULT_PRESET)
    net = init_network(hp, 784, np.random.default_rng(0))
    assert net.sizes == [784, 32, 784] and net.encoding == "latency"
    assert (net.tau, net.theta, net.latency) == (hp.decay_rate_tau, hp.threshold_theta, hp.latency)
    sigma = np.sqrt(2.0 / (784 + 32 + 10))
    for layer in net.layers:
        np.testing.assert_allclose(layer.pulse_times, np.arange(1, 11) / 11)
        assert layer.weights.mean() == pytest.approx(hp.weight_mean_multiplier * sigma, rel=0.02)
        assert layer.weights.std() == pytest.approx(sigma, rel=0.02)
        assert layer.pulse_weights.mean() == pytest.approx(hp.pulse_weight_mean_multiplier * sigma, rel=0.1)


def _cfg(epochs, **kw):
    hp = with_overrides(get_preset(DEFAULT_PRESET), hidden=8)
    return TrainConfig(hp=hp, dataset="mnist", epochs=epochs, limit_train=140, limit_eval=40, **kw)


def test_tiny_run_lowers_the_loss_and_exports_the_best_model(tmp_path):
    cfg = _cfg(2)
    from models.datasets import load_dataset

    val = load_dataset("mnist", "val", limit=40)
    before = evaluate(init_network(cfg.hp, 784, np.random.default_rng(cfg.seed)), val.images, 0.0, 1.0, 1)
    m = train_temporal(cfg, tmp_path, progress=False, log=lambda s: None)
    assert m["val_mse"] < 0.75 * before
    assert [h["epoch"] for h in m["history"]] == [1, 2]
    assert m["val_mse"] == min(h["val_mse"] for h in m["history"])

    net = load_onnx(tmp_path / "model.onnx")
    assert net.sizes == [784, 8, 784]
    meta = net.metadata
    assert meta["dataset"] == "mnist" and meta["preset"] == DEFAULT_PRESET and meta["epochs"] == 2
    assert meta["val_mse"] == m["val_mse"] and meta["test_mse"] == m["test_mse"]
    assert json.loads((tmp_path / "metrics.json").read_text())["test_mse"] == m["test_mse"]
    # the exported model reproduces the reported test score with the exact reference forward
    test = load_dataset("mnist", "test", limit=40)
    from models.encoding import latency_encode, reconstruction_mse

    out = exact_forward(net, latency_encode(test.images, 0.0))[-1]
    assert reconstruction_mse(out, test.images, net.latency) == pytest.approx(m["test_mse"], rel=1e-12)


def test_checkpoint_resume_reproduces_an_uninterrupted_run(tmp_path):
    log = lambda s: None  # noqa: E731
    straight = train_temporal(_cfg(2), tmp_path / "a", progress=False, log=log)
    train_temporal(_cfg(1), tmp_path / "b", progress=False, log=log)
    resumed = train_temporal(_cfg(2), tmp_path / "b", resume=True, progress=False, log=log)
    assert [h["val_mse"] for h in resumed["history"]] == [h["val_mse"] for h in straight["history"]]
    na, nb = load_onnx(tmp_path / "a" / "model.onnx"), load_onnx(tmp_path / "b" / "model.onnx")
    for la, lb in zip(na.layers, nb.layers):
        assert np.array_equal(la.weights, lb.weights) and np.array_equal(la.pulse_times, lb.pulse_times)
        assert np.array_equal(la.pulse_weights, lb.pulse_weights)
    assert np.all(na.layers[1].pulse_times >= 0)

    with pytest.raises(SnncError, match="different settings"):
        train_temporal(_cfg(2, seed=5), tmp_path / "b", resume=True, progress=False, log=log)
    with pytest.raises(SnncError, match="without --resume"):
        train_temporal(_cfg(1), tmp_path / "nothing", resume=True, progress=False, log=log)
