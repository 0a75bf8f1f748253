"""Steps (LIF) family behind the target interface: the first-spike view, the 'float' reference target and
'brian2-lif' (Brian2, numpy codegen) against toolchain.lif_reference.simulate."""
from __future__ import annotations

import numpy as np
import pytest

from targets.base import (RunResult, first_spike_steps, steps_graph, steps_result, times_to_trains,
                          trains_to_times)
from targets.brian2_lif import Brian2LifTarget
from targets.registry import get_target, steps_target_name
from toolchain.errors import TargetError
from toolchain.ir import LIF, Readout, lif_chain
from toolchain.lif_reference import simulate


def random_graph(seed: int, sizes=(20, 12, 20), **lif) -> object:
    rng = np.random.default_rng(seed)
    ws = [rng.uniform(-0.3, 0.6, (b, a)) for a, b in zip(sizes[:-1], sizes[1:])]
    return lif_chain(ws, [LIF(b, **lif) for b in sizes[1:]])


def bernoulli(seed: int, n: int, t: int, n_in: int, p: float = 0.3) -> np.ndarray:
    return (np.random.default_rng(seed).uniform(size=(n, t, n_in)) < p).astype(np.uint8)


def test_first_spike_view_and_alpha_times_to_trains_round_trip():
    tr = np.zeros((2, 5, 3), np.uint8)
    tr[0, 2, 0] = tr[0, 4, 0] = tr[1, 0, 2] = 1
    np.testing.assert_array_equal(first_spike_steps(tr), [[2, np.inf, np.inf], [np.inf, np.inf, 0]])
    times = np.array([[0.0, 0.26, np.inf], [0.49, 0.5, 0.99]])          # model time units, S = 4 steps/unit
    trains = times_to_trains(times, 4, 3)                                 # steps 0, 1, -, 1, 2, (3: dropped)
    assert trains.shape == (2, 3, 3) and trains.sum() == 4
    np.testing.assert_array_equal(trains_to_times(trains, 4), [[0.0, 0.25, np.inf], [0.25, 0.5, np.inf]])
    with pytest.raises(ValueError, match="NaN or negative"):
        times_to_trains(np.array([[-1.0]]), 4, 3)
    alpha = RunResult("exact", [times], None, 0.0)                       # an alpha result, viewed as trains
    np.testing.assert_array_equal(alpha.spike_trains(4, 3)[0], trains)
    with pytest.raises(ValueError, match="pass steps_per_unit"):
        alpha.spike_trains()
    steps = steps_result("float", [trains], 0.0)
    assert steps.spike_trains()[0] is steps.trains[0]
    np.testing.assert_array_equal(steps.times[0], [[0, 1, np.inf], [1, 2, np.inf]])


def test_float_target_is_the_reference_through_the_interface():
    g = random_graph(0, leak=0.9, clamp=True)
    x = bernoulli(1, 6, 10, 20)
    res = get_target("float").run(g, x)
    ref = simulate(g, x)
    assert res.target == "float" and res.info["populations"] == ["layer0", "layer1"]
    for a, b, va, vb, t in zip(ref.spikes, res.trains, ref.potentials, res.potentials, res.times):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(va, vb)
        np.testing.assert_array_equal(t, first_spike_steps(a))
    assert any(tr.sum() > 0 for tr in res.trains)


@pytest.mark.parametrize("name", ["float", "brian2-lif"])
def test_steps_targets_refuse_bad_inputs_and_alpha_networks(name):
    g = random_graph(0, leak=0.9)
    target = get_target(name, **({"codegen": "numpy"} if name == "brian2-lif" else {}))
    with pytest.raises(TargetError, match=r"shape \(samples, steps, 20\)"):
        target.run(g, np.zeros((3, 20)))
    with pytest.raises(TargetError, match="only 0 and 1"):
        target.run(g, np.full((1, 4, 20), 2))
    with pytest.raises(TargetError, match="runs steps"):
        target.run(object(), np.zeros((1, 4, 20)))


def test_steps_graph_accepts_a_compiled_form_carrying_the_graph():
    g = random_graph(0, leak=0.9)

    class Compiled:
        graph = g

    assert steps_graph(Compiled()) is g
    assert steps_target_name("brian2") == "brian2-lif" and steps_target_name("exact") == "float"
    assert steps_target_name("lava-fixed") == "lava-fixed-lif" and steps_target_name("hil") == "hil"


