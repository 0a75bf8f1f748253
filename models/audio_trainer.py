"""Trainer of the spiking audiocoder (``snnc train audio``): spoken digits -> the image autoencoder's hidden spike
map (Roy, Panda & Roy 2019, section 4.2; FSDD instead of TI-46).

Data: FSDD training clips (index 5-49, 2,700) as Lyon cochleagrams (models/cochleagram.py, cached), paired with
MNIST training images (models/audio_pairs.py, dataset A or B); the image model (``snnc train rate --preset
mnist-196``) gives the targets and the decoder. Every epoch: a fresh permutation, batches of ``batch_size`` clips,
Bernoulli inputs (p = p_scale * feature) drawn per batch, the event-driven online rule (models/audio_online.py).
At the end the test clips (index 0-4, 300) are decoded through the image model's decoder and scored
(models/audio_metrics.py); outputs: ``audiocoder.npz``, ``metrics.json``, ``generated.png`` (5 test clips per digit).
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

from models.cochleagram import FeatureSpec
from toolchain.atomic import atomic_write_text
from toolchain.errors import SnncError

MODEL_NAME = "audiocoder.npz"
METRICS_NAME = "metrics.json"
PNG_NAME = "generated.png"
OUTPUT_NAMES = (MODEL_NAME, METRICS_NAME, PNG_NAME)
DEFAULT_T_H = {"A": 15, "B": 10}   # Table 1 footnotes: A with T_h 15, B with T_h 10
ADAM_MODES = ("batch", "persistent")


@dataclass(frozen=True)
class AudioConfig:
    """One audiocoder run (defaults: the paper's; lr is Adam's step size per time step)."""

    pairing: str = "A"
    rate: int = 12500
    frames: int = 1500
    decimation: int = 10
    hidden: int = 2048
    steps: int = 30
    p_scale: float = 0.02
    lr: float = 5e-5
    batch_size: int = 50
    epochs: int = 1
    seed: int = 0
    init: float = 0.01
    t_h: int | None = None
    trace_window: int | None = None
    adam: str = "batch"
    miss_weight: float = 1.0
    lr_input_scale: float = 1.0
    class_image: str = "nearest-mean"
    class_candidates: int = 50
    limit_train: int | None = None
    limit_test: int | None = None
    current_penalty: float = 0.0    # lam of 0.5 lam relu(|I| - current_bound)^2 per step (0: off, the authors' rule)
    current_bound: float = 4.0      # K, thresholds of input current per step left free (models/audio_online.py)
    leak: str = "float"             # audiocoder leak: float (0.9, the paper's) or chip (the 12-bit decay 0.9 realises)

    def leak_value(self) -> float:
        """The audiocoder's per-step leak: 0.9, or with ``leak="chip"`` the factor the chip realises for it
        (toolchain.quantize.realised_leak: 1 - round(4096 * 0.1) / 4096 = 0.89990234375), so the compiled
        network maps it exactly. SnncError for another choice."""
        from models.rate_online import OnlineRule
        from toolchain.quantize import realised_leak

        if self.leak not in ("float", "chip"):
            raise SnncError(f"--leak must be float (0.9, the paper's) or chip (the 12-bit decay the chip realises for "
                            f"0.9), got {self.leak!r}")
        base = OnlineRule.leak
        return realised_leak(base) if self.leak == "chip" else base

    def __post_init__(self) -> None:
        from models.rate_encoding import check_p_scale, check_steps

        if self.pairing not in ("A", "B"):
            raise SnncError(f"--pairing must be A (one image per digit) or B (one image per clip), got "
                            f"{self.pairing!r}")
        FeatureSpec(self.rate, self.frames, self.decimation)
        check_steps(self.steps)
        check_p_scale(self.p_scale)
        for name in ("hidden", "epochs", "batch_size") + (("trace_window",) if self.trace_window is not None else ()):
            if int(getattr(self, name)) < 1:
                raise SnncError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0) or not (math.isfinite(self.init) and self.init > 0):
            raise SnncError(f"lr and init must be finite and > 0, got lr={self.lr}, init={self.init}")
        if self.adam not in ADAM_MODES:
            raise SnncError(f"--adam must be one of {', '.join(ADAM_MODES)} (batch: moments reset every batch as the "
                            f"authors' code; persistent: kept across batches), got {self.adam!r}")
        if not (math.isfinite(self.miss_weight) and self.miss_weight > 0):
            raise SnncError(f"--miss-weight must be finite and > 0 (1: the authors' rule), got {self.miss_weight}")
        if not (math.isfinite(self.lr_input_scale) and self.lr_input_scale > 0):
            raise SnncError(f"--lr-input-scale must be finite and > 0 (1: one step size), got {self.lr_input_scale}")
        from models.audio_pairs import CLASS_IMAGE_RULES

        if self.class_image not in CLASS_IMAGE_RULES:
            raise SnncError(f"--class-image must be one of {', '.join(CLASS_IMAGE_RULES)}, got {self.class_image!r}")
        if self.class_candidates < 1:
            raise SnncError(f"--class-candidates must be >= 1, got {self.class_candidates}")
        for name in ("limit_train", "limit_test"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise SnncError(f"--{name.replace('_', '-')} must be a positive number of clips, got {v}")
        if not (math.isfinite(self.current_penalty) and self.current_penalty >= 0 and math.isfinite(self.current_bound)
                and self.current_bound > 0):
            raise SnncError(f"--current-penalty must be >= 0 (0: off) and --current-bound > 0 (thresholds per step), "
                            f"got {self.current_penalty} and {self.current_bound}; fix: e.g. --current-penalty 0.01 "
                            "--current-bound 4")
        self.leak_value()                                                   # --leak float|chip

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec(self.rate, self.frames, self.decimation)

    def window(self) -> int:
        """Eligibility-trace window in steps (None: the exact trace, = steps)."""
        return int(self.trace_window) if self.trace_window is not None else int(self.steps)

    def resolved_t_h(self) -> int:
        return int(self.t_h) if self.t_h is not None else DEFAULT_T_H[self.pairing]


def init_weights(n_in: int, hidden: int, n_code: int, init: float, rng: np.random.Generator):
    """U(-init, init) float32 weights: w1t (n_in, hidden) built in row blocks (no float64 copy of 120 M weights),
    w2 (n_code, hidden)."""
    w1t = np.empty((n_in, hidden), np.float32)
    for r in range(0, n_in, 4096):
        blk = rng.random((min(4096, n_in - r), hidden), dtype=np.float32)
        w1t[r:r + blk.shape[0]] = (blk * np.float32(2 * init) - np.float32(init))
    w2 = (rng.random((n_code, hidden), dtype=np.float32) * np.float32(2 * init) - np.float32(init))
    return w1t, w2


def load_image_model(path: str | Path):
    """The image autoencoder (a rate LIF steps graph, ``snnc train rate``)."""
    from toolchain.artifact_graph import load_graph
    from toolchain.errors import ArtifactError

    p = Path(path)
    if p.is_dir():
        p = p / "model.onnx"
    if not p.is_file():
        raise SnncError(f"image model {p} does not exist; train one with `snnc train rate --preset mnist-196 --out "
                        f"DIR` and pass --image-model DIR")
    g = load_graph(p)
    if g.time != "steps":
        raise ArtifactError(f"{p} is not a rate-coded LIF autoencoder (snnc train rate); the audiocoder needs its "
                            f"hidden spike maps and decoder")
    return g, p


def train_audio(cfg: AudioConfig, out: str | Path, image_model: str | Path, *, data_dir: str | None = None,
                cache_dir: str | Path | None = None, force: bool = False, threads: int | None = None,
                progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Train, test and write the outputs into ``out`` (refused when it holds a run, unless ``force``).
    ``threads``: numba threads of the training kernel (default: unchanged). Returns the metrics dict."""
    import numba

    from models.temporal_trainer import check_output_folder, remove_stale_temp_files

    out = Path(out)
    check_output_folder(out, OUTPUT_NAMES, resume=False, force=force, can_resume=False)
    remove_stale_temp_files(out, OUTPUT_NAMES)
    if threads is not None and not 1 <= threads <= 256:
        raise SnncError(f"--threads must be between 1 and 256, got {threads}")
    n_numba = numba.get_num_threads()
    if threads is not None:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        return _train(cfg, out, image_model, data_dir, cache_dir, progress, log)
    finally:
        numba.set_num_threads(n_numba)


