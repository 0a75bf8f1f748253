"""Lyon passive-ear cochleagrams of spoken digits (the audio features of Roy, Panda & Roy 2019).

As the authors' code (Auditory Toolbox ``LyonPassiveEar``, decimation 10, earQ 8, step factor 0.5): each clip is
resampled from 8 kHz to the feature rate (12.5 kHz: scipy ``resample_poly`` up 25 / down 16; or kept at 8 kHz),
run through ``lyon.calc.LyonCalc.lyon_passive_ear``, divided by its own maximum (values in [0, 1], dimensionless),
then zero-padded or cut to ``frames`` frames. At 12.5 kHz that is 39 channels x 1,500 frames = 58,500 inputs
(one frame = 10 / 12,500 s = 0.8 ms, window 1.2 s); at 8 kHz, 32 channels (48,000 inputs, window 1.875 s).

The flat feature vector is frame-major: ``x[f * channels + c]`` (the zero padding is its tail).

A :class:`FeatureSet` holds only the computed frames (float16, the padding is implicit) and is cached atomically
as ``fsdd-<split>-<key>.npz`` in a cache folder, keyed by the settings, the split and the recordings' md5 list.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from toolchain.atomic import atomic_path
from toolchain.errors import DataError, SnncError

FEATURE_VERSION = 1
RATES = (12500, 8000)
DEFAULT_RATE = 12500
DEFAULT_FRAMES = 1500


@dataclass(frozen=True)
class FeatureSpec:
    """Cochleagram settings. rate: feature sample rate in Hz (12500 or 8000); frames: window length in frames."""

    rate: int = DEFAULT_RATE
    frames: int = DEFAULT_FRAMES
    decimation: int = 10
    ear_q: int = 8
    step_factor: float = 0.5

    def __post_init__(self) -> None:
        if self.rate not in RATES:
            raise SnncError(f"--audio-rate must be one of {', '.join(map(str, RATES))} Hz (12500: 39 channels as the "
                            f"paper; 8000: 32 channels), got {self.rate}")
        if isinstance(self.frames, bool) or not isinstance(self.frames, (int, np.integer)) or not \
                1 <= self.frames <= 100_000:
            raise SnncError(f"--frames must be an integer between 1 and 100000, got {self.frames!r}")
        if isinstance(self.decimation, bool) or not isinstance(self.decimation, (int, np.integer)) or not \
                1 <= self.decimation <= 1000:
            raise SnncError(f"--decimation must be an integer between 1 and 1000 (samples per frame), got "
                            f"{self.decimation!r}")

    @property
    def channels(self) -> int:
        """Lyon channels at this rate (39 at 12.5 kHz, 32 at 8 kHz with ear_q 8, step factor 0.5)."""
        return {12500: 39, 8000: 32}[self.rate] if (self.ear_q, self.step_factor) == (8, 0.5) else \
            cochleagram(np.sin(np.arange(800) * 0.3) * 0.1, self).shape[1]

    @property
    def n_inputs(self) -> int:
        return self.frames * self.channels

    @property
    def window_seconds(self) -> float:
        """Longest clip the window holds, in seconds."""
        return self.frames * self.decimation / self.rate


def cochleagram(samples8k: np.ndarray, spec: FeatureSpec = FeatureSpec(), source_rate: int = 8000) -> np.ndarray:
    """(frames_computed, channels) float64 cochleagram of one clip, divided by its maximum (not padded or cut)."""
    from lyon.calc import LyonCalc
    from scipy.signal import resample_poly

    x = np.asarray(samples8k, dtype=np.float64)
    if source_rate != spec.rate:
        g = np.gcd(int(spec.rate), int(source_rate))
        x = resample_poly(x, spec.rate // g, source_rate // g)
    co = LyonCalc().lyon_passive_ear(np.ascontiguousarray(x), spec.rate, spec.decimation, spec.ear_q,
                                     spec.step_factor)
    co = np.maximum(np.asarray(co, dtype=np.float64), 0.0)
    peak = co.max() if co.size else 0.0
    if not peak > 0:
        raise DataError("the clip gives an all-zero cochleagram (silent or too short); use a recording of speech")
    return co / peak


def fit_frames(co: np.ndarray, frames: int) -> np.ndarray:
    """Cut ``co`` (frames_computed, channels) to at most ``frames`` rows (the padding stays implicit)."""
    return co[:frames]


@dataclass(frozen=True, eq=False)
class FeatureSet:
    """Cochleagrams of N clips. values float16 (total frames, channels) in [0, 1]; offsets int64 (N + 1): clip n
    is ``values[offsets[n]:offsets[n + 1]]`` (at most spec.frames rows; the rest of its window is 0); labels int64
    (N,) digits; speakers (N,) str; indices (N,) recording index; n_cut: clips longer than the window (cut)."""

    spec: FeatureSpec
    values: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    speakers: np.ndarray
    indices: np.ndarray
    n_cut: int = 0

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def dense(self, rows: np.ndarray | list[int] | None = None) -> np.ndarray:
        """Flat padded features (len(rows), spec.n_inputs) float32, frame-major."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows)
        out = np.zeros((rows.shape[0], self.spec.frames, self.spec.channels), np.float32)
        for k, n in enumerate(rows):
            v = self.values[self.offsets[n]:self.offsets[n + 1]]
            out[k, : v.shape[0]] = v
        return out.reshape(rows.shape[0], -1)

    def sparse(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(flat indices int32, values float32) of clip n's non-zero features (the computed frames)."""
        v = self.values[self.offsets[n]:self.offsets[n + 1]].astype(np.float32).ravel()
        idx = np.flatnonzero(v).astype(np.int32)
        return idx, v[idx]

    def subset(self, rows: np.ndarray) -> "FeatureSet":
        rows = np.asarray(rows, dtype=np.int64)
        parts = [self.values[self.offsets[n]:self.offsets[n + 1]] for n in rows]
        lens = np.array([p.shape[0] for p in parts], np.int64)
        return FeatureSet(self.spec, np.concatenate(parts) if parts else self.values[:0],
                          np.concatenate([[0], np.cumsum(lens)]), self.labels[rows], self.speakers[rows],
                          self.indices[rows], self.n_cut)


def features_of_clips(clips, spec: FeatureSpec) -> FeatureSet:
    """Compute the cochleagrams of fsdd.Clip objects (cut to the window)."""
    vals, lens, n_cut = [], [], 0
    for c in clips:
        co = cochleagram(c.samples, spec, c.rate)   # normalised over the whole clip, then cut (the authors' order)
        n_cut += int(co.shape[0] > spec.frames)
        co = fit_frames(co, spec.frames)
        vals.append(co.astype(np.float16))
        lens.append(co.shape[0])
    values = np.concatenate(vals) if vals else np.zeros((0, spec.channels), np.float16)
    return FeatureSet(spec, values, np.concatenate([[0], np.cumsum(np.array(lens, np.int64))]),
                      np.array([c.digit for c in clips], np.int64), np.array([c.speaker for c in clips]),
                      np.array([c.index for c in clips], np.int64), n_cut)


def cache_key(spec: FeatureSpec, split: str, limit: int | None, md5_list: str) -> str:
    text = json.dumps({"v": FEATURE_VERSION, "spec": asdict(spec), "split": split, "limit": limit, "md5": md5_list},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _save(fs: FeatureSet, path: Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, values=fs.values, offsets=fs.offsets, labels=fs.labels, speakers=fs.speakers.astype("U16"),
                     indices=fs.indices, n_cut=np.array(fs.n_cut), spec=np.array(json.dumps(asdict(fs.spec))))


def _load(path: Path, spec: FeatureSpec) -> FeatureSet | None:
    """A cached set, or None when the file is unreadable or was made with other settings (then it is rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if json.loads(str(z["spec"])) != asdict(spec):
                return None
            fs = FeatureSet(spec, z["values"], z["offsets"], z["labels"], z["speakers"], z["indices"],
                            int(z["n_cut"]))
    except (OSError, KeyError, ValueError, EOFError):
        return None
    ok = (fs.values.ndim == 2 and fs.values.shape[1] == spec.channels and fs.offsets.shape == (len(fs) + 1,)
          and int(fs.offsets[-1]) == fs.values.shape[0] and np.all(np.diff(fs.offsets) >= 0))
    return fs if ok else None


def load_features(split: str, spec: FeatureSpec = FeatureSpec(), *, data_dir: str | os.PathLike | None = None,
                  cache_dir: str | os.PathLike | None = None, limit: int | None = None,
                  log=print) -> FeatureSet:
    """Features of an FSDD split (models/fsdd.py checks), from ``cache_dir`` when cached there, else computed
    (and then cached, atomically). ``cache_dir`` None: no cache."""
    from models import fsdd

    folder = fsdd.fsdd_root(data_dir)
    md5_list = hashlib.md5((folder / "MD5SUMS").read_bytes()).hexdigest() if (folder / "MD5SUMS").is_file() else ""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"fsdd-{split}-{cache_key(spec, split, limit, md5_list)}.npz"
        if path.is_file():
            fs = _load(path, spec)
            if fs is not None:
                return fs
            log(f"feature cache {path} is unreadable or stale; recomputing it")
    clips = fsdd.load_fsdd(split, data_dir, limit=limit)  # md5 checks, wav checks; long clips cut to the window
    fs = features_of_clips(clips, spec)
    if path is not None:
        _save(fs, path)
    return fs


def clip_features(path: str | os.PathLike, spec: FeatureSpec = FeatureSpec(), *, cut: bool = False) -> np.ndarray:
    """Flat padded features (spec.n_inputs,) float32 of one wav file (8 kHz or the feature rate, mono 16-bit PCM);
    a clip longer than the window is a DataError unless ``cut``."""
    from models import fsdd

    x, sr = fsdd.read_wav(path, rate=None, max_seconds=spec.window_seconds, cut=cut)
    if sr not in (8000, spec.rate):
        raise DataError(f"{path} is sampled at {sr} Hz; this model needs 8000 Hz (or {spec.rate} Hz) audio; "
                        f"resample it, e.g. `sox in.wav -r 8000 out.wav`")
    co = fit_frames(cochleagram(x, spec, sr), spec.frames)
    out = np.zeros((spec.frames, spec.channels), np.float32)
    out[: co.shape[0]] = co.astype(np.float16)  # the same rounding as the cached training features
    return out.ravel()
