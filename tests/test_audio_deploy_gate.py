"""The deployed decoder's +-1 step gate (docs/audio.md, "The decoder's +-1 step gate"): the weight exponent chosen
for the grid of both weight blocks (``compile_graph(exponent="fine")``, ``snnc audio-deploy --exponent``), and the
training option that bounds the input current per step (``snnc train audio --current-penalty``)."""
from __future__ import annotations

import numpy as np
import pytest

from toolchain.errors import CompileError, SnncError
from toolchain.ir import LIF, lif_chain


def _audio_like(seed=0, n_in=200, h=40, code=30):
    """A hidden layer like a trained audiocoder's (per-step input dominated by large negative sums, largest weights
    ~0.8 threshold; a few rows receive ~20 thresholds per step, which holds the layer's exponent down at the default
    choice) and a code layer."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0.0, 0.25, (h, n_in)).clip(-0.8, 0.8)
    w1[:4] = rng.normal(-0.6, 0.2, (4, n_in)).clip(-0.8, 0.8)     # silent rows with large negative inputs per step
    w2 = rng.normal(0.1, 0.6, (code, h))
    return lif_chain([w1, w2], [LIF(h, 0.9, clamp=True), LIF(code, 0.9, clamp=True)])


def _x(n, seed, n_in=200, t=30, p=0.1):
    return (np.random.default_rng(seed).random((n, t, n_in)) < p).astype(np.uint8)


def _compile(g, exponent, **kw):
    from toolchain.steps_compiler import compile_graph

    xc = _x(40, 1, n_in=g.nodes[g.input_name].n)
    return compile_graph(g, 30, range_mode="calibrated", calibration_spikes=xc, exponent=exponent, **kw)


def test_fine_exponent_raises_the_scales_to_the_ranges_and_refines_the_deployed_spikes():
    from hw_sim.lif import run_lif_fixed
    from toolchain.lif_reference import simulate
    from toolchain.spike_metrics import match_spikes

    g = _audio_like()
    coarse, fine = _compile(g, "mantissa"), _compile(g, "fine")
    assert fine.manifest["exponent"] == "fine" and "exponent" not in coarse.manifest
    x = _x(60, 2)
    ref = simulate(g, x).spikes
    runs = {k: run_lif_fixed(cs, x, threads=1) for k, cs in (("mantissa", coarse), ("fine", fine))}
    for k, (a, b, ea, eb) in enumerate(zip(coarse.layers, fine.layers, coarse.manifest["layers"],
                                           fine.manifest["layers"])):
        assert b.weight_exp >= a.weight_exp and b.fine_exp == -1
        assert np.all(b.scale >= a.scale) and np.median(b.scale) >= 2 * np.median(a.scale)
        assert eb["max_weight_error"] <= 0.5 / b.scale.min() + 1e-12 < ea["max_weight_error"]
        assert eb["calibrated"]["a_in"] <= 32767                 # the calibrated input still fits 16 bits
        # residuals of the coarse block fit the fine block: the file is valid and both blocks sum to the weights
        np.testing.assert_allclose(b.effective / b.scale[:, None], b.weights_float, atol=0.5 / b.scale.min() + 1e-12)
        assert ref[k].sum() > 100
        assert match_spikes(ref[k], runs["fine"][k], 0).fraction >= match_spikes(ref[k], runs["mantissa"][k], 0).fraction
    assert match_spikes(ref[0], runs["fine"][0], 0).fraction > match_spikes(ref[0], runs["mantissa"][0], 0).fraction


def test_fine_exponent_runs_bit_exactly_on_lava():
    from hw_sim.lif import run_lif_fixed
    from targets.lava_lif import LavaLifFixedTarget

    cs = _compile(_audio_like(n_in=60, h=12, code=8), "fine")
    assert max(cl.weight_exp for cl in cs.layers) > 0 and all(cl.fine_weights is not None for cl in cs.layers)
    x = _x(2, 3, n_in=60)
    lava, hw = LavaLifFixedTarget().run(cs, x).trains, run_lif_fixed(cs, x, threads=1)
    assert all(np.array_equal(a, b) for a, b in zip(lava, hw)) and hw[-1].sum() > 0


def test_bad_exponent_choices_are_refused():
    from models.audio_deploy import used_exponent

    g = _audio_like()
    with pytest.raises(CompileError, match="exponent='fine' with weight_blocks=1"):
        _compile(g, "fine", weight_blocks=1)
    with pytest.raises(CompileError, match="exponent='coarse'"):
        _compile(g, "coarse")
    with pytest.raises(SnncError, match="--exponent 'coarse' is not one of fine, mantissa"):
        used_exponent("coarse", 2, 100)
    assert used_exponent("fine", 1, 100) == "mantissa" and used_exponent("fine", 2, 5000) == "mantissa"
    assert used_exponent("fine", 2, 4096) == "fine"
