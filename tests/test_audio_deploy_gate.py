"""The deployed decoder's +-1 step gate (docs/audio.md, "The decoder's +-1 step gate"): the weight exponent chosen
for the grid of both weight blocks (``compile_graph(exponent="fine")``, ``snnc audio-deploy --exponent``), and the
training option that bounds the input current per step (``snnc train audio --current-penalty``)."""
from __future__ import annotations

import numpy as np
import pytest

from test_audio_data import needs_fsdd
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
    assert fine.manifest["exponent"] == "fine" and coarse.manifest["exponent"] == "mantissa"
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
        fine_0, coarse_0 = (match_spikes(ref[k], runs[e][k], 0).fraction for e in ("fine", "mantissa"))
        assert fine_0 >= coarse_0
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
        used_exponent("coarse", 2)
    assert used_exponent("fine", 1) == "mantissa" and used_exponent("mantissa", 2) == "mantissa"
    assert used_exponent("fine", 2) == "fine"   # a split layer alone takes mantissa: the manifest


def _reference_with_penalty(w1t, w2, x, target, rule, lam, bound):
    """The online rule step by step in numpy (exact trace, Adam moments reset per batch, every row with a non-zero
    trace updated in its step) plus the input-current penalty 0.5 lam relu(|I| - bound)^2 of both layers: its
    gradient is dP/dI times the input spikes of the step itself. Returns (loss, penalty)."""
    f32 = np.float32
    t_steps, bsz, n_out = target.shape
    n_in, h = w1t.shape
    m1, s1, m2, s2 = np.zeros_like(w1t), np.zeros_like(w1t), np.zeros_like(w2), np.zeros_like(w2)
    b1, b2 = float(f32(rule.beta1)), float(f32(rule.beta2))
    leak, vth = f32(rule.leak), f32(rule.v_th)
    v1, v2, tr2p = np.zeros((bsz, h), f32), np.zeros((bsz, n_out), f32), np.zeros((bsz, h), f32)
    logc = np.zeros((t_steps + 1, bsz))
    loss = pen = 0.0

    def adam(w, g, m, s, step, rows):
        lr_bc1 = float(f32(rule.lr / (1.0 - rule.beta1 ** step)))
        inv_bc2 = float(f32(1.0 / (1.0 - rule.beta2 ** step)))
        m[rows] = b1 * m[rows].astype(float) + (1.0 - b1) * g[rows]
        s[rows] = b2 * s[rows].astype(float) + (1.0 - b2) * g[rows] ** 2
        w[rows] = w[rows].astype(float) - lr_bc1 * m[rows] / (np.sqrt(s[rows] * inv_bc2) + float(f32(rule.eps)))

    def dpen(cur):
        ex = np.maximum(np.abs(cur.astype(float)) - bound, 0.0)
        return lam * ex * np.sign(cur), 0.5 * lam * float((ex ** 2).sum()) / bsz

    for t in range(t_steps):
        cur1 = x[t] @ w1t
        p1, e1 = dpen(cur1)
        v = np.minimum(leak * v1 + cur1, vth)
        sig1 = np.exp(-np.abs(v - vth)) / (1.0 + np.exp(-np.abs(v - vth))) ** 2
        a1 = (v >= vth).astype(f32)
        v1 = np.where(a1 > 0, f32(0), v).astype(f32)
        tr2 = leak * tr2p + a1
        cur2 = a1 @ w2.T
        p2, e2 = dpen(cur2)
        pen += e1 + e2
        v = np.minimum(leak * v2 + cur2, vth)
        fired = v >= vth
        y = target[t].astype(f32)
        err = np.where(fired != (y > 0), vth * y - v, 0.0)
        loss += 0.5 * float((err.astype(float) ** 2).sum()) / bsz
        v2 = np.where(fired, f32(0), v).astype(f32)
        tr2p = tr2 * (1.0 - fired.sum(1, keepdims=True) / rule.n_shrink)
        logc[t + 1] = logc[t] + np.log(leak * (1.0 - a1.sum(1) / rule.n_shrink))
        neg = -err.astype(float)
        g2 = (neg.T @ tr2.astype(float) + p2.T @ a1.astype(float)) / bsz
        delta = (neg @ w2.astype(float)) * sig1
        tr1 = sum(x[s] * np.exp(logc[t] - logc[s])[:, None] for s in range(t + 1))
        g1 = (tr1.T @ delta + x[t].T.astype(float) @ p1) / bsz
        adam(w1t, g1, m1, s1, t + 1, np.flatnonzero(tr1.any(0)))
        adam(w2, g2, m2, s2, t + 1, slice(None))
    return loss, pen


