"""Trainer of the temporal-coding spiking autoencoder of Comsa et al. 2021 (784-h-784, exact gradients).

Follows the authors' code (google/ihmehimmeli, branch ``autoencoder``): modified Glorot init
(sigma = sqrt(2 / (fan_in + fan_out + n_pulses)), mean = multiplier * sigma, separate multipliers for inputs
and pulses), pulses at i / (n + 1), Adam (0.9, 0.999, 1e-8) on the batch-mean gradient with ``lr_weights``
for weights and pulse weights and ``lr_pulses`` for pulse times, pulse times kept >= 0, derivatives clipped at
``clip_derivative``, ``penalty_no_spike`` on the weights of silent neurons. Inputs are latency-coded
(models/encoding.py, noise eta with mean ``noise_mean``), the clean image is the target, and the score is the
per-pixel MSE in [0, 1] units with a missing output spike counted as 1.0 after the latency. Every epoch is
validated and checkpointed atomically; the best-on-validation model is tested and exported as ONNX.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from models.adam_step import adam_step
from models.encoding import latency_encode, reconstruction_mse, target_times
from models.network import AlphaLayer, TemporalNetwork
from models.presets import Hyperparameters
from models.temporal_backprop import layer_forward, reconstruction_gradients
from models.threads import AdaptiveThreads
from toolchain.atomic import atomic_path, atomic_write_text
from toolchain.errors import SnncError

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.onnx"
METRICS_NAME = "metrics.json"
CHECKPOINT_FORMAT = "snnc-temporal"
CHECKPOINT_VERSION = 2  # 2: arrays stored as torch tensors, read back with torch.load(weights_only=True)
OUTPUT_NAMES = (CHECKPOINT_NAME, MODEL_NAME, METRICS_NAME)
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
EVAL_CHUNK = 1000


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run (stored in the checkpoint; a resumed run must match it but for epochs)."""

    hp: Hyperparameters
    dataset: str = "mnist"
    preset: str = "noise=0,latency=1,hidden=32"
    epochs: int = 3
    seed: int = 0
    noise_mean: float = 1.0
    limit_train: int | None = None
    limit_eval: int | None = None
    source: str = "auto"
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise SnncError(f"epochs must be >= 1, got {self.epochs}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise SnncError(f"weight decay must be a finite number >= 0 (0 = off), got {self.weight_decay}")
        for name in ("limit_train", "limit_eval"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise SnncError(f"{name.replace('_', '-')} must be a positive number of images, got {v}")

    def identity(self) -> dict:
        """The fields a resumed run must share with its checkpoint."""
        d = dataclasses.asdict(self)
        d.pop("epochs")
        return d


def init_network(hp: Hyperparameters, n_pixels: int, rng: np.random.Generator) -> TemporalNetwork:
    """n_pixels-hidden-n_pixels network with the authors' initialisation (see module docstring)."""
    layers = []
    p = hp.n_pulses
    for n_in, n_out in ((n_pixels, hp.hidden), (hp.hidden, n_pixels)):
        sigma = math.sqrt(2.0 / (n_in + n_out + p))
        w = rng.normal(0.0, 1.0, (n_out, n_in + p)) * sigma
        w[:, :n_in] += hp.weight_mean_multiplier * sigma
        w[:, n_in:] += hp.pulse_weight_mean_multiplier * sigma
        layers.append(AlphaLayer(w[:, :n_in], np.arange(1, p + 1) / (p + 1.0), w[:, n_in:]))
    return TemporalNetwork(tuple(layers), hp.decay_rate_tau, hp.threshold_theta, hp.latency, "latency")


def network_from_params(w_alls: list[np.ndarray], pulses: list[np.ndarray], hp: Hyperparameters,
                        metadata: dict | None = None) -> TemporalNetwork:
    layers = []
    for w_all, pt in zip(w_alls, pulses):
        n_in = w_all.shape[1] - pt.shape[0]
        layers.append(AlphaLayer(w_all[:, :n_in].copy(), pt.copy(), w_all[:, n_in:].copy()))
    return TemporalNetwork(tuple(layers), hp.decay_rate_tau, hp.threshold_theta, hp.latency, "latency",
                           dict(metadata or {}))


def output_times(net: TemporalNetwork, input_times: np.ndarray, chunk: int = EVAL_CHUNK) -> np.ndarray:
    """Output-layer spike times (N, n_out), exact (bitwise = models.exact.exact_forward), in chunks."""
    outs = []
    for s in range(0, input_times.shape[0], chunk):
        x = input_times[s:s + chunk]
        for layer in net.layers:
            x = layer_forward(x, layer.all_weights(), layer.pulse_times, net.tau, net.theta).t_out
        outs.append(x)
    return np.concatenate(outs) if outs else np.zeros((0, net.layers[-1].n_out))


def evaluate(net: TemporalNetwork, images01: np.ndarray, noise: float, noise_mean: float, seed: int) -> float:
    """Per-pixel reconstruction MSE (missing spike = 1.0) of noisy inputs vs the clean images."""
    rng = np.random.default_rng(seed)
    x = latency_encode(images01, noise, noise_mean, rng)
    return reconstruction_mse(output_times(net, x), images01, net.latency)


def _pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise SnncError(f"unknown device {device!r}; use cpu, cuda or auto")
    if device == "cuda" and not torch.cuda.is_available():
        raise SnncError("--device cuda but no CUDA GPU is visible to torch; use --device cpu")
    return device


class Learner:
    """Trainable tensors (float64) on the optimiser's device, the Adam optimiser, and one training step.

    ``weight_decay`` lambda (L2 penalty, >= 0) adds ``lambda * w`` to the batch-mean gradient of every input and
    pulse weight before Adam, i.e. ``lambda / 2 * sum(w^2)`` joins the per-sample loss ``1/2 sum_k (t_k - target_k)^2``
    (time units^2; lambda in time units^2 per squared weight unit). Pulse times are not decayed.
    """

    def __init__(self, net: TemporalNetwork, hp: Hyperparameters, device: str = "cpu", weight_decay: float = 0.0):
        import torch

        self.hp = hp
        self.device = device
        self.w = [torch.tensor(l.all_weights(), dtype=torch.float64, device=device) for l in net.layers]
        self.pt = [torch.tensor(l.pulse_times, dtype=torch.float64, device=device) for l in net.layers]
        for t in self.w + self.pt:
            t.requires_grad_(True)
            t.grad = torch.zeros_like(t)
        groups = [{"params": self.w, "lr": hp.lr_weights, "weight_decay": weight_decay}]
        if hp.n_pulses > 0:
            groups.append({"params": self.pt, "lr": hp.lr_pulses})
        kw = {"fused": True} if device == "cpu" else {}
        self.opt = torch.optim.Adam(groups, betas=ADAM_BETAS, eps=ADAM_EPS, **kw)
        self.threads = AdaptiveThreads()  # kernel threads per batch, from measured times (models/threads.py)

    def numpy(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Current parameters as float64 numpy arrays (views on CPU: do not keep them across steps)."""
        return ([t.detach().cpu().numpy() for t in self.w], [t.detach().cpu().numpy() for t in self.pt])

    def step(self, grads) -> None:
        import torch

        with torch.no_grad():
            for t, g in zip(self.w, grads):  # the kernels' fresh arrays become the grads without a copy on CPU
                t.grad = torch.from_numpy(g.weights_all).to(self.device)
            for t, g in zip(self.pt, grads):
                t.grad = torch.from_numpy(np.ascontiguousarray(g.pulse_times)).to(self.device)
            adam_step(self.opt)  # = self.opt.step() on CPU float64, without torch's per-step overhead
            for t in self.pt:
                t.clamp_(min=0.0)  # pulse times stay >= 0 (authors' code)

    def train_batch(self, input_times: np.ndarray, targets: np.ndarray) -> float:
        """One Adam step on a batch; returns the batch's summed squared error (missing spike = 1.0)."""
        hp = self.hp
        w_alls, pts = self.numpy()
        res = reconstruction_gradients(list(zip(w_alls, pts)), input_times, targets, hp.latency, hp.decay_rate_tau,
                                       hp.threshold_theta, hp.clip_derivative, hp.penalty_no_spike, self.threads)
        self.step(res.grads)
        return res.sq_error_sum


def _to_safe(obj):
    """numpy arrays -> torch tensors, recursively, so that the checkpoint loads with ``weights_only=True``."""
    import torch

    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, dict):
        return {k: _to_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_safe(v) for v in obj)
    return obj


def _arrays(obj, what: str, path: Path) -> list[np.ndarray] | None:
    """A list of float64 arrays from the checkpoint's list of tensors (None stays None)."""
    import torch

    if obj is None:
        return None
    if not isinstance(obj, (list, tuple)) or not all(isinstance(t, torch.Tensor) for t in obj):
        raise SnncError(f"checkpoint {path}: {what} is not a list of tensors; start over with --force")
    return [t.detach().cpu().numpy().astype(np.float64) for t in obj]


def _save_checkpoint(path: Path, state: dict) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(_to_safe(state), tmp)


def load_checkpoint(path: str | Path) -> dict:
    """Read ``checkpoint.pt`` with torch's safe loader (tensors and plain Python values only, never code).

    A file that holds anything else (e.g. a crafted pickle that would run code; checkpoints of older snnc versions,
    which stored numpy arrays) is refused with an SnncError.
    """
    from models.checkpoint_io import load_safe_checkpoint

    path = Path(path)
    state = load_safe_checkpoint(path, kind="temporal", fmt=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION,
                                 fix="start over with --force (or point --out at a temporal training folder)",
                                 missing=f"no checkpoint at {path}; train without --resume first")
    for key in ("weights", "pulse_times", "best_weights", "best_pulse_times"):
        state[key] = _arrays(state.get(key), key, path)
    if state["weights"] is None or state["pulse_times"] is None:
        raise SnncError(f"checkpoint {path} has no weights; start over with --force")
    return state


def remove_stale_temp_files(out: Path, names: tuple[str, ...]) -> list[Path]:
    """Delete leftovers of interrupted atomic writes in ``out``: those of dead snnc processes
    (:func:`toolchain.atomic.clean_stale_temps`) and ``.<name>.*.tmp`` of ``names`` written by earlier snnc
    versions; returns the deleted paths."""
    from toolchain.atomic import clean_stale_temps

    removed = clean_stale_temps(out)
    if out.is_dir():
        for name in names:
            for tmp in out.glob(f".{name}.*.tmp"):
                if tmp.is_file():
                    tmp.unlink()
                    removed.append(tmp)
    return removed


def check_output_folder(out: Path, names: tuple[str, ...], *, resume: bool, force: bool,
                        can_resume: bool = True) -> None:
    """Refuse, before any work, an ``out`` that cannot hold the outputs, and a trained run in ``out`` unless the
    run resumes it or ``force`` is set."""
    from toolchain.atomic import check_output_path

    check_output_path(out, "folder", "--out")
    if resume or force:
        return
    existing = [n for n in names if (out / n).exists()]
    if existing:
        how = "pass --resume to continue it, --force" if can_resume else "this trainer has no --resume; pass --force"
        raise SnncError(f"{out} already holds a trained run ({', '.join(existing)}); {how} to replace it, or choose "
                        f"another --out")


def train_temporal(cfg: TrainConfig, out: str | Path, *, data_dir: str | None = None, resume: bool = False,
                   force: bool = False, device: str = "cpu", progress: bool = True,
                   log: Callable[[str], None] = print) -> dict:
    """Train, validate every epoch, checkpoint, test the best model and export ``<out>/model.onnx``.

    Returns the metrics dict (also written to ``<out>/metrics.json``). A folder that already holds a run is
    refused unless ``resume`` (continue it) or ``force`` (start over; the old files are replaced as the new ones
    are written). Leftover temp files of interrupted writes of these outputs are removed first. The optimiser's
    torch ops use as many intra-op threads as the numba kernels (measured: faster than one thread, no
    oversubscription).
    """
    import numba
    import torch

    out = Path(out)
    check_output_folder(out, OUTPUT_NAMES, resume=resume, force=force)
    remove_stale_temp_files(out, OUTPUT_NAMES)
    n_torch_threads = torch.get_num_threads()
    torch.set_num_threads(numba.get_num_threads())
    try:
        return _train(cfg, out, data_dir, resume, device, progress, log)
    finally:
        torch.set_num_threads(n_torch_threads)


def _train(cfg: TrainConfig, out: Path, data_dir: str | None, resume: bool, device: str, progress: bool,
           log: Callable[[str], None]) -> dict:
    import torch
    from tqdm import tqdm

    from models.datasets import load_dataset
    from toolchain.artifact import save_onnx

    hp = cfg.hp
    dev = _pick_device(device)
    kw = dict(data_dir=data_dir, source=cfg.source)
    train = load_dataset(cfg.dataset, "train", limit=cfg.limit_train, **kw)
    val = load_dataset(cfg.dataset, "val", limit=cfg.limit_eval, **kw)
    test = load_dataset(cfg.dataset, "test", limit=cfg.limit_eval, **kw)
    n_pixels = train.images.shape[1]
    if len(train) < hp.batch_size:
        raise SnncError(f"{len(train)} training images is fewer than one batch of {hp.batch_size}; "
                        f"raise --limit-train or lower --batch-size")

    ckpt_path = out / CHECKPOINT_NAME
    if resume:
        state = load_checkpoint(ckpt_path)
        saved = state.get("config") if isinstance(state.get("config"), dict) else {}
        if saved != cfg.identity():
            diff = sorted(k for k in set(saved) | set(cfg.identity()) if saved.get(k) != cfg.identity().get(k))
            raise SnncError(f"--resume: the checkpoint in {out} was made with different settings ({', '.join(diff)});"
                            f" repeat the original command with --resume, or use a new --out")
        try:
            net = network_from_params(state["weights"], state["pulse_times"], hp)
            rng = np.random.default_rng()
            rng.bit_generator.state = state["rng_state"]
            start_epoch = int(state["epoch"])
            history = list(state["history"])
            best = (float(state["best_val"]), int(state["best_epoch"]), state["best_weights"],
                    state["best_pulse_times"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SnncError(f"checkpoint {ckpt_path} is incomplete ({type(exc).__name__}: {exc}); delete it and "
                            f"train again with --force") from None
        log(f"resuming {out} after epoch {start_epoch}")
    else:
        rng = np.random.default_rng(cfg.seed)
        net = init_network(hp, n_pixels, rng)
        start_epoch, history, best = 0, [], (math.inf, 0, None, None)
        state = None
    params = Learner(net, hp, dev, weight_decay=cfg.weight_decay)
    if state is not None:
        params.opt.load_state_dict(state["optimizer"])

    n_train = len(train)
    n_batches = n_train // hp.batch_size  # an incomplete last batch is dropped (reshuffled next epoch)
    t_train = 0.0
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        perm = rng.permutation(n_train)
        sq_sum, n_seen = 0.0, 0
        bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", disable=not progress,
                   mininterval=0.5, leave=False)
        chunk = max(hp.batch_size, (4096 // hp.batch_size) * hp.batch_size)
        for c0 in range(0, n_batches * hp.batch_size, chunk):
            idx = perm[c0:min(c0 + chunk, n_batches * hp.batch_size)]
            images = train.images[idx]
            x_all = latency_encode(images, hp.noise, cfg.noise_mean, rng)
            tgt_all = target_times(images)
            for b0 in range(0, idx.shape[0], hp.batch_size):
                sq_sum += params.train_batch(x_all[b0:b0 + hp.batch_size], tgt_all[b0:b0 + hp.batch_size])
                n_seen += hp.batch_size
                bar.update(1)
                if bar.n % 200 == 0:
                    bar.set_postfix(loss=f"{sq_sum / (n_seen * n_pixels):.5f}", refresh=False)
        bar.close()
        train_mse = sq_sum / max(1, n_seen * n_pixels)
        t_epoch = time.perf_counter() - t0
        t_train += t_epoch
        w_alls, pts = (list(map(np.copy, a)) for a in params.numpy())
        cur = network_from_params(w_alls, pts, hp)
        val_mse = evaluate(cur, val.images, hp.noise, cfg.noise_mean, cfg.seed + 1)
        if val_mse < best[0]:
            best = (val_mse, epoch + 1, w_alls, pts)
        history.append({"epoch": epoch + 1, "train_mse": train_mse, "val_mse": val_mse, "seconds": t_epoch})
        log(f"epoch {epoch + 1}/{cfg.epochs}: train MSE {train_mse:.5f}, val MSE {val_mse:.5f} "
            f"({t_epoch:.1f} s, {t_epoch / max(1, n_seen) * 1e3:.3f} ms/example)")
        _save_checkpoint(ckpt_path, {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": cfg.identity(),
            "epoch": epoch + 1, "weights": w_alls, "pulse_times": pts, "optimizer": params.opt.state_dict(),
            "rng_state": rng.bit_generator.state, "history": history, "best_val": best[0],
            "best_epoch": best[1], "best_weights": best[2], "best_pulse_times": best[3]})

    best_val, best_epoch, bw, bp = best
    best_net = network_from_params(bw, bp, hp)
    test_mse = evaluate(best_net, test.images, hp.noise, cfg.noise_mean, cfg.seed + 2)
    metrics = {
        "dataset": cfg.dataset, "data_source": train.source, "preset": cfg.preset, "hyperparameters": hp.as_dict(),
        "epochs": cfg.epochs, "best_epoch": best_epoch, "val_mse": best_val, "test_mse": test_mse,
        "seed": cfg.seed, "noise_mean": cfg.noise_mean, "weight_decay": cfg.weight_decay, "n_train": n_train,
        "n_val": len(val), "n_test": len(test),
        "history": history, "device": dev, "torch": torch.__version__,
    }
    model_meta = {k: metrics[k] for k in ("dataset", "preset", "epochs", "best_epoch", "val_mse", "test_mse",
                                          "seed", "noise_mean", "weight_decay", "n_train")}
    model_meta["hyperparameters"] = hp.as_dict()
    model_meta["trainer"] = "snnc temporal (exact gradients, Comsa et al. 2021)"
    save_onnx(network_from_params(bw, bp, hp, model_meta), out / MODEL_NAME)
    atomic_write_text(out / METRICS_NAME, json.dumps(metrics, indent=2) + "\n")
    log(f"best epoch {best_epoch}: val MSE {best_val:.5f}; test MSE per pixel {test_mse:.5f}")
    return metrics
