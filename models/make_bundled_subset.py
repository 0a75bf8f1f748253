"""Regenerate the bundled dataset subsets in models/data/ from the official IDX files (deterministic).

    python models/make_bundled_subset.py --data-dir /path/with/mnist-and-fashion-mnist

Each ``<name>-subset.npz`` holds the first ``n_train`` images of the official training set (all inside the
54,000-image train split) and the first ``n_test`` images of the official test set, as uint8 (N, 784) plus uint8
labels (sizes in SUBSET_SIZES: Fashion-MNIST compresses worse, so it keeps fewer images to stay a few hundred KB).
Training and test images are kept apart.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.datasets import DATASETS, N_TRAIN, bundled_path, configured_dir, load_full_arrays  # noqa: E402
from toolchain.atomic import atomic_path  # noqa: E402

SUBSET_SIZES = {"mnist": (2000, 500), "fashion-mnist": (1000, 300)}  # (train, test) images


def make_subset(name: str, root: Path, n_train: int, n_test: int, out: Path) -> Path:
    """Write the subset npz for ``name`` to ``out`` atomically and return its path."""
    if not 0 < n_train <= N_TRAIN:
        raise ValueError(f"--train must be in 1..{N_TRAIN}")
    a = load_full_arrays(name, root, download=False)
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(
            f,
            train_images=a["train_images"][:n_train].astype(np.uint8),
            train_labels=a["train_labels"][:n_train].astype(np.uint8),
            test_images=a["test_images"][:n_test].astype(np.uint8),
            test_labels=a["test_labels"][:n_test].astype(np.uint8),
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, help="folder with mnist/ and fashion-mnist/ (default $SNNC_DATA)")
    args = p.parse_args(argv)
    root = configured_dir(args.data_dir)
    if root is None:
        p.error("pass --data-dir or set SNNC_DATA")
    for name in DATASETS:
        n_train, n_test = SUBSET_SIZES[name]
        out = make_subset(name, root, n_train, n_test, bundled_path(name))
        print(f"{out}: {out.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
