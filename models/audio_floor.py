"""The floors of datasets A and B: the decoder fed the exact targets (a perfect audiocoder).

A perfect audiocoder outputs exactly its target spike map (the image model's hidden map of the class image, its
first T_h steps cycled over T); the decoder then draws the image that this floor measures (z-scored MSE against the
class image, mean over the 10 digits = the Table 1 score of dataset A when every test clip gets its target). The
rule that picks the class images sets this floor (models/audio_pairs.class_image_ids):

    python -m models.audio_floor --image-model RUN [--candidates 1,10,50] [--t-h 15] [--steps 30] [--pairing A,B]

prints one JSON line: per rule, the class image ids, the floor with the trainer's target draw (seed + 3 of the
training seed 0) and the mean over ``--draws`` further draws. Needs MNIST ($SNNC_DATA or the bundled subset).

Dataset B (``--pairing B``, T_h 10 unless ``--t-h-b``): every FSDD training clip is paired with its own random MNIST
image of its digit (models/audio_pairs.pair, seed 0 as the trainer; only the clip labels are needed, no wav is
read), and a test clip is scored against the closest image of its digit's pool. A perfect audiocoder reproduces the
target map of a pool image; the decoder fed that map is scored against the pool (the trainer's target draw):

- ``floor_mean``: mean over the 2,700 pool images (a test clip that gets the map of a random pool image of its
  digit, i.e. the audiocoder's training targets reproduced exactly);
- ``floor_best``: mean over the digits of the best pool image's score (a coder that always outputs, per digit, the
  map of the pool image the decoder draws best: the lowest floor of any output that is one of the targets).
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


def floors_b(image_graph, mnist_images: np.ndarray, mnist_labels: np.ndarray, clip_labels: np.ndarray,
             t_h: int = 10, steps: int = 30, seed: int = 0) -> dict:
    """Dataset B's floors (dimensionless z-scored MSE, see the module text): ``clip_labels`` (N,) the training clips'
    digits in load order (models/fsdd.split_labels("train")); pairing and target draw as the trainer with ``seed``
    (pairing seed, targets seed + 3). Returns {"floor_mean", "floor_best", "floor_mean_per_digit",
    "floor_best_per_digit", "n_pool"}."""
    from models.audio_metrics import per_clip_pool
    from models.audio_model import decode_trains, decoder_of
    from models.audio_pairs import cycled, hidden_targets, pair

    p = pair("B", np.asarray(clip_labels, np.int64), mnist_images, mnist_labels, seed)
    uniq, inv = np.unique(p.image_ids, return_inverse=True)
    hid = hidden_targets(image_graph, mnist_images[uniq], t_h, seed + 3)
    dec_w, dec_leak, dec_vth = decoder_of(image_graph)
    gen = decode_trains(cycled(hid, steps).transpose(1, 0, 2), dec_w, dec_leak, dec_vth)
    s = per_clip_pool(gen, mnist_labels[uniq], p.pool)[inv.reshape(-1)]   # per training clip (its image's score)
    labels = np.asarray(clip_labels)
    mean_d = [float(s[labels == d].mean()) for d in range(10)]
    best_d = [float(s[labels == d].min()) for d in range(10)]
    return {"floor_mean": float(s.mean()), "floor_best": float(np.mean(best_d)), "floor_mean_per_digit": mean_d,
            "floor_best_per_digit": best_d, "n_pool": int(uniq.size)}


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
    ap.add_argument("--pairing", default="A", help="datasets to measure: A, B or A,B (default A)")
    ap.add_argument("--t-h-b", type=int, default=10, help="target steps of dataset B (10, the Table 1 footnote)")
    a = ap.parse_args(argv)
    try:
        cand = [int(c) for c in a.candidates.split(",") if c.strip()]
    except ValueError:
        raise SnncError(f"--candidates must be comma-separated integers, got {a.candidates!r}") from None
    kinds = [k.strip().upper() for k in a.pairing.split(",") if k.strip()]
    if not kinds or any(k not in ("A", "B") for k in kinds):
        raise SnncError(f"--pairing must be A, B or A,B, got {a.pairing!r}")
    g, _ = load_image_model(a.image_model)
    m = load_dataset("mnist", "train", data_dir=a.data_dir)
    t0 = time.process_time()
    out = {"image_model": a.image_model, "t_h": a.t_h, "steps": a.steps}
    if "A" in kinds:
        out["floors"] = floors(g, m.images, m.labels, cand, a.t_h, a.steps, a.draws)
    if "B" in kinds:
        from models.fsdd import split_labels

        out["t_h_b"] = a.t_h_b
        out["floors_b"] = floors_b(g, m.images, m.labels, split_labels("train"), a.t_h_b, a.steps)
    out["cpu_seconds"] = round(time.process_time() - t0, 1)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
