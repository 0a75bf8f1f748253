"""Second weight block for convolutional graphs (issue [F] section 3, task conv-deploy): each layer's rounding
residuals at the smallest exponent in a second Conv / Sparse / Dense process feeding the same population; the
compiled format keeps it, hw_sim equals lava-fixed with it, the resource model counts it, the CLI passes it."""
from __future__ import annotations

import numpy as np
import pytest

from conv_nets import conv_autoencoder, input_trains, mnist_conv_autoencoder
from hw_sim.conv import run_conv_fixed
from hw_sim.conv_resources import conv_partition, fanout_nonzero, weight_blocks
from hw_sim.resources import LOIHI2
from targets.registry import get_target
from toolchain.compiled_conv_io import load_compiled_conv, save_compiled_conv
from toolchain.conv_compiler import compile_conv_graph
from toolchain.errors import CompileError
from toolchain.lif_reference import synapse_current
from toolchain.quantize import A_IN_MAX


@pytest.fixture(scope="module")
def both():
    g = conv_autoencoder(np.random.default_rng(0))
    return g, compile_conv_graph(g, 12, weight_blocks=1), compile_conv_graph(g, 12)


def test_two_blocks_are_the_default_and_refine_every_layer(both):
    _, one, two = both
    assert two.manifest["weight_blocks"] == 2 and one.manifest["weight_blocks"] == 1
    assert [cl.blocks for cl in one.layers] == [1] * 6 and [cl.blocks for cl in two.layers] == [2] * 6
    for c1, c2, e1, e2 in zip(one.layers, two.layers, one.manifest["layers"], two.manifest["layers"]):
        assert c2.fine_exp == -1 < c2.weight_exp and c2.fine_weights.shape == c2.weights.shape
        assert np.array_equal(c2.effective, c2.block_effective()[0] + c2.block_effective()[1])
        # the float weights the integers realise (threshold units) are much closer with the second block
        assert e2["max_weight_error"] < e1["max_weight_error"] / 2, c2.name
        assert e2["worst_case"]["a_in"] <= A_IN_MAX
        if c2.kind != "dense":   # still one scale per output channel (shared kernel)
            per = c2.scale.reshape(c2.out_shape[0], -1)
            assert np.all(per == per[:, :1])


def test_each_block_of_a_convolution_sums_inside_24_bits():
    """Lava's Conv wraps each process's output to 24 bits separately, so hw_sim may fold the two blocks only where
    neither block's sum over a channel's taps can leave 24 bits: the compiler keeps two blocks only there (here
    the one-block compile's kernel sums to 2**24.6 per channel; the two-block compile picks a smaller exponent)."""
    from toolchain.ir import LIF, Conv2d, Graph, Input

    g = Graph({"input": Input(64 * 64), "c": Conv2d(np.ones((2, 64, 5, 5)) * 0.37, (64, 8, 8)), "l": LIF(32, 0.9)},
              (("input", "c"), ("c", "l")), "steps")
    kw = dict(range_mode="calibrated", calibration_spikes=np.zeros((1, 6, 64 * 64), np.uint8))
    one = compile_conv_graph(g, 6, weight_blocks=1, **kw).layers[0]
    two = compile_conv_graph(g, 6, **kw).layers[0]
    assert np.abs(one.effective).sum(axis=(1, 2, 3)).max() >= 1 << 23
    assert two.blocks == 2
    for blk in two.block_effective():
        assert np.abs(blk).sum(axis=(1, 2, 3)).max() < 1 << 23
    assert abs(0.37 * two.scale[0] - two.effective.flat[0]) <= 0.5      # the integer grid of the second block


def test_two_blocks_survive_the_compiled_format(both, tmp_path):
    _, one, two = both
    for cc, name in ((two, "two.npz"), (one, "one.npz")):
        save_compiled_conv(cc, tmp_path / name)
        back = load_compiled_conv(tmp_path / name)
        for a, b in zip(cc.layers, back.layers):
            assert a.blocks == b.blocks and a.fine_exp == b.fine_exp
            assert np.array_equal(a.effective, b.effective)
    with np.load(tmp_path / "two.npz") as z:
        arrays = {k: z[k] for k in z.files}
    del arrays["layer0.fine_weights"]
    np.savez(tmp_path / "bad.npz", **arrays)
    from toolchain.errors import ArtifactError

    with pytest.raises(ArtifactError, match="fine_exp=-1 but no integer array 'layer0.fine_weights'"):
        load_compiled_conv(tmp_path / "bad.npz")