def prepare(cfg: AudioConfig, image_model, data_dir, cache_dir, log=print) -> dict:
    """Features, pairing, targets and decoder of a run (shared by the SNN trainer, the ANN baseline and eval)."""
    from models.audio_model import check_decoder, decoder_of
    from models.audio_pairs import hidden_targets, pair
    from models.cochleagram import load_features
    from models.datasets import load_dataset

    graph, gpath = load_image_model(image_model)
    dec_w, dec_leak, dec_vth = decoder_of(graph)
    n_code = dec_w.shape[1]
    check_decoder(n_code, dec_w)
    img_steps = int(graph.metadata.get("steps", 15))
    if not 1 <= cfg.resolved_t_h() <= img_steps:
        raise SnncError(f"--t-h must lie in 1..{img_steps} (the image model's steps), got {cfg.resolved_t_h()}")
    t0 = time.process_time()
    train = load_features("train", cfg.spec, data_dir=data_dir, cache_dir=cache_dir, limit=cfg.limit_train, log=log)
    test = load_features("test", cfg.spec, data_dir=data_dir, cache_dir=cache_dir, limit=cfg.limit_test, log=log)
    log(f"features: {len(train)} training and {len(test)} test clips, {cfg.spec.channels} channels x "
        f"{cfg.spec.frames} frames ({cfg.spec.n_inputs} inputs; {train.n_cut + test.n_cut} clips cut to the "
        f"{cfg.spec.window_seconds:.2f} s window; CPU {time.process_time() - t0:.1f} s)")
    mnist = load_dataset("mnist", "train", data_dir=data_dir)
    class_ids = resolve_class_ids(cfg, graph, mnist, log)
    pairing = pair(cfg.pairing, train.labels, mnist.images, mnist.labels, cfg.seed, class_ids)
    uniq, inv = np.unique(pairing.image_ids, return_inverse=True)
    hid = hidden_targets(graph, mnist.images[uniq], cfg.resolved_t_h(), cfg.seed + 3)[inv.reshape(-1)]
    return {"graph": graph, "graph_path": gpath, "dec": (dec_w, dec_leak, dec_vth), "train": train, "test": test,
            "pairing": pairing, "hid": hid, "mnist_source": mnist.source}


