"""Fig. 7 of Comsa et al. 2021: accuracy of an RBF-kernel SVM classifying MNIST digits from the embeddings of
spiking (latency 1) and ANN autoencoders, per noise level and hidden size, against the SVM on the images.

Each model's SVM (sklearn ``SVC(kernel="rbf")``, C = 1, gamma = "scale") is fitted on the embeddings of the first
``--svm-train`` training images and scored on the test images, both encoded with the model's training noise
(SNN embedding: hidden spike times, silent = latency + 2; ANN: the ReLU encoder's activations). The baseline
("raw") is the same SVM on the pixels the autoencoders see at that noise level (1 - t of the noisy latency code,
no spike = 0); at noise 0 it is the original set. Writes ``fig7.png``, ``fig7.csv``, ``fig7.md``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.paper_common import (TrainSettings, ann_embedding, csv_text, figure_spec, load_ann, load_snn,
                                      load_split, md_table, new_figure, png_bytes, require, settings_line,
                                      snn_embedding, snn_layers, write_outputs)

NOISES = (0.0, 0.2, 0.4, 0.6, 0.8)
HIDDEN = (8, 16, 32)
FIELDS = ("model", "hidden", "noise", "accuracy", "n_svm_train", "n_test", "trial")
CLAIM = ("in the noisier conditions, embeddings of size >= 16 give a higher SVM accuracy than the original "
         "space; SNN and ANN similar")
HIGH_NOISE = 0.6


def fig7_spec(settings: TrainSettings, noises=NOISES, hidden=HIDDEN):
    return figure_spec("fig7", settings, {"trainer": ["temporal", "ann"], "dataset": ["mnist"],
                                          "noise": list(noises), "hidden": list(hidden)})


def svm_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """Test accuracy (fraction) of an RBF SVM fitted on (x_train, y_train)."""
    from sklearn.svm import SVC

    return float(SVC(kernel="rbf", C=1.0, gamma="scale").fit(x_train, y_train).score(x_test, y_test))


def _raw_pixels(images01: np.ndarray, noise: float, seed: int) -> np.ndarray:
    from models.encoding import latency_encode

    t = latency_encode(images01, noise=noise, noise_mean=1.0, rng=np.random.default_rng(seed))
    return np.where(np.isfinite(t), 1.0 - t, 0.0)


def collect_fig7(spec, runs: str | Path, out: str | Path, settings: TrainSettings, *, svm_train: int = 2000,
                 seed: int = 0) -> dict:
    """SVM accuracies for every model of the grid and the raw baseline; write fig7.png/csv/md."""
    noises, hiddens = spec.grid["noise"], spec.grid["hidden"]
    train = load_split("mnist", "train", svm_train)
    test = load_split("mnist", "test", settings.limit_eval)
    xtr, xte = train.images.astype(np.float64), test.images.astype(np.float64)
    rows = []
    for eta in noises:
        rows.append({"model": "raw", "hidden": 784, "noise": float(eta),
                     "accuracy": svm_accuracy(_raw_pixels(xtr, eta, seed), train.labels,
                                              _raw_pixels(xte, eta, seed + 1), test.labels),
                     "n_svm_train": len(train), "n_test": len(test), "trial": ""})
        for h in hiddens:
            p = {"dataset": "mnist", "noise": eta, "hidden": h}
            trial = require(runs, spec, {"trainer": "temporal", **p})
            net = load_snn(trial)
            ftr = snn_embedding(net, snn_layers(net, xtr, seed)[1])
            fte = snn_embedding(net, snn_layers(net, xte, seed + 1)[1])
            rows.append({"model": "snn", "hidden": int(h), "noise": float(eta),
                         "accuracy": svm_accuracy(ftr, train.labels, fte, test.labels),
                         "n_svm_train": len(train), "n_test": len(test), "trial": trial.name})
            trial = require(runs, spec, {"trainer": "ann", **p})
            model, cfg = load_ann(trial)
            rows.append({"model": "ann", "hidden": int(h), "noise": float(eta),
                         "accuracy": svm_accuracy(ann_embedding(model, cfg, xtr, seed), train.labels,
                                                  ann_embedding(model, cfg, xte, seed + 1), test.labels),
                         "n_svm_train": len(train), "n_test": len(test), "trial": trial.name})
    fig = new_figure(5.5, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    colours = {8: "tab:blue", 16: "tab:orange", 32: "tab:green"}
    for m, style in (("snn", "-"), ("ann", "--")):
        for h in hiddens:
            pts = [(r["noise"], r["accuracy"]) for r in rows if r["model"] == m and r["hidden"] == h]
            ax.plot(*zip(*pts), style, marker="o", ms=3, color=colours.get(h), label=f"{m} {h}")
    ax.plot(*zip(*[(r["noise"], r["accuracy"]) for r in rows if r["model"] == "raw"]), ":", color="k", marker="s",
            ms=3, label="original space")
    ax.set_xlabel("noise eta (time units)")
    ax.set_ylabel("SVM test accuracy")
    ax.set_title("Fig. 7: RBF-SVM on embeddings (MNIST)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()

    acc = {(r["model"], r["hidden"], r["noise"]): r["accuracy"] for r in rows}
    high = [n for n in noises if n >= HIGH_NOISE]
    checks = [(m, h, n, acc[(m, h, n)] > acc[("raw", 784, n)]) for n in high for h in hiddens if h >= 16
              for m in ("snn", "ann")]
    wins = sum(c[3] for c in checks)
    diffs = [acc[("snn", h, n)] - acc[("ann", h, n)] for n in noises for h in hiddens]
    md = ["# Fig. 7: RBF-SVM accuracy on the embeddings vs the original space (MNIST)", "",
          settings_line(settings, test.source, runs) + f" SVM fitted on {len(train)} training images, "
          f"scored on {len(test)} test images.", "", *md_table(rows, FIELDS[:-1]), "",
          f"Paper's claim: {CLAIM}.",
          (f"Ours: at noise >= {HIGH_NOISE:g}, {wins}/{len(checks)} (model, hidden >= 16, noise) conditions beat "
           f"the original space" if checks else f"Ours: no noise level >= {HIGH_NOISE:g} in this run")
          + f"; SNN - ANN accuracy: mean {np.mean(diffs):+.3f}, range {min(diffs):+.3f} to {max(diffs):+.3f}."]
    paths = write_outputs(out, {"fig7.png": png_bytes(fig), "fig7.csv": csv_text(rows, FIELDS),
                                "fig7.md": "\n".join(md) + "\n"})
    return {"rows": rows, "paths": paths, "high_noise_wins": wins, "high_noise_checks": len(checks)}
