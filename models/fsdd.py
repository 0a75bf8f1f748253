"""Free Spoken Digit Dataset (FSDD): md5-checked 8 kHz mono 16-bit PCM recordings from ``$SNNC_DATA/fsdd``.

Layout (``/work/shared/datasets/README.md``): ``<root>/fsdd/recordings/{digit}_{speaker}_{index}.wav`` (3,000 files:
6 speakers x 10 digits x 50 recordings), ``<root>/fsdd/MD5SUMS`` (md5 of every recording; the md5 of that list
itself is :data:`MD5SUMS_MD5`). Official split: recording index 0-4 = test (300 clips), 5-49 = train (2,700).

Every wav is checked before use: RIFF/WAVE, PCM format 1, 16 bits, 1 channel, the expected sample rate, not empty,
not clipped (a run of :data:`CLIP_RUN` or more samples at full scale), and not longer than the caller's window.
Each failure is a :class:`toolchain.errors.DataError` naming the file, the problem and the fix.
Samples are returned as float64 in [-1, 1) (int16 / 32768).
"""
from __future__ import annotations

import hashlib
import os
import re
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.datasets import ENV_VAR, configured_dir, md5_file
from toolchain.errors import DataError

MD5SUMS_MD5 = "30656d3e71976411d0e09f5b4824a766"
N_FILES = 3000
SAMPLE_RATE = 8000
DIGITS = tuple(range(10))
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
TEST_INDICES = range(0, 5)
TRAIN_INDICES = range(5, 50)
SPLITS = ("train", "test")
CLIP_RUN = 3          # this many consecutive full-scale samples (|s| >= 32767) = a clipped recording
FULL_SCALE = 32767
_NAME = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav")


@dataclass(frozen=True)
class Clip:
    """One recording: samples float64 in [-1, 1) at ``rate`` Hz; digit label; speaker; recording index."""

    path: Path
    samples: np.ndarray
    rate: int
    digit: int
    speaker: str
    index: int

    @property
    def seconds(self) -> float:
        return self.samples.shape[0] / self.rate


def fsdd_root(data_dir: str | os.PathLike | None = None) -> Path:
    """``<data_dir or $SNNC_DATA>/fsdd``; DataError when no folder is configured or it has no recordings."""
    root = configured_dir(data_dir)
    if root is None:
        raise DataError(f"FSDD needs a data folder: set {ENV_VAR} or pass --data-dir (a folder holding "
                        f"fsdd/recordings/*.wav and fsdd/MD5SUMS, e.g. /work/shared/datasets); there is no "
                        f"bundled copy of the recordings")
    folder = root / "fsdd"
    if not (folder / "recordings").is_dir():
        raise DataError(f"{folder / 'recordings'} is missing; point {ENV_VAR} / --data-dir at the folder that "
                        f"holds fsdd/recordings/ and fsdd/MD5SUMS (the Free Spoken Digit Dataset)")
    return folder


def read_md5sums(folder: Path, expected_md5: str | None = MD5SUMS_MD5) -> dict[str, str]:
    """{relative path: md5} from ``folder/MD5SUMS``, whose own md5 must be ``expected_md5`` (None: not checked)."""
    path = folder / "MD5SUMS"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc}); restore the dataset's MD5SUMS list "
                        f"(md5 {MD5SUMS_MD5})") from None
    got = hashlib.md5(raw).hexdigest()
    if expected_md5 is not None and got != expected_md5:
        raise DataError(f"{path} has md5 {got}, expected {expected_md5}: the list of recordings was changed; "
                        f"restore the original FSDD MD5SUMS")
    out = {}
    for line in raw.decode("ascii", errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[1]] = parts[0]
    return out


def clip_names(split: str) -> list[tuple[str, int, str, int]]:
    """[(file name, digit, speaker, index)] of a split in a fixed order (digit, speaker, index)."""
    if split not in SPLITS:
        raise DataError(f"unknown FSDD split {split!r}; choose one of {', '.join(SPLITS)}")
    idx = TEST_INDICES if split == "test" else TRAIN_INDICES
    return [(f"{d}_{s}_{i}.wav", d, s, i) for d in DIGITS for s in SPEAKERS for i in idx]


