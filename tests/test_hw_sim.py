"""hw_sim: bit-accurate emulator of lava-fixed.

Three oracles: Lava's own weight utilities, an independent numpy replica of the Lava process graph (global time
steps, ring-buffer source, Dense delay, LIFReset offsets; written from the Lava 0.10.0 sources), and real Lava
runs through targets.lava.LavaFixedTarget (tiny networks, several samples per run).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hw_sim.emulator import lava_dense_weights, pack, simulate, simulate_events
from models.network import AlphaLayer, TemporalNetwork
from toolchain.compiled import CompiledLayer, CompiledNetwork
from toolchain.errors import CompileError, TargetError


# ------------------------------------------------------------------------------------------------------------
# builders
# ------------------------------------------------------------------------------------------------------------

def make_net(rng, sizes, window, *, once=True, w_scale=60, wexp=0, vth=None, D=None, n_pulses=1,
             nwb=8) -> CompiledNetwork:
    """A CompiledNetwork built directly (no compiler range checks): random integer weights and constants."""
    layers, src_layers = [], []
    once_list = once if isinstance(once, (list, tuple)) else [once] * (len(sizes) - 1)
    for l in range(len(sizes) - 1):
        n_in, n_out = sizes[l], sizes[l + 1]
        w = np.rint(rng.normal(w_scale * 0.4, w_scale, (n_out, n_in))).astype(np.int32)
        ps = rng.integers(0, window - 1, n_pulses).astype(np.int64)
        pw = np.rint(rng.normal(w_scale * 0.5, w_scale, (n_out, n_pulses))).astype(np.int32)
        d = int(D if D is not None else rng.integers(20, 900))
        pexp = {"pulse_weight_exp": int(rng.integers(0, wexp + 2))}
        layers.append(CompiledLayer(
            name=f"layer{l}", weights=w, pulse_weights=pw, pulse_steps=ps, weight_exp=wexp,
            du=max(d - 1, 0), dv=d, vth=int(vth if vth is not None else rng.integers(50, 3000)),
            once=once_list[l], weights_float=w.astype(float), pulse_weights_float=pw.astype(float),
            du_float=d / 4096, dv_float=d / 4096, vth_float=1.0, num_weight_bits=nwb, **pexp))
        src_layers.append(AlphaLayer(np.zeros((n_out, n_in)), np.zeros(n_pulses), np.zeros((n_out, n_pulses))))
    src = TemporalNetwork(tuple(src_layers), tau=1.0, theta=1.0, latency=1.0)
    return CompiledNetwork(steps_per_unit=8, window=window, layers=tuple(layers), source=src)


def random_columns(rng, n, n_in, window, p_spike=0.6, last=None):
    last = window - 1 if last is None else last
    cols = rng.integers(0, last + 1, (n, n_in)).astype(np.int64)
    cols[rng.random((n, n_in)) > p_spike] = -1
    return cols


# ------------------------------------------------------------------------------------------------------------
# independent replica of the lava-fixed process graph (targets/lava.py, docs/compiled-format.md section 4):
# global time steps, RingBuffer sources, Dense (sign_mode MIXED) with one step of delay, OnceLIF with
# reset_offset 2 and last-update suppression, all neurons every step, no event skipping
# ------------------------------------------------------------------------------------------------------------

def pulse_exp(ly: CompiledLayer) -> int:
    return ly.pulse_exp


def _dense_shift(a, e):
    return np.left_shift(a, e) if e > 0 else np.right_shift(a, -e)  # PyDenseModelBitAcc


def _i32(x):
    return np.asarray(x, dtype=np.int64).astype(np.int32).astype(np.int64)  # numpy wrap, like Lava's buffers


def lava_replica(net: CompiledNetwork, cols: np.ndarray):
    """Global-time simulation of K samples back to back, mirroring PyDenseModelBitAcc + PyLifResetModelBitAcc.

    Returns per-layer first columns (K, n_l), spike counts (K, n_l) and the spike list [(sample, column, neuron)].
    """
    K, W, L = cols.shape[0], net.window, len(net.layers)
    T = K * W
    n_in0 = net.layers[0].n_in
    src = np.zeros((n_in0, K * W), bool)
    for k in range(K):
        for i in range(n_in0):
            if cols[k, i] >= 0:
                src[i, k * W + cols[k, i]] = True
    w_eff = [lava_dense_weights(ly.weights, ly.num_weight_bits, "mixed").astype(np.int64) for ly in net.layers]
    pw_eff = [lava_dense_weights(ly.pulse_weights, ly.num_weight_bits, "mixed").astype(np.int64)
              for ly in net.layers]
    psrc = []
    for ly in net.layers:
        p = np.zeros((ly.pulse_steps.size, K * W), bool)
        for k in range(K):
            p[np.arange(ly.pulse_steps.size), k * W + ly.pulse_steps] = True
        psrc.append(p)
    buf = [np.zeros(ly.n_out, np.int64) for ly in net.layers]
    pbuf = [np.zeros(ly.n_out, np.int64) for ly in net.layers]
    u = [np.zeros(ly.n_out, np.int64) for ly in net.layers]
    v = [np.zeros(ly.n_out, np.int64) for ly in net.layers]
    fired = [np.zeros(ly.n_out, bool) for ly in net.layers]
    first = [np.full((K, ly.n_out), -1, np.int64) for ly in net.layers]
    counts = [np.zeros((K, ly.n_out), np.int64) for ly in net.layers]
    events = [[] for _ in net.layers]
    for t in range(1, T + 1):
        x = src[:, (t - 1) % (K * W)]
        for l, ly in enumerate(net.layers):
            a_in = _i32(_i32(buf[l]) + _i32(pbuf[l]))
            buf[l] = _dense_shift(w_eff[l][:, x].sum(1), ly.weight_exp)  # Lava: sum, then shift (floor if < 0)
            pbuf[l] = _dense_shift(pw_eff[l][:, psrc[l][:, (t - 1) % (K * W)]].sum(1), pulse_exp(ly))
            if t % W == 2 % W:
                u[l][:] = 0
                v[l][:] = 0
                fired[l][:] = False
            p = u[l] * (4096 - (ly.du + 1))
            dec = _i32(np.sign(p) * (np.abs(p) >> 12))
            pre = _i32(dec + _i32(a_in << 6))
            wrapped = np.where(pre > 2**23, pre - 2**24, pre)
            wrapped = np.where(wrapped <= -(2**23), pre + 2**24, wrapped)
            u[l] = wrapped
            p = v[l] * (4096 - ly.dv)
            dv_ = _i32(np.sign(p) * (np.abs(p) >> 12))
            v[l] = np.clip(_i32(dv_ + u[l]), -(2**23) + 1, 2**23 - 1)
            s = v[l] > (ly.vth << 6)
            if t % W == 1 % W:
                s[:] = False
            if ly.once:
                s = s & ~fired[l]
                fired[l] |= s
            v[l][s] = 0
            k, c = divmod(t - 2, W)
            c += 1
            if 0 <= k < K:
                for j in np.nonzero(s)[0]:
                    if first[l][k, j] < 0:
                        first[l][k, j] = c
                    counts[l][k, j] += 1
                    events[l].append((k, c, j))
            x = s
    return first, counts, [np.array(e, np.int64).reshape(-1, 3) for e in events]


def assert_same_as_replica(net, cols):
    res, ev = simulate_events(net, cols)
    first, counts, rev = lava_replica(net, cols)
    fast = simulate(net, cols)
    for l in range(len(net.layers)):
        np.testing.assert_array_equal(res.columns[l], first[l], err_msg=f"layer {l} columns")
        np.testing.assert_array_equal(fast.columns[l], first[l], err_msg=f"layer {l} columns (parallel)")
        np.testing.assert_array_equal(res.spike_counts[l], counts[l], err_msg=f"layer {l} counts")
        np.testing.assert_array_equal(fast.spike_counts[l], counts[l])
        np.testing.assert_array_equal(ev[l][np.lexsort((ev[l][:, 2], ev[l][:, 1], ev[l][:, 0]))],
                                      rev[l][np.lexsort((rev[l][:, 2], rev[l][:, 1], rev[l][:, 0]))])
    for name, a in res.counters().items():
        np.testing.assert_array_equal(a, fast.counters()[name], err_msg=name)
    return res


# ------------------------------------------------------------------------------------------------------------
# unit tests against Lava's weight utilities and the replica
# ------------------------------------------------------------------------------------------------------------

def test_lava_dense_weights_match_lava_weightutils():
    from toolchain.lava_compat import install

    install()
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    rng = np.random.default_rng(0)
    for case in range(60):
        lo, hi = [(-400, 400), (0, 400), (-400, 0), (-3, 3)][case % 4]
        w = rng.integers(lo, hi + 1, (5, 7)).astype(np.int32)
        for nwb in (8, 7, 5, 1) + ((9,) if case % 4 in (0, 3) and w.min() < 0 < w.max() else ()):
            mode = determine_sign_mode(w)
            ref = truncate_weights(clip_weights(w, mode, num_bits=8), mode, nwb)
            np.testing.assert_array_equal(lava_dense_weights(w, nwb), ref)


def test_matches_replica_random_once_networks():
    rng = np.random.default_rng(1)
    for trial in range(12):
        sizes = [int(rng.integers(1, 9)) for _ in range(int(rng.integers(2, 4)))]
        W = int(rng.integers(len(sizes) + 2, 30))
        net = make_net(rng, sizes, W, wexp=int(rng.integers(0, 3)), n_pulses=int(rng.integers(0, 3)))
        cols = random_columns(rng, int(rng.integers(1, 6)), sizes[0], W)
        assert_same_as_replica(net, cols)


def test_matches_replica_multi_spike_layers():
    rng = np.random.default_rng(2)
    for trial in range(10):
        sizes = [int(rng.integers(1, 7)) for _ in range(3)]
        W = int(rng.integers(6, 40))
        once = [bool(rng.integers(0, 2)), bool(rng.integers(0, 2))]
        net = make_net(rng, sizes, W, once=once, w_scale=120, vth=int(rng.integers(20, 400)),
                       n_pulses=int(rng.integers(0, 3)))
        cols = random_columns(rng, 4, sizes[0], W)
        res = assert_same_as_replica(net, cols)
        if not once[0]:
            assert res.spike_counts[0].max() >= 1


def test_matches_replica_near_overflow():
    """u wraps (24 bits), v saturates, a_in exceeds 16 bits, int32 sums: huge weights with weight_exp."""
    rng = np.random.default_rng(3)
    wrapped = saturated = False
    for trial in range(10):
        sizes = [int(rng.integers(20, 60)), int(rng.integers(2, 6)), int(rng.integers(1, 4))]
        W = int(rng.integers(8, 25))
        net = make_net(rng, sizes, W, once=[False, bool(trial % 2)], w_scale=250, wexp=int(rng.integers(4, 9)),
                       vth=int(rng.integers(1000, 131071)), D=int(rng.integers(1, 60)), n_pulses=2)
        cols = random_columns(rng, 3, sizes[0], W, p_spike=0.9, last=2)
        assert_same_as_replica(net, cols)
        ly = net.layers[0]
        peak = np.abs(lava_dense_weights(ly.weights).astype(np.int64)).sum(1).max() << (ly.weight_exp + 6)
        wrapped |= peak > 2**23
        saturated |= peak > 2**24
    assert wrapped and saturated  # the cases really reach the limits


def test_pruning_is_exact_for_slow_decays():
    """No decay (D = 0 / du = 0) and tiny decays keep neurons live long after their last input."""
    rng = np.random.default_rng(4)
    for D in (0, 1, 2, 4095):
        net = make_net(rng, [6, 5, 4], 40, once=[True, False], w_scale=40, D=D, vth=200, n_pulses=1)
        cols = random_columns(rng, 5, 6, 40, last=5)
        assert_same_as_replica(net, cols)


def test_counters():
    rng = np.random.default_rng(5)
    net = make_net(rng, [7, 5, 3], 20, n_pulses=2)
    cols = random_columns(rng, 6, 7, 20)
    res = simulate(net, cols)
    np.testing.assert_array_equal(res.input_spikes, (cols >= 0).sum(1))
    np.testing.assert_array_equal(res.spikes[:, 0], (res.columns[0] >= 0).sum(1))
    # layer 0 receives every input spike plus both pulses; layer 1 every layer-0 spike plus its pulses
    np.testing.assert_array_equal(res.in_events[:, 0], res.input_spikes + 2)
    np.testing.assert_array_equal(res.in_events[:, 1], res.spikes[:, 0] + 2)
    np.testing.assert_array_equal(res.synops, res.in_events * np.array([5, 3]))
    assert np.all(res.synops_nonzero <= res.synops)
    np.testing.assert_array_equal(res.neuron_updates, np.tile([5 * 20, 3 * 20], (6, 1)))
    np.testing.assert_array_equal(res.steps, np.full(6, 20))
    spiked = res.columns[1] >= 0
    expected_active = 3 * 20 - np.where(spiked, 20 - res.columns[1], 0).sum(1)
    np.testing.assert_array_equal(res.active_neuron_updates[:, 1], expected_active)


def test_bad_inputs_raise_clear_errors(monkeypatch):
    rng = np.random.default_rng(6)
    net = make_net(rng, [4, 3], 10)
    with pytest.raises(TargetError, match="shape"):
        simulate(net, np.zeros((2, 5), np.int64))
    with pytest.raises(TargetError, match="lie in"):
        simulate(net, np.full((2, 4), 10, np.int64))
    with pytest.raises(TargetError, match="integers"):
        simulate(net, np.zeros((2, 4)))
    bad = dataclasses.replace(net, layers=(dataclasses.replace(net.layers[0], du=5000),))
    with pytest.raises(CompileError, match="12-bit"):
        pack(bad)
    bad = dataclasses.replace(net, layers=(dataclasses.replace(net.layers[0], pulse_steps=np.array([10])),))
    with pytest.raises(CompileError, match="pulse columns"):
        pack(bad)
    monkeypatch.setenv("SNNC_THREADS", "two")
    with pytest.raises(TargetError, match="SNNC_THREADS"):
        simulate(net, np.zeros((2, 4), np.int64))
    monkeypatch.setenv("SNNC_THREADS", "1")
    assert simulate(net, np.zeros((2, 4), np.int64)).columns[0].shape == (2, 3)
    empty = simulate(net, np.zeros((0, 4), np.int64))
    assert empty.columns[0].shape == (0, 3)


# ------------------------------------------------------------------------------------------------------------
# differential tests against the real Lava run (targets.lava.LavaFixedTarget), tiny networks
# ------------------------------------------------------------------------------------------------------------

def lava_net(rng, sizes, window, once, *, overflow=False, n_pulses=2, nwb=8) -> CompiledNetwork:
    """A network inside lava-fixed's contract (even weights in [-256, 254], vth 17 bit, weight_exp 0..7) whose
    thresholds are set from the expected input so that a good share of neurons fire; with ``overflow`` the weights
    and exponents are pushed until u wraps and v saturates."""
    layers, src_layers = [], []
    for l in range(len(sizes) - 1):
        n_in, n_out = sizes[l], sizes[l + 1]
        if overflow:
            w = 2 * rng.integers(60, 128, (n_out, n_in)) * rng.choice([1, 1, 1, -1], (n_out, n_in))
            wexp = int(rng.integers(5, 8))
            D = int(rng.integers(1, 40))
        else:
            w = 2 * np.rint(rng.normal(20, 40, (n_out, n_in)) / 2)
            wexp = int(rng.integers(0, 3))
            D = int(rng.integers(30, 700))
        if nwb == 9:  # 9-bit mantissas: odd values survive too
            w = w + rng.integers(-1, 2, w.shape)
        w = np.clip(w, -256, 254).astype(np.int32)
        pw = np.clip(2 * np.rint(rng.normal(10, 30, (n_out, n_pulses)) / 2), -256, 254).astype(np.int32)
        pexp = {"pulse_weight_exp": int(rng.integers(0, 4))}
        drive = np.maximum(w, 0).sum(1).mean() * 0.5 * (1 << wexp) * 4096 / (np.e * D)
        vth = int(np.clip(rng.uniform(0.2, 0.9) * drive, 1, 131071))
        layers.append(CompiledLayer(
            name=f"layer{l}", weights=w, pulse_weights=pw,
            pulse_steps=rng.integers(0, window - 1, n_pulses).astype(np.int64), weight_exp=wexp, du=D - 1, dv=D,
            vth=vth, once=once[l], weights_float=w.astype(float), pulse_weights_float=pw.astype(float),
            du_float=D / 4096, dv_float=D / 4096, vth_float=1.0, num_weight_bits=nwb, **pexp))
        src_layers.append(AlphaLayer(np.zeros((n_out, n_in)), np.zeros(n_pulses), np.zeros((n_out, n_pulses))))
    src = TemporalNetwork(tuple(src_layers), tau=1.0, theta=1.0, latency=1.0)
    return CompiledNetwork(steps_per_unit=8, window=window, layers=tuple(layers), source=src)


def run_both(net: CompiledNetwork, cols: np.ndarray):
    """lava-fixed and hw_sim through the target interface on the same input times; asserts identical spikes."""
    from targets.registry import get_target

    x = np.where(cols >= 0, cols / net.steps_per_unit, np.inf)
    lava = get_target("lava-fixed").run(net, x)
    hw = get_target("hw_sim").run(net, x)
    for l in range(len(net.layers)):
        np.testing.assert_array_equal(hw.columns[l], lava.columns[l], err_msg=f"layer {l} columns")
        np.testing.assert_array_equal(hw.info["spike_counts"][l], lava.info["spike_counts"][l],
                                      err_msg=f"layer {l} spike counts")
        np.testing.assert_array_equal(hw.times[l], lava.times[l])
    return lava, hw


@pytest.mark.slow
def test_identical_to_lava_fixed_on_random_networks():
    rng = np.random.default_rng(10)
    configs = [([7, 5, 4], 18, [True, True], 8), ([6, 5, 4, 3], 24, [False, True, False], 8),
               ([8, 6], 12, [False], 8), ([5, 6, 5], 30, [True, False], 8), ([6, 4, 3], 16, [True, False], 9)]
    for _ in range(4):  # and a few drawn at random
        sizes = [int(n) for n in rng.integers(1, 9, int(rng.integers(2, 5)))]
        configs.append((sizes, int(rng.integers(6, 32)), [bool(b) for b in rng.integers(0, 2, len(sizes) - 1)],
                        int(rng.choice([8, 8, 9]))))
    fired = multi = 0
    for sizes, W, once, nwb in configs:
        net = lava_net(rng, sizes, W, once, nwb=nwb)
        cols = random_columns(rng, 5, sizes[0], W, p_spike=0.7, last=W // 2)
        cols[0, 0] = W - 1  # an input at the window's last column (reaches no reported update)
        _, hw = run_both(net, cols)
        fired += sum(int((c >= 0).sum()) for c in hw.columns)
        multi += sum(int((c > 1).sum()) for c in hw.info["spike_counts"])
    assert fired > 80 and multi > 10  # the comparison covers many first spikes and repeated spikes


@pytest.mark.slow
def test_identical_to_lava_fixed_near_overflow():
    """u wraps at 24 bits, v saturates at +-(2**23 - 1), a_in exceeds 16 bits: still spike-for-spike identical."""
    rng = np.random.default_rng(11)
    for sizes, W, once in [([40, 4, 3], 14, [False, True]), ([60, 3], 10, [True])]:
        net = lava_net(rng, sizes, W, once, overflow=True)
        ly = net.layers[0]
        peak = np.abs(ly.weights.astype(np.int64)).sum(1).max() << (ly.weight_exp + 6)
        assert peak > 2**24  # one step of input alone leaves u's 24-bit range
        cols = random_columns(rng, 4, sizes[0], W, p_spike=0.9, last=3)
        run_both(net, cols)
    # v saturation: strong inhibition first drives v below -(2**23 - 1) (u stays in range), excitation later
    # lifts it; where v was clipped it recovers sooner, so the first spike moves earlier
    n_inh, n_exc, W = 10, 24, 40
    w = np.hstack([-2 * rng.integers(100, 128, (4, n_inh)), 2 * rng.integers(100, 128, (4, n_exc))])
    net = lava_net(rng, [n_inh + n_exc, 4], W, [False])
    ly = dataclasses.replace(net.layers[0], weights=w.astype(np.int32), weight_exp=3, du=7, dv=8,
                             vth=int(rng.integers(20000, 80000)))
    net = dataclasses.replace(net, layers=(ly,))
    cols = np.hstack([rng.integers(0, 2, (4, n_inh)), rng.integers(10, 17, (4, n_exc))])
    _, hw = run_both(net, cols)
    assert (hw.columns[0] >= 0).sum() >= 8


@pytest.mark.slow
def test_hw_sim_target_matches_lava_fixed_on_a_compiled_network():
    from toolchain.compiler import compile_network

    rng = np.random.default_rng(12)
    sizes = (16, 8, 16)
    layers = [AlphaLayer(rng.normal(0.8, 1.0, (b, a)) * 4 / a**0.5, np.array([0.0, 0.4]), rng.normal(0.5, 0.5, (b, 2)))
              for a, b in zip(sizes[:-1], sizes[1:])]
    cn = compile_network(TemporalNetwork(tuple(layers), tau=2.0, theta=1.0, latency=1.0), steps_per_unit=16)
    x = rng.uniform(0, 1, (6, 16))
    x[rng.uniform(size=x.shape) < 0.2] = np.inf
    cols = cn.input_columns(x)
    lava, hw = run_both(cn, cols)
    assert sum(int((c >= 0).sum()) for c in hw.columns) > 30
    c = hw.info["counters"]
    assert c["spikes"].shape == (6, 2) and np.array_equal(c["spikes"][:, 1], (hw.columns[1] >= 0).sum(1))


def test_hw_sim_target_rejects_what_lava_fixed_rejects():
    from targets.registry import get_target

    rng = np.random.default_rng(13)
    net = lava_net(rng, [4, 3], 10, [True])
    x = np.full((1, 4), 0.1)
    target = get_target("hw_sim")
    ly = net.layers[0]
    for layer, words in [(dataclasses.replace(ly, weights=ly.weights + 1), "even values"),
                         (dataclasses.replace(ly, vth=1 << 17), "17 bit"),
                         (dataclasses.replace(ly, pulse_steps=np.array([0, 9])), "pulse columns"),
                         (dataclasses.replace(ly, kind="conv"), "not supported")]:
        with pytest.raises(TargetError, match=words):
            target.run(dataclasses.replace(net, layers=(layer,)), x)
    with pytest.raises(TargetError, match="outside the sample window"):
        target.run(net, np.full((1, 4), 5.0))
    with pytest.raises(TargetError, match="NaN"):
        target.run(net, np.full((1, 4), np.nan))
    with pytest.raises(TargetError, match="threads"):
        get_target("hw_sim", threads=0)
    # strict=False emulates what Lava does to out-of-contract weights (clip to 8 bits, mask the LSB)
    odd = dataclasses.replace(net, layers=(dataclasses.replace(ly, weights=ly.weights + 1),))
    masked = dataclasses.replace(net, layers=(dataclasses.replace(ly, weights=lava_dense_weights(ly.weights + 1,
                                                                                                  8, "mixed")),))
    a = get_target("hw_sim", strict=False).run(odd, x)
    b = get_target("hw_sim").run(masked, x)
    np.testing.assert_array_equal(a.columns[0], b.columns[0])


def test_target_times_equal_columns_to_times():
    from targets.hw_sim import columns_to_times

    rng = np.random.default_rng(14)
    cols = rng.integers(-1, 200, (2500, 30))
    for S, offset in ((8, 0.0), (32, 0.37), (33.7, -0.2)):
        net = make_net(rng, [3, 2], 10)
        net = dataclasses.replace(net, steps_per_unit=S,
                                  layers=(dataclasses.replace(net.layers[0], time_offset_steps=offset),))
        np.testing.assert_array_equal(columns_to_times(net, cols, 0), net.columns_to_times(cols, 0))


@pytest.mark.slow
def test_speed_benchmark_smoke():
    """benchmarks/hw_sim_speed.py end to end on a few images: its JSON line reports identical spikes."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "benchmarks/hw_sim_speed.py", "--model", "random", "--samples", "40",
                           "--lava-samples", "3"], cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["identical"] is True and out["lava_fixed_images"] == 3 and out["hw_sim_images"] == 40
    assert out["ratio"] > 1 and out["sizes"] == [784, 32, 784]


