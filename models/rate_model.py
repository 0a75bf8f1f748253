"""The trained rate-coded LIF autoencoder as an IR graph (toolchain/ir.py) and its float64 forward pass.

The graph is ``lif_chain([W1, W2], [LIF(H, leak, v_th, clamp=True), LIF(n_out, leak, v_th, clamp=True)])`` with
reset to zero and spikes on V >= V_th; ``metadata`` holds dataset, encoding "bernoulli", p_scale (spike
probability per step at pixel 1 = dt * max_rate), steps T and the training settings. :func:`forward_spikes` is
the evaluation forward pass; it runs the same float64 operations as ``toolchain.lif_reference.simulate`` (tested
to give identical spike trains). Models are stored as ONNX artifact format 2 (toolchain.artifact_graph.save_graph /
load_graph).
"""
from __future__ import annotations

import numpy as np

from toolchain.errors import ArtifactError
from toolchain.ir import LIF, Dense, Graph, lif_chain

LEAK = 0.9
V_TH = 1.0


def make_graph(w1: np.ndarray, w2: np.ndarray, metadata: dict, leak: float = LEAK, v_th: float = V_TH) -> Graph:
    """IR graph input -> fc0 (W1) -> layer0 (LIF) -> fc1 (W2) -> layer1 (LIF), clamp at v_th, reset to zero."""
    h, n_out = int(np.shape(w1)[0]), int(np.shape(w2)[0])
    return lif_chain([np.asarray(w1, np.float64), np.asarray(w2, np.float64)],
                     [LIF(h, leak=leak, v_th=v_th, clamp=True), LIF(n_out, leak=leak, v_th=v_th, clamp=True)],
                     metadata=metadata)


def graph_weights(graph: Graph) -> tuple[list[np.ndarray], list[LIF]]:
    """(weights, LIF populations) of a feed-forward steps graph of Dense + LIF nodes."""
    ws, pops = [], []
    for syn, pop in graph.chain():
        s, p = graph.nodes[syn], graph.nodes[pop]
        if not isinstance(s, Dense) or not isinstance(p, LIF):
            raise ArtifactError(f"a rate model is a chain of Dense + LIF nodes; {syn!r}/{pop!r} are "
                                f"{type(s).__name__}/{type(p).__name__}")
        ws.append(np.asarray(s.weight, np.float64))
        pops.append(p)
    return ws, pops


def forward_spikes(graph: Graph, spikes_in: np.ndarray, chunk: int = 500) -> list[np.ndarray]:
    """Spike trains of every layer [(N, T, n) uint8] for input spikes (N, T, n_in); float64, in chunks of samples.

    Same equations and operation order as ``toolchain.lif_reference.simulate`` (current = s @ W^T for all steps,
    then V = leak V + I, clamp, V >= v_th, reset)."""
    ws, pops = graph_weights(graph)
    x = np.asarray(spikes_in)
    outs: list[list[np.ndarray]] = [[] for _ in ws]
    for c in range(0, x.shape[0], chunk):
        src = x[c:c + chunk].astype(np.float64)
        for k, (w, pop) in enumerate(zip(ws, pops)):
            cur = src @ w.T
            v = np.zeros((src.shape[0], pop.n))
            s = np.zeros((src.shape[0], src.shape[1], pop.n), dtype=np.uint8)
            for t in range(src.shape[1]):
                v = pop.leak * v + cur[:, t]
                if pop.clamp:
                    v = np.minimum(v, pop.v_th)
                fired = v > pop.v_th if pop.strict else v >= pop.v_th
                s[:, t] = fired
                v = np.where(fired, 0.0 if pop.reset == "zero" else v - pop.v_th, v)
            outs[k].append(s)
            src = s.astype(np.float64)
    return [np.concatenate(o) if o else np.zeros((0, x.shape[1], p.n), np.uint8) for o, p in zip(outs, pops)]
