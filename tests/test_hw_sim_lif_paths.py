"""hw_sim-lif's fast kernel (hw_sim/lif.py) takes one of three summation paths per sample step, chosen from the
bound ``active inputs x max |weight|`` (16-bit sums; two exact 16-bit partial sums; 32-bit lanes) and a fast or
range-checking LIF update: every path must give the plain per-layer loop's spikes, first-spike steps and range
events (the oracle ``run_lif_reference``, itself tested bit for bit against real Lava in tests/test_lava_lif.py and
tests/test_steps_targets.py)."""
from __future__ import annotations

import numpy as np
import pytest

from hw_sim.lif import _A_MAX, _I16, _pack, run_lif_reference, simulate_lif
from toolchain.ir import LIF, lif_chain
from toolchain.steps_compiler import compile_graph


def _paths(cs, trains_in) -> list[set[str]]:
    """Per layer, the summation paths its steps take (the kernel's rule, recomputed in numpy)."""
    out = []
    for (w, shift, _, qmax, _), src in zip(_pack(cs), trains_in):
        s = src.reshape(-1, src.shape[2]).astype(np.int64)
        bound = s @ qmax
        prefix = np.zeros(len(s), np.int64)          # the kernel's greedy prefix of events within 16 bits
        for r in np.flatnonzero(bound << int(shift) > _A_MAX):
            part = 0
            for q in qmax[np.flatnonzero(s[r])]:
                if part + q > _I16:
                    break
                part += q
            prefix[r] = part
        fast = bound << int(shift) <= _A_MAX
        one16 = ~fast & (bound <= _I16)
        two16 = ~fast & ~one16 & (bound - prefix <= _I16)
        paths = {name for name, m in (("fast", fast), ("one16", one16), ("two16", two16),
                                      ("int32", ~fast & ~one16 & ~two16)) if m.any()}
        out.append(paths)
    return out


@pytest.fixture(scope="module", params=[1, 2])
def dense_run(request):
    """A 160-60-50 net with one weight block (int8 rows, shift 5) or two (int16 rows), calibrated on sparse inputs
    and run on inputs from sparse to dense: sums from small to far beyond the calibration (a_in beyond 16 bits,
    v saturated low)."""
    rng = np.random.default_rng(7)
    g = lif_chain([rng.normal(0.02, 0.3, (60, 160)), rng.normal(0.05, 0.4, (50, 60))],
                  [LIF(60, 0.9), LIF(50, 0.8, clamp=True)], {})
    xc = (rng.random((20, 12, 160)) < 0.03).astype(np.uint8)
    cs = compile_graph(g, 12, range_mode="calibrated", calibration_spikes=xc, weight_blocks=request.param)
    p = np.repeat([0.01, 0.05, 0.2, 0.5, 0.9, 1.0], 4)[:, None, None]
    x = (rng.random((len(p), 12, 160)) < p).astype(np.uint8)
    return cs, x


PATHS = {1: {"fast", "one16"}, 2: {"fast", "two16", "int32"}}


def test_every_summation_path_equals_the_reference(dense_run):
    cs, x = dense_run
    blocks = 2 if any(cl.fine_weights is not None for cl in cs.layers) else 1   # two: the merged weights
    run = simulate_lif(cs, x, threads=2)
    trains, events = run_lif_reference(cs, x)
    for a, b in zip(run.trains, trains):
        np.testing.assert_array_equal(a, b)
    assert run.events == events
    for tr, first in zip(run.trains, run.first):                        # first-spike steps = the trains' view
        t = np.where(tr.any(axis=1), tr.argmax(axis=1), np.inf)
        np.testing.assert_array_equal(first, t)
    paths = _paths(cs, [x] + run.trains[:-1])
    assert set().union(*paths) >= PATHS[blocks], paths                  # the test reaches every path
    assert sum(e["a_in_over_16bit"] for e in events) > 0 and sum(e["v_saturated_low"] for e in events) > 0


def test_saturation_high_in_the_fast_update_is_counted_and_spikes(dense_run):
    """No leak and the largest threshold: v climbs to just below vth << 6 = 2**23 - 64, and the next input pushes
    it past 2**23 - 1 in steps whose sums are small (the fast update): Lava clips v there and spikes; the fast
    update counts the event without clipping (the spike resets v either way)."""
    from dataclasses import replace

    from toolchain.quantize import VTH_MAX

    cs, x = dense_run
    top = replace(cs.layers[1], dv=0, vth=np.full(cs.layers[1].n_out, VTH_MAX, np.int64))
    cs = replace(cs, layers=(cs.layers[0], top))
    run = simulate_lif(cs, x, threads=1)
    trains, events = run_lif_reference(cs, x)
    for a, b in zip(run.trains, trains):
        np.testing.assert_array_equal(a, b)
    assert run.events == events and events[1]["v_saturated_high"] > 0 and trains[1].sum() > 0
    assert "fast" in _paths(cs, [x] + run.trains[:-1])[1]