def resolve_class_ids(cfg: AudioConfig, image_model, mnist, log: Callable[[str], None] = print) -> np.ndarray:
    """(10,) MNIST ids of the fixed image per digit by ``cfg.class_image`` (models/audio_pairs.class_image_ids).
    ``image_model``: the image autoencoder (graph, run folder or model.onnx); best-drawn needs it (SnncError
    otherwise), nearest-mean does not. ``mnist``: the MNIST training set (images, labels)."""
    from models.audio_pairs import class_image_ids, drawn_floor

    if cfg.class_image == "nearest-mean":
        return class_image_ids(mnist.images, mnist.labels)
    if image_model is None:
        raise SnncError(f"--class-image {cfg.class_image} chooses the images the spiking image model draws best: pass "
                        "--image-model (a `snnc train rate --preset mnist-196` run), or use --class-image nearest-mean")
    graph = load_image_model(image_model)[0] if isinstance(image_model, (str, Path)) else image_model
    c0 = time.process_time()
    ids = class_image_ids(mnist.images, mnist.labels, cfg.class_image, cfg.class_candidates,
                          lambda im: drawn_floor(graph, im, cfg.resolved_t_h(), cfg.steps))
    log(f"class images ({cfg.class_image}, {cfg.class_candidates} candidates per digit): {ids.tolist()} "
        f"(CPU {time.process_time() - c0:.1f} s)")
    return ids


