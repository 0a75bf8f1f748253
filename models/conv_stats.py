"""Dead and bursting neurons per layer of the spiking conv autoencoder, and their plot over epochs.

A neuron is *dead* when it never spikes on the validation images (all its spike counts are 0); it is *bursting*
when its mean rate over them exceeds ``burst_rate`` spikes per step (default 0.5: spiking on more than half
the steps). Rates are spikes per step; fractions are of the layer's neurons.

``dead_batch`` is the authors' measure (jhuebotter/SpikingVAE, metrics.pct_active and the loss's "pct inactive"):
the fraction of neurons that never spike on one batch of ``batch`` images (the code's validation batch: 40), averaged
over the consecutive batches of the validation set. A neuron that fires on a few images only is dead on most
batches, so ``dead_batch`` >= ``dead``.
"""
from __future__ import annotations

import io

import numpy as np

DEFAULT_BURST_RATE = 0.5
AUTHORS_BATCH = 40


def silent_fraction(counts) -> float:
    """Fraction of neurons with no spike in ``counts`` (B, n) (one batch)."""
    c = np.asarray(counts)
    return float(np.mean(c.max(axis=0) == 0))


def layer_stats(counts: dict[str, np.ndarray], steps: int, burst_rate: float = DEFAULT_BURST_RATE,
                batch: int = AUTHORS_BATCH) -> dict:
    """counts {pop: (N, n) spike counts over ``steps`` steps} -> {pop: {"dead", "bursting", "active", "mean_rate",
    "dead_batch"}} (fractions of the population's neurons; mean_rate in spikes per neuron and step; dead_batch:
    mean over the consecutive batches of ``batch`` images of the fraction silent on the batch, a last partial
    batch ignored unless it is the only one)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    out = {}
    for name, c in counts.items():
        c = np.asarray(c, dtype=np.float64)
        rate = c.mean(axis=0) / steps
        dead = float(np.mean(c.max(axis=0) == 0))
        n_full = max(1, c.shape[0] // batch)
        dead_b = float(np.mean([silent_fraction(c[i * batch:(i + 1) * batch]) for i in range(n_full)]))
        out[name] = {"dead": dead, "active": 1.0 - dead, "bursting": float(np.mean(rate > burst_rate)),
                     "mean_rate": float(rate.mean()), "dead_batch": dead_b}
    return out


def stats_png_bytes(history: list[dict], title: str = "") -> bytes:
    """Dead and bursting fractions per layer over epochs (history entries carry "epoch" and "layers" as
    :func:`layer_stats` returns them) as a PNG; with entries' "latent_dead_per_batch" (fraction of latent neurons
    silent on each training batch) a third panel plots that over the batches."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    per_batch = [d for h in history for d in h.get("latent_dead_per_batch", [])]
    fig = Figure(figsize=(12 if per_batch else 8, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3 if per_batch else 2)
    ax_dead, ax_burst = axes[0], axes[1]
    if per_batch:
        axes[2].plot(np.arange(1, len(per_batch) + 1), per_batch, lw=0.8)
        axes[2].set_xlabel("training batch")
        axes[2].set_ylabel("latent silent on the batch")
        axes[2].set_ylim(-0.02, 1.02)
        axes[2].grid(alpha=0.3)
    epochs = [h["epoch"] for h in history]
    names = list(history[0]["layers"]) if history else []
    for name in names:
        ax_dead.plot(epochs, [h["layers"][name]["dead"] for h in history], marker="o", label=name)
        ax_burst.plot(epochs, [h["layers"][name]["bursting"] for h in history], marker="o", label=name)
    for ax, what in ((ax_dead, "dead (never spike)"), (ax_burst, "bursting")):
        ax.set_xticks(epochs)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"fraction {what}")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    if names:
        ax_dead.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
