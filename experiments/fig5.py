"""Fig. 5 of Comsa et al. 2021: t-SNE (PCA init, perplexity 20) of the MNIST test embeddings of spiking
autoencoders (latency 1) per noise level and hidden size; the embedding is the hidden layer's spike times
(a silent neuron: latency + 2 time units).

Writes ``fig5.png`` (noise across, hidden down, points coloured by digit), ``fig5.csv`` (per model: the
silhouette score of the 2-D t-SNE points by digit label, and of the embeddings themselves; higher = clusters
further apart relative to their spread) and ``fig5.md`` with the paper's claim next to those scores.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.paper_common import (TrainSettings, csv_text, figure_spec, load_snn, load_split, md_table,
                                      new_figure, png_bytes, require, settings_line, snn_embedding, snn_layers,
                                      write_outputs)
from toolchain.errors import SnncError

NOISES = (0.0, 0.2, 0.4, 0.6, 0.8)
HIDDEN = (8, 16, 32)
PERPLEXITY = 20.0
FIELDS = ("noise", "hidden", "n_points", "perplexity", "silhouette_tsne", "silhouette_embedding",
          "hidden_spike_fraction", "trial")
CLAIM = "the relative distance between digit clusters decreases with higher noise and smaller embeddings"


def fig5_spec(settings: TrainSettings, noises=NOISES, hidden=HIDDEN):
    return figure_spec("fig5", settings, {"trainer": ["temporal"], "dataset": ["mnist"], "noise": list(noises),
                                          "hidden": list(hidden)})


def tsne_2d(features: np.ndarray, seed: int, perplexity: float = PERPLEXITY) -> np.ndarray | None:
    """2-D t-SNE of ``features`` (PCA initialisation, as the paper); None when every point is the same (e.g. no
    hidden neuron spikes: t-SNE's PCA step is undefined then)."""
    from sklearn.manifold import TSNE

    if features.shape[0] <= perplexity:
        raise SnncError(f"t-SNE with perplexity {perplexity:g} needs more than {perplexity:g} points, got "
                        f"{features.shape[0]}; raise --points (or --limit-eval)")
    if not np.all(np.isfinite(features)) or float(np.var(features, axis=0).sum()) == 0.0:
        return None
    return TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(features)


def _silhouette(x: np.ndarray, labels: np.ndarray) -> float | None:
    from sklearn.metrics import silhouette_score

    if x is None or float(np.var(x, axis=0).sum()) == 0.0 or not 1 < len(set(labels.tolist())) < len(labels):
        return None
    return float(silhouette_score(x, labels))


def collect_fig5(spec, runs: str | Path, out: str | Path, settings: TrainSettings, *, points: int = 1000,
                 seed: int = 0) -> dict:
    """t-SNE of each model's test embeddings (first ``points`` test images); write fig5.png/csv/md."""
    noises, hiddens = spec.grid["noise"], spec.grid["hidden"]
    test = load_split("mnist", "test", settings.limit_eval)
    n = min(points, len(test))
    images, labels = test.images[:n].astype(np.float64), test.labels[:n]
    fig = new_figure(2.2 * len(noises) + 0.4, 2.2 * len(hiddens) + 0.4)
    axes = fig.subplots(len(hiddens), len(noises), squeeze=False)
    rows = []
    for i, h in enumerate(hiddens):
        for j, eta in enumerate(noises):
            trial = require(runs, spec, {"trainer": "temporal", "dataset": "mnist", "noise": eta, "hidden": h})
            net = load_snn(trial)
            _, hid, _ = snn_layers(net, images, seed)
            emb = snn_embedding(net, hid)
            xy = tsne_2d(emb, seed)
            rows.append({"noise": float(eta), "hidden": int(h), "n_points": n, "perplexity": PERPLEXITY,
                         "silhouette_tsne": _silhouette(xy, labels), "silhouette_embedding": _silhouette(emb, labels),
                         "hidden_spike_fraction": float(np.isfinite(hid).mean()), "trial": trial.name})
            ax = axes[i, j]
            if xy is None:
                ax.text(0.5, 0.5, "all embeddings equal", ha="center", va="center", fontsize=7)
            else:
                ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=2, vmin=0, vmax=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"noise {eta:g}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"hidden {h}", fontsize=8)
    fig.suptitle(f"Fig. 5: t-SNE of SNN hidden spike times, {n} MNIST test images, perplexity 20", fontsize=9)
    fig.tight_layout()

    def trend(key_fixed, key_var, sign):
        """How many neighbouring pairs along key_var move the silhouette in the claimed direction."""
        ok = tot = 0
        for fixed in sorted({r[key_fixed] for r in rows}):
            s = [r["silhouette_tsne"] for r in sorted(rows, key=lambda r: r[key_var]) if r[key_fixed] == fixed]
            for a, b in zip(s, s[1:]):
                if a is not None and b is not None:
                    tot += 1
                    ok += (b - a) * sign > 0
        return ok, tot

    nz_ok, nz_tot = trend("hidden", "noise", -1)
    hd_ok, hd_tot = trend("noise", "hidden", +1)
    md = ["# Fig. 5: t-SNE of the SNN embeddings (hidden spike times, latency 1, MNIST)", "",
          settings_line(settings, test.source, runs), "", *md_table(rows, FIELDS[:-1]), "",
          "silhouette: sklearn silhouette score by digit label, in [-1, 1]; higher = digit clusters further apart "
          "relative to their spread (t-SNE coordinates and the raw embedding); '-' where every test image has the same "
          "embedding (no t-SNE possible, e.g. no hidden spike).", "",
          f"Paper's claim: {CLAIM}.",
          f"Ours (t-SNE silhouette): falls with more noise in {nz_ok}/{nz_tot} neighbouring pairs, rises with a "
          f"larger embedding in {hd_ok}/{hd_tot}."]
    paths = write_outputs(out, {"fig5.png": png_bytes(fig), "fig5.csv": csv_text(rows, FIELDS),
                                "fig5.md": "\n".join(md) + "\n"})
    return {"rows": rows, "paths": paths}
