"""lava-float / lava-fixed for steps graphs (targets/lava_lif.py) on Lava's stock Dense + LIFReset processes:
against the float model (toolchain/lif_reference.py) and bit for bit against hw_sim's LIF emulation, several
samples per run and several runs, bad input refused before Lava starts, and no Lava process outliving its parent
(also after SIGKILL: PR_SET_PDEATHSIG). Real Lava runs on small networks, no mocks."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from hw_sim.lif import run_lif_fixed
from targets.lava_lif import LavaLifFixedTarget, LavaLifFloatTarget
from test_steps_compiler import matched_fraction, net, spikes
from toolchain.errors import TargetError
from toolchain.ir import LIF, lif_chain
from toolchain.lif_reference import simulate
from toolchain.steps_compiler import compile_graph

ROOT = Path(__file__).resolve().parents[1]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and prctl (Linux)")


@pytest.fixture(scope="module")
def random_runs():
    """A 20-10-20 net (leak 0.9, clamped like Roy et al.), 6 samples of 20 steps, 4 samples per Lava run (2 runs)."""
    g, x = net(), spikes(n=6, t=20)
    cs = compile_graph(g, 20)
    targets = (LavaLifFloatTarget(chunk_size=4), LavaLifFixedTarget(chunk_size=4))
    return g, cs, x, {t.name: t.run(cs, x) for t in targets}


def test_lava_float_reproduces_the_float_model(random_runs):
    g, _, x, runs = random_runs
    res = runs["lava-float-lif"]
    out, wall, info = res.trains, res.wall_s, res.info
    ref = simulate(g, x).spikes
    assert info["runs"] == 2 and info["populations"] == ["layer0", "layer1"] and wall > 0
    assert res.target == "lava-float-lif" and res.columns is None
    for r, s in zip(ref, out):
        assert s.shape == r.shape and s.dtype == np.uint8 and r.sum() > 20
        # documented exception: near-threshold flips from float64 summation order (none measured here)
        assert (s != r).mean() <= 1e-3


def test_lava_fixed_is_hw_sim_bit_for_bit_and_within_the_gate(random_runs):
    g, cs, x, runs = random_runs
    out, info = runs["lava-fixed-lif"].trains, runs["lava-fixed-lif"].info
    assert info["precision"] == "fixed_pt"
    assert all(len(set(cl.vth.tolist())) > 1 for cl in cs.layers)   # one threshold per neuron on the stock LIF
    for hw, s, r in zip(run_lif_fixed(cs, x), out, simulate(g, x).spikes):
        assert np.array_equal(hw, s)
        assert matched_fraction(r, s, 1) >= 0.95 and matched_fraction(s, r, 1) >= 0.95


def test_exact_ties_without_leak_spike_on_both_lava_targets():
    """V >= v_th (IR) on Lava's strict test: float via the largest float64 below v_th, fixed via vth = scale - 1."""
    g = lif_chain([np.full((3, 4), 0.25), np.full((2, 3), 0.5)], [LIF(3, 1.0), LIF(2, 1.0)])
    x = spikes(n=3, t=10, n_in=4, p=0.5, seed=3)
    cs = compile_graph(g, 10, scale=1024)
    ref = simulate(g, x).spikes
    assert ref[1].sum() > 0
    for target in (LavaLifFloatTarget(), LavaLifFixedTarget()):
        out = target.run(cs, x).trains
        assert all(np.array_equal(r, s) for r, s in zip(ref, out)), target.name


def _children() -> list[int]:
    me = str(os.getpid())
    out = []
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z" and b"resource_tracker" not in cmd:
            out.append(int(d))
    return out


def test_bad_input_is_refused_before_lava_starts():
    cs = compile_graph(net(), 20)
    before = set(_children())
    for bad, words in ((np.zeros((2, 20)), r"shape \(samples, steps, 20\)"), (np.full((1, 4, 20), 3), "only 0 and 1"),
                       (np.zeros((1, 21, 20)), "max_steps=21")):
        with pytest.raises(TargetError, match=words):
            LavaLifFixedTarget().run(cs, bad)
    with pytest.raises(TargetError, match="vth values in"):
        import dataclasses
        broken = dataclasses.replace(cs, layers=(dataclasses.replace(cs.layers[0], vth=np.full(10, -1)),)
                                     + cs.layers[1:])
        LavaLifFloatTarget().run(broken, spikes(n=1))
    with pytest.raises(TargetError, match="chunk_size"):
        LavaLifFloatTarget(chunk_size=0)
    assert set(_children()) == before


@linux_only
def test_timeout_stops_the_run_and_leaves_no_process():
    cs = compile_graph(net(), 20)
    before = set(_children())
    with pytest.raises(TargetError, match="did not finish within"):
        LavaLifFixedTarget(chunk_size=200, timeout_s=0.5).run(cs, spikes(n=200, t=20))
    deadline = time.monotonic() + 10
    while set(_children()) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not set(_children()) - before


def _session(sid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(d))
    return out


