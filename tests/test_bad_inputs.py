"""Bad-input campaign (issue D, section 4): every malformed model, compiled network and output path is refused
with an SnncError that names the field / path, through the public loaders and the `snnc` CLI (exit 2)."""
from __future__ import annotations

import io
import json
import pickle
import zipfile

import numpy as np
import pytest

from models.network import AlphaLayer, TemporalNetwork
from toolchain.artifact import load_onnx, save_onnx, to_model_proto
from toolchain.cli import main
from toolchain.compiled_io import MAX_WINDOW, load_compiled, save_compiled, validate_compiled
from toolchain.compiler import compile_network
from toolchain.errors import ArtifactError, CompileError, OutputError, SnncError
from toolchain.validate import validate_network


def small_net(hidden: int = 4, n_in: int = 6, seed: int = 0, **kw) -> TemporalNetwork:
    rng = np.random.default_rng(seed)
    pt = np.array([0.2, 0.6])
    l0 = AlphaLayer(rng.normal(0.5, 0.3, (hidden, n_in)), pt, np.full((hidden, 2), 1.5))
    l1 = AlphaLayer(rng.normal(0.3, 0.3, (n_in, hidden)), pt + 0.6, np.full((n_in, 2), 1.5))
    args = dict(tau=1.0, theta=1.0, latency=1.0)
    args.update(kw)
    return TemporalNetwork((l0, l1), **args)


def run_cli(capsys, *argv) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, err


def write_unchecked(net: TemporalNetwork, path) -> None:
    """Serialise ``net`` without save_onnx's validation (as a foreign or tampered tool would)."""
    path.write_bytes(to_model_proto(net).SerializeToString())


# ---- one network validation for every command ----------------------------------------------------------------------

def _with_layer0(net: TemporalNetwork, **fields) -> TemporalNetwork:
    l0 = net.layers[0]
    args = dict(weights=l0.weights, pulse_times=l0.pulse_times, pulse_weights=l0.pulse_weights)
    args.update(fields)
    return TemporalNetwork((AlphaLayer(**args),) + net.layers[1:], net.tau, net.theta, net.latency)


BAD_NETS = {
    "weights": lambda: _with_layer0(small_net(), weights=np.full((4, 6), 1e300)),
    "theta": lambda: small_net(theta=1e-300),
    "latency": lambda: small_net(latency=-1.0),
    "tau": lambda: small_net(tau=1e9),
    "pulse_times": lambda: _with_layer0(small_net(), pulse_times=np.array([0.2, 1e9])),
    "pulse_weights": lambda: _with_layer0(small_net(), pulse_weights=np.full((4, 2), -1e300)),
    # zero hidden neurons: layer0 (0, 6), layer1 (6, 0)
    "at least one input and one neuron": lambda: TemporalNetwork(
        (AlphaLayer(np.zeros((0, 6)), np.zeros(0), np.zeros((0, 0))),
         AlphaLayer(np.zeros((6, 0)), np.zeros(0), np.zeros((6, 0)))), 1.0, 1.0, 1.0),
}


@pytest.mark.parametrize("field", list(BAD_NETS))
def test_bad_network_refused_by_load_save_and_every_command(field, tmp_path, capsys):
    net = BAD_NETS[field]()
    with pytest.raises(ArtifactError, match=field):
        validate_network(net)
    with pytest.raises(ArtifactError, match=field):
        save_onnx(net, tmp_path / "never.onnx")
    assert not list(tmp_path.iterdir())  # nothing written, no debris
    path = tmp_path / "bad.onnx"
    write_unchecked(net, path)
    with pytest.raises(ArtifactError, match=field):
        load_onnx(path)
    # eval used to accept what compile refused: now the same message from both (exit 2, field named)
    for argv in (("eval", path, "--dataset", "mnist", "--limit", 2),
                 ("compile", path, "--out", tmp_path / "c.npz")):
        rc, err = run_cli(capsys, *argv)
        assert rc == 2 and field in err and "Traceback" not in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]


def test_good_network_passes_and_message_names_value_range_fix():
    validate_network(small_net())
    with pytest.raises(ArtifactError) as err:
        validate_network(small_net(theta=1e-300))
    msg = str(err.value)
    assert "theta = 1e-300" in msg and "[1e-06, 1e+06]" in msg and "fix:" in msg


# ---- non-ONNX files given as a model ------------------------------------------------------------------------------

def _torch_like_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # the layout torch.save writes
        z.writestr("checkpoint/data.pkl", pickle.dumps({"state": 1}))
        z.writestr("checkpoint/version", "3\n")
    return buf.getvalue()


