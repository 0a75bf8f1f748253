"""One-file storage of a CompiledSteps (``compiled.npz``, format ``snnc-compiled-steps`` v1; no pickle).

The npz holds ``meta`` (a JSON string: format, version, max_steps, manifest and every scalar field per layer) and
per layer k ``layer{k}.weights`` (int32), ``layer{k}.weights_float`` (float64), ``layer{k}.vth`` and
``layer{k}.scale`` (int64, one per neuron); a layer with a second Dense block also ``layer{k}.fine_weights``
(int32) and the scalar ``fine_exp``. Loading checks keys, types and
every field's hardware range (toolchain.compiled_steps.validate_compiled_steps); malformed files raise
ArtifactError. Writes are atomic; ``load_compiled_steps(save_compiled_steps(x))`` reproduces every field.
"""
from __future__ import annotations

import json
import math
import os
import zipfile

import numpy as np

from toolchain.atomic import atomic_path
from toolchain.compiled_steps import (
    FORMAT, FORMAT_VERSION, CompiledSteps, CompiledStepsLayer, validate_compiled_steps,
)
from toolchain.errors import ArtifactError
from toolchain.quantize import A_IN_MAX, UV_MAX
from toolchain.steps_calibration import RANGE_MODES

_SCALARS = {"name": str, "synapse": str, "weight_exp": int, "num_weight_bits": int, "du": int, "dv": int,
            "du_float": (int, float), "dv_float": (int, float),
            "vth_float": (int, float), "leak": (int, float), "v_th": (int, float), "strict": bool, "clamp": bool,
            "dt_ms": (int, float)}
_ARRAYS = {"weights": (np.int32, "iu", 2), "weights_float": (np.float64, "f", 2), "vth": (np.int64, "iu", 1),
           "scale": (np.int64, "iu", 1)}
_FIX = "recompile the graph with toolchain.steps_compiler.compile_graph"


def _plain(v):
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def save_compiled_steps(cs: CompiledSteps, path: str | os.PathLike) -> None:
    """Validate ``cs`` and write it to ``path`` atomically."""
    validate_compiled_steps(cs, f"compiled steps graph to be saved as {path}")
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for k, cl in enumerate(cs.layers):
        layers.append({f: _plain(getattr(cl, f)) for f in _SCALARS})
        for f, (dt, _, _) in _ARRAYS.items():
            arrays[f"layer{k}.{f}"] = np.asarray(getattr(cl, f), dtype=dt)
        if cl.fine_weights is not None:
            layers[-1]["fine_exp"] = int(cl.fine_exp)
            arrays[f"layer{k}.fine_weights"] = np.asarray(cl.fine_weights, dtype=np.int32)
    write_compiled_npz(path, {"format": FORMAT, "format_version": FORMAT_VERSION, "max_steps": int(cs.max_steps),
                              "manifest": cs.manifest, "layers": layers, "input_name": cs.input_name}, arrays)