def test_bad_weight_blocks_is_refused():
    g = conv_autoencoder(np.random.default_rng(1))
    for bad in (0, 3, True, "2"):
        with pytest.raises(CompileError, match="weight_blocks=.* must be 1 or 2"):
            compile_conv_graph(g, 12, weight_blocks=bad)


def test_lava_fixed_equals_hw_sim_with_two_blocks_and_is_closer_to_float():
    """Real Lava: two Conv processes (and two Sparse, two Dense) into one LIF equal hw_sim's folded sum bit for
    bit; the second block brings the integer run closer to the float model."""
    from toolchain.lif_reference import simulate
    from toolchain.spike_metrics import match_spikes

    rng = np.random.default_rng(11)
    g = conv_autoencoder(rng, strided=True)
    x = input_trains(rng, n=2, steps=12)
    cc = compile_conv_graph(g, 12)
    fixed = get_target("lava-fixed-lif").run(cc, x)
    assert fixed.info["blocks"] == [2] * 6 and fixed.info["mapping"][-2] == "Sparse"
    trains, pots, _ = run_conv_fixed(cc, x, threads=1)
    for name, a, b in zip(cc.names, trains, fixed.trains):
        assert np.array_equal(a, b), name
    np.testing.assert_array_equal(pots[-1], fixed.potentials[-1])
    ref = simulate(g, x)
    one, _, _ = run_conv_fixed(compile_conv_graph(g, 12, weight_blocks=1), x, threads=1)
    exact_two = sum(match_spikes(r, h, 0).fraction for r, h in zip(ref.spikes[:-1], trains[:-1]))
    exact_one = sum(match_spikes(r, h, 0).fraction for r, h in zip(ref.spikes[:-1], one[:-1]))
    assert exact_two >= exact_one


def test_the_resource_model_counts_both_blocks(both):
    _, one, two = both
    for cl in two.layers:
        per_block = [synapse_current(b.synapse_node(b.effective.astype(np.float64)), np.eye(cl.n_in))
                     for b in weight_blocks(cl)]
        np.testing.assert_array_equal(fanout_nonzero(cl), sum((p != 0).sum(axis=1) for p in per_block))
    r1, s1 = conv_partition(one, LOIHI2)
    r2, s2 = conv_partition(two, LOIHI2)
    for a, b in zip(s1, s2):
        assert b.kernel_weights == 2 * a.kernel_weights and b.shared_bits >= 2 * a.shared_bits * 0.99
    assert r2.synaptic_memory_bits > r1.synaptic_memory_bits


def test_cli_compiles_conv_models_with_either_block_count(tmp_path):
    from toolchain.artifact_graph import save_graph
    from toolchain.cli import main

    g = mnist_conv_autoencoder(np.random.default_rng(5), steps=6)
    save_graph(g, tmp_path / "m.onnx")
    for b in (1, 2):
        assert main(["compile", str(tmp_path / "m.onnx"), "--weight-blocks", str(b),
                     "--out", str(tmp_path / f"c{b}.npz")]) == 0
        cc = load_compiled_conv(tmp_path / f"c{b}.npz")
        assert cc.manifest["weight_blocks"] == b and max(cl.blocks for cl in cc.layers) == b


def _paper_one_block():
    from test_conv_resources import paper_shape

    return compile_conv_graph(paper_shape(np.random.default_rng(1)), 20, weight_blocks=1, max_fan_in=None)


def test_the_latent_fan_in_error_names_the_relay_split_and_the_split_fits():
    """The paper's FC 12,800 -> 100 exceeds 4,096 input axons per core: the DRC error states the concrete fix
    (4 groups of 3,200 inputs relayed as graded partial sums, its cores and its extra step); with
    split_fan_in=True the partition places it and the whole network fits one chip."""
    from toolchain.errors import DRCError

    cc = _paper_one_block()
    with pytest.raises(DRCError, match=r"split the layer's fan-in into 4 groups of 3200 inputs whose 100 partial sums "
                                       r"are relayed as 24-bit graded spikes .* 12 relay \+ 1 summing cores and one "
                                       r"more step of delay"):
        conv_partition(cc, LOIHI2)
    rep, stores = conv_partition(cc, LOIHI2, split_fan_in=True)      # strict: no violation left
    by = {s.name: s for s in stores}
    sp = by["latent"].split
    assert (sp.groups, sp.group_fan_in, sp.relay_cores, sp.sum_cores, sp.extra_steps) == (4, 3200, 12, 1, 1)
    assert sp.relay_per_core * sp.group_fan_in * 8 <= LOIHI2.synaptic_memory_bits
    assert all(s.split is None for s in stores if s.name != "latent")
    assert rep.cores <= LOIHI2.cores_per_chip and not rep.violations
    for r in rep.layers:
        assert r.fan_in <= LOIHI2.max_fan_in_axons and r.out_axons_per_core <= LOIHI2.max_fan_out_axons
    lat = {r.name: r for r in rep.layers}["latent"]
    assert lat.cores == 13 and lat.synaptic_memory_bits == 12800 * 100 * 8 + 4 * 100 * 8


