"""`snnc compile | run | verify | deploy` through the CLI entry point, including every bad input (exit code 2)."""
from __future__ import annotations

import json
import os
from dataclasses import replace

import brian2  # noqa: F401  (imported at collection: Brian2's log handler must not bind to a per-test capsys stream)
import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from models.network import AlphaLayer, TemporalNetwork
from toolchain.artifact import save_onnx, to_model_proto
from toolchain.cli import main
from toolchain.compiled_io import load_compiled
from toolchain.compiler import DEFAULT_STEPS_PER_UNIT

B2 = ["--brian2-codegen", "numpy"]  # no 45 s Cython build in tests


def autoencoder(seed: int = 0, hidden: int = 8, tau: float = 1.0, out_pulse_w: float = 3.0) -> TemporalNetwork:
    """784-hidden-784 whose neurons are driven well above threshold by pulses (no near-threshold flips)."""
    rng = np.random.default_rng(seed)
    pt = np.array([0.2, 0.6])
    l0 = AlphaLayer(rng.normal(0.01, 0.02, (hidden, 784)), pt, np.full((hidden, 2), 1.5))
    l1 = AlphaLayer(rng.normal(0.0, 0.1, (784, hidden)), pt + 0.6, np.full((784, 2), out_pulse_w / 2))
    return TemporalNetwork((l0, l1), tau, 1.0, latency=1.0)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "model.onnx"
    save_onnx(autoencoder(), path)
    return path


@pytest.fixture(scope="module")
def model_with_dataset(tmp_path_factory):
    """A model that records its dataset (and training noise) the way snnc train does."""
    path = tmp_path_factory.mktemp("cli-meta") / "model.onnx"
    save_onnx(replace(autoencoder(), metadata={"dataset": "mnist", "hyperparameters": {"noise": 0.4}}), path)
    return path


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


DATA = ["--dataset", "mnist", "--limit", "3"]


def test_compile_prints_summary_and_resources(model, tmp_path, capsys):
    out_file = tmp_path / "c.npz"
    rc, out, err = run_cli(capsys, "compile", model, "--steps-per-unit", 16, "--out", out_file)
    assert rc == 0, err
    assert "784-8-784" in out and "grid S=16" in out and "layer1" in out
    assert "cores" in out  # the hw_sim resource table (resource_table_hook)
    cn = load_compiled(out_file)
    assert cn.steps_per_unit == 16 and cn.source.sizes == [784, 8, 784]
    assert f"{cn.layers[0].vth.min()}..{cn.layers[0].vth.max()}" in out  # per-neuron thresholds, range shown
    # the threshold options reach the compiler; compile options on a compiled file are refused by name
    rc, out, err = run_cli(capsys, "compile", model, "--threshold", "layer", "--max-pulse-copies", 1,
                           "--out", out_file)
    assert rc == 0, err
    window = load_compiled(out_file).window
    assert run_cli(capsys, "compile", model, "--horizon-margin", 2, "--out", tmp_path / "long.npz")[0] == 0
    assert load_compiled(tmp_path / "long.npz").window == window + DEFAULT_STEPS_PER_UNIT  # one more time unit
    cn = load_compiled(out_file)
    assert len(set(cn.layers[0].vth.tolist())) == 1 and cn.manifest["layers"][0]["pulse_copies"] == [1] * cn.source.layers[0].n_pulses
    rc, out, err = run_cli(capsys, "verify", out_file, "--targets", "exact", "--dataset", "mnist", "--limit", 1,
                           "--threshold", "neuron", "--out", tmp_path / "r")
    assert rc != 0 and "--threshold" in err and "already compiled" in err


def test_run_writes_spikes_and_mse(model, tmp_path, capsys):
    compiled = tmp_path / "c.npz"
    assert run_cli(capsys, "compile", model, "--out", compiled)[0] == 0
    spikes = tmp_path / "s.npz"
    rc, out, err = run_cli(capsys, "run", compiled, "--target", "brian2", *B2, *DATA, "--out", spikes)
    assert rc == 0, err
    assert "reconstruction MSE" in out
    with np.load(spikes) as z:
        meta = json.loads(str(z["meta"]))
        assert z["layer0.times"].shape == (3, 8) and z["layer1.times"].shape == (3, 784)
        assert np.isfinite(z["layer1.times"]).mean() > 0.5
    assert meta["target"] == "brian2" and 0 <= meta["mse"] < 10 and meta["info"]["codegen"] == "numpy"
    # a grid target also stores the integer spike columns (docs/compiled-format.md)
    rc, out, err = run_cli(capsys, "run", compiled, "--target", "lava-fixed", "--dataset", "mnist", "--limit", 2,
                           "-o", "lava-fixed.chunk_size=1", "--out", spikes)
    assert rc == 0, err
    with np.load(spikes) as z:
        cols, times = z["layer1.columns"], z["layer1.times"]
        assert cols.dtype.kind == "i" and cols.shape == (2, 784)
        assert json.loads(str(z["meta"]))["info"]["chunk_size"] == 1  # -o reached the backend
        # layer 1 spikes are read back half a step earlier (centring, docs/compiler.md)
        np.testing.assert_allclose(times[cols >= 0], (cols[cols >= 0] - 0.5 - 0.5) / DEFAULT_STEPS_PER_UNIT)
    # verify also accepts the compiled file
    rc, out, err = run_cli(capsys, "verify", compiled, "--targets", "exact", *DATA, "--out", tmp_path / "r")
    assert rc == 0 and "exact" in out, err
    # an --out that is a folder is a clear error before the target runs
    rc, out, err = run_cli(capsys, "run", compiled, "--target", "exact", *DATA, "--out", tmp_path)
    assert rc == 2 and "is a folder" in err and "reconstruction MSE" not in out, out + err


