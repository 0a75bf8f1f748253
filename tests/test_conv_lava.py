"""Convolutional graphs on real Lava 0.10 (issue [F] section 3): lava-fixed equals hw_sim bit for bit (spike
trains and the off-chip Readout), lava-float reproduces the float model, on small random conv autoencoders with
Lava's Conv (stride-1 transposed convolutions) and Sparse (strided ones). A few seconds per run."""
from __future__ import annotations

import numpy as np
import pytest

from conv_nets import conv_autoencoder, input_trains
from hw_sim.conv import run_conv_fixed
from targets.registry import get_target
from toolchain.conv_compiler import compile_conv_graph
from toolchain.errors import TargetError
from toolchain.verify_trains import verify_steps


@pytest.mark.parametrize("strided", [True, False], ids=["sparse-convT", "conv-convT"])
def test_lava_fixed_equals_hw_sim_and_lava_float_equals_float(strided):
    rng = np.random.default_rng(10 + strided)
    g = conv_autoencoder(rng, strided=strided)
    x = input_trains(rng, n=3, steps=12)
    cc = compile_conv_graph(g, 12)
    trains, pots, _ = run_conv_fixed(cc, x, threads=1)
    fixed = get_target("lava-fixed-lif").run(cc, x)
    assert fixed.info["mapping"][-2] == ("Sparse" if strided else "Conv")
    for name, a, b in zip(cc.names, trains, fixed.trains):
        assert np.array_equal(a, b), name
    assert sum(int(t.sum()) for t in trains[:-1]) > 50
    np.testing.assert_array_equal(pots[-1], fixed.potentials[-1])       # Readout: bit-identical float64
    img = np.clip(x.mean(axis=1) / 0.5, 0, 1)
    rep = verify_steps(cc, x, img, {"lava-float-lif": get_target("lava-float-lif").run(cc, x),
                                    "lava-fixed-lif": fixed,
                                    "hw_sim-lif": get_target("hw_sim-lif", threads=1).run(cc, x)})
    assert [g.name for g in rep.cross_gates] == ["lava-fixed-lif = hw_sim-lif"] and rep.cross_gates[0].passed
    flt = rep.targets[0]
    assert flt.passed, rep.summary()
    assert all(s.flips["unexplained"] == 0 for s in flt.layers)
    assert abs(flt.metrics_rel["mse_readout"]) < 1e-6


def test_a_steps_graph_with_convolutions_is_compiled_by_the_targets():
    rng = np.random.default_rng(3)
    g = conv_autoencoder(rng)
    x = input_trains(rng, n=2, steps=8)
    a = get_target("lava-fixed-lif").run(g, x)
    b = get_target("hw_sim-lif").run(g, x)
    assert all(np.array_equal(p, q) for p, q in zip(a.trains, b.trains))
    with pytest.raises(TargetError, match="only 0 and 1"):
        get_target("lava-fixed-lif").run(g, x * 2)


def test_hw_sim_matches_lava_where_the_conv_sum_wraps_and_the_input_overflows():
    """Calibrated on silent inputs, then driven by dense ones: the Conv's 24-bit sum wraps, a_in leaves 16 bits,
    u wraps and v saturates; hw_sim still equals lava-fixed bit for bit and counts the events."""
    from toolchain.ir import LIF, Conv2d, ConvTranspose2d, Graph, Input, Readout

    nodes = {"input": Input(16 * 64), "c": Conv2d(np.ones((2, 16, 5, 5)), (16, 8, 8)), "l": LIF(32, 0.9),
             "t": ConvTranspose2d(np.full((2, 1, 3, 3), -0.5), (2, 4, 4)), "out": Readout(36, 0.9)}
    order = list(nodes)
    g = Graph(nodes, tuple(zip(order[:-1], order[1:])), "steps")
    cc = compile_conv_graph(g, 6, range_mode="calibrated", calibration_spikes=np.zeros((1, 6, 1024), np.uint8))
    x = (np.random.default_rng(4).random((2, 6, 1024)) < 0.9).astype(np.uint8)
    trains, pots, events = run_conv_fixed(cc, x, threads=1)
    assert events[0]["a_in_over_16bit"] > 0 and events[0]["u_wrapped"] > 0
    fixed = get_target("lava-fixed-lif").run(cc, x)
    assert all(np.array_equal(a, b) for a, b in zip(trains, fixed.trains))
    np.testing.assert_array_equal(pots[-1], fixed.potentials[-1])