CONFIGS = {
    "roy-clamp": dict(leak=0.9, clamp=True),
    "subtract-strict": dict(leak=0.8, reset="subtract", strict=True),
    "no-leak-vth2": dict(leak=1.0, v_th=2.0),
}


@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
def test_brian2_lif_reproduces_the_float_model_exactly(config):
    """Random 20-12-8-20 nets, 23 samples: 4 side by side (max_synapses) x 6 windows, one Brian2 Network."""
    g = random_graph(3, sizes=(20, 12, 8, 20), **CONFIGS[config])
    x = bernoulli(4, 23, 15, 20, p=0.4)
    ref = simulate(g, x)
    res = Brian2LifTarget(codegen="numpy", max_synapses=4 * 496).run(g, x)
    assert res.info["chunk"] == 4 and res.info["windows"] == 6
    total = 0
    for l, (a, b) in enumerate(zip(ref.spikes, res.trains)):
        assert b.shape == a.shape and b.dtype == np.uint8
        assert np.array_equal(a, b), f"layer {l}: {int((a != b).sum())} of {int(a.sum())} spikes differ"
        total += int(a.sum())
    assert total > 500      # the comparison is not vacuous


def test_brian2_lif_starts_every_sample_from_rest():
    """A subtract-reset neuron driven far above threshold on the last step keeps firing after the window; the
    next sample (same window slot, next window) must start from V = 0 and see no spikes in flight."""
    g = lif_chain([np.array([[3.5]]), np.array([[1.0]])], [LIF(1, leak=1.0, reset="subtract"), LIF(1, leak=1.0)])
    x = np.zeros((3, 4, 1), np.uint8)
    x[0, 3, 0] = 1          # sample 0: one input on its last step -> V = 3.5 -> spike at step 3 only (T = 4)
    x[2, 0, 0] = 1
    res = Brian2LifTarget(codegen="numpy", max_synapses=1).run(g, x)
    assert res.info["chunk"] == 1 and res.info["windows"] == 3
    ref = simulate(g, x)
    for a, b in zip(ref.spikes, res.trains):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(res.trains[0][:, :, 0], [[0, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 0]])
    np.testing.assert_array_equal(res.trains[1][:, :, 0], [[0, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 0]])


def test_brian2_lif_runs_a_readout_population_without_spikes():
    rng = np.random.default_rng(5)
    g = lif_chain([rng.uniform(-0.3, 0.6, (6, 10)), rng.uniform(-1, 1, (4, 6))], [LIF(6, leak=0.9), Readout(4, 0.9)])
    x = bernoulli(6, 5, 8, 10, p=0.5)
    res = Brian2LifTarget(codegen="numpy").run(g, x)
    ref = simulate(g, x)
    np.testing.assert_array_equal(res.trains[0], ref.spikes[0])
    assert res.trains[1].shape == (5, 8, 4) and res.trains[1].sum() == 0


@pytest.mark.parametrize("seed", range(6))
def test_brian2_lif_passes_the_verifier_gate_on_random_lif_variants(seed):
    """Random leak, threshold, reset, clamp and strictness per layer; samples side by side and in windows."""
    from toolchain.verify_trains import verify_steps

    rng = np.random.default_rng(100 + seed)
    sizes = [int(v) for v in rng.integers(3, 25, size=int(rng.integers(2, 5)))]
    pops = []
    for n in sizes[1:]:
        clamp = bool(rng.integers(2))           # clamp with a strict test never fires: not a useful case
        pops.append(LIF(n, leak=float(rng.uniform(0.5, 1.0)), v_th=float(rng.uniform(0.5, 2.0)),
                        reset=str(rng.choice(["zero", "subtract"])), clamp=clamp,
                        strict=not clamp and bool(rng.integers(2))))
    ws = [rng.uniform(-0.4, 0.8, (b, a)) * p.v_th for a, b, p in zip(sizes[:-1], sizes[1:], pops)]
    g = lif_chain(ws, pops)
    x = bernoulli(seed, 17, int(rng.integers(5, 30)), sizes[0], p=float(rng.uniform(0.1, 0.6)))
    budget = 5 * sum(int(np.count_nonzero(w)) for w in ws)
    rep = verify_steps(g, x, targets=[Brian2LifTarget(codegen="numpy", max_synapses=budget)])
    assert rep.passed, rep.summary()
    assert all(s.fraction[0] == 1.0 for s in rep.targets[0].layers), rep.summary()
    assert all(s.n_reference > 0 for s in rep.targets[0].layers), rep.summary()


