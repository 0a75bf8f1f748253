"""One-file storage of a CompiledConv (``compiled.npz``, format ``snnc-compiled-conv`` v1; no pickle), and the
family-blind ``save_compiled_any`` / ``load_compiled_any`` the steps CLI uses for Dense chains and conv graphs.

The npz holds ``meta`` (JSON: format, version, max_steps, input_name, manifest, every scalar and shape field per
layer) and per layer k ``layer{k}.weights`` (int32, the IR layout), ``layer{k}.weights_float`` (float64),
``layer{k}.vth`` and ``layer{k}.scale`` (int64 per neuron), and for a layer with a second weight block
``layer{k}.fine_weights`` (int32) with the layer field ``fine_exp`` (files without them: one block); a Dense layer
whose fan-in is split holds the field ``fan_in_groups`` (absent: 1). Loading
checks keys, types, every field's range
(toolchain.compiled_conv.validate_compiled_conv) and, for calibrated files, the manifest's calibrated ranges (as
toolchain/compiled_steps_io.py does); malformed files raise ArtifactError. Writes are atomic.
"""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from toolchain.compiled_conv import FORMAT, FORMAT_VERSION, CompiledConv, CompiledConvLayer, validate_compiled_conv
from toolchain.errors import ArtifactError
from toolchain.compiled_steps_io import _plain, write_compiled_npz

_SCALARS = {"name": str, "synapse": str, "kind": str, "population": str, "flatten": str, "weight_exp": int,
            "num_weight_bits": int, "du": int, "dv": int, "du_float": (int, float), "dv_float": (int, float),
            "vth_float": (int, float), "leak": (int, float), "v_th": (int, float), "strict": bool, "clamp": bool,
            "dt_ms": (int, float)}
_SHAPES = {"in_shape": 3, "out_shape": 3, "stride": 2, "padding": 2, "output_padding": 2}
_ARRAYS = {"weights": (np.int32, "iu"), "weights_float": (np.float64, "f"), "vth": (np.int64, "iu"),
           "scale": (np.int64, "iu")}
_FIX = "recompile the graph with toolchain.conv_compiler.compile_conv_graph (snnc compile)"


def save_compiled_conv(cc: CompiledConv, path: str | os.PathLike) -> None:
    """Validate ``cc`` and write it to ``path`` atomically."""
    validate_compiled_conv(cc, f"compiled conv graph to be saved as {path}")
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for k, cl in enumerate(cc.layers):
        entry = {f: _plain(getattr(cl, f)) for f in _SCALARS}
        entry.update({f: [int(v) for v in getattr(cl, f)] for f in _SHAPES})
        for f, (dt, _) in _ARRAYS.items():
            arrays[f"layer{k}.{f}"] = np.asarray(getattr(cl, f), dtype=dt)
        if cl.fan_in_groups > 1:
            entry["fan_in_groups"] = int(cl.fan_in_groups)
        if cl.fine_weights is not None:
            entry["fine_exp"] = int(cl.fine_exp)
            arrays[f"layer{k}.fine_weights"] = np.asarray(cl.fine_weights, dtype=np.int32)
        layers.append(entry)
    write_compiled_npz(path, {"format": FORMAT, "format_version": FORMAT_VERSION, "max_steps": int(cc.max_steps),
                              "manifest": cc.manifest, "layers": layers, "input_name": cc.input_name}, arrays)


def _bad(path, what: str) -> ArtifactError:
    return ArtifactError(f"{path} is not a valid compiled conv graph: {what}; fix: {_FIX}")


def read_meta(path: str | os.PathLike) -> tuple[dict, dict]:
    """(meta dict, arrays) of a compiled npz of either steps format; ArtifactError for unreadable files."""
    if not os.path.isfile(path):
        raise ArtifactError(f"{path} does not exist or is not a file; fix: pass the compiled.npz that snnc compile "
                            "wrote")
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
    if not isinstance(meta, dict):
        raise _bad(path, "'meta' is not a JSON object")
    return meta, data


