"""Datasets: md5 and IDX checks, clear errors, official splits (when SNNC_DATA is set), bundled subset."""
from __future__ import annotations

import gzip
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import models.datasets as ds
from models.datasets import FILES, load_dataset, parse_idx, read_idx_file
from toolchain.errors import DataError

FULL = os.environ.get("SNNC_DATA", "").strip()
needs_full = pytest.mark.skipif(
    not (FULL and (Path(FULL) / "mnist").is_dir()),
    reason="SNNC_DATA is not set to a folder with the official files (e.g. SNNC_DATA=/work/shared/datasets)",
)


def _idx_images(n: int) -> bytes:
    return struct.pack(">IIII", 0x803, n, 28, 28) + bytes(range(256)) * (n * 784 // 256) + bytes(n * 784 % 256)


def test_parse_idx():
    imgs = parse_idx(_idx_images(3), "x")
    assert imgs.shape == (3, 784) and imgs.dtype == np.uint8
    labels = parse_idx(struct.pack(">II", 0x801, 4) + bytes([1, 2, 3, 9]), "x")
    np.testing.assert_array_equal(labels, [1, 2, 3, 9])
    with pytest.raises(DataError, match="truncated"):
        parse_idx(_idx_images(3)[:-10], "x")
    with pytest.raises(DataError, match="magic"):
        parse_idx(struct.pack(">II", 0x999, 4) + bytes(4), "x")
    with pytest.raises(DataError, match="28x28"):
        parse_idx(struct.pack(">IIII", 0x803, 1, 14, 56) + bytes(784), "x")


def test_md5_and_truncated_files(tmp_path):
    good = gzip.compress(_idx_images(2))
    path = tmp_path / "f.gz"
    path.write_bytes(good)
    md5 = ds.md5_file(path)
    assert read_idx_file(path, md5, download=False).shape == (2, 784)
    with pytest.raises(DataError, match="md5"):
        read_idx_file(path, "0" * 32, download=False)
    path.write_bytes(good[: len(good) // 2])  # truncated gz whose md5 we "expect"
    with pytest.raises(DataError, match="gzip"):
        read_idx_file(path, ds.md5_file(path), download=False)
    path.write_bytes(gzip.compress(_idx_images(2)[:-100]))  # valid gzip, truncated IDX
    with pytest.raises(DataError, match="truncated"):
        read_idx_file(path, ds.md5_file(path), download=False)


def test_corrupt_official_file_is_refused(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for fname, _ in FILES["mnist"].values():
        (folder / fname).write_bytes(gzip.compress(_idx_images(1)))
    with pytest.raises(DataError, match="md5") as err:
        load_dataset("mnist", "test", data_dir=tmp_path, download=False)
    assert str(folder / "t10k-images-idx3-ubyte.gz") in str(err.value)


def test_missing_files_name_path_url_and_env(tmp_path, monkeypatch):
    monkeypatch.delenv("SNNC_DATA", raising=False)
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", "train", data_dir=tmp_path, download=False)
    msg = str(err.value)
    assert str(tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz") in msg
    assert "SNNC_DATA" in msg and "--data-dir" in msg and ds.BASE_URLS["fashion-mnist"] in msg
    # offline download: an unreachable mirror gives the same clear error, and nothing is left behind
    monkeypatch.setitem(ds.BASE_URLS, "mnist", "http://127.0.0.1:9/mnist/")
    monkeypatch.setenv("SNNC_DATA", str(tmp_path))
    with pytest.raises(DataError) as err:
        load_dataset("mnist", "test")
    msg = str(err.value)
    assert "http://127.0.0.1:9/mnist/t10k-images-idx3-ubyte.gz" in msg and "SNNC_DATA" in msg
    assert str(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz") in msg
    assert not list(tmp_path.rglob("*.gz")) and not list(tmp_path.rglob("*.tmp"))
    with pytest.raises(DataError, match="no data folder"):
        monkeypatch.delenv("SNNC_DATA")
        load_dataset("mnist", "test", source="full")


def test_bad_arguments():
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("cifar", "train", source="bundled")
    with pytest.raises(DataError, match="unknown split"):
        load_dataset("mnist", "validation", source="bundled")
    with pytest.raises(DataError, match="limit"):
        load_dataset("mnist", "train", source="bundled", limit=0)


@pytest.mark.parametrize("name,n_train,n_test", [("mnist", 2000, 500), ("fashion-mnist", 1000, 300)])
def test_bundled_subset_without_snnc_data(monkeypatch, name, n_train, n_test):
    monkeypatch.delenv("SNNC_DATA", raising=False)
    parts = {s: load_dataset(name, s) for s in ("train", "val", "test")}
    assert {d.source for d in parts.values()} == {"bundled"}
    n_val = n_train // 10
    assert [len(parts[s]) for s in ("train", "val", "test")] == [n_train - n_val, n_val, n_test]
    for d in parts.values():
        assert d.images.dtype == np.float32 and d.images.shape[1] == 784 and d.labels.dtype == np.int64
        assert d.images.min() >= 0.0 and d.images.max() == 1.0
        assert set(np.unique(d.labels)) <= set(range(10))
    assert len(set(parts["train"].labels.tolist())) == 10
    lim = load_dataset(name, "val", limit=7)
    np.testing.assert_array_equal(lim.images, parts["val"].images[:7])


@needs_full
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_full_splits(name):
    train = load_dataset(name, "train")
    val = load_dataset(name, "val")
    test = load_dataset(name, "test")
    assert (len(train), len(val), len(test)) == (54_000, 6_000, 10_000)
    assert train.source == val.source == test.source == "full"
    assert train.images.dtype == np.float32 and train.images.shape == (54_000, 784)
    assert train.images.max() == 1.0 and train.images.min() == 0.0
    counts = np.bincount(np.concatenate([train.labels, val.labels]), minlength=10)
    if name == "mnist":
        assert counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
        assert np.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    else:
        assert counts.tolist() == [6000] * 10 and np.bincount(test.labels).tolist() == [1000] * 10
    # the bundled subset is the head of the official files, inside the train split
    bundled_train = load_dataset(name, "train", source="bundled")
    np.testing.assert_array_equal(bundled_train.images, train.images[: len(bundled_train)])
    bundled_test = load_dataset(name, "test", source="bundled")
    np.testing.assert_array_equal(bundled_test.labels, test.labels[: len(bundled_test)])
    assert len(load_dataset(name, "test", limit=123)) == 123


@needs_full
def test_download_from_mirror(tmp_path, monkeypatch):
    """Missing files are fetched from the mirror URL into the data folder and md5-checked (file:// mirror)."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for key in ("test_images", "test_labels"):
        shutil.copy(Path(FULL) / "mnist" / FILES["mnist"][key][0], mirror)
    monkeypatch.setitem(ds.BASE_URLS, "mnist", mirror.as_uri() + "/")
    target = tmp_path / "data"
    d = load_dataset("mnist", "test", data_dir=target, limit=5)
    assert len(d) == 5 and d.source == "full"
    assert sorted(p.name for p in (target / "mnist").iterdir()) == ["t10k-images-idx3-ubyte.gz",
                                                                    "t10k-labels-idx1-ubyte.gz"]


# ---- bad data folders and downloads (issue D, section 4) -----------------------------------------------------------

import http.server  # noqa: E402
import threading  # noqa: E402

from toolchain.cli import main  # noqa: E402


def test_gz_path_that_is_a_folder(tmp_path, capsys):
    folder = tmp_path / "mnist"
    (folder / "t10k-images-idx3-ubyte.gz").mkdir(parents=True)
    md5 = FILES["mnist"]["test_images"][1]
    with pytest.raises(DataError, match="is a folder") as err:
        load_dataset("mnist", "test", data_dir=tmp_path, download=False)
    assert md5 in str(err.value) and "SNNC_DATA" in str(err.value)
    from test_bad_inputs import small_net
    from toolchain.compiled_io import save_compiled
    from toolchain.compiler import compile_network
    compiled = tmp_path / "c.npz"
    save_compiled(compile_network(small_net()), compiled)
    rc = main(["run", str(compiled), "--target", "exact", "--dataset", "mnist", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "is a folder" in err and md5 in err, err


def test_data_dir_that_is_a_file(tmp_path):
    afile = tmp_path / "data"
    afile.write_text("x")
    with pytest.raises(DataError, match="is a file"):
        load_dataset("mnist", "test", data_dir=afile)
    assert afile.read_text() == "x"


def test_md5_mismatch_names_file_expected_md5_and_fix(tmp_path):
    path = tmp_path / "f.gz"
    path.write_bytes(gzip.compress(_idx_images(1))[:-7])
    with pytest.raises(DataError) as err:
        read_idx_file(path, "f" * 32, download=False)
    msg = str(err.value)
    assert str(path) in msg and "f" * 32 in msg and "delete" in msg and "SNNC_DATA" in msg


class _Truncating(http.server.BaseHTTPRequestHandler):
    """Announces 1000 bytes, sends 10 and closes: an interrupted download."""

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"\x1f\x8b" + b"x" * 8)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


def test_truncated_download_leaves_nothing(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Truncating)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/t10k-images-idx3-ubyte.gz"
        dest = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
        with pytest.raises(DataError, match="truncated after 10 bytes") as err:
            read_idx_file(dest, FILES["mnist"]["test_images"][1], url=url, timeout_s=10)
        assert url in str(err.value) and "nothing was saved" in str(err.value)
    finally:
        server.shutdown()
        server.server_close()
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