def test_verify_passes_and_writes_report(model, tmp_path, capsys):
    out_dir = tmp_path / "rep"
    rc, out, err = run_cli(capsys, "verify", model, "--targets", "exact,brian2", *B2, *DATA, "--out", out_dir)
    assert rc == 0, out + err
    assert f"report: {out_dir / 'report.json'}" in out
    data = json.loads((out_dir / "report.json").read_text())
    assert data["passed"] and [t["target"] for t in data["targets"]] == ["exact", "brian2"]
    assert (out_dir / "reconstructions.png").stat().st_size > 0


def test_verify_exit_1_when_a_gate_fails(tmp_path, capsys):
    # slow decay: every output crosses threshold ~3.5 time units, after the compiled window (~3): brian2 never
    # sees them, the exact model does -> presence gate fails
    late = tmp_path / "late.onnx"
    net = autoencoder(tau=0.2, out_pulse_w=0.6)
    net = replace(net, layers=(net.layers[0], replace(net.layers[1], pulse_times=np.array([0.5, 0.5]))))
    save_onnx(net, late)
    rc, out, err = run_cli(capsys, "verify", late, "--targets", "brian2", *B2, *DATA, "--out", tmp_path / "r")
    assert rc == 1, out + err
    assert "gate failed: brian2 layer 1: presence_agreement" in out
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert not data["passed"] and data["targets"][0]["layers"][1]["late"] > 0
    # the verifier names the remedy and its number; with it the late spikes are seen (hw_sim: fast)
    (remedy,) = data["targets"][0]["remedies"]
    assert remedy["flag"] == "--horizon-margin" and f"remedy: brian2: try --horizon-margin {remedy['value']:g}" in out
    assert "Suggested remedies" in (tmp_path / "r" / "report.md").read_text()
    rc, out, err = run_cli(capsys, "verify", late, "--targets", "hw_sim", *DATA, "--horizon-margin", remedy["value"],
                           "--out", tmp_path / "r2")
    data = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert all(layer["late"] == 0 for layer in data["targets"][0]["layers"]), out


def test_deploy_compiles_runs_and_verifies(model, tmp_path, capsys):
    out_dir = tmp_path / "dep"
    rc, out, err = run_cli(capsys, "deploy", model, "--target", "brian2", *B2, *DATA, "-S", 16, "--out", out_dir)
    assert rc == 0, out + err
    assert load_compiled(out_dir / "compiled.npz").steps_per_unit == 16
    assert json.loads((out_dir / "report.json").read_text())["steps_per_unit"] == 16


# ---- bad inputs: each a clear error (exit 2) before anything runs or is written ----------------------------------

def _write(path, model_proto):
    path.write_bytes(model_proto.SerializeToString())
    return path


def _with_weight(net, value):
    m = to_model_proto(net)
    w = numpy_helper.to_array(m.graph.initializer[0]).copy()
    w[0, 0] = value
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, m.graph.initializer[0].name))
    return m


def _external(net, location):
    m = to_model_proto(net)
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.ClearField("double_data")
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", location
    return m


def _bad_models(tmp_path, model):
    net = autoencoder()
    small = TemporalNetwork((AlphaLayer(np.ones((4, 100)), np.zeros(1), np.ones((4, 1))),
                             AlphaLayer(np.ones((784, 4)), np.zeros(1), np.ones((784, 1)))), 1.0, 1.0, 1.0)
    save_onnx(small, tmp_path / "small.onnx")
    data = model.read_bytes()
    (tmp_path / "trunc.onnx").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.onnx").write_bytes(b"\x08\x07not an onnx file" * 8)
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([], "g", [], [])), tmp_path / "foreign.onnx")
    _write(tmp_path / "nan.onnx", _with_weight(net, np.nan))
    _write(tmp_path / "inf.onnx", _with_weight(net, np.inf))
    _write(tmp_path / "huge.onnx", _with_weight(net, 1e300))
    _write(tmp_path / "abs.onnx", _external(net, "/etc/passwd"))
    _write(tmp_path / "escape.onnx", _external(net, "../../../../etc/passwd"))
    _write(tmp_path / "tiny_theta.onnx", to_model_proto(replace(net, theta=1e-12)))  # save_onnx refuses it