@linux_only
def test_sigkill_of_the_parent_kills_its_lava_processes(tmp_path):
    """The run's OS processes are tied to the parent with PR_SET_PDEATHSIG (targets/lava.py's _CHILDREN)."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        from targets.lava_lif import LavaLifFixedTarget
        from test_steps_compiler import net, spikes
        from toolchain.steps_compiler import compile_graph
        if __name__ == "__main__":
            LavaLifFixedTarget(chunk_size=2000, timeout_s=600).run(compile_graph(net(), 20), spikes(n=2000, t=20))
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    proc = subprocess.Popen([sys.executable, str(script)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(_session(proc.pid)) < 6:           # parent + Lava's OS processes
            assert proc.poll() is None and time.monotonic() < deadline, "the Lava run did not start"
            time.sleep(0.05)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _session(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _session(proc.pid), "Lava processes outlived their SIGKILLed parent"
    finally:
        for pid in _session(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_hw_sim_matches_lava_where_u_wraps_and_v_saturates():
    """A hand-built CompiledSteps outside the compiler's ranges (the compiler refuses such weights): 24-bit wrap
    of u, saturation of v at +-(2**23 - 1), a_in beyond 16 bits, truncating decay; hw_sim must still be Lava."""
    import dataclasses

    rng = np.random.default_rng(7)
    cs = compile_graph(net(sizes=(20, 10, 20)), 20, exponent="mantissa")   # layer 0: one block, as assumed below
    big = [dataclasses.replace(cl, weights=(2 * rng.integers(-128, 128, cl.weights.shape)).astype(np.int32),
                               weight_exp=[7, 3][k], dv=[0, 300][k],
                               vth=rng.integers(1000, 131071, cl.n_out).astype(np.int64))
           for k, cl in enumerate(cs.layers)]
    hand = dataclasses.replace(cs, layers=tuple(big))
    x = spikes(n=3, t=20)
    lava = LavaLifFixedTarget().run(hand, x).trains
    hw = run_lif_fixed(hand, x)
    assert all(np.array_equal(a, b) for a, b in zip(hw, lava))
    assert all(s.sum() > 0 for s in hw)
    # the edges were really reached in layer 0 (no leak): u beyond 24 bits and v at its saturation limit
    from toolchain.quantize import effective_weights

    u = (x.astype(np.int64) @ effective_weights(big[0].weights, big[0].weight_exp).T) << 6
    assert np.abs(u).max() > 2**23
    u = np.where(u > 2**23, u - 2**24, np.where(u <= -2**23, u + 2**24, u))
    v, saturated = np.zeros(u[:, 0].shape, np.int64), 0
    for t in range(u.shape[1]):
        v = v + u[:, t]
        saturated += int((np.abs(v) >= 2**23 - 1).sum())
        v = np.clip(v, -2**23 + 1, 2**23 - 1)
        v = np.where(v > big[0].vth << 6, 0, v)
    assert saturated > 0


def test_verify_steps_runs_the_lava_targets_from_the_registry_on_a_graph():
    """Through the public interface: registry names, a plain steps Graph (compiled by the targets for the inputs'
    T), the spike-train verifier's gates, and lava-fixed-lif = hw_sim-lif (its cross gate)."""
    from targets.registry import get_target, steps_target_name
    from toolchain.verify_trains import verify_steps

    assert [steps_target_name(n) for n in ("lava-float", "lava-fixed", "hw_sim")] == \
        ["lava-float-lif", "lava-fixed-lif", "hw_sim-lif"]
    g, x = net(seed=3), spikes(n=4, t=12, seed=4)
    rep = verify_steps(g, x, targets=["lava-float-lif", "lava-fixed-lif", "hw_sim-lif"])
    assert rep.passed, rep.summary()
    assert [t.target for t in rep.targets] == ["lava-float-lif", "lava-fixed-lif", "hw_sim-lif"]
    assert [(c.name, c.passed) for c in rep.cross_gates] == [("lava-fixed-lif = hw_sim-lif", True)]
    res = get_target("lava-float-lif").run(compile_graph(g, 12), x)       # the compiled form works the same
    assert all(np.array_equal(a, b) for a, b in zip(res.trains, simulate(g, x).spikes))


def test_calibrated_network_beyond_its_calibration_is_still_hw_sim_bit_for_bit():
    """Compiled on sparse trains (p = 0.05), run on dense ones (p = 0.9): u wraps and v saturates in the integer
    run (a_in beyond 16 bits, v saturated low); hw_sim counts the events and still equals lava-fixed spike for
    spike (u's 24-bit wrap is covered by test_hw_sim_matches_lava_where_u_wraps_and_v_saturates)."""
    from hw_sim.lif import run_lif_fixed_events
    from test_steps_compiler import wide_net

    g = wide_net()
    cs = compile_graph(g, 20, range_mode="calibrated", calibration_spikes=spikes(n=40, t=20, n_in=100, p=0.05))
    x = spikes(n=3, t=20, n_in=100, p=0.9, seed=4)
    hw, events = run_lif_fixed_events(cs, x)
    lava = LavaLifFixedTarget().run(cs, x).trains
    assert all(np.array_equal(a, b) for a, b in zip(hw, lava))
    assert events[0]["a_in_over_16bit"] > 0 and events[0]["v_saturated_low"] > 0