def _train(cfg: AudioConfig, out: Path, image_model, data_dir, cache_dir, progress: bool,
           log: Callable[[str], None]) -> dict:
    from tqdm import tqdm

    from models.audio_metrics import per_clip_paired, score
    from models.audio_model import AudioCoder, encode_clip, generate, save_audiocoder
    from models.audio_online import AdamState, Workspace, online_batch_sparse
    from models.audio_pairs import cycled
    from models.rate_online import OnlineRule
    from toolchain.artifact import model_hash

    cache_dir = Path(cache_dir) if cache_dir is not None else out / "cache"
    d = prepare(cfg, image_model, data_dir, cache_dir, log)
    train, test, pairing, hid = d["train"], d["test"], d["pairing"], d["hid"]
    dec_w, dec_leak, dec_vth = d["dec"]
    n_in, n_code = cfg.spec.n_inputs, dec_w.shape[1]
    if len(train) < cfg.batch_size:
        raise SnncError(f"{len(train)} training clips is fewer than one batch of {cfg.batch_size}; raise "
                        f"--limit-train or lower --batch-size")
    rng = np.random.default_rng(cfg.seed)
    w1t, w2 = init_weights(n_in, cfg.hidden, n_code, cfg.init, rng)
    rule = OnlineRule(lr=cfg.lr, n_shrink=float(n_in), leak=cfg.leak_value())
    n_batches = len(train) // cfg.batch_size
    state = AdamState(w1t, w2) if cfg.adam == "persistent" else None
    work = Workspace()
    history = []
    for epoch in range(cfg.epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        perm = rng.permutation(len(train))
        loss_sum, events, out_sp = 0.0, 0, 0.0
        bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", disable=not progress,
                   mininterval=0.5, leave=False)
        for b in range(n_batches):
            rows = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            spikes = [encode_clip(*train.sparse(n), cfg.steps, cfg.p_scale, rng) for n in rows]
            r = online_batch_sparse(w1t, w2, spikes, cycled(hid[rows], cfg.steps), rule, cfg.window(), state, work,
                                    current_penalty=(cfg.current_penalty, cfg.current_bound),
                                    miss_weight=cfg.miss_weight, lr_input_scale=cfg.lr_input_scale)
            loss_sum += r["loss"]
            events += r["events"]
            out_sp += float(r["out_spikes"].sum())
            bar.update(1)
        bar.close()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if not (np.all(np.isfinite(w2)) and np.all(np.isfinite(w1t[:1000]))):
            raise SnncError("training diverged (non-finite weights); lower --lr")
        n_seen = n_batches * cfg.batch_size
        meta = {"family": "audiocoder", "spec": dataclasses.asdict(cfg.spec), "steps": cfg.steps,
                "p_scale": cfg.p_scale, "leak": rule.leak, "v_th": rule.v_th, "pairing": cfg.pairing,
                "t_h": cfg.resolved_t_h(), "class_image_ids": [int(i) for i in pairing.class_ids], "config": dataclasses.asdict(cfg), "image_model": str(d["graph_path"]),
                "image_model_sha256": model_hash(d["graph_path"]), "epochs_done": epoch + 1}
        ac = AudioCoder(w1t, w2, dec_w, dec_leak, dec_vth, meta)
        hid_e = np.zeros((len(test), cfg.hidden))
        gen, codes = generate(ac, test, cfg.seed + 2, hidden=hid_e)
        sc = score(gen, test.labels, pairing)
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / n_batches, "seconds": wall, "cpu_seconds": cpu,
                        "input_spikes_per_step": events / (n_seen * cfg.steps),
                        "code_spikes_per_clip": out_sp / n_seen, "test_mse": sc["mse"],
                        "test_class_accuracy": sc["class_accuracy"], **activity(hid_e, codes)})
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss/sample {loss_sum / n_batches:.2f}, {events / (n_seen * cfg.steps):.1f} "
            f"input spikes per step, {out_sp / n_seen:.1f} code spikes per clip ({wall:.1f} s, CPU {cpu:.1f} s); "
            f"test MSE {sc['mse']:.4f}, nearest class {100 * sc['class_accuracy']:.1f} %; hidden neurons silent on "
            f"every test clip {100 * history[-1]['test_hidden_silent']:.1f} %, code spikes per test clip "
            f"{history[-1]['test_code_spikes_per_clip']:.0f}")
        # the outputs of the epochs so far (a run stopped later keeps them; the last epoch's are the run's)
        n_tr = min(len(train), 300)
        tr_rows = np.linspace(0, len(train) - 1, n_tr).astype(np.int64)
        gen_tr, _ = generate(ac, train.subset(tr_rows), cfg.seed + 4)
        train_mse = float(per_clip_paired(gen_tr, pairing.images[tr_rows]).mean())
        metrics = {"pairing": cfg.pairing, "test_mse": sc["mse"], "test_mse_per_digit": sc["mse_per_digit"],
                   "test_class_accuracy": sc["class_accuracy"], "train_paired_mse": train_mse,
                   "n_train": len(train), "n_test": len(test), "epochs_done": epoch + 1,
                   "test_image_spikes_per_clip": float(gen.sum(1).mean()), "history": history,
                   "config": dataclasses.asdict(cfg), "image_model": str(d["graph_path"]),
                   "mnist_source": d["mnist_source"], "features": dataclasses.asdict(cfg.spec),
                   "clips_cut": int(train.n_cut + test.n_cut), **activity(hid_e, codes)}
        save_grid(gen, test.labels, out / PNG_NAME,
                  title=f"audiocoder ({cfg.pairing}), {epoch + 1} epochs, test clips: decoder spike counts")
        save_audiocoder(ac, out / MODEL_NAME)
        atomic_write_text(out / METRICS_NAME, json.dumps(metrics, indent=2) + "\n")
    log(f"test MSE {sc['mse']:.4f} (z-scored, dataset {cfg.pairing}), generated digit nearest to the spoken digit's "
        f"class image in {100 * sc['class_accuracy']:.1f} % of test clips; train (paired) MSE {train_mse:.4f}")
    return metrics


