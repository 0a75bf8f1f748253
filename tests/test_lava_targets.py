"""lava-float and lava-fixed on small random networks: bit-exact against the documented integer semantics,
within the grid bound of the exact model, batched == chunked == per-sample, and no OS processes left behind.

Lava runs are slow (each run starts ~10 OS processes), so every run is made once per module and reused.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest

from models.exact import exact_forward, layer_forward
from models.network import AlphaLayer, TemporalNetwork
from targets.registry import get_target
from lava_reference import reference_run
from procs import proc_table
from toolchain.compiled import CompiledLayer, CompiledNetwork
from toolchain.compiler import compile_network, deployed_network
from toolchain.errors import TargetError

pytestmark = pytest.mark.slow

N_SAMPLES = 8


def _child_pids() -> set[int]:
    """PIDs of this process's live children, read from /proc (no psutil)."""
    out = set()
    for pid, ppid, _, state in proc_table():
        if ppid != os.getpid() or state == "Z":
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"multiprocessing.resource_tracker" in cmd:
            continue  # Python's one shared-memory tracker per interpreter (reused, exits with the interpreter)
        out.add(pid)
    return out


def _net(seed=1, sizes=(12, 10, 8), tau=2.0) -> TemporalNetwork:
    rng = np.random.default_rng(seed)
    layers = [AlphaLayer(rng.normal(0.8, 1.0, (b, a)) * 4 / a**0.5, np.array([0.05, 0.4]),
                         rng.normal(0.5, 0.5, (b, 2))) for a, b in zip(sizes[:-1], sizes[1:])]
    return TemporalNetwork(tuple(layers), tau=tau, theta=1.0, latency=1.0)


def _inputs(n=N_SAMPLES, n_in=12, seed=5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, n_in))
    x[rng.uniform(size=x.shape) < 0.2] = np.inf
    return x


@pytest.fixture(scope="module")
def runs():
    """All Lava runs of this module (and the child processes seen before and after them)."""
    before = _child_pids()
    active_before = set(multiprocessing.active_children())
    threads_before = threading.active_count()
    cn = compile_network(_net())
    x = _inputs()
    res = {"cn": cn, "x": x}
    res["fixed"] = get_target("lava-fixed", chunk_size=N_SAMPLES).run(cn, x)
    res["fixed_chunked"] = get_target("lava-fixed", chunk_size=3).run(cn, x)
    res["fixed_single"] = [get_target("lava-fixed", chunk_size=1).run(cn, x[i:i + 1]) for i in (0, 5)]
    res["float"] = get_target("lava-float", chunk_size=N_SAMPLES).run(cn, x)
    lif = _plain_lif_network()
    xl = _inputs(n=4, n_in=lif.layers[0].n_in, seed=9)
    res["lif"], res["lif_x"] = lif, xl
    res["lif_fixed"] = get_target("lava-fixed").run(lif, xl)
    res["lif_float"] = get_target("lava-float").run(lif, xl)
    res["children_before"], res["children_after"] = before, _child_pids()
    res["active_before"], res["active_after"] = active_before, set(multiprocessing.active_children())
    time.sleep(0.2)  # receiver threads exit asynchronously after join()
    res["threads_before"], res["threads_after"] = threads_before, threading.active_count()
    return res


def _plain_lif_network() -> CompiledNetwork:
    """One multi-spike LIF layer (once=False), as a rate-coded autoencoder would use, plus an alpha layer."""
    rng = np.random.default_rng(3)
    n_in, n1, n2 = 6, 5, 3
    w1 = (2 * rng.integers(-20, 100, (n1, n_in))).astype(np.int32)
    w2 = (2 * rng.integers(0, 127, (n2, n1))).astype(np.int32)
    src = TemporalNetwork((AlphaLayer(np.zeros((n1, n_in)), np.zeros(0), np.zeros((n1, 0))),
                           AlphaLayer(np.zeros((n2, n1)), np.array([0.1]), np.zeros((n2, 1)))),
                          tau=1.0, theta=1.0, latency=1.0)
    l1 = CompiledLayer(name="lif", weights=w1, pulse_weights=np.zeros((n1, 0), np.int32),
                       pulse_steps=np.zeros(0, np.int64), weight_exp=1, du=400, dv=200, vth=300, once=False,
                       weights_float=w1 / 300.0, pulse_weights_float=np.zeros((n1, 0)), du_float=0.1,
                       dv_float=0.05, vth_float=1.0)
    pw2 = np.full((n2, 1), 60, np.int32)
    l2 = CompiledLayer(name="alpha", weights=w2, pulse_weights=pw2, pulse_steps=np.array([2], np.int64),
                       weight_exp=0, du=299, dv=300, vth=2000, once=True, weights_float=w2 / 2000.0,
                       pulse_weights_float=pw2 / 2000.0, du_float=0.07, dv_float=0.07, vth_float=1.0)
    return CompiledNetwork(steps_per_unit=10, window=40, layers=(l1, l2), source=src, manifest={})


