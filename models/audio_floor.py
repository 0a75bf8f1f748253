"""The floor of dataset A for each fixed-image rule: the decoder fed the exact targets.

A perfect audiocoder outputs exactly its target spike map (the image model's hidden map of the class image, its
first T_h steps cycled over T); the decoder then draws the image that this floor measures (z-scored MSE against the
class image, mean over the 10 digits = the Table 1 score of dataset A when every test clip gets its target). The
rule that picks the class images sets this floor (models/audio_pairs.class_image_ids):

    python -m models.audio_floor --image-model RUN [--candidates 1,10,50] [--t-h 15] [--steps 30]

prints one JSON line: per rule, the class image ids, the floor with the trainer's target draw (seed + 3 of the
training seed 0) and the mean over ``--draws`` further draws. Needs MNIST ($SNNC_DATA or the bundled subset).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from toolchain.errors import SnncError


def floors(image_graph, mnist_images: np.ndarray, mnist_labels: np.ndarray, candidates: list[int], t_h: int = 15,
           steps: int = 30, draws: int = 8, seed: int = 0) -> dict:
    """{rule name: {"ids", "floor_trainer_draw", "floor_mean_draws"}} for nearest-mean and best-drawn with each K in
    ``candidates`` (dimensionless z-scored MSE; the trainer's draw: the sorted distinct ids, seed + 3)."""
    from models.audio_pairs import class_image_ids, drawn_floor

    if not candidates or min(candidates) < 1:
        raise SnncError(f"--candidates must be positive numbers of images, got {candidates}")
    if draws < 1:
        raise SnncError(f"--draws must be >= 1, got {draws}")
    rules = [("nearest-mean", "nearest-mean", 1)] + [(f"best-drawn-{k}", "best-drawn", k) for k in candidates]
    out = {}
    for name, rule, k in rules:
        ids = class_image_ids(mnist_images, mnist_labels, rule, k, lambda im: drawn_floor(image_graph, im, t_h, steps))
        u = np.unique(ids)
        out[name] = {"ids": [int(i) for i in ids],
                     "floor_trainer_draw": float(drawn_floor(image_graph, mnist_images[u], t_h, steps,
                                                             seeds=(seed + 3,)).mean()),
                     "floor_mean_draws": float(drawn_floor(image_graph, mnist_images[u], t_h, steps,
                                                           seeds=tuple(range(seed + 3, seed + 3 + draws))).mean())}
    return out


def main(argv: list[str] | None = None) -> int:
    from models.audio_trainer import load_image_model
    from models.datasets import load_dataset

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image-model", required=True, help="the image autoencoder (a `snnc train rate` run)")
    ap.add_argument("--candidates", default="10,50", help="K values of the best-drawn rule, comma-separated")
    ap.add_argument("--t-h", type=int, default=15, help="target steps of the hidden map (A: 15)")
    ap.add_argument("--steps", type=int, default=30, help="audiocoder steps T (30)")
    ap.add_argument("--draws", type=int, default=8, help="target draws averaged for floor_mean_draws (8)")
    ap.add_argument("--data-dir", default=None, help="folder holding mnist/ (default $SNNC_DATA)")
    a = ap.parse_args(argv)
    try:
        cand = [int(c) for c in a.candidates.split(",") if c.strip()]
    except ValueError:
        raise SnncError(f"--candidates must be comma-separated integers, got {a.candidates!r}") from None
    g, _ = load_image_model(a.image_model)
    m = load_dataset("mnist", "train", data_dir=a.data_dir)
    t0 = time.process_time()
    res = floors(g, m.images, m.labels, cand, a.t_h, a.steps, a.draws)
    print(json.dumps({"image_model": a.image_model, "t_h": a.t_h, "steps": a.steps, "floors": res,
                      "cpu_seconds": round(time.process_time() - t0, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
