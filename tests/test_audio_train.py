"""Audiocoder: the event-driven online rule (exact against the dense rule, lazy rows), the model file, and the
CLI end to end on a small front end (train audio, eval, audio2image, bad inputs)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models.audio_model import AudioCoder, load_audiocoder, save_audiocoder
from models.audio_online import online_batch_sparse
from models.rate_online import OnlineRule, online_batch
from toolchain.cli import main
from toolchain.errors import ArtifactError

from test_audio_data import SHARED, needs_fsdd, speech_like, write_wav


def _batch(n=40, h=30, t=12, b=5, p=0.3, seed=0):
    rng = np.random.default_rng(seed)
    w1 = rng.uniform(-0.5, 0.5, (h, n)).astype(np.float32)
    w2 = rng.uniform(-0.5, 0.5, (n, h)).astype(np.float32)
    x = (rng.random((t, b, n)) < p).astype(np.uint8)
    return w1, w2, x


def test_full_window_equals_dense_online_rule():
    """window = T: the sparse kernel is the dense rule of models/rate_online.py (target = input)."""
    w1, w2, x = _batch()
    rule = OnlineRule(lr=1e-2, n_shrink=40.0)
    tw1, tw2 = torch.tensor(w1), torch.tensor(w2)
    ref = online_batch(tw1, tw2, torch.from_numpy(x), rule)
    w1t, w2s = np.ascontiguousarray(w1.T), w2.copy()
    spikes = [[np.flatnonzero(x[t, b]) for t in range(x.shape[0])] for b in range(x.shape[1])]
    got = online_batch_sparse(w1t, w2s, spikes, x, rule, window=x.shape[0])
    assert got["loss"] == pytest.approx(ref["loss"], rel=1e-5)
    np.testing.assert_allclose(w1t.T, tw1.numpy(), atol=5e-6)
    np.testing.assert_allclose(w2s, tw2.numpy(), atol=5e-6)
    np.testing.assert_array_equal(got["out_spikes"], ref["out_spikes"].numpy())


def test_lazy_rows_and_short_window():
    """Inputs that never spike keep their weights; a short window changes the update (it is not the dense rule)."""
    w1, w2, x = _batch(p=0.2)
    x[:, :, :10] = 0  # inputs 0-9 silent
    spikes = [[np.flatnonzero(x[t, b]) for t in range(x.shape[0])] for b in range(x.shape[1])]
    rule = OnlineRule(lr=1e-2, n_shrink=40.0)
    a, a2 = np.ascontiguousarray(w1.T), w2.copy()
    online_batch_sparse(a, a2, spikes, x, rule, window=1)
    np.testing.assert_array_equal(a[:10], w1.T[:10])
    assert np.abs(a[10:] - w1.T[10:]).max() > 1e-3
    b, b2 = np.ascontiguousarray(w1.T), w2.copy()
    online_batch_sparse(b, b2, spikes, x, rule, window=x.shape[0])
    assert np.abs(a - b).max() > 1e-4


def _reference_sparse(w1t, w2, spikes, target, rule, window, state=None, one_minus_b=None, miss_weight=1.0,
                      lr_input_scale=1.0):
    """The event-driven rule written step by step in numpy (dense traces, every touched row updated in its step):
    tr1[b, i] = sum over the input's spikes s in (t - window, t] of prod_{u=s}^{t-1} leak (1 - hidden_b(u) /
    n_shrink); lazy Adam: rows whose trace is zero in a step keep weights and moments. Float32 storage, Adam in
    float64 with the authors' constants (1 - float32(b) in float64; ``one_minus_b`` overrides them). ``state``:
    dict of persistent moments (m1, s1, m2, s2, step) or None (moments start at 0); ``miss_weight``: factor on
    the error of a missed target spike; ``lr_input_scale``: factor on W1's step size. Returns the loss."""
    f32 = np.float32
    t_steps, bsz, n_out = target.shape
    n_in, h = w1t.shape
    x = np.zeros((t_steps, bsz, n_in), f32)
    for b in range(bsz):
        for t in range(t_steps):
            x[t, b, spikes[b][t]] = 1.0
    st = state if state is not None else {"m1": np.zeros_like(w1t), "s1": np.zeros_like(w1t),
                                          "m2": np.zeros_like(w2), "s2": np.zeros_like(w2), "step": 0}
    b1, b2 = float(f32(rule.beta1)), float(f32(rule.beta2))
    c1, c2 = one_minus_b or (1.0 - b1, 1.0 - b2)
    leak, vth = f32(rule.leak), f32(rule.v_th)
    v1, v2 = np.zeros((bsz, h), f32), np.zeros((bsz, n_out), f32)
    tr2p = np.zeros((bsz, h), f32)
    logc = np.zeros((t_steps + 1, bsz))
    loss = 0.0

    def adam(w, g, m, s, step, rows, scale=1.0):
        lr_bc1 = float(f32(f32(rule.lr / (1.0 - rule.beta1 ** step)) * f32(scale)))
        inv_bc2 = float(f32(1.0 / (1.0 - rule.beta2 ** step)))
        mm = b1 * m[rows].astype(float) + c1 * g[rows]
        ss = b2 * s[rows].astype(float) + c2 * g[rows] ** 2
        m[rows], s[rows] = mm, ss
        w[rows] = w[rows].astype(float) - lr_bc1 * mm / (np.sqrt(ss * inv_bc2) + float(f32(rule.eps)))

    for t in range(t_steps):
        v = np.minimum(leak * v1 + x[t] @ w1t, vth)
        sig1 = np.exp(-np.abs(v - vth)) / (1.0 + np.exp(-np.abs(v - vth))) ** 2
        a1 = (v >= vth).astype(f32)
        v1 = np.where(a1 > 0, f32(0), v).astype(f32)
        tr2 = leak * tr2p + a1
        v = np.minimum(leak * v2 + a1 @ w2.T, vth)
        fired = v >= vth
        y = target[t].astype(f32)
        err = np.where(fired != (y > 0), vth * y - v, 0.0) * np.where((y > 0) & ~fired, f32(miss_weight), f32(1))
        loss += 0.5 * float((err.astype(float) ** 2).sum()) / bsz
        v2 = np.where(fired, f32(0), v).astype(f32)
        tr2p = tr2 * (1.0 - fired.sum(1, keepdims=True) / rule.n_shrink)
        logc[t + 1] = logc[t] + np.log(leak * (1.0 - a1.sum(1) / rule.n_shrink))
        neg = -err.astype(float)
        g2 = neg.T @ tr2.astype(float) / bsz
        delta = (neg @ w2.astype(float)) * sig1
        tr1 = np.zeros((bsz, n_in))
        for s in range(max(0, t - window + 1), t + 1):
            tr1 += x[s] * np.exp(logc[t] - logc[s])[:, None]
        g1 = tr1.T @ delta / bsz
        step = st["step"] + t + 1
        adam(w1t, g1, st["m1"], st["s1"], step, np.flatnonzero(tr1.any(0)), lr_input_scale)
        adam(w2, g2, st["m2"], st["s2"], step, slice(None))
    st["step"] += t_steps
    return loss


