"""Linear probe of the audio features (models/audio_probe.py): it reads a class-dependent pattern, fails on noise,
and refuses bad settings."""
from __future__ import annotations

import numpy as np
import pytest

from models.audio_probe import pooled, ridge_probe, spike_counts
from toolchain.errors import SnncError


def _data(n, frames=12, channels=5, seed=0, signal=1.0):
    protos = np.random.default_rng(100).random((10, frames * channels))   # the same classes in every split
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = np.clip(signal * protos[y] + rng.normal(0, 0.4, (n, frames * channels)), 0, 1).astype(np.float32)
    return x, y


def test_probe_reads_class_patterns_and_not_noise():
    xtr, ytr = _data(400)
    xte, yte = _data(100, seed=1)
    r = ridge_probe(xtr, ytr, xte, yte)
    assert r["test_acc"] > 0.9 and r["train_acc"] > 0.9
    # pooled over frames and as Bernoulli spike counts the pattern stays readable
    rng = np.random.default_rng(2)
    p = pooled(xtr, 12, 5, 3)
    assert p.shape == (400, 4 * 5)
    np.testing.assert_allclose(p[:, :5], xtr.reshape(400, 12, 5)[:, :3].sum(1), rtol=1e-6)
    r2 = ridge_probe(spike_counts(xtr, 0.5, 30, rng), ytr, spike_counts(xte, 0.5, 30, rng), yte)
    assert r2["test_acc"] > 0.8
    # features without class information: chance level on the test set
    ntr, _ = _data(400, seed=3, signal=0.0)
    nte, _ = _data(100, seed=4, signal=0.0)
    assert ridge_probe(ntr, ytr, nte, yte)["test_acc"] < 0.3


def test_probe_bad_settings():
    x, y = _data(20)
    with pytest.raises(SnncError, match="--pool must lie in 1..12"):
        pooled(x, 12, 5, 0)
    with pytest.raises(SnncError, match="probe shapes do not match"):
        ridge_probe(x, y[:5], x, y)


def test_probe_of_a_model_reads_its_layers():
    """layer_counts gives the joint graph's hidden and code spike counts; probe_model scores them."""
    from models.audio_model import AudioCoder, run_clip, encode_clip
    from models.audio_probe import layer_counts, probe_model
    from models.cochleagram import FeatureSet, FeatureSpec

    rng = np.random.default_rng(0)
    meta = {"spec": {"rate": 8000, "frames": 3, "decimation": 10, "ear_q": 8, "step_factor": 0.5}, "steps": 10,
            "p_scale": 0.6, "pairing": "A"}
    ac = AudioCoder(rng.normal(0.05, 0.3, (96, 30)).astype(np.float32), rng.normal(0.1, 0.4, (12, 30)).astype(
        np.float32), rng.normal(0.1, 0.5, (784, 12)), 0.9, 1.0, meta)
    protos = rng.random((10, 96))
    y = np.arange(60) % 10
    vals = np.clip(protos[y] + rng.normal(0, 0.1, (60, 96)), 0, 1).astype(np.float16).reshape(60 * 3, 32)
    fs = FeatureSet(FeatureSpec(8000, 3), vals, np.arange(0, 181, 3), y, np.array(["x"] * 60), np.zeros(60, np.int64))
    h, c = layer_counts(ac, fs, [0, 5], seed=4)
    r = np.random.default_rng(4)
    for k, n in enumerate([0, 5]):
        code, _ = run_clip(ac, encode_clip(*fs.sparse(n), 10, 0.6, r))
        np.testing.assert_array_equal(c[k], code.sum(0))
    assert h.shape == (2, 30) and h.sum() > 0
    res = probe_model(ac, fs, fs.subset(np.arange(30)), stride=1)
    assert 0 <= res["hidden_silent_fraction"] <= 1 and res["probe_hidden"]["train_acc"] > 0.5
