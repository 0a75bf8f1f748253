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
    # hidden 4 is outside the table: the nearest row (hidden 8) is used and named, with hidden replaced
    assert "test MSE per pixel" in text and "preset row noise=0,latency=1,hidden=8" in text
    assert "overridden: hidden=4, batch_size=10, n_pulses=3" in text
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


TINY = ["--dataset", "mnist", "--limit-train", "70", "--limit-eval", "40", "--epochs", "1", "--hidden", "4",
        "--n-pulses", "3", "--batch-size", "10", "--threads", "1", "--no-progress"]


def _weights_norm(path) -> float:
    import numpy as np

    return float(sum(np.sum(l.all_weights() ** 2) for l in load_onnx(path).layers))


def _dead_pid() -> int:
    import subprocess

    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_rerun_is_refused_without_force_and_stale_temp_files_are_removed(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "temporal", *TINY, "--out", str(out)]) == 0
    before = (out / "model.onnx").read_bytes()
    capsys.readouterr()
    # a plain re-run would silently replace the trained model: refused, naming both ways forward
    assert main(["train", "temporal", *TINY, "--seed", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds a trained run" in err and "--force" in err and "--resume" in err
    assert (out / "model.onnx").read_bytes() == before
    # 0-byte leftovers of a killed atomic write (toolchain/atomic.py names them .<name>.<random>.tmp)
    stale = [out / ".checkpoint.pt.k1ll3d.tmp", out / ".model.onnx.abc123.tmp", out / ".metrics.json.x.tmp",
             out / f".snnc-tmp-{_dead_pid()}-model.onnx.q1w2e3r4.tmp"]
    for p in stale:
        p.write_bytes(b"")
    unrelated = out / ".notes.txt.keep.tmp"
    unrelated.write_bytes(b"")
    assert main(["train", "temporal", *TINY, "--epochs", "2", "--resume", "--out", str(out)]) == 0
    assert not any(p.exists() for p in stale) and unrelated.exists()
    (out / ".model.onnx.again.tmp").write_bytes(b"")
    assert main(["train", "temporal", *TINY, "--seed", "3", "--force", "--out", str(out)]) == 0
    assert (out / "model.onnx").read_bytes() != before and not (out / ".model.onnx.again.tmp").exists()
    # the ANN trainer refuses the same way
    ann = tmp_path / "ann"
    ann_args = ["train", "ann", "--hidden", "4", "--epochs", "1", "--limit-train", "64", "--limit-eval", "20",
                "--device", "cpu", "--out", str(ann)]
    assert main(ann_args) == 0
    capsys.readouterr()
    assert main(ann_args) == 2
    err = capsys.readouterr().err
    assert "already holds a trained run" in err and "--force" in err and "has no --resume" in err
    assert main([*ann_args, "--force"]) == 0
    # an --out that cannot be a folder is refused before any training
    for model in ("temporal", "ann"):
        assert main(["train", model, "--out", str(out / "model.onnx" / "sub")]) == 2
        assert "is a file, not a folder" in capsys.readouterr().err
        assert main(["train", model, "--out", str(out / "model.onnx")]) == 2
        assert "is an existing file, expected a folder" in capsys.readouterr().err


class _RunsCode:
    """Unpickling this calls Path.touch(marker): what a malicious checkpoint would do with os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_crafted_checkpoint_is_refused_and_its_code_does_not_run(tmp_path, capsys):
    import torch

    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"format": "snnc-temporal", "version": 2, "payload": _RunsCode(str(marker))}, out / "checkpoint.pt")
    assert main(["train", "temporal", *TINY, "--resume", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "refused to load checkpoint" in err and "could run code" in err
    assert not marker.exists()
    # the ANN checkpoint loader (used by `snnc eval`) refuses the same file
    ann = tmp_path / "ann.pt"
    ann.write_bytes((out / "checkpoint.pt").read_bytes())
    assert main(["eval", str(ann), "--dataset", "mnist", "--limit", "5"]) == 2
    assert "refused to load" in capsys.readouterr().err and not marker.exists()


def test_weight_decay_shrinks_the_weights(tmp_path, capsys):
    common = [*TINY, "--epochs", "2", "--lr-weights", "0.01"]
    assert main(["train", "temporal", *common, "--out", str(tmp_path / "plain")]) == 0
    assert main(["train", "temporal", *common, "--weight-decay", "50", "--out", str(tmp_path / "wd")]) == 0
    assert "weight decay 50" in capsys.readouterr().out
    plain, decayed = _weights_norm(tmp_path / "plain" / "model.onnx"), _weights_norm(tmp_path / "wd" / "model.onnx")
    assert decayed < 0.9 * plain  # measured 0.82 (seeded)
    meta = load_onnx(tmp_path / "wd" / "model.onnx").metadata
    assert meta["weight_decay"] == 50.0
    assert main(["train", "temporal", *TINY, "--weight-decay", "-1", "--out", str(tmp_path / "bad")]) == 2
    assert "weight decay must be" in capsys.readouterr().err


def test_condition_flags_select_the_tuned_row(tmp_path):
    import argparse

    from models.presets import add_preset_args, get_preset, preset_from_args

    parser = argparse.ArgumentParser()
    add_preset_args(parser)
    # --noise/--latency/--hidden pick the row of that condition, not the default row with three values replaced
    choice = preset_from_args(parser.parse_args(["--noise", "0.4", "--latency", "8", "--hidden", "16"]))
    assert choice.hp == get_preset("noise=0.4,latency=8,hidden=16") and choice.overrides == ()
    assert "preset row noise=0.4,latency=8,hidden=16" in choice.describe()
    choice = preset_from_args(parser.parse_args(["--preset", "noise=0.2,latency=2,hidden=8", "--hidden", "32"]))
    assert choice.hp == get_preset("noise=0.2,latency=2,hidden=32")
    # a size outside the table takes the nearest row and says so
    choice = preset_from_args(parser.parse_args(["--hidden", "1024", "--batch-size", "64"]))
    row = get_preset("noise=0,latency=1,hidden=32")
    assert choice.row == row.name and (choice.hp.hidden, choice.hp.batch_size) == (1024, 64)
    assert choice.hp.lr_weights == row.lr_weights and choice.overrides == ("hidden=1024", "batch_size=64")
    # every one of the 75 conditions has its own row
    from models.presets import load_table

    for hp in load_table():
        args = parser.parse_args(["--noise", str(hp.noise), "--latency", str(hp.latency), "--hidden", str(hp.hidden)])
        assert preset_from_args(args).hp == hp


def _subparser(parser, *names):
    for name in names:
        parser = parser._subparsers._group_actions[0].choices[name]
    return parser


def test_every_flag_of_train_and_eval_has_help_and_trainers_share_names():
    parser = build_parser()
    flags = {}
    for path in (("train", "temporal"), ("train", "ann"), ("eval",)):
        p = _subparser(parser, *path)
        visible = [a for a in p._actions if a.help != "==SUPPRESS==" and a.dest != "help"]
        for action in visible:
            assert action.help and action.help.strip(), f"{' '.join(path)} {action.option_strings or action.dest}"
        flags[path] = {s for a in visible for s in a.option_strings}
    shared = {"--dataset", "--data-dir", "--epochs", "--limit-train", "--limit-eval", "--weight-decay", "--seed",
              "--device", "--force", "--out", "--preset", "--hidden", "--batch-size", "--lr-weights", "--noise",
              "--noise-mean"}
    assert shared <= flags[("train", "temporal")] and shared <= flags[("train", "ann")]
