"""Trainer of Hübotter et al.'s (2021) deep convolutional spiking autoencoder and its baselines
(``snnc train conv``).

Presets: ``paper`` (the code's settings: T = 100, batch 40, Adam lr 5e-4, 10 epochs, gradient values clipped at
50, all 54,000 training images) and ``cpu`` (the same network and optimiser at T = 20 on the first 5,000 training
images, 2 epochs, 1,000 validation/test images: what a 2-core machine trains in about half an hour). Every value
can be replaced by its option. ``--model snn`` trains the spiking network (models/conv_model.py) with the
regularisers of models/conv_regularisers.py; ``ae``/``vae`` the baselines (models/conv_baselines.py) with the
same data, batch, optimiser and epochs.

After every epoch: validation reconstruction error (sum of squared errors per image and per-pixel MSE, pixels in
[0, 1]), for the SNN the dead/bursting fractions per layer (models/conv_stats.py), and an atomic checkpoint (torch
tensors and plain values, read back with torch's safe loader). At the end the last epoch's model is tested and
written: ``model.onnx`` (SNN: the IR graph, artifact format 2), ``checkpoint.pt``, ``metrics.json``,
``reconstructions.png`` and (SNN) ``stats.png``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from models.conv_model import P_SCALE, SPIKING, SURROGATES, ConvArch
from models.conv_regularisers import RegWeights
from models.conv_stats import DEFAULT_BURST_RATE
from toolchain.errors import SnncError

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.onnx"
METRICS_NAME = "metrics.json"
PNG_NAME = "reconstructions.png"
STATS_NAME = "stats.png"
OUTPUT_NAMES = (CHECKPOINT_NAME, MODEL_NAME, METRICS_NAME, PNG_NAME, STATS_NAME)
CHECKPOINT_FORMAT = "snnc-conv"
CHECKPOINT_VERSION = 1
MODELS = ("snn", "ae", "vae")
DEVICES = ("cpu", "cuda")

# preset -> settings (the code's: Adam lr 5e-4, batch 40, clip 50, T = 100, p = 0.2 x pixel, 10 epochs)
PRESETS: dict[str, dict] = {
    "paper": {"steps": 100, "epochs": 10, "batch_size": 40, "lr": 5e-4, "limit_train": None, "limit_eval": None},
    "cpu": {"steps": 20, "epochs": 2, "batch_size": 40, "lr": 5e-4, "limit_train": 5000, "limit_eval": 1000},
}


@dataclass(frozen=True)
class ConvConfig:
    """Everything that defines a run (stored in the checkpoint; a resumed run must match it but for epochs)."""

    model: str = "snn"
    dataset: str = "mnist"
    arch: ConvArch = field(default_factory=ConvArch)
    steps: int = 20
    p_scale: float = P_SCALE
    reg: RegWeights = field(default_factory=RegWeights)
    reg_preset: str = "none"
    lr: float = 5e-4
    batch_size: int = 40
    epochs: int = 2
    clip: float = 50.0
    slope: float = 5.0
    surrogate: str = "fast-sigmoid"
    clamp: bool = False
    vae_beta: float = 1.0
    burst_rate: float = DEFAULT_BURST_RATE
    seed: int = 0
    limit_train: int | None = None
    limit_eval: int | None = None
    preset: str | None = None

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise SnncError(f"unknown --model {self.model!r}; choose one of {', '.join(MODELS)}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise SnncError(f"--steps must be an integer >= 1, got {self.steps!r}")
        if not (math.isfinite(self.p_scale) and 0 < self.p_scale <= 1):
            raise SnncError(f"p_scale (spike probability per step at pixel 1) must lie in (0, 1], got {self.p_scale}")
        if self.epochs < 1 or self.batch_size < 1:
            raise SnncError(f"epochs and batch size must be >= 1, got {self.epochs} and {self.batch_size}")
        for name in ("lr", "clip", "slope", "vae_beta", "burst_rate"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise SnncError(f"{name.replace('_', '-')} must be a finite number > 0, got {v}")
        for name in ("limit_train", "limit_eval"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise SnncError(f"--{name.replace('_', '-')} must be a positive number of images, got {v}")
        if self.surrogate not in SURROGATES:
            raise SnncError(f"unknown --surrogate {self.surrogate!r}; choose one of {', '.join(SURROGATES)}")
        if self.model != "snn" and (self.reg.active or self.clamp or self.surrogate != "fast-sigmoid"):
            raise SnncError(f"--surrogate, --clamp-negative and regulariser weights apply to the spiking model; "
                            f"drop them for --model {self.model}")

    def identity(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("epochs")
        return d


def resolve_config(*, preset: str | None = "cpu", reg_preset: str = "none", reg_overrides: dict | None = None,
                   c1: int | None = None, c2: int | None = None, latent: int | None = None, **given) -> ConvConfig:
    """A preset's values replaced by every value given explicitly (None = the preset's)."""
    from models.conv_regularisers import resolve_weights

    base: dict = {}
    if preset is not None:
        if preset not in PRESETS:
            raise SnncError(f"unknown conv preset {preset!r}; choose one of {', '.join(PRESETS)}")
        base = dict(PRESETS[preset])
    base.update({k: v for k, v in given.items() if v is not None})
    d = ConvArch()
    arch = ConvArch(c1=c1 or d.c1, c2=c2 or d.c2, latent=latent or d.latent)
    reg = resolve_weights(reg_preset, reg_overrides or {})
    return ConvConfig(arch=arch, reg=reg, reg_preset=reg_preset, preset=preset, **base)


def model_metadata(cfg: ConvConfig, extra: dict | None = None) -> dict:
    meta = {"dataset": cfg.dataset, "encoding": "bernoulli", "p_scale": cfg.p_scale, "steps": cfg.steps,
            "dt_ms": 1.0, "model": cfg.model, "lr": cfg.lr, "batch_size": cfg.batch_size, "epochs": cfg.epochs,
            "seed": cfg.seed, "regularisers": dataclasses.asdict(cfg.reg), "reg_preset": cfg.reg_preset,
            "trainer": "snnc conv (Hübotter, Lanillos & Tomczak 2021)"}
    meta.update(extra or {})
    return meta


def _save_checkpoint(path: Path, state: dict) -> None:
    import torch

    from toolchain.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict:
    """Read a conv checkpoint with torch's safe loader (tensors and plain values only, never code)."""
    from models.checkpoint_io import load_safe_checkpoint

    path = Path(path)
    return load_safe_checkpoint(path, kind="conv", fmt=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION,
                                fix="start over with --force (or point --out at a conv training folder)",
                                missing=f"no checkpoint at {path}; train without --resume first")


