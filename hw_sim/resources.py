"""Core partition of a compiled network onto a Loihi-like chip, with named design-rule checks.

Each layer (Dense synapses + LIF population, ``toolchain/compiled.py``) is split over cores so that, per core,
neurons, synaptic memory and input/output axons stay within the chip's limits. Every design rule is a small
function raising :class:`toolchain.errors.DRCError` with a sentence that names the layer, the resource, by how
much it is exceeded and what to change (Rockpool ``devices/xylo`` style).

Memory model (an assumption, stated in every table): dense synapse storage, ``num_weight_bits`` per synapse for
every (input or pulse) x neuron pair, no compression, no per-core overheads. Neuron configuration memory: one
17-bit threshold mantissa per neuron (``CompiledLayer.vth`` is per neuron), counted per layer and core
(``neuron_config_bits``) and reported, not charged against the synaptic memory; no per-core limit on it (or on
the number of distinct thresholds per core) is checked: ASSUMED, every neuron within ``neurons_per_core`` holds
its own threshold. Ordinary inputs and the layer's
pulse generator both arrive on input axons of each core that holds part of the layer. Layer 0's inputs and
every layer's pulses come from the host / embedded spike generators (no neuro-core). Output spikes of the last
layer go to the host (one output axon per neuron).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from models.network import TemporalNetwork
from toolchain.compiled import CompiledLayer, CompiledNetwork
from toolchain.errors import DRCError

VTH_BITS = 17  # threshold mantissa per neuron (neuron configuration memory)


@dataclass(frozen=True)
class ChipSpec:
    """Per-core and per-chip limits of a Loihi-like neuromorphic chip.

    neurons_per_core:        compartments (neurons) per neuro-core
    synaptic_memory_bits:    synaptic memory per core, bits
    max_fan_in_axons:        distinct input axons per core
    max_fan_out_axons:       output axon routes per core (one per (neuron, destination core) pair)
    cores_per_chip:          neuro-cores per chip
    max_weight_bits:         widest synaptic weight, bits (sign included)
    chips:                   chips available to the partitioner
    sources:                 where each number comes from, and which are assumed
    """

    name: str
    neurons_per_core: int
    synaptic_memory_bits: int
    max_fan_in_axons: int
    max_fan_out_axons: int
    cores_per_chip: int
    max_weight_bits: int
    chips: int = 1
    sources: str = ""

    def __post_init__(self) -> None:
        for f in ("neurons_per_core", "synaptic_memory_bits", "max_fan_in_axons", "max_fan_out_axons",
                  "cores_per_chip", "max_weight_bits", "chips"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 1:
                raise DRCError(f"chip {self.name!r}: {f} must be a positive integer, got {v!r}; fix the ChipSpec")

    @property
    def total_cores(self) -> int:
        return self.cores_per_chip * self.chips


LOIHI1 = ChipSpec(
    name="loihi1",
    neurons_per_core=1024,
    synaptic_memory_bits=128 * 1024 * 8,
    max_fan_in_axons=4096,
    max_fan_out_axons=4096,
    cores_per_chip=128,
    max_weight_bits=9,
    sources=(
        "Davies et al., 'Loihi: a neuromorphic manycore processor with on-chip learning', IEEE Micro 38(1), "
        "2018: 128 neuro-cores/chip, 1024 compartments/core, 128 KB synaptic memory/core, 4096 input and 4096 "
        "output axon routes/core, 1-9 bit weights. Transcribed, not re-checked against the PDF here."
    ),
)
"""Loihi 1 limits (Davies et al., IEEE Micro 2018)."""

LOIHI2 = ChipSpec(
    name="loihi2-like",
    neurons_per_core=8192,
    synaptic_memory_bits=128 * 1024 * 8,
    max_fan_in_axons=4096,
    max_fan_out_axons=4096,
    cores_per_chip=128,
    max_weight_bits=8,
    sources=(
        "Intel, 'Taking Neuromorphic Computing to the Next Level with Loihi 2' (technology brief, 2021): "
        "128 neuro-cores/chip, up to 1M neurons/chip (8192/core = 1M/128 is an upper bound; the real count "
        "depends on neuron state size), 1-8 bit weights (also Lava Dense's 8-bit mantissa). "
        "ASSUMED (unpublished for Loihi 2): 128 KB synaptic memory/core and 4096 input / 4096 output axons "
        "per core, taken from Loihi 1 (Davies et al. 2018); Loihi 2 partitions core memory flexibly."
    ),
)
"""Loihi-2-like limits: published chip-level numbers plus Loihi 1 per-core numbers where Loihi 2's are unpublished."""

