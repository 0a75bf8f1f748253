"""Scores of generated digits (Roy et al. 2019, section 4.2.2; dimensionless, z-scored per image).

Each generated image (decoder spike counts over T steps, or an ANN's output) and each reference image are z-scored
per image (models/rate_metrics.zscore_rows) and compared by the mean squared difference over the 784 pixels:

- ``paired``: against the image the clip was paired with (training clips; dataset A: the class image);
- ``pool``: against the closest image of the clip's digit in the pairing's pool (A: the one class image;
  B: every image paired with a training clip of that digit), the lowest MSE counts (the paper's test score).
"""
from __future__ import annotations

import numpy as np

from models.rate_metrics import zscore_rows


def per_clip_paired(generated: np.ndarray, paired: np.ndarray) -> np.ndarray:
    """(N,) z-scored MSE of each generated image against its paired image."""
    return ((zscore_rows(generated) - zscore_rows(paired)) ** 2).mean(axis=1)


def per_clip_pool(generated: np.ndarray, labels: np.ndarray, pool: tuple[np.ndarray, ...]) -> np.ndarray:
    """(N,) lowest z-scored MSE of each generated image against the pool images of its digit."""
    zg = zscore_rows(generated)
    out = np.empty(generated.shape[0])
    for d in range(len(pool)):
        rows = np.flatnonzero(labels == d)
        if rows.size == 0:
            continue
        zp = zscore_rows(pool[d])
        # ||a - b||^2 / n = (|a|^2 + |b|^2 - 2 a.b) / n, over all pairs at once
        sq = (zg[rows] ** 2).sum(1)[:, None] + (zp ** 2).sum(1)[None, :] - 2.0 * zg[rows] @ zp.T
        out[rows] = np.maximum(sq, 0.0).min(axis=1) / generated.shape[1]
    return out


def nearest_class(generated: np.ndarray, class_images: np.ndarray) -> np.ndarray:
    """(N,) digit whose class image is closest (z-scored MSE): how often the generated digit is the spoken one."""
    zg, zc = zscore_rows(generated), zscore_rows(class_images)
    d = (zg ** 2).sum(1)[:, None] + (zc ** 2).sum(1)[None, :] - 2.0 * zg @ zc.T
    return np.argmin(d, axis=1)


def score(generated: np.ndarray, labels: np.ndarray, pairing) -> dict:
    """{"mse": mean pool score (the Table 1 figure), "mse_per_digit": 10 means, "class_accuracy": fraction of
    generated images nearest to their own digit's class image}."""
    s = per_clip_pool(generated, labels, pairing.pool)
    per = [float(s[labels == d].mean()) if np.any(labels == d) else float("nan") for d in range(10)]
    acc = float((nearest_class(generated, pairing.class_images) == labels).mean())
    return {"mse": float(s.mean()), "mse_per_digit": per, "class_accuracy": acc}