BAD = [
    (["compile", "{d}/missing.onnx"], "does not exist"),
    (["compile", "{d}/garbage.onnx"], "not a readable ONNX"),
    (["compile", "{d}/trunc.onnx"], "not a readable ONNX"),
    (["compile", "{d}/foreign.onnx"], "not an snnc model"),
    (["compile", "{d}/nan.onnx"], "NaN"),
    (["compile", "{d}/inf.onnx"], "NaN or inf"),
    (["compile", "{d}/abs.onnx"], "cannot be decoded"),
    (["compile", "{d}/escape.onnx"], "outside"),
    (["compile", "{d}/huge.onnx"], "outside the allowed range"),
    (["compile", "{d}/tiny_theta.onnx"], "theta = 1e-12 is outside"),
    (["compile", "{m}", "-S", "1"], "steps_per_unit=1 is outside"),
    (["compile", "{m}", "-S", "1000000"], "too large for tau"),
    (["compile", "{m}", "--vth", "999999999"], "17-bit"),
    (["verify", "{d}/small.onnx", "--targets", "exact", *DATA, "--out", "{d}/o"], "100 inputs"),
    (["verify", "{m}", "--targets", "exact,loihi9", *DATA, "--out", "{d}/o"], "unknown target"),
    (["verify", "{m}", "--targets", "brian2", "--brian2-dt", "-1", *DATA, "--out", "{d}/o"], "dt=-1"),
    (["verify", "{m}", "--targets", "exact", "--dataset", "mnist", "--limit", "0", "--out", "{d}/o"], "positive"),
    (["verify", "{m}", "--targets", "exact", "--margin", "2", *DATA, "--out", "{d}/o"], "margin"),
    (["verify", "{m}", "--targets", "exact", "-S", "1", *DATA, "--out", "{d}/o"], "steps_per_unit=1"),
    (["deploy", "{m}", "--target", "exact,brian2", *DATA, "--out", "{d}/o"], "one target"),
    (["deploy", "{m}", "--target", "brian2", "-o", "brian2.speed=9", *DATA, "--out", "{d}/o"], "bad option"),
    (["deploy", "{m}", "--target", "brian2", "-o", "speed=9", *DATA, "--out", "{d}/o"], "TARGET.KEY=VALUE"),
    (["verify", "{m}", "--targets", "exact", "-o", "loihi9.x=1", *DATA, "--out", "{d}/o"], "unknown target"),
    (["deploy", "{d}/nan.onnx", "--target", "brian2", *DATA, "--out", "{d}/o"], "NaN"),
    (["run", "{m}", "--target", "exact", *DATA, "--out", "{d}/o/s.npz"], "compile it first"),
    (["run", "{d}/garbage.onnx.npz", "--target", "exact", *DATA, "--out", "{d}/o/s.npz"], "does not exist"),
    (["verify", "{m}", "--targets", "exact", "--limit", "2", "--out", "{d}/o"], "does not record the dataset"),
    (["verify", "{m}", "--targets", "exact", *DATA, "--noise", "-1", "--out", "{d}/o"], "--noise"),
    (["verify", "{m}", "--targets", "exact", *DATA, "--plot-sample", "7", "--out", "{d}/o"], "--plot-sample 7"),
    (["verify", "{m}", "--targets", "exact", *DATA, "--plot-neurons", "a:b", "--out", "{d}/o"], "--plot-neurons"),
    (["verify", "{m}", "--targets", "exact", *DATA, "--out", "{d}/small.onnx/o"], "is a file, not a folder"),
    (["deploy", "{m}", "--target", "exact", *DATA, "--out", "{d}/small.onnx"], "existing file"),
    (["deploy", "{m}", "--targets", "loihi9", *DATA, "--out", "{d}/o"], "in --target;"),
    (["run", "{d}/small.onnx", "--target", "loihi9", *DATA, "--out", "{d}/o/s.npz"], "in --target;"),
    (["compile", "{m}", "--out", "{d}"], "is a folder"),
]


@pytest.mark.parametrize("argv, needle", BAD, ids=[f"{a[0]}-{n.split()[0]}-{i}" for i, (a, n) in enumerate(BAD)])
def test_bad_input_exits_2_before_running(argv, needle, model, tmp_path, capsys):
    _bad_models(tmp_path, model)
    args = [a.format(d=tmp_path, m=model) for a in argv]
    rc, out, err = run_cli(capsys, *args)
    assert rc == 2, out + err
    assert "snnc: error:" in err and needle in err, err
    assert not (tmp_path / "o").exists()  # nothing ran, nothing was written