def activity(hidden: np.ndarray, codes: np.ndarray) -> dict:
    """Spike activity on the test clips from spike counts per clip (hidden (N, H), codes (N, n_code)): the fraction
    of hidden neurons that spike on no clip, hidden and code spikes per clip (over its T steps)."""
    return {"test_hidden_silent": float(np.mean(hidden.sum(axis=0) == 0)),
            "test_hidden_spikes_per_clip": float(hidden.sum(axis=1).mean()),
            "test_code_spikes_per_clip": float(codes.sum(axis=1).mean())}


def save_grid(images: np.ndarray, labels: np.ndarray, path: str | Path, per_class: int = 5,
              title: str | None = None) -> None:
    """Write :func:`grid_png_bytes` atomically."""
    from toolchain.atomic import atomic_write_bytes

    atomic_write_bytes(path, grid_png_bytes(images, labels, per_class, title))


def grid_png_bytes(images: np.ndarray, labels: np.ndarray, per_class: int = 5, title: str | None = None) -> bytes:
    """PNG grid: one row per digit 0-9, ``per_class`` generated images each (each scaled to its own maximum)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    mosaic = np.ones((10 * 30, per_class * 30)) * 0.25
    for d in range(10):
        rows = np.flatnonzero(labels == d)[:per_class]
        for k, r in enumerate(rows):
            im = images[r]
            mosaic[d * 30 + 1:d * 30 + 29, k * 30 + 1:k * 30 + 29] = (im / max(im.max(), 1e-12)).reshape(28, 28)
    fig = Figure(figsize=(per_class * 0.6 + 0.6, 6.4))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.12, 0.02, 0.86, 0.9 if title else 0.96))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks(np.arange(10) * 30 + 14.5, [str(d) for d in range(10)])
    if title:
        fig.suptitle(title, fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()