def select(names: list, limit: int | None) -> list:
    """Every k-th entry so that about ``limit`` remain (all digits kept): the subset that ``--limit-*`` uses."""
    if limit is not None and int(limit) < 1:
        raise DataError(f"limit must be a positive number of clips, got {limit}")
    if limit is None or limit >= len(names):
        return list(names)
    return list(names[:: max(1, len(names) // int(limit))][: int(limit)])


def split_labels(split: str, limit: int | None = None) -> np.ndarray:
    """Digit labels of a split's clips in load order (no file is read)."""
    return np.array([d for _, d, _, _ in select(clip_names(split), limit)], np.int64)


def read_wav(path: str | os.PathLike, *, rate: int | None = SAMPLE_RATE, max_seconds: float | None = None,
             cut: bool = False) -> tuple[np.ndarray, int]:
    """Samples (float64 in [-1, 1)) and sample rate of a mono 16-bit PCM wav, after every check of the module.

    rate: the required sample rate in Hz (None: any). max_seconds: the longest clip the caller's window holds;
    a longer clip is a DataError unless ``cut`` (then the samples beyond it are dropped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"audio file {path} does not exist{' (it is a folder)' if path.is_dir() else ''}; "
                        f"check the path")
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, sr, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            comp = w.getcomptype()
            raw = w.readframes(n)
    except (wave.Error, EOFError) as exc:
        raise DataError(f"{path} is not a PCM wav file ({exc}); convert it to mono 16-bit PCM, e.g. "
                        f"`sox in.wav -b 16 -c 1 -r 8000 out.wav`") from None
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc}); check its permissions") from None
    if comp != "NONE" or width != 2:
        raise DataError(f"{path} is {8 * width}-bit {comp}, expected 16-bit PCM; convert it, e.g. "
                        f"`sox in.wav -b 16 out.wav`")
    if channels != 1:
        raise DataError(f"{path} has {channels} channels (stereo), expected mono; mix it down, e.g. "
                        f"`sox in.wav -c 1 out.wav`")
    if rate is not None and sr != rate:
        raise DataError(f"{path} is sampled at {sr} Hz, expected {rate} Hz; resample it, e.g. "
                        f"`sox in.wav -r {rate} out.wav`")
    a = np.frombuffer(raw, dtype="<i2")
    if a.size == 0 or len(raw) < 2 * n:
        what = "empty (no samples)" if a.size == 0 else f"truncated ({a.size} of {n} samples)"
        raise DataError(f"{path} is {what}; record or copy it again")
    if not np.any(a):
        raise DataError(f"{path} is silent (all samples 0); record it again")
    full = np.abs(a.astype(np.int32)) >= FULL_SCALE
    if full.sum() >= CLIP_RUN:
        run = np.convolve(full.astype(np.int8), np.ones(CLIP_RUN, np.int8), mode="valid")
        if run.max() >= CLIP_RUN:
            raise DataError(f"{path} is clipped ({int(full.sum())} samples at full scale, runs of {CLIP_RUN} or "
                            f"more); record it again at a lower level")
    x = a.astype(np.float64) / 32768.0
    if max_seconds is not None and x.size > max_seconds * sr:
        if not cut:
            raise DataError(f"{path} lasts {x.size / sr:.3f} s, longer than the {max_seconds:.3f} s window; trim it, "
                            f"pass --cut to drop the rest, or raise --frames")
        x = x[: int(max_seconds * sr)]
    return x, sr


def check_file_md5(path: Path, expected: str) -> None:
    got = md5_file(path)
    if got != expected:
        raise DataError(f"{path} has md5 {got}, expected {expected} (corrupt or a different file); restore it from "
                        f"the Free Spoken Digit Dataset (v1.0.10)")


def load_fsdd(split: str, data_dir: str | os.PathLike | None = None, *, limit: int | None = None,
              max_seconds: float | None = None, cut: bool = True, check_md5: bool = True) -> list[Clip]:
    """The clips of a split (official split, ordered by digit, speaker, index), md5-checked.

    ``limit``: keep every k-th clip so that about ``limit`` remain, all digits kept (for fast runs).
    ``max_seconds``/``cut``: see :func:`read_wav` (the dataset loader cuts by default, as the authors did)."""
    names = select(clip_names(split), limit)
    folder = fsdd_root(data_dir)
    sums = read_md5sums(folder) if check_md5 else {}
    clips = []
    for fname, d, s, i in names:
        path = folder / "recordings" / fname
        if not path.exists():
            raise DataError(f"FSDD recording {path} is missing; restore the complete dataset (3,000 files, "
                            f"`cd {folder} && md5sum -c MD5SUMS`)")
        if check_md5:
            rel = f"recordings/{fname}"
            if rel not in sums:
                raise DataError(f"{folder / 'MD5SUMS'} has no entry for {rel}; restore the original list")
            check_file_md5(path, sums[rel])
        x, sr = read_wav(path, rate=SAMPLE_RATE, max_seconds=max_seconds, cut=cut)
        clips.append(Clip(path=path, samples=x, rate=sr, digit=d, speaker=s, index=i))
    return clips


def parse_clip_name(name: str) -> tuple[int, str, int] | None:
    """(digit, speaker, index) from an FSDD file name, or None."""
    m = _NAME.fullmatch(Path(name).name)
    return (int(m.group(1)), m.group(2), int(m.group(3))) if m else None
