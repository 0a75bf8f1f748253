"""Trainer of the rate-coded LIF autoencoder of Roy, Panda & Roy 2019 (``snnc train rate``).

Data loop: every epoch a fresh permutation of the training split, batches of ``batch_size`` images, each encoded
as Bernoulli spike trains (models/rate_encoding.py) and trained with the online rule (models/rate_online.py,
per-step Adam, the authors' code) or surrogate-gradient BPTT (models/rate_bptt.py). Weights start U(-init, init)
(0.1 in the authors' code). After every epoch: validation metrics (models/rate_metrics.py) and an atomic
checkpoint (torch tensors + plain values, read back with ``torch.load(weights_only=True)``). At the end the last
epoch's model (1 epoch in the paper) is tested and written as ``model.onnx`` (the IR graph of
models/rate_model.py in ONNX artifact format 2, toolchain.artifact_graph),
with ``metrics.json`` and ``reconstructions.png`` (test images over output spike-count maps).
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from models.rate_encoding import bernoulli_encode, check_p_scale, check_steps
from models.rate_metrics import rate_metrics
from models.rate_model import forward_spikes, make_graph
from toolchain.atomic import atomic_path, atomic_write_text
from toolchain.errors import SnncError

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.onnx"
METRICS_NAME = "metrics.json"
PNG_NAME = "reconstructions.png"
OUTPUT_NAMES = (CHECKPOINT_NAME, MODEL_NAME, METRICS_NAME, PNG_NAME)
CHECKPOINT_FORMAT = "snnc-rate"
CHECKPOINT_VERSION = 1
MODES = ("online", "bptt")

# preset -> (dataset, arch, steps, p_scale): Roy et al. 2019 Table 1 settings
PRESETS: dict[str, tuple[str, tuple[int, ...], int, float]] = {
    "mnist-196": ("mnist", (784, 196, 784), 15, 0.3),
    "fmnist-512": ("fashion-mnist", (784, 512, 784), 60, 0.5),
    "fmnist-1024": ("fashion-mnist", (784, 1024, 784), 60, 0.5),
}
DEFAULT_P_SCALE = {"mnist": 0.3, "fashion-mnist": 0.5}
DEFAULT_STEPS = {"mnist": 15, "fashion-mnist": 60}
DEFAULT_LR = {"online": 5e-4, "bptt": 3e-3}


def parse_arch(text: str) -> tuple[int, int, int]:
    """'784-196-784' -> (784, 196, 784): input, hidden and output sizes (input = output = pixels)."""
    if not isinstance(text, str) or not re.fullmatch(r"\s*\d+\s*-\s*\d+\s*-\s*\d+\s*", text):
        raise SnncError(f"--arch must be three sizes like 784-196-784 (input-hidden-output), got {text!r}")
    sizes = tuple(int(s) for s in text.split("-"))
    if min(sizes) < 1:
        raise SnncError(f"--arch sizes must be >= 1, got {text!r}")
    if sizes[0] != sizes[2]:
        raise SnncError(f"--arch {text}: an autoencoder's output size must equal its input size")
    return sizes  # type: ignore[return-value]


@dataclass(frozen=True)
class RateConfig:
    """Everything that defines a run (stored in the checkpoint; a resumed run must match it but for epochs)."""

    dataset: str = "mnist"
    arch: tuple[int, int, int] = (784, 196, 784)
    steps: int = 15
    p_scale: float = 0.3
    mode: str = "online"
    lr: float = 5e-4
    batch_size: int = 100
    epochs: int = 1
    seed: int = 0
    init: float = 0.1
    limit_train: int | None = None
    limit_eval: int | None = None
    preset: str | None = None
    source: str = "auto"
    trace_reset: str = "authors"

    def __post_init__(self) -> None:
        from models.rate_online import TRACE_RESETS

        check_steps(self.steps)
        if self.trace_reset not in TRACE_RESETS:
            raise SnncError(f"unknown --trace-reset {self.trace_reset!r}; choose one of {', '.join(TRACE_RESETS)}")
        if self.trace_reset != "authors" and self.mode != "online":
            raise SnncError(f"--trace-reset {self.trace_reset} applies to the online rule only; drop it or use "
                            f"--mode online")
        check_p_scale(self.p_scale)
        if self.mode not in MODES:
            raise SnncError(f"unknown training mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise SnncError(f"epochs and batch size must be >= 1, got {self.epochs} and {self.batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0) or not (math.isfinite(self.init) and self.init > 0):
            raise SnncError(f"lr and init must be finite and > 0, got lr={self.lr}, init={self.init}")
        for name in ("limit_train", "limit_eval"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise SnncError(f"{name.replace('_', '-')} must be a positive number of images, got {v}")
        object.__setattr__(self, "arch", tuple(int(a) for a in self.arch))

    def identity(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("epochs")
        if d["trace_reset"] == "authors":     # the default: checkpoints made before the option keep resuming
            d.pop("trace_reset")
        d["arch"] = list(d["arch"])
        return d


def resolve_config(*, preset: str | None = None, dataset: str | None = None, arch: str | None = None,
                   steps: int | None = None, p_scale: float | None = None, mode: str = "online",
                   lr: float | None = None, **kw) -> RateConfig:
    """A preset's values (or the dataset defaults), replaced by every value given explicitly."""
    if preset is not None:
        if preset not in PRESETS:
            raise SnncError(f"unknown rate preset {preset!r}; choose one of {', '.join(PRESETS)}")
        p_ds, p_arch, p_steps, p_p = PRESETS[preset]
        if dataset is not None and dataset != p_ds:
            raise SnncError(f"preset {preset} is for {p_ds}, but --dataset {dataset} was given; drop one of them")
        dataset = p_ds
    else:
        dataset = dataset or "mnist"
        p_arch, p_steps, p_p = (784, 196, 784), DEFAULT_STEPS.get(dataset, 15), DEFAULT_P_SCALE.get(dataset, 0.3)
    if mode not in MODES:
        raise SnncError(f"unknown training mode {mode!r}; choose one of {', '.join(MODES)}")
    return RateConfig(dataset=dataset, arch=parse_arch(arch) if arch is not None else p_arch,
                      steps=steps if steps is not None else p_steps,
                      p_scale=p_scale if p_scale is not None else p_p, mode=mode,
                      lr=lr if lr is not None else DEFAULT_LR[mode], preset=preset, **kw)


