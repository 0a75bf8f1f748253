"""NIR graph (a ``.nir`` HDF5 file, package ``nir`` 1.0.x) -> snnc IR graph (toolchain/ir.py).

The inverse of :mod:`toolchain.nir_export`, and the way in for graphs made elsewhere (snnTorch's ``export_to_nir``,
Norse's ``to_nir``, hand-built with ``nir``'s API). A NIR neuron ``tau dv/dt = (v_leak - v) + R I`` becomes our
discrete population by its forward-Euler step of ``dt`` seconds:

- LIF:     leak = 1 - dt / tau, input scale g = R dt / tau  (v <- leak v + g I)
- IF:      leak = 1,            g = R dt
- CubaLIF: only with tau_syn = dt (an instant synapse: 1 - dt / tau_syn = 0), then as LIF with
           g = w_in (dt / tau_syn) R dt / tau_mem; or, with our ``snnc`` metadata, an AlphaOnce population
- LI:      Readout, leak = 1 - dt / tau, g = R dt / (tau leak)  (A <- leak (A + g I));  I: leak 1, g = R dt
- Linear / Affine (zero bias) -> Dense (or the ConvTranspose2d our exporter wrote), Conv2d (dilation 1, groups 1,
  zero bias) -> Conv2d, Flatten -> Flatten (dropped when it only flattens a flat vector)

g != 1 is folded into the incoming synapse's weights (|g - 1| <= 1e-6 counts as 1, the tolerance snnTorch's
importer uses). What snnc cannot express is refused with an ArtifactError naming the node: other node types,
cycles (recurrent layers), several Input nodes, per-neuron time constants or thresholds, v_leak != 0, v_reset != 0,
tau < dt, biases, dilation or groups. The ``snnc`` JSON metadata our exporter writes restores what NIR has no field
for (reset by subtraction, clamp, ``>=`` test, exact float values, the graph's metadata), so export -> import is
the identical graph.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from toolchain.errors import ArtifactError
from toolchain.ir import (LIF, AlphaOnce, Conv2d, ConvTranspose2d, Dense, Flatten, Graph, Input, Readout)
from toolchain.nir_export import (INSERTED_FLATTEN, SNNC_KEY, conv_as_dense, conv_transpose_matrix,
                                  flip_convt)

SUPPORTED = ("Input", "Output", "Linear", "Affine", "Conv2d", "Flatten", "LIF", "IF", "CubaLIF", "LI", "I")
SCALE_TOL = 1e-6      # |g - 1| below this is taken as g = 1 (snnTorch's importer uses np.allclose likewise)
FACT_TOL = 1e-9       # relative distance within which our metadata's exact value replaces the derived one
_FIX = "fix: export the network with the supported nodes (docs/nir.md) or change it in the NIR file"


def _err(source: str, what: str, fix: str = _FIX) -> ArtifactError:
    return ArtifactError(f"{source}: {what}; {fix}")


def read_nir(path: str | os.PathLike):
    """Read a NIR HDF5 file as a ``nir.NIRGraph`` (not type-checked: :func:`nir_to_graph` checks what it needs).

    ArtifactError for a missing file, a file that is not HDF5, a file without a NIR graph, node types snnc does not
    import (named), and nested graphs (recurrent subgraphs)."""
    import h5py
    import nir

    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"{p}: no such file; fix: pass the path of a .nir file written by nir.write "
                            "(e.g. `snnc export nir MODEL -o model.nir`)")
    if not h5py.is_hdf5(p):
        raise ArtifactError(f"{p} is not a NIR file (NIR files are HDF5; this one is not); fix: pass a file written "
                            "by nir.write, snnTorch's export_to_nir or Norse's to_nir")
    try:
        with h5py.File(p, "r") as f:
            if "node" not in f or "nodes" not in f["node"] or "edges" not in f["node"]:
                raise ArtifactError(f"{p}: HDF5 file without a NIR graph (no node/nodes, node/edges groups); fix: "
                                    "pass a file written by nir.write")
            for name, grp in f["node"]["nodes"].items():
                t = grp["type"][()] if "type" in grp else b"?"
                t = t.decode("utf8") if isinstance(t, bytes) else str(t)
                if t == "NIRGraph":
                    raise ArtifactError(f"{p}: node {name!r} is a nested NIR graph (a recurrent layer, as "
                                        "snnTorch's RLeaky exports); snnc imports feed-forward graphs only; fix: "
                                        "export a network without recurrent layers")
                if t not in SUPPORTED:
                    raise ArtifactError(f"{p}: node {name!r} is a NIR {t} node, which snnc cannot import "
                                        f"(supported: {', '.join(SUPPORTED)}); {_FIX}")
    except OSError as exc:
        raise ArtifactError(f"{p}: cannot read the HDF5 file ({exc}); fix: pass an intact .nir file") from None
    try:
        return nir.read(p, type_check=False)
    except ArtifactError:
        raise
    except Exception as exc:  # nir's reader raises assertions, KeyErrors, TypeErrors on malformed groups
        raise ArtifactError(f"{p}: nir could not read the graph ({type(exc).__name__}: {exc}); fix: pass a file "
                            "written by nir.write with nir 1.0") from None


def _facts(node) -> dict:
    meta = getattr(node, "metadata", None) or {}
    raw = meta.get(SNNC_KEY) if isinstance(meta, dict) else None
    if raw is None:
        return {}
    if isinstance(raw, bytes):
        raw = raw.decode("utf8")
    try:
        out = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return out if isinstance(out, dict) else {}


def _uniform(source: str, name: str, field: str, value) -> float:
    a = np.asarray(value, dtype=np.float64)
    if a.size == 0 or np.any(np.isnan(a)):
        raise _err(source, f"{name}.{field} is empty or NaN")
    if not np.all(a == a.flat[0]):
        raise _err(source, f"{name}.{field} differs between neurons ({a.min():g} .. {a.max():g}); snnc populations "
                           "have one value per population", "fix: use one value for the whole population")
    return float(a.flat[0])


def _pick(derived: float, fact) -> float:
    """Our metadata's exact value when it agrees with the value the NIR parameters give, else the derived one."""
    if isinstance(fact, (int, float)) and not isinstance(fact, bool):
        f = float(fact)
        if f == derived or abs(f - derived) <= FACT_TOL * max(abs(f), abs(derived)):
            return f
    return derived