# ------------------------------------------------------------------------------------------------------------
# per-neuron thresholds (CompiledLayer.vth has shape (n_out,)) and duplicate pulse columns, against real Lava
# ------------------------------------------------------------------------------------------------------------

def per_neuron_vth_net(rng, sizes, window, once) -> CompiledNetwork:
    """lava_net with a DIFFERENT 17-bit threshold for every neuron (spread around the layer's drive)."""
    net = lava_net(rng, sizes, window, once)
    layers = []
    for ly in net.layers:
        base = int(ly.vth[0])
        vth = np.clip(np.rint(base * rng.uniform(0.3, 1.7, ly.n_out)), 1, 131071).astype(np.int64)
        vth = vth + np.arange(ly.n_out)  # all distinct
        layers.append(dataclasses.replace(ly, vth=vth))
    return dataclasses.replace(net, layers=tuple(layers))


def same_neurons_net(vth, window=30, once=True, n_in=4) -> CompiledNetwork:
    """One layer of identical neurons (same weights, decays, pulses) that differ only in their thresholds."""
    n = len(vth)
    w = np.tile(np.array([[60, 40, 80, 20][:n_in]], np.int32), (n, 1))
    pw = np.full((n, 1), 30, np.int32)
    ly = CompiledLayer(name="same", weights=w, pulse_weights=pw, pulse_steps=np.array([1], np.int64),
                       weight_exp=1, du=199, dv=200, vth=np.asarray(vth, np.int64), once=once,
                       weights_float=w / 100.0, pulse_weights_float=pw / 100.0, du_float=0.05, dv_float=0.05,
                       vth_float=1.0)
    src = TemporalNetwork((AlphaLayer(np.zeros((n, n_in)), np.zeros(1), np.zeros((n, 1))),), tau=1.0, theta=1.0,
                          latency=1.0)
    return CompiledNetwork(steps_per_unit=8, window=window, layers=(ly,), source=src)


