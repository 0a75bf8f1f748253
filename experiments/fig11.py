"""Fig. 11 of Comsa et al. 2021: reconstruction loss on inverted-brightness MNIST (the time code 1 - p as the
images) of the spiking autoencoder (latency 1) vs ANN autoencoders with ReLU-sigmoid and Gaussian-Gaussian
activations, hidden 32, per noise level.

The SNN's input already is the inverted image (its spike time is 1 - p), so its models are the ordinary ones
(Fig. 3's). The ReLU-sigmoid ANN is ``snnc train ann --inverted`` (a sweep trial); the Gaussian-Gaussian ANN
(``experiments/ann_gauss.py``) is trained in this process and its scores kept in
``<runs>/extra/ann-gauss-<hash>/metrics.json`` so a re-run does not train it again. When Fig. 3's ReLU-sigmoid ANN
on the ordinary images has finished with the same settings, it is shown as a reference (not trained here).
Scores: test MSE per pixel of the best-on-validation epoch, [0, 1] units (each trainer's own number).
Writes ``fig11.png``, ``fig11.csv``, ``fig11.md``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from experiments.paper_common import (TrainSettings, csv_text, figure_spec, finished, md_table, new_figure,
                                      png_bytes, require, settings_line, write_outputs)
from toolchain.errors import SnncError

NOISES = (0.0, 0.2, 0.4, 0.6, 0.8)
FIELDS = ("model", "inverted", "noise", "test_mse", "val_mse", "best_epoch", "source")
CLAIM = "the SNN outperforms every tested ANN on the inverted images"
MODELS = ("snn", "ann relu-sigmoid", "ann gauss-gauss", "ann relu-sigmoid (not inverted)")


def fig11_spec(settings: TrainSettings, noises=NOISES):
    return figure_spec("fig11", settings, {"trainer": ["temporal", "ann"], "dataset": ["mnist"],
                                           "noise": list(noises), "hidden": [32]},
                       trainer_args={"ann": {"inverted": True}})


def _gauss(settings: TrainSettings, noise: float, runs: Path, seed: int, train: bool) -> dict:
    from experiments.ann_gauss import train_gauss_ann
    from models.ann import resolve_config

    cfg = resolve_config(dataset="mnist", hidden=32, noise=noise, epochs=settings.epochs, inverted=True, seed=seed)
    key = json.dumps({"config": asdict(cfg), "limit_train": settings.limit_train,
                      "limit_eval": settings.limit_eval}, sort_keys=True)
    folder = runs / "extra" / f"ann-gauss-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    path = folder / "metrics.json"
    if path.is_file():
        return json.loads(path.read_text())
    if not train:
        raise SnncError(f"no Gaussian-Gaussian ANN for noise {noise:g} with these settings in {folder}; run the "
                        f"command with --workers 1 (it trains in the command's own process)")
    res = train_gauss_ann(cfg, limit=settings.limit_train, eval_limit=settings.limit_eval)
    res["key"] = json.loads(key)
    write_outputs(folder, {"metrics.json": json.dumps(res, indent=2) + "\n"})
    return res


def collect_fig11(spec, runs: str | Path, out: str | Path, settings: TrainSettings, *, seed: int = 0,
                  workers: int = 1) -> dict:
    runs = Path(runs)
    ref_spec = figure_spec("fig3ref", settings, {"trainer": ["ann"], "dataset": ["mnist"],
                                                 "noise": spec.grid["noise"], "hidden": [32]})
    rows, sources = [], set()
    for eta in spec.grid["noise"]:
        p = {"dataset": "mnist", "noise": eta, "hidden": 32}
        for model, trainer in (("snn", "temporal"), ("ann relu-sigmoid", "ann")):
            trial = require(runs, spec, {"trainer": trainer, **p})
            m = json.loads((trial / "metrics.json").read_text())
            sources.add(str(m.get("data_source")))
            rows.append({"model": model, "inverted": True, "noise": float(eta), "test_mse": m["test_mse"],
                         "val_mse": m.get("val_mse"), "best_epoch": m.get("best_epoch"),
                         "source": f"trials/{trial.name}"})
        g = _gauss(settings, float(eta), runs, seed, workers > 0)
        rows.append({"model": "ann gauss-gauss", "inverted": True, "noise": float(eta), "test_mse": g["test_mse"],
                     "val_mse": g["val_mse"], "best_epoch": g["best_epoch"], "source": "extra/ann-gauss"})
        ref = finished(runs, ref_spec.config({"trainer": "ann", **p}))
        if ref is not None:
            m = json.loads((ref / "metrics.json").read_text())
            rows.append({"model": MODELS[3], "inverted": False, "noise": float(eta), "test_mse": m["test_mse"],
                         "val_mse": m.get("val_mse"), "best_epoch": m.get("best_epoch"),
                         "source": f"trials/{ref.name}"})
    fig = new_figure(5.5, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    for model, style in zip(MODELS, ("-o", "--s", "--^", ":x")):
        pts = [(r["noise"], r["test_mse"]) for r in rows if r["model"] == model]
        if pts:
            ax.plot(*zip(*pts), style, ms=4, label=model)
    ax.set_xlabel("noise eta (time units)")
    ax.set_ylabel("test MSE per pixel")
    ax.set_title("Fig. 11: inverted-brightness MNIST, hidden 32", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    mse = {(r["model"], r["noise"]): r["test_mse"] for r in rows}
    wins = [(eta, all(mse[("snn", eta)] < mse[(m, eta)] for m in MODELS[1:3])) for eta in spec.grid["noise"]]
    md = ["# Fig. 11: inverted-brightness MNIST, SNN (latency 1) vs ANNs (hidden 32)", "",
          settings_line(settings, "/".join(sorted(sources)), runs), "", *md_table(rows, FIELDS), "",
          f"Paper's claim: {CLAIM}.",
          f"Ours: the SNN has the lowest test MSE of the inverted-image models at {sum(w for _, w in wins)}/"
          f"{len(wins)} noise levels" + (f" (not at noise {', '.join(f'{e:g}' for e, w in wins if not w)})."
                                         if not all(w for _, w in wins) else ".")]
    paths = write_outputs(out, {"fig11.png": png_bytes(fig), "fig11.csv": csv_text(rows, FIELDS),
                                "fig11.md": "\n".join(md) + "\n"})
    return {"rows": rows, "paths": paths, "snn_wins": sum(w for _, w in wins), "n_noise": len(wins)}
