"""ANN baseline: a 784-h-784 autoencoder (ReLU encoder, sigmoid decoder, biases) trained with Adam on MSE/pixel.

It uses the optimiser settings of the spiking preset it is compared with (batch size and ``lr_weights`` of the
Comsa et al. 2021 row for (noise, latency, hidden), Adam beta1 0.9, beta2 0.999, eps 1e-8) and the same input
noise model as the spiking encoder (``models/encoding.py``: t = 1 - p, t + noise * N(noise_mean, 1) clamped).
``inverted=True`` feeds and predicts the time code 1 - p instead of p. The reported score is the test MSE per
pixel in [0, 1] units of the best-on-validation epoch, directly comparable with the spiking model's.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from models.datasets import DATASETS, Dataset, load_dataset
from models.encoding import latency_encode
from toolchain.atomic import atomic_path, atomic_write_text
from toolchain.errors import ArtifactError, SnncError

CHECKPOINT_NAME = "ann.pt"
CHECKPOINT_FORMAT = "snnc-ann"
CHECKPOINT_VERSION = 1
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class AnnConfig:
    """Everything that defines one ANN baseline run (stored in the checkpoint)."""

    dataset: str = "mnist"
    hidden: int = 32
    epochs: int = 3
    batch_size: int = 7
    lr: float = 0.001676
    noise: float = 0.0
    noise_mean: float = 1.0
    inverted: bool = False
    seed: int = 0
    preset: str = "noise=0,latency=1,hidden=32"
    weight_decay: float = 0.0


def resolve_config(*, dataset: str = "mnist", preset: str | None = None, hidden: int | None = None,
                   epochs: int = 3, batch_size: int | None = None, lr: float | None = None,
                   noise: float | None = None, noise_mean: float = 1.0, inverted: bool = False,
                   seed: int = 0, weight_decay: float = 0.0) -> AnnConfig:
    """Explicit values win. The condition is ``preset`` (default noise=0, latency=1, hidden=32) with ``noise`` and
    ``hidden`` replacing its values; batch size and lr not given come from the table row of that condition
    (``models.presets.select_row``: the nearest row when the condition is outside the table, e.g. hidden 1024).
    ``weight_decay``: L2 penalty lambda added as ``lambda * w`` to every weight's gradient (Adam ``weight_decay``)."""
    import math

    from models.presets import get_preset, parse_spec, select_row

    if preset:
        get_preset(preset)  # a named preset must be a row of the table
        p_noise, p_latency, p_hidden = parse_spec(preset)
    else:
        p_noise, p_latency, p_hidden = 0.0, 1.0, 32
    hidden = int(hidden if hidden is not None else p_hidden)
    noise = float(noise if noise is not None else p_noise)
    if dataset not in DATASETS:
        raise SnncError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if hidden < 1 or epochs < 1 or (batch_size is not None and batch_size < 1) or (lr is not None and not lr > 0) \
            or not (math.isfinite(noise) and noise >= 0):
        raise SnncError(f"hidden, epochs and batch size must be >= 1, lr > 0 and noise >= 0 "
                        f"(got hidden={hidden}, epochs={epochs}, batch={batch_size}, lr={lr}, noise={noise})")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise SnncError(f"weight decay must be a finite number >= 0 (0 = off), got {weight_decay}")
    row, _ = select_row(noise, p_latency, hidden)
    batch_size = int(batch_size if batch_size is not None else row.batch_size)
    lr = float(lr if lr is not None else row.lr_weights)
    return AnnConfig(dataset=dataset, hidden=hidden, epochs=int(epochs), batch_size=batch_size, lr=lr,
                     noise=noise, noise_mean=float(noise_mean), inverted=bool(inverted), seed=int(seed),
                     preset=row.name, weight_decay=float(weight_decay))


def build_model(hidden: int, n_pixels: int = 784):
    """784-h-784: Linear + ReLU, Linear + sigmoid (both with biases)."""
    import torch.nn as nn

    return nn.Sequential(nn.Linear(n_pixels, hidden), nn.ReLU(), nn.Linear(hidden, n_pixels), nn.Sigmoid())


def ann_inputs(images01: np.ndarray, cfg: AnnConfig, rng: np.random.Generator) -> np.ndarray:
    """Network input (float32): the (noisy) latency code t with 'no spike' = 1, as p' = 1 - t or, inverted, t."""
    t = latency_encode(images01, noise=cfg.noise, noise_mean=cfg.noise_mean, rng=rng)
    t = np.where(np.isfinite(t), t, 1.0)
    return (t if cfg.inverted else 1.0 - t).astype(np.float32)


def _targets(images01: np.ndarray, cfg: AnnConfig) -> np.ndarray:
    p = np.asarray(images01, dtype=np.float32)
    return 1.0 - p if cfg.inverted else p


