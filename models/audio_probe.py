"""Linear probe of the audio features: can a linear classifier read the spoken digit off them?

A diagnostic for the audiocoder (issue [G]): if a linear read-out of the cochleagram (or of the Bernoulli input
spikes the audiocoder actually sees) predicts the digit well, the features, padding and normalisation are fine and
a poor audiocoder is a training problem. The classifier is a ridge classifier (one-hot targets, closed form in the
dual: ``W = X^T (X X^T + lam I)^-1 Y`` on features centred by the training mean), so the probe needs no extra
dependency and is deterministic.

    python -m models.audio_probe [--audio-rate 8000 --decimation 80 --frames 120] [--pool 10] [--spikes]
    python -m models.audio_probe --model RUN        # a trained audiocoder: its hidden and code spike counts

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


def layer_counts(ac, features, rows, seed: int = 0, chunk: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Spike counts over the T steps of an audiocoder's hidden layer (len(rows), H) and code layer (len(rows),
    n_code) for clips ``rows`` of a FeatureSet, from the float reference of the joint graph
    (toolchain.lif_reference.simulate; Bernoulli inputs drawn from ``seed``)."""
    from models.audio_deploy import joint_graph
    from models.audio_model import encode_clip
    from toolchain.lif_reference import simulate

    g = joint_graph(ac)
    rng = np.random.default_rng(seed)
    hid, code = [], []
    rows = np.asarray(rows, np.int64)
    for c in range(0, rows.shape[0], chunk):
        rr = rows[c:c + chunk]
        x = np.zeros((rr.shape[0], ac.steps, ac.n_in), np.uint8)
        for k, n in enumerate(rr):
            for t, idx in enumerate(encode_clip(*features.sparse(int(n)), ac.steps, ac.p_scale, rng)):
                x[k, t, idx] = 1
        tr = simulate(g, x)
        hid.append(tr.spikes[0].sum(axis=1))
        code.append(tr.spikes[1].sum(axis=1))
    return (np.concatenate(hid).astype(np.float32) if hid else np.zeros((0, ac.hidden), np.float32),
            np.concatenate(code).astype(np.float32) if code else np.zeros((0, ac.n_code), np.float32))


def probe_model(ac, train, test, stride: int = 3, lam: float = 1.0) -> dict:
    """Linear probes of a trained audiocoder's hidden and code spike counts (every ``stride``-th training clip to
    fit, all test clips to score) and its hidden layer's activity."""
    rows = np.arange(0, len(train), stride)
    htr, ctr = layer_counts(ac, train, rows, seed=1)
    hte, cte = layer_counts(ac, test, np.arange(len(test)), seed=2)
    return {"hidden_spikes_per_clip": float(hte.sum(1).mean()), "code_spikes_per_clip": float(cte.sum(1).mean()),
            "hidden_silent_fraction": float((hte.sum(0) == 0).mean()),
            "hidden_saturated_fraction": float((hte.mean(0) >= 0.9 * ac.steps).mean()),
            "probe_hidden": ridge_probe(htr, train.labels[rows], hte, test.labels, lam),
            "probe_code": ridge_probe(ctr, train.labels[rows], cte, test.labels, lam)}


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
    ap.add_argument("--model", default=None, help="probe this trained audiocoder's hidden and code spike counts "
                                                  "instead (its own feature settings)")
    a = ap.parse_args(argv)
    if a.model is not None:
        from models.audio_model import load_audiocoder

        ac = load_audiocoder(a.model)
        spec = FeatureSpec(**ac.meta["spec"])
        tr = load_features("train", spec, data_dir=a.data_dir, cache_dir=a.feature_cache)
        te = load_features("test", spec, data_dir=a.data_dir, cache_dir=a.feature_cache)
        print(json.dumps({"model": a.model, **probe_model(ac, tr, te, lam=a.lam)}), flush=True)
        return 0
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
