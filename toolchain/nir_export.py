"""snnc IR graph (toolchain/ir.py) -> NIR graph (package ``nir`` 1.0.x), and the ``.nir`` (HDF5) file.

NIR states every neuron in continuous time (``tau dv/dt = (v_leak - v) + R I``); our steps populations are
discrete. The mapping below is the one whose forward-Euler step of length ``dt`` (seconds) is *exactly* our
update (docs/nir.md has the full table and what each importer does with it):

============ ============================================================ =====================================
snnc node    NIR node                                                     parameters (dt in s, per population)
============ ============================================================ =====================================
Input(n)     Input, shape (n,) or the (C, H, W) map a convolution reads
Dense        Linear(weight)                                               no bias; a Flatten is inserted when
                                                                          the source holds a (C, H, W) map
Conv2d       Conv2d(input_shape=(H, W), dilation 1, groups 1, bias 0)
Flatten      Flatten(input_type=(C, H, W), start_dim 0, end_dim -1)
ConvTr.2d    Linear(the equivalent dense matrix), kernel in metadata      NIR has no transposed convolution
LIF          LIF(tau, r, v_leak 0, v_threshold, v_reset 0)                tau = dt / (1 - leak), r = tau / dt:
                                                                          v <- leak v + I (exact Euler step)
  leak = 1   IF(r = 1 / dt, v_threshold, v_reset 0)                       v <- v + I
  form cuba  CubaLIF(tau_syn = dt, tau_mem, r, w_in 1, ...)               instant synapse (1 - dt/tau_syn = 0)
Readout      LI(tau = dt / (1 - leak), r = leak tau / dt, v_leak 0)       A <- leak (A + I)
  leak = 1   I(r = 1 / dt)                                                A <- A + I
AlphaOnce    CubaLIF(tau_syn = tau_mem = 1 / tau, r = 1 / tau**2, w_in 1) V(t) = w t exp(-tau t) per input spike;
                                                                          one time unit = 1 s; once-spiking and
                                                                          the pulses only in metadata
============ ============================================================ =====================================

That is the "flat" layout. Graphs with convolutions are written in the "maps" layout by default (every tensor a
(C, H, W) map, every synapse one NIR Conv2d: :func:`map_shapes`, :func:`dense_as_conv`, :func:`flip_convt`),
since NIR has no reshape node and a transposed convolution's dense matrix can be huge.

Everything NIR cannot say (reset by subtraction, the clamp, the ``>=`` threshold test, once-spiking, pulses, the
exact float values of leak and thresholds, the graph's metadata) is written as one JSON string per node under
``metadata["snnc"]`` (and on the graph), so that :mod:`toolchain.nir_import` rebuilds the identical graph; other
readers ignore it and see the nearest NIR model.
"""
from __future__ import annotations

import json
import os
from typing import Literal

import numpy as np

from toolchain.errors import ArtifactError
from toolchain.ir import (LIF, AlphaOnce, Conv2d, ConvTranspose2d, Dense, Flatten, Graph, Input, Readout)

LifForm = Literal["lif", "cuba"]
SNNC_KEY = "snnc"          # metadata key holding our JSON facts (graph and nodes)
NIR_FORMAT = 1             # version of that JSON layout
INSERTED_FLATTEN = "flatten-inserted"


def _snnc_meta(**facts) -> dict:
    return {SNNC_KEY: json.dumps(facts, allow_nan=False, sort_keys=True)}


def default_dt_s(graph: Graph) -> float:
    """The step in seconds a steps graph states: its LIF nodes' ``dt_ms`` / 1000 (1 ms when it has none).

    Raises ArtifactError when LIF nodes disagree."""
    dts = {node.dt_ms for node in graph.nodes.values() if isinstance(node, LIF)}
    if len(dts) > 1:
        raise ArtifactError(f"the LIF populations state different steps {sorted(dts)} ms; NIR needs one dt: pass "
                            "--dt SECONDS")
    return (dts.pop() if dts else 1.0) * 1e-3