CHIPS: dict[str, ChipSpec] = {"loihi2": LOIHI2, "loihi1": LOIHI1}


def get_chip(name: str) -> ChipSpec:
    """Chip by name ('loihi2' or 'loihi1')."""
    if name not in CHIPS:
        raise DRCError(f"unknown chip {name!r}; choose one of: {', '.join(CHIPS)}")
    return CHIPS[name]


@dataclass(frozen=True)
class LayerResources:
    """One layer on cores. fan_in counts inputs + pulses (axons per core); memory in bits.

    neuron_config_bits: per-neuron configuration of the layer (one 17-bit vth per neuron), all its cores.
    """

    name: str
    neurons: int
    fan_in: int
    fan_out: int
    synapses: int
    nonzero_synapses: int
    weight_bits: int
    synaptic_memory_bits: int
    cores: int
    neurons_per_core: int
    out_axons_per_core: int
    neuron_config_bits: int = 0


@dataclass(frozen=True)
class LayerSpec:
    """What the partitioner needs of one layer: a compiled layer's shape, or an uncompiled model's estimate.

    pulse_axons: pulse input columns (pulse copies included); nonzero_synapses: non-zero weights (inputs +
    pulses); weight_bits: synaptic weight width."""

    name: str
    n_in: int
    n_out: int
    pulse_axons: int
    num_weight_bits: int
    nonzero_synapses: int
    kind: str = "dense"


def compiled_layer_specs(net: CompiledNetwork) -> list[LayerSpec]:
    """The specs of a compiled network's layers (exact: its pulse copies and non-zero integer weights)."""
    return [LayerSpec(_layer_name(layer, i), layer.n_in, layer.n_out, int(layer.pulse_weights.shape[1]),
                      int(layer.num_weight_bits),
                      int((layer.weights != 0).sum() + (layer.pulse_weights != 0).sum()), layer.kind)
            for i, layer in enumerate(net.layers)]


def model_layer_specs(net: TemporalNetwork, weight_bits: int = 8, pulse_copies: int = 1) -> list[LayerSpec]:
    """Specs of an uncompiled model (works for any size, also one the compiler rejects): dense layers at
    ``weight_bits``, each pulse on ``pulse_copies`` axons (ASSUMED: the compiler splits large pulse weights over
    up to 8 copies; 1 is the lower bound), non-zero synapses = non-zero float weights (ASSUMED: none rounds to 0)."""
    if isinstance(pulse_copies, bool) or not isinstance(pulse_copies, int) or pulse_copies < 1:
        raise DRCError(f"pulse_copies={pulse_copies!r} must be a positive integer; fix: e.g. 1")
    return [LayerSpec(f"layer{i}", layer.n_in, layer.n_out, layer.n_pulses * pulse_copies, int(weight_bits),
                      int(np.count_nonzero(layer.weights)) + pulse_copies * int(np.count_nonzero(layer.pulse_weights)))
            for i, layer in enumerate(net.layers)]


@dataclass(frozen=True)
class ResourceReport:
    """The partition: per-layer resources and totals (cores, neurons, synapses, memory bits).

    violations: design-rule messages of a partition made with ``strict=False`` (empty when everything fits)."""

    chip: ChipSpec
    layers: tuple[LayerResources, ...]
    violations: tuple[str, ...] = field(default=())

    @property
    def cores(self) -> int:
        return sum(layer.cores for layer in self.layers)

    @property
    def neurons(self) -> int:
        return sum(layer.neurons for layer in self.layers)

    @property
    def synapses(self) -> int:
        return sum(layer.synapses for layer in self.layers)

    @property
    def nonzero_synapses(self) -> int:
        return sum(layer.nonzero_synapses for layer in self.layers)

    @property
    def synaptic_memory_bits(self) -> int:
        return sum(layer.synaptic_memory_bits for layer in self.layers)

    @property
    def neuron_config_bits(self) -> int:
        return sum(layer.neuron_config_bits for layer in self.layers)

    @property
    def core_utilisation(self) -> float:
        """Fraction of the chip's cores used."""
        return self.cores / self.chip.total_cores

    def to_dict(self) -> dict:
        """JSON-able summary (for reports and the device protocol)."""
        return {
            "chip": self.chip.name,
            "cores": self.cores,
            "cores_available": self.chip.total_cores,
            "neurons": self.neurons,
            "synapses": self.synapses,
            "nonzero_synapses": self.nonzero_synapses,
            "synaptic_memory_bytes": self.synaptic_memory_bits / 8,
            "neuron_config_bytes": self.neuron_config_bits / 8,
            "fits": not self.violations,
            "violations": list(self.violations),
            "layers": [vars(layer).copy() for layer in self.layers],
        }


