"""ANN baselines of Roy et al. 2019's Table 1 (the authors' ``auto_encoder_ann.m``): n-H-n, no biases, ReLU on
both layers, weights U(-0.01, 0.01), loss 0.5 sum (image - output)^2 with the gradient averaged over the batch.

- ``sgd``: W <- W (1 - weight_decay) - lr g (lr 0.1 MNIST, 5e-3 Fashion-MNIST; weight decay 1e-4);
- ``adam``: Adam (0.9, 0.999, eps 1e-7) over the whole epoch, bias-corrected by the batch number; no weight decay.

The score is computed like the SNN's ``pixel_mse`` (models/rate_metrics.py): z-score per image of the input
image and of the output, mean squared difference. Inputs are the images themselves (pixels in [0, 1]).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from models.rate_metrics import zscored_mse
from toolchain.errors import SnncError

OPTIMIZERS = ("sgd", "adam")
SGD_LR = {"mnist": 0.1, "fashion-mnist": 5e-3}
ADAM_LR = 1e-3


@dataclass(frozen=True)
class RateAnnConfig:
    """One ANN baseline run. lr None = the dataset's default for the optimizer."""

    dataset: str = "mnist"
    hidden: int = 196
    optimizer: str = "sgd"
    lr: float | None = None
    weight_decay: float | None = None
    batch_size: int = 100
    epochs: int = 1
    seed: int = 0
    init: float = 0.01

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise SnncError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.hidden < 1 or self.batch_size < 1 or self.epochs < 1:
            raise SnncError("hidden, batch size and epochs must be >= 1")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise SnncError(f"lr must be finite and > 0, got {self.lr}")

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return float(self.lr)
        return SGD_LR.get(self.dataset, 0.1) if self.optimizer == "sgd" else ADAM_LR

    def resolved_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return float(self.weight_decay)
        return 1e-4 if self.optimizer == "sgd" else 0.0


def forward(w1: np.ndarray, w2: np.ndarray, x: np.ndarray) -> np.ndarray:
    """ReLU(ReLU(x W1^T) W2^T) for x (N, n)."""
    return np.maximum(0.0, np.maximum(0.0, x @ w1.T) @ w2.T)


def train_rate_ann(cfg: RateAnnConfig, train_images: np.ndarray, eval_images: np.ndarray) -> dict:
    """Train for ``cfg.epochs`` on train_images (N, n) and return {"pixel_mse" on eval_images, weights, times}."""
    rng = np.random.default_rng(cfg.seed)
    n = train_images.shape[1]
    w1 = rng.uniform(-cfg.init, cfg.init, (cfg.hidden, n)).astype(np.float32)
    w2 = rng.uniform(-cfg.init, cfg.init, (n, cfg.hidden)).astype(np.float32)
    lr, wd = cfg.resolved_lr(), cfg.resolved_weight_decay()
    ms = [np.zeros_like(w1), np.zeros_like(w2)]
    vs = [np.zeros_like(w1), np.zeros_like(w2)]
    step = 0
    c0 = time.process_time()
    for _ in range(cfg.epochs):
        perm = rng.permutation(train_images.shape[0])
        for b0 in range(0, train_images.shape[0] - cfg.batch_size + 1, cfg.batch_size):
            x = train_images[perm[b0:b0 + cfg.batch_size]].astype(np.float32)
            z1 = x @ w1.T
            a1 = np.maximum(0.0, z1)
            z2 = a1 @ w2.T
            a2 = np.maximum(0.0, z2)
            d2 = -(x - a2) * (z2 > 0)
            d1 = (d2 @ w2) * (z1 > 0)
            grads = [d1.T @ x / cfg.batch_size, d2.T @ a1 / cfg.batch_size]
            step += 1
            for k, (w, g) in enumerate(zip((w1, w2), grads)):
                if cfg.optimizer == "sgd":
                    w *= (1.0 - wd)
                    w -= lr * g
                else:
                    ms[k] = 0.9 * ms[k] + 0.1 * g
                    vs[k] = 0.999 * vs[k] + 0.001 * g * g
                    w -= lr * (ms[k] / (1 - 0.9 ** step)) / (np.sqrt(vs[k] / (1 - 0.999 ** step)) + 1e-7)
    cpu = time.process_time() - c0
    out = forward(w1.astype(np.float64), w2.astype(np.float64), eval_images.astype(np.float64))
    return {"pixel_mse": zscored_mse(eval_images, out), "w1": w1, "w2": w2, "cpu_seconds": cpu, "lr": lr,
            "weight_decay": wd, "optimizer": cfg.optimizer}
