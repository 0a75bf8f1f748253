"""NeuroBench metrics and the Loihi energy/latency estimate of hw_sim/energy.py."""
from __future__ import annotations

import numpy as np
import pytest

from compiled_factory import make_compiled
from hw_sim.energy import (LAYER_CONSTANT_BITS, LOIHI1_COSTS, NEURON_CONSTANT_BITS, ActivityCounters,
                           counters_from_spikes, estimate, format_energy_table, static_metrics)
from toolchain.errors import SnncError


def test_counters_from_spikes_counts_events_times_nonzero_fanout():
    net = make_compiled((12, 6, 4), n_pulses=2)
    l0, l1 = net.layers
    x = np.full((2, 12), -1, np.int64)
    x[0, [0, 1, 7]] = [3, 5, 9]                         # sample 1: no input spikes at all
    h = np.full((2, 6), -1, np.int64)
    h[0, [2, 4]] = [20, 21]
    o = np.full((2, 4), -1, np.int64)
    o[0, 1] = 30
    c = counters_from_spikes(net, x, [h, o])
    pulses0 = int((l0.pulse_weights != 0).sum())
    fan0 = (l0.weights != 0).sum(0)
    assert c.synaptic_ops[0, 0] == fan0[[0, 1, 7]].sum() + pulses0
    assert c.synaptic_ops[1, 0] == pulses0
    assert c.synaptic_ops[0, 1] == (l1.weights != 0).sum(0)[[2, 4]].sum() + int((l1.pulse_weights != 0).sum())
    assert c.spikes.tolist() == [[2, 1], [0, 0]]
    assert c.neuron_updates.tolist() == [[6 * net.window, 4 * net.window]] * 2
    assert c.steps.tolist() == [net.window] * 2
    with pytest.raises(SnncError, match="expected"):
        counters_from_spikes(net, x[:, :5], [h, o])


def test_estimate_arithmetic_and_neurobench_metrics():
    net = make_compiled((12, 6, 4), n_pulses=1)
    w = net.window
    c = ActivityCounters(synaptic_ops=[[10, 5], [0, 0]], neuron_updates=[[6 * w, 4 * w]] * 2,
                         spikes=[[3, 2], [0, 0]], steps=[w, w],
                         active_neuron_updates=[[100, 50], [0, 0]])
    rep = estimate(net, c)
    k = LOIHI1_COSTS
    e0 = 15 * k.synop_pj + 150 * k.neuron_active_pj + (10 * w - 150) * k.neuron_inactive_pj + 5 * k.spike_tile_pj
    e1 = 10 * w * k.neuron_inactive_pj
    assert np.allclose(rep.energy_pj, [e0, e1])
    # one core per layer: latency = barrier per step + serial work
    lat1 = w * k.barrier_ns + 10 * w * k.neuron_inactive_ns
    assert np.isclose(rep.latency_ns[1], lat1)
    m = rep.metrics
    assert m["synaptic_operations"]["Dense"] == (13 * 6 + 7 * 4) * w
    assert m["synaptic_operations"]["Effective_ACs"] == 7.5
    assert np.isclose(m["activation_sparsity"], 1 - (5 / (10 * w) + 0) / 2)
    nz = sum(int((np.hstack([L.weights, L.pulse_weights]) != 0).sum()) for L in net.layers)
    assert np.isclose(m["connection_sparsity"], 1 - nz / (13 * 6 + 7 * 4))
    assert m["footprint"] == ((13 * 6 + 7 * 4) * 8 + 2 * LAYER_CONSTANT_BITS + (6 + 4) * NEURON_CONSTANT_BITS) / 8
    assert static_metrics(net)["footprint"] == m["footprint"]
    d = rep.to_dict()
    assert d["caveats"] and "Davies" in d["sources"][0] and d["energy_per_sample_nJ"]["max"] == e0 / 1e3


def test_no_active_split_charges_all_updates_as_active():
    net = make_compiled((4, 3))
    c = ActivityCounters([[2]], [[3 * net.window]], [[1]], [net.window])
    rep = estimate(net, c)
    assert np.isclose(rep.breakdown_pj["neuron"], 3 * net.window * LOIHI1_COSTS.neuron_active_pj)


def test_format_energy_table_prints_sources_and_caveats_beside_numbers():
    net = make_compiled((12, 6, 4))
    x = np.array([[0, 2, -1, 4, 5, -1, 7, 8, 9, -1, 1, 3]], np.int64)
    c = counters_from_spikes(net, x, [np.array([[20, -1, 22, -1, -1, 25]]), np.array([[-1, 40, -1, -1]])])
    text = format_energy_table(estimate(net, c))
    for word in ("footprint", "connection_sparsity", "activation_sparsity", "Effective_ACs", "Dense",
                 "energy (estimate)", "latency (estimate)", "sources:", "Davies", "caveats:", "Loihi 2"):
        assert word in text


