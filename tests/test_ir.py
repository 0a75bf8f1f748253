"""The network IR (toolchain/ir.py): plain frozen nodes, shape checks, topological order."""
from __future__ import annotations

import numpy as np
import pytest

from toolchain.ir import LIF, AlphaOnce, Dense, Graph, Input, Readout, lif_chain


def test_lif_chain_builds_an_ordered_feed_forward_graph():
    rng = np.random.default_rng(0)
    g = lif_chain([rng.normal(size=(5, 8)), rng.normal(size=(8, 5))],
                  [LIF(5, leak=0.9, clamp=True), LIF(8, leak=0.9, clamp=True)], {"dataset": "mnist"})
    assert g.order() == ["input", "fc0", "layer0", "fc1", "layer1"]
    assert g.populations() == ["layer0", "layer1"]
    assert g.chain() == [("fc0", "layer0"), ("fc1", "layer1")]
    assert g.nodes["fc0"].weight.shape == (5, 8) and not g.nodes["fc0"].weight.flags.writeable
    assert g.time == "steps" and g.metadata == {"dataset": "mnist"}


@pytest.mark.parametrize("make, words", [
    (lambda: LIF(4, leak=1.5), "leak must lie in"),
    (lambda: LIF(4, leak=0.9, v_th=0.0), "v_th must be"),
    (lambda: LIF(4, leak=0.9, reset="hold"), "reset must be"),
    (lambda: LIF(0, leak=0.9), "integer >= 1"),
    (lambda: Readout(3, leak=0.0), "leak must lie in"),
    (lambda: Dense(np.array([[np.nan]])), "NaN"),
    (lambda: AlphaOnce(2, 1.0, 1.0, np.array([0.5]), np.zeros((3, 1))), "pulse_weights has shape"),
    (lambda: lif_chain([np.ones((3, 4)), np.ones((2, 5))], [LIF(3, 0.9), LIF(2, 0.9)]), "expects 5 inputs"),
    (lambda: lif_chain([np.ones((3, 4))], [LIF(2, 0.9)]), "has 3 outputs"),
    (lambda: Graph({"input": Input(2), "fc": Dense(np.ones((1, 2))), "a": AlphaOnce(1, 1.0, 1.0, np.zeros(0),
                                                                                     np.zeros((1, 0)))},
                   (("input", "fc"), ("fc", "a")), "steps"), "runs in continuous time"),
    (lambda: Graph({"input": Input(2), "fc": Dense(np.ones((2, 2))), "l": LIF(2, 0.9)},
                   (("input", "fc"), ("fc", "l"), ("l", "fc")), "steps"), "one source"),
    (lambda: Graph({"fc": Dense(np.ones((2, 2)))}, (), "steps"), "exactly one Input"),
])
def test_bad_nodes_and_graphs_are_refused_by_name(make, words):
    with pytest.raises(ValueError, match=words):
        make()


def test_reference_simulation_follows_the_lif_equations_step_by_step():
    """Hand-computed trace of one clamped LIF neuron (Roy et al.: V = min(0.9 V + W s, 1), spike at V >= 1)."""
    from toolchain.lif_reference import simulate

    g = lif_chain([np.array([[0.6]])], [LIF(1, leak=0.9, clamp=True)])
    tr = simulate(g, np.array([[[1], [1], [0], [1], [1]]]))
    # V: 0.6 -> 0.9*0.6+0.6 = 1.14 -> clamp 1.0, spike, reset -> 0 -> 0.6 -> 1.14 clamp 1.0 spike
    np.testing.assert_allclose(tr.potentials[0][0, :, 0], [0.6, 1.0, 0.0, 0.6, 1.0])
    np.testing.assert_array_equal(tr.spikes[0][0, :, 0], [0, 1, 0, 0, 1])
    sub = lif_chain([np.array([[0.7]])], [LIF(1, leak=1.0, reset="subtract", strict=True)])
    tr = simulate(sub, np.ones((1, 3, 1)))
    np.testing.assert_allclose(tr.potentials[0][0, :, 0], [0.7, 1.4, 1.1])   # 1.4 > 1 spikes, keeps 0.4
    np.testing.assert_array_equal(tr.spikes[0][0, :, 0], [0, 1, 1])


def test_reference_simulation_refuses_bad_spike_trains():
    from toolchain.lif_reference import simulate

    g = lif_chain([np.ones((2, 3))], [LIF(2, leak=0.9)])
    with pytest.raises(ValueError, match=r"shape \(samples, steps, 3\)"):
        simulate(g, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="only 0 and 1"):
        simulate(g, np.full((1, 2, 3), 2))