# ---- options, progress, report contents, failed deploys (issue D, sections 3-5) --------------------------------------

def test_every_flag_has_help_and_version(capsys):
    from toolchain.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    for cmd in ("compile", "run", "verify", "deploy"):
        for action in sub.choices[cmd]._actions:
            assert action.help, f"snnc {cmd} {action.option_strings or action.dest} has no help text"
    # the same option names everywhere: --target and --targets are accepted by run, verify and deploy
    for cmd in ("run", "verify", "deploy"):
        opts = {o for a in sub.choices[cmd]._actions for o in a.option_strings}
        assert {"--target", "--targets", "--dataset", "--split", "--limit", "--data-dir", "--noise"} <= opts, cmd
    rc, out, err = run_cli(capsys, "--version")
    assert rc == 0 and out.startswith("snnc 0.") and "lava-nc" in out and "brian2" in out and "python" in out


def test_dataset_from_metadata_progress_and_report_contents(model_with_dataset, tmp_path, capsys):
    import csv
    import hashlib

    out_dir = tmp_path / "rep"
    rc, out, err = run_cli(capsys, "verify", model_with_dataset, "--target", "hw_sim,exact", "--limit", 3,
                           "--plot-sample", 1, "--plot-neurons", "0:5", "--out", out_dir)
    assert rc in (0, 1), out + err
    assert "verify: [1/2] hw_sim: running 3 samples" in err and "verify: [2/2] exact" in err  # progress on stderr
    assert "energy" in out and "nJ/sample" in out
    data = json.loads((out_dir / "report.json").read_text())
    ctx = data["context"]
    assert (ctx["dataset"], ctx["split"], ctx["noise"], ctx["trained_noise"]) == ("mnist", "test", 0.0, 0.4)
    assert ctx["model_sha256"] == hashlib.sha256(model_with_dataset.read_bytes()).hexdigest()
    assert ctx["encoding"] == "latency" and data["steps_per_unit"] == DEFAULT_STEPS_PER_UNIT
    assert {"snnc", "lava-nc", "brian2", "numpy", "python"} <= set(data["versions"])
    assert data["resources"]["cores"] > 0 and data["targets"][0]["energy"]["energy_per_sample_nJ"]["mean"] > 0
    md = (out_dir / "report.md").read_text()
    assert "mnist" in md and ctx["model_sha256"] in md and "model trained with noise 0.4" in md
    assert [r["target"] for r in csv.DictReader(open(out_dir / "summary.csv"))] == ["exact", "hw_sim", "exact"]
    assert (out_dir / "summary.tex").read_text().count("\\\\") == 4
    assert (out_dir / "reconstructions.png").stat().st_size > 0
    # --quiet: no progress; --noise: noisy inputs, recorded
    rc, out, err = run_cli(capsys, "verify", model_with_dataset, "--targets", "exact", "--limit", 2, "--quiet",
                           "--noise", 0.1, "--seed", 3, "--out", tmp_path / "q")
    assert rc == 0 and "verify:" not in err, err
    ctx = json.loads((tmp_path / "q" / "report.json").read_text())["context"]
    assert ctx["noise"] == 0.1 and ctx["noise_seed"] == 3
    # run and deploy take the dataset from the model too
    rc, out, err = run_cli(capsys, "compile", model_with_dataset, "--out", tmp_path / "c.npz")
    rc, out, err = run_cli(capsys, "run", tmp_path / "c.npz", "--targets", "exact", "--limit", 2)
    assert rc == 0 and (tmp_path / "c.exact.mnist.spikes.npz").is_file(), err


def test_failed_deploy_leaves_an_earlier_deploy_untouched(model, tmp_path, capsys):
    import socket

    out_dir = tmp_path / "dep"
    rc, out, err = run_cli(capsys, "deploy", model, "--target", "hw_sim", *DATA, "-S", 16, "--out", out_dir)
    assert rc in (0, 1), out + err
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    assert "compiled.npz" in before and "report.json" in before
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, out, err = run_cli(capsys, "deploy", model, "--target", "hil", "-o", f"hil.port={port}", "-o", "hil.retries=0",
                           *DATA, "-S", 32, "--out", out_dir)
    assert rc == 2 and "cannot connect" in err, out + err
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dep"]  # no staging debris


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_is_a_clear_error(model, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        for argv in (["verify", model, "--targets", "exact", *DATA, "--out", ro / "r"],
                     ["compile", model, "--out", ro / "c.npz"]):
            rc, out, err = run_cli(capsys, *argv)
            assert rc == 2 and "not writable" in err, err
    finally:
        ro.chmod(0o755)
