"""Bernoulli (rate) encoding of images for the LIF autoencoder of Roy, Panda & Roy 2019.

Each pixel p in [0, 1] becomes a spike train of ``steps`` steps with one Bernoulli draw per step:
P(spike) = dt * max_rate * p = ``p_scale`` * p (dt = 1 ms; MNIST max_rate 300 Hz -> p_scale 0.3; Fashion-MNIST
500 Hz -> 0.5, an option). The authors' MATLAB code (purdue-nrl/SpikingAutoencoder, ``pixel_to_spike.m``) draws
the same way.
"""
from __future__ import annotations

import math

import numpy as np

from toolchain.errors import SnncError

MAX_STEPS = 100_000


def check_p_scale(p_scale: float) -> float:
    """p_scale (= dt * max_rate, spikes per step at pixel value 1) must lie in (0, 1]."""
    try:
        v = float(p_scale)
    except (TypeError, ValueError):
        raise SnncError(f"the spike probability scale must be a number in (0, 1], got {p_scale!r}") from None
    if not (math.isfinite(v) and 0.0 < v <= 1.0):
        raise SnncError(f"the spike probability per step at pixel 1 (dt * max_rate) must lie in (0, 1], got {v:g}; "
                        f"e.g. max_rate 300 Hz at dt 1 ms is 0.3")
    return v


def check_steps(steps: int) -> int:
    """Number of time steps T: an integer in [1, MAX_STEPS]."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= MAX_STEPS:
        raise SnncError(f"the number of time steps must be an integer between 1 and {MAX_STEPS}, got {steps!r}")
    return int(steps)


def bernoulli_encode(images01: np.ndarray, steps: int, p_scale: float, rng: np.random.Generator) -> np.ndarray:
    """Spike trains (N, steps, n_pixels) uint8: spike[n, t, i] ~ Bernoulli(p_scale * images01[n, i]).

    images01: (N, n_pixels) in [0, 1]."""
    steps = check_steps(steps)
    p_scale = check_p_scale(p_scale)
    x = np.asarray(images01, dtype=np.float64)
    if x.ndim != 2:
        raise SnncError(f"images must be (N, pixels), got shape {x.shape}")
    if x.size and (not np.all(np.isfinite(x)) or x.min() < 0.0 or x.max() > 1.0):
        raise SnncError("pixel values must lie in [0, 1]; scale 0..255 images by 1/255 first")
    p = (p_scale * x).astype(np.float32)
    u = rng.random((x.shape[0], steps, x.shape[1]), dtype=np.float32)
    return (u < p[:, None, :]).astype(np.uint8)