def conv_transpose_matrix(node: ConvTranspose2d) -> np.ndarray:
    """The dense (n_out, n_in) matrix of a ConvTranspose2d on C-order flat maps: M @ s = the transposed
    convolution of s. Each entry is one kernel value (or 0): no arithmetic, so the kernel is recoverable bitwise."""
    c_in, h, w = node.input_shape
    c_out, ho, wo = node.output_shape
    kh, kw = node.weight.shape[2:]
    (sh, sw), (ph, pw) = node.stride, node.padding
    m = np.zeros((c_out, ho, wo, c_in, h, w))
    for y in range(h):
        for x in range(w):
            for i in range(kh):
                oy = y * sh + i - ph
                if not 0 <= oy < ho:
                    continue
                for j in range(kw):
                    ox = x * sw + j - pw
                    if 0 <= ox < wo:
                        m[:, oy, ox, :, y, x] = node.weight[:, :, i, j].T      # (c_out, c_in)
    return m.reshape(c_out * ho * wo, c_in * h * w)


def _full(shape: tuple[int, ...], value: float) -> np.ndarray:
    return np.full(shape, float(value), dtype=np.float64)


def nir_shape(graph: Graph, name: str) -> tuple[int, ...]:
    """The shape of the tensor an Input or population holds in NIR: the (C, H, W) map of a population fed by a
    Conv2d, the map the Input's first convolution (or Flatten) reads, else (n,). (A ConvTranspose2d is written as
    a Linear, so its population is flat in NIR.)"""
    node = graph.nodes[name]
    if isinstance(node, Input):
        for t in graph.targets(name):
            if isinstance(graph.nodes[t], (Conv2d, Flatten)):
                return tuple(graph.nodes[t].input_shape)
        return (node.n,)
    src = graph.sources(name)
    if len(src) == 1 and isinstance(graph.nodes[src[0]], Conv2d):
        return tuple(graph.nodes[src[0]].output_shape)
    return (node.n_out,)


def _lif_node(nir, node: LIF, shape: tuple[int, ...], dt: float, form: LifForm):
    facts = dict(kind="LIF", leak=node.leak, v_th=node.v_th, reset=node.reset, clamp=node.clamp,
                 strict=node.strict, dt_ms=node.dt_ms, form=form)
    zeros, vth = _full(shape, 0.0), _full(shape, node.v_th)
    if node.leak == 1.0:
        if form == "cuba":
            raise ArtifactError("a LIF population without leak (leak = 1) has no CubaLIF form (tau_mem would be "
                                "infinite); export it with --lif-form lif (a NIR IF node)")
        return nir.IF(r=_full(shape, 1.0 / dt), v_threshold=vth, v_reset=zeros, metadata=_snnc_meta(**facts))
    tau = dt / (1.0 - node.leak)
    if form == "cuba":
        return nir.CubaLIF(tau_syn=_full(shape, dt), tau_mem=_full(shape, tau), r=_full(shape, tau / dt),
                           v_leak=zeros, v_threshold=vth, v_reset=zeros.copy(), w_in=_full(shape, 1.0),
                           metadata=_snnc_meta(**facts))
    return nir.LIF(tau=_full(shape, tau), r=_full(shape, tau / dt), v_leak=zeros, v_threshold=vth,
                   v_reset=zeros.copy(), metadata=_snnc_meta(**facts))


def _readout_node(nir, node: Readout, shape: tuple[int, ...], dt: float):
    facts = dict(kind="Readout", leak=node.leak)
    if node.leak == 1.0:
        return nir.I(r=_full(shape, 1.0 / dt), metadata=_snnc_meta(**facts))
    tau = dt / (1.0 - node.leak)
    return nir.LI(tau=_full(shape, tau), r=_full(shape, node.leak * tau / dt), v_leak=_full(shape, 0.0),
                  metadata=_snnc_meta(**facts))


