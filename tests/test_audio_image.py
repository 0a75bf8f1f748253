"""The image model's side of [G] (docs/audio.md "Which image model"): dataset B's floor (models/audio_floor.py) and
the ANN baseline's options (--class-image best-drawn supported, options of the SNN rule refused)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from toolchain.cli import main
from toolchain.errors import SnncError

from test_audio_data import SHARED, needs_fsdd
from test_audio_train import SMALL, _image_model


def test_floor_b_bounds(tmp_path, monkeypatch):
    """Dataset B's floor: each pool image's decoded target scored against the closest pool image of its digit is no
    worse than against the image itself (same target draw as the trainer); the per-digit best is no worse than the
    per-digit mean; the pairing is the trainer's (seed 0)."""
    from models.audio_floor import floors_b
    from models.audio_pairs import drawn_floor, pair
    from models.audio_trainer import load_image_model
    from models.datasets import load_dataset
    from models.fsdd import split_labels

    monkeypatch.delenv("SNNC_DATA", raising=False)       # the bundled MNIST subset: fast
    m = load_dataset("mnist", "train")
    g, _ = load_image_model(_image_model(tmp_path / "ae"))
    labels = split_labels("train", 200)
    r = floors_b(g, m.images, m.labels, labels, t_h=10, steps=30, seed=0)
    p = pair("B", labels, m.images, m.labels, 0)
    uniq, inv = np.unique(p.image_ids, return_inverse=True)
    assert r["n_pool"] == uniq.size
    own = drawn_floor(g, m.images[uniq], 10, 30, seeds=(3,))[inv.reshape(-1)]   # the trainer's draw, own image
    assert 0 < r["floor_mean"] <= own.mean() + 1e-12
    for d in range(10):
        assert r["floor_best_per_digit"][d] <= r["floor_mean_per_digit"][d] <= own[labels == d].mean() + 1e-12
    assert r["floor_best"] == pytest.approx(np.mean(r["floor_best_per_digit"]))
    assert r["floor_mean"] < 4


def test_floor_module_pairing_b(tmp_path, capsys, monkeypatch):
    from models.audio_floor import main as floor_main

    monkeypatch.delenv("SNNC_DATA", raising=False)
    ae = _image_model(tmp_path / "ae")
    assert floor_main(["--image-model", str(ae), "--pairing", "B", "--draws", "1"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "floors" not in r and r["t_h_b"] == 10 and r["floors_b"]["n_pool"] > 1000
    assert 0 < r["floors_b"]["floor_best"] <= r["floors_b"]["floor_mean"] < 4
    with pytest.raises(SnncError, match="--pairing must be A, B or A,B"):
        floor_main(["--image-model", str(ae), "--pairing", "C"])


@pytest.mark.parametrize("extra,named", [(["--current-penalty", "0.1"], "--current-penalty"),
                                         (["--miss-weight", "3", "--adam", "persistent"], "--adam, --miss-weight"),
                                         (["--leak", "chip"], "--leak")])
def test_ann_refuses_snn_rule_options(tmp_path, capsys, extra, named):
    """--ann with an option of the spiking rule: a clear error naming it and the fix, nothing written."""
    out = tmp_path / "ann"
    assert main(["train", "audio", "--ann", "adam", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert named in err and "ANN baseline (--ann adam) would ignore" in err and "fix: drop" in err
    assert not out.exists()


def test_ann_best_drawn_needs_the_image_model(tmp_path):
    from models.audio_trainer import AudioConfig, resolve_class_ids
    from models.datasets import load_dataset

    m = load_dataset("mnist", "train")
    with pytest.raises(SnncError, match="pass --image-model"):
        resolve_class_ids(AudioConfig(class_image="best-drawn"), None, m)


@needs_fsdd
def test_ann_uses_the_snn_class_images(tmp_path, capsys, monkeypatch):
    """snnc train audio --ann adam --class-image best-drawn --image-model M: the ANN is paired with and scored
    against the same fixed images as an SNN run on M (stored in its metadata; `snnc eval` reproduces the score)."""
    from models.audio_ann import load_ann
    from models.audio_trainer import AudioConfig, resolve_class_ids
    from models.datasets import load_dataset

    monkeypatch.setenv("SNNC_DATA", str(SHARED))
    img = _image_model(tmp_path / "ae")
    out = tmp_path / "ann"
    args = ["--pairing", "A", "--class-image", "best-drawn", "--class-candidates", "4", "--epochs", "2",
            "--feature-cache", str(tmp_path / "cache"), *SMALL]
    assert main(["train", "audio", "--ann", "adam", "--out", str(out), *args]) == 2     # no --image-model
    assert "pass --image-model" in capsys.readouterr().err and not (out / "metrics.json").exists()
    assert main(["train", "audio", "--ann", "adam", "--image-model", str(img), "--out", str(out), *args]) == 0
    meta = load_ann(out / "audiocoder-ann.npz")[3]
    m = load_dataset("mnist", "train")
    snn_ids = resolve_class_ids(AudioConfig(pairing="A", steps=8, class_image="best-drawn", class_candidates=4),
                                img, m, log=lambda s: None)
    near = resolve_class_ids(AudioConfig(pairing="A"), None, m)
    assert meta["class_image_ids"] == snn_ids.tolist() and snn_ids.tolist() != near.tolist()
    ma = json.loads((out / "metrics.json").read_text())
    assert main(["eval", str(out), "--json", str(tmp_path / "ev.json")]) == 0
    assert json.loads((tmp_path / "ev.json").read_text())["test_mse"] == pytest.approx(ma["test_mse"], rel=1e-6)
