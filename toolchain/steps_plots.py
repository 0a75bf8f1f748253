"""Plots of a steps (LIF) verification: spike rasters per population and output spike-count maps.

Files (written into the report folder by toolchain/cli_steps.py, through its staging folder):

- ``raster.png``: one sample; one panel per population (the Bernoulli input, then every layer). The float model's
  spikes are black dots; each target has its own marker, colour and a small vertical offset, so bit-identical
  targets (lava-fixed-lif and hw_sim-lif) stay visible side by side. x: time step (0 .. T-1), y: neuron.
- ``count_maps.png``: a few images from the chosen sample on; the image, the float model's output spike-count map
  (spikes per neuron over the T steps) and each target's, titled with that image's z-scored MSE against the image
  (toolchain.spike_metrics.zscore_mse, dimensionless; the metric mse_image of the report, per image). Only for
  outputs that are square images (e.g. 28x28); otherwise the file is not written.

matplotlib runs with the Agg backend (no display needed).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from toolchain.report import _MARKERS, DEFAULT_RASTER_NEURONS, _no_ticks, _save_fig
from toolchain.spike_metrics import zscore_mse

RASTER_PNG = "raster.png"
COUNT_MAPS_PNG = "count_maps.png"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_steps_raster(path: Path, inputs: np.ndarray, reference: Sequence[np.ndarray],
                      targets: Mapping[str, Sequence[np.ndarray]], populations: Sequence[str],
                      sample: int = 0, max_neurons: int = DEFAULT_RASTER_NEURONS) -> None:
    """Raster of one sample. ``inputs`` (T, n_in) 0/1; ``reference`` and every ``targets[name]``: one (T, n) 0/1
    train per population. Per layer the neurons shown are the first ``max_neurons`` that spike in the float model
    or any target (silent ones are dropped); for the input, the first ``max_neurons`` spiking pixels."""
    plt = _pyplot()
    panels = [("input", np.asarray(inputs), None)]
    panels += [(p, np.asarray(r), [np.asarray(t[k]) for t in targets.values()])
               for k, (p, r) in enumerate(zip(populations, reference))]
    names = list(targets)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.5), squeeze=False)
    for ax, (title, ref, tgts) in zip(axes[0], panels):
        active = ref.any(axis=0)
        for t in tgts or []:
            active |= t.any(axis=0)
        idx = np.nonzero(active)[0][:max_neurons]
        row = {int(j): r for r, j in enumerate(idx)}
        steps, neurons = np.nonzero(ref[:, idx])
        ax.plot(steps, neurons, "k.", ms=5, ls="none", label="input spikes" if tgts is None else "float")
        for c, (name, t) in enumerate(zip(names, tgts or [])):
            s, n = np.nonzero(t[:, idx])
            off = 0.18 * (c + 1)
            ax.plot(s, n + off, _MARKERS[c % len(_MARKERS)], ms=5, ls="none", color=colors[(c + 1) % len(colors)],
                    label=f"{name} (+{off:.2f})")
        n_active = int(active.sum())
        shown = f"{idx.size} of {n_active} spiking" if idx.size < n_active else f"{n_active} spiking"
        ax.set_title(f"{title} ({shown} of {ref.shape[1]}), sample {sample}", fontsize=9)
        ax.set_xlabel("time step")
        ax.set_ylabel("neuron (row of the spiking set)")
        ax.set_xlim(-0.5, ref.shape[0] - 0.5)
        if 0 < idx.size <= 20:
            ax.set_yticks(list(row.values()), [str(j) for j in row], fontsize=7)
        if idx.size:
            ax.legend(fontsize=7, loc="upper right")
        else:
            ax.text(0.5, 0.5, "no spikes", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    _save_fig(fig, path)


def plot_count_maps(path: Path, images: np.ndarray, reference_out: np.ndarray,
                    targets_out: Mapping[str, np.ndarray], first: int = 0) -> bool:
    """Images (n, n_px) in [0, 1], then the float model's and each target's output spike-count maps (n, T, n_px)
    trains summed over T, each titled with its z-scored MSE against the image; columns are samples ``first``,
    ``first + 1``, ... False (nothing written) when n_px is not a square number."""
    img = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    side = math.isqrt(img.shape[1])
    if side * side != img.shape[1]:
        return False
    plt = _pyplot()
    rows = [("float", np.asarray(reference_out).sum(axis=1))]
    rows += [(name, np.asarray(t).sum(axis=1)) for name, t in targets_out.items()]
    n = img.shape[0]
    fig, axes = plt.subplots(1 + len(rows), n, figsize=(1.6 * n + 0.6, 1.7 * (1 + len(rows))), squeeze=False)
    for c in range(n):
        axes[0][c].imshow(img[c].reshape(side, side), cmap="gray", vmin=0, vmax=1)
        axes[0][c].set_title(f"#{first + c}", fontsize=7)
    axes[0][0].set_ylabel("image", fontsize=8)
    for r, (name, counts) in enumerate(rows, start=1):
        for c in range(n):
            axes[r][c].imshow(counts[c].reshape(side, side), cmap="gray", vmin=0)
            axes[r][c].set_title(f"z-MSE {zscore_mse(counts[c:c + 1], img[c:c + 1]):.3f}", fontsize=6)
        axes[r][0].set_ylabel(f"{name}\ncounts", fontsize=7)
    _no_ticks(axes)
    fig.tight_layout()
    _save_fig(fig, path)
    return True


def steps_plot_writers(net, inputs: np.ndarray, images: np.ndarray | None,
                       target_trains: Mapping[str, Sequence[np.ndarray]], sample: int = 0,
                       n_images: int = 6) -> dict[str, Callable[[Path], None]]:
    """File name -> writer(path) of every plot of a verification (for toolchain.cli_steps.write_steps_folder).

    net: the steps graph or its compiled form; inputs: (N, T, n_in) 0/1 trains every target saw; images: (N, ...)
    pixels or None (no count maps); target_trains: name -> per-population (N, T, n) trains of that target. The
    float model is run here on the samples shown only (it is deterministic per sample)."""
    from targets.base import steps_graph
    from targets.lif_float import FloatStepsTarget

    graph = steps_graph(net)
    x = np.asarray(inputs)
    sample = min(max(int(sample), 0), x.shape[0] - 1)
    sel = np.arange(sample, min(sample + n_images, x.shape[0]))
    ref = FloatStepsTarget().run(graph, x[sel]).trains
    pops = [p for _, p in graph.chain()]
    shown = {n: t for n, t in target_trains.items() if n != "float"}
    writers: dict[str, Callable[[Path], None]] = {
        RASTER_PNG: lambda path: plot_steps_raster(path, x[sample], [r[0] for r in ref],
                                                   {n: [t[sample] for t in tr] for n, tr in shown.items()}, pops,
                                                   sample)}
    if images is not None:
        img = np.asarray(images, dtype=np.float64).reshape(x.shape[0], -1)
        side = math.isqrt(img.shape[1])
        if side * side == img.shape[1] and img.shape[1] == ref[-1].shape[2]:
            writers[COUNT_MAPS_PNG] = lambda path: plot_count_maps(
                path, img[sel], ref[-1], {n: tr[-1][sel] for n, tr in shown.items()}, sample)
    return writers