def _alpha_node(nir, node: AlphaOnce):
    shape = (node.n,)
    tau_s = 1.0 / node.tau
    facts = dict(kind="AlphaOnce", once_spiking=True, tau=node.tau, theta=node.theta,
                 pulse_times=node.pulse_times.tolist(), pulse_weights=node.pulse_weights.tolist())
    return nir.CubaLIF(tau_syn=_full(shape, tau_s), tau_mem=_full(shape, tau_s), r=_full(shape, tau_s ** 2),
                       v_leak=_full(shape, 0.0), v_threshold=_full(shape, node.theta), v_reset=_full(shape, 0.0),
                       w_in=_full(shape, 1.0), metadata=_snnc_meta(**facts))



# ---- layout "maps": every tensor a (C, H, W) map, every synapse a NIR Conv2d ------------------------------------

ConvLayout = Literal["maps", "flat"]


def convt_as_conv(node: ConvTranspose2d) -> bool:
    """True when the transposed convolution is one Conv2d: stride 1, no output padding, padding <= kernel - 1
    (then it is the Conv2d with the flipped, channel-swapped kernel and padding kernel - 1 - padding)."""
    kh, kw = node.weight.shape[2:]
    return node.stride == (1, 1) and node.output_padding == (0, 0) and node.padding[0] <= kh - 1 and \
        node.padding[1] <= kw - 1


def _conv_consumer_shape(graph: Graph, name: str) -> tuple[int, int, int] | None:
    """The (C, H, W) map the convolutions reading population/Input ``name`` need (None: no such reader)."""
    want = set()
    for t in graph.targets(name):
        node = graph.nodes[t]
        if isinstance(node, Conv2d) or (isinstance(node, ConvTranspose2d) and convt_as_conv(node)):
            want.add(tuple(node.input_shape))
    if len(want) > 1:
        raise ArtifactError(f"{name!r} is read by convolutions expecting different maps {sorted(want)}")
    return want.pop() if want else None


def map_shapes(graph: Graph) -> dict[str, tuple[int, int, int]]:
    """Layout "maps": the (C, H, W) map each Input and population holds in NIR. A convolution's population keeps
    its map; any other holds the map the convolutions reading it need, else (n, 1, 1)."""
    out: dict[str, tuple[int, int, int]] = {}
    for name in graph.order():
        node = graph.nodes[name]
        if not isinstance(node, (Input,) + (LIF, Readout, AlphaOnce)):
            continue
        src = graph.sources(name)
        syn = graph.nodes[src[0]] if src else None
        if isinstance(syn, Conv2d) or (isinstance(syn, ConvTranspose2d) and convt_as_conv(syn)):
            out[name] = tuple(syn.output_shape)
        else:
            n = node.n if isinstance(node, Input) else node.n_out
            out[name] = _conv_consumer_shape(graph, name) or (n, 1, 1)
    return out


def dense_as_conv(m: np.ndarray, src: tuple[int, int, int], dst: tuple[int, int, int]) -> tuple[np.ndarray, tuple]:
    """A dense (n_dst, n_src) matrix between C-order maps as one Conv2d: (kernel, padding). From any map to
    (n, 1, 1): the kernel covers the whole source; from (n, 1, 1) to any (C, H, W): kernel (H, W) flipped, padding
    (H - 1, W - 1). Entries are moved, not computed (bitwise). ArtifactError between two spatial maps."""
    if dst[1:] == (1, 1):
        return m.reshape((dst[0],) + tuple(src)), (0, 0)
    if src[1:] == (1, 1):
        c, h, w = dst
        k = m.reshape(c, h, w, src[0]).transpose(0, 3, 1, 2)[:, :, ::-1, ::-1]
        return np.ascontiguousarray(k), (h - 1, w - 1)
    raise ArtifactError(f"a dense synapse from a {src} map to a {dst} map has no single NIR Conv2d form; export "
                        "with conv_layout='flat'")


