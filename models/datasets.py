"""MNIST and Fashion-MNIST: md5-checked IDX files from ``$SNNC_DATA`` (or ``data_dir``) or a bundled subset.

Splits follow Comsa et al. 2021: train = first 54,000 images of the official training set, val = its last
6,000, test = the official 10,000. Full data lives in ``<dir>/{mnist,fashion-mnist}/`` under the official gz
names; missing files are downloaded from the official mirrors into that folder (atomically, md5-checked).
The bundled subset (``models/data/<name>-subset.npz``, made by ``models/make_bundled_subset.py``) holds the
first 2,000 training and 500 test images (Fashion-MNIST: 1,000 and 300); with it, val = the last 10 % of the bundled training part.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import struct
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolchain.atomic import atomic_write_bytes
from toolchain.errors import DataError, SnncError

DATASETS = ("mnist", "fashion-mnist")
SPLITS = ("train", "val", "test")
SOURCES = ("auto", "full", "bundled")
N_TRAIN = 54_000
N_VAL = 6_000
N_PIXELS = 784
BUNDLED_DIR = Path(__file__).resolve().parent / "data"
BUNDLED_VAL_FRACTION = 0.1
ENV_VAR = "SNNC_DATA"

# Official gz files and their md5 (= /work/shared/datasets/MD5SUMS = upstream).
FILES: dict[str, dict[str, tuple[str, str]]] = {
    "mnist": {
        "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    },
    "fashion-mnist": {
        "train_images": ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        "train_labels": ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        "test_images": ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        "test_labels": ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    },
}
# Official download locations (MNIST: the mirror torchvision uses; Fashion-MNIST: Zalando's S3 site).
BASE_URLS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}
_IDX_MAGIC = {0x00000803: 3, 0x00000801: 1}  # uint8 images (N, 28, 28) and uint8 labels (N,)


@dataclass(frozen=True, eq=False)
class Dataset:
    """One split of a dataset. images float32 (N, 784) in [0, 1] (0 = background); labels int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray
    name: str
    split: str
    source: str  # "full" (official IDX files) or "bundled" (models/data subset)

    def __len__(self) -> int:
        return self.images.shape[0]


def configured_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The data root: ``data_dir`` if given, else ``$SNNC_DATA`` if set and non-empty, else None."""
    if data_dir:
        return Path(data_dir)
    env = os.environ.get(ENV_VAR, "").strip()
    return Path(env) if env else None


def md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_idx(raw: bytes, what: str) -> np.ndarray:
    """Parse decompressed IDX bytes (uint8 images or labels); a bad header or length is a DataError."""
    if len(raw) < 8:
        raise DataError(f"{what}: IDX data is only {len(raw)} bytes (truncated); delete the file to re-download it")
    magic, count = struct.unpack(">II", raw[:8])
    if magic not in _IDX_MAGIC:
        raise DataError(f"{what}: bad IDX magic 0x{magic:08x} (expected 0x00000803 or 0x00000801); "
                        f"the file is not an MNIST-style IDX file, replace it with the official one")
    ndim = _IDX_MAGIC[magic]
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if ndim == 3 and dims[1:] != (28, 28):
        raise DataError(f"{what}: images are {dims[1]}x{dims[2]}, expected 28x28; replace it with the official file")
    n_bytes = int(np.prod(dims))
    if len(raw) != header + n_bytes:
        raise DataError(f"{what}: IDX header says {dims} ({header + n_bytes} bytes) but the data has {len(raw)} "
                        f"bytes (truncated or corrupt); delete it to re-download it")
    arr = np.frombuffer(raw, dtype=np.uint8, count=n_bytes, offset=header)
    return arr.reshape(count, N_PIXELS) if ndim == 3 else arr.copy()


def _fix_redownload(path: Path) -> str:
    return (f"fix: delete {path} so that it is downloaded again, replace it with the official file, or point "
            f"{ENV_VAR} / --data-dir at another folder (leave both unset for the bundled subset)")


def _download(url: str, dest: Path, md5: str, timeout_s: float) -> None:
    """Fetch ``url`` into ``dest`` after checking its md5; a failed or truncated download writes nothing."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            data = resp.read()
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
        if isinstance(exc, http.client.IncompleteRead):
            reason = f"the download was truncated after {len(exc.partial)} bytes"
        raise DataError(
            f"dataset file {dest} is missing and downloading it from {url} failed ({reason}); nothing was saved. "
            f"Retry, put the official file there (md5 {md5}), or point {ENV_VAR} / --data-dir at a folder that "
            f"holds {dest.parent.name}/{dest.name} (or leave both unset to use the bundled subset)"
        ) from None
    got = hashlib.md5(data).hexdigest()
    if got != md5:
        raise DataError(f"downloaded {url} ({len(data)} bytes) has md5 {got}, expected {md5} (truncated or a wrong "
                        f"file); nothing was saved. Retry, or download it by hand into {dest}")
    try:
        atomic_write_bytes(dest, data)
    except SnncError as exc:
        raise DataError(f"cannot save the downloaded {dest.name} into {dest.parent}: {exc}. Point {ENV_VAR} / "
                        f"--data-dir at a writable folder") from None