def test_bad_counters_are_clear_errors():
    with pytest.raises(SnncError, match="same"):
        ActivityCounters([[1, 2]], [[1]], [[1, 2]], [3])
    net = make_compiled((4, 3))
    with pytest.raises(SnncError, match="layers"):
        estimate(net, ActivityCounters([[1, 2]], [[1, 2]], [[1, 2]], [3]))


def test_spike_derived_counters_agree_with_the_emulator():
    """hw_sim's own counters and the counters implied by its reported spikes are the same activity."""
    from hw_sim.emulator import simulate

    net = make_compiled((12, 6, 4), n_pulses=2, seed=4)
    rng = np.random.default_rng(2)
    x = np.where(rng.uniform(size=(8, 12)) < 0.7, rng.integers(0, net.window // 2, (8, 12)), -1)
    res = simulate(net, x)
    mine = counters_from_spikes(net, x, res.columns)
    sim = res.activity()
    assert sum(int(c.sum()) for c in mine.spikes) > 0
    np.testing.assert_array_equal(mine.spikes, sim.spikes)
    np.testing.assert_array_equal(mine.synaptic_ops, sim.synaptic_ops)
    np.testing.assert_array_equal(mine.neuron_updates, sim.neuron_updates)
    np.testing.assert_array_equal(mine.steps, sim.steps)
    assert np.all(sim.active_neuron_updates <= sim.neuron_updates)
    e = estimate(net, sim)
    assert e.breakdown_pj["neuron"] < estimate(net, mine).breakdown_pj["neuron"]  # active/inactive split used


def test_model_activity_and_estimate_model_work_without_compiling():
    from hw_sim.energy import estimate_model, model_activity, model_static_metrics
    from models.exact import exact_forward

    net = make_compiled((12, 6, 4), n_pulses=2).source
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (5, 12))
    x[rng.random(x.shape) < 0.3] = np.inf
    W = 50
    c = model_activity(net, x, W)
    outs = exact_forward(net, x)
    spikes = np.stack([np.isfinite(o).sum(1) for o in outs], axis=1)
    np.testing.assert_array_equal(c.spikes, spikes)
    fan0 = np.count_nonzero(net.layers[0].weights, axis=0)
    np.testing.assert_array_equal(c.synaptic_ops[:, 0], np.isfinite(x) @ fan0 + np.count_nonzero(
        net.layers[0].pulse_weights))
    assert c.neuron_updates.tolist() == [[6 * W, 4 * W]] * 5 and c.active_neuron_updates is None
    rep = estimate_model(net, x, W)
    # the same arithmetic as estimate() on a compiled network: synaptic + neuron + spike energy
    e = (c.synaptic_ops.sum(1) * LOIHI1_COSTS.synop_pj + c.neuron_updates.sum(1) * LOIHI1_COSTS.neuron_active_pj
         + c.spikes.sum(1) * LOIHI1_COSTS.spike_tile_pj)
    np.testing.assert_allclose(rep.energy_pj, e)
    assert rep.resources.cores == 2 and not rep.resources.violations
    assert model_static_metrics(net)["footprint"] == rep.metrics["footprint"]
    with pytest.raises(SnncError, match="input_times must have shape"):
        model_activity(net, x[:, :3], W)


def test_compiled_summary_for_reports_never_raises_on_design_rules():
    import dataclasses

    from hw_sim.emulator import simulate
    from hw_sim.energy import compiled_summary
    from hw_sim.resources import LOIHI2

    net = make_compiled((12, 6, 4), n_pulses=2)
    rng = np.random.default_rng(1)
    cols = rng.integers(0, 10, (4, 12))
    res = simulate(net, cols)
    s = compiled_summary(net, res.counters())
    assert s["resources"]["cores"] == 2 and s["resources"]["fits"]
    assert s["energy"]["metrics"]["samples"] == 4 and s["energy"]["energy_per_sample_nJ"]["mean"] > 0
    tiny = dataclasses.replace(LOIHI2, name="tiny", max_fan_in_axons=10)
    s = compiled_summary(net, res.activity(), chip=tiny)
    assert not s["resources"]["fits"] and "fan-in" in s["resources"]["violations"][0] and "energy" in s
    assert "energy" not in compiled_summary(net)


def test_model_activity_drops_spikes_after_the_window():
    from hw_sim.energy import model_activity
    from models.exact import exact_forward

    net = make_compiled((12, 6, 4), n_pulses=2).source
    x = np.random.default_rng(2).uniform(0, 1, (4, 12))
    outs = exact_forward(net, x)
    S, W = 16, 10  # reported columns up to 9: times <= 9 / 16
    c = model_activity(net, x, W, steps_per_unit=S)
    np.testing.assert_array_equal(c.spikes, np.stack([(o <= (W - 1) / S).sum(1) for o in outs], axis=1))
    assert c.spikes.sum() < model_activity(net, x, W).spikes.sum()
