"""Core partition and design rules of hw_sim/resources.py."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hw_sim.resources import LOIHI1, LOIHI2, ChipSpec, format_resource_table, get_chip, partition
from compiled_factory import make_compiled
from toolchain.errors import DRCError, SnncError


def test_partition_small_network_counts():
    net = make_compiled((12, 6, 4), n_pulses=2)
    rep = partition(net, LOIHI2)
    assert [r.neurons for r in rep.layers] == [6, 4]
    assert [r.fan_in for r in rep.layers] == [14, 8]
    assert [r.synapses for r in rep.layers] == [6 * 14, 4 * 8]
    l0 = net.layers[0]
    assert rep.layers[0].nonzero_synapses == int((l0.weights != 0).sum() + (l0.pulse_weights != 0).sum())
    assert rep.layers[0].synaptic_memory_bits == 6 * 14 * 8
    assert rep.cores == 2 and rep.neurons == 10
    assert rep.layers[0].fan_out == 4 and rep.layers[1].fan_out == 1
    d = rep.to_dict()
    assert d["cores"] == 2 and d["synaptic_memory_bytes"] == (6 * 14 + 4 * 8) * 8 / 8


def test_partition_splits_on_neuron_and_memory_limits():
    net = make_compiled((20, 30, 5))
    small = dataclasses.replace(LOIHI2, name="tiny", neurons_per_core=8)
    rep = partition(net, small)
    assert rep.layers[0].cores == 4 and rep.layers[0].neurons_per_core == 8  # ceil(30 / 8), even split
    assert rep.layers[1].cores == 1
    # layer 0 feeds 1 core of layer 1: 8 routes/core; memory limit: 21 synapses x 8 bits = 168 bits per neuron
    mem = dataclasses.replace(LOIHI2, name="memlimited", synaptic_memory_bits=168 * 5)
    rep = partition(net, mem)
    assert rep.layers[0].cores == 6 and rep.layers[0].neurons_per_core == 5


@pytest.mark.parametrize("chip_change, sizes, bits, words", [
    (dict(max_fan_in_axons=10), (12, 6, 4), 8, ["layer0", "fan-in of 13", "12 inputs + 1 pulses", "by 3"]),
    (dict(max_weight_bits=6), (12, 6, 4), 8, ["layer0", "8 bits", "exceeded by 2 bits", "num_weight_bits <= 6"]),
    (dict(synaptic_memory_bits=100), (12, 6, 4), 8, ["layer0", "104 bits", "exceeded by 4 bits"]),
    (dict(cores_per_chip=2, neurons_per_core=4), (12, 6, 4), 8, ["needs 3 neuro-cores", "exceeded by 1 cores"]),
    (dict(max_fan_out_axons=3, neurons_per_core=4), (12, 6, 4), 8, ["layer1", "4 output axon routes",
                                                                    "exceeded by 1"]),
])
def test_design_rules_name_layer_resource_and_excess(chip_change, sizes, bits, words):
    chip = dataclasses.replace(LOIHI2, name="testchip", **chip_change)
    with pytest.raises(DRCError) as exc:
        partition(make_compiled(sizes, weight_bits=bits), chip)
    for w in words:
        assert w in str(exc.value)


def test_loihi1_allows_9_bit_weights_loihi2_does_not():
    net = make_compiled((4, 3), weight_bits=9)
    assert partition(net, LOIHI1).cores == 1
    with pytest.raises(DRCError, match="at most 8 bits"):
        partition(net, LOIHI2)


def test_bad_chip_and_unknown_name_are_clear_errors():
    with pytest.raises(SnncError, match="positive integer"):
        ChipSpec("x", 0, 1, 1, 1, 1, 8)
    with pytest.raises(SnncError, match="choose one of"):
        get_chip("truenorth")


def test_format_resource_table_lists_layers_totals_and_sources():
    rep = partition(make_compiled((12, 6, 4)), LOIHI2)
    text = format_resource_table(rep)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["layer", "neurons", "fan-in"]
    assert any(line.startswith("layer0") for line in lines)
    total = next(line for line in lines if line.startswith("total"))
    assert total.split()[1] == "10" and total.split()[-1] == "2"
    assert "2/128 cores" in text and "ASSUMED" in text and "Davies" in text
    assert np.isclose(rep.core_utilisation, 2 / 128)


def test_snnc_resources_estimates_a_model_that_does_not_compile(tmp_path, capsys, monkeypatch):
    import json

    from test_calibration import wide_inhibitory_autoencoder
    from toolchain.artifact import save_onnx
    from toolchain.cli import main
    from toolchain.compiler import compile_file
    from toolchain.errors import CompileError

    monkeypatch.delenv("SNNC_DATA", raising=False)
    model = tmp_path / "model.onnx"
    save_onnx(wide_inhibitory_autoencoder(), model)
    with pytest.raises(CompileError):
        compile_file(model)
    out = tmp_path / "res.json"
    assert main(["resources", str(model), "--samples", "3", "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    res = printed["resources"]
    # same partition rules as hw_sim/resources.py: 784 + 1 pulse axons per layer-0 neuron, 65 per layer-1 neuron
    assert [l["fan_in"] for l in res["layers"]] == [785, 65] and res["neurons"] == 64 + 784
    assert res["synapses"] == 64 * 785 + 784 * 65 and res["cores"] >= 2 and res["fits"]
    e = printed["energy"]
    assert e["metrics"]["samples"] == 3 and e["energy_per_sample_nJ"]["mean"] > 0
    assert printed["window_steps"] > 0 and printed["network"] == "784-64-784"
    # the table form, and a design rule violated on Loihi 1 is listed rather than fatal (9-bit weights fit)
    assert main(["resources", str(model), "--samples", "0", "--chip", "loihi1", "--weight-bits", "9"]) == 0
    text = capsys.readouterr().out
    assert "layer0" in text and "total" in text and "energy" not in text
    assert main(["resources", str(tmp_path / "missing.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_resources_of_a_compiled_network_equal_the_model_estimate_when_no_pulse_copies():
    from hw_sim.resources import partition_model

    net = make_compiled((12, 6, 4), n_pulses=2)
    a = partition(net, LOIHI2).to_dict()
    b = partition_model(net.source, LOIHI2, weight_bits=8).to_dict()
    for key in ("cores", "neurons", "synapses", "synaptic_memory_bytes"):
        assert a[key] == b[key], key
    tiny = dataclasses.replace(LOIHI2, name="tiny", max_fan_in_axons=10)
    rep = partition_model(net.source, tiny)  # not strict: recorded
    assert rep.violations and "fan-in of 14" in rep.violations[0] and not rep.to_dict()["fits"]
    assert "DRC: layer" in format_resource_table(rep)
    with pytest.raises(DRCError, match="fan-in of 14"):
        partition_model(net.source, tiny, strict=True)
