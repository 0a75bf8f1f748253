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