def conv_as_dense(k: np.ndarray, padding: tuple[int, int], src: tuple[int, int, int],
                  dst: tuple[int, int, int]) -> np.ndarray:
    """Inverse of :func:`dense_as_conv` (bitwise)."""
    if tuple(padding) == (0, 0) and dst[1:] == (1, 1):
        return k.reshape(dst[0], -1).copy()
    c, h, w = dst
    return np.ascontiguousarray(k[:, :, ::-1, ::-1].transpose(0, 2, 3, 1).reshape(c * h * w, src[0]))


def flip_convt(weight: np.ndarray) -> np.ndarray:
    """ConvTranspose2d kernel (C_in, C_out, kH, kW) <-> the equivalent Conv2d kernel (C_out, C_in, kH, kW),
    flipped in space (its own inverse)."""
    return np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))


def _conv_node(nir, weight: np.ndarray, input_shape: tuple[int, int, int], stride, padding, facts: dict | None):
    node = nir.Conv2d(input_shape=tuple(input_shape[1:]), weight=np.array(weight), stride=tuple(stride),
                      padding=tuple(padding), dilation=(1, 1), groups=1, bias=np.zeros(weight.shape[0]),
                      metadata=_snnc_meta(**facts) if facts else {})
    return _fix_conv_type(node, input_shape, weight.shape, stride, padding)


def _fix_conv_type(node, input_shape, wshape, stride, padding):
    """nir 1.0.8's Conv2d computes its output type with kernel height for both dimensions (``weight.shape[2]``);
    set the true (C_out, H_out, W_out) so that graphs with non-square kernels type-check when built. (Reading such
    a file back with ``nir.read``'s default type check re-creates the wrong type: read it with
    ``type_check=False``, as :func:`toolchain.nir_import.read_nir` does.)"""
    h, w = input_shape[1:]
    kh, kw = wshape[2:]
    out = (int(wshape[0]), (h + 2 * padding[0] - kh) // stride[0] + 1, (w + 2 * padding[1] - kw) // stride[1] + 1)
    node.output_type = {"output": np.array(out)}
    return node


def _maps_synapse(nir, graph: Graph, name: str, shapes: dict, flat_alias: dict):
    """(source NIR node name, NIR Conv2d) of synapse ``name`` in layout "maps"."""
    node = graph.nodes[name]
    prev = graph.sources(name)[0]
    facts: dict = {}
    if isinstance(graph.nodes[prev], Flatten):
        facts["flatten"] = [prev, list(graph.nodes[prev].input_shape)]
        prev = flat_alias[prev]
    src = shapes[prev]
    dst = shapes[graph.targets(name)[0]]
    if isinstance(node, Conv2d) or (isinstance(node, ConvTranspose2d) and convt_as_conv(node)):
        if src != tuple(node.input_shape):
            raise ArtifactError(f"{type(node).__name__} {name!r} reads {prev!r}, which holds a {src} map in NIR, "
                                f"not {node.input_shape}: NIR has no reshape node")
        if isinstance(node, Conv2d):
            return prev, _conv_node(nir, node.weight, src, node.stride, node.padding, facts)
        kh, kw = node.weight.shape[2:]
        facts.update(kind="ConvTranspose2d", form="flipped", padding=list(node.padding))
        return prev, _conv_node(nir, flip_convt(node.weight), src, (1, 1),
                                (kh - 1 - node.padding[0], kw - 1 - node.padding[1]), facts)
    if isinstance(node, Dense):
        m = node.weight
        facts["kind"] = "Dense"
    else:
        m = conv_transpose_matrix(node)
        facts.update(kind="ConvTranspose2d", form="dense", input_shape=list(node.input_shape),
                     stride=list(node.stride), padding=list(node.padding), output_padding=list(node.output_padding),
                     weight=node.weight.tolist())
    k, pad = dense_as_conv(m, src, dst)
    facts["dense_form"] = "from-map" if pad == (0, 0) and dst[1:] == (1, 1) else "to-map"
    return prev, _conv_node(nir, k, src, (1, 1), pad, facts)


def _flat_source(nir, graph: Graph, name: str, nodes: dict, edges: list) -> str:
    """The NIR node a Linear reads: its source, behind an inserted Flatten when that source holds a map in NIR."""
    prev = graph.sources(name)[0]
    if isinstance(graph.nodes[prev], Flatten):
        return prev
    shape = nir_shape(graph, prev)
    if len(shape) == 1:
        return prev
    fl = f"{name}_flatten"
    nodes[fl] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1,
                            metadata=_snnc_meta(kind=INSERTED_FLATTEN))
    edges.append((prev, fl))
    return fl


