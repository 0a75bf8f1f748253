"""Compiling convolutional steps graphs (issue [F] sections 3-4): quantization, the compiled format, the Lava
layouts (checked against Lava's own convolution code, no processes), hw_sim against the float model, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from conv_nets import conv_autoencoder, input_trains
from hw_sim.conv import run_conv_fixed
from toolchain.compiled_conv import CompiledConv, validate_compiled_conv
from toolchain.compiled_conv_io import load_compiled_any, load_compiled_conv, save_compiled_conv
from toolchain.conv_compiler import compile_conv_graph, needs_conv_compiler
from toolchain.errors import ArtifactError, CompileError
from toolchain.ir import LIF, Conv2d, ConvTranspose2d, Dense, Flatten, Graph, Input, Readout
from toolchain.ir_equal import graph_differences
from toolchain.lif_reference import simulate, synapse_current
from toolchain.lower_conv import (
    conv_transpose_matrix, from_lava_map, lava_conv_weights, lava_mapping, lava_perm, to_lava_map,
)
from toolchain.quantize import A_IN_MAX


@pytest.fixture(scope="module")
def net():
    g = conv_autoencoder(np.random.default_rng(0))
    return g, compile_conv_graph(g, 12)


def test_compiled_layers_and_graph(net):
    g, cc = net
    assert needs_conv_compiler(g)
    assert [cl.kind for cl in cc.layers] == ["conv", "conv", "dense", "dense", "conv_transpose", "conv_transpose"]
    assert [lava_mapping(cl) for cl in cc.layers] == ["Conv", "Conv", "Dense", "Dense", "Sparse", "Conv"]
    assert cc.layers[2].flatten == "flat" and cc.layers[-1].population == "readout"
    assert graph_differences(cc.graph, g) == [f"metadata differs in {['compiled']}"]
    for cl, entry in zip(cc.layers, cc.manifest["layers"]):
        if cl.kind != "dense":       # shared kernel: one scale per output channel
            per = cl.scale.reshape(cl.out_shape[0], -1)
            assert np.all(per == per[:, :1])
        assert entry["worst_case"]["a_in"] <= A_IN_MAX
        assert entry["max_weight_error"] < 0.01


def test_compiled_conv_round_trip(net, tmp_path):
    _, cc = net
    save_compiled_conv(cc, tmp_path / "c.npz")
    back = load_compiled_any(tmp_path / "c.npz")
    assert isinstance(back, CompiledConv) and back.manifest == cc.manifest
    for a, b in zip(cc.layers, back.layers):
        for f in a.__dataclass_fields__:
            va, vb = getattr(a, f), getattr(b, f)
            assert np.array_equal(va, vb) if isinstance(va, np.ndarray) else va == vb, f
    with np.load(tmp_path / "c.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["layer0.vth"] = arrays["layer0.vth"] + (1 << 17)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ArtifactError, match="vth values"):
        load_compiled_conv(tmp_path / "bad.npz")


def test_lava_layouts_match_lava_conv_utils(net):
    """Kernels flipped and transposed for Lava's Conv give PyTorch's convolution through Lava's own code; the
    Sparse matrix of a strided ConvTranspose2d equals the IR current in Lava's (W, H, C) order."""
    import toolchain.lava_compat  # noqa: F401  (makes lava importable)

    toolchain.lava_compat.install()
    from lava.proc.conv import utils

    _, cc = net
    rng = np.random.default_rng(5)
    for cl in cc.layers:
        s = (rng.random((4, cl.n_in)) < 0.3).astype(np.float64)
        ref = synapse_current(cl.synapse_node(cl.effective.astype(np.float64)), s)
        if lava_mapping(cl) == "Conv":
            kernel, padding, stride = lava_conv_weights(cl.effective, cl)
            for row, want in zip(s, ref):
                got = utils.conv_scipy(to_lava_map(row, cl.in_shape), kernel, kernel.shape[1:3], stride, padding,
                                       (1, 1), 1)
                np.testing.assert_array_equal(from_lava_map(got, cl.out_shape), want)
        elif lava_mapping(cl) == "Sparse":
            m = conv_transpose_matrix(cl.effective, cl)
            lava_in = np.empty_like(s)
            lava_in[:, lava_perm(cl.in_shape)] = s
            got = (m @ lava_in.T).T
            np.testing.assert_array_equal(got[:, lava_perm(cl.out_shape)], ref)


def test_lava_map_order():
    x = np.arange(2 * 3 * 4)                          # torch (C, H, W) = (2, 3, 4)
    lava = to_lava_map(x, (2, 3, 4))
    assert lava.shape == (4, 3, 2) and lava[3, 1, 0] == 0 * 12 + 1 * 4 + 3
    assert np.array_equal(from_lava_map(lava, (2, 3, 4)), x)
    flat = lava.reshape(-1)
    assert np.array_equal(flat[lava_perm((2, 3, 4))], x)


def test_hw_sim_close_to_float(net):
    g, cc = net
    x = input_trains(np.random.default_rng(1), n=6)
    trains, pots, events = run_conv_fixed(cc, x, threads=1)
    ref = simulate(g, x)
    for a, b in zip(ref.spikes[:2], trains[:2]):   # first layers: only quantization separates them
        assert abs(int(a.sum()) - int(b.sum())) <= 0.05 * a.sum()
    assert pots[:-1] == [None] * 5 and pots[-1].shape == ref.potentials[-1].shape
    assert np.abs(pots[-1] - ref.potentials[-1]).max() < 0.5
    assert all(e["a_in_over_16bit"] == 0 and e["u_wrapped"] == 0 for e in events)
    threaded, pots2, _ = run_conv_fixed(cc, x, threads=2)
    assert all(np.array_equal(a, b) for a, b in zip(trains, threaded)) and np.array_equal(pots[-1], pots2[-1])


