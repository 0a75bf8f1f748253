"""Audiocoder quality options (docs/audio.md "Quality"): the weight on missed target spikes (--miss-weight), the
fixed-image rule of dataset A (--class-image best-drawn) and the decoder fed spike trains (the floor)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from models.audio_model import AudioCoder, decode_trains, encode_clip, run_clip
from models.audio_online import online_batch_sparse
from models.rate_online import OnlineRule
from toolchain.cli import main
from toolchain.errors import SnncError

from test_audio_data import SHARED, needs_fsdd
from test_audio_train import SMALL, _image_model, _reference_sparse


def _case(seed=5, n=50, h=600, t=20, b=4, n_out=9):
    rng = np.random.default_rng(seed)
    w1t = rng.uniform(-0.1, 0.25, (n, h)).astype(np.float32)
    w2 = rng.uniform(-0.2, 0.4, (n_out, h)).astype(np.float32)
    x = rng.random((t, b, n)) < rng.uniform(0.0, 0.3, n)
    spikes = [[np.flatnonzero(x[s, c]) for s in range(t)] for c in range(b)]
    tgt = (rng.random((t, b, n_out)) < 0.5).astype(np.uint8)
    return w1t, w2, spikes, tgt


@pytest.mark.parametrize("miss,scale", [(1.0, 1.0), (2.5, 1.0), (1.0, 0.3)])
def test_miss_weight_and_input_lr_equal_per_step_rule(miss, scale):
    """--miss-weight w: the kernel equals the per-step rule whose error on a missed target spike is w (V_th - V);
    --lr-input-scale s: W1's Adam steps are s times as long (W2's unchanged)."""
    w1t, w2, spikes, tgt = _case()
    rule = OnlineRule(lr=1e-3, n_shrink=4000.0)
    a, a2 = w1t.copy(), w2.copy()
    ref = _reference_sparse(a, a2, spikes, tgt, rule, 30, miss_weight=miss, lr_input_scale=scale)
    got = online_batch_sparse(w1t, w2, spikes, tgt, rule, 30, miss_weight=miss, lr_input_scale=scale)
    assert got["loss"] == pytest.approx(ref, rel=1e-5)
    np.testing.assert_allclose(w1t, a, rtol=0, atol=2e-6)
    np.testing.assert_allclose(w2, a2, rtol=0, atol=2e-6)


def test_miss_weight_raises_the_output_rate():
    """Trained on one batch against a target, a larger weight on missed spikes ends with more output spikes (the
    remedy of the masked loss's rate compression) and w = 1 is the default rule bit for bit."""
    w1t, w2, spikes, tgt = _case(seed=8)
    rule = OnlineRule(lr=3e-3, n_shrink=4000.0)
    counts = {}
    for miss in (1.0, 3.0):
        a, a2 = w1t.copy(), w2.copy()
        for _ in range(15):
            r = online_batch_sparse(a, a2, spikes, tgt, rule, 30, miss_weight=miss)
        counts[miss] = float(r["out_spikes"].sum())
        if miss == 1.0:
            d, d2 = w1t.copy(), w2.copy()
            for _ in range(15):
                online_batch_sparse(d, d2, spikes, tgt, rule, 30)
            np.testing.assert_array_equal(a, d)
            np.testing.assert_array_equal(a2, d2)
    assert counts[3.0] > 1.1 * counts[1.0], counts


def test_decode_trains_is_the_clips_decoder():
    """decode_trains on an audiocoder's code trains gives exactly run_clip's generated image."""
    rng = np.random.default_rng(2)
    ac = AudioCoder(np.abs(rng.normal(0.4, 0.3, (300, 40))).astype(np.float32),
                    rng.normal(0.3, 0.5, (20, 40)).astype(np.float32), rng.normal(0.2, 0.6, (784, 20)), 0.9, 1.0,
                    {"steps": 12, "p_scale": 0.2})
    codes, imgs = [], []
    for k in range(3):
        idx = np.arange(300)
        code, img = run_clip(ac, encode_clip(idx, rng.random(300), 12, 0.2, rng))
        codes.append(code)
        imgs.append(img)
    assert np.stack(codes).sum() > 20 and np.stack(imgs).sum() > 20
    np.testing.assert_array_equal(decode_trains(np.stack(codes), ac.dec_w, 0.9, 1.0), np.stack(imgs))


def test_best_drawn_class_images(tmp_path, monkeypatch):
    """best-drawn: of the K images nearest the class mean, the one with the lowest drawn floor; K = 1 is the
    nearest-mean rule; bad rules and K are refused."""
    from models.audio_pairs import class_image_ids, drawn_floor
    from models.audio_trainer import load_image_model
    from models.datasets import load_dataset

    monkeypatch.delenv("SNNC_DATA", raising=False)       # the bundled MNIST subset: fast
    m = load_dataset("mnist", "train")
    g, _ = load_image_model(_image_model(tmp_path / "ae"))
    near = class_image_ids(m.images, m.labels)
    assert np.array_equal(m.labels[near], np.arange(10))
    def floor(im):   # one image at a time: an image's draw does not depend on the other candidates
        return np.array([drawn_floor(g, im[i:i + 1], 15, 30, seeds=(1,))[0] for i in range(im.shape[0])])

    assert np.all((floor(m.images[near]) >= 0) & (floor(m.images[near]) <= 4))
    assert np.array_equal(class_image_ids(m.images, m.labels, "best-drawn", 1, floor), near)
    best = class_image_ids(m.images, m.labels, "best-drawn", 6, floor)
    assert np.array_equal(m.labels[best], np.arange(10))
    f_best, f_near = floor(m.images[best]), floor(m.images[near])
    assert np.all(f_best <= f_near) and f_best.mean() < f_near.mean()
    with pytest.raises(SnncError, match="unknown --class-image rule"):
        class_image_ids(m.images, m.labels, "prettiest")
    with pytest.raises(SnncError, match="needs the image model"):
        class_image_ids(m.images, m.labels, "best-drawn", 5, None)


def test_quality_options_are_checked():
    from models.audio_trainer import AudioConfig

    with pytest.raises(SnncError, match="--miss-weight must be finite and > 0"):
        AudioConfig(miss_weight=0.0)
    with pytest.raises(SnncError, match="--lr-input-scale must be finite and > 0"):
        AudioConfig(lr_input_scale=float("nan"))
    with pytest.raises(SnncError, match="--class-image must be one of"):
        AudioConfig(class_image="prettiest")
    with pytest.raises(SnncError, match="--class-candidates must be >= 1"):
        AudioConfig(class_candidates=0)


@needs_fsdd
def test_cli_best_drawn_and_miss_weight(tmp_path, monkeypatch, capsys):
    """snnc train audio --class-image best-drawn --miss-weight 2: the chosen class images are stored in the model's
    metadata, and `snnc eval` scores against them (it reproduces the training score)."""
    monkeypatch.setenv("SNNC_DATA", str(SHARED))
    img = _image_model(tmp_path / "ae")
    out = tmp_path / "run"
    rc = main(["train", "audio", "--image-model", str(img), "--pairing", "A", "--out", str(out), "--class-image",
               "best-drawn", "--class-candidates", "4", "--miss-weight", "2", "--feature-cache",
               str(tmp_path / "cache"), *SMALL])
    assert rc == 0, capsys.readouterr().err
    from models.audio_model import load_audiocoder

    ac = load_audiocoder(out)
    ids = ac.meta["class_image_ids"]
    assert len(ids) == 10 and ac.meta["config"]["miss_weight"] == 2.0
    assert main(["eval", str(out), "--json", str(tmp_path / "ev.json")]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert json.loads((tmp_path / "ev.json").read_text())["test_mse"] == pytest.approx(m["test_mse"], rel=1e-12)
    assert main(["train", "audio", "--image-model", str(img), "--out", str(tmp_path / "r2"), "--miss-weight",
                 "-1", *SMALL]) == 2
    assert "--miss-weight must be finite" in capsys.readouterr().err


def test_floor_module_json_line(tmp_path, capsys, monkeypatch):
    """python -m models.audio_floor: one JSON line, best-drawn-1 equals nearest-mean, a larger K no higher floor
    on the draws it selected with (it picks by the mean over seeds 100-103, scored here on the trainer's draw)."""
    from models.audio_floor import main as floor_main

    monkeypatch.delenv("SNNC_DATA", raising=False)       # the bundled MNIST subset
    ae = _image_model(tmp_path / "ae")
    assert floor_main(["--image-model", str(ae), "--candidates", "1,3", "--draws", "2"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    f = r["floors"]
    assert set(f) == {"nearest-mean", "best-drawn-1", "best-drawn-3"}
    assert f["best-drawn-1"]["ids"] == f["nearest-mean"]["ids"]
    assert all(0 < v["floor_mean_draws"] < 4 for v in f.values())
    with pytest.raises(SnncError, match="--candidates must be"):
        floor_main(["--image-model", str(ae), "--candidates", "0"])
