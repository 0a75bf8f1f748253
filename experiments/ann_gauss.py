"""The Gaussian-Gaussian ANN autoencoder of Comsa et al. 2021, section 3.4 (Fig. 11): 784-h-784 with the
zero-centred Gaussian activation g(x) = exp(-x^2) after both layers (biases), trained like the ReLU-sigmoid
baseline of ``models/ann.py`` (same inputs, noise model, Adam settings of the preset row, best-on-validation
epoch tested; ``inverted=True`` feeds and predicts the time code 1 - p). Scores are MSE per pixel, [0, 1] units.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict

import numpy as np

from models.ann import ADAM_BETAS, ADAM_EPS, AnnConfig, ann_inputs, pixel_mse, reconstruct


def build_gauss_model(hidden: int, n_pixels: int = 784):
    """784-h-784: Linear + exp(-x^2), Linear + exp(-x^2)."""
    import torch
    import torch.nn as nn

    class Gauss(nn.Module):
        def forward(self, x):
            return torch.exp(-x * x)

    return nn.Sequential(nn.Linear(n_pixels, hidden), Gauss(), nn.Linear(hidden, n_pixels), Gauss())


def train_gauss_ann(cfg: AnnConfig, *, limit: int | None = None, eval_limit: int | None = None,
                    log=print) -> dict:
    """Train on ``cfg.dataset`` ($SNNC_DATA or the bundled subset); returns val/test MSE of the best epoch."""
    import torch

    from models.datasets import load_dataset

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train = load_dataset(cfg.dataset, "train", limit=limit)
    val = load_dataset(cfg.dataset, "val", limit=eval_limit)
    test = load_dataset(cfg.dataset, "test", limit=eval_limit)
    model = build_gauss_model(cfg.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=ADAM_BETAS, eps=ADAM_EPS)
    y = torch.from_numpy((1.0 - train.images if cfg.inverted else train.images).astype(np.float32))
    best = (np.inf, 0, None)
    history = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        x = torch.from_numpy(ann_inputs(train.images, cfg, rng))
        perm = torch.from_numpy(rng.permutation(len(train)))
        for i in range(0, len(train), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(model(x[idx]), y[idx]).backward()
            opt.step()
        v = pixel_mse(reconstruct(model, cfg, val.images, np.random.default_rng(cfg.seed + 1)), val.images)
        history.append({"epoch": epoch, "val_mse": v})
        if v < best[0]:
            best = (v, epoch, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    test_mse = pixel_mse(reconstruct(model, cfg, test.images, np.random.default_rng(cfg.seed + 2)), test.images)
    log(f"ann gauss-gauss {cfg.dataset} 784-{cfg.hidden}-784 noise {cfg.noise:g}: best epoch {best[1]}, "
        f"test MSE {test_mse:.5f}")
    return {"model": "ann-gauss", "config": asdict(cfg), "data_source": train.source, "n_train": len(train),
            "val_mse": float(best[0]), "best_epoch": best[1], "test_mse": test_mse, "history": history,
            "wall_s": time.perf_counter() - t0}