@pytest.mark.parametrize("window", [1, 3, 30])
@pytest.mark.parametrize("persistent", [False, True])
def test_catch_up_equals_per_step_rule(window, persistent):
    """The deferred (catch-up) updates of W1 rows equal the rule applied row by row in every step, for short
    windows, the exact trace and persistent moments, over two batches (inputs that spike in many steps, rows
    longer than one catch-up chunk)."""
    from models.audio_online import AdamState, Workspace

    rng = np.random.default_rng(5)
    n, h, t, b, n_out = 60, 1100, 30, 4, 9
    w1t = rng.uniform(-0.1, 0.2, (n, h)).astype(np.float32)
    w2 = rng.uniform(-0.2, 0.4, (n_out, h)).astype(np.float32)
    w_init = w1t.copy()
    p = rng.uniform(0.0, 0.3, n)
    p[:5] = 0.0                                          # silent inputs
    rule = OnlineRule(lr=1e-3, n_shrink=4000.0)       # > hidden spikes per step (58,500 in the real network)
    a, a2 = w1t.copy(), w2.copy()
    ref_state = {"m1": np.zeros_like(w1t), "s1": np.zeros_like(w1t), "m2": np.zeros_like(w2),
                 "s2": np.zeros_like(w2), "step": 0} if persistent else None
    state = AdamState(w1t, w2) if persistent else None
    work = Workspace()
    for rep in range(2):
        x = rng.random((t, b, n)) < p
        spikes = [[np.flatnonzero(x[s, c]) for s in range(t)] for c in range(b)]
        tgt = (rng.random((t, b, n_out)) < 0.4).astype(np.uint8)
        ref_loss = _reference_sparse(a, a2, spikes, tgt, rule, window, ref_state)
        got = online_batch_sparse(w1t, w2, spikes, tgt, rule, window, state, work)
        assert got["loss"] == pytest.approx(ref_loss, rel=1e-5)
        np.testing.assert_allclose(w1t, a, rtol=0, atol=2e-6)
        np.testing.assert_allclose(w2, a2, rtol=0, atol=2e-6)
    np.testing.assert_array_equal(w1t[:5], w_init[:5])   # rows of silent inputs never move
    assert np.abs(w1t[5:] - w_init[5:]).min(axis=1).max() > 1e-4
    if persistent:
        scale = np.abs(ref_state["m1"]).max()                  # float32 rounding, relative to the moments' size
        assert scale > 1e-4
        np.testing.assert_allclose(state.m1, ref_state["m1"], atol=1e-4 * scale)