def test_fixed_is_bit_exact_against_documented_semantics(runs):
    cn, r = runs["cn"], runs["fixed"]
    ref, ref_counts = reference_run(cn, cn.input_columns(runs["x"]), fixed=True)
    for l in range(len(cn.layers)):
        np.testing.assert_array_equal(r.columns[l], ref[l])
        np.testing.assert_array_equal(r.info["spike_counts"][l], ref_counts[l])
        np.testing.assert_array_equal(r.times[l], cn.columns_to_times(ref[l], l))
    assert r.target == "lava-fixed" and r.wall_s > 0
    # the test is not vacuous: both layers spike for some samples and stay silent for some neurons
    assert all((c >= 0).any() for c in r.columns)


def test_batched_equals_chunked_and_per_sample(runs):
    full, chunked = runs["fixed"], runs["fixed_chunked"]
    assert chunked.info["runs"] == 3 and full.info["runs"] == 1
    for l in range(len(full.columns)):
        np.testing.assert_array_equal(full.columns[l], chunked.columns[l])
        for single, i in zip(runs["fixed_single"], (0, 5)):
            np.testing.assert_array_equal(single.columns[l][0], full.columns[l][i])


def test_float_follows_float_recurrence(runs):
    cn, r = runs["cn"], runs["float"]
    ref, _ = reference_run(cn, cn.input_columns(runs["x"]), fixed=False)
    for l in range(len(cn.layers)):
        np.testing.assert_array_equal(r.columns[l], ref[l])


def _gridded_exact(net: TemporalNetwork, cn: CompiledNetwork, layer: int, in_cols: np.ndarray) -> np.ndarray:
    """Exact crossing times of one layer when its inputs sit exactly on the grid (columns * h)."""
    h = cn.dt
    t_in = np.where(in_cols >= 0, in_cols * h, np.inf)
    pulses = cn.layers[layer].pulse_steps * h
    xin = np.hstack([t_in, np.broadcast_to(pulses, (t_in.shape[0], pulses.size))])
    return layer_forward(np.ascontiguousarray(xin), net.layers[layer].all_weights(), net.tau, net.theta)[0]


def _check_grid_bound(net, cn, res, input_cols, slack_steps: float) -> float:
    """Per layer, given that layer's (gridded) inputs, the exact crossing lies in ((c-1)h, ch] (+- slack)."""
    h, W = cn.dt, cn.window
    worst = 0.0
    in_cols = input_cols
    for l in range(len(cn.layers)):
        t = _gridded_exact(net, cn, l, in_cols)
        c = res.columns[l]
        spiked = c >= 0
        lo, hi = (c - 1) * h, c * h
        err = np.where(spiked, np.maximum(lo - t, t - hi), 0.0)
        assert np.all(err[spiked] <= slack_steps * h + 1e-9), (l, err.max() / h)
        # no reported spike <=> no crossing inside the window
        assert np.all(t[~spiked] > (W - 1) * h - slack_steps * h - 1e-9), l
        worst = max(worst, float(np.max(np.abs(np.where(spiked, t - (c - 0.5) * h, 0.0)))))
        in_cols = c
    return worst


def test_float_within_grid_bound_of_exact(runs):
    cn = runs["cn"]
    worst = _check_grid_bound(cn.source, cn, runs["float"], cn.input_columns(runs["x"]), slack_steps=0.0)
    assert worst <= 0.5 * cn.dt + 1e-9