def test_per_neuron_vth_is_packed_per_neuron():
    rng = np.random.default_rng(20)
    net = per_neuron_vth_net(rng, [5, 4, 3], 16, [True, False])
    pk = pack(net)
    np.testing.assert_array_equal(pk.thr, np.concatenate([ly.vth for ly in net.layers]) << 6)
    bad = dataclasses.replace(net.layers[0], vth=np.array([5, 1 << 25, 7, 9]))
    with pytest.raises(CompileError, match=r"vth\[1\]=33554432"):
        pack(dataclasses.replace(net, layers=(bad, net.layers[1])))
    with pytest.raises(TargetError, match=r"vth\[1\]=33554432.*17 bit"):
        from targets.registry import get_target
        get_target("hw_sim").run(dataclasses.replace(net, layers=(bad, net.layers[1])), np.zeros((1, 5)))


def test_per_neuron_vth_matches_replica():
    """Replica and emulator agree with random per-neuron thresholds (every path: wrap32, pruning, multi-spike)."""
    rng = np.random.default_rng(21)
    for trial in range(10):
        sizes = [int(rng.integers(1, 9)) for _ in range(int(rng.integers(2, 4)))]
        W = int(rng.integers(len(sizes) + 2, 30))
        net = make_net(rng, sizes, W, once=[bool(b) for b in rng.integers(0, 2, len(sizes) - 1)],
                       w_scale=int(rng.choice([60, 250])), wexp=int(rng.integers(0, 6)),
                       n_pulses=int(rng.integers(0, 3)))
        net = dataclasses.replace(net, layers=tuple(
            dataclasses.replace(ly, vth=rng.integers(1, 131072, ly.n_out) >> int(rng.integers(0, 10)))
            for ly in net.layers))
        assert_same_as_replica(net, random_columns(rng, 4, sizes[0], W))