def reconstruct(model, cfg: AnnConfig, images01: np.ndarray, rng: np.random.Generator,
                device: str = "cpu", batch: int = 2000) -> np.ndarray:
    """Reconstructed pixels in [0, 1] (N, 784) float64 for (noisy) inputs of ``images01``."""
    import torch

    x = ann_inputs(images01, cfg, rng)
    outs = []
    model.eval()
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            outs.append(model(torch.from_numpy(x[i:i + batch]).to(device)).cpu().numpy())
    y = np.concatenate(outs).astype(np.float64) if outs else np.zeros((0, x.shape[1]))
    return 1.0 - y if cfg.inverted else y


def pixel_mse(reconstructed: np.ndarray, images01: np.ndarray) -> float:
    """Mean over samples and pixels of (reconstruction - p)^2, [0, 1] units (as models.encoding)."""
    return float(np.mean((np.asarray(reconstructed, np.float64) - np.asarray(images01, np.float64)) ** 2))


def _pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SnncError("--device cuda requested but CUDA is not available; use --device cpu")
    return device


def save_checkpoint(path: Path, model, cfg: AnnConfig, extra: dict) -> None:
    import torch

    obj = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "config": asdict(cfg),
           "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, **extra}
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def is_ann_checkpoint(path: str | Path) -> bool:
    """True when ``path`` looks like a torch checkpoint (zip container) rather than ONNX."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def load_checkpoint(path: str | Path, device: str = "cpu"):
    """(model, AnnConfig, checkpoint dict) from an ``ann.pt``; malformed files raise ArtifactError."""
    from models.checkpoint_io import load_safe_checkpoint

    obj = load_safe_checkpoint(path, kind="ANN", fmt=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION,
                               version_key="format_version", fix="retrain with `snnc train ann`",
                               missing=f"ANN checkpoint {path} does not exist; train one with `snnc train ann`",
                               error=ArtifactError, map_location=device)
    try:
        cfg = AnnConfig(**obj["config"])
        model = build_model(cfg.hidden)
        model.load_state_dict(obj["state_dict"])
    except Exception as exc:
        raise ArtifactError(f"{path}: config or weights do not fit a 784-h-784 ANN ({exc}); retrain it") from None
    return model.to(device), cfg, obj


OUTPUT_NAMES = (CHECKPOINT_NAME, "reconstructions.png", "metrics.json")


def train_ann(cfg: AnnConfig, *, data_dir: str | None = None, source: str = "auto", limit: int | None = None,
              eval_limit: int | None = None, out: str | Path | None = None, device: str = "auto",
              force: bool = False, log=print) -> dict:
    """Train the baseline; keep the best-on-validation weights; return scores (MSE per pixel, [0, 1] units).

    With ``out``: writes ``ann.pt`` (best checkpoint, updated atomically after every improving epoch),
    ``reconstructions.png`` (test originals vs reconstructions) and ``metrics.json``. A folder that already
    holds a run is refused unless ``force``; leftover temp files of interrupted writes there are removed.
    """
    import torch

    from models.temporal_trainer import check_output_folder, remove_stale_temp_files

    if out is not None:
        check_output_folder(Path(out), OUTPUT_NAMES, resume=False, force=force, can_resume=False)
        remove_stale_temp_files(Path(out), OUTPUT_NAMES)
    t0 = time.perf_counter()
    device = _pick_device(device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train = load_dataset(cfg.dataset, "train", data_dir=data_dir, source=source, limit=limit)
    val = load_dataset(cfg.dataset, "val", data_dir=data_dir, source=source, limit=eval_limit)
    test = load_dataset(cfg.dataset, "test", data_dir=data_dir, source=source, limit=eval_limit)
    model = build_model(cfg.hidden).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=ADAM_BETAS, eps=ADAM_EPS,
                           weight_decay=cfg.weight_decay)
    loss_fn = torch.nn.MSELoss()
    y_train = torch.from_numpy(_targets(train.images, cfg)).to(device)
    out_dir = Path(out) if out is not None else None
    history: list[dict] = []
    best_val, best_state, best_epoch = np.inf, None, 0
    log(f"ann: {cfg.dataset} ({train.source}, {len(train)} train / {len(val)} val / {len(test)} test), "
        f"784-{cfg.hidden}-784, batch {cfg.batch_size}, lr {cfg.lr:g}, {cfg.epochs} epochs, device {device}")

    def evaluate(ds: Dataset, seed_offset: int) -> tuple[float, np.ndarray]:
        rec = reconstruct(model, cfg, ds.images, np.random.default_rng(cfg.seed + seed_offset), device)
        return pixel_mse(rec, ds.images), rec

    for epoch in range(1, cfg.epochs + 1):
        model.train()
        x_train = torch.from_numpy(ann_inputs(train.images, cfg, rng)).to(device)  # fresh noise every epoch
        perm = torch.from_numpy(rng.permutation(len(train))).to(device)
        total = 0.0
        for i in range(0, len(train), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.shape[0]
        train_loss = total / len(train)
        val_mse, _ = evaluate(val, 1)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_mse": val_mse})
        improved = val_mse < best_val
        if improved:
            best_val, best_epoch = val_mse, epoch
            best_state = copy.deepcopy(model.state_dict())
            if out_dir is not None:
                save_checkpoint(out_dir / CHECKPOINT_NAME, model, cfg,
                                {"history": history, "best_epoch": epoch, "val_mse": val_mse})
        log(f"epoch {epoch}: train loss {train_loss:.5f}, val MSE {val_mse:.5f}{' (best)' if improved else ''}")
    model.load_state_dict(best_state)
    test_mse, test_rec = evaluate(test, 2)
    result = {
        "model": "ann", "config": asdict(cfg), "dataset": cfg.dataset, "data_source": train.source,
        "n_train": len(train), "n_val": len(val), "n_test": len(test), "history": history,
        "best_epoch": best_epoch, "val_mse": best_val, "test_mse": test_mse, "device": device,
        "wall_s": time.perf_counter() - t0,
    }
    if out_dir is not None:
        ckpt = out_dir / CHECKPOINT_NAME
        save_checkpoint(ckpt, model, cfg, {"history": history, "best_epoch": best_epoch, "val_mse": best_val,
                                           "test_mse": test_mse})
        png = out_dir / "reconstructions.png"
        from models.plots import save_reconstruction_png

        save_reconstruction_png(test.images, test_rec, png,
                                title=f"ANN 784-{cfg.hidden}-784 {cfg.dataset}: test MSE {test_mse:.5f}")
        result.update(checkpoint=str(ckpt), png=str(png))
        atomic_write_text(out_dir / "metrics.json", json.dumps(result, indent=2) + "\n")
    log(f"ann: best epoch {best_epoch}, val MSE {best_val:.5f}, test MSE per pixel {test_mse:.5f}")
    return result


def add_ann_args(parser: argparse.ArgumentParser) -> None:
    """Options of `snnc train ann` (all of them, including data and output; shared ones named as in
    `train temporal`)."""
    from models.cli_train import add_common_args

    add_common_args(parser, default_out="runs/ann")
    parser.add_argument("--preset", default=None,
                        help="SNN condition whose optimiser settings to use, e.g. noise=0,latency=1,hidden=32 "
                             "(default: noise=0, latency=1, hidden=32); --noise/--hidden select the row of that "
                             "condition")
    parser.add_argument("--hidden", type=int, default=None, help="hidden units; selects the preset row of this size "
                                                                 "(default: the preset's, else 32)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per Adam step (default: the preset's)")
    parser.add_argument("--lr-weights", "--lr", dest="lr", metavar="LR_WEIGHTS", type=float, default=None,
                        help="Adam learning rate (default: the preset's lr_weights)")
    parser.add_argument("--noise", type=float, default=None,
                        help="input noise eta, time units; selects the preset row of this noise (default: preset's)")
    parser.add_argument("--noise-mean", type=float, default=1.0, help="mean of the noise r ~ N(mean, 1) (paper: 1)")
    parser.add_argument("--inverted", action="store_true", help="train on inverted images (time code 1 - p)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto: where the ANN trains (default auto)")
    # the names this command had before the trainers shared option names
    parser.add_argument("--limit", dest="limit_train", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--eval-limit", dest="limit_eval", type=int, help=argparse.SUPPRESS)


def train_ann_cli(args: argparse.Namespace) -> int:
    """Run `snnc train ann` from parsed arguments; prints progress and the test MSE."""
    cfg = resolve_config(dataset=args.dataset, preset=args.preset, hidden=args.hidden, epochs=args.epochs,
                         batch_size=args.batch_size, lr=args.lr, noise=args.noise, noise_mean=args.noise_mean,
                         inverted=args.inverted, seed=args.seed, weight_decay=args.weight_decay)
    print(f"ann: optimiser settings of preset row {cfg.preset} (batch {cfg.batch_size}, lr {cfg.lr:g})")
    result = train_ann(cfg, data_dir=args.data_dir, limit=args.limit_train, eval_limit=args.limit_eval,
                       out=args.out, device=args.device, force=args.force)
    print(f"test MSE per pixel: {result['test_mse']:.6f}")
    print(f"checkpoint: {result['checkpoint']}")
    print(f"reconstructions: {result['png']}")
    return 0
