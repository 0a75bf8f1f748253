"""Multi-chip partition (hw_sim/multichip.py, issue [G]): chips and cores per chip, inter-chip spikes and relay
payloads counted from a hw_sim run (checked against a spike-by-spike count), the estimate, the DRC error for too few
chips, and `snnc resources --chips`."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from hw_sim.conv import run_conv_fixed
from hw_sim.conv_resources import DenseShape, ShapeNet, conv_partition
from hw_sim.multichip import multichip_partition, traffic_estimate, traffic_from_run
from hw_sim.resources import LOIHI2
from toolchain.conv_compiler import compile_conv_graph
from toolchain.errors import DRCError
from toolchain.ir import LIF, lif_chain

TINY = dataclasses.replace(LOIHI2, name="tiny", neurons_per_core=16, max_fan_in_axons=64, max_fan_out_axons=256,
                           cores_per_chip=4)


def _graph(seed=0):
    rng = np.random.default_rng(seed)
    return lif_chain([rng.uniform(-0.05, 0.12, (40, 200)), rng.uniform(-0.2, 0.5, (12, 40)),
                      rng.uniform(-0.2, 0.6, (30, 12))],
                     [LIF(40, 0.9, clamp=True), LIF(12, 0.9, clamp=True), LIF(30, 0.9, clamp=True)],
                     {"steps": 10, "encoding": "bernoulli", "p_scale": 0.2})


@pytest.fixture(scope="module")
def tiny_run():
    cc = compile_conv_graph(_graph(), 10, max_fan_in=TINY.max_fan_in_axons)
    x = (np.random.default_rng(1).random((4, 10, 200)) < 0.1).astype(np.uint8)
    trains, _, _ = run_conv_fixed(cc, x, threads=1)
    return cc, x, trains


def _brute_force(cc, rep, stores, x, trains, cpc):
    """Count spike by spike: every core listed with the neurons (or relays) it holds, chips filled in order."""
    cores = []          # (layer, kind, group, set of neurons)
    for k, (cl, lr, st) in enumerate(zip(cc.layers, rep.layers, stores)):
        if st.split is not None:
            sp = st.split
            for g in range(sp.groups):
                for lo in range(0, cl.n_out, sp.relay_per_core):
                    cores.append((k, "relay", g, set(range(lo, min(cl.n_out, lo + sp.relay_per_core)))))
            for lo in range(0, cl.n_out, sp.sum_per_core):
                cores.append((k, "lif", -1, set(range(lo, min(cl.n_out, lo + sp.sum_per_core)))))
        else:
            for lo in range(0, cl.n_out, lr.neurons_per_core):
                cores.append((k, "lif", -1, set(range(lo, min(cl.n_out, lo + lr.neurons_per_core)))))
    chip = {c: c // cpc for c in range(len(cores))}

    def home(k, j, kind="lif", g=-1):
        return next(chip[c] for c, (l, kd, gg, ns) in enumerate(cores) if l == k and kd == kind and gg == g and j in ns)

    host_in = spikes = payloads = 0
    src = x
    for k, cl in enumerate(cc.layers):
        st = stores[k]
        bounds = np.linspace(0, cl.n_in, st.split.groups + 1).astype(int) if st.split is not None else None
        for n, t, i in zip(*np.nonzero(src)):
            if bounds is not None:
                g = int(np.searchsorted(bounds, i, side="right") - 1)
                dest = {chip[c] for c, (l, kd, gg, _) in enumerate(cores) if l == k and kd == "relay" and gg == g}
            else:
                dest = {chip[c] for c, (l, kd, _, _) in enumerate(cores) if l == k and kd == "lif"}
            if k == 0:
                host_in += len(dest)
            else:
                spikes += len(dest - {home(k - 1, i)})
        if bounds is not None:
            w = cl.effective
            for n in range(src.shape[0]):
                for t in range(src.shape[1]):
                    for g in range(len(bounds) - 1):
                        part = w[:, bounds[g]:bounds[g + 1]] @ src[n, t, bounds[g]:bounds[g + 1]].astype(np.int64)
                        for j in np.flatnonzero(part):
                            payloads += home(k, j, "relay", g) != home(k, j)
        src = trains[k]
    n = x.shape[0]
    return host_in / n, spikes / n, payloads / n


def test_chips_cores_and_traffic_match_a_spike_by_spike_count(tiny_run):
    cc, x, trains = tiny_run
    assert [cl.fan_in_groups for cl in cc.layers] == [4, 1, 1]
    rep, stores, assign = multichip_partition(cc, TINY)
    assert rep.cores == 18 and not rep.violations
    assert assign.chips == 5 and assign.cores_per_chip == (4, 4, 4, 4, 2)
    assert [assign.layer_chips(k) for k in range(3)] == [[0, 1, 2, 3], [3], [4]]
    tr = traffic_from_run(cc, assign, x, trains)
    host_in, spikes, payloads = _brute_force(cc, rep, stores, x, trains, TINY.cores_per_chip)
    assert tr.host_in == pytest.approx(host_in) and tr.inter_chip_spikes == pytest.approx(spikes)
    assert tr.inter_chip_payloads == pytest.approx(payloads)
    assert spikes > 0 and payloads > 0
    assert tr.host_out == pytest.approx(trains[-1].sum() / x.shape[0])
    # the estimate at the measured rates lands near the run (relays: an upper bound)
    rates = [float(x.mean())] + [float(t.mean()) for t in trains]
    est = traffic_estimate(cc, assign, rates, 10)
    assert est.inter_chip_spikes == pytest.approx(tr.inter_chip_spikes, rel=0.05)
    assert est.inter_chip_payloads >= 0.9 * tr.inter_chip_payloads
    with pytest.raises(DRCError, match="rates must give 4"):
        traffic_estimate(cc, assign, rates[:2], 10)


def test_one_chip_spans_no_boundary(tiny_run):
    cc, x, trains = tiny_run
    big = dataclasses.replace(TINY, cores_per_chip=128)
    rep, stores, assign = multichip_partition(cc, big, chips=1)
    tr = traffic_from_run(cc, assign, x, trains)
    assert assign.chips == 1 and tr.inter_chip_spikes == 0 and tr.inter_chip_payloads == 0
    assert tr.host_in == pytest.approx(x.sum() / x.shape[0])


def test_too_few_chips_is_a_drc_error_naming_the_chips_needed(tiny_run):
    cc, _, _ = tiny_run
    with pytest.raises(DRCError, match=r"needs 18 neuro-cores = 5 tiny chips.*only 2 chip.*--chips 5"):
        multichip_partition(cc, TINY, chips=2)
    with pytest.raises(DRCError, match="positive integer"):
        multichip_partition(cc, TINY, chips=0)
    rep, _, assign = multichip_partition(cc, TINY, chips=7)
    assert assign.chips == 5 and assign.chips_available == 7 and not rep.violations


def test_shape_net_equals_the_compiled_partition(tiny_run):
    """A network known by its shapes only (the paper's audiocoder) is placed like its compiled twin."""
    cc, _, _ = tiny_run
    shapes = ShapeNet(tuple(DenseShape(cl.name, cl.n_in, cl.n_out, int(cl.num_weight_bits), cl.blocks,
                                       cl.fan_in_groups, int(sum((b != 0).sum() for b in cl.block_effective())))
                            for cl in cc.layers))
    a, sa = conv_partition(cc, dataclasses.replace(TINY, chips=5), strict=False, split_fan_in=True)
    b, sb = conv_partition(shapes, dataclasses.replace(TINY, chips=5), strict=False, split_fan_in=True)
    assert [l.cores for l in a.layers] == [l.cores for l in b.layers]
    assert a.synaptic_memory_bits == b.synaptic_memory_bits and a.nonzero_synapses == b.nonzero_synapses
    with pytest.raises(DRCError, match="n_in must be a positive integer"):
        DenseShape("x", 0, 4)


def test_sparse_storage_of_a_pruned_layer_needs_fewer_cores():
    dense = ShapeNet((DenseShape("fc0", 3840, 512, nonzero=3840 * 512 * 2), DenseShape("fc1", 512, 196)))
    pruned = ShapeNet((DenseShape("fc0", 3840, 512, nonzero=int(3840 * 512 * 2 * 0.1)), DenseShape("fc1", 512, 196)))
    d, _ = conv_partition(dense, LOIHI2, storage="sparse")
    s, _ = conv_partition(pruned, LOIHI2, storage="sparse")
    full, _ = conv_partition(pruned, LOIHI2, storage="shared")
    # 10 % of 2 blocks x 3,840 synapses per neuron at 8 + 12 index bits: 768 x 20 = 15,360 bits -> 68 per core
    assert s.layers[0].cores == 8 and full.layers[0].cores == 31     # dense: 3,840 x 16 bits -> 17 per core
    assert d.layers[0].cores == 86                                    # unpruned, sparse: the index costs more
    assert s.layers[0].synaptic_memory_bits == int(3840 * 512 * 2 * 0.1) * (8 + 12)
    with pytest.raises(DRCError, match="storage='bogus'"):
        conv_partition(pruned, LOIHI2, storage="bogus")


def test_cli_resources_chips_on_a_compiled_network(tiny_run, tmp_path, capsys):
    """`snnc resources compiled.npz --chips N --rates ...` reports the multi-chip section (one Loihi-2-like chip
    here: nothing crosses a chip boundary) and refuses a chip count below 1."""
    from toolchain.cli import main
    from toolchain.compiled_conv_io import save_compiled_conv

    cc, _, _ = tiny_run
    save_compiled_conv(cc, tmp_path / "c.npz")
    assert main(["resources", str(tmp_path / "c.npz"), "--samples", "0", "--chips", "3", "--rates",
                 "0.1,0.4,0.8,0.9", "--json"]) == 0
    mc = json.loads(capsys.readouterr().out)["multichip"]
    assert mc["chips"] == 1 and mc["chips_available"] == 3 and mc["cores_per_chip"] == [sum(mc["cores_per_chip"])]
    assert mc["traffic"]["inter_chip_spikes_per_sample"] == 0 and mc["traffic"]["inter_chip_payloads_per_sample"] == 0
    assert mc["traffic"]["host_in_per_sample"] == pytest.approx(0.1 * 10 * 200)
    assert mc["traffic"]["host_out_per_sample"] == pytest.approx(0.9 * 10 * 30)
    assert main(["resources", str(tmp_path / "c.npz"), "--samples", "0", "--chips", "0"]) == 2
    assert "--chips must be >= 1" in capsys.readouterr().err
    assert main(["resources", str(tmp_path / "c.npz"), "--samples", "0", "--rates", "0.1,x"]) == 2
    assert "--rates" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_resources_chips_and_traffic(tmp_path, capsys):
    """`snnc resources MODEL --chips N`: a 4,000-4,300-10 LIF chain needs 138 cores = 2 Loihi-2-like chips (its
    second layer's fan-in of 4,300 is split into 2 relay groups); one chip is refused naming --chips 2. Slow (17 CPU
    s of compiling 17 M weights); test_cli_resources_chips_on_a_compiled_network and the partition tests above cover
    the same code on a small network."""
    from toolchain.artifact_graph import save_graph
    from toolchain.cli import main

    rng = np.random.default_rng(0)
    g = lif_chain([rng.uniform(-0.004, 0.006, (4300, 4000)).astype(np.float32),
                   rng.uniform(-0.005, 0.01, (10, 4300)).astype(np.float32)],
                  [LIF(4300, 0.9, clamp=True), LIF(10, 0.9, clamp=True)],
                  {"steps": 5, "encoding": "bernoulli", "p_scale": 0.2, "family": "rate-lif"})
    save_graph(g, tmp_path / "m.onnx")
    assert main(["resources", str(tmp_path / "m.onnx"), "--samples", "0", "--rates", "0.05,0.1,0.1", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    mc = rep["multichip"]
    assert mc["chips"] == 2 and mc["cores_per_chip"] == [128, 10] and rep["resources"]["fits"]
    assert mc["layer_chips"] == {"layer0": [0, 1], "layer1": [1]}
    # layer0's 4,300 neurons: 32 per core, the first 128 cores (4,096 neurons) on chip 0 send to chip 1
    tr = mc["traffic"]
    assert tr["inter_chip_spikes_per_sample"] == pytest.approx(0.1 * 5 * 4096)
    assert tr["host_in_per_sample"] == pytest.approx(0.05 * 5 * 4000 * 2)
    assert main(["resources", str(tmp_path / "m.onnx"), "--samples", "0", "--chips", "1"]) == 2
    err = capsys.readouterr().err
    assert "needs 138 neuro-cores = 2 loihi2-like chips" in err and "--chips 2" in err
