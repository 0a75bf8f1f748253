"""One-file storage of a CompiledNetwork: ``compiled.npz`` (schema: docs/compiled-format.md).

The npz holds plain arrays only (loaded with ``allow_pickle=False``): ``meta`` (a JSON string with the format
version, every scalar field and the manifest) and, per layer k, ``layer{k}.<array field>`` plus the source float
network's ``source.layer{k}.{weights,pulse_times,pulse_weights}``. Writes are atomic;
``load_compiled(save_compiled(x))`` reproduces every field exactly. Malformed files raise ArtifactError.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from models.network import AlphaLayer, TemporalNetwork
from toolchain.atomic import atomic_path
from toolchain.compiled import CompiledLayer, CompiledNetwork
from toolchain.errors import ArtifactError

FORMAT = "snnc-compiled"
FORMAT_VERSION = 2  # 2: per-neuron vth array, pulse_source (pulse copies)
_FIX = "recompile the model with `snnc compile` (toolchain.compiler.compile_file)"

# array fields of CompiledLayer with their stored dtypes
_LAYER_ARRAYS = {
    "weights": np.int32,
    "pulse_weights": np.int32,
    "pulse_steps": np.int64,
    "pulse_source": np.int64,
    "vth": np.int64,
    "weights_float": np.float64,
    "pulse_weights_float": np.float64,
}
_LAYER_SCALARS = ("name", "weight_exp", "du", "dv", "once", "du_float", "dv_float", "vth_float", "kind",
                  "num_weight_bits")
_LAYER_OPTIONAL = ("pulse_weight_exp", "time_offset_steps")  # absent in files of earlier snnc versions
_SOURCE_ARRAYS = ("weights", "pulse_times", "pulse_weights")


def _jsonable(obj, what: str):
    try:
        return json.loads(json.dumps(obj, allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{what} is not JSON-serialisable ({exc}); fix: keep only plain numbers, strings, "
                            "lists and dicts in it") from exc


def _scalar(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def save_compiled(cn: CompiledNetwork, path: str | os.PathLike) -> None:
    """Write ``cn`` to ``path`` (npz) atomically."""
    if not isinstance(cn, CompiledNetwork):
        raise ArtifactError(f"save_compiled needs a CompiledNetwork, got {type(cn).__name__}; "
                            "fix: pass the result of toolchain.compiler.compile_network")
    arrays: dict[str, np.ndarray] = {}
    layers_meta = []
    for k, layer in enumerate(cn.layers):
        for f, dt in _LAYER_ARRAYS.items():
            arrays[f"layer{k}.{f}"] = np.asarray(getattr(layer, f), dtype=dt)
        layers_meta.append({f: _scalar(getattr(layer, f)) for f in _LAYER_SCALARS + _LAYER_OPTIONAL})
    src = cn.source
    for k, layer in enumerate(src.layers):
        for f in _SOURCE_ARRAYS:
            arrays[f"source.layer{k}.{f}"] = np.asarray(getattr(layer, f), dtype=np.float64)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "steps_per_unit": _scalar(cn.steps_per_unit),
        "window": int(cn.window),
        "layers": layers_meta,
        "source": {"n_layers": len(src.layers), "tau": src.tau, "theta": src.theta, "latency": src.latency,
                   "encoding": src.encoding, "metadata": _jsonable(src.metadata, "source network metadata")},
        "manifest": _jsonable(cn.manifest, "manifest"),
    }
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def _bad(path, what: str) -> ArtifactError:
    return ArtifactError(f"{path} is not a valid compiled network: {what}; fix: {_FIX}")


def load_compiled(path: str | os.PathLike) -> CompiledNetwork:
    """Read a file written by :func:`save_compiled`; ArtifactError names what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"compiled network file {path} does not exist; fix: {_FIX} --out {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise _bad(path, f"cannot read it as npz ({exc})") from exc
    if "meta" not in data:
        raise _bad(path, "the 'meta' entry is missing")
    try:
        meta = json.loads(str(data["meta"]))
    except (json.JSONDecodeError, TypeError) as exc:
        raise _bad(path, f"'meta' is not JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _bad(path, f"format is {meta.get('format') if isinstance(meta, dict) else None!r}, "
                         f"expected {FORMAT!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise _bad(path, f"format_version {meta.get('format_version')!r} is not supported (this snnc reads "
                         f"{FORMAT_VERSION})")

    def arr(key: str, dtype) -> np.ndarray:
        if key not in data:
            raise _bad(path, f"array {key!r} is missing")
        a = data[key]
        if a.dtype != np.dtype(dtype):
            raise _bad(path, f"array {key!r} has dtype {a.dtype}, expected {np.dtype(dtype)}")
        return a

    try:
        src = meta["source"]
        src_layers = []
        for k in range(int(src["n_layers"])):
            a = {f: arr(f"source.layer{k}.{f}", np.float64) for f in _SOURCE_ARRAYS}
            src_layers.append(AlphaLayer(**a))
        source = TemporalNetwork(tuple(src_layers), tau=src["tau"], theta=src["theta"], latency=src["latency"],
                                 encoding=src["encoding"], metadata=src["metadata"])
        layers = []
        for k, lm in enumerate(meta["layers"]):
            fields = {f: arr(f"layer{k}.{f}", dt) for f, dt in _LAYER_ARRAYS.items()}
            fields.update({f: lm[f] for f in _LAYER_SCALARS})
            fields.update({f: lm[f] for f in _LAYER_OPTIONAL if f in lm})
            layer = CompiledLayer(**fields)
            n_out, n_in = layer.weights.shape if layer.weights.ndim == 2 else (-1, -1)
            shapes_ok = (
                layer.weights.ndim == 2
                and layer.pulse_weights.shape == (n_out, layer.pulse_steps.shape[0])
                and layer.pulse_steps.ndim == 1
                and layer.vth.shape == (n_out,)
                and layer.weights_float.shape == layer.weights.shape
                and layer.pulse_weights_float.shape == layer.pulse_weights.shape
            )
            if not shapes_ok:
                raise _bad(path, f"layer {k} arrays have inconsistent shapes")
            if k > 0 and n_in != layers[-1].n_out:
                raise _bad(path, f"layer {k} expects {n_in} inputs but layer {k - 1} has {layers[-1].n_out}")
            layers.append(layer)
        if not layers:
            raise _bad(path, "it has no layers")
        cn = CompiledNetwork(steps_per_unit=meta["steps_per_unit"], window=int(meta["window"]),
                             layers=tuple(layers), source=source, manifest=meta["manifest"])
    except ArtifactError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(path, f"missing or malformed field ({type(exc).__name__}: {exc})") from exc
    return cn