def test_fixed_within_grid_bound_of_deployed_exact(runs):
    cn = runs["cn"]
    # the fixed mapping realises the deployed network (quantized weights, tau_eff); only truncation remains
    _check_grid_bound(deployed_network(cn), cn, runs["fixed"], cn.input_columns(runs["x"]), slack_steps=1.0)


def test_end_to_end_error_vs_exact(runs):
    cn, x = runs["cn"], runs["x"]
    ex = exact_forward(cn.source, x)
    h = cn.dt
    for name in ("float", "fixed"):
        r = runs[name]
        for l, (te, tl) in enumerate(zip(ex, r.times)):
            both = np.isfinite(te) & np.isfinite(tl)
            assert (np.isfinite(te) == np.isfinite(tl)).mean() >= 0.95, (name, l)
            err = np.abs(te[both] - tl[both])
            # inputs rounded by <= h/2 each, output estimated to <= h/2: a few steps at most on these nets
            assert err.max() <= 3 * h, (name, l, err.max() / h)


def test_plain_lif_layer_runs_on_both_targets(runs):
    net, x = runs["lif"], runs["lif_x"]
    for name, fixed in (("lif_fixed", True), ("lif_float", False)):
        r = runs[name]
        ref, ref_counts = reference_run(net, net.input_columns(x), fixed=fixed)
        for l in range(2):
            np.testing.assert_array_equal(r.columns[l], ref[l])
            np.testing.assert_array_equal(r.info["spike_counts"][l], ref_counts[l])
        assert r.info["spike_counts"][0].max() > 1  # the LIF layer really spikes repeatedly
        assert r.info["spike_counts"][1].max() == 1  # the once layer does not


def test_no_processes_or_threads_left_behind(runs):
    assert runs["children_after"] <= runs["children_before"]
    assert runs["active_after"] <= runs["active_before"]
    assert runs["threads_after"] <= runs["threads_before"]


def test_timeout_raises_and_cleans_up():
    cn = compile_network(_net())
    before = _child_pids()
    target = get_target("lava-fixed", chunk_size=64, timeout_s=0.5)
    with pytest.raises(TargetError, match="did not finish within"):
        target.run(cn, _inputs(n=64))
    assert _child_pids() <= before
    assert not multiprocessing.active_children()


@pytest.mark.parametrize("x, words", [
    (np.zeros((2, 5)), "shape (N, 12)"),
    (np.full((1, 12), np.nan), "NaN"),
    (np.full((1, 12), -np.inf), "-inf"),
    (np.full((1, 12), -0.5), "outside the sample window"),
    (np.full((1, 12), 50.0), "outside the sample window"),
])
def test_bad_inputs(x, words):
    cn = compile_network(_net())
    for name in ("lava-fixed", "lava-float"):
        with pytest.raises(TargetError, match=words.replace("(", r"\(").replace(")", r"\)")):
            get_target(name).run(cn, x)


def test_bad_options():
    with pytest.raises(TargetError, match="chunk_size"):
        get_target("lava-fixed", chunk_size=0)
    with pytest.raises(TargetError, match="timeout_s"):
        get_target("lava-float", timeout_s=0)


def test_ctrl_c_stops_the_run_and_cleans_up():
    cn = compile_network(_net())
    before = _child_pids()
    stop = threading.Event()

    def interrupt_once_running() -> None:
        # SIGINT only once Lava's runtime processes exist (plus a second), not at a fixed time: on a loaded machine
        # a fixed 2 s could land inside Lava's start-up, where the interpreter's own handler swap races the signal
        deadline = time.monotonic() + 60.0
        while not stop.is_set() and time.monotonic() < deadline and not (_child_pids() - before):
            time.sleep(0.05)
        if not stop.wait(1.0):
            os.kill(os.getpid(), signal.SIGINT)

    # Ctrl-C as in a terminal: Python's own handler. A process started with SIGINT ignored (a background job of a
    # non-interactive shell) has none, and brian2's wrapper installed at its import then calls SIG_IGN (TypeError)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher = threading.Thread(target=interrupt_once_running, daemon=True)
    watcher.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            get_target("lava-fixed", chunk_size=400).run(cn, _inputs(n=400))
    finally:
        stop.set()
        watcher.join()
        signal.signal(signal.SIGINT, previous)
    assert _child_pids() <= before
    assert not multiprocessing.active_children()