def graph_to_nir(graph: Graph, dt_s: float | None = None, lif_form: LifForm = "lif",
                 conv_layout: ConvLayout | None = None):
    """Convert a snnc :class:`Graph` into a ``nir.NIRGraph`` (node names kept; Output nodes ``output_<pop>`` added
    for populations nothing reads).

    dt_s:     the step in seconds every steps population is discretised with (default: the LIF nodes' dt_ms;
              snnTorch 1.0's importer assumes 1e-4 s, Norse's ``from_nir`` takes it as ``dt``). Continuous (alpha)
              graphs ignore it: one model time unit is written as one second.
    lif_form: "lif" (NIR LIF, the faithful node) or "cuba" (CubaLIF with tau_syn = dt: the same Euler step, for
              importers that drop ``r`` on LIF nodes, such as Norse 1.1's).
    conv_layout: graphs with convolutions: "maps" (default for them) writes every tensor as a (C, H, W) map and
              every synapse as a NIR Conv2d (a dense one as a kernel over the whole map, a stride-1 transposed
              convolution as the flipped Conv2d), so no Flatten and no reshape is needed and torch importers run
              batches; "flat" (default without convolutions) writes Linear nodes behind Flatten nodes and a
              transposed convolution as its dense matrix.
    Raises ArtifactError for what NIR cannot express (e.g. a convolution reading a flat population)."""
    import nir

    if lif_form not in ("lif", "cuba"):
        raise ArtifactError(f"lif_form must be 'lif' or 'cuba', got {lif_form!r}")
    has_conv = any(isinstance(v, (Conv2d, ConvTranspose2d)) for v in graph.nodes.values())
    layout = conv_layout or ("maps" if has_conv else "flat")
    if layout not in ("maps", "flat"):
        raise ArtifactError(f"conv_layout must be 'maps' or 'flat', got {conv_layout!r}")
    if layout == "maps" and graph.time == "steps":
        return _graph_to_nir_maps(nir, graph, dt_s, lif_form)
    if graph.time == "steps":
        dt = default_dt_s(graph) if dt_s is None else float(dt_s)
        if not (np.isfinite(dt) and dt > 0):
            raise ArtifactError(f"--dt must be a positive number of seconds, got {dt_s!r}")
    else:
        dt = 1.0
    nodes: dict = {}
    edges: list[tuple[str, str]] = []
    for name in graph.order():
        node = graph.nodes[name]
        src = graph.sources(name)
        if isinstance(node, Input):
            nodes[name] = nir.Input(np.array(nir_shape(graph, name)))
        elif isinstance(node, Dense):
            prev = _flat_source(nir, graph, name, nodes, edges)
            nodes[name] = nir.Linear(weight=np.array(node.weight))
            edges.append((prev, name))
        elif isinstance(node, ConvTranspose2d):
            prev = _flat_source(nir, graph, name, nodes, edges)
            nodes[name] = nir.Linear(weight=conv_transpose_matrix(node), metadata=_snnc_meta(
                kind="ConvTranspose2d", input_shape=list(node.input_shape), stride=list(node.stride),
                padding=list(node.padding), output_padding=list(node.output_padding),
                weight=node.weight.tolist()))
            edges.append((prev, name))
        elif isinstance(node, Conv2d):
            prev = src[0]
            if nir_shape(graph, prev) != tuple(node.input_shape):
                raise ArtifactError(f"Conv2d {name!r} reads {prev!r}, a flat population (fed by a dense or "
                                    f"transposed-convolution synapse); NIR has no reshape node, so this graph cannot "
                                    f"be written as NIR (a convolution must read the Input or a convolution's "
                                    f"population)")
            nodes[name] = _conv_node(nir, node.weight, node.input_shape, node.stride, node.padding, None)
            edges.append((prev, name))
        elif isinstance(node, Flatten):
            nodes[name] = nir.Flatten(input_type={"input": np.array(node.input_shape)}, start_dim=0, end_dim=-1)
            edges.append((src[0], name))
        elif isinstance(node, LIF):
            nodes[name] = _lif_node(nir, node, nir_shape(graph, name), dt, lif_form)
            edges.append((src[0], name))
        elif isinstance(node, Readout):
            nodes[name] = _readout_node(nir, node, nir_shape(graph, name), dt)
            edges.append((src[0], name))
        elif isinstance(node, AlphaOnce):
            nodes[name] = _alpha_node(nir, node)
            edges.append((src[0], name))
        else:  # pragma: no cover - every IR node kind is handled above
            raise ArtifactError(f"node {name!r} ({type(node).__name__}) has no NIR form")
    for name in graph.populations():
        if not graph.targets(name):
            out = f"output_{name}"
            nodes[out] = nir.Output(np.array(nir_shape(graph, name)))
            edges.append((name, out))
    meta = _snnc_meta(format=NIR_FORMAT, time=graph.time, dt_s=dt, lif_form=lif_form,
                      time_unit_s=1.0 if graph.time == "continuous" else None, metadata=graph.metadata)
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)
    except (ValueError, AssertionError) as exc:
        raise ArtifactError(f"NIR rejected the converted graph: {exc}") from None