def test_current_penalty_is_the_per_step_rule_plus_the_penalty_gradient():
    """online_batch_sparse(current_penalty=(lam, K)) equals the per-step rule with the penalty's local gradient
    added (rows longer than one catch-up chunk, inputs spiking in many steps); lam 0 is the authors' rule bit for
    bit; the penalty shrinks the largest per-step input currents."""
    from models.audio_online import online_batch_sparse
    from models.rate_online import OnlineRule

    rng = np.random.default_rng(5)
    n, h, t, b, n_out = 60, 600, 20, 4, 9
    w1t = rng.normal(-0.1, 0.4, (n, h)).astype(np.float32)
    w2 = rng.normal(0.1, 0.8, (n_out, h)).astype(np.float32)
    x = (rng.random((t, b, n)) < rng.uniform(0.05, 0.4, n)).astype(np.float32)
    spikes = [[np.flatnonzero(x[s, c]) for s in range(t)] for c in range(b)]
    tgt = (rng.random((t, b, n_out)) < 0.4).astype(np.uint8)
    rule = OnlineRule(lr=1e-2, n_shrink=4000.0)
    lam, bound = 0.5, 1.5
    a, a2 = w1t.copy(), w2.copy()
    ref_loss, ref_pen = _reference_with_penalty(a, a2, x, tgt, rule, lam, bound)
    got_w1, got_w2 = w1t.copy(), w2.copy()
    got = online_batch_sparse(got_w1, got_w2, spikes, tgt, rule, t, current_penalty=(lam, bound))
    assert ref_pen > 1.0 and got["penalty"] == pytest.approx(ref_pen, rel=1e-4)
    assert got["loss"] == pytest.approx(ref_loss, rel=1e-4)
    np.testing.assert_allclose(got_w1, a, rtol=0, atol=2e-5)
    np.testing.assert_allclose(got_w2, a2, rtol=0, atol=2e-5)
    off_w1, off_w2, plain_w1, plain_w2 = w1t.copy(), w2.copy(), w1t.copy(), w2.copy()
    off = online_batch_sparse(off_w1, off_w2, spikes, tgt, rule, t, current_penalty=(0.0, bound))
    online_batch_sparse(plain_w1, plain_w2, spikes, tgt, rule, t)
    assert off["penalty"] == 0.0
    np.testing.assert_array_equal(off_w1, plain_w1)
    np.testing.assert_array_equal(off_w2, plain_w2)
    assert np.abs(got_w1 - off_w1).max() > 1e-3
    peak = lambda w: np.abs(np.einsum("tbi,ih->tbh", x, w)).max(axis=(0, 1)).mean()   # noqa: E731
    assert peak(got_w1) < peak(off_w1)


def test_current_penalty_options_are_checked():
    from models.audio_trainer import AudioConfig

    assert AudioConfig().current_penalty == 0.0                       # off by default: the authors' rule
    for bad in ({"current_penalty": -1.0}, {"current_penalty": float("nan")}, {"current_bound": 0.0}):
        with pytest.raises(SnncError, match="--current-penalty must be >= 0"):
            AudioConfig(**bad)


@needs_fsdd
def test_train_with_current_penalty_lowers_the_input_per_step_and_deploys(tmp_path, capsys, monkeypatch):
    """snnc train audio --current-penalty: the same small run with and without the penalty; the penalised
    audiocoder's input per step (median over hidden neurons of the largest, and the code layer's largest, on
    training clips) is lower while both layers still spike, the option is recorded
    in the run's config, and snnc audio-deploy compiles and verifies it (exit status = its verdict)."""
    import json

    from models.audio_deploy import clip_trains, joint_graph
    from models.audio_model import load_audiocoder
    from models.cochleagram import FeatureSpec, load_features
    from test_audio_data import SHARED
    from test_audio_train import SMALL, _image_model
    from toolchain.cli import main
    from toolchain.steps_calibration import measure_steps_ranges

    monkeypatch.setenv("SNNC_DATA", str(SHARED))
    img, cache = _image_model(tmp_path / "ae"), tmp_path / "cache"
    small = [a if a != "1e-3" else "1e-2" for a in SMALL]                  # lr 1e-2: currents grow in 2 epochs
    peaks = {}
    for name, extra in (("plain", []), ("pen", ["--current-penalty", "1", "--current-bound", "0.8"])):
        rc = main(["train", "audio", "--image-model", str(img), "--pairing", "A", "--epochs", "2", "--out",
                   str(tmp_path / name), "--feature-cache", str(cache), *small, *extra])
        assert rc == 0, capsys.readouterr().err
        ac = load_audiocoder(tmp_path / name)
        train = load_features("train", FeatureSpec(**ac.meta["spec"]), cache_dir=cache, limit=60)
        x = clip_trains(ac, train, range(len(train)), 7)
        r = measure_steps_ranges(joint_graph(ac), x)
        peaks[name] = [float(np.median(r[0].a_in)), float(r[1].a_in.max()), r[0].rate.sum(), r[1].rate.sum()]
    cfg = json.loads((tmp_path / "pen" / "metrics.json").read_text())["config"]
    assert cfg["current_penalty"] == 1.0 and cfg["current_bound"] == 0.8
    (h0, c0, _, _), (h1, c1, sh, sc) = peaks["plain"], peaks["pen"]
    assert h0 > 1.0 and h1 < 0.9 * h0 and c1 < 0.8 * c0 and sh > 1 and sc > 1, peaks    # lower, and still spiking
    rc = main(["audio-deploy", str(tmp_path / "pen"), "--clips", "6", "--calibration-clips", "10", "--feature-cache",
               str(cache), "--no-scores", "--json", str(tmp_path / "dep.json")])
    dj = json.loads((tmp_path / "dep.json").read_text())
    assert rc == (0 if dj["passed"] else 1) and dj["exponent"] == "fine" and len(dj["scales"]) == 3
