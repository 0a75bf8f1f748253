"""`snnc demo`'s training stage: a demo-sized run must learn (not just predict the mean image)."""
from __future__ import annotations

import numpy as np
import pytest

from models.datasets import load_dataset
from models.encoding import mean_image_mse
from toolchain.cli import build_parser
from toolchain.cli_demo import LEARNED_FACTOR, DemoModel, train_demo_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _demo_defaults() -> tuple[int, int]:
    demo = build_parser()._subparsers._group_actions[0].choices["demo"]
    args = demo.parse_args([])
    return args.epochs, args.limit_train


def test_demo_sized_training_beats_the_mean_image_by_2x(tmp_path):
    epochs, limit = _demo_defaults()  # exactly what `snnc demo` / `make demo` trains (8 epochs, 1,800 images)
    lines: list[str] = []
    model = train_demo_model(tmp_path, epochs, limit, log=lines.append)
    assert model.baseline_mse == pytest.approx(0.0649, abs=0.002)  # the bundled subset's mean-image MSE
    assert model.mse <= model.baseline_mse / 2 and model.learned  # measured 0.0256 (2.5x)
    assert model.mse <= 0.030
    text = "\n".join(lines)
    assert f"exact model test MSE {model.mse:.5f} (mean-image baseline {model.baseline_mse:.5f}" in text
    assert model.png.read_bytes()[:4] == b"\x89PNG" and model.model_path.is_file()
    # a re-run of the demo replaces its own training folder (no --force needed)
    again = train_demo_model(tmp_path, 1, 70, log=lines.append)
    assert again.model_path == model.model_path


def test_mean_image_baseline_and_learned_rule():
    train = load_dataset("mnist", "train", source="bundled", limit=100).images
    test = load_dataset("mnist", "test", source="bundled", limit=50).images
    base = mean_image_mse(train, test)
    expected = np.mean((test.astype(np.float64) - train.astype(np.float64).mean(0)) ** 2)
    assert base == pytest.approx(expected, rel=1e-12)
    kw = dict(model_path=None, png=None, val_mse=0.0, n_test=50, train_seconds=0.0)
    assert not DemoModel(mse=0.0628, baseline_mse=0.0649, **kw).learned  # the old demo: the mean image, blurred
    assert DemoModel(mse=0.0649 / LEARNED_FACTOR, baseline_mse=0.0649, **kw).learned
    assert "1.0x better" in DemoModel(mse=0.0628, baseline_mse=0.0649, **kw).summary()


def test_demo_never_says_pass_for_a_model_that_did_not_learn(tmp_path, capsys):
    """The whole demo (hw_sim only, 2 images) after 10 Adam steps: the model is no better than the mean image."""
    from toolchain.cli_demo import run_demo

    assert run_demo(tmp_path, epochs=1, limit_train=70, limit_verify=2, targets=("hw_sim",)) == 1
    out = capsys.readouterr().out
    assert "mean-image baseline" in out and "did NOT learn" in out
    assert "verification: NOT PASSED - the model did not learn" in out and "verification: PASS" not in out


def test_rate_leg_learns_compiles_deploys_and_verifies(tmp_path, capsys):
    """`snnc demo --family rate` with its defaults (8 epochs on the bundled subset), verified on hw_sim only."""
    import json

    from toolchain.cli_demo import RATE_EPOCHS, run_rate_demo

    demo = build_parser()._subparsers._group_actions[0].choices["demo"]
    args = demo.parse_args(["--family", "rate"])
    assert args.family == "rate" and args.rate_epochs == RATE_EPOCHS
    rc = run_rate_demo(tmp_path, args.rate_epochs, args.limit_train, limit_verify=3, targets=("hw_sim",))
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "mean-image baseline 0.9592" in out and "verification (rate): " in out  # bundled subset's baseline
    factor = float(out.split("mean-image baseline 0.9592, ")[1].split("x better")[0])
    assert factor >= LEARNED_FACTOR                                  # measured 2.3x (test MSE 0.418)
    assert "steps network 784-196-784, T<=15 steps" in out and "hw_sim-lif" in out
    rep = json.loads((tmp_path / "verify" / "report.json").read_text())
    assert rep["family"] == "steps" and rep["context"]["samples"] == 3
    hw = rep["verification"]["targets"][0]
    assert hw["target"] == "hw_sim-lif" and hw["layers"][1]["n_target"] > 0
    assert (tmp_path / "compiled.npz").is_file() and (tmp_path / "train" / "reconstructions.png").is_file()
    assert rep["plots"] == ["raster.png", "count_maps.png"]                  # steps report plots
    assert all((tmp_path / "verify" / f).read_bytes()[:4] == b"\x89PNG" for f in rep["plots"])


def test_rate_leg_never_says_pass_for_a_model_that_did_not_learn(tmp_path, capsys):
    from toolchain.cli_demo import run_rate_demo

    assert run_rate_demo(tmp_path, epochs=1, limit_train=100, limit_verify=2, targets=("hw_sim",)) == 1
    out = capsys.readouterr().out
    assert "did NOT learn" in out and "verification (rate): NOT PASSED" in out and "(rate): PASS" not in out
