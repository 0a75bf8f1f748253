"""Fig. 6 of Comsa et al. 2021: interpolation between four test items in embedding space vs in pixel space
(SNN hidden 32, latency 1, noise 0; MNIST and Fashion-MNIST).

The four items are the first test images of four different classes, at the corners of a ``steps x steps`` grid.
Embedding space: the hidden spike times (silent = latency + 2) of the corners are interpolated bilinearly and
run through the decoder layer alone (exact alpha neurons); pixel space: the images themselves are interpolated.
A number for "digit-like": each grid image's MSE to its nearest training image (first 2,000 training images,
[0, 1] pixel units), averaged over the grid's inner (non-corner) images, and its ratio to the same at the grid's
corners (1 = the in-between images are as close to real items as the corners).
Writes ``fig6.png``, ``fig6.csv`` (one row per dataset x space x grid cell) and ``fig6.md``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.paper_common import (TrainSettings, csv_text, figure_spec, load_snn, load_split, md_table,
                                      new_figure, png_bytes, require, settings_line, snn_decode, snn_embedding,
                                      snn_layers, write_outputs)
from toolchain.errors import SnncError

DATASETS = ("mnist", "fashion-mnist")
FIELDS = ("dataset", "space", "row", "col", "nearest_train_mse", "mean_intensity", "trial")
CLAIM = "only interpolation in embedding space gives meaningful, digit-like intermediate images"
N_REFERENCE = 2000
MIN_SPREAD = 0.02  # pixel units: a decoded grid whose images vary less than this is treated as constant


def fig6_spec(settings: TrainSettings, datasets=DATASETS):
    return figure_spec("fig6", settings, {"trainer": ["temporal"], "dataset": list(datasets), "noise": [0.0],
                                          "hidden": [32]})


def corners(labels: np.ndarray) -> list[int]:
    """Indices of the first test items of four different classes."""
    picked, seen = [], set()
    for i, y in enumerate(labels.tolist()):
        if y not in seen:
            picked.append(i)
            seen.add(y)
        if len(picked) == 4:
            return picked
    raise SnncError(f"the test images hold fewer than 4 classes ({len(seen)}); raise --limit-eval")


def bilinear(c: np.ndarray, steps: int) -> np.ndarray:
    """(steps * steps, d) bilinear mix of corners c (4, d): top-left, top-right, bottom-left, bottom-right."""
    u = np.linspace(0.0, 1.0, steps)
    out = []
    for a in u:
        for b in u:
            out.append((1 - a) * ((1 - b) * c[0] + b * c[1]) + a * ((1 - b) * c[2] + b * c[3]))
    return np.array(out)


def nearest_mse(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each image's MSE per pixel to its nearest reference image."""
    d = (images ** 2).sum(1)[:, None] - 2 * images @ reference.T + (reference ** 2).sum(1)[None, :]
    return np.maximum(d.min(axis=1), 0.0) / images.shape[1]


def collect_fig6(spec, runs: str | Path, out: str | Path, settings: TrainSettings, *, steps: int = 7,
                 seed: int = 0) -> dict:
    if steps < 2:
        raise SnncError(f"--steps must be >= 2, got {steps}")
    datasets = spec.grid["dataset"]
    fig = new_figure(1.0 * 2 * steps + 0.6, 1.0 * steps * len(datasets) + 0.6)
    subfigs = fig.subfigures(len(datasets), 2, squeeze=False)
    rows, summary, sources = [], [], set()
    inner = np.ones(steps * steps, bool)
    inner[[0, steps - 1, steps * (steps - 1), steps * steps - 1]] = False
    for i, ds in enumerate(datasets):
        trial = require(runs, spec, {"trainer": "temporal", "dataset": ds, "noise": 0.0, "hidden": 32})
        net = load_snn(trial)
        test = load_split(ds, "test", settings.limit_eval)
        sources.add(test.source)
        ref = load_split(ds, "train", N_REFERENCE).images.astype(np.float64)
        idx = corners(test.labels)
        imgs = test.images[idx].astype(np.float64)
        emb = snn_embedding(net, snn_layers(net, imgs, seed, noise=0.0)[1])
        grids = {"embedding": snn_decode(net, bilinear(emb, steps)), "pixel": bilinear(imgs, steps)}
        for j, (space, g) in enumerate(grids.items()):
            near = nearest_mse(g, ref)
            for k in range(steps * steps):
                rows.append({"dataset": ds, "space": space, "row": k // steps, "col": k % steps,
                             "nearest_train_mse": float(near[k]), "mean_intensity": float(g[k].mean()),
                             "trial": trial.name})
            summary.append({"dataset": ds, "space": space, "inner_nearest_train_mse": float(near[inner].mean()),
                            "corner_nearest_train_mse": float(near[~inner].mean()),
                            "inner_over_corner": float(near[inner].mean() / max(near[~inner].mean(), 1e-12)),
                            "grid_spread": float(g.std(axis=0).mean()),
                            "corners": ",".join(map(str, idx))})
            sf = subfigs[i, j]
            axes = sf.subplots(steps, steps, squeeze=False)
            for k in range(steps * steps):
                ax = axes[k // steps, k % steps]
                ax.imshow(np.clip(g[k], 0, 1).reshape(28, 28), cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
            sf.suptitle(f"{ds}: {space} space", fontsize=9)
    md = ["# Fig. 6: interpolation in embedding space vs pixel space (SNN hidden 32, latency 1, noise 0)", "",
          settings_line(settings, "/".join(sorted(sources)), runs), "",
          *md_table(summary, ("dataset", "space", "inner_nearest_train_mse", "corner_nearest_train_mse",
                               "inner_over_corner", "grid_spread", "corners")),
          "", "nearest_train_mse: MSE per pixel of a grid image to its nearest of the first "
          f"{N_REFERENCE} training images (lower = closer to a real item); inner = the {int(inner.sum())} "
          "non-corner images; inner_over_corner: how much further from real items the in-between images are than the "
          "grid's own corners (1 = as close as the corners; it discounts the reconstruction error of the "
          "embedding grid's decoded corners); grid_spread: mean over pixels of the standard deviation across the "
          f"grid's images (below {MIN_SPREAD:g} the decoded images barely differ and the ratio says nothing). "
          "MSE favours blurry averages, so this is a rough measure: see the figure.", "", f"Paper's claim: {CLAIM}."]
    for ds in datasets:
        e = next(s for s in summary if s["dataset"] == ds and s["space"] == "embedding")
        p = next(s for s in summary if s["dataset"] == ds and s["space"] == "pixel")
        verdict = ("the decoded images barely differ (the decoder ignores the embedding): no evidence."
                   if e["grid_spread"] < MIN_SPREAD else
                   "embedding interpolations stay closer to real items, relative to their corners."
                   if e["inner_over_corner"] < p["inner_over_corner"] else "NOT closer to real items by this measure.")
        md.append(f"Ours, {ds}: inner/corner {e['inner_over_corner']:.3f} (embedding) vs "
                  f"{p['inner_over_corner']:.3f} (pixel), embedding grid spread {e['grid_spread']:.3f}: {verdict}")
    paths = write_outputs(out, {"fig6.png": png_bytes(fig, dpi=70), "fig6.csv": csv_text(rows, FIELDS),
                                "fig6.md": "\n".join(md) + "\n"})
    return {"rows": rows, "summary": summary, "paths": paths}
