"""`snnc train audio --leak chip` (docs/audio.md, "The decoder's +-1 step gate"): the audiocoder trained with the
leak the chip realises (the compiler's own 12-bit decay of 0.9), recorded in the model, so the compiled network maps
it exactly; and `snnc audio-deploy`'s verdict on such a model with its defaults (fine exponent, margin 0.5)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from test_audio_data import needs_fsdd
from toolchain.errors import SnncError


def test_chip_leak_is_the_compilers_own_decay():
    from models.audio_trainer import AudioConfig
    from toolchain.ir import LIF
    from toolchain.lower_lif import lif_decay
    from toolchain.quantize import DECAY_UNITY, realised_leak

    chip = AudioConfig(leak="chip").leak_value()
    assert AudioConfig().leak == "float" and AudioConfig().leak_value() == 0.9          # the paper's, by default
    assert chip == 3686 / 4096 == realised_leak(0.9) != 0.9
    dv = lif_decay("code", LIF(4, leak=chip))
    assert 1.0 - dv / DECAY_UNITY == chip and realised_leak(chip) == chip             # a fixed point of the map
    with pytest.raises(SnncError, match="--leak must be float .* or chip"):
        AudioConfig(leak="0.9")


@needs_fsdd
def test_train_with_chip_leak_records_it_and_deploys_it_exactly(tmp_path, capsys, monkeypatch):
    """A small `snnc train audio --leak chip` run: the model and its config record the chip's leak, the float model
    (models.audio_model.run_clip) and the joint graph run with it (same code spikes), `snnc audio-deploy` compiles
    it with the float leak exactly realised (manifest: leak = leak_eff) and its exit status is its verdict."""
    from models.audio_deploy import clip_trains, joint_graph
    from models.audio_model import load_audiocoder, run_clip
    from models.cochleagram import FeatureSpec, load_features
    from test_audio_data import SHARED
    from test_audio_train import SMALL, _image_model
    from toolchain.cli import main
    from toolchain.compiled_steps_io import load_compiled_steps
    from toolchain.lif_reference import simulate

    monkeypatch.setenv("SNNC_DATA", str(SHARED))
    img, cache, run = _image_model(tmp_path / "ae"), tmp_path / "cache", tmp_path / "chip"
    rc = main(["train", "audio", "--image-model", str(img), "--pairing", "A", "--epochs", "1", "--out", str(run),
               "--feature-cache", str(cache), "--leak", "chip", "--p-scale", "0.15",
               *[a if a != "1e-3" else "1e-2" for a in SMALL]])
    assert rc == 0, capsys.readouterr().err
    ac = load_audiocoder(run)
    assert ac.meta["leak"] == 3686 / 4096 and ac.meta["config"]["leak"] == "chip"
    g = joint_graph(ac)
    assert [g.nodes[p].leak for p in ("layer0", "layer1")] == [3686 / 4096] * 2 and g.nodes["layer2"].leak == 0.9
    test = load_features("test", FeatureSpec(**ac.meta["spec"]), cache_dir=cache, limit=4)
    x = clip_trains(ac, test, range(len(test)), 3)
    ref = simulate(g, x).spikes
    for k in range(len(test)):
        code, _ = run_clip(ac, [np.flatnonzero(s) for s in x[k]])
        assert np.array_equal(code, ref[1][k])
    assert ref[1].sum() > 0
    capsys.readouterr()
    out = tmp_path / "compiled.npz"
    rc = main(["audio-deploy", str(run), "--clips", "6", "--calibration-clips", "10", "--feature-cache", str(cache),
               "--no-scores", "--json", str(tmp_path / "dep.json"), "--out", str(out)])
    dj = json.loads((tmp_path / "dep.json").read_text())
    assert rc == (0 if dj["passed"] else 1) and dj["exponent"] == "fine" and dj["range_margin"] == 0.5  # defaults
    assert len(dj["range_events"]) == 3 and all(v >= 0 for ev in dj["range_events"] for v in ev.values())
    m = load_compiled_steps(out).manifest["layers"]
    assert [e["dv"] for e in m] == [410] * 3
    assert [e["leak"] == e["leak_eff"] for e in m] == [True, True, False]    # the decoder keeps the image model's 0.9
    assert dj["targets"]["hw_sim-lif"]["matched_within_1"]["layer1"] > 0.9
