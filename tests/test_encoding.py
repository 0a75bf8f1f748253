"""Latency encoding, decoding and the reconstruction MSE (Comsa et al. 2021 conventions)."""
from __future__ import annotations

import numpy as np
import pytest

from models.encoding import decode, latency_encode, reconstruction_mse, target_times
from toolchain.errors import DataError

P = np.array([[0.0, 0.25, 0.5, 1.0], [1.0, 0.0, 0.0, 0.75]])


def test_clean_encoding():
    t = latency_encode(P)
    assert t.dtype == np.float64 and t.shape == P.shape
    np.testing.assert_array_equal(t, [[np.inf, 0.75, 0.5, 0.0], [0.0, np.inf, np.inf, 0.25]])
    np.testing.assert_array_equal(target_times(P), 1.0 - P)
    np.testing.assert_array_equal(latency_encode(P, noise=0.0), t)


@pytest.mark.parametrize("noise_mean", [1.0, 0.0])
def test_noisy_encoding(noise_mean):
    rng_images = np.random.default_rng(1).uniform(0.05, 1.0, size=(200, 50))
    t1 = latency_encode(rng_images, noise=0.4, noise_mean=noise_mean, rng=np.random.default_rng(7))
    t2 = latency_encode(rng_images, noise=0.4, noise_mean=noise_mean, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(t1, t2)  # seeded
    finite = np.isfinite(t1)
    assert np.all((t1[finite] >= 0.0) & (t1[finite] < 1.0))
    # the noise model before clamping: t + 0.4 r, r ~ N(mean, 1)
    r = np.random.default_rng(7).normal(noise_mean, 1.0, size=rng_images.shape)
    expected = np.clip(1.0 - rng_images + 0.4 * r, 0.0, 1.0)
    np.testing.assert_array_equal(t1, np.where(expected >= 1.0, np.inf, expected))
    delay = np.mean(np.where(finite, t1, 1.0) - (1.0 - rng_images))
    if noise_mean == 1.0:
        assert delay > 0.1  # the paper's variant delays spikes on average
    else:
        assert abs(delay) < 0.1


def test_decode_inverts_the_code():
    latency = 2.0
    out = latency + target_times(P)
    np.testing.assert_allclose(decode(out, latency), P, atol=1e-15)
    out[0, 1] = np.inf
    out[1, 0] = latency + 5.0  # too late -> 0
    out[1, 1] = latency - 3.0  # too early -> 1
    d = decode(out, latency)
    assert d[0, 1] == 0.0 and d[1, 0] == 0.0 and d[1, 1] == 1.0


def test_reconstruction_mse():
    latency = 1.0
    perfect = latency + target_times(P)
    assert reconstruction_mse(perfect, P, latency) == 0.0
    silent = np.full(P.shape, np.inf)  # missing spike = 1.0 after the latency -> error p^2
    assert reconstruction_mse(silent, P, latency) == pytest.approx(np.mean(P**2))
    out = perfect.copy()
    out[0, 2] += 0.3  # late by 0.3
    out[1, 3] = latency + 1.6  # not clipped: (1.6 - 0.25)^2
    expected = (0.3**2 + 1.35**2) / P.size
    assert reconstruction_mse(out, P, latency) == pytest.approx(expected)


def test_bad_inputs():
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        latency_encode(P * 255)
    with pytest.raises(DataError, match="2-D"):
        latency_encode(P[0])
    with pytest.raises(DataError, match="noise"):
        latency_encode(P, noise=-1)
    with pytest.raises(DataError, match="shape"):
        reconstruction_mse(np.zeros((2, 3)), P, 1.0)
