"""Metrics on spike trains: optimal spike matching within a tolerance, spike-count agreement, and the z-scored
reconstruction error of the rate family (Roy et al. 2019).

Spike trains are (N, T, n) arrays of 0/1: samples, steps, neurons. A matching pairs spikes of the same sample and
neuron whose steps differ by at most ``k``; each spike is used at most once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MatchCounts:
    """Spikes of a reference and a target train set, and how many pairs a matching within +-k steps found.

    precision = matched / n_target, recall = matched / n_reference, f1 their harmonic mean; every ratio is 1.0 when
    both sides have no spike. ``fraction`` = matched / max(n_reference, n_target) = min(precision, recall)."""

    k: int
    n_reference: int
    n_target: int
    matched: int

    @property
    def precision(self) -> float:
        return self.matched / self.n_target if self.n_target else float(self.n_reference == 0)

    @property
    def recall(self) -> float:
        return self.matched / self.n_reference if self.n_reference else float(self.n_target == 0)

    @property
    def f1(self) -> float:
        tot = self.n_reference + self.n_target
        return 2.0 * self.matched / tot if tot else 1.0

    @property
    def fraction(self) -> float:
        big = max(self.n_reference, self.n_target)
        return self.matched / big if big else 1.0


def _as_trains(name: str, a: np.ndarray) -> np.ndarray:
    x = np.asarray(a)
    if x.ndim != 3:
        raise ValueError(f"{name} spike trains must be (samples, steps, neurons), got shape {x.shape}")
    return x != 0


def _match_sorted(a: np.ndarray, b: np.ndarray, k: int) -> int:
    """Maximum matching of two sorted step lists with |a_i - b_j| <= k (greedy two-pointer; optimal because every
    spike's window has the same width)."""
    i = j = m = 0
    while i < a.size and j < b.size:
        d = int(a[i]) - int(b[j])
        if -k <= d <= k:
            m += 1
            i += 1
            j += 1
        elif d < 0:
            i += 1      # a[i] is too early for b[j] and every later b
        else:
            j += 1
    return m


def match_spikes(reference: np.ndarray, target: np.ndarray, k: int = 0) -> MatchCounts:
    """Match the spikes of two (N, T, n) train sets within +-k steps, per sample and neuron (optimal matching)."""
    if int(k) != k or k < 0:
        raise ValueError(f"tolerance k must be an integer number of steps >= 0, got {k!r}")
    ref, tgt = _as_trains("reference", reference), _as_trains("target", target)
    if ref.shape != tgt.shape:
        raise ValueError(f"reference trains {ref.shape} and target trains {tgt.shape} differ in shape")
    n_ref, n_tgt = int(ref.sum()), int(tgt.sum())
    if k == 0:
        return MatchCounts(0, n_ref, n_tgt, int((ref & tgt).sum()))
    differ = np.any(ref != tgt, axis=1)                                  # (N, n) trains that are not identical
    matched = int(ref.sum(axis=1)[~differ].sum())
    for s, j in zip(*np.nonzero(differ)):
        matched += _match_sorted(np.flatnonzero(ref[s, :, j]), np.flatnonzero(tgt[s, :, j]), int(k))
    return MatchCounts(int(k), n_ref, n_tgt, matched)


def count_agreement(reference: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(fraction of (sample, neuron) pairs with equal spike counts, mean |count difference| per pair)."""
    ref, tgt = _as_trains("reference", reference), _as_trains("target", target)
    if ref.shape != tgt.shape:
        raise ValueError(f"reference trains {ref.shape} and target trains {tgt.shape} differ in shape")
    d = ref.sum(axis=1, dtype=np.int64) - tgt.sum(axis=1, dtype=np.int64)
    return float(np.mean(d == 0)), float(np.mean(np.abs(d)))


def zscore_rows(x: np.ndarray) -> np.ndarray:
    """Z-score every row (one image or count map): (x - mean) / std with the sample std (ddof 1); std 0 -> 1."""
    a = np.asarray(x, dtype=np.float64).reshape(np.shape(x)[0], -1)
    mu = a.mean(axis=1, keepdims=True)
    sd = a.std(axis=1, ddof=1, keepdims=True) if a.shape[1] > 1 else np.zeros_like(mu)
    sd[~(sd > 0)] = 1.0
    return (a - mu) / sd


def zscore_mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean of squared differences between ``a`` and ``b`` (N, ...) after z-scoring every row of each (Roy et al.
    2019's reconstruction metrics: output spike-count map vs image, or vs input spike-count map). Dimensionless."""
    za, zb = zscore_rows(a), zscore_rows(b)
    if za.shape != zb.shape:
        raise ValueError(f"zscore_mse needs equal shapes per row, got {za.shape} and {zb.shape}")
    return float(np.mean((za - zb) ** 2))