def test_brian2_lif_edge_cases_no_input_one_step_and_all_zero_weights():
    g = lif_chain([np.full((2, 3), 0.6), np.zeros((2, 2))], [LIF(2, 0.9), LIF(2, 0.9)])
    target = Brian2LifTarget(codegen="numpy")
    for x in (np.zeros((2, 4, 3), np.uint8), np.ones((1, 1, 3), np.uint8), np.ones((3, 5, 3), np.uint8)):
        res, ref = target.run(g, x), simulate(g, x)
        for a, b in zip(ref.spikes, res.trains):
            np.testing.assert_array_equal(a, b)
    assert res.trains[0].sum() == 30 and res.trains[1].sum() == 0


def test_brian2_lif_refuses_bad_options_by_name():
    with pytest.raises(TargetError, match="unknown brian2 codegen"):
        Brian2LifTarget(codegen="cpp")
    with pytest.raises(TargetError, match="max_synapses"):
        Brian2LifTarget(max_synapses=0)


# ---- hw_sim-lif's fast kernel (hw_sim/lif.py) against its plain reference loop and against real Lava ----------

def hand_compiled(seed: int, sizes, bits: int, exps, dvs, vth_range=(200, 131071), negative: bool = False):
    """A CompiledSteps with random integer fields (compile_graph's float fields, then mantissas, exponents, decays
    and thresholds replaced), reaching ranges the compiler would refuse: sums beyond 16 bits, u wraps, v
    saturation at both ends. negative: every weight <= 0."""
    import dataclasses

    from toolchain.quantize import MANTISSA
    from toolchain.steps_compiler import compile_graph

    rng = np.random.default_rng(seed)
    cs = compile_graph(random_graph(seed, sizes=sizes, leak=0.9), 64)
    lo, hi, step = MANTISSA[bits]
    layers = []
    for cl, e, dv in zip(cs.layers, exps, dvs):
        w = step * rng.integers(lo // step, hi // step + 1, cl.weights.shape)
        w[rng.random(w.shape) < 0.5] //= 16                                   # mostly small, some large
        w -= w % step
        w = -np.abs(w) if negative else w
        layers.append(dataclasses.replace(cl, weights=w.astype(np.int32), weight_exp=e, num_weight_bits=bits,
                                          dv=dv, vth=rng.integers(*vth_range, cl.n_out).astype(np.int64),
                                          fine_weights=None))
    return dataclasses.replace(cs, layers=tuple(layers))


FAST_CASES = {
    # name: (sizes, bits, weight_exp per layer, dv per layer, p of the input, vth range)
    "8bit-int8-rows-three-layers": ((37, 29, 13, 21), 8, (-1, 0, 2), (410, 0, 1000), 0.3, (200, 5000)),
    "9bit-int16-rows": ((40, 17, 33), 9, (0, 1), (300, 4095), 0.4, (100, 3000)),
    "wide-input-32bit-sums": ((300, 12, 9), 8, (7, 3), (0, 200), 0.95, (1000, 131071)),
    "wide-input-32bit-sums-quiet-update": ((300, 12, 9), 8, (-1, 0), (0, 200), 0.95, (100, 3000)),
    "saturation-low-on-quiet-steps": ((16, 8), 8, (3,), (0,), 0.5, (1000, 100000)),
}


@pytest.mark.parametrize("case", list(FAST_CASES), ids=list(FAST_CASES))
def test_hw_sim_fast_kernel_equals_the_reference_loop(case):
    """Every path of the fused kernel (int8 / int16 rows, 32-bit sums, quiet and checked LIF updates, u wrap, v
    saturation, inputs not a multiple of 8 wide, bool input, 1 and 3 threads) against run_lif_reference (Lava's
    integer equations as a plain loop): trains, first-spike steps and range events."""
    from hw_sim.lif import run_lif_reference, simulate_lif
    from targets.base import first_spike_steps

    sizes, bits, exps, dvs, p, vth = FAST_CASES[case]
    cs = hand_compiled(len(case), sizes, bits, exps, dvs, vth, negative=case.startswith("saturation"))
    x = bernoulli(7, 9, 23, sizes[0], p=p)
    ref, ref_events = run_lif_reference(cs, x)
    for threads, xin in ((1, x), (3, x.astype(bool))):
        run = simulate_lif(cs, xin, threads=threads)
        assert run.threads == threads
        for l, (a, b, f) in enumerate(zip(ref, run.trains, run.first)):
            assert np.array_equal(a, b), f"layer {l}: {int((a != b).sum())} entries differ"
            np.testing.assert_array_equal(f, first_spike_steps(a))
        assert run.events == ref_events
    assert case.startswith("saturation") or sum(int(t.sum()) for t in ref) > 20     # not vacuous
    if case == "wide-input-32bit-sums":
        assert x[:, :, :].sum(axis=2).max() * 128 > 2**15 - 1          # the 32-bit path ran
        assert ref_events[0]["a_in_over_16bit"] > 0 and ref_events[0]["u_wrapped"] > 0
    if case == "saturation-low-on-quiet-steps":
        assert ref_events[0]["v_saturated_low"] > 0 and ref_events[0]["a_in_over_16bit"] == 0


def test_hw_sim_fast_kernel_is_lava_fixed_bit_for_bit_on_every_path():
    """Real Lava (stock Dense + LIFReset, fixed point) against hw_sim-lif through the registry on a hand-built
    network that takes the int8 rows, the 32-bit sums (300 inputs at p = 0.95), the checked update (u wraps) and
    the quiet one."""
    from hw_sim.lif import run_lif_reference

    cs = hand_compiled(3, (300, 12, 9), 8, (7, 2), (0, 410), (100, 3000))
    x = bernoulli(8, 3, 12, 300, p=0.95)
    x[1] = bernoulli(9, 1, 12, 300, p=0.05)[0]                       # a sparse sample: quiet steps
    lava = get_target("lava-fixed-lif").run(cs, x)
    hw = get_target("hw_sim-lif", threads=2).run(cs, x)
    for a, b, ta, tb in zip(lava.trains, hw.trains, lava.times, hw.times):
        assert np.array_equal(a, b)
        np.testing.assert_array_equal(ta, tb)
    assert all(t.sum() > 0 for t in hw.trains)
    events = hw.info["range_events"]
    assert events[0]["u_wrapped"] > 0 and events == run_lif_reference(cs, x)[1]


def test_lava_fixed_runs_the_second_weight_block_like_hw_sim():
    """A layer compiled with two Dense blocks (coarse weights + rounding residuals, weight_blocks=2): Lava gets a
    second stock Dense into the same LIF and its spikes equal hw_sim-lif's."""
    from test_steps_compiler import wide_net

    from toolchain.steps_compiler import compile_graph

    g = wide_net()
    xc = bernoulli(2, 40, 20, 100, p=0.05)
    cs = compile_graph(g, 20, range_mode="calibrated", calibration_spikes=xc)
    assert any(cl.fine_weights is not None for cl in cs.layers)
    x = bernoulli(9, 4, 20, 100, p=0.05)
    lava = get_target("lava-fixed-lif").run(cs, x)
    hw = get_target("hw_sim-lif").run(cs, x)
    assert all(np.array_equal(a, b) for a, b in zip(lava.trains, hw.trains))
    assert all(t.sum() > 0 for t in hw.trains)


@pytest.mark.parametrize("name", ["hw_sim-lif", "lava-fixed-lif"])
def test_fixed_point_lif_targets_refuse_bad_input_by_name_before_running(name):
    """Ragged nested inputs, values other than 0/1 in any dtype, a LIF the stock process cannot run (reset by
    subtraction) and a network of the wrong family: a TargetError naming the target and the fix, before any Lava process starts."""
    from toolchain.steps_compiler import compile_graph

    g = random_graph(0, leak=0.9)
    cs = compile_graph(g, 10)
    target = get_target(name)
    with pytest.raises(TargetError, match=f"{name}: .*same number of steps"):
        target.run(cs, [np.zeros((10, 20)), np.zeros((9, 20))])
    for bad in (np.full((1, 10, 20), np.nan), np.full((1, 10, 20), -1, np.int8),
                np.full((1, 10, 20), 256, np.uint16), np.full((1, 10, 20), 2, np.uint8)):
        with pytest.raises(TargetError, match=f"{name}: input spike trains must hold only 0 and 1"):
            target.run(cs, bad)
    subtract = random_graph(1, leak=0.9, reset="subtract")          # stock LIF resets to zero only
    with pytest.raises(TargetError, match=f"{name}: .*reset 'subtract' cannot run on Lava's stock LIF"):
        target.run(subtract, np.zeros((1, 10, 20), np.uint8))
    with pytest.raises(TargetError, match="expected a CompiledSteps"):
        target.run(object(), np.zeros((1, 10, 20), np.uint8))
    res = target.run(cs, np.ones((2, 10, 20), dtype=bool))                          # bool trains are fine
    assert [t.shape for t in res.trains] == [(2, 10, 12), (2, 10, 20)]
