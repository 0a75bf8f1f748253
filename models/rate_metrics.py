"""Reconstruction metrics of the rate-coded autoencoder (Roy et al. 2019, as the authors' ``ae_train.m``).

Both compare per-image z-scored maps (mean 0, sample standard deviation 1 over the pixels of one image, like
MATLAB's ``zscore``; an image whose std is 0 is divided by 1) and average the squared differences over pixels
and images (dimensionless):

- ``spike_mse``: input spike-count map (spikes per pixel summed over the T steps) vs output spike-count map;
- ``pixel_mse``: input image (pixel values) vs output spike-count map.
"""
from __future__ import annotations

import numpy as np

from toolchain import spike_metrics


def zscore_rows(a: np.ndarray) -> np.ndarray:
    """Per-row z-score (N, n) float64 with the sample std (ddof 1); a row with std 0 keeps std 1
    (toolchain.spike_metrics.zscore_rows, which the verifier uses too, after a shape check)."""
    x = np.asarray(a, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"z-scoring needs (N, n >= 2) maps, got shape {x.shape}")
    return spike_metrics.zscore_rows(x)


def zscored_mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over images and pixels of (zscore(a) - zscore(b))^2 (toolchain.spike_metrics.zscore_mse)."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"maps of different shapes: {a.shape} vs {b.shape}")
    if a.shape[0] == 0:
        return float("nan")
    zscore_rows(a)  # the shape check
    return spike_metrics.zscore_mse(a, b)


def rate_metrics(images01: np.ndarray, input_counts: np.ndarray, output_counts: np.ndarray) -> dict[str, float]:
    """Both metrics: {"spike_mse": input counts vs output counts, "pixel_mse": image vs output counts}."""
    return {"spike_mse": zscored_mse(input_counts, output_counts),
            "pixel_mse": zscored_mse(images01, output_counts)}