def test_adam_constants_are_the_authors():
    """One step at lr 1: every full Adam step of W1 and W2 has the length the authors' float64 code gives
    (1 - float32(b), 1.0000067 lr), not float32(1 - b) (0.99999998 lr): 6.7e-6 apart, far above float32 rounding."""
    rng = np.random.default_rng(7)
    n, h, b, n_out = 50, 64, 6, 12
    w1t = rng.uniform(0.0, 0.6, (n, h)).astype(np.float32)
    w2 = rng.uniform(-0.3, 0.5, (n_out, h)).astype(np.float32)
    spikes = [[np.flatnonzero(rng.random(n) < 0.3)] for _ in range(b)]
    tgt = (rng.random((1, b, n_out)) < 0.5).astype(np.uint8)
    rule = OnlineRule(lr=1.0, n_shrink=1000.0)
    steps = {}
    for name, omb in (("authors", None), ("float32", (float(np.float32(0.1)), float(np.float32(1e-3))))):
        a, a2 = w1t.copy(), w2.copy()
        _reference_sparse(a, a2, spikes, tgt, rule, 1, one_minus_b=omb)
        steps[name] = (a - w1t, a2 - w2)
    k1, k2 = w1t.copy(), w2.copy()
    online_batch_sparse(k1, k2, spikes, tgt, rule, 30)
    for got, ref, other in zip((k1 - w1t, k2 - w2), steps["authors"], steps["float32"]):
        full = np.abs(ref) > 0.999                      # full steps: |g| >> eps
        assert full.sum() > 50
        assert np.abs(got - ref)[full].max() < 1e-6
        assert np.abs(other - ref)[full].min() > 5e-6


def test_audiocoder_file_round_trip_and_decoder_mismatch(tmp_path):
    rng = np.random.default_rng(1)
    meta = {"spec": {"rate": 8000, "frames": 10, "decimation": 10, "ear_q": 8, "step_factor": 0.5}, "steps": 5,
            "p_scale": 0.02, "pairing": "A"}
    ac = AudioCoder(rng.random((320, 8), dtype=np.float32), rng.random((6, 8), dtype=np.float32),
                    rng.random((784, 6)), 0.9, 1.0, meta)
    save_audiocoder(ac, tmp_path / "audiocoder.npz")
    back = load_audiocoder(tmp_path)
    np.testing.assert_array_equal(back.w1t, ac.w1t) and np.testing.assert_array_equal(back.dec_w, ac.dec_w)
    bad = AudioCoder(ac.w1t, ac.w2, rng.random((784, 7)), 0.9, 1.0, meta)
    save_audiocoder(bad, tmp_path / "bad" / "audiocoder.npz")
    with pytest.raises(ArtifactError, match="decoder takes 7 hidden neurons but the audiocoder produces 6"):
        load_audiocoder(tmp_path / "bad")
    (tmp_path / "junk.npz").write_bytes(b"nope")
    with pytest.raises(ArtifactError, match="not a readable audiocoder"):
        load_audiocoder(tmp_path / "junk.npz")


def _image_model(path: Path, hidden: int = 20, seed: int = 0) -> Path:
    """A random (untrained) rate autoencoder 784-hidden-784 whose hidden layer spikes on MNIST digits."""
    from models.rate_model import make_graph
    from toolchain.artifact_graph import save_graph

    rng = np.random.default_rng(seed)
    g = make_graph(rng.normal(0.02, 0.1, (hidden, 784)), rng.normal(0.05, 0.3, (784, hidden)),
                   {"family": "rate-lif", "dataset": "mnist", "steps": 15, "p_scale": 0.3})
    path.mkdir(parents=True, exist_ok=True)
    save_graph(g, path / "model.onnx")
    return path