def _check_cycles(source: str, names: list[str], edges: list[tuple[str, str]]) -> list[str]:
    indeg = {k: 0 for k in names}
    for _, b in edges:
        indeg[b] += 1
    ready = [k for k in names if indeg[k] == 0]
    order = []
    while ready:
        k = ready.pop(0)
        order.append(k)
        for a, b in edges:
            if a == k:
                indeg[b] -= 1
                if indeg[b] == 0:
                    ready.append(b)
    if len(order) != len(names):
        loop = [k for k in names if k not in order]
        raise _err(source, f"the NIR graph has a cycle through nodes {loop} (a recurrent connection); snnc compiles "
                           "feed-forward graphs only", "fix: export a network without recurrent connections")
    return order


def _padding(source: str, name: str, pad, kernel: tuple[int, int], stride: tuple[int, int]) -> tuple[int, int]:
    if isinstance(pad, bytes):
        pad = pad.decode("utf8")
    if isinstance(pad, str):
        if pad == "valid":
            return (0, 0)
        if pad == "same" and stride == (1, 1) and all(k % 2 == 1 for k in kernel):
            return (kernel[0] // 2, kernel[1] // 2)
        raise _err(source, f"Conv2d {name!r} has padding {pad!r}; snnc supports integer padding, 'valid', and "
                           "'same' with stride 1 and odd kernels")
    p = np.broadcast_to(np.asarray(pad).astype(np.int64), (2,))
    return int(p[0]), int(p[1])


def _pair(v) -> tuple[int, int]:
    p = np.broadcast_to(np.asarray(v).astype(np.int64), (2,))
    return int(p[0]), int(p[1])


def _zero_bias(source: str, name: str, node) -> None:
    b = getattr(node, "bias", None)
    if b is not None and np.any(np.asarray(b) != 0):
        raise _err(source, f"{type(node).__name__} {name!r} has a non-zero bias; snnc synapses have none (a "
                           "constant input current per step)", "fix: train or export the network without bias")


def _neuron(source: str, name: str, node, dt: float | None, time_kind: str):
    """(population node without size, input scale g, NIR shape) for a NIR neuron node."""
    import nir

    facts = _facts(node)
    kind = type(node).__name__
    if isinstance(node, nir.CubaLIF) and facts.get("kind") == "AlphaOnce":
        tau = _pick(1.0 / _uniform(source, name, "tau_mem", node.tau_mem), facts.get("tau"))
        if _uniform(source, name, "tau_syn", node.tau_syn) != _uniform(source, name, "tau_mem", node.tau_mem):
            raise _err(source, f"{name!r} is marked as an snnc alpha neuron but tau_syn != tau_mem")
        theta = _pick(_uniform(source, name, "v_threshold", node.v_threshold), facts.get("theta"))
        pt = np.asarray(facts.get("pulse_times", []), dtype=np.float64).reshape(-1)
        pw = np.asarray(facts.get("pulse_weights", []), dtype=np.float64)
        return ("alpha", dict(tau=tau, theta=theta, pulse_times=pt, pulse_weights=pw)), 1.0, node.v_threshold.shape
    if dt is None:
        raise ArtifactError(f"{source}: the NIR file states no time step and {name!r} ({kind}) needs one; fix: pass "
                            "--dt SECONDS (the dt the network was trained with; snnTorch exports use 1e-4)")
    for field in ("v_leak", "v_reset"):
        if hasattr(node, field) and getattr(node, field) is not None and \
                np.any(np.asarray(getattr(node, field), dtype=np.float64) != 0):
            raise _err(source, f"{kind} {name!r} has {field} != 0; snnc neurons rest and reset at 0",
                       "fix: shift the potentials so that v_leak = v_reset = 0 (and the threshold by the same)")
    if isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF)):
        r = _uniform(source, name, "r", node.r)
        vth = _uniform(source, name, "v_threshold", node.v_threshold)
        if isinstance(node, nir.IF):
            leak, g = 1.0, r * dt
        else:
            tau = _uniform(source, name, "tau_mem" if kind == "CubaLIF" else "tau",
                           node.tau_mem if kind == "CubaLIF" else node.tau)
            if not (tau >= dt):
                raise _err(source, f"{kind} {name!r} has tau = {tau:g} s < dt = {dt:g} s; its Euler step has no "
                                   "leak factor in (0, 1]", "fix: pass the dt the network was trained with (--dt)")
            leak, g = 1.0 - dt / tau, r * dt / tau
            if isinstance(node, nir.CubaLIF):
                tau_syn = _uniform(source, name, "tau_syn", node.tau_syn)
                if abs(1.0 - dt / tau_syn) > 1e-9:
                    raise _err(source, f"CubaLIF {name!r} has tau_syn = {tau_syn:g} s != dt = {dt:g} s: a synaptic "
                                       "current that outlasts a step has no snnc equivalent (the LIF integrates "
                                       "its input within the step)", "fix: use LIF nodes, or tau_syn = dt")
                g *= _uniform(source, name, "w_in", node.w_in) * dt / tau_syn
        if facts.get("kind") == "LIF":
            leak = _pick(leak, facts.get("leak"))
            vth = _pick(vth, facts.get("v_th"))
            g = 1.0 if abs(g - 1.0) <= SCALE_TOL else g
        reset = facts.get("reset", "zero") if facts.get("reset") in ("zero", "subtract") else "zero"
        fdt = facts.get("dt_ms")       # informational (rates); our own exports keep the model's value
        dt_ms = float(fdt) if isinstance(fdt, (int, float)) and not isinstance(fdt, bool) and fdt > 0 else dt * 1e3
        params = dict(leak=leak, v_th=vth, reset=reset, clamp=bool(facts.get("clamp", False)),
                      strict=bool(facts.get("strict", True)) if facts else True, dt_ms=dt_ms)
        return ("lif", params), g, np.shape(node.v_threshold)
    if isinstance(node, (nir.LI, nir.I)):
        r = _uniform(source, name, "r", node.r)
        if isinstance(node, nir.I):
            leak, g = 1.0, r * dt
        else:
            tau = _uniform(source, name, "tau", node.tau)
            if not (tau >= dt) or tau == dt:
                raise _err(source, f"LI {name!r} has tau = {tau:g} s <= dt = {dt:g} s; its Euler step has no leak "
                                   "factor in (0, 1]", "fix: pass the dt the network was trained with (--dt)")
            leak = 1.0 - dt / tau
            g = r * dt / (tau * leak)
        if facts.get("kind") == "Readout":
            leak = _pick(leak, facts.get("leak"))
            g = 1.0 if abs(g - 1.0) <= SCALE_TOL else g
        return ("readout", dict(leak=leak)), g, np.shape(node.r)
    raise _err(source, f"node {name!r} is a NIR {kind} node, which snnc cannot import")  # pragma: no cover


