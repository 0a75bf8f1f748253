"""Fig. 4 of Comsa et al. 2021: one MNIST test digit reconstructed by spiking autoencoders (hidden 32, latency 1)
trained at each noise level eta.

Writes ``fig4.png`` (row 1: the noisy input as the network sees it, 1 - t with no spike = 0; row 2: the
reconstruction), ``fig4.csv`` (per noise: the digit's MSE and the test MSE over the evaluated images, [0, 1]
pixel units, the authors' score) and ``fig4.md`` with the paper's claim next to our numbers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from toolchain.errors import SnncError
from experiments.paper_common import (TrainSettings, figure_spec, load_snn, load_split, md_table, new_figure,
                                      png_bytes, require, settings_line, snn_layers, write_outputs, csv_text)

NOISES = (0.0, 0.2, 0.4, 0.6, 0.8)
FIELDS = ("noise", "hidden", "digit_index", "digit_label", "digit_mse", "test_mse", "n_test", "trial")
CLAIM = ("reconstruction quality drops with more noise, yet even highly noisy digits are reconstructed "
         "relatively well")


def fig4_spec(settings: TrainSettings, noises=NOISES, hidden: int = 32, dataset: str = "mnist"):
    return figure_spec("fig4", settings, {"trainer": ["temporal"], "dataset": [dataset], "noise": list(noises),
                                          "hidden": [hidden]})


def collect_fig4(spec, runs: str | Path, out: str | Path, settings: TrainSettings, *, index: int = 0,
                 seed: int = 0) -> dict:
    """Evaluate each noise level's model on the test split; write fig4.png/csv/md into ``out``."""
    grid = spec.grid
    dataset, hidden = grid["dataset"][0], grid["hidden"][0]
    test = load_split(dataset, "test", settings.limit_eval)
    if not 0 <= index < len(test):
        raise SnncError(f"--index must lie in [0, {len(test)}), got {index}")
    rows, pics = [], []
    from models.encoding import decode, reconstruction_mse

    for eta in grid["noise"]:
        trial = require(runs, spec, {"trainer": "temporal", "dataset": dataset, "noise": eta, "hidden": hidden})
        net = load_snn(trial)
        x, _, t_out = snn_layers(net, test.images.astype(np.float64), seed)
        rec = decode(t_out, net.latency)
        one = test.images[index:index + 1].astype(np.float64)
        rows.append({"noise": float(eta), "hidden": hidden, "digit_index": index,
                     "digit_label": int(test.labels[index]),
                     "digit_mse": reconstruction_mse(t_out[index:index + 1], one, net.latency),
                     "test_mse": reconstruction_mse(t_out, test.images.astype(np.float64), net.latency),
                     "n_test": len(test), "trial": trial.name})
        pics.append((np.where(np.isfinite(x[index]), 1.0 - x[index], 0.0), rec[index]))
    fig = new_figure(1.3 * len(pics) + 0.6, 3.0)
    axes = fig.subplots(2, len(pics), squeeze=False)
    for j, ((noisy, rec), r) in enumerate(zip(pics, rows)):
        for i, (img, lab) in enumerate(((noisy, "input"), (rec, "output"))):
            ax = axes[i, j]
            ax.imshow(img.reshape(28, 28), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(lab, fontsize=8)
        axes[0, j].set_title(f"noise {r['noise']:g}", fontsize=8)
        axes[1, j].set_xlabel(f"MSE {r['digit_mse']:.3f}", fontsize=7)
    fig.suptitle(f"Fig. 4: {dataset} test digit {index}, SNN hidden {hidden}, latency 1", fontsize=9)
    fig.tight_layout()
    mses = [r["test_mse"] for r in rows]
    rising = all(b >= a for a, b in zip(mses, mses[1:]))
    md = ["# Fig. 4: one test digit reconstructed at each noise level (SNN, hidden "
          f"{hidden}, latency 1)", "", settings_line(settings, test.source, runs), "",
          *md_table(rows, FIELDS[:-1]), "",
          f"Paper's claim: {CLAIM}.",
          f"Ours: test MSE from {mses[0]:.4f} (noise {rows[0]['noise']:g}) to {mses[-1]:.4f} "
          f"(noise {rows[-1]['noise']:g}); " + ("rises monotonically with noise." if rising else
                                                "does not rise monotonically with noise (undertrained models?).")]
    paths = write_outputs(out, {"fig4.png": png_bytes(fig), "fig4.csv": csv_text(rows, FIELDS),
                                "fig4.md": "\n".join(md) + "\n"})
    return {"rows": rows, "paths": paths}
