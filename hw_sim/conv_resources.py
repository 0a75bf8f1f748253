"""Resources and energy of a convolutional CompiledConv on a Loihi-like chip (issue [F]); an addition to
hw_sim/resources.py and hw_sim/energy.py, whose chip specs, design rules and estimate it reuses.

How convolutional connectivity is stored (``storage``):

- ``shared`` (default): each core holding part of a convolution layer stores the kernel slice of its output
  channels once (C_out_core x C_in x kH x kW weights at the weight bits) and addresses it by the spike's position.
  ASSUMED from Intel's Loihi 2 technology brief (2021), which lists convolutional connectivity with shared
  weights among its synaptic compression features; per-core costs of the index tables are unpublished and not
  counted.
- ``expanded``: every (input, output) synapse of the layer stored as a sparse synapse (no zero weights, as the
  Dense-style storage of hw_sim/resources.py but without the zeros outside each receptive field): what a chip
  without weight sharing (Loihi 1) needs.
- ``sparse``: convolutions as ``shared``; Dense layers store only their non-zero synapses (e.g. of a magnitude-pruned
  model), each as its weight bits plus an axon index of ceil(log2 fan-in) bits (ASSUMED: a plain compressed-row
  format; Loihi's synapse encodings are unpublished in detail). A core holds as many neurons as the fullest row
  (most non-zero synapses of one neuron, both weight blocks) allows. ``shared`` and ``expanded`` store every Dense
  synapse, zeros included.

Partition of a convolution: each core holds ``rows`` consecutive output rows of ``channels`` output channels
(whole rows, all columns); its input axons are the C_in x W_in x (input rows reaching those output rows) source
neurons. The largest tile that fits the core's neurons, input axons and synaptic memory is chosen (rows first,
then fewer channels). Dense layers are placed as hw_sim/resources.py does (every core sees all inputs). A final
Readout runs on cores as non-spiking compartments whose potentials are probed (ASSUMED; Lava runs it off-chip).
Output axons per core: its neurons x the destination cores one spike reaches (all cores of a Dense destination;
at most 2 row tiles x the channel groups of a convolution destination, ASSUMED tiles at least a kernel high; 1 to
the host). Every rule that fails is a DRCError naming the layer, the resource, the excess and the fix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from hw_sim.conv import tap_table
from hw_sim.energy import LOIHI1_COSTS, NEURON_CONSTANT_BITS, LAYER_CONSTANT_BITS, ActivityCounters, OpCosts
from hw_sim.resources import (
    LOIHI2, VTH_BITS, ChipSpec, LayerResources, ResourceReport, check_core_count, check_fan_out, check_weight_bits,
)
from toolchain.compiled_conv import CompiledConv, CompiledConvLayer
from toolchain.errors import DRCError

STORAGE = ("shared", "expanded", "sparse")


@dataclass(frozen=True)
class ConvStorage:
    """Synaptic storage of one layer (every weight block counted: a second block of rounding residuals is a second
    kernel / synapse set): ``kernel_weights`` (one copy of the shared kernel per block), ``cores``,
    ``shared_bits`` (kernel slice per core, all cores; Dense layers: every synapse, zeros included),
    ``expanded_synapses`` / ``expanded_nonzero`` and ``expanded_bits`` (every non-zero synapse at the weight bits);
    ``tile``: (rows, channels) per core (Dense: (neurons per core, 1)); ``split``: the relay partition of a Dense
    fan-in beyond a core's axons (conv_partition's split_fan_in), else None."""

    name: str
    kind: str
    kernel_weights: int
    cores: int
    shared_bits: int
    expanded_synapses: int
    expanded_nonzero: int
    expanded_bits: int
    tile: tuple[int, int]
    split: FanInSplit | None = None     # a Dense fan-in split into relay groups (conv_partition's split_fan_in)


RELAY_MESSAGE_BITS = 24    # graded spike payload of a relay (Lava 0.10's GradedVec: 24-bit precision)
RELAY_WEIGHT_BITS = 8      # the summing stage's identity weights (mantissa 2 at exponent -1)


@dataclass(frozen=True)
class FanInSplit:
    """A Dense layer whose fan-in exceeds a core's input axons, split into ``groups`` partial sums (issue [F]: the
    latent layer's 12,800 inputs): group g's ``group_fan_in`` inputs feed ``n_out`` relay compartments that emit
    their integer partial sum every step as a graded spike (Lava 0.10: GradedVec with vth 0, 24-bit payload);
    the layer's LIF neurons receive the ``groups`` relays of their index through a graded Dense with identity
    weights and sum them exactly (integer addition). Costs: ``relay_cores`` + ``sum_cores`` cores instead of the
    layer's, and one more step of delay for this population and every later one (the relay stage)."""

    groups: int
    group_fan_in: int
    relay_per_core: int
    relay_cores: int
    sum_per_core: int
    sum_cores: int
    relay_bits: int            # synaptic memory of the relay groups (all cores)
    sum_bits: int              # identity weights of the summing stage (all cores)
    extra_steps: int = 1

    @property
    def cores(self) -> int:
        return self.relay_cores + self.sum_cores


