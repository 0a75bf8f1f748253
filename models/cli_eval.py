"""`snnc eval MODEL`: reconstruction MSE per pixel ([0, 1] units) of a temporal ONNX artifact or an ANN checkpoint.

Temporal models run through the exact float64 reference (models/exact.py) on latency-coded inputs; the score is
the authors' loss (models.encoding.reconstruction_mse). ANN checkpoints (`snnc train ann`) score the same way on
their reconstructed pixels. A PNG of originals vs reconstructions is written (default: beside the model).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
from pathlib import Path

import numpy as np

from toolchain.atomic import check_output_path
from toolchain.errors import ArtifactError, SnncError

DATASETS = ("mnist", "fashion-mnist")

N_PIXELS = 784
EVAL_BATCH = 1000  # samples per exact_forward call (bounds the trace memory)


def resolve_model_path(model: str | Path) -> Path:
    """A file, or a run folder holding model.onnx (temporal or rate) or ann.pt."""
    path = Path(model)
    if path.is_dir():
        for name in ("model.onnx", "ann.pt"):
            if (path / name).is_file():
                return path / name
        raise ArtifactError(f"folder {path} holds neither model.onnx nor ann.pt; pass the model file itself")
    if not path.exists():
        raise ArtifactError(f"model {path} does not exist; check the path or train one with `snnc train`")
    return path


def _metadata_noise(meta: dict) -> tuple[float | None, float | None]:
    """Training noise settings recorded by the trainer: ``noise`` (top level or in ``hyperparameters``), ``noise_mean``."""
    def num(d, key):
        v = d.get(key) if isinstance(d, dict) else None
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None
    noise = num(meta, "noise")
    if noise is None:
        noise = num(meta.get("hyperparameters"), "noise")
    return noise, num(meta, "noise_mean")


def _load_model(path: Path):
    """('ann', (model, cfg)), ('rate', steps Graph) or ('temporal', TemporalNetwork) - validated like `snnc compile`."""
    from models.ann import is_ann_checkpoint

    if is_ann_checkpoint(path):
        from models.ann import load_checkpoint

        model, cfg, _ = load_checkpoint(path)
        return "ann", (model, cfg)
    from toolchain.artifact import load_onnx  # validates the file and the network (the same checks as compile)
    from toolchain.artifact_graph import load_graph

    try:
        graph = load_graph(path)
    except ArtifactError:
        graph = None  # load_onnx below says what is wrong, as it always has
    if graph is not None and graph.time == "steps" and graph.metadata.get("family") == "conv-lif":
        return "conv", graph  # snnc train conv
    if graph is not None and graph.time == "steps":  # a rate-coded LIF model (snnc train rate)
        return "rate", graph
    net = load_onnx(path)
    sizes = net.sizes
    if sizes[0] != N_PIXELS or sizes[-1] != N_PIXELS:
        raise ArtifactError(
            f"{path} is a {'-'.join(map(str, sizes))} network, but image reconstruction needs {N_PIXELS} inputs and "
            f"{N_PIXELS} outputs (28x28 pixels); evaluate an autoencoder trained on MNIST/Fashion-MNIST"
        )
    if net.encoding != "latency":
        raise ArtifactError(f"{path} uses input encoding {net.encoding!r}; snnc eval supports 'latency' only")
    return "temporal", net


def _recorded_dataset(kind: str, model) -> str | None:
    """The dataset the model was trained on, as its metadata (temporal) or config (ANN) records it."""
    name = model[1].dataset if kind == "ann" else model.metadata.get("dataset")  # temporal and rate: metadata
    return name if name in DATASETS else None


def _eval_temporal(path: Path, net, images: np.ndarray, noise: float | None, noise_mean: float | None,
                   seed: int) -> dict:
    from models.encoding import decode, latency_encode, reconstruction_mse
    from models.exact import exact_forward
    from toolchain.artifact import model_hash

    sizes = net.sizes
    meta_noise, meta_mean = _metadata_noise(net.metadata)
    noise = noise if noise is not None else (meta_noise or 0.0)
    noise_mean = noise_mean if noise_mean is not None else (meta_mean if meta_mean is not None else 1.0)
    times = latency_encode(images, noise=noise, noise_mean=noise_mean, rng=np.random.default_rng(seed))
    hidden_spiked, outs = 0, []
    for i in range(0, images.shape[0], EVAL_BATCH):
        layers = exact_forward(net, times[i:i + EVAL_BATCH])
        outs.append(layers[-1])
        hidden_spiked += sum(int(np.isfinite(t).sum()) for t in layers[:-1])
    t_out = np.concatenate(outs)
    n_hidden = sum(sizes[1:-1]) * images.shape[0]
    return {
        "kind": "temporal", "sizes": sizes, "model_sha256": model_hash(path), "latency": net.latency,
        "noise": noise, "noise_mean": noise_mean,
        "mse": reconstruction_mse(t_out, images, net.latency),
        "output_spike_fraction": float(np.isfinite(t_out).mean()),
        "hidden_spike_fraction": (hidden_spiked / n_hidden) if n_hidden else None,
        "reconstructions": decode(t_out, net.latency),
    }


def _bernoulli_settings(path: Path, graph, kind: str, noise: float | None,
                        noise_mean: float | None) -> tuple[int, float]:
    """(T, p_scale) a Bernoulli-coded steps model recorded at training; SnncError for the temporal models' noise
    options, ArtifactError when the metadata lacks them."""
    if noise is not None or noise_mean is not None:
        raise SnncError(f"--noise and --noise-mean apply to temporal models; a {kind} model's inputs are Bernoulli "
                        "spike trains (drop them)")
    meta = graph.metadata
    try:
        return int(meta["steps"]), float(meta["p_scale"])
    except (KeyError, TypeError, ValueError):
        raise ArtifactError(f"{path} does not record steps and p_scale in its metadata; train it again") from None


def _eval_rate(path: Path, graph, images: np.ndarray, noise: float | None, noise_mean: float | None,
               seed: int) -> dict:
    """Rate LIF model (models/rate_model.py, a steps graph in a format 2 artifact): Bernoulli inputs with the
    recorded T and p_scale; both z-scored metrics (``mse`` = image vs output spike counts, ``spike_mse`` = input
    vs output spike counts)."""
    from models.rate_trainer import evaluate_graph

    steps, p_scale = _bernoulli_settings(path, graph, "rate", noise, noise_mean)
    m, counts = evaluate_graph(graph, images, steps, p_scale, seed)
    peak = np.maximum(counts.max(axis=1, keepdims=True), 1)
    sizes = [graph.nodes[graph.input_name].n] + [graph.nodes[k].n for k in graph.populations()]
    return {"kind": "rate", "sizes": sizes, "steps": steps, "p_scale": p_scale, "noise": 0.0, "noise_mean": 0.0,
            "mse": m["pixel_mse"], "spike_mse": m["spike_mse"],
            "output_spikes_per_image": m["output_spikes_per_image"],
            "input_spikes_per_image": m["input_spikes_per_image"], "reconstructions": counts / peak}


def _eval_conv(path: Path, graph, images: np.ndarray, noise: float | None, noise_mean: float | None,
               seed: int) -> dict:
    """Conv LIF autoencoder (models/conv_model.py): Bernoulli inputs with the recorded T and p_scale; ``mse`` per
    pixel and ``sse`` (sum of squared errors per image, the paper's figure), pixels in [0, 1]; latent activity."""
    from models.conv_model import reconstruct
    from models.conv_stats import layer_stats

    steps, p_scale = _bernoulli_settings(path, graph, "conv", noise, noise_mean)
    rec, counts = reconstruct(graph, images, steps=steps, p_scale=p_scale, seed=seed)
    sse = float(((rec - images) ** 2).sum(axis=1).mean())
    sizes = [graph.nodes[graph.input_name].n] + [graph.nodes[k].n for k in graph.populations()]
    return {"kind": "conv", "sizes": sizes, "steps": steps, "p_scale": p_scale, "noise": 0.0, "noise_mean": 0.0,
            "mse": sse / images.shape[1], "sse": sse, "layers": layer_stats(counts, steps),
            "reconstructions": np.clip(rec, 0.0, 1.0)}


def _eval_ann(path: Path, loaded, images: np.ndarray, noise: float | None, noise_mean: float | None,
              seed: int) -> dict:
    import dataclasses

    from models.ann import pixel_mse, reconstruct

    model, cfg = loaded
    cfg = dataclasses.replace(cfg, noise=cfg.noise if noise is None else float(noise),
                              noise_mean=cfg.noise_mean if noise_mean is None else float(noise_mean))
    rec = reconstruct(model, cfg, images, np.random.default_rng(seed))
    return {"kind": "ann", "sizes": [N_PIXELS, cfg.hidden, N_PIXELS], "inverted": cfg.inverted,
            "noise": cfg.noise, "noise_mean": cfg.noise_mean, "mse": pixel_mse(rec, images), "reconstructions": rec}


def evaluate(model: str | Path, dataset: str | None = None, *, split: str = "test", data_dir: str | None = None,
             limit: int | None = None, noise: float | None = None, noise_mean: float | None = None,
             seed: int = 0, png: str | Path | None = None, json_path: str | Path | None = None) -> dict:
    """Score ``model`` on a dataset split; returns the metrics (``mse``: MSE per pixel, [0, 1] units).

    ``dataset`` None: the one the model records (training metadata / ANN config). noise / noise_mean default to
    the model's training settings when it records them, else 0 / 1. ``png``: where to write originals vs
    reconstructions (None = beside the model); ``json_path``: also write the metrics there. Every output path is
    checked before any work, and the outputs are written as one set (a failure leaves none of them new).
    """
    from models.datasets import load_dataset
    from models.plots import reconstruction_png_bytes
    from toolchain.atomic import atomic_path

    path = resolve_model_path(model)
    if noise is not None and (not math.isfinite(noise) or noise < 0):
        raise SnncError(f"--noise must be a finite number >= 0, got {noise}")
    kind, loaded = _load_model(path)
    if dataset is None:
        dataset = _recorded_dataset(kind, loaded)
        if dataset is None:
            raise SnncError(f"{path} does not record the dataset it was trained on; pass --dataset "
                            f"({' or '.join(DATASETS)})")
    elif dataset not in DATASETS:
        raise SnncError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    png_path = check_output_path(png if png else path.with_name(f"{path.stem}_eval_{dataset}_{split}.png"),
                                 "file", "--png")
    if json_path is not None:
        json_path = check_output_path(json_path, "file", "--json")
        if json_path.resolve() == png_path.resolve():
            raise SnncError(f"--json and --png both name {json_path}; give them different files")
    data = load_dataset(dataset, split, data_dir=data_dir, limit=limit)
    if data.images.shape[1] != N_PIXELS:
        raise SnncError(f"{dataset} images have {data.images.shape[1]} pixels, expected {N_PIXELS}")
    run = {"ann": _eval_ann, "rate": _eval_rate, "conv": _eval_conv}.get(kind, _eval_temporal)
    result = run(path, loaded, data.images.astype(np.float64), noise, noise_mean, seed)
    rec = result.pop("reconstructions")
    png_bytes = reconstruction_png_bytes(
        data.images, rec,
        title=f"{result['kind']} {'-'.join(map(str, result['sizes']))} on {dataset} {split}: "
              f"MSE {result['mse']:.5f} " + (f"Spike-MSE {result['spike_mse']:.4f} (z-scored; output spike counts)"
                                             if result["kind"] == "rate" else f"SSE/image {result['sse']:.3f}"
                                             if result["kind"] == "conv" else f"(noise {result['noise']:g})"),
    )
    result.update(model=str(path), dataset=dataset, split=split, data_source=data.source, n_images=len(data),
                  seed=seed, png=str(png_path))
    with contextlib.ExitStack() as stack:  # every temp file is written before any replaces its target
        stack.enter_context(atomic_path(png_path)).write_bytes(png_bytes)
        if json_path is not None:
            result["json"] = str(json_path)
            stack.enter_context(atomic_path(json_path)).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _run(args: argparse.Namespace) -> int:
    from models.cli_audio import eval_audio_cli, is_audiocoder

    if is_audiocoder(args.model):  # an audiocoder run (snnc train audio): scored on the FSDD test clips
        return eval_audio_cli(args)
    result = evaluate(args.model, args.dataset, split=args.split, data_dir=args.data_dir, limit=args.limit,
                      noise=args.noise, noise_mean=args.noise_mean, seed=args.seed, png=args.png,
                      json_path=args.json)
    print(f"model: {result['model']} ({result['kind']} {'-'.join(map(str, result['sizes']))})")
    print(f"data: {result['dataset']} {result['split']} ({result['data_source']}, {result['n_images']} images), "
          + ("Bernoulli inputs" if result["kind"] in ("rate", "conv") else
             f"noise {result['noise']:g} (mean {result['noise_mean']:g})") + f", seed {result['seed']}")
    if result["kind"] == "temporal":
        hidden = result["hidden_spike_fraction"]
        print(f"spikes: output {100 * result['output_spike_fraction']:.1f} % of neurons"
              + (f", hidden {100 * hidden:.1f} %" if hidden is not None else ""))
    if result["kind"] == "rate":
        print(f"T = {result['steps']} steps, p_scale {result['p_scale']:g}; spikes per image: input "
              f"{result['input_spikes_per_image']:.1f}, output {result['output_spikes_per_image']:.1f}")
        print(f"{result['split']} Spike-MSE {result['spike_mse']:.4f}, MSE {result['mse']:.4f} (z-scored per image; "
              f"reconstruction = output spike counts)")
    elif result["kind"] == "conv":
        print(f"T = {result['steps']} steps, p_scale {result['p_scale']:g}; latent neurons active "
              f"{100 * result['layers']['latent']['active']:.1f} %")
        print(f"{result['split']} MSE per pixel: {result['mse']:.6f}, sum of squared errors per image "
              f"{result['sse']:.4f}")
    else:
        print(f"{result['split']} MSE per pixel: {result['mse']:.6f}")
    print(f"reconstructions: {result['png']}")
    if args.json:
        print(f"metrics: {args.json}")
    return 0


def register(subparsers) -> None:
    """Add `snnc eval` to the snnc command."""
    p = subparsers.add_parser(
        "eval",
        help="reconstruction MSE per pixel of a model (ONNX artifact or ANN checkpoint)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="model.onnx (temporal or rate LIF), ann.pt, audiocoder.npz (snnc train audio), or a "
                                 "run folder holding one of them")
    p.add_argument("--dataset", default=None, choices=DATASETS,
                   help="dataset to score on (default: the one the model was trained on, from its metadata)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"),
                   help="split: train (first 54,000), val (last 6,000 training images) or test (default)")
    p.add_argument("--data-dir", default=None, help="folder with mnist/ and fashion-mnist/ (default $SNNC_DATA; "
                                                     "neither: the bundled subset)")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N images of the split")
    p.add_argument("--noise", type=float, default=None,
                   help="input noise eta, time units (default: the model's training noise, else 0)")
    p.add_argument("--noise-mean", type=float, default=None,
                   help="mean of r in t + noise * r, r ~ N(mean, 1) (default: the model's, else 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the input noise")
    p.add_argument("--png", default=None, help="output PNG (default: <model>_eval_<dataset>_<split>.png beside it)")
    p.add_argument("--json", default=None, help="also write the metrics as JSON here (checked before any work; "
                                                 "the PNG and the JSON are written as one set)")
    p.set_defaults(func=_run)