SMALL = ["--audio-rate", "8000", "--frames", "40", "--hidden", "24", "--steps", "8", "--limit-train", "60",
         "--limit-test", "20", "--batch-size", "20", "--lr", "1e-3", "--no-progress"]


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory) -> Path:
    """One cochleagram cache for the tests of this module (the small front end's features are computed once)."""
    return tmp_path_factory.mktemp("audio-features")


@needs_fsdd
def test_train_eval_audio2image_cli(tmp_path, capsys, monkeypatch, feature_cache):
    monkeypatch.setenv("SNNC_DATA", str(SHARED))
    img = _image_model(tmp_path / "ae")
    out = tmp_path / "run"
    cache = feature_cache
    rc = main(["train", "audio", "--image-model", str(img), "--pairing", "B", "--out", str(out),
               "--feature-cache", str(cache), *SMALL])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_train"] == 60 and m["n_test"] == 20 and np.isfinite(m["test_mse"]) and m["pairing"] == "B"
    assert m["epochs_done"] == 1 and m["history"][0]["test_mse"] == m["test_mse"]
    assert 0.0 <= m["test_hidden_silent"] <= 1.0 and m["test_code_spikes_per_clip"] >= 0.0
    assert (out / "generated.png").stat().st_size > 1000
    ac = load_audiocoder(out)
    assert ac.w1t.shape == (40 * 32, 24) and ac.n_code == 20
    # a strongly driven audiocoder in the same file format: eval decodes real spikes through the decoder
    rng = np.random.default_rng(3)
    loud = AudioCoder(np.abs(rng.normal(0.5, 0.3, ac.w1t.shape)).astype(np.float32),
                      rng.normal(0.3, 0.5, ac.w2.shape).astype(np.float32), ac.dec_w, ac.dec_leak, ac.dec_v_th, ac.meta)
    save_audiocoder(loud, tmp_path / "loud" / "audiocoder.npz")
    assert main(["eval", str(tmp_path / "loud"), "--json", str(tmp_path / "loud.json")]) == 0
    lj = json.loads((tmp_path / "loud.json").read_text())
    assert lj["code_spikes_per_clip"] > 10 and lj["n_test"] == 20 and 0 < lj["test_mse"] < 2.5
    # the deployed pipeline: one LIF network on one chip, verified on hw_sim-lif against the float reference
    rc = main(["audio-deploy", str(tmp_path / "loud"), "--clips", "6", "--calibration-clips", "10", "--feature-cache",
               str(cache), "--json", str(tmp_path / "dep.json"), "--out", str(tmp_path / "dep.npz")])
    dj = json.loads((tmp_path / "dep.json").read_text())
    assert rc == (0 if dj["passed"] else 1) and dj["chips"] == 1 and dj["weight_blocks"] == 2 and dj["clips"] == 6
    assert min(dj["targets"]["hw_sim-lif"]["matched_within_1"].values()) > 0.5 and (tmp_path / "dep.npz").is_file()
    assert main(["audio-deploy", str(tmp_path / "loud"), "--clips", "21", "--feature-cache", str(cache)]) == 2
    assert "exceeds the 20 test clips" in capsys.readouterr().err
    # eval reproduces the training score (same clips, same input seed)
    rc = main(["eval", str(out), "--json", str(tmp_path / "ev.json")])
    assert rc == 0
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert ev["test_mse"] == pytest.approx(m["test_mse"], rel=1e-12)
    # a second run into the same folder is refused and leaves the first intact
    before = (out / "audiocoder.npz").read_bytes()
    assert main(["train", "audio", "--image-model", str(img), "--out", str(out), *SMALL]) == 2
    assert "already holds a trained run" in capsys.readouterr().err
    assert (out / "audiocoder.npz").read_bytes() == before
    # audio2image on a recording, and a clip longer than the window (40 frames = 50 ms at 8 kHz)
    clip = SHARED / "fsdd" / "recordings" / "3_theo_0.wav"
    assert main(["audio2image", str(clip), "--model", str(out), "--out", str(tmp_path / "d.png"), "--cut"]) == 0
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["audio2image", str(clip), "--model", str(out), "--out", str(tmp_path / "e.png")]) == 2
    assert "longer than" in capsys.readouterr().err and not (tmp_path / "e.png").exists()
    stereo = write_wav(tmp_path / "st.wav", np.repeat(speech_like(0.03), 2), channels=2)
    assert main(["audio2image", str(stereo), "--model", str(out), "--out", str(tmp_path / "f.png")]) == 2
    assert "stereo" in capsys.readouterr().err
    # the ANN baseline on the same features (its own AE-ANN), scored and evaluated the same way
    ann = tmp_path / "ann"
    assert main(["train", "audio", "--ann", "adam", "--pairing", "B", "--out", str(ann), "--feature-cache",
                 str(cache), *SMALL]) == 0
    ma = json.loads((ann / "metrics.json").read_text())
    assert ma["kind"] == "ann-adam" and np.isfinite(ma["test_mse"]) and ma["ae_ann_val_mse"] < 0.9
    assert main(["eval", str(ann), "--json", str(tmp_path / "eva.json")]) == 0
    assert json.loads((tmp_path / "eva.json").read_text())["test_mse"] == pytest.approx(ma["test_mse"], rel=1e-6)
    assert not [p for p in tmp_path.rglob("*") if ".snnc-tmp" in p.name]