def build_model(cfg: ConvConfig, rng: np.random.Generator):
    """The torch module of ``cfg.model`` with fresh weights from ``rng``."""
    from models.conv_baselines import ConvBaseline
    from models.conv_model import SpikingConvAE, init_weights

    if cfg.model == "snn":
        return SpikingConvAE(cfg.arch, init_weights(cfg.arch, rng), p_scale=cfg.p_scale, slope=cfg.slope,
                             surrogate=cfg.surrogate, clamp=cfg.clamp)
    return ConvBaseline(cfg.arch, cfg.model, rng, beta=cfg.vae_beta)


def resolve_device(name: str = "cpu"):
    """The torch device for ``--device`` ("cpu" or "cuda"); SnncError naming the fix when CUDA is asked for and
    torch cannot use it."""
    import torch

    if name not in DEVICES:
        raise SnncError(f"unknown --device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise SnncError("--device cuda: torch.cuda.is_available() is False here (no CUDA GPU, or a CPU-only torch "
                        f"build {torch.__version__}); train with --device cpu (the default), or on a machine with a "
                        "CUDA GPU and a CUDA build of torch")
    return torch.device(name)


def evaluate_model(model, cfg: ConvConfig, images01: np.ndarray, seed: int, batch: int = 100, device=None) -> dict:
    """Reconstruction error of ``images01`` (N, 784): ``sse`` (sum of squared errors per image), ``mse`` (per pixel),
    the reconstructions and (SNN) spike counts per layer {pop: (N, n)}. ``device``: where the model lives (the
    Bernoulli draws are made on the CPU from ``seed``, so every device sees the same input spikes)."""
    import torch

    from models.conv_model import bernoulli_spikes

    device = device or torch.device("cpu")
    gen = torch.Generator().manual_seed(int(seed))
    model.eval()
    recs, counts = [], {k: [] for k in SPIKING}
    with torch.no_grad():
        for i in range(0, images01.shape[0], batch):
            img = torch.tensor(images01[i:i + batch], dtype=torch.float32)
            if cfg.model == "snn":
                out = model(bernoulli_spikes(img, cfg.steps, cfg.p_scale, gen).to(device))
                for k in SPIKING:
                    counts[k].append(out["spikes"][k].sum(0).cpu().numpy())
            else:
                out = model(img.to(device), gen)
            recs.append(out["image"].cpu().numpy().astype(np.float64))
    model.train()
    rec = np.concatenate(recs)
    err = ((rec - images01) ** 2).sum(axis=1)
    res = {"sse": float(err.mean()), "mse": float(err.mean() / images01.shape[1]), "reconstructions": rec}
    if cfg.model == "snn":
        res["counts"] = {k: np.concatenate(v) for k, v in counts.items()}
    return res


def train_conv(cfg: ConvConfig, out: str | Path, *, data_dir: str | None = None, resume: bool = False,
               force: bool = False, threads: int | None = None, progress: bool = True,
               log: Callable[[str], None] = print, device: str = "cpu") -> dict:
    """Train, validate and checkpoint every epoch, test the last model and write the outputs into ``out``.

    Returns the metrics (also ``<out>/metrics.json``). A folder that already holds a run is refused unless
    ``resume`` or ``force``; leftover temp files of interrupted writes are removed first. ``threads``: torch's
    intra-op threads and numba's (the LIF kernels) for this run (restored afterwards). ``device``: "cpu" or "cuda"
    (model, optimiser state and batches live there; checked before anything is written)."""
    import torch

    from models.temporal_trainer import check_output_folder, remove_stale_temp_files

    out = Path(out)
    dev = resolve_device(device)
    check_output_folder(out, OUTPUT_NAMES, resume=resume, force=force)
    if threads is not None and not 1 <= threads <= 256:
        raise SnncError(f"--threads must be between 1 and 256, got {threads}")
    remove_stale_temp_files(out, OUTPUT_NAMES)
    from models.conv_lif_kernels import set_threads

    n_threads = torch.get_num_threads()
    n_numba = set_threads(threads) if threads is not None else None  # the LIF kernels' threads too
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train(cfg, out, data_dir, resume, progress, log, dev)
    finally:
        torch.set_num_threads(n_threads)
        if n_numba is not None:
            set_threads(n_numba)


def _train(cfg: ConvConfig, out: Path, data_dir: str | None, resume: bool, progress: bool,
           log: Callable[[str], None], dev) -> dict:
    import torch
    from tqdm import tqdm

    from models.conv_model import bernoulli_spikes, make_graph
    from models.conv_regularisers import regulariser_loss
    from models.conv_stats import layer_stats, silent_fraction, stats_png_bytes
    from models.datasets import load_dataset
    from models.plots import reconstruction_png_bytes
    from toolchain.artifact_graph import save_graph
    from toolchain.atomic import atomic_write_bytes, atomic_write_text

    train = load_dataset(cfg.dataset, "train", data_dir=data_dir, limit=cfg.limit_train)
    val = load_dataset(cfg.dataset, "val", data_dir=data_dir, limit=cfg.limit_eval)
    test = load_dataset(cfg.dataset, "test", data_dir=data_dir, limit=cfg.limit_eval)
    if train.images.shape[1] != cfg.arch.side ** 2:
        raise SnncError(f"{cfg.dataset} images have {train.images.shape[1]} pixels; the conv model takes "
                        f"{cfg.arch.side}x{cfg.arch.side}")
    if len(train) < cfg.batch_size:
        raise SnncError(f"{len(train)} training images is fewer than one batch of {cfg.batch_size}; "
                        f"raise --limit-train or lower --batch-size")
    ckpt_path = out / CHECKPOINT_NAME
    rng = np.random.default_rng(cfg.seed)
    model = build_model(cfg, rng).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    start_epoch, history = 0, []
    if resume:
        state = load_checkpoint(ckpt_path)
        saved = state.get("config") if isinstance(state.get("config"), dict) else {}
        if saved:  # checkpoints written before --surrogate/--clamp-negative existed used the defaults
            saved = {"surrogate": "fast-sigmoid", "clamp": False, **saved}
        if saved != _plain(cfg.identity()):
            ident = _plain(cfg.identity())
            diff = sorted(k for k in set(saved) | set(ident) if saved.get(k) != ident.get(k))
            raise SnncError(f"--resume: the checkpoint in {out} was made with different settings ({', '.join(diff)});"
                            f" repeat the original command with --resume, or use a new --out")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng_state"]
        gen.set_state(state["torch_rng"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        log(f"resuming {out} after epoch {start_epoch}")
    n_train = len(train)
    n_batches = n_train // cfg.batch_size
    images = torch.from_numpy(train.images.astype(np.float32))
    for epoch in range(start_epoch, cfg.epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        perm = rng.permutation(n_train)
        sums = {"loss": 0.0, "sse": 0.0}
        latent_dead = []  # fraction of latent neurons silent on each training batch (the authors' per-batch measure)
        bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", disable=not progress,
                   mininterval=0.5, leave=False)
        for b in range(n_batches):
            img = images[perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]]
            opt.zero_grad(set_to_none=True)
            if cfg.model == "snn":
                x = bernoulli_spikes(img, cfg.steps, cfg.p_scale, gen).to(dev)
                img = img.to(dev)
                o = model(x)
                latent_dead.append(round(silent_fraction(o["spikes"]["latent"].detach().sum(0).cpu().numpy()), 4))
                sse = ((o["image"] - img) ** 2).sum() / img.shape[0]
                loss = sse + regulariser_loss(o["spikes"], o["final"], cfg.reg) if cfg.reg.active else sse
            else:
                img = img.to(dev)
                loss, o = model.loss(img, gen)
                sse = ((o["image"] - img) ** 2).sum() / img.shape[0]
            loss.backward()
            torch.nn.utils.clip_grad_value_(model.parameters(), cfg.clip)
            opt.step()
            sums["loss"] += float(loss.detach())
            sums["sse"] += float(sse.detach())
            bar.update(1)
            bar.set_postfix(sse=f"{sums['sse'] / (b + 1):.2f}")
        bar.close()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise SnncError("training diverged (non-finite weights); lower --lr or the regulariser weights")
        v = evaluate_model(model, cfg, val.images.astype(np.float64), cfg.seed + 1, device=dev)
        entry = {"epoch": epoch + 1, "train_loss": sums["loss"] / n_batches, "train_sse": sums["sse"] / n_batches,
                 "val_sse": v["sse"], "val_mse": v["mse"], "seconds": wall, "cpu_seconds": cpu}
        msg = (f"epoch {epoch + 1}/{cfg.epochs}: loss {entry['train_loss']:.3f}, train SSE/image "
               f"{entry['train_sse']:.3f}, val SSE/image {v['sse']:.3f} (MSE {v['mse']:.5f})")
        if cfg.model == "snn":
            entry["layers"] = layer_stats(v["counts"], cfg.steps, cfg.burst_rate)
            entry["latent_dead_per_batch"] = latent_dead
            lat = entry["layers"]["latent"]
            msg += (f", latent active {lat['active']:.0%}, dead per batch of 40 {lat['dead_batch']:.0%}, "
                    f"bursting {lat['bursting']:.0%}")
        history.append(entry)
        log(msg + f" ({wall:.1f} s, CPU {cpu:.1f} s)")
        _save_checkpoint(ckpt_path, {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                                     "config": _plain(cfg.identity()), "epoch": epoch + 1,
                                     "model": {k: t.cpu() for k, t in model.state_dict().items()},
                                     "optimizer": _to_cpu(opt.state_dict()),
                                     "rng_state": rng.bit_generator.state, "torch_rng": gen.get_state(),
                                     "history": history})
    tm = evaluate_model(model, cfg, test.images.astype(np.float64), cfg.seed + 2, device=dev)
    metrics = {"dataset": cfg.dataset, "data_source": train.source, "config": _plain(cfg.identity()),
               "epochs": cfg.epochs, "test_sse_per_image": tm["sse"], "test_mse": tm["mse"], "n_train": n_train,
               "n_val": len(val), "n_test": len(test), "history": history, "torch": torch.__version__,
               "macs_per_sample_step": cfg.arch.macs_per_step(), "device": str(dev)}
    files: dict[str, bytes | str] = {}
    title = f"conv {cfg.model} T={cfg.steps} on {cfg.dataset} test: SSE/image {tm['sse']:.2f}, MSE {tm['mse']:.4f}"
    if cfg.model == "snn":
        metrics["test_layers"] = layer_stats(tm["counts"], cfg.steps, cfg.burst_rate)
        metrics["test_latent_active"] = metrics["test_layers"]["latent"]["active"]
        files[STATS_NAME] = stats_png_bytes(history, f"conv SNN T={cfg.steps} ({cfg.reg_preset} regularisers): "
                                                     f"validation dead/bursting fractions")
    files[PNG_NAME] = reconstruction_png_bytes(test.images[:10], tm["reconstructions"][:10], title=title)
    if cfg.model == "snn" and cfg.clamp:
        log("model.onnx not written: --clamp-negative (the code's V < -1 -> +1) is no IR/Loihi LIF, so the trained "
            "network cannot be exported as it was trained")
        (out / MODEL_NAME).unlink(missing_ok=True)  # an earlier run's model (--force/--resume) is not this one
    elif cfg.model == "snn":
        graph = make_graph(cfg.arch, model.weights_numpy(),
                           model_metadata(cfg, {"test_sse_per_image": tm["sse"], "test_mse": tm["mse"],
                                                "n_train": n_train}))
        save_graph(graph, out / MODEL_NAME)
    for name, data in files.items():
        atomic_write_bytes(out / name, data)
    atomic_write_text(out / METRICS_NAME, json.dumps(metrics, indent=2) + "\n")
    log(f"test SSE/image {tm['sse']:.3f}, MSE/pixel {tm['mse']:.5f}"
        + (f", latent active {metrics['test_latent_active']:.0%}" if cfg.model == "snn" else ""))
    return metrics


def _to_cpu(d):
    """A (nested) state dict with every tensor on the CPU (a checkpoint written on a GPU loads anywhere)."""
    import torch

    if isinstance(d, dict):
        return {k: _to_cpu(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_to_cpu(v) for v in d]
    return d.cpu() if isinstance(d, torch.Tensor) else d


def _plain(d):
    """Nested dataclass dicts as plain JSON-able values (for checkpoints and metrics)."""
    if isinstance(d, dict):
        return {k: _plain(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_plain(v) for v in d]
    return d