@dataclass(frozen=True)
class DenseShape:
    """A Dense -> LIF layer known by its shape only (an uncompiled or too-large model, e.g. the paper's
    58,500-2,048 audiocoder): what :func:`conv_partition` needs of a Dense layer. ``nonzero``: non-zero synapses
    over all weight blocks (None: every synapse, n_in x n_out x blocks); ``fan_in_groups``: the compiler's split
    (``max_fan_in``: ceil(n_in / 4,096) groups beyond a core's axons)."""

    name: str
    n_in: int
    n_out: int
    num_weight_bits: int = 8
    blocks: int = 2
    fan_in_groups: int = 1
    nonzero: int | None = None
    kind: str = "dense"
    population: str = "lif"

    def __post_init__(self) -> None:
        for f in ("n_in", "n_out", "num_weight_bits", "blocks", "fan_in_groups"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise DRCError(f"layer {self.name!r}: {f} must be a positive integer, got {v!r}; fix the layer shape")
        if self.nonzero is not None and not 0 <= self.nonzero <= self.n_in * self.n_out * self.blocks:
            raise DRCError(f"layer {self.name!r}: nonzero={self.nonzero} must lie in 0..n_in x n_out x blocks = "
                           f"{self.n_in * self.n_out * self.blocks}; fix the count")

    @property
    def total_nonzero(self) -> int:
        return self.n_in * self.n_out * self.blocks if self.nonzero is None else int(self.nonzero)


@dataclass(frozen=True)
class ShapeNet:
    """A chain of :class:`DenseShape` layers: the argument :func:`conv_partition` takes for models that are not
    compiled (``layers`` in order, input first)."""

    layers: tuple[DenseShape, ...]

    @property
    def n_in(self) -> int:
        return self.layers[0].n_in


def index_bits(fan_in: int) -> int:
    """Axon index bits of a sparse synapse: ceil(log2 fan-in), at least 1 (``sparse`` storage)."""
    return max(1, math.ceil(math.log2(max(2, int(fan_in)))))


def layer_nonzero(cl) -> int:
    """Non-zero synapses of a layer over its weight blocks (a :class:`DenseShape` states them)."""
    return cl.total_nonzero if isinstance(cl, DenseShape) else int(fanout_nonzero(cl).sum())


def row_nonzero_max(cl) -> int:
    """The most non-zero synapses one neuron of a Dense layer holds, both weight blocks (a :class:`DenseShape`:
    its non-zero synapses spread evenly over its neurons, ASSUMED)."""
    if isinstance(cl, DenseShape):
        return math.ceil(cl.total_nonzero / cl.n_out)
    return int(sum((np.asarray(b) != 0).sum(axis=1) for b in cl.block_effective()).max(initial=0))


def fan_in_split(cl: CompiledConvLayer, chip: ChipSpec, axon_cap: int, density: float | None = None) -> FanInSplit:
    """The layer's compiled groups (``fan_in_groups`` > 1), else the smallest number of groups, raised until the
    relay cores fit the chip's input axons and synaptic memory (every weight block stored), and the summing stage's
    cores (``axon_cap``: output-axon bound of the layer's neurons). ``density``: sparse storage of the relays'
    synapses (fraction non-zero; each costs its weight bits plus an axon index); None: dense storage."""
    bits = int(cl.num_weight_bits) * cl.blocks
    groups = max(cl.fan_in_groups, math.ceil(cl.n_in / chip.max_fan_in_axons))
    while True:
        g_in = math.ceil(cl.n_in / groups)
        row = g_in * bits if density is None else \
            math.ceil(g_in * cl.blocks * density) * (int(cl.num_weight_bits) + index_bits(g_in))
        relay_pc = min(chip.neurons_per_core, chip.max_fan_out_axons, chip.synaptic_memory_bits // max(1, row))
        sum_pc = min(chip.neurons_per_core, axon_cap, chip.max_fan_in_axons // groups,
                     chip.synaptic_memory_bits // (groups * RELAY_WEIGHT_BITS))
        if relay_pc >= 1 and sum_pc >= 1:
            break
        if groups >= cl.n_in:
            raise DRCError(f"layer {cl.name!r}: its fan-in of {cl.n_in} cannot be split over {chip.name} cores; fix: "
                           "shrink the layer feeding it")
        groups += 1
    relay_cores = groups * math.ceil(cl.n_out / relay_pc)
    sum_cores = math.ceil(cl.n_out / sum_pc)
    relay_bits = cl.n_in * cl.n_out * bits if density is None else \
        math.ceil(cl.n_in * cl.n_out * cl.blocks * density) * (int(cl.num_weight_bits) + index_bits(g_in))
    return FanInSplit(groups, g_in, relay_pc, relay_cores, sum_pc, sum_cores, relay_bits,
                      groups * cl.n_out * RELAY_WEIGHT_BITS)


def weight_blocks(cl: CompiledConvLayer) -> list[CompiledConvLayer]:
    """The layer as one single-block layer per weight block (a second block of rounding residuals is a second
    synapse set of the same geometry: its synapses are stored and its synaptic operations counted as well)."""
    if cl.fine_weights is None:
        return [cl]
    return [replace(cl, fine_weights=None),
            replace(cl, weights=np.asarray(cl.fine_weights), weight_exp=int(cl.fine_exp), fine_weights=None)]


def fanout_nonzero(cl: CompiledConvLayer) -> np.ndarray:
    """(n_in,) non-zero synapses a spike of each source neuron (C order) reaches, summed over the weight blocks."""
    total = 0
    for b in weight_blocks(cl):
        ptr, _, tap, wtap = tap_table(b)
        nnz = (wtap != 0).sum(axis=2).astype(np.int64)          # (C_in, taps)
        cs = np.concatenate([np.zeros((nnz.shape[0], 1), np.int64), np.cumsum(nnz[:, tap], axis=1)], axis=1)
        total = total + (cs[:, ptr[1:]] - cs[:, ptr[:-1]]).reshape(-1)
    return total


def _rows_in(cl: CompiledConvLayer, rows: int) -> int:
    """Input rows a tile of ``rows`` consecutive output rows reads."""
    kh = cl.weights.shape[2]
    sh = cl.stride[0]
    h_in = cl.in_shape[1]
    need = (rows - 1) * sh + kh if cl.kind == "conv" else (rows + kh - 2) // sh + 1
    return min(h_in, need)


def _conv_tile(cl: CompiledConvLayer, chip: ChipSpec, storage: str, name: str,
               neuron_cap: int | None = None) -> tuple[int, int, int, int, int]:
    """(rows, channels, fan_in, bits per core, neurons per core) of the largest tile that fits (at most
    ``neuron_cap`` neurons: the output-axon bound); DRCError otherwise."""
    cap = chip.neurons_per_core if neuron_cap is None else max(1, min(chip.neurons_per_core, neuron_cap))
    c_out, h_out, w_out = cl.out_shape
    c_in, _, w_in = cl.in_shape
    kh, kw = cl.weights.shape[2:]
    bits = int(cl.num_weight_bits) * cl.blocks      # a second weight block stores a second kernel
    last = None
    for ch in range(c_out, 0, -1):
        for rows in range(h_out, 0, -1):
            neurons = rows * w_out * ch
            fan_in = c_in * w_in * _rows_in(cl, rows)
            mem = (ch * c_in * kh * kw * bits) if storage == "shared" else neurons * c_in * kh * kw * bits
            if neurons <= cap and fan_in <= chip.max_fan_in_axons \
                    and mem <= chip.synaptic_memory_bits:
                return rows, ch, fan_in, mem, neurons
            last = (neurons, fan_in, mem)
    neurons, fan_in, mem = last
    what = []
    if neurons > cap:
        what.append(f"{neurons} neurons (one output row of one channel) exceed {cap} per core (neurons or output "
                    "axons)")
    if fan_in > chip.max_fan_in_axons:
        what.append(f"{fan_in} input axons (C_in x W_in x receptive rows) exceed {chip.max_fan_in_axons} per core "
                    f"by {fan_in - chip.max_fan_in_axons}")
    if mem > chip.synaptic_memory_bits:
        what.append(f"{mem} bits of {storage} synaptic memory exceed {chip.synaptic_memory_bits} per core")
    raise DRCError(f"layer {name!r}: even the smallest tile (one output row of one channel) does not fit a "
                   f"{chip.name} core: {'; '.join(what)}; fix: use fewer input channels, a narrower map or a smaller "
                   f"kernel")


def conv_partition(cc: CompiledConv | ShapeNet, chip: ChipSpec = LOIHI2, strict: bool = True, storage: str = "shared",
                   split_fan_in: bool = False) -> tuple[ResourceReport, list[ConvStorage]]:
    """Core partition of a CompiledConv (or a :class:`ShapeNet` of Dense layer shapes; module docstring) and the
    storage of every layer (``storage``: shared, expanded or sparse).
    strict=False records design-rule violations in the report instead of raising. split_fan_in: place a Dense
    layer whose fan-in exceeds a core's input axons as relay groups plus a summing stage (:class:`FanInSplit`,
    ``ConvStorage.split``) instead of reporting the violation. Layers compiled split (``fan_in_groups`` > 1, the
    compiler's default for fan-ins beyond 4,096: lava-fixed deploys them with relays, one step later) are always
    placed so; an unsplit one (compiled with max_fan_in=None) is a violation whose message names the split."""
    if storage not in STORAGE:
        raise DRCError(f"storage={storage!r} is not one of {STORAGE}; fix: use 'shared' (Loihi 2 convolutional "
                       "connectivity) or 'expanded'")
    violations: list[str] = []

    def rule(check, *args):
        try:
            return check(*args)
        except DRCError as exc:
            if strict:
                raise
            violations.append(str(exc))
            return None

    n = len(cc.layers)
    placed: list = [None] * n          # (fan_in, cores, per_core, groups, tile, mem per core)
    splits: dict[int, FanInSplit] = {}
    for i in range(n - 1, -1, -1):      # last layer first: each layer's destination is placed before it
        cl = cc.layers[i]
        reach = _reach(cc, placed, splits, i)
        axon_cap = max(1, chip.max_fan_out_axons // reach)
        bits = int(cl.num_weight_bits) * cl.blocks
        if cl.kind == "dense":
            fan_in = cl.n_in
            sparse = storage == "sparse"
            density = layer_nonzero(cl) / (cl.n_in * cl.n_out * cl.blocks) if sparse else None
            if fan_in > chip.max_fan_in_axons or cl.fan_in_groups > 1:
                sp = fan_in_split(cl, chip, axon_cap, density)
                if split_fan_in or cl.fan_in_groups > 1:
                    splits[i] = sp
                    fan_in = max(sp.group_fan_in, sp.groups * sp.sum_per_core)
                    placed[i] = (fan_in, sp.cores, sp.sum_per_core, 1, (sp.sum_per_core, 1),
                                 max(sp.relay_per_core * sp.group_fan_in * bits,
                                     sp.sum_per_core * sp.groups * RELAY_WEIGHT_BITS))
                    continue
                rule(_raise, f"layer {cl.name!r}: fan-in of {fan_in} input axons exceeds {chip.name}'s "
                             f"{chip.max_fan_in_axons} per core by {fan_in - chip.max_fan_in_axons} (every core of a "
                             "Dense layer receives all its inputs, and a neuron's dendritic sum cannot span cores); "
                             "fix: shrink the layer feeding it (fewer channels or a smaller map before the Flatten) "
                             f"or split the layer's fan-in into {sp.groups} groups of {sp.group_fan_in} inputs whose "
                             f"{cl.n_out} partial sums are relayed as {RELAY_MESSAGE_BITS}-bit graded spikes (Lava "
                             "GradedVec, vth 0) and summed exactly by the layer's neurons through an identity graded "
                             f"Dense: {sp.relay_cores} relay + {sp.sum_cores} summing cores and one more step of "
                             "delay from this layer on (compile_conv_graph's default max_fan_in='chip' deploys it; "
                             "counted by conv_partition(..., split_fan_in=True) and `snnc resources`)")
            row = row_nonzero_max(cl) * (int(cl.num_weight_bits) + index_bits(fan_in)) if sparse else fan_in * bits
            per_core = max(1, min(chip.neurons_per_core, axon_cap, chip.synaptic_memory_bits // max(1, row)))
            cores = math.ceil(cl.n_out / per_core)
            per_core = math.ceil(cl.n_out / cores)
            placed[i] = (fan_in, cores, per_core, 1, (per_core, 1), per_core * row)
        else:
            fit = rule(_conv_tile, cl, chip, storage, cl.name, axon_cap)
            rows, ch, fan_in, mem, per_core = fit if fit else (1, 1, 0, 0, cl.out_shape[2])
            groups = math.ceil(cl.out_shape[0] / ch)
            placed[i] = (fan_in, math.ceil(cl.out_shape[1] / rows) * groups, per_core, groups, (rows, ch), mem)
    stores = []
    for i, (cl, (fan_in, cores, per_core, groups, tile, mem)) in enumerate(zip(cc.layers, placed)):
        rule(check_weight_bits, _Spec(cl), chip)
        bits, nb = int(cl.num_weight_bits), cl.blocks      # every block is a synapse set of its own
        nonzero = layer_nonzero(cl)
        if cl.kind == "dense":
            expanded, shared_bits = cl.n_in * cl.n_out * nb, cl.n_in * cl.n_out * bits * nb
            if storage == "sparse":
                shared_bits = splits[i].relay_bits if i in splits else nonzero * (bits + index_bits(cl.n_in))
            if i in splits:
                shared_bits += splits[i].sum_bits
        else:
            kh, kw = cl.weights.shape[2:]
            expanded = len(tap_table(cl)[1]) * cl.in_shape[0] * cl.out_shape[0] * nb  # (pixel, out pixel, tap) x ch
            shared_bits = cores * tile[1] * cl.in_shape[0] * kh * kw * bits * nb
        size = cl.n_in * cl.n_out if isinstance(cl, DenseShape) else int(np.asarray(cl.weights).size)
        stores.append(ConvStorage(cl.name, cl.kind, size * nb, cores, int(shared_bits),
                                  int(expanded), nonzero, nonzero * bits, tile, splits.get(i)))
    layers = []
    for i, (cl, (fan_in, cores, per_core, groups, tile, _)) in enumerate(zip(cc.layers, placed)):
        reach = _reach(cc, placed, splits, i)
        fan_out = cc.layers[i + 1].n_out if i + 1 < n else 1
        out_axons = per_core * reach
        rule(check_fan_out, cl.name, out_axons, chip)
        st = stores[i]      # Dense: every synapse stored (zeros too, as hw_sim/resources.py); conv: per ``storage``
        mem = st.expanded_bits if (cl.kind != "dense" and storage == "expanded") else st.shared_bits
        layers.append(LayerResources(
            name=cl.name, neurons=cl.n_out, fan_in=fan_in, fan_out=fan_out, synapses=st.expanded_synapses,
            nonzero_synapses=st.expanded_nonzero, weight_bits=int(cl.num_weight_bits), synaptic_memory_bits=int(mem),
            cores=cores, neurons_per_core=per_core, out_axons_per_core=out_axons,
            neuron_config_bits=cl.n_out * VTH_BITS))
    report = ResourceReport(chip, tuple(layers))
    rule(check_core_count, report.cores, chip)
    return ResourceReport(chip, tuple(layers), tuple(violations)), stores


def _reach(cc: CompiledConv, placed: list, splits: dict, i: int) -> int:
    """Destination cores one spike of layer i reaches: every core of a Dense destination (only the relay cores of
    its own group when that layer's fan-in is split), at most 2 row tiles x the channel groups of a convolution,
    1 (the host) for the last layer."""
    if i + 1 >= len(cc.layers):
        return 1
    nxt, (_, n_cores, _, n_groups, _, _) = cc.layers[i + 1], placed[i + 1]
    if i + 1 in splits:
        return splits[i + 1].relay_cores // splits[i + 1].groups
    return n_cores if nxt.kind == "dense" else min(n_cores, 2 * n_groups)


class _Spec:
    def __init__(self, cl: CompiledConvLayer) -> None:
        self.name, self.num_weight_bits = cl.name, cl.num_weight_bits


def _raise(msg: str) -> None:
    raise DRCError(msg)


def conv_counters(cc: CompiledConv, spikes_in: np.ndarray, trains: list[np.ndarray]) -> ActivityCounters:
    """Activity per sample and layer from a run: synaptic ops = source spikes x the non-zero synapses each reaches,
    neuron updates = neurons x steps, spikes (a Readout emits none)."""
    x = np.asarray(spikes_in)
    n, t = x.shape[:2]
    src = x
    syn, upd, spk = [], [], []
    for cl, tr in zip(cc.layers, trains):
        syn.append(src.sum(axis=1, dtype=np.int64) @ fanout_nonzero(cl))
        upd.append(np.full(n, cl.n_out * t, np.int64))
        spk.append(np.asarray(tr).sum(axis=(1, 2), dtype=np.int64))
        src = tr
    return ActivityCounters(np.stack(syn, 1), np.stack(upd, 1), np.stack(spk, 1), np.full(n, t, np.int64))


def conv_energy(cc: CompiledConv, spikes_in: np.ndarray, trains: list[np.ndarray], chip: ChipSpec = LOIHI2,
                costs: OpCosts = LOIHI1_COSTS, storage: str = "shared"):
    """hw_sim/energy.py's estimate (NeuroBench metrics, energy and latency per sample) for a conv network run,
    partitioned with ``storage``; design-rule violations are recorded, not raised."""
    from hw_sim.energy import _estimate

    res, stores = conv_partition(cc, chip, strict=False, storage=storage)
    bits = sum(r.synaptic_memory_bits for r in res.layers) + len(cc.layers) * LAYER_CONSTANT_BITS \
        + sum(cl.n_out for cl in cc.layers) * NEURON_CONSTANT_BITS
    total = sum(s.expanded_synapses for s in stores)
    nonzero = sum(s.expanded_nonzero for s in stores)
    static = {"footprint": bits / 8.0, "connection_sparsity": 1.0 - nonzero / total if total else 0.0,
              "storage": storage}
    return _estimate(res, static, conv_counters(cc, spikes_in, trains), chip, costs)


def _storage_dict(s: ConvStorage) -> dict:
    d = {k: v for k, v in vars(s).items() if k != "split"}
    return d | ({"split": vars(s.split).copy()} if s.split is not None else {})


def format_conv_storage(stores: list[ConvStorage]) -> str:
    """Plain-text table: per layer the shared and expanded storage (KiB) and the tile per core."""
    lines = ["layer       kind            kernel w  cores  tile (rows x ch)  shared KiB  expanded KiB  nonzero syn"]
    for s in stores:
        tile = f"{s.tile[0]} x {s.tile[1]}"
        lines.append(f"{s.name:<11} {s.kind:<15} {s.kernel_weights:>8}  {s.cores:>5}  {tile:>16}"
                     f"  {s.shared_bits / 8192:>10.1f}  {s.expanded_bits / 8192:>12.1f}  {s.expanded_nonzero:>11}")
        if s.split is not None:
            sp = s.split
            lines.append(f"  {s.name}: fan-in split into {sp.groups} groups of {sp.group_fan_in} inputs: "
                         f"{sp.relay_cores} relay cores ({sp.relay_per_core} partial sums per core) + {sp.sum_cores} "
                         f"summing cores, +{sp.extra_steps} step of delay from this layer on")
    return "\n".join(lines)


def conv_resources_report(path, args, chip: ChipSpec) -> tuple[dict, str]:
    """``snnc resources`` of a steps model (a compiled npz of either steps format, or a steps ONNX artifact, compiled
    here with worst-case ranges; Dense LIF chains included): the partition in both storage models, and the energy
    estimate from hw_sim's activity on the first ``args.samples`` images of the model's dataset (Bernoulli
    p_scale x pixel, T steps, numpy.random.default_rng(0))."""
    from hw_sim.resources import format_resource_table
    from toolchain.errors import ArtifactError, CompileError, DataError

    if str(path).endswith(".npz"):
        from toolchain.compiled_conv_io import load_compiled_any
        from toolchain.conv_compiler import as_compiled_conv

        cc = as_compiled_conv(load_compiled_any(path))
    else:
        from toolchain.artifact_graph import load_graph
        from toolchain.conv_compiler import compile_conv_graph

        g = load_graph(path)
        t = int(g.metadata.get("steps") or 0)
        if t < 1:
            raise DataError(f"{path} does not record its steps per sample; fix: compile it (snnc compile --time-steps "
                            "T) and pass the compiled.npz")
        try:
            cc = compile_conv_graph(g, t)
            cc = type(cc)(cc.layers, cc.max_steps, {**cc.manifest, "source_metadata": dict(g.metadata)},
                          cc.input_name)
        except CompileError as exc:
            raise ArtifactError(f"{exc}; `snnc resources` compiles ONNX conv models with worst-case ranges: compile "
                                "it yourself (snnc compile --range calibrated) and pass the compiled.npz") from None
    from hw_sim.multichip import format_multichip, multichip_partition, traffic_estimate, traffic_from_run

    _, _, assign = multichip_partition(cc, chip, getattr(args, "chips", None))   # DRCError: too few chips
    chip = replace(chip, chips=assign.chips_available)
    shared, stores = conv_partition(cc, chip, strict=False, storage="shared")
    expanded, _ = conv_partition(cc, chip, strict=False, storage="expanded")
    split, split_stores = conv_partition(cc, chip, strict=False, storage="shared", split_fan_in=True)
    sizes = [cc.n_in] + [cl.n_out for cl in cc.layers]
    out = {"model": str(path), "basis": "compiled steps network (hw_sim/conv_resources.py)",
           "network": "-".join(map(str, sizes)), "weight_blocks": [cl.blocks for cl in cc.layers],
           "resources": shared.to_dict(), "resources_expanded": expanded.to_dict(),
           "storage": [_storage_dict(s) for s in stores]}
    unsplit = {cl.name for cl in cc.layers if cl.fan_in_groups == 1}
    if any(s.split is not None and s.name in unsplit for s in split_stores):
        out["resources_split_fan_in"] = split.to_dict()
        out["split_fan_in"] = {s.name: vars(s.split).copy() for s in split_stores if s.split is not None}
    text = [f"steps network {out['network']} (convolutions: shared kernels; weight blocks per layer "
            f"{out['weight_blocks']}: a second block doubles the layer's synapses)", "", format_resource_table(shared), "",
            "synaptic storage: shared kernels vs expanded synapses", format_conv_storage(stores),
            f"expanded storage: {expanded.cores} cores, {expanded.synaptic_memory_bits / 8192:.1f} KiB"
            + "".join(f"\n  DRC: {v}" for v in expanded.violations)]
    if "split_fan_in" in out:
        text += ["", "with the fan-in split into relay groups (compile with the default max_fan_in to deploy it; +1 "
                 "step of delay from the split layer on):",
                 format_conv_storage([s for s in split_stores if s.split is not None]),
                 f"shared kernels, fan-in split: {split.cores} cores, {split.synaptic_memory_bits / 8192:.1f} KiB"
                 + "".join(f"\n  DRC: {v}" for v in split.violations)]
    out["multichip"] = assign.to_dict()
    traffic = None
    rates = getattr(args, "rates", None)
    if rates:
        try:
            r = [float(v) for v in str(rates).split(",")]
        except ValueError:
            raise DataError(f"--rates {rates!r} must be comma-separated numbers (spikes per neuron and step of the "
                            "input and of every population)") from None
        traffic = traffic_estimate(cc, assign, r, int((cc.manifest.get("source_metadata") or {}).get("steps")
                                                      or cc.max_steps))
    if args.samples > 0:
        from hw_sim.conv import run_conv_fixed
        from hw_sim.energy import format_energy_table
        from models.datasets import load_dataset
        from models.rate_encoding import bernoulli_encode

        meta = cc.manifest.get("source_metadata") or {}
        name = args.dataset or meta.get("dataset")
        p_scale, t = meta.get("p_scale"), int(meta.get("steps") or cc.max_steps)
        if not name or p_scale is None:
            raise DataError("the model does not record its dataset and p_scale; fix: pass --dataset, or --samples 0")
        ds = load_dataset(name, args.split, data_dir=args.data_dir, limit=args.samples)
        img = np.asarray(ds.images, np.float64).reshape(ds.images.shape[0], -1)
        if img.shape[1] != cc.n_in:
            raise DataError(f"{name} images have {img.shape[1]} pixels but the model has {cc.n_in} inputs; fix: pass "
                            "the dataset the model was trained on or --samples 0")
        x = bernoulli_encode(img, t, float(p_scale), np.random.default_rng(0))
        trains, _, _ = run_conv_fixed(cc, x)
        rep = conv_energy(cc, x, trains, chip)
        out["energy"] = rep.to_dict()
        text += ["", f"energy per inference, hw_sim activity on {name} {args.split}[:{img.shape[0]}] (T = {t}):",
                 format_energy_table(rep)]
        if traffic is None:
            traffic = traffic_from_run(cc, assign, x, trains)
    if traffic is not None:
        out["multichip"]["traffic"] = traffic.to_dict()
    text += ["", format_multichip(assign, traffic)]
    return out, "\n".join(text)