@needs_fsdd
def test_stopped_run_keeps_its_finished_epochs(tmp_path, monkeypatch, feature_cache):
    """Outputs are written after every epoch: a run stopped in epoch 2 leaves epoch 1's model, metrics and grid
    (epochs_done 1) and no temp files."""
    from models.audio_trainer import AudioConfig, train_audio

    monkeypatch.setenv("SNNC_DATA", str(SHARED))
    cfg = AudioConfig(pairing="A", rate=8000, frames=40, hidden=24, steps=8, limit_train=60, limit_test=20,
                      batch_size=20, lr=1e-3, epochs=3)

    def log(msg: str) -> None:
        if msg.startswith("epoch 2/3"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_audio(cfg, tmp_path / "run", _image_model(tmp_path / "ae"), cache_dir=feature_cache,
                    progress=False, log=log)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["epochs_done"] == 1 and len(m["history"]) == 1 and m["config"]["epochs"] == 3
    assert load_audiocoder(tmp_path / "run").meta["epochs_done"] == 1
    assert (tmp_path / "run" / "generated.png").is_file()
    assert not [p for p in tmp_path.rglob("*") if ".snnc-tmp" in p.name]


@needs_fsdd
def test_train_audio_bad_image_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SNNC_DATA", str(SHARED))
    assert main(["train", "audio", "--image-model", str(tmp_path / "none"), "--out", str(tmp_path / "r"),
                 *SMALL]) == 2
    assert "snnc train rate" in capsys.readouterr().err
    assert main(["train", "audio", "--image-model", str(_image_model(tmp_path / "ae")), "--out",
                 str(tmp_path / "r"), "--t-h", "40", *SMALL]) == 2
    assert "--t-h must lie in 1..15" in capsys.readouterr().err
    assert not (tmp_path / "r" / "audiocoder.npz").exists()


def test_persistent_adam_state():
    """--adam persistent: the first batch equals the per-batch rule bit for bit (moments start at 0, step 1..T);
    the second batch continues the moments and the step count, so it differs from a fresh start."""
    from models.audio_online import AdamState

    w1, w2, x = _batch(p=0.2)
    spikes = [[np.flatnonzero(x[t, b]) for t in range(x.shape[0])] for b in range(x.shape[1])]
    rule = OnlineRule(lr=1e-2, n_shrink=40.0)
    a, a2 = np.ascontiguousarray(w1.T), w2.copy()
    b, b2 = a.copy(), a2.copy()
    st = AdamState(b, b2)
    online_batch_sparse(a, a2, spikes, x, rule, window=3)
    online_batch_sparse(b, b2, spikes, x, rule, window=3, state=st)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a2, b2)
    assert st.step == x.shape[0] and np.abs(st.m2).max() > 0 and np.abs(st.s1).max() > 0
    silent = np.flatnonzero(x.sum(axis=(0, 1)) == 0)
    assert np.all(st.m1[silent] == 0)   # lazy: rows of inputs that never spiked keep zero moments
    online_batch_sparse(a, a2, spikes, x, rule, window=3)
    online_batch_sparse(b, b2, spikes, x, rule, window=3, state=st)
    assert st.step == 2 * x.shape[0] and np.abs(a2 - b2).max() > 1e-5


def test_adam_mode_is_checked():
    from models.audio_trainer import AudioConfig
    from toolchain.errors import SnncError

    assert AudioConfig(adam="persistent").adam == "persistent"
    with pytest.raises(SnncError, match="--adam must be one of batch, persistent"):
        AudioConfig(adam="sometimes")