def init_weights(cfg: RateConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n_in, h, n_out = cfg.arch
    w1 = rng.uniform(-cfg.init, cfg.init, (h, n_in))
    w2 = rng.uniform(-cfg.init, cfg.init, (n_out, h))
    return w1, w2


def model_metadata(cfg: RateConfig, extra: dict | None = None) -> dict:
    meta = {"family": "rate-lif", "dataset": cfg.dataset, "encoding": "bernoulli", "p_scale": cfg.p_scale,
            "max_rate_hz": cfg.p_scale * 1000.0, "dt_ms": 1.0, "steps": cfg.steps, "arch": list(cfg.arch),
            "mode": cfg.mode, "trace_reset": cfg.trace_reset, "lr": cfg.lr, "batch_size": cfg.batch_size,
            "epochs": cfg.epochs, "seed": cfg.seed,
            "trainer": "snnc rate (Roy, Panda & Roy 2019)"}
    meta.update(extra or {})
    return meta


def evaluate_graph(graph, images01: np.ndarray, steps: int, p_scale: float, seed: int,
                   chunk: int = 500) -> tuple[dict, np.ndarray]:
    """Both metrics of a graph on images (Bernoulli inputs drawn from ``seed``) and the output spike-count maps."""
    rng = np.random.default_rng(seed)
    in_counts, out_counts = [], []
    for c in range(0, images01.shape[0], chunk):
        x = bernoulli_encode(images01[c:c + chunk], steps, p_scale, rng)
        out = forward_spikes(graph, x)[-1]
        in_counts.append(x.sum(axis=1, dtype=np.int64))
        out_counts.append(out.sum(axis=1, dtype=np.int64))
    ic, oc = np.concatenate(in_counts), np.concatenate(out_counts)
    m = rate_metrics(images01, ic, oc)
    m["output_spikes_per_image"] = float(oc.sum(axis=1).mean())
    m["input_spikes_per_image"] = float(ic.sum(axis=1).mean())
    return m, oc


def _save_checkpoint(path: Path, state: dict) -> None:
    import torch

    def safe(o):
        if isinstance(o, np.ndarray):
            return torch.from_numpy(np.array(o, copy=True))
        if isinstance(o, dict):
            return {k: safe(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return type(o)(safe(v) for v in o)
        return o

    with atomic_path(path) as tmp:
        torch.save(safe(state), tmp)


def load_checkpoint(path: str | Path) -> dict:
    """Read a rate checkpoint with torch's safe loader (tensors and plain values only, never code)."""
    from models.checkpoint_io import load_safe_checkpoint

    path = Path(path)
    state = load_safe_checkpoint(path, kind="rate", fmt=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION,
                                 fix="start over with --force (or point --out at a rate training folder)",
                                 missing=f"no checkpoint at {path}; train without --resume first")
    try:
        state["weights"] = [t.detach().numpy().astype(np.float64) for t in state["weights"]]
    except (KeyError, TypeError, AttributeError):
        raise SnncError(f"checkpoint {path} has no weights; start over with --force") from None
    return state


def train_rate(cfg: RateConfig, out: str | Path, *, data_dir: str | None = None, resume: bool = False,
               force: bool = False, threads: int | None = None, progress: bool = True,
               log: Callable[[str], None] = print) -> dict:
    """Train, validate and checkpoint every epoch, test the final model and write the outputs into ``out``.

    ``threads``: torch intra-op threads and numba threads (at most NUMBA_NUM_THREADS) while training (default:
    unchanged). Returns the metrics dict."""
    import numba
    import torch

    from models.temporal_trainer import check_output_folder, remove_stale_temp_files

    out = Path(out)
    check_output_folder(out, OUTPUT_NAMES, resume=resume, force=force)
    remove_stale_temp_files(out, OUTPUT_NAMES)
    if threads is not None and not 1 <= threads <= 256:
        raise SnncError(f"--threads must be between 1 and 256, got {threads}")
    n_threads, n_numba = torch.get_num_threads(), numba.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        return _train(cfg, out, data_dir, resume, progress, log)
    finally:
        torch.set_num_threads(n_threads)
        numba.set_num_threads(n_numba)


def _train(cfg: RateConfig, out: Path, data_dir: str | None, resume: bool, progress: bool,
           log: Callable[[str], None]) -> dict:
    import torch
    from tqdm import tqdm

    from models.datasets import load_dataset
    from models.plots import save_reconstruction_png
    from models.rate_bptt import BpttLearner
    from toolchain.artifact_graph import save_graph
    from models.rate_online import OnlineRule, online_batch

    kw = dict(data_dir=data_dir, source=cfg.source)
    train = load_dataset(cfg.dataset, "train", limit=cfg.limit_train, **kw)
    val = load_dataset(cfg.dataset, "val", limit=cfg.limit_eval, **kw)
    test = load_dataset(cfg.dataset, "test", limit=cfg.limit_eval, **kw)
    if train.images.shape[1] != cfg.arch[0]:
        raise SnncError(f"--arch {'-'.join(map(str, cfg.arch))}: {cfg.dataset} images have {train.images.shape[1]} "
                        f"pixels; use {train.images.shape[1]}-H-{train.images.shape[1]}")
    if len(train) < cfg.batch_size:
        raise SnncError(f"{len(train)} training images is fewer than one batch of {cfg.batch_size}; "
                        f"raise --limit-train or lower --batch-size")
    ckpt_path = out / CHECKPOINT_NAME
    if resume:
        state = load_checkpoint(ckpt_path)
        if state.get("config") != cfg.identity():
            saved = state.get("config") if isinstance(state.get("config"), dict) else {}
            diff = sorted(k for k in set(saved) | set(cfg.identity()) if saved.get(k) != cfg.identity().get(k))
            raise SnncError(f"--resume: the checkpoint in {out} was made with different settings ({', '.join(diff)});"
                            f" repeat the original command with --resume, or use a new --out")
        w1, w2 = state["weights"]
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng_state"]
        start_epoch, history = int(state["epoch"]), list(state["history"])
        log(f"resuming {out} after epoch {start_epoch}")
    else:
        rng = np.random.default_rng(cfg.seed)
        w1, w2 = init_weights(cfg, rng)
        start_epoch, history, state = 0, [], None
    dtype = torch.float32
    if cfg.mode == "bptt":
        learner = BpttLearner(w1, w2, lr=cfg.lr, dtype=dtype)
        if state is not None and "optimizer" in state:
            learner.opt.load_state_dict(state["optimizer"])
    else:
        tw1, tw2 = torch.tensor(w1, dtype=dtype), torch.tensor(w2, dtype=dtype)
        rule = OnlineRule(lr=cfg.lr, n_shrink=float(cfg.arch[0]), trace_reset=cfg.trace_reset)
    n_train = len(train)
    n_batches = n_train // cfg.batch_size
    for epoch in range(start_epoch, cfg.epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        perm = rng.permutation(n_train)
        loss_sum = 0.0
        bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", disable=not progress,
                   mininterval=0.5, leave=False)
        for b in range(n_batches):
            idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            x = bernoulli_encode(train.images[idx], cfg.steps, cfg.p_scale, rng)
            xt = torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2)))
            r = learner.train_batch(xt) if cfg.mode == "bptt" else online_batch(tw1, tw2, xt, rule)
            loss_sum += r["loss"]
            bar.update(1)
        bar.close()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        w1, w2 = learner.numpy() if cfg.mode == "bptt" else (tw1.numpy().astype(np.float64),
                                                               tw2.numpy().astype(np.float64))
        if not (np.all(np.isfinite(w1)) and np.all(np.isfinite(w2))):
            raise SnncError("training diverged (non-finite weights); lower --lr")
        g = make_graph(w1, w2, model_metadata(cfg))
        vm, _ = evaluate_graph(g, val.images, cfg.steps, cfg.p_scale, cfg.seed + 1)
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / max(1, n_batches), "val_spike_mse":
                        vm["spike_mse"], "val_pixel_mse": vm["pixel_mse"], "seconds": wall, "cpu_seconds": cpu})
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss/sample {loss_sum / max(1, n_batches):.3f}, val Spike-MSE "
            f"{vm['spike_mse']:.4f}, val MSE {vm['pixel_mse']:.4f} ({wall:.1f} s, CPU {cpu:.1f} s)")
        ck = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": cfg.identity(),
              "epoch": epoch + 1, "weights": [w1, w2], "rng_state": rng.bit_generator.state, "history": history}
        if cfg.mode == "bptt":
            ck["optimizer"] = learner.opt.state_dict()
        _save_checkpoint(ckpt_path, ck)
    tm, out_counts = evaluate_graph(make_graph(w1, w2, model_metadata(cfg)), test.images, cfg.steps, cfg.p_scale,
                                    cfg.seed + 2)
    metrics = {"dataset": cfg.dataset, "data_source": train.source, "config": cfg.identity(), "epochs": cfg.epochs,
               "test_spike_mse": tm["spike_mse"], "test_pixel_mse": tm["pixel_mse"],
               "test_output_spikes_per_image": tm["output_spikes_per_image"],
               "test_input_spikes_per_image": tm["input_spikes_per_image"], "n_train": n_train, "n_val": len(val),
               "n_test": len(test), "history": history, "torch": torch.__version__}
    graph = make_graph(w1, w2, model_metadata(cfg, {"test_spike_mse": tm["spike_mse"],
                                                    "test_pixel_mse": tm["pixel_mse"], "n_train": n_train}))
    peak = np.maximum(out_counts.max(axis=1, keepdims=True), 1)
    save_reconstruction_png(test.images[:10], out_counts[:10] / peak[:10], out / PNG_NAME,
                            title=f"rate {'-'.join(map(str, cfg.arch))} T={cfg.steps} ({cfg.mode}): output spike "
                                  f"counts / max")
    save_graph(graph, out / MODEL_NAME)
    atomic_write_text(out / METRICS_NAME, json.dumps(metrics, indent=2) + "\n")
    log(f"test Spike-MSE {tm['spike_mse']:.4f}, test MSE {tm['pixel_mse']:.4f} (z-scored per image)")
    return metrics
