"""Figures shared by the trainers and `snnc eval` (matplotlib Agg, no pyplot state, atomic writes)."""
from __future__ import annotations

import io
import os

import numpy as np

from toolchain.atomic import atomic_write_bytes


def save_reconstruction_png(originals: np.ndarray, reconstructions: np.ndarray, path: str | os.PathLike,
                            n: int = 10, title: str | None = None) -> None:
    """Write a 2 x n grid: originals (top row) over reconstructions (bottom row); pixels in [0, 1], (N, 784)."""
    atomic_write_bytes(path, reconstruction_png_bytes(originals, reconstructions, n=n, title=title))


def reconstruction_png_bytes(originals: np.ndarray, reconstructions: np.ndarray, n: int = 10,
                             title: str | None = None) -> bytes:
    """The PNG of ``save_reconstruction_png`` as bytes (for callers that write several files as one set)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    orig = np.asarray(originals, dtype=np.float64)
    rec = np.asarray(reconstructions, dtype=np.float64)
    if orig.shape != rec.shape or orig.ndim != 2:
        raise ValueError(f"originals {orig.shape} and reconstructions {rec.shape} must both be (N, pixels)")
    n = max(1, min(n, orig.shape[0]))
    side = int(round(np.sqrt(orig.shape[1])))
    if side * side != orig.shape[1]:
        raise ValueError(f"{orig.shape[1]} pixels is not a square image")
    fig = Figure(figsize=(1.1 * n, 2.5 if title else 2.3), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, n, squeeze=False)
    for j in range(n):
        for row, (data, label) in enumerate(((orig, "original"), (rec, "reconstruction"))):
            ax = axes[row, j]
            ax.imshow(np.clip(data[j], 0, 1).reshape(side, side), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
