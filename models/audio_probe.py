"""Linear probe of the audio features: can a linear classifier read the spoken digit off them?

A diagnostic for the audiocoder (issue [G]): if a linear read-out of the cochleagram (or of the Bernoulli input
spikes the audiocoder actually sees) predicts the digit well, the features, padding and normalisation are fine and
a poor audiocoder is a training problem. The classifier is a ridge classifier (one-hot targets, closed form in the
dual: ``W = X^T (X X^T + lam I)^-1 Y`` on features centred by the training mean), so the probe needs no extra
dependency and is deterministic.

    python -m models.audio_probe [--audio-rate 8000 --decimation 80 --frames 120] [--pool 10] [--spikes]

prints one JSON line per variant (raw values, and with ``--spikes`` one Bernoulli draw of the spike counts over T
steps with p = p_scale * value, as the audiocoder's input). Measured on FSDD: see docs/audio.md.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from toolchain.errors import SnncError


def pooled(x: np.ndarray, frames: int, channels: int, pool: int) -> np.ndarray:
    """(N, frames // pool * channels): frame-major features x (N, frames * channels) summed over blocks of ``pool``
    frames (a trailing partial block is dropped)."""
    if pool < 1 or pool > frames:
        raise SnncError(f"--pool must lie in 1..{frames} (frames per block), got {pool}")
    n = x.shape[0]
    k = frames // pool
    return x.reshape(n, frames, channels)[:, :k * pool].reshape(n, k, pool, channels).sum(2).reshape(n, -1)


def spike_counts(x: np.ndarray, p_scale: float, steps: int, rng: np.random.Generator) -> np.ndarray:
    """One draw of the input spike counts over ``steps`` steps (Binomial(steps, p_scale * x)), float32."""
    return rng.binomial(steps, np.clip(p_scale * x, 0.0, 1.0)).astype(np.float32)


def ridge_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                lam: float = 1.0, n_classes: int = 10) -> dict:
    """Ridge classifier (dual form, features centred by the training mean; ``lam`` relative to the mean diagonal
    of X X^T). Returns {"train_acc", "test_acc"} (fractions)."""
    if train_x.shape[0] != train_y.shape[0] or test_x.shape[0] != test_y.shape[0] or \
            train_x.shape[1] != test_x.shape[1]:
        raise SnncError(f"probe shapes do not match: train {train_x.shape} / {train_y.shape}, test {test_x.shape} / "
                        f"{test_y.shape}")
    mu = train_x.mean(axis=0, dtype=np.float64).astype(np.float32)
    a = np.asarray(train_x, np.float32) - mu
    b = np.asarray(test_x, np.float32) - mu
    k = (a @ a.T).astype(np.float64)
    k[np.diag_indices_from(k)] += lam * max(float(np.trace(k)) / k.shape[0], 1e-12)
    y = np.eye(n_classes)[train_y] - 1.0 / n_classes
    alpha = np.linalg.solve(k, y)
    w = (a.T.astype(np.float64) @ alpha)
    return {"train_acc": float(((a @ w).argmax(1) == train_y).mean()),
            "test_acc": float(((b @ w).argmax(1) == test_y).mean())}


def main(argv: list[str] | None = None) -> int:
    from models.cochleagram import FeatureSpec, load_features

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--audio-rate", type=int, default=12500)
    ap.add_argument("--frames", type=int, default=1500)
    ap.add_argument("--decimation", type=int, default=10)
    ap.add_argument("--pool", type=int, default=1, help="sum blocks of this many frames first (1: raw)")
    ap.add_argument("--lam", type=float, default=1.0, help="ridge strength relative to mean diag(X X^T)")
    ap.add_argument("--spikes", action="store_true", help="also probe one draw of the input spike counts")
    ap.add_argument("--p-scale", type=float, default=0.02)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--feature-cache", default=None)
    a = ap.parse_args(argv)
    spec = FeatureSpec(a.audio_rate, a.frames, a.decimation)
    tr = load_features("train", spec, data_dir=a.data_dir, cache_dir=a.feature_cache)
    te = load_features("test", spec, data_dir=a.data_dir, cache_dir=a.feature_cache)
    xtr, xte = tr.dense(), te.dense()
    variants = [("values", xtr, xte)]
    if a.spikes:
        rng = np.random.default_rng(0)
        variants.append((f"spike counts p={a.p_scale} T={a.steps}", spike_counts(xtr, a.p_scale, a.steps, rng),
                         spike_counts(xte, a.p_scale, a.steps, rng)))
    for name, x1, x2 in variants:
        c0 = time.process_time()
        r = ridge_probe(pooled(x1, spec.frames, spec.channels, a.pool), tr.labels,
                        pooled(x2, spec.frames, spec.channels, a.pool), te.labels, a.lam)
        print(json.dumps({"probe": "ridge", "input": name, "inputs": spec.n_inputs, "pool": a.pool,
                          "dims": spec.frames // a.pool * spec.channels, "n_train": len(tr), "n_test": len(te),
                          **r, "cpu_s": round(time.process_time() - c0, 2)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
