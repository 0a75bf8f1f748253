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
from toolchain.validate import validate_network

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
_LAYER_NDIM = {"weights": 2, "pulse_weights": 2, "pulse_steps": 1, "pulse_source": 1, "vth": 1, "weights_float": 2,
               "pulse_weights_float": 2}
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
    """Write ``cn`` to ``path`` (npz) atomically, after :func:`validate_compiled` (never a file nobody can load)."""
    if not isinstance(cn, CompiledNetwork):
        raise ArtifactError(f"save_compiled needs a CompiledNetwork, got {type(cn).__name__}; "
                            "fix: pass the result of toolchain.compiler.compile_network")
    validate_compiled(cn, f"compiled network to be saved as {path}")
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


# ---- ranges (docs/compiled-format.md, "Ranges checked on load") ---------------------------------------------------
MAX_STEPS_PER_UNIT = 1 << 20  # = toolchain.compiler.MAX_STEPS_PER_UNIT
MIN_STEPS_PER_UNIT = 1.0  # a compensated grid S' = S tau / tau_eff may be a float slightly off the integer S >= 2
MIN_WINDOW = 3
MAX_WINDOW = 1 << 24  # steps per sample window
MAX_SAMPLE_BUFFER_BYTES = 4 << 30  # window x widest population x 8 bytes: one sample's dense step buffer
DECAY_MAX = 4095  # 12-bit decays
EXP_MIN, EXP_MAX = -1, 7  # Dense weight exponents
VTH_MAX = (1 << 17) - 1  # 17-bit threshold mantissa
WEIGHT_BITS = {8: (-256, 254, 2), 9: (-256, 255, 1)}  # mixed-sign mantissa (min, max, step)
KINDS = ("dense",)
_META_KEYS = {"format": str, "format_version": int, "steps_per_unit": (int, float), "window": int, "layers": list,
              "source": dict, "manifest": dict}
_SOURCE_KEYS = {"n_layers": int, "tau": (int, float), "theta": (int, float), "latency": (int, float),
                "encoding": str, "metadata": dict}
_LAYER_TYPES = {"name": str, "weight_exp": int, "du": int, "dv": int, "once": bool, "du_float": (int, float),
                "dv_float": (int, float), "vth_float": (int, float), "kind": str, "num_weight_bits": int,
                "pulse_weight_exp": (int, type(None)), "time_offset_steps": (int, float)}
# every stored scalar is an expected key; one added to _LAYER_SCALARS / _LAYER_OPTIONAL without a type above is
# still accepted as any JSON scalar (CompiledLayer and validate_compiled check its value)
_LAYER_KEYS = {f: _LAYER_TYPES.get(f, (int, float, str, bool, type(None))) for f in _LAYER_SCALARS + _LAYER_OPTIONAL}
_MANIFEST_TYPES = {"source_hash": str, "source_path": str, "steps_per_unit": (int, float), "window": int,
                   "layers": list, "tool_versions": dict}


def _type_name(t) -> str:
    ts = t if isinstance(t, tuple) else (t,)
    return " or ".join("null" if x is type(None) else {"int": "integer", "float": "number", "str": "string",
                                                     "list": "list", "dict": "object", "bool": "boolean"}[x.__name__]
                       for x in ts)


def _check_type(path, field: str, value, t) -> None:
    ts = t if isinstance(t, tuple) else (t,)
    ok = isinstance(value, ts) and not (isinstance(value, bool) and bool not in ts)
    if not ok:
        raise _bad(path, f"field {field} = {value!r:.80} is a {type(value).__name__}, expected {_type_name(t)}")


def _check_keys(path, where: str, obj: dict, spec: dict, optional: tuple = ()) -> None:
    missing = [k for k in spec if k not in obj and k not in optional]
    if missing:
        raise _bad(path, f"{where} lacks the field(s) {', '.join(missing)}")
    extra = sorted(k for k in obj if k not in spec)
    if extra:
        raise _bad(path, f"{where} has unexpected field(s) {', '.join(map(str, extra))} (written by another tool?)")
    for k, t in spec.items():
        if k in obj:
            _check_type(path, f"{where}.{k}" if where != "meta" else k, obj[k], t)


