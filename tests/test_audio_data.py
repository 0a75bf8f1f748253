"""FSDD reader (md5 checks, bad wavs) and Lyon cochleagram features (shapes, normalisation, window, cache)."""
from __future__ import annotations

import os
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from models import fsdd
from models.cochleagram import FeatureSpec, clip_features, cochleagram, load_features
from toolchain.errors import DataError, SnncError

SHARED = Path(os.environ.get("SNNC_DATA", "").strip() or "/work/shared/datasets")
needs_fsdd = pytest.mark.skipif(not (SHARED / "fsdd" / "recordings").is_dir(),
                                reason="FSDD not found (set SNNC_DATA to a folder holding fsdd/)")


def write_wav(path: Path, samples, rate: int = 8000, channels: int = 1, width: int = 2) -> Path:
    a = np.asarray(samples)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        if width == 2:
            w.writeframes(a.astype("<i2").tobytes())
        else:
            w.writeframes(a.astype(np.uint8).tobytes())
    return path


def speech_like(seconds: float = 0.4, rate: int = 8000, amp: float = 8000.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    env = np.sin(np.pi * t / t[-1]) ** 2
    return (amp * env * (np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 1250 * t))).astype(np.int16)


def test_read_good_wav(tmp_path):
    p = write_wav(tmp_path / "ok.wav", speech_like())
    x, sr = fsdd.read_wav(p)
    assert sr == 8000 and x.dtype == np.float64 and x.shape == (3200,) and np.abs(x).max() < 1


@pytest.mark.parametrize("kind, match", [
    ("8bit", "8-bit"), ("stereo", "stereo"), ("empty", "empty"), ("clipped", "clipped"), ("rate", "16000 Hz"),
    ("silent", "silent"), ("notwav", "not a PCM wav"), ("missing", "does not exist"), ("long", "longer than")])
def test_bad_wavs(tmp_path, kind, match):
    p = tmp_path / f"{kind}.wav"
    if kind == "8bit":
        write_wav(p, np.full(800, 128), width=1)
    elif kind == "stereo":
        write_wav(p, np.repeat(speech_like(), 2), channels=2)
    elif kind == "empty":
        write_wav(p, np.zeros(0))
    elif kind == "clipped":
        s = speech_like().astype(np.int32) * 8
        write_wav(p, np.clip(s, -32768, 32767))
    elif kind == "rate":
        write_wav(p, speech_like(rate=16000), rate=16000)
    elif kind == "silent":
        write_wav(p, np.zeros(800))
    elif kind == "notwav":
        p.write_bytes(b"this is not audio at all")
    elif kind == "long":
        write_wav(p, speech_like(seconds=2.0))
    with pytest.raises(DataError, match=match):
        fsdd.read_wav(p, max_seconds=1.2)


def test_single_full_scale_peak_is_not_clipping(tmp_path):
    s = speech_like()
    s[100] = 32767  # FSDD holds a few such single peaks (6_jackson_23 ...); only runs of full-scale samples clip
    fsdd.read_wav(write_wav(tmp_path / "peak.wav", s))


def test_too_long_clip_cut_or_refused(tmp_path):
    spec = FeatureSpec(frames=500)  # 0.4 s window at 12.5 kHz
    p = write_wav(tmp_path / "long.wav", speech_like(seconds=0.6))
    with pytest.raises(DataError, match="--cut"):
        clip_features(p, spec)
    f = clip_features(p, spec, cut=True)
    assert f.shape == (500 * 39,) and f.max() == pytest.approx(1.0, abs=1e-3)


def test_cochleagram_shapes_and_normalisation():
    s = speech_like().astype(np.float64) / 32768
    co = cochleagram(s, FeatureSpec(rate=12500))
    assert co.shape == (500, 39)   # 3200 samples * 25/16 / decimation 10
    assert co.max() == 1.0 and co.min() >= 0
    co8 = cochleagram(s, FeatureSpec(rate=8000))
    assert co8.shape == (320, 32)
    assert FeatureSpec().n_inputs == 58_500 and FeatureSpec(rate=8000).n_inputs == 48_000
    assert FeatureSpec().window_seconds == pytest.approx(1.2)


def test_feature_spec_errors():
    with pytest.raises(SnncError, match="audio-rate"):
        FeatureSpec(rate=16000)
    with pytest.raises(SnncError, match="frames"):
        FeatureSpec(frames=0)


def test_padding_is_frame_major(tmp_path):
    spec = FeatureSpec(frames=1500)
    f = clip_features(write_wav(tmp_path / "a.wav", speech_like(seconds=0.4)), spec).reshape(1500, 39)
    assert np.all(f[500:] == 0) and np.all(f[1:500].max(axis=1) > 0)


def _mini_fsdd(tmp_path: Path, names: list[str]) -> Path:
    root = tmp_path / "data"
    (root / "fsdd" / "recordings").mkdir(parents=True)
    shutil.copy(SHARED / "fsdd" / "MD5SUMS", root / "fsdd" / "MD5SUMS")
    for n in names:
        shutil.copy(SHARED / "fsdd" / "recordings" / n, root / "fsdd" / "recordings" / n)
    return root


@needs_fsdd
def test_fsdd_split_md5_missing_and_cache(tmp_path):
    names = [n for n, *_ in fsdd.clip_names("test")][::30][:10]
    root = _mini_fsdd(tmp_path, names)
    clips = fsdd.load_fsdd("test", root, limit=10)
    assert [c.digit for c in clips] == list(range(10)) and all(c.index < 5 for c in clips)
    cache = tmp_path / "cache"
    fs = load_features("test", FeatureSpec(), data_dir=root, cache_dir=cache, limit=10)
    assert len(fs) == 10 and fs.dense([0]).shape == (1, 58_500)
    cached = list(cache.iterdir())
    assert len(cached) == 1 and not [p for p in cache.iterdir() if ".snnc-tmp" in p.name]
    again = load_features("test", FeatureSpec(), data_dir=root, cache_dir=cache, limit=10)
    np.testing.assert_array_equal(again.values, fs.values)
    # a corrupt recording: md5 error naming the file
    victim = root / "fsdd" / "recordings" / names[3]
    victim.write_bytes(victim.read_bytes()[:-10] + b"\0" * 10)
    with pytest.raises(DataError, match=f"{names[3]} has md5"):
        fsdd.load_fsdd("test", root, limit=10)
    victim.unlink()
    with pytest.raises(DataError, match="missing"):
        fsdd.load_fsdd("test", root, limit=10)
    (root / "fsdd" / "MD5SUMS").write_text("0 recordings/x.wav\n")
    with pytest.raises(DataError, match="MD5SUMS has md5"):
        fsdd.load_fsdd("test", root, limit=10)


def test_no_data_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("SNNC_DATA", raising=False)
    with pytest.raises(DataError, match="SNNC_DATA"):
        fsdd.load_fsdd("train")
    with pytest.raises(DataError, match="fsdd/recordings"):
        fsdd.load_fsdd("train", tmp_path)
    with pytest.raises(DataError, match="split"):
        fsdd.clip_names("val")


@needs_fsdd
def test_official_split_sizes():
    assert len(fsdd.clip_names("train")) == 2700 and len(fsdd.clip_names("test")) == 300
    sums = fsdd.read_md5sums(SHARED / "fsdd")
    assert len(sums) == 3000