# ---- design rules: each raises DRCError naming the layer, the resource and the excess ----------------------

def _pulse_axons(layer: CompiledLayer | LayerSpec) -> int:
    return layer.pulse_axons if isinstance(layer, LayerSpec) else int(layer.pulse_weights.shape[1])


def check_weight_bits(layer: CompiledLayer | LayerSpec, chip: ChipSpec) -> None:
    """Weights must fit the chip's synaptic weight width."""
    bits = int(layer.num_weight_bits)
    if bits > chip.max_weight_bits:
        raise DRCError(
            f"layer {layer.name!r}: weights use {bits} bits but {chip.name} stores at most "
            f"{chip.max_weight_bits} bits per synapse (exceeded by {bits - chip.max_weight_bits} bits); "
            f"recompile with num_weight_bits <= {chip.max_weight_bits}"
        )


def check_fan_in(layer: CompiledLayer | LayerSpec, chip: ChipSpec) -> None:
    """Every core of a dense layer receives all inputs and pulses: they must fit its input axons."""
    fan_in = layer.n_in + _pulse_axons(layer)
    if fan_in > chip.max_fan_in_axons:
        raise DRCError(
            f"layer {layer.name!r}: fan-in of {fan_in} axons ({layer.n_in} inputs + "
            f"{_pulse_axons(layer)} pulses) exceeds {chip.name}'s {chip.max_fan_in_axons} input axons "
            f"per core by {fan_in - chip.max_fan_in_axons}; use fewer inputs or pulses for this layer"
        )


def check_synapse_row(layer: CompiledLayer | LayerSpec, chip: ChipSpec) -> None:
    """One neuron's synapses (fan-in x weight bits) must fit one core's synaptic memory."""
    fan_in = layer.n_in + _pulse_axons(layer)
    row_bits = fan_in * int(layer.num_weight_bits)
    if row_bits > chip.synaptic_memory_bits:
        raise DRCError(
            f"layer {layer.name!r}: one neuron needs {row_bits} bits of synaptic memory ({fan_in} synapses x "
            f"{layer.num_weight_bits} bits) but a {chip.name} core has {chip.synaptic_memory_bits} bits "
            f"(exceeded by {row_bits - chip.synaptic_memory_bits} bits); reduce fan-in or weight bits"
        )


def check_fan_out(name: str, out_axons_per_core: int, chip: ChipSpec) -> None:
    """Output axon routes of the fullest core of a layer must fit the core's routing table."""
    if out_axons_per_core > chip.max_fan_out_axons:
        raise DRCError(
            f"layer {name!r}: a core needs {out_axons_per_core} output axon routes but {chip.name} allows "
            f"{chip.max_fan_out_axons} per core (exceeded by {out_axons_per_core - chip.max_fan_out_axons}); "
            f"shrink the next layer or lower neurons per core"
        )


def check_core_count(cores: int, chip: ChipSpec) -> None:
    """The whole network must fit the chips' neuro-cores."""
    if cores > chip.total_cores:
        raise DRCError(
            f"network needs {cores} neuro-cores but {chip.name} x{chip.chips} has {chip.total_cores} "
            f"(exceeded by {cores - chip.total_cores} cores); use smaller layers, fewer weight bits, or more chips"
        )


# ---- partition -------------------------------------------------------------------------------------------------

def _layer_name(layer: CompiledLayer, index: int) -> str:
    return layer.name or f"layer{index}"


def partition(net: CompiledNetwork, chip: ChipSpec = LOIHI2, strict: bool = True) -> ResourceReport:
    """Place each layer onto cores (greedy, neurons split evenly); raise DRCError when a rule is violated
    (``strict=False``: record the violations in the report instead)."""
    if not net.layers:
        raise DRCError("the compiled network has no layers; compile a model with at least one layer")
    return partition_specs(compiled_layer_specs(net), chip, strict)


def partition_model(net: TemporalNetwork, chip: ChipSpec = LOIHI2, weight_bits: int = 8, pulse_copies: int = 1,
                    strict: bool = False) -> ResourceReport:
    """The same partition for an uncompiled model (:func:`model_layer_specs`), for any size; violations are
    recorded in the report unless ``strict``."""
    if not net.layers:
        raise DRCError("the model has no layers; train or export a model with at least one layer")
    return partition_specs(model_layer_specs(net, weight_bits, pulse_copies), chip, strict)