def _graph_to_nir_maps(nir, graph: Graph, dt_s: float | None, lif_form: LifForm):
    dt = default_dt_s(graph) if dt_s is None else float(dt_s)
    if not (np.isfinite(dt) and dt > 0):
        raise ArtifactError(f"--dt must be a positive number of seconds, got {dt_s!r}")
    shapes = map_shapes(graph)
    nodes: dict = {}
    edges: list[tuple[str, str]] = []
    flat_alias: dict[str, str] = {}
    for name in graph.order():
        node = graph.nodes[name]
        if isinstance(node, Input):
            nodes[name] = nir.Input(np.array(shapes[name]))
        elif isinstance(node, Flatten):
            flat_alias[name] = graph.sources(name)[0]         # a view: the next synapse reads the map itself
        elif isinstance(node, (Dense, Conv2d, ConvTranspose2d)):
            prev, nodes[name] = _maps_synapse(nir, graph, name, shapes, flat_alias)
            edges.append((prev, name))
        elif isinstance(node, LIF):
            nodes[name] = _lif_node(nir, node, shapes[name], dt, lif_form)
            edges.append((graph.sources(name)[0], name))
        elif isinstance(node, Readout):
            nodes[name] = _readout_node(nir, node, shapes[name], dt)
            edges.append((graph.sources(name)[0], name))
        else:
            raise ArtifactError(f"node {name!r} ({type(node).__name__}) has no NIR form in a steps graph")
    for name in graph.populations():
        if not graph.targets(name):
            nodes[f"output_{name}"] = nir.Output(np.array(shapes[name]))
            edges.append((name, f"output_{name}"))
    meta = _snnc_meta(format=NIR_FORMAT, time=graph.time, dt_s=dt, lif_form=lif_form, conv_layout="maps",
                      time_unit_s=None, metadata=graph.metadata)
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)
    except (ValueError, AssertionError) as exc:
        raise ArtifactError(f"NIR rejected the converted graph: {exc}") from None


def write_nir(graph: Graph, path: str | os.PathLike, dt_s: float | None = None, lif_form: LifForm = "lif",
              conv_layout: ConvLayout | None = None) -> None:
    """Convert ``graph`` (:func:`graph_to_nir`) and write it as a NIR HDF5 file, atomically."""
    import nir

    from toolchain.atomic import atomic_path

    ng = graph_to_nir(graph, dt_s, lif_form, conv_layout)
    with atomic_path(path) as tmp:
        nir.write(tmp, ng)