@pytest.mark.parametrize("name,data,expect", [
    ("model.pt", _torch_like_zip(), "PyTorch checkpoint"),
    ("legacy.pt", pickle.dumps({"w": [1, 2]}, protocol=2), "pickle"),
    ("empty.onnx", b"", "empty file"),
    ("notes.onnx", b'{"a": 1}', "JSON"),
])
def test_compile_of_non_onnx_says_what_it_is(name, data, expect, tmp_path, capsys):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ArtifactError, match=expect):
        load_onnx(path)
    rc, err = run_cli(capsys, "compile", path, "--out", tmp_path / "c.npz")
    assert rc == 2 and expect in err and "model.onnx" in err and "truncated" not in err, err


def test_compile_of_compiled_npz_points_to_run(tmp_path, capsys):
    path = tmp_path / "c.npz"
    save_compiled(compile_network(small_net()), path)
    rc, err = run_cli(capsys, "compile", path)
    assert rc == 2 and "compiled network" in err and "snnc run" in err, err


def test_truncated_onnx_still_says_truncated(tmp_path):
    path = tmp_path / "m.onnx"
    save_onnx(small_net(), path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ArtifactError, match="truncated"):
        load_onnx(path)


# ---- compiled.npz: every field checked on load -------------------------------------------------------------------

@pytest.fixture(scope="module")
def compiled_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("compiled") / "compiled.npz"
    save_compiled(compile_network(small_net(), steps_per_unit=16), path)
    return path


def tamper(src, dst, meta=None, arrays=None):
    """Copy compiled.npz ``src`` to ``dst`` with ``meta(m)`` applied to the JSON and ``arrays(d)`` to the arrays."""
    with np.load(src, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    m = json.loads(str(data["meta"]))
    if meta:
        meta(m)
    data["meta"] = np.array(json.dumps(m))
    if arrays:
        arrays(data)
    with open(dst, "wb") as f:
        np.savez(f, **data)
    return dst


def _set(key, value):
    return lambda m: m.__setitem__(key, value)


def _set_layer(key, value, k=0):
    return lambda m: m["layers"][k].__setitem__(key, value)


def _arr(key, fn):
    return lambda d: d.__setitem__(key, fn(d[key]))


def _nan(a):
    a = a.copy()
    a.flat[0] = np.nan
    return a


def _first(value):
    def f(a):
        a = a.copy()
        a.flat[0] = value
        return a
    return f


TAMPER = {  # case -> (meta edit, array edit, text the error must contain)
    "steps_per_unit 0": (_set("steps_per_unit", 0), None, "steps_per_unit"),
    "steps_per_unit 1e-9": (_set("steps_per_unit", 1e-9), None, "steps_per_unit"),
    "steps_per_unit string": (_set("steps_per_unit", "16"), None, "steps_per_unit"),
    "window 1e9": (_set("window", 1_000_000_000), None, "window"),
    "window 2": (_set("window", 2), None, "window"),
    "time_offset_steps 1e6": (_set_layer("time_offset_steps", 1e6), None, "layer0.time_offset_steps"),
    "time_offset_steps NaN": (_set_layer("time_offset_steps", float("nan")), None, "layer0.time_offset_steps"),
    "du 5000": (_set_layer("du", 5000, 1), None, "layer1.du"),
    "dv -1": (_set_layer("dv", -1), None, "layer0.dv"),
    "weight_exp 9": (_set_layer("weight_exp", 9), None, "layer0.weight_exp"),
    "weight_exp 1.5": (_set_layer("weight_exp", 1.5), None, "weight_exp"),
    "once string": (_set_layer("once", "yes"), None, "once"),
    "kind conv": (_set_layer("kind", "conv"), None, "layer0.kind"),
    "num_weight_bits 16": (_set_layer("num_weight_bits", 16), None, "num_weight_bits"),
    "du_float 2": (_set_layer("du_float", 2.0), None, "layer0.du_float"),
    "vth_float 0": (_set_layer("vth_float", 0.0), None, "layer0.vth_float"),
    "string manifest": (_set("manifest", "not an object"), None, "manifest"),
    "manifest source_hash number": (lambda m: m["manifest"].__setitem__("source_hash", 5), None,
                                    "manifest.source_hash"),
    "meta extra key": (_set("pickle", True), None, "unexpected field"),
    "layer missing key": (lambda m: m["layers"][0].pop("du"), None, "du"),
    "source tau negative": (lambda m: m["source"].__setitem__("tau", -1.0), None, "tau"),
    "source n_layers": (lambda m: m["source"].__setitem__("n_layers", 3), None, "n_layers"),
    "NaN float weights": (None, _arr("layer0.weights_float", _nan), "layer0.weights_float"),
    "NaN pulse float weights": (None, _arr("layer1.pulse_weights_float", _nan), "layer1.pulse_weights_float"),
    "NaN source weights": (None, _arr("source.layer0.weights", _nan), "source.layer0: weights"),
    "huge source weights": (None, _arr("source.layer1.weights", _first(1e300)), "source network: layer1.weights"),
    "pulse_source out of range": (None, _arr("layer0.pulse_source", _first(99)), "layer0.pulse_source"),
    "pulse_steps beyond window": (None, _arr("layer1.pulse_steps", _first(10**9)), "layer1.pulse_steps"),
    "negative pulse_steps": (None, _arr("layer0.pulse_steps", _first(-3)), "layer0.pulse_steps"),
    "vth 0": (None, _arr("layer0.vth", _first(0)), "layer0.vth"),
    "vth 18 bits": (None, _arr("layer1.vth", _first(1 << 18)), "layer1.vth"),
    "weight 1000": (None, _arr("layer0.weights", _first(1000)), "layer0.weights"),
    "odd 8-bit weight": (None, _arr("layer0.weights", _first(3)), "layer0.weights"),
    "extra array": (None, lambda d: d.__setitem__("layer7.weights", np.zeros(2, np.int32)), "unexpected array"),
    "object meta": (None, lambda d: d.__setitem__("meta", np.array([1, 2])), "meta"),
}


@pytest.mark.parametrize("case", list(TAMPER))
def test_tampered_compiled_refused_with_field(case, compiled_file, tmp_path):
    meta, arrays, field = TAMPER[case]
    bad = tamper(compiled_file, tmp_path / "bad.npz", meta, arrays)
    with pytest.raises(ArtifactError, match="not a valid compiled network") as err:
        load_compiled(bad)
    assert field in str(err.value), str(err.value)
    assert "recompile" in str(err.value)


def test_untampered_copy_loads(compiled_file, tmp_path):
    cn = load_compiled(tamper(compiled_file, tmp_path / "same.npz"))
    assert cn.window == load_compiled(compiled_file).window


@pytest.mark.parametrize("case", ["window 1e9", "time_offset_steps 1e6", "NaN float weights",
                                  "pulse_source out of range", "string manifest", "steps_per_unit 1e-9"])
def test_run_hw_sim_on_tampered_file_exits_2(case, compiled_file, tmp_path, capsys):
    meta, arrays, field = TAMPER[case]
    bad = tamper(compiled_file, tmp_path / "bad.npz", meta, arrays)
    rc, err = run_cli(capsys, "run", bad, "--target", "hw_sim", "--dataset", "mnist", "--limit", 2)
    assert rc == 2 and field in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]


