"""``snnc train temporal`` and ``snnc train ann`` through the real CLI entry point (bundled subset)."""
from __future__ import annotations

import json

import pytest

from toolchain.artifact import load_onnx
from toolchain.cli import build_parser, main


@pytest.fixture(autouse=True)
def bundled_data(monkeypatch):
    monkeypatch.delenv("SNNC_DATA", raising=False)


def test_train_temporal_cli_writes_model_checkpoint_and_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "temporal", "--dataset", "mnist", "--limit-train", "70", "--limit-eval", "40",
               "--epochs", "1", "--hidden", "4", "--n-pulses", "3", "--batch-size", "10", "--threads", "1",
               "--no-progress", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "test MSE per pixel" in text and "(overridden: noise=0,latency=1,hidden=4)" in text
    net = load_onnx(out / "model.onnx")
    assert net.sizes == [784, 4, 784] and all(l.n_pulses == 3 for l in net.layers)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["hyperparameters"]["batch_size"] == 10 and metrics["n_train"] == 70
    assert (out / "checkpoint.pt").is_file()
    # resuming a finished run re-exports the same model
    assert main(["train", "temporal", "--dataset", "mnist", "--limit-train", "70", "--limit-eval", "40",
                 "--epochs", "1", "--hidden", "4", "--n-pulses", "3", "--batch-size", "10", "--no-progress",
                 "--resume", "--out", str(out)]) == 0
    again = load_onnx(out / "model.onnx")
    assert (again.layers[0].weights == net.layers[0].weights).all()


def test_train_temporal_cli_errors_name_the_fix(tmp_path, capsys):
    assert main(["train", "temporal", "--preset", "noise=0,latency=3,hidden=32", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no preset" in err and "latency 1/2/4/8/16" in err
    assert main(["train", "temporal", "--batch-size", "0", "--out", str(tmp_path)]) == 2
    assert "batch_size=0" in capsys.readouterr().err
    assert main(["train", "temporal", "--resume", "--out", str(tmp_path / "none")]) == 2
    assert "train without --resume" in capsys.readouterr().err
    assert main(["train", "temporal", "--limit-train", "3", "--out", str(tmp_path)]) == 2
    assert "fewer than one batch" in capsys.readouterr().err
    assert main(["train", "temporal", "--device", "tpu", "--out", str(tmp_path)]) == 2
    assert "unknown device" in capsys.readouterr().err
    assert main(["train", "temporal", "--threads", "0", "--out", str(tmp_path)]) == 2
    assert "--threads must be between" in capsys.readouterr().err


def test_train_help_lists_every_override():
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["train"]
    temporal = sub._subparsers._group_actions[0].choices["temporal"]
    text = temporal.format_help()
    for flag in ("--preset", "--batch-size", "--clip-derivative", "--decay-rate-tau", "--threshold-theta",
                 "--lr-weights", "--lr-pulses", "--n-pulses", "--weight-mean-multiplier", "--penalty-no-spike",
                 "--pulse-weight-mean-multiplier", "--noise", "--latency", "--hidden", "--resume", "--device"):
        assert flag in text
    assert "ann" in sub._subparsers._group_actions[0].choices


def test_train_ann_cli_runs_the_baseline(tmp_path, capsys):
    out = tmp_path / "ann"
    rc = main(["train", "ann", "--dataset", "mnist", "--hidden", "8", "--epochs", "1", "--limit", "64",
               "--eval-limit", "32", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    assert "test MSE per pixel" in capsys.readouterr().out
    assert (out / "ann.pt").is_file()