@pytest.mark.parametrize("threads", [1, 3])
def test_threads_and_single_samples_agree(dense_run, threads):
    cs, x = dense_run
    full = simulate_lif(cs, x, threads=threads)
    one = [simulate_lif(cs, x[k:k + 1], threads=1) for k in (0, len(x) - 1)]
    for k, r in zip((0, len(x) - 1), one):
        for a, b in zip(full.trains, r.trains):
            np.testing.assert_array_equal(a[k:k + 1], b)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_chunks_taken_in_turn_give_the_reference(dense_run, monkeypatch, threads):
    """simulate_lif's threads take chunks of CHUNK_SAMPLES samples in turn: chunks of 5 over 24 samples (the last
    one short) give the reference's trains, events and lazily computed first-spike steps."""
    import hw_sim.lif as lif

    cs, x = dense_run
    monkeypatch.setattr(lif, "CHUNK_SAMPLES", 5)
    run = simulate_lif(cs, x, threads=threads)
    trains, events = run_lif_reference(cs, x)
    assert run.threads == threads and run.events == events
    for a, b in zip(run.trains, trains):
        np.testing.assert_array_equal(a, b)
    assert len(run.first) == len(trains) and run.first[-1] is run.first[len(trains) - 1]    # computed once
    for f, tr in zip(run.first, trains):
        np.testing.assert_array_equal(f, np.where(tr.any(axis=1), tr.argmax(axis=1), np.inf))


@pytest.mark.parametrize("width", [160, 157])
def test_a_non_binary_uint8_value_in_a_late_chunk_is_refused(dense_run, monkeypatch, width):
    """The values of uint8 input are checked in the kernel's pass over them (no separate pass): one byte 2 or 255
    in the last chunk, on a width that is or is not a multiple of 8, still raises the TargetError."""
    import hw_sim.lif as lif
    from toolchain.errors import TargetError

    cs, x = dense_run
    if width != x.shape[2]:
        cs = compile_graph(lif_chain([np.full((4, width), 0.1)], [LIF(4, 0.9)], {}), x.shape[1])
        x = np.ascontiguousarray(x[:, :, :width])
    monkeypatch.setattr(lif, "CHUNK_SAMPLES", 4)
    for value in (2, 255):
        bad = x.copy()
        bad[-1, -1, width - 1] = value
        with pytest.raises(TargetError, match="hw_sim-lif: input spike trains must hold only 0 and 1"):
            simulate_lif(cs, bad, threads=2)
    assert simulate_lif(cs, x, threads=2).trains[0].shape[0] == len(x)


def test_the_most_negative_int8_weight_bounds_its_row():
    """A one-block 8-bit layer whose row holds mantissa -256 (grid units -128, int8 rows): the row's bound is 128
    (a wrapped int8 abs would give -128 and let too many events take the 16-bit path), and the kernel equals the
    reference on inputs that fill that path's limit."""
    from dataclasses import replace

    rng = np.random.default_rng(11)
    cs = compile_graph(lif_chain([rng.normal(0.0, 0.3, (6, 300))], [LIF(6, 0.9)], {}), 8, weight_blocks=1)
    cl = cs.layers[0]
    w = np.array(cl.weights)
    w[:, :] = -256                                                   # every weight the most negative mantissa
    cs = replace(cs, layers=(replace(cl, weights=w, weight_exp=0),))
    q, shift, _, qmax, _ = _pack(cs)[0]
    assert q.dtype == np.int8 and q.min() == -128 and qmax.min() == 128
    x = np.ones((2, 8, 300), np.uint8)                               # 300 * 128 > 2**15 - 1: not the 16-bit path
    run = simulate_lif(cs, x, threads=1)
    trains, events = run_lif_reference(cs, x)
    np.testing.assert_array_equal(run.trains[0], trains[0])
    assert run.events == events and events[0]["a_in_over_16bit"] > 0


def test_odd_8bit_mantissas_are_refused_by_the_target(dense_run):
    """The compiled network is validated once per target call (the bit test that replaced ``w % 2``): an odd 8-bit
    mantissa in either block is refused with the field named, before anything runs."""
    from dataclasses import replace

    from targets.registry import get_target
    from toolchain.errors import TargetError

    cs, x = dense_run
    cl = cs.layers[0]
    for field_name in ("weights", "fine_weights"):
        arr = getattr(cl, field_name)
        if arr is None:
            continue
        bad = np.array(arr)
        bad[0, 0] += 1 if bad[0, 0] < 254 else -1
        broken = replace(cs, layers=(replace(cl, **{field_name: bad}),) + cs.layers[1:])
        with pytest.raises(TargetError, match=f"{field_name} must be multiples of 2"):
            get_target("hw_sim-lif").run(broken, x)
