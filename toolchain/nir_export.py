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


def graph_to_nir(graph: Graph, dt_s: float | None = None, lif_form: LifForm = "lif"):
    """Convert a snnc :class:`Graph` into a ``nir.NIRGraph`` (node names kept; Output nodes ``output_<pop>`` added
    for populations nothing reads).

    dt_s:     the step in seconds every steps population is discretised with (default: the LIF nodes' dt_ms;
              snnTorch 1.0's importer assumes 1e-4 s, Norse's ``from_nir`` takes it as ``dt``). Continuous (alpha)
              graphs ignore it: one model time unit is written as one second.
    lif_form: "lif" (NIR LIF, the faithful node) or "cuba" (CubaLIF with tau_syn = dt: the same Euler step, for
              importers that drop ``r`` on LIF nodes, such as Norse 1.1's).
    Raises ArtifactError for what NIR cannot express (e.g. a convolution reading a flat population)."""
    import nir

    if lif_form not in ("lif", "cuba"):
        raise ArtifactError(f"lif_form must be 'lif' or 'cuba', got {lif_form!r}")
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
            nodes[name] = nir.Conv2d(input_shape=tuple(node.input_shape[1:]), weight=np.array(node.weight),
                                     stride=tuple(node.stride), padding=tuple(node.padding), dilation=(1, 1),
                                     groups=1, bias=np.zeros(node.weight.shape[0]))
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


def write_nir(graph: Graph, path: str | os.PathLike, dt_s: float | None = None, lif_form: LifForm = "lif") -> None:
    """Convert ``graph`` (:func:`graph_to_nir`) and write it as a NIR HDF5 file, atomically."""
    import nir

    from toolchain.atomic import atomic_path

    ng = graph_to_nir(graph, dt_s, lif_form)
    with atomic_path(path) as tmp:
        nir.write(tmp, ng)