def test_sizes_checked_before_allocation(compiled_file, tmp_path):
    """A window within MAX_WINDOW whose per-sample buffer exceeds the byte cap is refused with GiB and cap."""
    cn = load_compiled(compiled_file)
    from dataclasses import replace
    big = replace(cn, window=MAX_WINDOW + 1)
    with pytest.raises(ArtifactError, match="window"):
        validate_compiled(big)
    bad = tamper(compiled_file, tmp_path / "big.npz", _set("window", MAX_WINDOW + 1))
    with pytest.raises(ArtifactError, match=r"window = 16777217 steps x 6 neurons needs 0.75 GiB per sample "
                                            r"\(caps: 16777216 steps, 4 GiB\)"):
        load_compiled(bad)


def test_buffer_cap_message_says_gib():
    from toolchain.compiled_io import check_sizes
    with pytest.raises(CompileError, match=r"GiB per sample \(caps: .* 4 GiB\)"):
        check_sizes(10_000_000, [784, 100], "net", error=CompileError)
    check_sizes(200, [784, 100], "net")


def test_save_compiled_refuses_invalid_network(tmp_path):
    from dataclasses import replace
    cn = compile_network(small_net(), steps_per_unit=16)
    bad = replace(cn, manifest="x")
    with pytest.raises(ArtifactError, match="manifest"):
        save_compiled(bad, tmp_path / "c.npz")
    assert not list(tmp_path.iterdir())


# ---- output paths -------------------------------------------------------------------------------------------------

def test_compile_out_is_folder_or_under_a_file(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    save_onnx(small_net(), model)
    folder = tmp_path / "outdir"
    folder.mkdir()
    rc, err = run_cli(capsys, "compile", model, "--out", folder)
    assert rc == 2 and "is a folder" in err and str(folder) in err, err
    rc, err = run_cli(capsys, "compile", model, "--out", model / "c.npz")
    assert rc == 2 and "is a file" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "outdir"] and not list(folder.iterdir())


def test_failed_save_keeps_earlier_result(tmp_path):
    out = tmp_path / "c.npz"
    save_compiled(compile_network(small_net()), out)
    before = out.read_bytes()
    from dataclasses import replace
    with pytest.raises(SnncError):
        save_compiled(replace(compile_network(small_net()), window=10**12), out)
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]


def test_load_compiled_of_folder(tmp_path):
    with pytest.raises(ArtifactError, match="is a folder"):
        load_compiled(tmp_path)


def test_output_error_is_snnc_error():
    assert issubclass(OutputError, SnncError)