def _restore_conv(conv: Conv2d, facts: dict):
    """The snnc synapse a NIR Conv2d of our "maps" layout stands for (toolchain/nir_export.py), moved back bitwise;
    the Conv2d itself when it carries no such facts (or they do not fit)."""
    kind = facts.get("kind")
    try:
        if kind == "Dense":
            return Dense(conv_as_dense(conv.weight, conv.padding, conv.input_shape, conv.output_shape))
        if kind == "ConvTranspose2d" and facts.get("form") == "flipped":
            ct = ConvTranspose2d(flip_convt(conv.weight), conv.input_shape, (1, 1), tuple(facts["padding"]))
            return ct if ct.output_shape == conv.output_shape else conv
        if kind == "ConvTranspose2d" and facts.get("form") == "dense":
            m = conv_as_dense(conv.weight, conv.padding, conv.input_shape, conv.output_shape)
            ct = ConvTranspose2d(np.asarray(facts["weight"], dtype=np.float64), tuple(facts["input_shape"]),
                                 tuple(facts["stride"]), tuple(facts["padding"]), tuple(facts["output_padding"]))
            return ct if np.array_equal(conv_transpose_matrix(ct), m) else Dense(m)
    except (KeyError, TypeError, ValueError):
        return conv
    return conv


def nir_to_graph(ng, dt_s: float | None = None, source: str = "NIR graph") -> Graph:
    """Convert a ``nir.NIRGraph`` into a validated snnc :class:`Graph`.

    dt_s: the step in seconds the NIR time constants are discretised with (default: the value our exporter wrote
          in the graph's metadata; files from elsewhere need it). ArtifactError names what cannot be imported."""
    import nir

    from toolchain.validate import validate_graph

    if not isinstance(ng, nir.NIRGraph):
        raise ArtifactError(f"{source}: expected a nir.NIRGraph, got {type(ng).__name__}; fix: read the file with "
                            "toolchain.nir_import.read_nir")
    gfacts = _facts(ng)
    dt = float(dt_s) if dt_s is not None else (float(gfacts["dt_s"]) if isinstance(gfacts.get("dt_s"), (int, float))
                                               else None)
    if dt is not None and not (np.isfinite(dt) and dt > 0):
        raise ArtifactError(f"{source}: dt = {dt!r}; fix: pass --dt as a positive number of seconds")
    nn = dict(ng.nodes)
    for name, node in nn.items():
        if type(node).__name__ not in SUPPORTED:
            raise _err(source, f"node {name!r} is a NIR {type(node).__name__} node, which snnc cannot import "
                               f"(supported: {', '.join(SUPPORTED)})")
    edges = [(str(a), str(b)) for a, b in ng.edges]
    for a, b in edges:
        for end in (a, b):
            if end not in nn:
                raise _err(source, f"edge ({a!r}, {b!r}) names a node {end!r} that the graph does not have")
    order = _check_cycles(source, list(nn), edges)
    inputs = [k for k in order if isinstance(nn[k], nir.Input)]
    if len(inputs) != 1:
        raise _err(source, f"the NIR graph has {len(inputs)} Input nodes {inputs}; snnc graphs have exactly one")

    def srcs(k: str) -> list[str]:
        return [a for a, b in edges if b == k]

    nodes: dict = {}
    out_edges: list[tuple[str, str]] = []
    shape: dict[str, tuple[int, ...]] = {}     # the NIR tensor shape each kept node outputs
    alias: dict[str, str] = {}                 # dropped node -> the node whose output it passes on
    pending_scale: dict[str, tuple[str, float]] = {}
    time_kind = "continuous" if any(_facts(n).get("kind") == "AlphaOnce" for n in nn.values()) else "steps"

    def one_source(k: str) -> str:
        s = srcs(k)
        if len(s) != 1:
            raise _err(source, f"{type(nn[k]).__name__} node {k!r} has {len(s)} incoming edges {s}; snnc nodes read "
                               "exactly one source")
        return alias.get(s[0], s[0])

    for k in order:
        node = nn[k]
        kind = type(node).__name__
        if isinstance(node, nir.Input):
            shp = tuple(int(d) for d in np.asarray(node.input_type["input"]).reshape(-1))
            nodes[k], shape[k] = Input(int(np.prod(shp))), shp
        elif isinstance(node, nir.Output):
            continue
        elif isinstance(node, nir.Flatten):
            s = one_source(k)
            if len(shape[s]) == 3 and _facts(node).get("kind") != INSERTED_FLATTEN:
                nodes[k] = Flatten(shape[s])
                out_edges.append((s, k))
                shape[k] = (int(np.prod(shape[s])),)
            else:                               # flattening a flat vector, or the Flatten our exporter inserted
                alias[k] = s
                shape[k] = (int(np.prod(shape[s])),)
        elif isinstance(node, (nir.Linear, nir.Affine)):
            s = one_source(k)
            _zero_bias(source, k, node)
            w = np.asarray(node.weight, dtype=np.float64)
            if w.ndim != 2:
                raise _err(source, f"{kind} {k!r} has a {w.ndim}-D weight {w.shape}; snnc dense synapses are 2-D")
            n_src = int(np.prod(shape[s]))
            if w.shape[1] != n_src:
                raise _err(source, f"{kind} {k!r} reads {w.shape[1]} inputs but {s!r} holds {n_src}")
            syn = Dense(w)
            f = _facts(node)
            if f.get("kind") == "ConvTranspose2d":
                try:
                    ct = ConvTranspose2d(np.asarray(f["weight"], dtype=np.float64), tuple(f["input_shape"]),
                                         tuple(f["stride"]), tuple(f["padding"]), tuple(f["output_padding"]))
                    if np.array_equal(conv_transpose_matrix(ct), w):
                        syn = ct
                except (KeyError, TypeError, ValueError):
                    pass
            nodes[k], shape[k] = syn, (w.shape[0],)
            out_edges.append((s, k))
        elif isinstance(node, nir.Conv2d):
            s = one_source(k)
            _zero_bias(source, k, node)
            w = np.asarray(node.weight, dtype=np.float64)
            if w.ndim != 4:
                raise _err(source, f"Conv2d {k!r} has a {w.ndim}-D weight; expected (C_out, C_in, kH, kW)")
            if int(np.asarray(node.groups)) != 1 or _pair(node.dilation) != (1, 1):
                raise _err(source, f"Conv2d {k!r} has groups {node.groups} / dilation {node.dilation}; snnc "
                                   "convolutions have groups 1 and dilation 1")
            stride = _pair(node.stride)
            pad = _padding(source, k, node.padding, tuple(w.shape[2:]), stride)
            src_shape = shape[s]
            if len(src_shape) != 3:
                hw = node.input_shape
                if hw is None or int(np.prod(src_shape)) != w.shape[1] * int(np.prod(hw)):
                    raise _err(source, f"Conv2d {k!r} reads {s!r}, a flat vector of {int(np.prod(src_shape))}, and "
                                       "states no (H, W) input shape that fits it")
                src_shape = (int(w.shape[1]),) + tuple(int(d) for d in np.asarray(hw).reshape(-1))
            try:
                conv = Conv2d(w, src_shape, stride, pad)
            except ValueError as exc:
                raise _err(source, f"Conv2d {k!r}: {exc}") from None
            nodes[k], shape[k] = _restore_conv(conv, _facts(node)), conv.output_shape
            fl = _facts(node).get("flatten")
            if isinstance(fl, list) and len(fl) == 2 and isinstance(fl[0], str) and fl[0] not in nn and \
                    isinstance(nodes[k], (Dense, ConvTranspose2d)):
                try:                                   # the Flatten view the "maps" layout left out
                    nodes[fl[0]] = Flatten(tuple(fl[1]))
                    out_edges.append((s, fl[0]))
                    s = fl[0]
                except (TypeError, ValueError):
                    pass
            out_edges.append((s, k))
        else:                                   # neuron populations
            s = one_source(k)
            if not isinstance(nodes.get(s), (Dense, Conv2d, ConvTranspose2d)):
                raise _err(source, f"population {k!r} is fed directly by {s!r} ({type(nn[s]).__name__}); snnc needs "
                                   "a synapse node (Linear, Affine, Conv2d) in between")
            (what, params), g, pshape = _neuron(source, k, node, dt, time_kind)
            n = nodes[s].n_out
            if int(np.prod(pshape)) not in (1, n):
                raise _err(source, f"{kind} {k!r} has parameters of shape {pshape} but its synapse {s!r} has {n} "
                                   "outputs")
            if g != 1.0:
                pending_scale[s] = (k, g)
            try:
                if what == "lif":
                    nodes[k] = LIF(n, **params)
                elif what == "readout":
                    nodes[k] = Readout(n, **params)
                else:
                    pw = params["pulse_weights"].reshape(n, params["pulse_times"].size)
                    nodes[k] = AlphaOnce(n, params["tau"], params["theta"], params["pulse_times"], pw)
            except ValueError as exc:
                raise _err(source, f"{kind} {k!r}: {exc}") from None
            shape[k] = shape[s]
            out_edges.append((s, k))
    for syn_name, (pop, g) in pending_scale.items():     # fold the input scale R dt / tau into the weights
        syn = nodes[syn_name]
        if isinstance(syn, Dense):
            nodes[syn_name] = Dense(syn.weight * g)
        elif isinstance(syn, Conv2d):
            nodes[syn_name] = Conv2d(syn.weight * g, syn.input_shape, syn.stride, syn.padding)
        else:
            nodes[syn_name] = ConvTranspose2d(syn.weight * g, syn.input_shape, syn.stride, syn.padding,
                                              syn.output_padding)
    meta = gfacts.get("metadata") if isinstance(gfacts.get("metadata"), dict) else {"imported_from": "nir"}
    try:
        graph = Graph(nodes, tuple(out_edges), time_kind, dict(meta))
    except ValueError as exc:
        raise _err(source, str(exc)) from None
    return validate_graph(graph, source)


def load_nir(path: str | os.PathLike, dt_s: float | None = None) -> Graph:
    """:func:`read_nir` then :func:`nir_to_graph`: a NIR file as a validated snnc Graph."""
    return nir_to_graph(read_nir(path), dt_s, str(path))
