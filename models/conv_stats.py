"""Dead and bursting neurons per layer of the spiking conv autoencoder, and their plot over epochs.

A neuron is *dead* when it never spikes on the validation batch (all its spike counts are 0); it is *bursting*
when its mean rate over that batch exceeds ``burst_rate`` spikes per step (default 0.5: spiking on more than half
the steps). Rates are spikes per step; fractions are of the layer's neurons.
"""
from __future__ import annotations

import io

import numpy as np

DEFAULT_BURST_RATE = 0.5


def layer_stats(counts: dict[str, np.ndarray], steps: int, burst_rate: float = DEFAULT_BURST_RATE) -> dict:
    """counts {pop: (N, n) spike counts over ``steps`` steps} -> {pop: {"dead", "bursting", "active", "mean_rate"}}
    (fractions of the population's neurons; mean_rate in spikes per neuron and step)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    out = {}
    for name, c in counts.items():
        c = np.asarray(c, dtype=np.float64)
        rate = c.mean(axis=0) / steps
        dead = float(np.mean(c.max(axis=0) == 0))
        out[name] = {"dead": dead, "active": 1.0 - dead, "bursting": float(np.mean(rate > burst_rate)),
                     "mean_rate": float(rate.mean())}
    return out


def stats_png_bytes(history: list[dict], title: str = "") -> bytes:
    """Dead and bursting fractions per layer over epochs (history entries carry "epoch" and "layers" as
    :func:`layer_stats` returns them) as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax_dead, ax_burst = fig.subplots(1, 2)
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
