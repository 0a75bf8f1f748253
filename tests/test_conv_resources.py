"""Resource model of convolutional networks (hw_sim/conv_resources.py, issue [F]): shared-kernel versus expanded
synapse storage, cores per layer, design-rule errors for what does not fit, energy from run counters."""
from __future__ import annotations

import numpy as np
import pytest

from conv_nets import conv_autoencoder, input_trains
from hw_sim.conv import run_conv_fixed
from hw_sim.conv_resources import conv_counters, conv_energy, conv_partition, fanout_nonzero, format_conv_storage
from hw_sim.resources import LOIHI2
from toolchain.conv_compiler import compile_conv_graph
from toolchain.errors import DRCError
from toolchain.ir import LIF, Conv2d, ConvTranspose2d, Dense, Flatten, Graph, Input, Readout
from toolchain.lif_reference import synapse_current


def paper_shape(rng) -> Graph:
    """Hübotter et al.'s layer sizes (weights small enough for worst-case ranges)."""
    c = lambda co, ci: rng.normal(0, 0.05, (co, ci, 5, 5))  # noqa: E731
    nodes = {"input": Input(784), "conv0": Conv2d(c(16, 1), (1, 28, 28)), "lif0": LIF(9216, 0.99),
             "conv1": Conv2d(c(32, 16), (16, 24, 24)), "lif1": LIF(12800, 0.99), "flat": Flatten((32, 20, 20)),
             "enc": Dense(rng.normal(0, 0.002, (100, 12800))), "latent": LIF(100, 0.99),
             "dec": Dense(rng.normal(0, 0.05, (12800, 100))), "lif2": LIF(12800, 0.99),
             "up0": ConvTranspose2d(c(32, 16), (32, 20, 20)), "lif3": LIF(9216, 0.99),
             "up1": ConvTranspose2d(c(16, 1), (16, 24, 24)), "out": Readout(784, 0.99)}
    order = list(nodes)
    return Graph(nodes, tuple(zip(order[:-1], order[1:])), "steps", {"p_scale": 0.2})


def test_fanout_counts_the_synapses_each_spike_reaches():
    cc = compile_conv_graph(conv_autoencoder(np.random.default_rng(0)), 12, weight_blocks=1)   # two: test_conv_deploy
    for cl in cc.layers:
        one_hot = synapse_current(cl.synapse_node(cl.effective.astype(np.float64)), np.eye(cl.n_in))
        np.testing.assert_array_equal(fanout_nonzero(cl), (one_hot != 0).sum(axis=1))


def test_paper_shape_partition_and_the_latent_fan_in_rule():
    cc = compile_conv_graph(paper_shape(np.random.default_rng(1)), 20, weight_blocks=1, max_fan_in=None)  # unsplit
    with pytest.raises(DRCError, match="layer 'latent': fan-in of 12800 input axons exceeds"):
        conv_partition(cc, LOIHI2)
    shared, stores = conv_partition(cc, LOIHI2, strict=False)
    assert len(shared.violations) == 1 and "split the layer's fan-in" in shared.violations[0]
    by = {s.name: s for s in stores}
    assert by["lif1"].kernel_weights == 32 * 16 * 25 and by["lif1"].expanded_synapses == 12800 * 16 * 25
    for s in stores:
        if s.kind != "dense":      # the shared kernel is far smaller than the expanded synapses
            assert s.shared_bits < s.expanded_bits / 10
    for r in shared.layers:
        assert r.neurons_per_core <= LOIHI2.neurons_per_core and r.out_axons_per_core <= LOIHI2.max_fan_out_axons
        if r.name != "latent":
            assert r.fan_in <= LOIHI2.max_fan_in_axons
    expanded, _ = conv_partition(cc, LOIHI2, strict=False, storage="expanded")
    assert expanded.cores > shared.cores and expanded.synaptic_memory_bits > shared.synaptic_memory_bits
    assert "shared KiB" in format_conv_storage(stores)


def test_a_convolution_too_wide_for_a_core_is_a_drc_error():
    g = Graph({"input": Input(130 * 130), "c": Conv2d(np.full((1, 1, 40, 1), 0.01), (1, 130, 130)),
               "l": LIF(91 * 130, 0.9)}, (("input", "c"), ("c", "l")), "steps")
    cc = compile_conv_graph(g, 10)
    with pytest.raises(DRCError, match=r"layer 'l': even the smallest tile .* 5200 input axons"):
        conv_partition(cc, LOIHI2)
    with pytest.raises(DRCError, match="storage="):
        conv_partition(cc, LOIHI2, storage="dense")


def test_energy_from_run_counters():
    rng = np.random.default_rng(2)
    cc = compile_conv_graph(conv_autoencoder(rng), 12)
    x = input_trains(rng, n=3)
    trains, _, _ = run_conv_fixed(cc, x, threads=1)
    c = conv_counters(cc, x, trains)
    want = x.sum(axis=1) @ fanout_nonzero(cc.layers[0])
    np.testing.assert_array_equal(c.synaptic_ops[:, 0], want)
    assert np.all(c.spikes[:, -1] == 0) and np.all(c.neuron_updates[:, 0] == cc.layers[0].n_out * 12)
    rep = conv_energy(cc, x, trains)
    d = rep.to_dict()
    assert d["energy_per_sample_nJ"]["mean"] > 0 and d["metrics"]["storage"] == "shared"
    assert 0 < d["metrics"]["connection_sparsity"] < 0.1