def partition_specs(specs: list[LayerSpec], chip: ChipSpec = LOIHI2, strict: bool = True) -> ResourceReport:
    """Core partition of layers described by :class:`LayerSpec` (the rules of :func:`partition`)."""
    violations: list[str] = []

    def rule(check, *args) -> None:
        try:
            check(*args)
        except DRCError as exc:
            if strict:
                raise
            violations.append(str(exc))

    placed = []
    for i, layer in enumerate(specs):
        if layer.kind != "dense":
            raise DRCError(f"layer {layer.name!r}: kind {layer.kind!r} is not supported by the "
                           f"partitioner (only 'dense'); recompile with dense layers")
        rule(check_weight_bits, layer, chip)
        rule(check_fan_in, layer, chip)
        rule(check_synapse_row, layer, chip)
        fan_in = layer.n_in + layer.pulse_axons
        bits = int(layer.num_weight_bits)
        per_core = max(1, min(chip.neurons_per_core, chip.synaptic_memory_bits // (fan_in * bits)))
        cores = math.ceil(layer.n_out / per_core)
        per_core = math.ceil(layer.n_out / cores)  # spread evenly
        placed.append((layer, fan_in, bits, cores, per_core))

    layers = []
    for i, (layer, fan_in, bits, cores, per_core) in enumerate(placed):
        if i + 1 < len(placed):
            dest_cores = placed[i + 1][3]
            fan_out = placed[i + 1][0].n_out
        else:
            dest_cores, fan_out = 1, 1  # to the host
        out_axons = per_core * dest_cores
        rule(check_fan_out, layer.name, out_axons, chip)
        synapses = layer.n_out * fan_in
        layers.append(LayerResources(
            name=layer.name, neurons=layer.n_out, fan_in=fan_in, fan_out=fan_out, synapses=synapses,
            nonzero_synapses=layer.nonzero_synapses, weight_bits=bits, synaptic_memory_bits=synapses * bits,
            cores=cores, neurons_per_core=per_core, out_axons_per_core=out_axons,
            neuron_config_bits=layer.n_out * VTH_BITS,
        ))
    report = ResourceReport(chip, tuple(layers))
    rule(check_core_count, report.cores, chip)
    return ResourceReport(chip, tuple(layers), tuple(violations))


def format_resource_table(report: ResourceReport) -> str:
    """Plain-text table of the partition with totals and the chip's sources/assumptions."""
    chip = report.chip
    head = ("layer", "neurons", "fan-in", "fan-out", "synapses", "nonzero", "bits", "syn mem KiB", "vth KiB",
            "cores", "neur/core", "out ax/core")
    rows = [head]
    for r in report.layers:
        rows.append((r.name, r.neurons, r.fan_in, r.fan_out, r.synapses, r.nonzero_synapses, r.weight_bits,
                     f"{r.synaptic_memory_bits / 8192:.1f}", f"{r.neuron_config_bits / 8192:.2f}", r.cores,
                     r.neurons_per_core, r.out_axons_per_core))
    rows.append(("total", report.neurons, "", "", report.synapses, report.nonzero_synapses, "",
                 f"{report.synaptic_memory_bits / 8192:.1f}", f"{report.neuron_config_bits / 8192:.2f}",
                 report.cores, "", ""))
    rows = [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(row[k]) for row in rows) for k in range(len(head))]

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(row, widths)))

    lines = [fmt(rows[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(row) for row in rows[1:-1]]
    lines += ["  ".join("-" * w for w in widths), fmt(rows[-1])]
    lines.append(
        f"chip {chip.name} x{chip.chips}: {report.cores}/{chip.total_cores} cores "
        f"({100 * report.core_utilisation:.1f}%), {chip.neurons_per_core} neurons/core, "
        f"{chip.synaptic_memory_bits // 8192} KiB synaptic memory/core, {chip.max_fan_in_axons}/"
        f"{chip.max_fan_out_axons} in/out axons/core, <= {chip.max_weight_bits}-bit weights"
    )
    lines += [f"DRC: {v}" for v in report.violations]
    lines.append(f"sources: {chip.sources}")
    lines.append("model: dense synapse storage (weight bits per synapse incl. pulses, no compression or "
                 f"per-core overheads); one {VTH_BITS}-bit threshold per neuron (vth KiB, neuron configuration, "
                 "not charged against synaptic memory; no per-core limit checked); inputs and pulses come from "
                 "host spike generators")
    return "\n".join(lines)