# ---- bad input (section 4): clear errors before anything runs ----------------------------------------------------

def _graph(nodes: dict) -> Graph:
    order = list(nodes)
    return Graph(nodes, tuple(zip(order[:-1], order[1:])), "steps")


def test_bad_graphs_refused():
    w = np.full((2, 1, 3, 3), 0.1)
    base = {"input": Input(64), "c0": Conv2d(w, (1, 8, 8)), "l0": LIF(72, 0.9)}
    readout_mid = dict(base, l0=Readout(72, 0.9), f=Flatten((2, 6, 6)), d=Dense(np.zeros((3, 72))), l1=LIF(3, 0.9))
    with pytest.raises(CompileError, match="Readout 'l0' feeds further nodes"):
        compile_conv_graph(_graph(readout_mid), 10)
    flat_conv = dict(base, f=Flatten((2, 6, 6)), c1=Conv2d(np.zeros((1, 72, 1, 1)), (72, 1, 1)), l1=LIF(1, 0.9))
    with pytest.raises(CompileError, match="feed a Flatten into a Dense node only"):
        compile_conv_graph(_graph(flat_conv), 10)
    subtract = dict(base, l0=LIF(72, 0.9, reset="subtract"))
    with pytest.raises(CompileError, match="reset 'subtract'"):
        compile_conv_graph(_graph(subtract), 10)
    huge = {"input": Input(130 * 130), "c0": Conv2d(np.full((1, 1, 128, 1), 0.01), (1, 130, 130)),
            "l0": LIF(3 * 130, 0.9)}
    with pytest.raises(CompileError, match="kernel size .* exceeds 127"):
        compile_conv_graph(_graph(huge), 10)
    big_w = dict(base, c0=Conv2d(np.full((2, 1, 3, 3), 1e4), (1, 8, 8)))
    with pytest.raises(CompileError, match="16-bit limit"):
        compile_conv_graph(_graph(big_w), 10)
    with pytest.raises(CompileError, match="needs calibration inputs"):
        compile_conv_graph(_graph(base), 10, range_mode="calibrated")
    with pytest.raises(CompileError, match=r"must be \(samples, steps, 64\) trains"):
        compile_conv_graph(_graph(base), 10, range_mode="calibrated", calibration_spikes=np.ones((2, 3, 5)))
    with pytest.raises(CompileError, match="max_steps"):
        compile_conv_graph(_graph(base), 0)


def test_calibrated_ranges_allow_larger_scales_and_stay_bit_exact(net):
    """Calibrated ranges (per channel for convolutions) give scales >= the worst-case ones; inputs beyond the
    calibration may saturate, and hw_sim counts it."""
    g, worst = net
    rng = np.random.default_rng(7)
    xc = input_trains(rng, n=4)
    cal = compile_conv_graph(g, 12, range_mode="calibrated", calibration_spikes=xc, range_margin=0.5)
    assert cal.manifest["range_mode"] == "calibrated" and cal.manifest["calibration"]["samples"] == 4
    for a, b, e in zip(worst.layers, cal.layers, cal.manifest["layers"]):
        assert b.scale.max() >= a.scale.max() and e["calibrated"]["a_in"] <= A_IN_MAX
        if b.kind != "dense":
            per = b.scale.reshape(b.out_shape[0], -1)
            assert np.all(per == per[:, :1])
    assert any(b.scale.max() > a.scale.max() for a, b in zip(worst.layers, cal.layers))
    trains, _, events = run_conv_fixed(cal, xc, threads=1)
    assert all(e["a_in_over_16bit"] == 0 for e in events)     # the calibration inputs themselves stay in range
    assert cal.manifest["layers"][0]["measured"]["a_in_max"] > 0


def test_calibrated_file_round_trip_and_its_range_check(net, tmp_path):
    import json

    g, _ = net
    cal = compile_conv_graph(g, 12, range_mode="calibrated", calibration_spikes=input_trains(np.random.default_rng(8)))
    save_compiled_conv(cal, tmp_path / "cal.npz")
    assert load_compiled_conv(tmp_path / "cal.npz").manifest == json.loads(json.dumps(cal.manifest))
    with np.load(tmp_path / "cal.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    meta["manifest"]["layers"][1]["calibrated"]["a_in"] = 1e6
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ArtifactError, match="not a valid compiled conv graph: manifest layer 1 calibrated a_in"):
        load_compiled_conv(tmp_path / "bad.npz")


def test_validate_refuses_unshared_conv_scale(net):
    from dataclasses import replace

    _, cc = net
    cl = cc.layers[0]
    scale = cl.scale.copy()
    scale[1] += 1
    with pytest.raises(ArtifactError, match="one value per output channel"):
        validate_compiled_conv(replace(cc, layers=(replace(cl, scale=scale),) + cc.layers[1:]))


def test_conv_transpose_padding_beyond_kernel_uses_sparse():
    """A stride-1 ConvTranspose2d with padding > k - 1 has no Conv equivalent (negative padding): Sparse."""
    t = ConvTranspose2d(np.full((1, 1, 3, 3), 0.2), (1, 8, 8), padding=(3, 0))
    g = _graph({"input": Input(64), "t": t, "out": Readout(int(np.prod(t.output_shape)))})
    cc = compile_conv_graph(g, 5)
    assert lava_mapping(cc.layers[0]) == "Sparse"
