"""ANN baseline of the audio-to-image model (Roy et al. 2019, section 4.2.3, Table 1 "ANN" and "ANN + Adam").

AE-ANN: the 784-196-784 ReLU autoencoder of models/rate_ann.py (no biases, U(-0.01, 0.01)), trained for one epoch
on the MNIST training images with SGD (lr 0.01: the stated 0.1 kills every ReLU; weight decay 1e-4) or Adam
(lr 1e-3). Its hidden vector
ReLU(W1 image) of each paired image (full precision, as Table 1) is the target of the AC-ANN: cochleagram (dense,
58,500) -> ReLU 2,048 -> ReLU 196, U(-0.01, 0.01), loss 0.5 sum (target - output)^2 averaged over the batch,
batch 50, 20 epochs (the paper's), SGD (lr 1e-2, weight decay 1e-4) or Adam (lr 1e-3, no weight decay; Adam over
the whole run, bias corrected by the batch number). The paper's lr 1e-4 learns too slowly on FSDD (Adam, small
front end, 20 epochs: 58 % nearest-class vs 95.7 % with 1e-3; docs/audio.md). The generated image is ReLU(W2_AE code) of the AE-ANN, scored like the SNN's
(models/audio_metrics.py). File: ``audiocoder-ann.npz`` (w1, w2 float32; dec_w float32; meta JSON).
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from toolchain.atomic import atomic_path, atomic_write_text
from toolchain.errors import ArtifactError, SnncError

MODEL_NAME = "audiocoder-ann.npz"
OUTPUT_NAMES = (MODEL_NAME, "metrics.json", "generated.png")
FORMAT = "snnc-audiocoder-ann"
AC_LR = {"adam": 1e-3, "sgd": 1e-2}   # measured on FSDD (docs/audio.md); the paper states 1e-4 (too slow here)
AC_WEIGHT_DECAY = 1e-4
AE_SGD_LR = 0.01    # the AE-ANN's SGD step: the stated 0.1 kills every ReLU on MNIST (val MSE 0.999, docs/results.md)


def ann_generate(w1: np.ndarray, w2: np.ndarray, dec_w: np.ndarray, features, chunk: int = 50) -> np.ndarray:
    """Generated images (N, 784): ReLU(dec_w ReLU(w2 ReLU(w1 x))) for every clip of a FeatureSet."""
    out = []
    for c in range(0, len(features), chunk):
        x = features.dense(np.arange(c, min(len(features), c + chunk)))
        code = np.maximum(0.0, np.maximum(0.0, x @ w1.T) @ w2.T)
        out.append(np.maximum(0.0, code @ dec_w.T).astype(np.float64))
    return np.concatenate(out)


def load_ann(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            w1, w2, dec = z["w1"], z["w2"], z["dec_w"]
    except (OSError, KeyError, ValueError, EOFError) as exc:
        raise ArtifactError(f"{path} is not a readable ANN audiocoder ({exc}); retrain it with "
                            f"`snnc train audio --ann adam`") from None
    if meta.get("format") != FORMAT or w1.shape[0] != w2.shape[1] or dec.shape[1] != w2.shape[0]:
        raise ArtifactError(f"{path}: not an ANN audiocoder, or its weights do not chain ({w1.shape}, {w2.shape}, "
                            f"decoder {dec.shape}); retrain it")
    return w1, w2, dec, meta


def train_audio_ann(cfg, out: str | Path, image_model: str | Path | None = None, *, optimizer: str = "adam",
                    lr: float | None = None, data_dir: str | None = None, cache_dir: str | Path | None = None,
                    force: bool = False, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Train AE-ANN then AC-ANN (``cfg``: models.audio_trainer.AudioConfig: pairing, features, hidden, epochs,
    batch, seed, limits, class image rule) and write the outputs into ``out``. ``image_model``: only used by
    ``cfg.class_image`` best-drawn, to choose the same fixed images as the SNN run on that image model (the ANN
    has its own autoencoder); returns the metrics dict."""
    import torch

    from models.audio_metrics import score
    from models.audio_pairs import pair
    from models.audio_trainer import grid_png_bytes, resolve_class_ids
    from models.cochleagram import load_features
    from models.datasets import load_dataset
    from models.rate_ann import RateAnnConfig, train_rate_ann
    from models.temporal_trainer import check_output_folder, remove_stale_temp_files

    if optimizer not in ("sgd", "adam"):
        raise SnncError(f"--ann must be sgd or adam, got {optimizer!r}")
    out = Path(out)
    check_output_folder(out, OUTPUT_NAMES, resume=False, force=force, can_resume=False)
    remove_stale_temp_files(out, OUTPUT_NAMES)
    cache_dir = Path(cache_dir) if cache_dir is not None else out / "cache"
    train = load_features("train", cfg.spec, data_dir=data_dir, cache_dir=cache_dir, limit=cfg.limit_train, log=log)
    test = load_features("test", cfg.spec, data_dir=data_dir, cache_dir=cache_dir, limit=cfg.limit_test, log=log)
    mnist = load_dataset("mnist", "train", data_dir=data_dir)
    val = load_dataset("mnist", "val", data_dir=data_dir)
    c0 = time.process_time()
    ae = train_rate_ann(RateAnnConfig(dataset="mnist", hidden=196, optimizer=optimizer, seed=cfg.seed,
                                      lr=AE_SGD_LR if optimizer == "sgd" else None),
                        mnist.images, val.images[:1000])
    log(f"AE-ANN 784-196-784 ({optimizer}): val MSE {ae['pixel_mse']:.4f} (z-scored), CPU {ae['cpu_seconds']:.1f} s")
    enc_w, dec_w = ae["w1"], ae["w2"]
    pairing = pair(cfg.pairing, train.labels, mnist.images, mnist.labels, cfg.seed,
                   resolve_class_ids(cfg, image_model, mnist, log))
    targets = np.maximum(0.0, pairing.images.astype(np.float32) @ enc_w.T)      # (N, 196)
    rng = np.random.default_rng(cfg.seed)
    init = 0.01
    w1 = torch.from_numpy((rng.random((cfg.hidden, cfg.spec.n_inputs), dtype=np.float32) * 2 - 1) * init)
    w2 = torch.from_numpy((rng.random((targets.shape[1], cfg.hidden), dtype=np.float32) * 2 - 1) * init)
    lr = float(lr) if lr is not None else AC_LR[optimizer]
    params = [w1, w2]
    ms = [torch.zeros_like(p) for p in params]
    vs = [torch.zeros_like(p) for p in params]
    step, history = 0, []
    n_batches = len(train) // cfg.batch_size
    for epoch in range(cfg.epochs):
        t0, e0 = time.perf_counter(), time.process_time()
        perm = rng.permutation(len(train))
        loss_sum = 0.0
        for b in range(n_batches):
            rows = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            x = torch.from_numpy(train.dense(rows))
            y = torch.from_numpy(np.ascontiguousarray(targets[rows], dtype=np.float32))
            z1 = x @ w1.T
            a1 = torch.relu(z1)
            z2 = a1 @ w2.T
            a2 = torch.relu(z2)
            d2 = -(y - a2) * (z2 > 0)
            d1 = (d2 @ w2) * (z1 > 0)
            loss_sum += float(0.5 * ((y - a2) ** 2).sum()) / len(rows)
            grads = [d1.T @ x / len(rows), d2.T @ a1 / len(rows)]
            step += 1
            for k, (w, g) in enumerate(zip(params, grads)):
                if optimizer == "sgd":
                    w.mul_(1.0 - AC_WEIGHT_DECAY).sub_(lr * g)
                else:
                    ms[k].mul_(0.9).add_(g, alpha=0.1)
                    vs[k].mul_(0.999).addcmul_(g, g, value=0.001)
                    w.sub_(lr / (1 - 0.9 ** step) * ms[k] / ((vs[k] / (1 - 0.999 ** step)).sqrt_() + 1e-7))
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / n_batches, "seconds": time.perf_counter() - t0,
                        "cpu_seconds": time.process_time() - e0})
        sc_e = score(ann_generate(w1.numpy(), w2.numpy(), dec_w, test), test.labels, pairing)
        history[-1].update(test_mse=sc_e["mse"], test_class_accuracy=sc_e["class_accuracy"])
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss/sample {loss_sum / n_batches:.3f}, test MSE {sc_e['mse']:.4f}, "
            f"nearest class {100 * sc_e['class_accuracy']:.1f} % ({history[-1]['seconds']:.1f} s, "
            f"CPU {history[-1]['cpu_seconds']:.1f} s)")
    if not all(torch.isfinite(p).all() for p in params):
        raise SnncError("the ANN audiocoder diverged (non-finite weights); lower --lr")
    w1n, w2n = w1.numpy(), w2.numpy()
    gen = ann_generate(w1n, w2n, dec_w, test)
    sc = score(gen, test.labels, pairing)
    meta = {"format": FORMAT, "family": "audiocoder-ann", "optimizer": optimizer, "lr": lr, "pairing": cfg.pairing,
            "spec": dataclasses.asdict(cfg.spec), "config": dataclasses.asdict(cfg), "ae_val_mse": ae["pixel_mse"],
            "class_image_ids": [int(i) for i in pairing.class_ids]}
    metrics = {"pairing": cfg.pairing, "kind": f"ann-{optimizer}", "test_mse": sc["mse"],
               "test_mse_per_digit": sc["mse_per_digit"], "test_class_accuracy": sc["class_accuracy"],
               "ae_ann_val_mse": ae["pixel_mse"], "n_train": len(train), "n_test": len(test), "history": history,
               "cpu_seconds": time.process_time() - c0, "config": dataclasses.asdict(cfg), "lr": lr}
    png = grid_png_bytes(gen, test.labels, title=f"ANN audiocoder ({optimizer}, {cfg.pairing}): test MSE {sc['mse']:.4f}")
    with atomic_path(out / OUTPUT_NAMES[2]) as tmp:
        tmp.write_bytes(png)
    with atomic_path(out / MODEL_NAME) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, w1=w1n, w2=w2n, dec_w=dec_w.astype(np.float32), meta=np.array(json.dumps(meta)))
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    log(f"ANN test MSE {sc['mse']:.4f} (z-scored, dataset {cfg.pairing}); nearest class image in "
        f"{100 * sc['class_accuracy']:.1f} % of test clips")
    return metrics