def write_compiled_npz(path: str | os.PathLike, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` plus ``meta`` (as JSON in the 'meta' entry) to ``path`` as one npz, atomically; the format of
    every compiled steps file (Dense chains and conv graphs). ArtifactError when meta is not JSON-serialisable."""
    try:
        text = json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"the manifest is not JSON-serialisable ({exc}); fix: keep plain numbers, strings, "
                            "lists and dicts in it") from exc
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays, meta=np.array(text))


def _bad(path, what: str) -> ArtifactError:
    return ArtifactError(f"{path} is not a valid compiled steps graph: {what}; fix: {_FIX}")


def _number(v, lo: float, hi: float) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi


def _check_ranges(path, manifest: dict, n_layers: int) -> None:
    """The manifest's range mode and, for calibrated files, the calibration and the per-layer calibrated figures
    (integer magnitudes at the chosen scales, margin included) inside the hardware ranges. Files without
    ``range_mode`` (written before it existed) are worst-case."""
    mode = manifest.get("range_mode", "worst-case")
    if mode not in RANGE_MODES:
        raise _bad(path, f"manifest range_mode={mode!r} is not one of {RANGE_MODES}")
    if mode != "calibrated":
        return
    cal = manifest.get("calibration")
    if not isinstance(cal, dict) or not isinstance(cal.get("samples"), int) or isinstance(cal.get("samples"), bool) \
            or cal["samples"] < 1 or not _number(cal.get("margin"), 0.0, 100.0):
        raise _bad(path, "a calibrated file needs manifest 'calibration' with samples (int >= 1) and margin in "
                   "[0, 100]")
    entries = manifest.get("layers")
    if not isinstance(entries, list) or len(entries) != n_layers:
        raise _bad(path, f"manifest 'layers' must list the {n_layers} layers")
    for k, e in enumerate(entries):
        fig = e.get("calibrated") if isinstance(e, dict) else None
        if not isinstance(fig, dict):
            raise _bad(path, f"manifest layer {k} lacks its 'calibrated' ranges")
        for key, top in (("a_in", A_IN_MAX), ("u", UV_MAX), ("v_neg", UV_MAX)):
            if not _number(fig.get(key), 0.0, top):
                raise _bad(path, f"manifest layer {k} calibrated {key}={fig.get(key)!r} is outside [0, {top}]")


def load_compiled_steps(path: str | os.PathLike) -> CompiledSteps:
    """Read and validate a file written by :func:`save_compiled_steps`."""
    if not os.path.isfile(path):
        raise ArtifactError(f"{path} does not exist or is not a file; fix: pass the compiled.npz that "
                            "save_compiled_steps wrote")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise _bad(path, f"unreadable npz ({type(exc).__name__}: {exc})") from exc
    if "meta" not in data or data["meta"].shape != () or data["meta"].dtype.kind != "U":
        raise _bad(path, "missing or malformed 'meta' entry")
    try:
        meta = json.loads(str(data["meta"]))
    except ValueError as exc:
        raise _bad(path, f"'meta' is not JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _bad(path, f"format is {meta.get('format') if isinstance(meta, dict) else None!r}, expected {FORMAT!r}"
                   " (an alpha compiled network is read by toolchain.compiled_io.load_compiled)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise _bad(path, f"format_version {meta.get('format_version')!r} is not {FORMAT_VERSION}")
    if not isinstance(meta.get("max_steps"), int) or not isinstance(meta.get("manifest"), dict) \
            or not isinstance(meta.get("layers"), list) or not meta["layers"] \
            or not isinstance(meta.get("input_name"), str):
        raise _bad(path, "max_steps (int), manifest (dict), layers (non-empty list) and input_name (str) are "
                   "required")
    layers, fine_keys = [], set()
    for k, lm in enumerate(meta["layers"]):
        if not isinstance(lm, dict) or set(lm) - {"fine_exp"} != set(_SCALARS):
            got = sorted(lm) if isinstance(lm, dict) else type(lm).__name__
            raise _bad(path, f"layer {k} must have exactly the fields {sorted(_SCALARS)} (and fine_exp with a "
                             f"second weight block), got {got}")
        for f, t in _SCALARS.items():
            v = lm[f]
            if not isinstance(v, t) or (t is int and isinstance(v, bool)):
                raise _bad(path, f"layer {k} field {f}={v!r} has the wrong type")
        arrs = {}
        for f, (dt, kinds, ndim) in _ARRAYS.items():
            key = f"layer{k}.{f}"
            if key not in data or data[key].ndim != ndim or data[key].dtype.kind not in kinds:
                raise _bad(path, f"missing or malformed array {key!r}")
            arrs[f] = data[key].astype(dt)
        if "fine_exp" in lm:
            key = f"layer{k}.fine_weights"
            if not isinstance(lm["fine_exp"], int) or isinstance(lm["fine_exp"], bool) or key not in data \
                    or data[key].ndim != 2 or data[key].dtype.kind not in "iu":
                raise _bad(path, f"layer {k}: fine_exp needs an integer and the array {key!r}")
            arrs["fine_weights"] = data[key].astype(np.int32)
            fine_keys.add(key)
        layers.append(CompiledStepsLayer(**lm, **arrs))
    extra = set(data) - {"meta"} - fine_keys - {f"layer{k}.{f}" for k in range(len(layers)) for f in _ARRAYS}
    if extra:
        raise _bad(path, f"unexpected entries {sorted(extra)}")
    _check_ranges(path, meta["manifest"], len(layers))
    cs = CompiledSteps(tuple(layers), meta["max_steps"], meta["manifest"], meta["input_name"])
    try:
        return validate_compiled_steps(cs, str(path))
    except ArtifactError as exc:
        raise ArtifactError(str(exc)) from None