@pytest.mark.slow
def test_per_neuron_vth_identical_to_lava_fixed():
    """hw_sim and lava-fixed: bit-identical first-spike columns and counts with a different vth per neuron."""
    from lava_reference import reference_run

    rng = np.random.default_rng(22)
    fired = 0
    for sizes, W, once in [([7, 6, 5], 20, [True, True]), ([6, 5, 4], 24, [False, True])]:
        net = per_neuron_vth_net(rng, sizes, W, once)
        assert all(len(set(ly.vth.tolist())) == ly.n_out for ly in net.layers)
        cols = random_columns(rng, 5, sizes[0], W, p_spike=0.7, last=W // 2)
        lava, hw = run_both(net, cols)
        ref, ref_counts = reference_run(net, cols, fixed=True)
        for l in range(len(net.layers)):
            np.testing.assert_array_equal(hw.columns[l], ref[l])
            np.testing.assert_array_equal(hw.info["spike_counts"][l], ref_counts[l])
        fired += sum(int((c >= 0).sum()) for c in hw.columns)
    assert fired > 30


def duplicate_pulse_net(copies: int, split: bool) -> CompiledNetwork:
    """One pulse source of weight ``copies * 254`` per neuron: as ``copies`` duplicate columns of 254 each
    (split=True, as the compiler emits a pulse too strong for one 8-bit mantissa) or as one column of 254 with
    pulse_weight_exp = log2(copies) (split=False; copies must be a power of two). Also a second, single pulse."""
    n, W = 3, 24
    w = np.array([[40, 0, 20], [0, 60, 10], [30, 30, 30]], np.int32)
    if split:
        pw = np.hstack([np.tile(np.array([[254], [254], [-200]], np.int32), (1, copies)),
                        np.array([[16], [8], [254]], np.int32)])
        ps = np.array([5] * copies + [2], np.int64)
        src = {"pulse_source": np.array([0] * copies + [1], np.int64)}  # copies of source pulse 0
        pexp = 0
    else:
        src = {}
        pw = np.array([[254, 16 // copies], [254, 8 // copies], [-200, 254 // copies & ~1]], np.int32)
        ps = np.array([5, 2], np.int64)
        pexp = int(np.log2(copies))
    ly = CompiledLayer(name="dup", weights=w, pulse_weights=pw, pulse_steps=ps, weight_exp=1, du=99, dv=100,
                       vth=np.array([3000, 5000, 900], np.int64), once=False, weights_float=w / 1.0,
                       pulse_weights_float=pw / 1.0, du_float=0.02, dv_float=0.02, vth_float=1.0,
                       pulse_weight_exp=pexp, **src)
    src = TemporalNetwork((AlphaLayer(np.zeros((n, 3)), np.zeros(pw.shape[1]), np.zeros((n, pw.shape[1]))),),
                          tau=1.0, theta=1.0, latency=1.0)
    return CompiledNetwork(steps_per_unit=8, window=W, layers=(ly,), source=src)


@pytest.mark.slow
def test_duplicate_pulse_columns_identical_to_lava_fixed():
    """Several copies of one pulse at the same column are summed (by Lava's Dense and by hw_sim) exactly like
    one pulse of the summed weight, and hw_sim equals lava-fixed spike for spike."""
    rng = np.random.default_rng(23)
    dup = duplicate_pulse_net(copies=2, split=True)
    cols = random_columns(rng, 4, 3, dup.window, p_spike=0.7, last=8)
    cols[0] = -1  # a sample driven by the pulses alone
    lava, hw = run_both(dup, cols)
    assert (hw.columns[0][0, :2] >= 0).all()  # the doubled pulse alone makes neurons 0 and 1 fire
    # the same drive as one pulse with a doubled exponent (254 * 2**1 == 254 + 254): the same spikes
    one = simulate(duplicate_pulse_net(copies=2, split=False), cols)
    np.testing.assert_array_equal(hw.columns[0], one.columns[0])
    np.testing.assert_array_equal(hw.info["spike_counts"][0], one.spike_counts[0])
    # and one copy alone is not enough: the duplicates really add up
    single = dataclasses.replace(dup.layers[0], pulse_weights=dup.layers[0].pulse_weights[:, 1:],
                                 pulse_steps=dup.layers[0].pulse_steps[1:], pulse_source=np.array([0, 1]),
                                 pulse_weights_float=dup.layers[0].pulse_weights_float[:, 1:])
    alone = simulate(dataclasses.replace(dup, layers=(single,)), cols)
    assert not np.array_equal(alone.columns[0], hw.columns[0])
    # counters: each copy is its own pulse event
    np.testing.assert_array_equal(hw.info["counters"]["in_events"][:, 0], (cols >= 0).sum(1) + 3)


@pytest.mark.slow
def test_lower_vth_fires_earlier_in_hw_sim_and_lava_fixed():
    """Identical neurons that differ only in vth: the lower the threshold, the earlier the first spike, in both
    hw_sim and lava-fixed (so each uses the per-neuron vector, not one threshold per layer)."""
    net = same_neurons_net([600, 1100, 1700, 1700])
    cols = np.array([[0, 1, 2, 3], [2, 2, -1, 4], [0, -1, 3, -1]], np.int64)
    lava, hw = run_both(net, cols)
    for name, c in (("hw_sim", hw.columns[0]), ("lava-fixed", lava.columns[0])):
        assert (c[:, :3] >= 0).all(), (name, c)
        assert np.all(c[:, 0] < c[:, 1]) and np.all(c[:, 1] < c[:, 2]), (name, c)
        np.testing.assert_array_equal(c[:, 2], c[:, 3], err_msg=name)  # equal thresholds: equal spikes
    # plain LIF (once=False): the lower threshold also spikes more often
    lif = same_neurons_net([400, 1200], window=40, once=False)
    lava, hw = run_both(lif, cols)
    for name, r in (("hw_sim", hw), ("lava-fixed", lava)):
        counts = r.info["spike_counts"][0]
        assert np.all(counts[:, 0] > counts[:, 1]) and np.all(counts[:, 1] >= 1), (name, counts)


def test_weight_exp_minus_one_is_exact_with_even_mantissas():
    """weight_exp = -1 (Lava's Dense right-shifts its sum; the compiler uses it with 8-bit, even mantissas): the
    emulator's pre-shifted rows equal the replica's shifted sums; odd effective weights are refused."""
    rng = np.random.default_rng(24)
    for trial in range(6):
        sizes = [int(rng.integers(2, 9)) for _ in range(3)]
        W = int(rng.integers(8, 30))
        net = make_net(rng, sizes, W, once=[True, bool(trial % 2)], w_scale=120, n_pulses=2)
        net = dataclasses.replace(net, layers=tuple(
            dataclasses.replace(ly, weight_exp=-1, pulse_weight_exp=int(rng.integers(-1, 2))) for ly in net.layers))
        assert_same_as_replica(net, random_columns(rng, 4, sizes[0], W))
    odd = make_net(rng, [4, 3], 10, nwb=9)
    odd = dataclasses.replace(odd, layers=(dataclasses.replace(odd.layers[0], weights=odd.layers[0].weights | 1,
                                                               weight_exp=-1),))
    with pytest.raises(CompileError, match="multiple of 2"):
        pack(odd)


@pytest.mark.slow
def test_weight_exp_minus_one_identical_to_lava_fixed():
    rng = np.random.default_rng(25)
    net = per_neuron_vth_net(rng, [7, 6, 5], 20, [True, False])
    net = dataclasses.replace(net, layers=tuple(dataclasses.replace(ly, weight_exp=-1, pulse_weight_exp=-1)
                                                for ly in net.layers))
    cols = random_columns(rng, 5, 7, 20, p_spike=0.8, last=10)
    _, hw = run_both(net, cols)
    assert sum(int((c >= 0).sum()) for c in hw.columns) > 5
    from targets.registry import get_target
    bad = dataclasses.replace(net, layers=(dataclasses.replace(net.layers[0], num_weight_bits=9,
                                                               weights=net.layers[0].weights | 1),
                                           net.layers[1]))
    with pytest.raises(TargetError, match="even weight mantissas"):
        get_target("hw_sim").run(bad, np.zeros((1, 7)))


# ------------------------------------------------------------------------------------------------------------
# saturation counters (u wraps, v saturations) in neurons that can still spike
# ------------------------------------------------------------------------------------------------------------

def _one_layer(w, pw, ps, vth, D, W, wexp=0):
    n_out, n_in = w.shape
    layer = CompiledLayer(name="layer0", weights=w.astype(np.int32), pulse_weights=pw.astype(np.int32),
                          pulse_steps=np.asarray(ps, np.int64), weight_exp=wexp, du=D - 1, dv=D, vth=vth, once=True,
                          weights_float=w * 1.0, pulse_weights_float=pw * 1.0, du_float=D / 4096, dv_float=D / 4096,
                          vth_float=1.0)
    src = TemporalNetwork((AlphaLayer(np.zeros((n_out, n_in)), np.zeros(len(ps)), np.zeros((n_out, len(ps)))),),
                          tau=1.0, theta=1.0, latency=1.0)
    return CompiledNetwork(steps_per_unit=8, window=W, layers=(layer,), source=src)


def _count_saturations(w_eff, cols, p_eff, ps, D, vth, W, last):
    """Plain recurrence of one once-layer up to update ``last`` (no spikes can happen before): counts of u wraps
    and v clamps per sample."""
    n = cols.shape[0]
    uw = np.zeros(n, np.int64)
    vs = np.zeros(n, np.int64)
    for s in range(n):
        u = np.zeros(w_eff.shape[0], np.int64)
        v = np.zeros_like(u)
        fired = np.zeros(u.shape, bool)
        for c in range(last + 1):
            a = w_eff[:, cols[s] == c].sum(1) + p_eff[:, np.asarray(ps) == c].sum(1)
            p = u * (4096 - D)
            pre = np.sign(p) * (np.abs(p) >> 12) + (a << 6)
            uw[s] += int(((pre > 2**23) | (pre <= -(2**23)))[~fired].sum())
            pre = np.where(pre > 2**23, pre - 2**24, np.where(pre <= -(2**23), pre + 2**24, pre))
            q = v * (4096 - D)
            vv = np.sign(q) * (np.abs(q) >> 12) + pre
            vs[s] += int(((vv > 2**23 - 1) | (vv < -(2**23 - 1)))[~fired].sum())
            u, v = pre, np.clip(vv, -(2**23 - 1), 2**23 - 1)
            f = (v > vth << 6) & ~fired
            fired |= f
            v[f] = 0
    return uw, vs


def test_saturation_counters_count_v_clamps_and_u_wraps():
    rng = np.random.default_rng(11)
    W, D = 40, 100
    # strong inhibition early (v saturates negative), a late excitatory pulse keeps the neurons able to fire
    w = -2 * rng.integers(100, 128, (4, 30))
    pw = np.full((4, 1), 254)
    net = _one_layer(w, pw, [30], vth=1000, D=D, W=W, wexp=5)
    cols = rng.integers(0, 3, (5, 30))
    cols[rng.random(cols.shape) < 0.3] = -1
    res = simulate(net, cols)
    w_eff = (w << 5).astype(np.int64)
    uw, vs = _count_saturations(w_eff, cols, (pw << 5).astype(np.int64), [30], D, 1000, W, 30)
    assert vs.sum() > 0 and uw.sum() > 0  # the case reaches both limits
    np.testing.assert_array_equal(res.v_saturations[:, 0], vs)
    np.testing.assert_array_equal(res.u_wraps[:, 0], uw)
    assert set(res.counters()) >= {"u_wraps", "v_saturations"}
    # a network within range counts nothing
    quiet = _one_layer(w // 16 // 2 * 2, pw, [30], vth=1000, D=D, W=W)
    res = simulate(quiet, cols)
    assert res.v_saturations.sum() == 0 and res.u_wraps.sum() == 0
