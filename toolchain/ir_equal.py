"""Exact comparison of IR graphs (toolchain/ir.py).

The IR nodes hold numpy arrays, so ``==`` on two graphs is ambiguous; :func:`graph_differences` compares them
field by field, arrays bitwise (dtype, shape and bytes), float scalars bitwise (so -0.0 != 0.0), other scalars
with ``==`` and the same type, edges as a
set (the order of ``Graph.edges`` carries no meaning), metadata with ``==``. :func:`same_graph` is its boolean form.
"""
from __future__ import annotations

from dataclasses import fields

import numpy as np

from toolchain.ir import Graph


def _field_differences(where: str, a: object, b: object) -> list[str]:
    if type(a) is not type(b):
        return [f"{where}: {type(a).__name__} vs {type(b).__name__}"]
    out = []
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            x, y = np.asarray(x), np.asarray(y)
            if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
                out.append(f"{where}.{f.name}: arrays differ (dtype {x.dtype}/{y.dtype}, shape {x.shape}/{y.shape})")
        elif isinstance(x, float) and isinstance(y, float):
            if np.float64(x).tobytes() != np.float64(y).tobytes():
                out.append(f"{where}.{f.name}: {x!r} vs {y!r}")
        elif x != y or type(x) is not type(y):
            out.append(f"{where}.{f.name}: {x!r} vs {y!r}")
    return out


def graph_differences(a: Graph, b: Graph) -> list[str]:
    """Human-readable differences between two graphs (empty list = identical, arrays bitwise)."""
    out = []
    if a.time != b.time:
        out.append(f"time: {a.time!r} vs {b.time!r}")
    if set(a.nodes) != set(b.nodes):
        out.append(f"node names: {sorted(a.nodes)} vs {sorted(b.nodes)}")
    for name in a.nodes.keys() & b.nodes.keys():
        out += _field_differences(name, a.nodes[name], b.nodes[name])
    if set(a.edges) != set(b.edges) or len(a.edges) != len(b.edges):
        out.append(f"edges: {sorted(a.edges)} vs {sorted(b.edges)}")
    if a.metadata != b.metadata:
        keys = sorted(k for k in a.metadata.keys() | b.metadata.keys() if a.metadata.get(k) != b.metadata.get(k))
        out.append(f"metadata differs in {keys}")
    return out


def same_graph(a: Graph, b: Graph) -> bool:
    """True when ``a`` and ``b`` are the same network, every array bitwise equal (see :func:`graph_differences`)."""
    return not graph_differences(a, b)
