"""What the paper-figure commands (Figs. 4-11 of Comsa et al. 2021) share: the models they need as a sweep of
training runs in one models folder, loading those models, the hidden-layer embeddings, and writing a figure's
PNG, CSV and markdown as one set.

Models come from a sweep folder (``<runs>/trials/<hash>/model.onnx`` or ``ann.pt``, docs/sweeps.md). A figure's
spec is a grid of ``snnc train`` runs whose flags match Fig. 3's (``experiments/fig3.py``), so with the same
``--epochs/--limit-train/--limit-eval`` every figure reuses the models Fig. 3 trained (same config hash) and trains
only what is missing. Spike times are in model time units, pixels in [0, 1].
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from experiments.sweep_spec import SweepSpec, TrialConfig, spec_from_dict
from experiments.sweep_state import TRIAL_JSON, trial_dir
from toolchain.atomic import atomic_path, ensure_output_folder
from toolchain.errors import SnncError

DEFAULT_RUNS = "runs/experiments/fig3"  # the models folder: Fig. 3's sweep, shared by every figure
NO_SPIKE_SHIFT = 2.0  # a hidden neuron that does not spike is given the feature time latency + 2 (time units)


@dataclass(frozen=True)
class TrainSettings:
    """The training flags every model of a figure shares (paper: 100 epochs on the full data)."""

    epochs: int = 100
    limit_train: int | None = None
    limit_eval: int | None = None

    def args(self) -> dict:
        a: dict = {"epochs": self.epochs}
        if self.limit_train is not None:
            a["limit-train"] = self.limit_train
        if self.limit_eval is not None:
            a["limit-eval"] = self.limit_eval
        return a

    def check(self) -> None:
        for name, v in (("--epochs", self.epochs), ("--limit-train", self.limit_train),
                        ("--limit-eval", self.limit_eval)):
            if v is not None and v < 1:
                raise SnncError(f"{name} must be >= 1, got {v}")


def figure_spec(figure: str, settings: TrainSettings, grid: dict, trainer_args: dict | None = None) -> SweepSpec:
    """A validated grid spec named ``<figure>-<8 hex digits of its content>`` (so a figure run with other settings
    is another study in the same journal). The SNN runs at ``--latency 1`` unless the grid sets it, as in Fig. 3."""
    args = settings.args()
    args["temporal"] = {"latency": 1}
    for t, a in (trainer_args or {}).items():
        args.setdefault(t, {}).update(a)
    body = {"metric": "test_mse", "args": args, "grid": grid}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]
    return spec_from_dict({"name": f"{figure}-{digest}", **body}, origin=figure)


def ensure_models(spec: SweepSpec, runs: str | Path, *, workers: int = 1, threads: int = 1,
                  storage: str | None = None, log: Callable[[str], None] = print) -> int:
    """Train what of ``spec`` has no finished trial in ``runs`` (``workers`` local sweep workers; 0: train nothing,
    use what has finished). Writes ``<runs>/<spec name>.toml``. Returns the sweep's exit status (0 = all done)."""
    from experiments.fig3 import spec_toml
    from experiments.sweep_run import run_sweep
    from toolchain.atomic import atomic_write_text

    if workers < 0 or threads < 1:
        raise SnncError(f"--workers must be >= 0 and --threads >= 1 (got {workers}, {threads})")
    if workers == 0:
        return 0
    runs = ensure_output_folder(Path(runs))
    spec_path = runs / f"{spec.name}.toml"
    atomic_write_text(spec_path, spec_toml(spec))
    return run_sweep(spec_path, workers=workers, storage=storage, out=runs, threads=threads, log=log)


def finished(runs: str | Path, cfg: TrialConfig) -> Path | None:
    """The finished trial folder of ``cfg`` in ``runs`` (None when it has not finished)."""
    d = trial_dir(runs, cfg.hash)
    return d if (d / TRIAL_JSON).is_file() and (d / "metrics.json").is_file() else None


def require(runs: str | Path, spec: SweepSpec, params: dict) -> Path:
    """The finished trial folder of the grid point ``params``; SnncError naming the missing config and the fix."""
    cfg = spec.config(params)
    d = finished(runs, cfg)
    if d is None:
        raise SnncError(f"no finished model for {cfg.label()} in {runs} (trial {cfg.hash}); train it: run the same "
                        f"command with --workers 1 (or more), or point --runs at the sweep folder that has it")
    return d


def load_snn(trial: Path):
    """The TemporalNetwork of a finished temporal trial (validated on load)."""
    from toolchain.artifact import load_onnx

    return load_onnx(trial / "model.onnx")