def read_idx_file(path: Path, md5: str, *, url: str | None = None, download: bool = True,
                  timeout_s: float = 60.0) -> np.ndarray:
    """Read one official gz IDX file after checking its md5; download it first when missing (if allowed).

    A folder in the file's place, an unreadable, truncated or corrupt file raises DataError naming the file, the
    expected md5 and the fix."""
    if path.is_dir():
        raise DataError(f"dataset file {path} is a folder, expected the official gz file (md5 {md5}); "
                        f"{_fix_redownload(path)}")
    if not path.exists():
        anc = path.parent
        while not anc.exists() and anc != anc.parent:
            anc = anc.parent
        if not anc.is_dir():
            raise DataError(f"dataset folder {path.parent} cannot exist: {anc} is a file; point {ENV_VAR} / "
                            f"--data-dir at a folder (or leave both unset to use the bundled subset)")
        if not download or url is None:
            raise DataError(
                f"dataset file {path} is missing. Download it from {url} into {path.parent}, or point "
                f"{ENV_VAR} / --data-dir at a folder with {path.parent.name}/{path.name} "
                f"(or leave both unset to use the bundled subset)"
            )
        _download(url, path, md5, timeout_s)
    try:
        got = md5_file(path)
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read dataset file {path} ({exc.strerror or exc}); check its permissions, or "
                        f"{_fix_redownload(path)}") from None
    if got != md5:
        raise DataError(f"{path} ({len(data)} bytes) has md5 {got}, expected {md5} (corrupt, truncated or a "
                        f"different file); {_fix_redownload(path)}")
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a valid gzip file ({exc}; expected md5 {md5}); "
                        f"{_fix_redownload(path)}") from None
    return parse_idx(raw, str(path))


def load_full_arrays(name: str, root: Path, download: bool = True,
                     parts: tuple[str, ...] = ("train", "test")) -> dict[str, np.ndarray]:
    """Official arrays of ``name`` from ``root/name/``: ``{part}_images`` uint8 (N, 784), ``{part}_labels`` uint8."""
    if root.exists() and not root.is_dir():
        raise DataError(f"data folder {root} is a file; point {ENV_VAR} / --data-dir at a folder holding "
                        f"{name}/ (or leave both unset to use the bundled subset)")
    out = {}
    for part in parts:
        for kind in ("images", "labels"):
            fname, md5 = FILES[name][f"{part}_{kind}"]
            out[f"{part}_{kind}"] = read_idx_file(root / name / fname, md5, url=BASE_URLS[name] + fname,
                                                  download=download)
        if out[f"{part}_images"].shape[0] != out[f"{part}_labels"].shape[0]:
            raise DataError(f"{root / name}: {part} images and labels differ in count; replace the files")
    return out


def bundled_path(name: str) -> Path:
    return BUNDLED_DIR / f"{name}-subset.npz"


def _load_bundled(name: str) -> dict[str, np.ndarray]:
    path = bundled_path(name)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in ("train_images", "train_labels", "test_images", "test_labels")}
    except (OSError, KeyError, ValueError, EOFError) as exc:
        raise DataError(f"bundled subset {path} is missing or corrupt ({exc}); reinstall snnc or regenerate it "
                        f"with `python models/make_bundled_subset.py --data-dir <official data>`") from None


def load_dataset(name: str, split: str, data_dir: str | os.PathLike | None = None, source: str = "auto",
                 limit: int | None = None, download: bool = True) -> Dataset:
    """Load one split as float32 images in [0, 1] (N, 784) and int64 labels.

    source: "auto" = the full data when a folder is configured (``data_dir`` or ``$SNNC_DATA``), else the bundled
    subset; "full" requires a folder; "bundled" forces the subset. ``limit`` keeps the first N of the split.
    ``download``: fetch missing official files into the folder.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if source not in SOURCES:
        raise DataError(f"unknown data source {source!r}; choose one of {', '.join(SOURCES)}")
    if limit is not None and int(limit) < 1:
        raise DataError(f"limit must be a positive number of images, got {limit}")
    root = configured_dir(data_dir)
    if source == "full" and root is None:
        raise DataError(f"full {name} data requested but no data folder is configured; set {ENV_VAR} or pass "
                        f"--data-dir (a folder with {name}/ holding the official IDX gz files)")
    use_full = source == "full" or (source == "auto" and root is not None)
    if use_full:
        part = "test" if split == "test" else "train"
        arrays = load_full_arrays(name, root, download=download, parts=(part,))
        sections = {"train": slice(0, N_TRAIN), "val": slice(N_TRAIN, N_TRAIN + N_VAL)}
        n_train_total = arrays["train_images"].shape[0] if part == "train" else N_TRAIN + N_VAL
        if n_train_total != N_TRAIN + N_VAL:
            raise DataError(f"{root / name}: the training file has {n_train_total} images, expected 60000; "
                            f"replace it with the official file")
    else:
        arrays = _load_bundled(name)
        n_tr = arrays["train_images"].shape[0]
        n_val = int(round(n_tr * BUNDLED_VAL_FRACTION))
        sections = {"train": slice(0, n_tr - n_val), "val": slice(n_tr - n_val, n_tr)}
    if split == "test":
        images, labels = arrays["test_images"], arrays["test_labels"]
    else:
        images, labels = arrays["train_images"][sections[split]], arrays["train_labels"][sections[split]]
    if limit is not None:
        images, labels = images[: int(limit)], labels[: int(limit)]
    return Dataset(
        images=(images.astype(np.float32) / np.float32(255.0)).reshape(-1, N_PIXELS),
        labels=labels.astype(np.int64),
        name=name,
        split=split,
        source="full" if use_full else "bundled",
    )
