"""Latency code of Comsa et al. 2021: pixel brightness p in [0, 1] -> input spike time 1 - p (time units).

A background pixel (time >= 1) does not spike (``inf``). Noisy inputs: ``t + noise * r`` with
r ~ N(noise_mean, 1), clamped to [0, 1]; ``noise_mean = 1`` is the paper's variant (noise delays spikes),
``noise_mean = 0`` the non-inverted, zero-mean variant. The clean image is always the target.
The output of the autoencoder for pixel p is expected at ``latency + (1 - p)``.
"""
from __future__ import annotations

import numpy as np

from toolchain.errors import DataError

ENCODINGS = ("latency",)


def _pixels(images01: np.ndarray) -> np.ndarray:
    p = np.asarray(images01, dtype=np.float64)
    if p.ndim != 2:
        raise DataError(f"images must be 2-D (N, pixels), got shape {p.shape}; flatten them first")
    if p.size and (not np.all(np.isfinite(p)) or p.min() < 0.0 or p.max() > 1.0):
        raise DataError("image pixels must lie in [0, 1]; divide uint8 images by 255")
    return p


def latency_encode(images01: np.ndarray, noise: float = 0.0, noise_mean: float = 1.0,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """Input spike times (N, n_pixels) float64 in [0, 1) time units, ``inf`` where a pixel does not spike."""
    p = _pixels(images01)
    t = 1.0 - p
    if noise < 0 or not np.isfinite(noise):
        raise DataError(f"noise must be a finite number >= 0, got {noise}")
    if noise > 0:
        if rng is None:
            rng = np.random.default_rng()
        t = np.clip(t + noise * rng.normal(noise_mean, 1.0, size=t.shape), 0.0, 1.0)
    return np.where(t >= 1.0, np.inf, t)


def target_times(images01: np.ndarray) -> np.ndarray:
    """Target output time relative to the latency, 1 - p (finite; background 1.0): the loss target."""
    return 1.0 - _pixels(images01)


def decode(t_out: np.ndarray, latency: float) -> np.ndarray:
    """Reconstructed pixels clip(1 - (t_out - latency), 0, 1); no spike (inf) -> 0."""
    t = np.asarray(t_out, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        p = np.clip(1.0 - (t - latency), 0.0, 1.0)
    return np.where(np.isfinite(t), p, 0.0)


def reconstruction_mse(t_out: np.ndarray, images01: np.ndarray, latency: float) -> float:
    """The authors' loss and the reported score: mean over samples and pixels of (t_out - latency - (1 - p))^2,
    a missing output spike counting as t_out - latency = 1.0. Units: [0, 1] pixel intensity squared."""
    t = np.asarray(t_out, dtype=np.float64)
    target = target_times(images01)
    if t.shape != target.shape:
        raise DataError(f"output times have shape {t.shape} but the images have {target.shape}; "
                        f"use the model's output layer for the same images")
    if np.any(np.isnan(t)):
        raise DataError("output times contain NaN; use inf for 'no spike'")
    rel = np.where(np.isfinite(t), t - latency, 1.0)
    return float(np.mean((rel - target) ** 2))


def mean_image_mse(train_images01: np.ndarray, test_images01: np.ndarray) -> float:
    """The trivial baseline: per-pixel MSE ([0, 1] units) of predicting the training-set mean image for every
    test image. A model that does not beat it clearly (e.g. by 2x) has learned nothing about the input."""
    train, test = _pixels(train_images01), _pixels(test_images01)
    if train.shape[0] == 0 or train.shape[1] != test.shape[1]:
        raise DataError(f"need training images with as many pixels as the test images, got {train.shape} and "
                        f"{test.shape}")
    return float(np.mean((test - train.mean(axis=0)) ** 2))