def _edge_network(W: int = 12) -> CompiledNetwork:
    """Memoryless neurons (du = dv = 4095) that fire in the update their input arrives: spike column = input
    column + 1 per layer, so the window edges and a pulse at column 0 of layer 1 are easy to predict."""
    eye = np.eye(3, dtype=np.int32) * 100
    w1 = np.array([[0, 0, 0], [100, 0, 0], [0, 100, 0]], np.int32)
    pw1 = np.array([[100], [0], [0]], np.int32)
    src = TemporalNetwork((AlphaLayer(np.zeros((3, 3)), np.zeros(0), np.zeros((3, 0))),
                           AlphaLayer(np.zeros((3, 3)), np.zeros(1), np.zeros((3, 1)))), tau=1.0, theta=1.0,
                          latency=1.0)
    common = dict(weight_exp=0, du=4095, dv=4095, vth=50, once=True, du_float=4095 / 4096, dv_float=4095 / 4096,
                  vth_float=1.0)
    l0 = CompiledLayer(name="l0", weights=eye, pulse_weights=np.zeros((3, 0), np.int32),
                       pulse_steps=np.zeros(0, np.int64), weights_float=eye / 50.0,
                       pulse_weights_float=np.zeros((3, 0)), **common)
    l1 = CompiledLayer(name="l1", weights=w1, pulse_weights=pw1, pulse_steps=np.array([0], np.int64),
                       weights_float=w1 / 50.0, pulse_weights_float=pw1 / 50.0, **common)
    return CompiledNetwork(steps_per_unit=1, window=W, layers=(l0, l1), source=src, manifest={})


def test_window_edges_and_layer1_pulse_at_column_0():
    net = _edge_network(W=12)
    # sample 0: inputs at columns W-2, 3, W-1; sample 1: none
    x = np.array([[10.0, 3.0, 11.0], [np.inf, np.inf, np.inf]])
    expected0 = np.array([[11, 4, -1], [-1, -1, -1]])  # column W-1 is reported, update W-1 never spikes
    expected1 = np.array([[1, -1, 5], [1, -1, -1]])  # pulse at column 0 reaches layer 1; no leak into sample 1
    for name in ("lava-fixed", "lava-float"):
        r = get_target(name).run(net, x)
        np.testing.assert_array_equal(r.columns[0], expected0, err_msg=name)
        np.testing.assert_array_equal(r.columns[1], expected1, err_msg=name)
    ref, _ = reference_run(net, net.input_columns(x), fixed=True)
    np.testing.assert_array_equal(ref[0], expected0)
    np.testing.assert_array_equal(ref[1], expected1)


def test_rejects_what_lava_would_silently_alter():
    cn = compile_network(_net())
    l0 = cn.layers[0]
    x = _inputs(n=1)
    cases = [
        (dataclasses.replace(l0, kind="conv"), "lava-float", "kind 'conv' is not supported"),
        (dataclasses.replace(l0, weights=l0.weights + 1), "lava-fixed", "even values"),
        (dataclasses.replace(l0, vth=1 << 17), "lava-fixed", "17 bit"),
        (dataclasses.replace(l0, pulse_steps=np.array([0, cn.window - 1])), "lava-float", "pulse columns"),
    ]
    for layer, target, words in cases:
        bad = dataclasses.replace(cn, layers=(layer,) + cn.layers[1:])
        with pytest.raises(TargetError, match=words):
            get_target(target).run(bad, x)
    # whole-network fields, and the offending field is named
    pw = l0.pulse_weights.copy()
    pw[0, 0] = 301
    for bad, target, words in [
        (dataclasses.replace(cn, steps_per_unit=0), "lava-float", "steps_per_unit=0 must be a positive integer"),
        (dataclasses.replace(cn, steps_per_unit=0), "lava-fixed", "steps_per_unit=0 must be a positive integer"),
        (dataclasses.replace(cn, window=2), "lava-float", "window=2 steps must be an integer >= 3"),
        (dataclasses.replace(cn, layers=(dataclasses.replace(l0, pulse_weights=pw),) + cn.layers[1:]), "lava-fixed",
         r"pulse_weights: 8-bit .* 301\], 1 of them odd"),
        (dataclasses.replace(cn, layers=(dataclasses.replace(l0, dv=4096),) + cn.layers[1:]), "lava-fixed",
         r"dv=4096 is out of range"),
    ]:
        with pytest.raises(TargetError, match=words):
            get_target(target).run(bad, x)