def test_snnc_resources_shows_the_split(tmp_path, capsys):
    import json

    from toolchain.cli import main

    save_compiled_conv(_paper_one_block(), tmp_path / "paper.npz")
    assert main(["resources", str(tmp_path / "paper.npz"), "--samples", "0"]) == 0
    text = capsys.readouterr().out
    assert "DRC: layer 'latent': fan-in of 12800" in text
    assert "with the fan-in split into relay groups" in text and "latent: fan-in split into 4 groups" in text
    assert main(["resources", str(tmp_path / "paper.npz"), "--samples", "0", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["split_fan_in"]["latent"]["groups"] == 4 and not d["resources_split_fan_in"]["violations"]


def test_the_compiler_splits_the_paper_latent_by_default_and_the_partition_fits():
    from test_conv_resources import paper_shape

    from toolchain.compiled_conv_io import load_compiled_any

    cc = compile_conv_graph(paper_shape(np.random.default_rng(1)), 20, weight_blocks=1)
    assert [cl.fan_in_groups for cl in cc.layers] == [1, 1, 4, 1, 1, 1]
    assert [cc.lag_steps(k) for k in range(6)] == [2, 3, 5, 6, 7, 8]
    assert "GradedVec relays" in cc.manifest["layers"][2]["lava"]
    rep, stores = conv_partition(cc, LOIHI2)                 # strict: the compiled split fits
    assert rep.cores == 55 and {s.name: s for s in stores}["latent"].split.groups == 4


def test_lava_fixed_runs_a_split_fan_in_bit_exactly_one_step_later(tmp_path):
    """Real Lava: the latent Dense split into groups (max_fan_in=4: 19 groups; the decoder's 2), each group's
    partial sums relayed by a GradedVec and summed through an identity graded Dense, equals hw_sim's unsplit
    integer run bit for bit with the extra step of delay accounted for; the split survives the compiled format."""
    rng = np.random.default_rng(3)
    g = conv_autoencoder(rng, strided=True, scale=0.6)
    x = input_trains(rng, n=3, steps=12, p=0.6)
    cc = compile_conv_graph(g, 12, max_fan_in=4)
    assert [cl.fan_in_groups for cl in cc.layers] == [1, 1, 19, 2, 1, 1]
    save_compiled_conv(cc, tmp_path / "s.npz")
    back = load_compiled_conv(tmp_path / "s.npz")
    assert [cl.fan_in_groups for cl in back.layers] == [1, 1, 19, 2, 1, 1]
    trains, pots, _ = run_conv_fixed(back, x, threads=1)
    plain, _, _ = run_conv_fixed(compile_conv_graph(g, 12, max_fan_in=None), x, threads=1)
    assert all(np.array_equal(a, b) for a, b in zip(trains, plain))       # the split changes no integer
    fixed = get_target("lava-fixed-lif").run(back, x)
    assert fixed.info["relay_stages"] == 2 and fixed.info["window"] == 12 + 6 + 2
    for name, a, b in zip(cc.names, trains, fixed.trains):
        assert np.array_equal(a, b), name
    np.testing.assert_array_equal(pots[-1], fixed.potentials[-1])
    assert int(trains[2].sum()) > 20 and int(trains[3].sum()) > 100       # the relayed layers are active


def test_bad_max_fan_in_is_refused():
    g = conv_autoencoder(np.random.default_rng(1))
    for bad in (0, -3, True, "4096", 2.5):
        with pytest.raises(CompileError, match="max_fan_in=.* must be an integer >= 1"):
            compile_conv_graph(g, 12, max_fan_in=bad)