def load_ann(trial: Path):
    """(torch model, AnnConfig) of a finished ANN trial."""
    from models.ann import load_checkpoint

    model, cfg, _ = load_checkpoint(trial / "ann.pt")
    return model, cfg


def load_split(dataset: str, split: str, limit: int | None):
    """A dataset split as the trainers load it ($SNNC_DATA or the bundled subset)."""
    from models.datasets import load_dataset

    return load_dataset(dataset, split, limit=limit)


def snn_noise(net) -> tuple[float, float]:
    """(noise eta, noise mean) the SNN was trained with (from its metadata)."""
    hp = net.metadata.get("hyperparameters", {}) if isinstance(net.metadata, dict) else {}
    return float(hp.get("noise", 0.0)), float(net.metadata.get("noise_mean", 1.0))


def snn_layers(net, images01: np.ndarray, seed: int, noise: float | None = None) -> list[np.ndarray]:
    """[input times, hidden times, output times] (N, n) each, time units, inf = no spike; inputs latency-coded
    with the model's training noise (or ``noise``), noise drawn from ``seed``."""
    from models.encoding import latency_encode
    from models.exact import exact_forward

    eta, mean = snn_noise(net)
    x = latency_encode(images01, noise=eta if noise is None else noise, noise_mean=mean,
                       rng=np.random.default_rng(seed))
    outs: list[list[np.ndarray]] = [[], []]
    for i in range(0, x.shape[0], 1000):
        layers = exact_forward(net, x[i:i + 1000])
        outs[0].append(layers[0])
        outs[1].append(layers[-1])
    return [x, np.concatenate(outs[0]), np.concatenate(outs[1])]


def snn_embedding(net, hidden_times: np.ndarray) -> np.ndarray:
    """Hidden spike times as features: a silent neuron gets ``latency + NO_SPIKE_SHIFT`` (time units)."""
    return np.where(np.isfinite(hidden_times), hidden_times, net.latency + NO_SPIKE_SHIFT)


def snn_decode(net, hidden_times: np.ndarray) -> np.ndarray:
    """Pixels [0, 1] (N, 784) that the decoder layer alone makes of hidden spike times (inf = no spike)."""
    from models.encoding import decode
    from models.exact import exact_forward
    from models.network import TemporalNetwork

    dec = TemporalNetwork(layers=(net.layers[-1],), tau=net.tau, theta=net.theta, latency=net.latency)
    return decode(exact_forward(dec, np.asarray(hidden_times, dtype=np.float64))[-1], net.latency)


def ann_embedding(model, cfg, images01: np.ndarray, seed: int) -> np.ndarray:
    """The ANN encoder's activations (N, hidden) for (noisy) inputs of ``images01``."""
    import torch

    from models.ann import ann_inputs

    x = ann_inputs(images01, cfg, np.random.default_rng(seed))
    model.eval()
    with torch.no_grad():
        return model[1](model[0](torch.from_numpy(x))).numpy().astype(np.float64)


def csv_text(rows: list[dict], fields: tuple[str, ...]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def md_table(rows: list[dict], fields: tuple[str, ...]) -> list[str]:
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else ("-" if v is None else str(v))

    return ["| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)] + \
        ["| " + " | ".join(cell(r.get(f)) for f in fields) + " |" for r in rows]


def new_figure(w: float, h: float):
    """A matplotlib Figure on the Agg canvas (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig, dpi: int = 90) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def write_outputs(folder: str | Path, files: dict[str, bytes | str]) -> dict[str, Path]:
    """Write ``{name: content}`` into ``folder`` as one set: every temp file is written before any replaces its
    target, so a failure leaves the earlier results intact and no debris. Returns {name: path}."""
    import contextlib

    folder = ensure_output_folder(Path(folder))
    paths = {name: folder / name for name in files}
    with contextlib.ExitStack() as stack:
        for name, data in files.items():
            tmp = stack.enter_context(atomic_path(paths[name]))
            if isinstance(data, str):
                tmp.write_text(data)
            else:
                tmp.write_bytes(data)
    return paths


def settings_line(settings: TrainSettings, source: str, runs: str | Path) -> str:
    """One line naming the models' training settings and where they came from."""
    lim = f", first {settings.limit_train} training images" if settings.limit_train else ""
    lev = f", first {settings.limit_eval} validation/test images" if settings.limit_eval else ""
    return (f"Models: {settings.epochs} epoch(s){lim}{lev}, data {source}; trained by `snnc sweep` in {runs} "
            f"(paper: 100 epochs, full data).")