def test_crashed_lava_process_is_reported_quickly():
    """Kill one of the run's OS processes (as an OOM killer would): TargetError long before the timeout."""
    cn = compile_network(_net())
    before = _child_pids()
    killed = []

    def kill_newest():
        for _ in range(200):  # wait (up to 20 s) until the run's processes are up and stepping
            kids = sorted(_child_pids() - before)
            if len(kids) >= 5:
                time.sleep(1.0)
                os.kill(kids[-1], signal.SIGKILL)
                killed.append(kids[-1])
                return
            time.sleep(0.1)

    timer = threading.Timer(0.5, kill_newest)
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(TargetError, match="a Lava process exited"):
            get_target("lava-fixed", chunk_size=400, timeout_s=120).run(cn, _inputs(n=400))
    finally:
        timer.cancel()
    assert killed and time.monotonic() - t0 < 60
    assert _child_pids() <= before


def test_once_lif_uses_a_per_neuron_vth_vector_in_both_models():
    """OnceLIF's vth Var has the population's shape, and both ProcessModels compare each neuron with its own
    threshold: identical neurons with vth [low, mid, high] fire in that order under floating_pt (a lava-float
    run given per-neuron float thresholds) and under fixed_pt (lava-fixed, per-neuron 17-bit mantissas)."""
    from targets.lava import LavaFloatTarget
    from targets.lava_procs import OnceLIF

    lif = OnceLIF(shape=(3,), vth=np.array([5, 6, 7]), reset_interval=10, reset_offset=2)
    assert lif.vth.shape == (3,) and lif.vth.init.tolist() == [5, 6, 7]
    assert OnceLIF(shape=(3,), vth=2.5, reset_interval=10, reset_offset=2).vth.init.tolist() == [2.5] * 3
    with pytest.raises(ValueError, match="vth has shape"):
        OnceLIF(shape=(3,), vth=np.array([1, 2]), reset_interval=10, reset_offset=2)

    n, n_in = 4, 3
    w = np.tile(np.array([[80, 60, 40]], np.int32), (n, 1))
    vth = np.array([500, 1000, 1600, 1600], np.int64)
    src = TemporalNetwork((AlphaLayer(np.zeros((n, n_in)), np.zeros(0), np.zeros((n, 0))),), tau=1.0, theta=1.0,
                          latency=1.0)
    ly = CompiledLayer(name="same", weights=w, pulse_weights=np.zeros((n, 0), np.int32),
                       pulse_steps=np.zeros(0, np.int64), weight_exp=1, du=199, dv=200, vth=vth, once=True,
                       weights_float=w * 2.0, pulse_weights_float=np.zeros((n, 0)), du_float=200 / 4096,
                       dv_float=200 / 4096, vth_float=1.0)
    net = CompiledNetwork(steps_per_unit=8, window=30, layers=(ly,), source=src, manifest={})
    x = np.array([[0.0, 0.125, 0.25], [0.25, 0.25, np.inf]])

    class PerNeuronFloat(LavaFloatTarget):  # lava-float itself passes the scalar theta (vth_float)
        def _layer_params(self, cl):
            return dict(super()._layer_params(cl), vth=cl.vth.astype(np.float64))

    runs = {"floating_pt": PerNeuronFloat().run(net, x), "fixed_pt": get_target("lava-fixed").run(net, x)}
    for name, r in runs.items():
        c = r.columns[0]
        assert (c[:, :3] >= 0).all() and np.all(c[:, 0] < c[:, 1]) and np.all(c[:, 1] < c[:, 2]), (name, c)
        np.testing.assert_array_equal(c[:, 2], c[:, 3], err_msg=name)
    ref, _ = reference_run(net, net.input_columns(x), fixed=True)
    np.testing.assert_array_equal(runs["fixed_pt"].columns[0], ref[0])
    # lava-float keeps one theta (vth_float) for the whole layer: identical neurons fire together
    c = get_target("lava-float").run(net, x).columns[0]
    assert (c == c[:, :1]).all(), c
