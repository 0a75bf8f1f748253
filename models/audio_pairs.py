"""Pairing spoken digits with MNIST images (Roy et al. 2019, section 4.2.1) and the audiocoder's targets.

- Dataset A: every recording of digit d is paired with ONE image of d: here the MNIST training image of d closest
  (z-scored MSE) to the mean of the first 1,000 training images of d (the paper picked them by hand); option
  ``best-drawn``: of the K images nearest that mean, the one the image autoencoder draws best from its own map.
- Dataset B: every training recording is paired with its own random MNIST training image of its digit (seeded).
  Test recordings are scored against the closest of the images paired with that digit's training recordings.

Targets: each paired image is Bernoulli-coded (T_img = the image model's steps, p = its p_scale) once, seeded,
and run through the image autoencoder's first layer; the first ``t_h`` steps of that hidden spike map
(n_code x t_h) are the target, shown repeatedly over the audiocoder's T steps (``target[t] = hid[t mod t_h]``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from models.rate_metrics import zscore_rows
from toolchain.errors import SnncError

PAIRINGS = ("A", "B")
CLASS_IMAGE_RULES = ("nearest-mean", "best-drawn")


@dataclass(frozen=True, eq=False)
class Pairing:
    """images (N_train_clips, 784) paired with the training clips (A: the class image repeated); class_images
    (10, 784): A's fixed image per digit; pool[d]: the images that test clips of digit d are scored against
    (A: [class image]; B: every image paired with a training clip of d)."""

    kind: str
    images: np.ndarray
    class_images: np.ndarray
    pool: tuple[np.ndarray, ...]
    image_ids: np.ndarray
    class_ids: np.ndarray


def class_image_ids(mnist_images: np.ndarray, mnist_labels: np.ndarray, rule: str = "nearest-mean",
                    candidates: int = 50, drawn_floor: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """(10,) MNIST indices of the fixed image per digit (dataset A; B's class images for the nearest-class score).

    - ``nearest-mean`` (default): the training image of d closest (z-scored MSE) to the mean of the first 1,000
      training images of d;
    - ``best-drawn``: among the ``candidates`` images nearest that mean, the one the image autoencoder draws best
      from its own hidden spike map: lowest ``drawn_floor(images)`` (N,) (models.audio_pairs.drawn_floor: the
      z-scored MSE of the decoder fed the image's cycled target map, averaged over a few input draws)."""
    if rule not in CLASS_IMAGE_RULES:
        raise SnncError(f"unknown --class-image rule {rule!r}; choose {' or '.join(CLASS_IMAGE_RULES)}")
    if rule == "best-drawn" and (drawn_floor is None or candidates < 1):
        raise SnncError("--class-image best-drawn needs the image model and --class-candidates >= 1")
    ids_out = np.zeros(10, np.int64)
    for d in range(10):
        ids = np.flatnonzero(mnist_labels == d)
        if ids.size == 0:
            raise SnncError(f"the image set has no digit {d}; use MNIST (all ten digits)")
        z = zscore_rows(mnist_images[ids])
        mean = z[:1000].mean(axis=0)
        order = np.argsort(((z - mean) ** 2).mean(axis=1), kind="stable")
        if rule == "nearest-mean":
            ids_out[d] = ids[order[0]]
        else:
            cand = ids[order[:candidates]]
            ids_out[d] = cand[int(np.argmin(drawn_floor(mnist_images[cand])))]
    return ids_out


def pair(kind: str, clip_labels: np.ndarray, mnist_images: np.ndarray, mnist_labels: np.ndarray,
         seed: int, class_ids: np.ndarray | None = None) -> Pairing:
    """Pair training clips (labels (N,)) with MNIST training images (float (M, 784) in [0, 1]). ``class_ids``: the
    fixed image per digit (default: :func:`class_image_ids` with the nearest-mean rule)."""
    if kind not in PAIRINGS:
        raise SnncError(f"unknown pairing {kind!r}; choose --pairing A (one image per digit) or B (one per clip)")
    if class_ids is None:
        class_ids = class_image_ids(mnist_images, mnist_labels)
    class_ids = np.asarray(class_ids, np.int64)
    if class_ids.shape != (10,) or np.any(mnist_labels[class_ids] != np.arange(10)):
        raise SnncError("class image ids must name one MNIST training image of each digit 0-9 in order; retrain the "
                        "audiocoder (its metadata is inconsistent with this MNIST set)")
    class_images = mnist_images[class_ids]
    if kind == "A":
        ids = class_ids[clip_labels]
        pool = tuple(class_images[d:d + 1] for d in range(10))
    else:
        rng = np.random.default_rng(seed)
        ids = np.array([rng.choice(np.flatnonzero(mnist_labels == d)) for d in clip_labels], np.int64)
        pool = tuple(mnist_images[ids[clip_labels == d]] for d in range(10))
    return Pairing(kind, mnist_images[ids], class_images, pool, ids, class_ids)


def hidden_targets(image_graph, images: np.ndarray, t_h: int, seed: int) -> np.ndarray:
    """(N, t_h, n_code) uint8: the image model's first-layer spikes for each image (Bernoulli-coded once with the
    image model's T and p_scale, seeded), first t_h steps."""
    from models.rate_encoding import bernoulli_encode
    from models.rate_model import forward_spikes

    meta = image_graph.metadata
    steps, p_scale = int(meta.get("steps", 15)), float(meta.get("p_scale", 0.3))
    if not 1 <= t_h <= steps:
        raise SnncError(f"--t-h must lie in 1..{steps} (the image model's steps), got {t_h}")
    x = bernoulli_encode(images, steps, p_scale, np.random.default_rng(seed))
    return forward_spikes(image_graph, x)[0][:, :t_h]


def drawn_floor(image_graph, images: np.ndarray, t_h: int, steps: int, seeds=(100, 101, 102, 103)) -> np.ndarray:
    """(N,) how well the image autoencoder draws each image from its own target map: the z-scored MSE between the
    image and the decoder's output spike counts when the decoder is fed the cycled hidden map (``t_h`` steps shown
    over ``steps``), i.e. the floor of a perfect audiocoder for that image; mean over one Bernoulli draw per seed."""
    from models.audio_metrics import per_clip_paired
    from models.audio_model import decode_trains, decoder_of

    dec_w, dec_leak, dec_vth = decoder_of(image_graph)
    out = np.zeros(images.shape[0])
    for s in seeds:
        hid = hidden_targets(image_graph, images, t_h, s)
        out += per_clip_paired(decode_trains(cycled(hid, steps).transpose(1, 0, 2), dec_w, dec_leak, dec_vth), images)
    return out / len(seeds)


def cycled(hid: np.ndarray, steps: int) -> np.ndarray:
    """(steps, N, n_code) uint8 target over the audiocoder's steps: hid[:, t mod t_h]."""
    t_h = hid.shape[1]
    return np.ascontiguousarray(hid[:, np.arange(steps) % t_h].transpose(1, 0, 2))