def load_compiled_conv(path: str | os.PathLike) -> CompiledConv:
    """Read and validate a file written by :func:`save_compiled_conv`."""
    meta, data = read_meta(path)
    if meta.get("format") != FORMAT:
        raise _bad(path, f"format is {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise _bad(path, f"format_version {meta.get('format_version')!r} is not {FORMAT_VERSION}")
    if not isinstance(meta.get("max_steps"), int) or not isinstance(meta.get("manifest"), dict) \
            or not isinstance(meta.get("layers"), list) or not meta["layers"] \
            or not isinstance(meta.get("input_name"), str):
        raise _bad(path, "max_steps (int), manifest (dict), layers (non-empty list) and input_name (str) are "
                   "required")
    layers, fine_keys = [], set()
    for k, lm in enumerate(meta["layers"]):
        if not isinstance(lm, dict) or set(lm) - {"fine_exp", "fan_in_groups"} != set(_SCALARS) | set(_SHAPES):
            got = sorted(lm) if isinstance(lm, dict) else type(lm).__name__
            raise _bad(path, f"layer {k} must have exactly the fields {sorted(set(_SCALARS) | set(_SHAPES))}, got "
                       f"{got}")
        for f, t in _SCALARS.items():
            v = lm[f]
            if not isinstance(v, t) or (t is int and isinstance(v, bool)):
                raise _bad(path, f"layer {k} field {f}={v!r} has the wrong type")
        shapes = {}
        for f, n in _SHAPES.items():
            v = lm[f]
            if not (isinstance(v, list) and len(v) == n and all(isinstance(x, int) and not isinstance(x, bool)
                                                                 for x in v)):
                raise _bad(path, f"layer {k} field {f}={v!r} must be a list of {n} integers")
            shapes[f] = tuple(v)
        arrs = {}
        for f, (dt, kinds) in _ARRAYS.items():
            key = f"layer{k}.{f}"
            if key not in data or data[key].dtype.kind not in kinds:
                raise _bad(path, f"missing or malformed array {key!r}")
            arrs[f] = data[key].astype(dt)
        if "fine_exp" in lm:        # a second weight block
            key = f"layer{k}.fine_weights"
            fe = lm["fine_exp"]
            if key not in data or data[key].dtype.kind not in "iu" or not isinstance(fe, int) or isinstance(fe, bool):
                raise _bad(path, f"layer {k} has fine_exp={fe!r} but no integer array {key!r}")
            arrs.update(fine_weights=data[key].astype(np.int32), fine_exp=fe)
            fine_keys.add(key)
        if "fan_in_groups" in lm:   # a Dense fan-in split into relayed partial sums
            fg = lm["fan_in_groups"]
            if not isinstance(fg, int) or isinstance(fg, bool):
                raise _bad(path, f"layer {k} field fan_in_groups={fg!r} must be an integer")
            arrs["fan_in_groups"] = fg
        layers.append(CompiledConvLayer(**{f: lm[f] for f in _SCALARS}, **shapes, **arrs))
    extra = set(data) - {"meta"} - fine_keys - {f"layer{k}.{f}" for k in range(len(layers)) for f in _ARRAYS}
    if extra:
        raise _bad(path, f"unexpected entries {sorted(extra)}")
    from toolchain.compiled_steps_io import _check_ranges   # the same manifest range checks as Dense chains

    try:
        _check_ranges(path, meta["manifest"], len(layers))
    except ArtifactError as exc:
        raise ArtifactError(str(exc).replace("compiled steps graph", "compiled conv graph")) from None
    cc = CompiledConv(tuple(layers), meta["max_steps"], meta["manifest"], meta["input_name"])
    try:
        return validate_compiled_conv(cc, str(path))
    except ArtifactError as exc:
        raise ArtifactError(str(exc)) from None


def save_compiled_any(net, path: str | os.PathLike) -> None:
    """Save a CompiledConv or a CompiledSteps (toolchain/compiled_steps_io.py) to ``path``."""
    if isinstance(net, CompiledConv):
        save_compiled_conv(net, path)
    else:
        from toolchain.compiled_steps_io import save_compiled_steps

        save_compiled_steps(net, path)


def load_compiled_any(path: str | os.PathLike):
    """Load a compiled steps npz of either format (Dense chain or conv graph), dispatching on its ``format``."""
    meta, _ = read_meta(path)
    if meta.get("format") == FORMAT:
        return load_compiled_conv(path)
    from toolchain.compiled_steps_io import load_compiled_steps

    return load_compiled_steps(path)
