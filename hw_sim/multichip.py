"""Multi-chip partition of a steps network (issue [G]): which chip each core of hw_sim/conv_resources.py's
partition sits on, and how many spikes cross a chip boundary per sample.

Assignment (simple, stated): the cores of :func:`hw_sim.conv_resources.conv_partition` are numbered in layer order
(a Dense layer's cores hold consecutive neuron ranges; a split fan-in's relay cores, group by group, come before
its summing cores; a convolution's tiles channel group by channel group, row tile by row tile) and fill chip 0,
then chip 1, ... with ``cores_per_chip`` cores each; a layer may straddle two chips. Too few chips is a DRCError
naming the chips needed.

Traffic (per sample; ASSUMED routing: a spike is sent once to every other chip holding one of its destination
cores and fans out to the cores there, so a chip boundary counts one message per (spike, destination chip)):

- ``inter_chip_spikes``: binary spikes of an on-chip population sent to another chip (per destination chip);
- ``inter_chip_payloads``: graded relay messages (24-bit partial sums of a split fan-in, Lava GradedVec with vth 0:
  sent in every step where the group's partial sum for that neuron is non-zero) whose summing core is on another
  chip than their relay core;
- ``host_in``: input spike messages from the host to the chips holding the first layer (per destination chip);
  ``host_out``: spikes of the last population to the host.

From a run (``spikes_in`` and the hw_sim trains: exact counts, the relays' partial sums recomputed from the integer
weights) or, with no run, from an activity estimate (``rates``: spikes per neuron and step of the input and of every
population; relays: a group is assumed to send a non-zero partial sum for every neuron in every step in which any of
its inputs spiked, an upper bound).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hw_sim.conv_resources import ConvStorage
from hw_sim.resources import ChipSpec, ResourceReport
from toolchain.errors import DRCError


@dataclass(frozen=True)
class LayerPlacement:
    """Where one layer's cores are: global core ids ``first`` .. ``first + cores - 1``; ``core_of`` (n_out,) the
    layer-local core of each neuron (for a split layer: its summing core, counted after the relay cores);
    ``relay_core`` (groups, n_out) the layer-local relay core of each (group, neuron) or None; ``group_bounds`` the
    input index bounds of the relay groups (as targets/lava_conv.py splits them) or None."""

    name: str
    first: int
    cores: int
    core_of: np.ndarray
    relay_core: np.ndarray | None = None
    group_bounds: np.ndarray | None = None


@dataclass(frozen=True)
class ChipAssignment:
    """Cores on chips: ``chips`` used, ``cores_per_chip`` (cores on each used chip), per layer its placement and
    the chips it spans."""

    chip: ChipSpec
    chips: int
    chips_available: int
    cores_per_chip: tuple[int, ...]
    layers: tuple[LayerPlacement, ...]

    def chip_of(self, layer: int, local_cores: np.ndarray) -> np.ndarray:
        """Chip of each layer-local core id."""
        return (self.layers[layer].first + np.asarray(local_cores)) // self.chip.cores_per_chip

    def layer_chips(self, layer: int) -> list[int]:
        lp = self.layers[layer]
        return list(range(lp.first // self.chip.cores_per_chip,
                          (lp.first + lp.cores - 1) // self.chip.cores_per_chip + 1))

    def to_dict(self) -> dict:
        return {"chip": self.chip.name, "chips": self.chips, "chips_available": self.chips_available,
                "cores": sum(self.cores_per_chip), "cores_per_chip": list(self.cores_per_chip),
                "max_cores_per_chip": self.chip.cores_per_chip,
                "layer_chips": {lp.name: self.layer_chips(k) for k, lp in enumerate(self.layers)},
                "assignment": "cores numbered in layer order fill chip 0, 1, ... (hw_sim/multichip.py)"}


def chips_needed(cores: int, chip: ChipSpec) -> int:
    """Chips whose cores hold ``cores`` (filled in order)."""
    return max(1, math.ceil(int(cores) / chip.cores_per_chip))


def assign_chips(net, report: ResourceReport, stores: list[ConvStorage], chips: int | None = None
                 ) -> ChipAssignment:
    """Chip of every core of a partition (``report``, ``stores`` of conv_partition of ``net``, a CompiledConv or
    ShapeNet); ``chips`` available (None: as many as needed). DRCError naming the chips needed when too few."""
    chip = report.chip
    need = chips_needed(report.cores, chip)
    if chips is not None:
        if isinstance(chips, bool) or not isinstance(chips, (int, np.integer)) or chips < 1:
            raise DRCError(f"--chips must be a positive integer, got {chips!r}; fix: e.g. --chips {need}")
        if chips < need:
            raise DRCError(f"the network needs {report.cores} neuro-cores = {need} {chip.name} chips of "
                           f"{chip.cores_per_chip} cores, but only {chips} chip(s) are available (exceeded by "
                           f"{report.cores - chips * chip.cores_per_chip} cores); fix: --chips {need} (multi-chip "
                           "partition, spikes cross chip boundaries) or a smaller network (fewer inputs or hidden "
                           "neurons, pruned weights with sparse storage)")
    placements, first = [], 0
    for cl, lr, st in zip(net.layers, report.layers, stores):
        n_out = cl.n_out
        idx = np.arange(n_out)
        if st.split is not None:
            sp = st.split
            per_group = math.ceil(n_out / sp.relay_per_core)
            relay = np.arange(sp.groups)[:, None] * per_group + (idx // sp.relay_per_core)[None, :]
            bounds = np.linspace(0, cl.n_in, sp.groups + 1).astype(np.int64)
            placements.append(LayerPlacement(cl.name, first, st.cores, sp.relay_cores + idx // sp.sum_per_core,
                                             relay, bounds))
        elif cl.kind == "dense":
            placements.append(LayerPlacement(cl.name, first, st.cores, idx // max(1, lr.neurons_per_core)))
        else:
            rows, ch = st.tile
            c_out, h_out, w_out = cl.out_shape
            c, y = idx // (h_out * w_out), (idx // w_out) % h_out
            placements.append(LayerPlacement(cl.name, first, st.cores, (c // ch) * math.ceil(h_out / rows) + y // rows))
        first += st.cores
    total = first
    used = chips_needed(total, chip)
    per_chip = tuple(min(chip.cores_per_chip, total - k * chip.cores_per_chip) for k in range(used))
    return ChipAssignment(chip, used, int(chips) if chips is not None else used, per_chip, tuple(placements))


def _destinations(net, assign: ChipAssignment, k: int) -> np.ndarray:
    """Chips that one spike of each source neuron of layer k reaches: a (n_src, chips) bool matrix."""
    cl, lp = net.layers[k], assign.layers[k]
    n_src, nch = cl.n_in, assign.chips
    dest = np.zeros((n_src, nch), bool)
    if lp.relay_core is not None:
        g_of = np.searchsorted(lp.group_bounds, np.arange(n_src), side="right") - 1
        for g in range(lp.relay_core.shape[0]):
            chips = np.unique(assign.chip_of(k, lp.relay_core[g]))
            rows = np.flatnonzero(g_of == g)
            dest[np.ix_(rows, chips)] = True
    elif cl.kind == "dense":
        dest[:, np.unique(assign.chip_of(k, lp.core_of))] = True
    else:
        from hw_sim.conv import tap_table

        ptr, opix, _, _ = tap_table(cl)        # output pixels each input pixel reaches (every channel)
        c_in, h_in, w_in = cl.in_shape
        c_out, h_out, w_out = cl.out_shape
        for p in range(h_in * w_in):
            out_idx = opix[ptr[p]:ptr[p + 1]]
            cores = np.unique(lp.core_of[out_idx[:, None] + (np.arange(c_out) * h_out * w_out)[None, :]])
            chips = np.unique(assign.chip_of(k, cores))
            dest[np.ix_(np.arange(c_in) * h_in * w_in + p, chips)] = True
    return dest


def _source_chips(assign: ChipAssignment, k: int) -> np.ndarray:
    """(n_out,) chip of each neuron of population k (its summing core for a split layer)."""
    lp = assign.layers[k]
    return assign.chip_of(k, lp.core_of)


def _crossings(net, assign: ChipAssignment) -> list[np.ndarray]:
    """Per layer k: (n_src,) destination chips one spike of each source neuron reaches other than its own chip (the
    host's input: every destination chip)."""
    out = []
    for k in range(len(net.layers)):
        dest = _destinations(net, assign, k)
        if k == 0:
            out.append(dest.sum(axis=1))
        else:
            own = _source_chips(assign, k - 1)
            out.append(dest.sum(axis=1) - dest[np.arange(dest.shape[0]), own])
    return out


def _relay_crossing(assign: ChipAssignment, k: int) -> np.ndarray | None:
    """(groups, n_out) bool: relay (g, j) on another chip than neuron j's summing core."""
    lp = assign.layers[k]
    if lp.relay_core is None:
        return None
    return assign.chip_of(k, lp.relay_core) != assign.chip_of(k, lp.core_of)[None, :]


@dataclass(frozen=True)
class ChipTraffic:
    """Messages per sample (means over the samples): see the module docstring; ``per_layer``: the same split by
    the layer they enter; ``basis``: 'run' or 'estimate' with its rates."""

    inter_chip_spikes: float
    inter_chip_payloads: float
    host_in: float
    host_out: float
    per_layer: tuple[dict, ...]
    basis: str

    def to_dict(self) -> dict:
        return {"inter_chip_spikes_per_sample": self.inter_chip_spikes,
                "inter_chip_payloads_per_sample": self.inter_chip_payloads,
                "host_in_per_sample": self.host_in, "host_out_per_sample": self.host_out,
                "per_layer": list(self.per_layer), "basis": self.basis}


def _sum_traffic(net, layer_traffic: list[tuple[float, float]], host_out: float, basis: str) -> ChipTraffic:
    """ChipTraffic from per-layer (spike messages, relay payloads) per sample: the first layer's messages come from
    the host, the others' cross chips."""
    per_layer = tuple({"layer": cl.name, "spike_messages": msgs, "relay_payloads": pay,
                       "from": "host" if k == 0 else net.layers[k - 1].name}
                      for k, (cl, (msgs, pay)) in enumerate(zip(net.layers, layer_traffic)))
    return ChipTraffic(float(sum(m for m, _ in layer_traffic[1:])), float(sum(p for _, p in layer_traffic)),
                       layer_traffic[0][0], host_out, per_layer, basis)


def traffic_from_run(net, assign: ChipAssignment, spikes_in: np.ndarray, trains: list[np.ndarray]) -> ChipTraffic:
    """Exact chip-boundary traffic of a run: ``spikes_in`` (N, T, n_in) 0/1 and the trains of every population
    (hw_sim's, aligned to the float model). Relays' partial sums are recomputed from the layer's integer weights."""
    from hw_sim.conv import _effective32

    x = np.asarray(spikes_in)
    n, t = x.shape[:2]
    cross = _crossings(net, assign)
    layer_traffic = []                                     # (spike messages, relay payloads) per layer
    src = x
    for k, cl in enumerate(net.layers):
        counts = src.sum(axis=1, dtype=np.int64)            # (N, n_src) spikes per source neuron
        msgs = float((counts @ cross[k]).mean())
        pay = 0.0
        rc = _relay_crossing(assign, k)
        if rc is not None:
            w = _effective32(cl).astype(np.float64)         # (n_out, n_in) integers (exact in float64)
            b = assign.layers[k].group_bounds
            flat = src.reshape(n * t, -1).astype(np.float64)
            for g in range(len(b) - 1):
                nz = flat[:, b[g]:b[g + 1]] @ w[:, b[g]:b[g + 1]].T != 0       # (N T, n_out)
                pay += float((nz & rc[g][None, :]).sum()) / n
        layer_traffic.append((msgs, pay))
        src = np.asarray(trains[k])
    last = net.layers[-1]
    host_out = 0.0 if getattr(last, "population", "lif") == "readout" else float(src.sum(axis=(1, 2)).mean())
    return _sum_traffic(net, layer_traffic, host_out, f"run: hw_sim on {n} samples, T = {t}")


def traffic_estimate(net, assign: ChipAssignment, rates: list[float], steps: int) -> ChipTraffic:
    """Traffic from an activity estimate: ``rates`` = spikes per neuron and step of the input and of each
    population (len(layers) + 1 values), ``steps`` per sample. Relays: every neuron's partial sum of a group is
    counted as sent in each step where any of the group's inputs spiked (probability 1 - (1 - r)^inputs)."""
    if len(rates) != len(net.layers) + 1 or any(not 0 <= float(r) <= 1 for r in rates):
        raise DRCError(f"rates must give {len(net.layers) + 1} spike probabilities per neuron and step in [0, 1] (the "
                       f"input and each population), got {list(rates)}; fix: pass measured rates")
    cross = _crossings(net, assign)
    layer_traffic = []                                     # (spike messages, relay payloads) per layer
    for k, cl in enumerate(net.layers):
        r = float(rates[k])
        msgs = r * steps * float(cross[k].sum())
        pay = 0.0
        rc = _relay_crossing(assign, k)
        if rc is not None:
            b = assign.layers[k].group_bounds
            for g in range(len(b) - 1):
                p_any = 1.0 - (1.0 - r) ** int(b[g + 1] - b[g])
                pay += steps * p_any * float(rc[g].sum())
        layer_traffic.append((msgs, pay))
    host_out = float(rates[-1]) * steps * net.layers[-1].n_out
    return _sum_traffic(net, layer_traffic, host_out,
                        f"estimate: rates {', '.join(f'{float(r):.4g}' for r in rates)} spikes per neuron and step, "
                        f"T = {steps}")


def format_multichip(assign: ChipAssignment, traffic: ChipTraffic | None) -> str:
    """Plain-text summary: chips, cores per chip, the chips of every layer, traffic per sample."""
    lines = [f"multi-chip partition: {assign.chips} {assign.chip.name} chip(s) used of {assign.chips_available}, "
             f"cores per chip {list(assign.cores_per_chip)} (at most {assign.chip.cores_per_chip}; cores fill chips "
             "in layer order)"]
    for k, lp in enumerate(assign.layers):
        lines.append(f"  {lp.name}: {lp.cores} cores on chip(s) {assign.layer_chips(k)}")
    if traffic is not None:
        lines.append(f"per sample ({traffic.basis}): {traffic.inter_chip_spikes:.1f} inter-chip spike messages, "
                     f"{traffic.inter_chip_payloads:.1f} inter-chip graded relay payloads, {traffic.host_in:.1f} "
                     f"input messages from the host, {traffic.host_out:.1f} output spikes to the host")
    return "\n".join(lines)


def multichip_partition(net, chip: ChipSpec, chips: int | None = None, storage: str = "shared"
                        ) -> tuple[ResourceReport, list[ConvStorage], ChipAssignment]:
    """conv_partition of ``net`` (a CompiledConv or ShapeNet; a Dense fan-in beyond a core's axons placed as relay
    groups) on ``chips`` chips (None: as many as its cores need) and the chip of every core. DRCError naming the
    chips needed when ``chips`` is too few; other design-rule violations are listed in the report."""
    import dataclasses

    from hw_sim.conv_resources import conv_partition

    rep, stores = conv_partition(net, dataclasses.replace(chip, chips=1), strict=False, storage=storage,
                                 split_fan_in=True)
    need = chips_needed(rep.cores, chip)
    if chips is None or chips != 1:
        n = need if chips is None else max(int(chips), need)
        rep, stores = conv_partition(net, dataclasses.replace(chip, chips=n), strict=False, storage=storage,
                                     split_fan_in=True)
    return rep, stores, assign_chips(net, rep, stores, chips)
