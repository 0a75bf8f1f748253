"""`snnc resources` of compiled LIF (steps) chains counts both Dense weight blocks (issue [E]): a layer compiled with
``--weight-blocks 2`` stores a second block of residual mantissas, with its own synapses, memory and synaptic ops."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hw_sim.conv_resources import conv_counters, conv_partition
from hw_sim.lif import simulate_lif
from hw_sim.resources import LOIHI2
from toolchain.artifact_graph import save_graph
from toolchain.cli import main
from toolchain.compiled_steps_io import load_compiled_steps
from toolchain.conv_compiler import as_compiled_conv
from toolchain.ir import LIF, lif_chain

META = {"dataset": "mnist", "encoding": "bernoulli", "p_scale": 0.3, "steps": 8, "family": "rate-lif"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """The same 784-40-784 model compiled with one and with two weight blocks (snnc compile)."""
    tmp = tmp_path_factory.mktemp("lif-res")
    rng = np.random.default_rng(3)
    g = lif_chain([rng.uniform(-0.1, 0.15, (40, 784)), rng.uniform(-0.3, 0.4, (784, 40))],
                  [LIF(40, 0.9, clamp=True), LIF(784, 0.9, clamp=True)], META)
    save_graph(g, tmp / "m.onnx")
    out = {}
    for blocks in (1, 2):
        path = tmp / f"b{blocks}.npz"
        assert main(["compile", str(tmp / "m.onnx"), "--out", str(path), "--weight-blocks", str(blocks)]) == 0
        out[blocks] = path
    return out


def resources(path, capsys, *extra) -> dict:
    assert main(["resources", str(path), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_counts_the_second_blocks_synapses_memory_and_ops(compiled, capsys):
    one, two = (load_compiled_steps(compiled[b]) for b in (1, 2))
    fine = [cl.fine_weights for cl in two.layers]
    assert [cl.fine_weights for cl in one.layers] == [None, None] and any(f is not None for f in fine)
    r1, r2 = (resources(compiled[b], capsys, "--samples", "4") for b in (1, 2))
    extra = sum(f.size for f in fine if f is not None)                       # the second block's synapses
    extra_nz = sum(int(np.count_nonzero(f)) for f in fine if f is not None)
    assert r2["weight_blocks"] == [1 if f is None else 2 for f in fine] and r1["weight_blocks"] == [1, 1]
    assert r2["resources"]["synapses"] == r1["resources"]["synapses"] + extra
    assert r2["resources"]["synaptic_memory_bytes"] == r1["resources"]["synaptic_memory_bytes"] + extra * 8 / 8
    nz1 = sum(int(np.count_nonzero(cl.weights)) for cl in one.layers)
    nz2 = sum(int(np.count_nonzero(cl.weights)) for cl in two.layers) + extra_nz
    assert (r1["resources"]["nonzero_synapses"], r2["resources"]["nonzero_synapses"]) == (nz1, nz2)
    # synaptic operations: every source spike reaches the non-zero synapses of both blocks (exact count from the
    # same hw_sim run the CLI makes: dataset test[:4], Bernoulli p_scale 0.3, seed 0)
    from models.datasets import load_dataset
    from models.rate_encoding import bernoulli_encode

    img = np.asarray(load_dataset("mnist", "test", limit=4).images, np.float64).reshape(4, -1)
    x = bernoulli_encode(img, 8, 0.3, np.random.default_rng(0))
    trains = simulate_lif(two, x).trains
    want = 0
    for cl, src in zip(two.layers, [x] + trains[:-1]):
        eff_nz = (cl.weights != 0).astype(np.int64) + (0 if cl.fine_weights is None else (cl.fine_weights != 0))
        want += int((src.sum(axis=1, dtype=np.int64) @ eff_nz.sum(axis=0)).sum())
    assert r2["energy"]["metrics"]["synaptic_operations"]["Effective_ACs"] == pytest.approx(want / 4)
    assert r2["energy"]["metrics"]["synaptic_operations"]["Effective_ACs"] \
        > r1["energy"]["metrics"]["synaptic_operations"]["Effective_ACs"]


def test_text_report_names_the_blocks(compiled, capsys):
    assert main(["resources", str(compiled[2]), "--samples", "0"]) == 0
    out = capsys.readouterr().out
    blocks = [1 if cl.fine_weights is None else 2 for cl in load_compiled_steps(compiled[2]).layers]
    assert 2 in blocks and f"weight blocks per layer {blocks}" in out     # a layer at the smallest exponent: one


def test_two_blocks_need_more_cores_when_memory_binds():
    """A layer whose one-block synapses just fit a core's memory needs twice the cores with two blocks."""
    rng = np.random.default_rng(0)
    from toolchain.steps_compiler import compile_graph

    w = rng.uniform(-0.3, 0.4, (300, 784)) * (rng.random((300, 784)) < 0.02)   # sparse: exponent above the floor
    g = lif_chain([w], [LIF(300, 0.9)], {})
    cs2 = compile_graph(g, 8, weight_blocks=2)
    assert cs2.layers[0].fine_weights is not None
    cs1 = compile_graph(g, 8, weight_blocks=1)
    cc1, cc = as_compiled_conv(cs1), as_compiled_conv(cs2)          # the second block is carried over
    assert [cl.blocks for cl in cc.layers] == [2]
    res1, _ = conv_partition(cc1, LOIHI2, strict=False)
    res2, st2 = conv_partition(cc, LOIHI2, strict=False)
    per_core_1 = LOIHI2.synaptic_memory_bits // (784 * 8)          # 167 neurons per core with one block
    assert res1.layers[0].cores == -(-300 // per_core_1) == 2
    assert res2.layers[0].cores == -(-300 // (per_core_1 // 2)) == 4
    assert res2.synapses == 2 * res1.synapses and st2[0].expanded_synapses == 2 * 300 * 784
    x = (rng.random((3, 8, 784)) < 0.1).astype(np.uint8)
    trains = simulate_lif(cs2, x).trains
    c1 = conv_counters(cc1, x, trains)
    c2 = conv_counters(cc, x, trains)
    assert np.all(c2.synaptic_ops >= c1.synaptic_ops) and c2.synaptic_ops.sum() > c1.synaptic_ops.sum()
