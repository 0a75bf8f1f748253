"""ANN baseline: a tiny seeded run learns, checkpoints reload, presets give the SNN optimiser settings."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from models.ann import (AnnConfig, add_ann_args, ann_inputs, load_checkpoint, pixel_mse, reconstruct,
                        resolve_config, train_ann, train_ann_cli)
from models.datasets import load_dataset
from toolchain.errors import ArtifactError, SnncError


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def test_presets_give_snn_optimiser_settings():
    cfg = resolve_config(preset="noise=0,latency=1,hidden=32")
    assert (cfg.hidden, cfg.batch_size, cfg.lr, cfg.noise) == (32, 7, 0.001676, 0.0)
    cfg = resolve_config(preset="noise=0.2,latency=4,hidden=16", batch_size=50)
    assert (cfg.hidden, cfg.batch_size, cfg.lr, cfg.noise) == (16, 50, 0.012222, 0.2)
    cfg = resolve_config(hidden=8)  # default condition noise 0, latency 1
    assert (cfg.batch_size, cfg.lr) == (18, 0.002455)
    with pytest.raises(SnncError, match="no preset"):
        resolve_config(preset="noise=0.3,latency=1,hidden=32")
    with pytest.raises(SnncError, match="lacks"):
        resolve_config(preset="noise=0,hidden=32")


def test_inputs_follow_the_spiking_code():
    p = np.array([[0.0, 0.5, 1.0]])
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(ann_inputs(p, AnnConfig(), rng), p)
    np.testing.assert_allclose(ann_inputs(p, AnnConfig(inverted=True), rng), 1 - p)
    noisy = ann_inputs(np.full((50, 784), 0.5), AnnConfig(noise=0.4), np.random.default_rng(1))
    assert noisy.dtype == np.float32 and noisy.min() >= 0 and noisy.max() <= 1 and noisy.mean() < 0.45


@pytest.mark.parametrize("inverted", [False, True])
def test_tiny_training_run_learns(tmp_path, monkeypatch, inverted):
    monkeypatch.delenv("SNNC_DATA", raising=False)
    cfg = resolve_config(hidden=8, epochs=3, batch_size=16, lr=1e-2, inverted=inverted, seed=1)
    out = tmp_path / "ann"
    res = train_ann(cfg, limit=400, eval_limit=100, out=out, log=lambda s: None)
    losses = [h["train_loss"] for h in res["history"]]
    vals = [h["val_mse"] for h in res["history"]]
    assert losses[-1] < 0.8 * losses[0] and min(vals) < vals[0]
    assert res["val_mse"] == min(vals) and res["best_epoch"] == int(np.argmin(vals)) + 1
    # predicting the mean pixel everywhere scores about 0.1; the inverted code learns more slowly
    assert res["test_mse"] < (0.15 if inverted else 0.09)
    # the checkpoint holds the best-on-validation weights and reproduces the test score
    model, cfg2, ckpt = load_checkpoint(out / "ann.pt")
    assert cfg2 == cfg and ckpt["best_epoch"] == res["best_epoch"]
    test = load_dataset("mnist", "test", limit=100)
    rec = reconstruct(model, cfg2, test.images, np.random.default_rng(cfg.seed + 2))
    assert pixel_mse(rec, test.images) == pytest.approx(res["test_mse"], rel=1e-6)
    assert (out / "reconstructions.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "metrics.json").read_text())["test_mse"] == res["test_mse"]
    # seeded: the same run gives the same numbers
    again = train_ann(cfg, limit=400, eval_limit=100, log=lambda s: None)
    assert again["test_mse"] == res["test_mse"]


def test_cli_entry_point_and_bad_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SNNC_DATA", raising=False)
    parser = argparse.ArgumentParser()
    add_ann_args(parser)
    args = parser.parse_args(["--hidden", "4", "--epochs", "1", "--batch-size", "32", "--lr", "0.01", "--limit", "64",
                              "--eval-limit", "20", "--out", str(tmp_path / "r"), "--dataset", "fashion-mnist"])
    assert train_ann_cli(args) == 0
    assert "test MSE per pixel" in capsys.readouterr().out
    assert (tmp_path / "r" / "ann.pt").exists()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ArtifactError, match="is unreadable"):
        load_checkpoint(bad)