def _check_range(path, field: str, value: float, lo: float, hi: float) -> None:
    if not (np.isfinite(value) and lo <= value <= hi):
        rng = f"[{lo:g}, {hi:g}]" if isinstance(lo, float) or isinstance(hi, float) and np.isfinite(hi) \
            else f"[{lo}, {hi}]"
        if not np.isfinite(hi):
            rng = f">= {lo:g}"
        raise _bad(path, f"field {field} = {value!r} is outside its range {rng}")


def _check_int_array(path, field: str, a: np.ndarray, lo: int, hi: int, step: int = 1) -> None:
    if a.size == 0:
        return
    bad = (a < lo) | (a > hi)
    if step > 1:
        bad |= (a % step) != 0
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        rule = f"[{lo}, {hi}]" + (f", a multiple of {step}" if step > 1 else "")
        raise _bad(path, f"{field}[{', '.join(map(str, idx))}] = {int(a[idx])} is outside its range {rule}")


def _check_finite_array(path, field: str, a: np.ndarray) -> None:
    if a.size and not np.all(np.isfinite(a)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise _bad(path, f"{field}[{', '.join(map(str, idx))}] = {a[idx]} is not finite")


def size_problem(window: int, widths: list[int]) -> str | None:
    """Why a window of ``window`` steps with populations of ``widths`` (inputs, then every layer's neurons) is too
    big to allocate, or None. A dense-time target (e.g. Lava's RingBuffer source) holds ``window * max(widths)``
    float64 values per sample: that must stay within MAX_SAMPLE_BUFFER_BYTES, and ``window`` within MAX_WINDOW."""
    widest = max(widths, default=1)
    n_bytes = int(window) * widest * 8
    if window > MAX_WINDOW or n_bytes > MAX_SAMPLE_BUFFER_BYTES:
        return (f"window = {window} steps x {widest} neurons needs {n_bytes / 2**30:.3g} GiB per sample (caps: "
                f"{MAX_WINDOW} steps, {MAX_SAMPLE_BUFFER_BYTES / 2**30:g} GiB)")
    return None


def check_sizes(window: int, widths: list[int], source: object, error: type[Exception] = ArtifactError) -> None:
    """Refuse, before anything allocates, a window whose per-sample buffers are too big (:func:`size_problem`).

    ``error``: the SnncError class to raise (ArtifactError on load; the compiler may pass CompileError)."""
    problem = size_problem(window, widths)
    if problem:
        raise error(f"{source}: {problem}; fix: compile with fewer steps_per_unit or a shorter window (smaller "
                    f"latency, earlier pulses or a smaller horizon_margin)")


def validate_compiled(cn: CompiledNetwork, source: object = "compiled network") -> CompiledNetwork:
    """Check every field of ``cn`` against docs/compiled-format.md; return ``cn`` or raise ArtifactError naming it.

    Also checks the source float network (toolchain.validate.validate_network) and that it matches the layers."""
    path = source
    S = cn.steps_per_unit
    _check_type(path, "steps_per_unit", S, (int, float, np.integer, np.floating))
    _check_range(path, "steps_per_unit", float(S), MIN_STEPS_PER_UNIT, MAX_STEPS_PER_UNIT)
    _check_type(path, "window", cn.window, (int, np.integer))
    _check_range(path, "window", cn.window, MIN_WINDOW, np.inf)
    if not cn.layers:
        raise _bad(path, "it has no layers")
    problem = size_problem(int(cn.window), [cn.layers[0].n_in] + [la.n_out for la in cn.layers])
    if problem:
        raise _bad(path, problem)
    if not isinstance(cn.manifest, dict):
        raise _bad(path, f"field manifest is a {type(cn.manifest).__name__}, expected a JSON object")
    for k, v in cn.manifest.items():
        if not isinstance(k, str):
            raise _bad(path, f"manifest key {k!r} is not a string")
        if k in _MANIFEST_TYPES:
            _check_type(path, f"manifest.{k}", v, _MANIFEST_TYPES[k])
    try:
        validate_network(cn.source, "source network")
    except ArtifactError as exc:
        raise _bad(path, str(exc).split("; fix:")[0]) from None
    if len(cn.source.layers) != len(cn.layers):
        raise _bad(path, f"the source network has {len(cn.source.layers)} layers, the compiled one {len(cn.layers)}")
    W = int(cn.window)
    for k, (la, src) in enumerate(zip(cn.layers, cn.source.layers)):
        f = f"layer{k}"
        _check_type(path, f"{f}.name", la.name, str)
        if la.kind not in KINDS:
            raise _bad(path, f"field {f}.kind = {la.kind!r} is not one of {', '.join(KINDS)}")
        _check_type(path, f"{f}.once", la.once, (bool, np.bool_))
        if la.num_weight_bits not in WEIGHT_BITS or isinstance(la.num_weight_bits, bool):
            raise _bad(path, f"field {f}.num_weight_bits = {la.num_weight_bits!r} is not 8 or 9")
        for name in ("weight_exp", "pulse_weight_exp"):
            v = getattr(la, name)
            if name == "pulse_weight_exp" and v is None:
                continue
            _check_type(path, f"{f}.{name}", v, (int, np.integer))
            _check_range(path, f"{f}.{name}", v, EXP_MIN, EXP_MAX)
        for name in ("du", "dv"):
            _check_type(path, f"{f}.{name}", getattr(la, name), (int, np.integer))
            _check_range(path, f"{f}.{name}", getattr(la, name), 0, DECAY_MAX)
        for name in ("du_float", "dv_float"):
            _check_type(path, f"{f}.{name}", getattr(la, name), (int, float, np.integer, np.floating))
            _check_range(path, f"{f}.{name}", float(getattr(la, name)), 0.0, 1.0)
        _check_type(path, f"{f}.vth_float", la.vth_float, (int, float, np.integer, np.floating))
        if not (np.isfinite(la.vth_float) and la.vth_float > 0):
            raise _bad(path, f"field {f}.vth_float = {la.vth_float!r} must be finite and > 0")
        _check_type(path, f"{f}.time_offset_steps", la.time_offset_steps, (int, float, np.integer, np.floating))
        _check_range(path, f"{f}.time_offset_steps", float(la.time_offset_steps), -(W - 1), W - 1)
        if la.weights.shape != src.weights.shape:
            raise _bad(path, f"{f}.weights has shape {la.weights.shape} but the source network's layer {k} has "
                             f"{src.weights.shape}")
        lo, hi, step = WEIGHT_BITS[int(la.num_weight_bits)]
        _check_int_array(path, f"{f}.weights", la.weights, lo, hi, step)
        _check_int_array(path, f"{f}.pulse_weights", la.pulse_weights, lo, hi, step)
        _check_int_array(path, f"{f}.pulse_steps", la.pulse_steps, 0, W - 2)
        _check_int_array(path, f"{f}.pulse_source", la.pulse_source, 0, src.n_pulses - 1)
        _check_int_array(path, f"{f}.vth", la.vth, 1, VTH_MAX)
        _check_finite_array(path, f"{f}.weights_float", la.weights_float)
        _check_finite_array(path, f"{f}.pulse_weights_float", la.pulse_weights_float)
    return cn


def _check_meta(path, meta: dict, data: dict) -> None:
    """Keys, types and the size-determining scalars of the 'meta' JSON, before any network object is built."""
    _check_keys(path, "meta", meta, _META_KEYS)
    _check_keys(path, "meta.source", meta["source"], _SOURCE_KEYS)
    for k, lm in enumerate(meta["layers"]):
        if not isinstance(lm, dict):
            raise _bad(path, f"field layers[{k}] is a {type(lm).__name__}, expected a JSON object")
        _check_keys(path, f"layers[{k}]", lm, _LAYER_KEYS, optional=_LAYER_OPTIONAL)
    _check_range(path, "steps_per_unit", float(meta["steps_per_unit"]), MIN_STEPS_PER_UNIT, MAX_STEPS_PER_UNIT)
    _check_range(path, "window", meta["window"], MIN_WINDOW, np.inf)
    weights = [data.get(f"layer{k}.weights") for k in range(len(meta["layers"]))]
    weights = [w for w in weights if w is not None and w.ndim == 2]
    widths = [w.shape[0] for w in weights] + [w.shape[1] for w in weights[:1]]  # neurons; inputs of layer 0
    problem = size_problem(meta["window"], widths)
    if problem:
        raise _bad(path, problem)
    if meta["source"]["n_layers"] != len(meta["layers"]):
        raise _bad(path, f"field source.n_layers = {meta['source']['n_layers']} but there are "
                         f"{len(meta['layers'])} compiled layers")
    if not meta["layers"]:
        raise _bad(path, "it has no layers")


def load_compiled(path: str | os.PathLike) -> CompiledNetwork:
    """Read a file written by :func:`save_compiled` and check every field (:func:`validate_compiled`);
    ArtifactError names what is wrong (the field, its value and its range)."""
    path = Path(path)
    if path.is_dir():
        raise ArtifactError(f"compiled network path {path} is a folder; fix: pass the compiled.npz file inside it "
                            f"(or {_FIX} --out {path / 'compiled.npz'})")
    if not path.is_file():
        raise ArtifactError(f"compiled network file {path} does not exist; fix: {_FIX} --out {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise _bad(path, "it is a single .npy array, not an npz archive")
            data = {k: z[k] for k in z.files}
    except ArtifactError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise _bad(path, f"cannot read it as npz ({exc})") from exc
    if "meta" not in data:
        raise _bad(path, "the 'meta' entry is missing")
    if data["meta"].dtype.kind != "U" or data["meta"].ndim != 0:
        raise _bad(path, f"'meta' is a {data['meta'].dtype} array of shape {data['meta'].shape}, expected a JSON "
                         f"string")
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
    _check_meta(path, meta, data)
    n_layers = len(meta["layers"])
    expected = {"meta"} | {f"layer{k}.{f}" for k in range(n_layers) for f in _LAYER_ARRAYS} \
        | {f"source.layer{k}.{f}" for k in range(n_layers) for f in _SOURCE_ARRAYS}
    extra = sorted(set(data) - expected)
    if extra:
        raise _bad(path, f"unexpected array(s) {', '.join(extra[:5])} (for {n_layers} layers)")

    def arr(key: str, dtype, ndim: int) -> np.ndarray:
        if key not in data:
            raise _bad(path, f"array {key!r} is missing")
        a = data[key]
        if a.dtype != np.dtype(dtype):
            raise _bad(path, f"array {key!r} has dtype {a.dtype}, expected {np.dtype(dtype)}")
        if a.ndim != ndim and not (key.endswith(".vth") and a.ndim == 0):
            raise _bad(path, f"array {key!r} has shape {a.shape}, expected {ndim}-D")
        return a

    try:
        src = meta["source"]
        src_layers = []
        for k in range(int(src["n_layers"])):
            a = {f: arr(f"source.layer{k}.{f}", np.float64, nd) for f, nd in zip(_SOURCE_ARRAYS, (2, 1, 2))}
            try:
                src_layers.append(AlphaLayer(**a))
            except ValueError as exc:
                raise _bad(path, f"source.layer{k}: {exc}") from None
        source = TemporalNetwork(tuple(src_layers), tau=src["tau"], theta=src["theta"], latency=src["latency"],
                                 encoding=src["encoding"], metadata=src["metadata"])
        layers = []
        for k, lm in enumerate(meta["layers"]):
            fields = {f: arr(f"layer{k}.{f}", dt, _LAYER_NDIM[f]) for f, dt in _LAYER_ARRAYS.items()}
            fields.update({f: lm[f] for f in _LAYER_SCALARS})
            fields.update({f: lm[f] for f in _LAYER_OPTIONAL if f in lm})
            layer = CompiledLayer(**fields)
            n_out, n_in = layer.weights.shape
            shapes_ok = (
                layer.pulse_weights.shape == (n_out, layer.pulse_steps.shape[0])
                and layer.vth.shape == (n_out,)
                and layer.weights_float.shape == layer.weights.shape
                and layer.pulse_weights_float.shape == layer.pulse_weights.shape
            )
            if not shapes_ok:
                raise _bad(path, f"layer {k} arrays have inconsistent shapes")
            if k > 0 and n_in != layers[-1].n_out:
                raise _bad(path, f"layer {k} expects {n_in} inputs but layer {k - 1} has {layers[-1].n_out}")
            layers.append(layer)
        cn = CompiledNetwork(steps_per_unit=meta["steps_per_unit"], window=int(meta["window"]),
                             layers=tuple(layers), source=source, manifest=meta["manifest"])
    except ArtifactError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(path, f"missing or malformed field ({type(exc).__name__}: {exc})") from exc
    return validate_compiled(cn, path)
