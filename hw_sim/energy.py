"""NeuroBench-named metrics and a Loihi energy/latency estimate from per-sample hardware activity counters.

Metric names follow NeuroBench (Yik et al., 'The neurobench framework for benchmarking neuromorphic computing
algorithms and systems', Nature Communications 2025): ``footprint`` (bytes), ``connection_sparsity``,
``activation_sparsity``, ``synaptic_operations`` (``Dense``, ``Effective_MACs``, ``Effective_ACs``).

The energy/latency estimate multiplies activity counts by per-operation figures of Loihi 1 (Davies et al.,
IEEE Micro 38(1) 2018, Table 2; pre-silicon simulation, 14 nm, 0.75 V). Loihi 2 publishes no such table; the
estimate is an order-of-magnitude figure, never a measurement. Sources and caveats travel with every estimate
(:class:`EnergyReport`) and are printed beside the table (:func:`format_energy_table`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hw_sim.resources import LOIHI2, ChipSpec, ResourceReport, partition, partition_model
from models.network import TemporalNetwork
from toolchain.compiled import CompiledNetwork
from toolchain.errors import SnncError

# Per-layer constants stored beside the weights: du, dv (12 bits each), weight_exp (8 bits assumed).
LAYER_CONSTANT_BITS = 12 + 12 + 8
# Per-neuron constants: the 17-bit threshold mantissa (CompiledLayer.vth holds one per neuron).
NEURON_CONSTANT_BITS = 17


@dataclass(frozen=True)
class OpCosts:
    """Energy (pJ) and time (ns) per hardware operation, with their source."""

    synop_pj: float = 23.6            # energy per synaptic spike op (min)
    synop_ns: float = 3.5             # time per synaptic spike op (max)
    neuron_active_pj: float = 81.0    # energy per neuron update, active
    neuron_inactive_pj: float = 52.0  # energy per neuron update, inactive
    neuron_active_ns: float = 8.4     # time per neuron update, active
    neuron_inactive_ns: float = 5.3   # time per neuron update, inactive
    spike_tile_pj: float = 1.7        # energy of a spike within a tile
    barrier_ns: float = 113.0         # mesh-wide barrier sync per time step (1 tile; 465 ns for 32 tiles)
    source: str = ("Davies et al., 'Loihi: a neuromorphic manycore processor with on-chip learning', IEEE Micro "
                   "38(1):82-99, 2018, Table 2 (Loihi 1, pre-silicon simulation at 0.75 V)")


LOIHI1_COSTS = OpCosts()

CAVEATS = (
    "Per-operation figures are Loihi 1 pre-silicon numbers (Davies et al. 2018, Table 2), transcribed and not "
    "re-checked against the PDF here; Loihi 2 publishes no per-operation energy table.",
    "Static/leakage power, host I/O, input spike injection and inter-tile routing (3-4 pJ, 4-6.5 ns per hop) "
    "are not counted; spikes are charged at the within-tile cost.",
    "Neuron updates count every neuron every time step; when the counters give no active/inactive split, all "
    "updates are charged as active (upper bound).",
    "Latency assumes the cores of a layer share its work evenly and that layers do not overlap in time "
    "(per-step barrier + serial synaptic ops and neuron updates per core): an estimate, not a measurement.",
)


@dataclass(frozen=True)
class ActivityCounters:
    """Per-sample hardware activity; rows = samples, columns = layers.

    synaptic_ops:          (N, L) effective synaptic ops into layer l (arriving spikes x nonzero weights,
                           inputs and pulses)
    neuron_updates:        (N, L) neuron state updates (neurons x time steps)
    spikes:                (N, L) spikes emitted by layer l
    steps:                 (N,)   time steps run per sample
    active_neuron_updates: (N, L) updates of active neurons, or None when not counted
    """

    synaptic_ops: np.ndarray
    neuron_updates: np.ndarray
    spikes: np.ndarray
    steps: np.ndarray
    active_neuron_updates: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("synaptic_ops", "neuron_updates", "spikes"):
            a = np.asarray(getattr(self, name), dtype=np.int64)
            if a.ndim != 2:
                raise SnncError(f"counter {name} must be (samples, layers), got shape {a.shape}; pass one row "
                                f"per sample")
            object.__setattr__(self, name, a)
        shapes = {getattr(self, n).shape for n in ("synaptic_ops", "neuron_updates", "spikes")}
        steps = np.asarray(self.steps, dtype=np.int64).reshape(-1)
        object.__setattr__(self, "steps", steps)
        if len(shapes) != 1 or steps.shape[0] != self.spikes.shape[0]:
            raise SnncError(f"activity counters disagree in shape ({sorted(shapes)}, steps {steps.shape}); "
                            f"give every counter the same (samples, layers) shape")
        if self.active_neuron_updates is not None:
            a = np.asarray(self.active_neuron_updates, dtype=np.int64)
            if a.shape != self.spikes.shape:
                raise SnncError(f"active_neuron_updates has shape {a.shape}, expected {self.spikes.shape}")
            object.__setattr__(self, "active_neuron_updates", a)

    @property
    def samples(self) -> int:
        return self.spikes.shape[0]


def counters_from_dict(counters: dict[str, np.ndarray]) -> ActivityCounters:
    """ActivityCounters from hw_sim's named counters (``SimResult.counters()``, or the ``counter_*`` arrays a
    hil device returns): synaptic ops = ``synops_nonzero`` (non-zero synapses reached by an event)."""
    missing = [k for k in ("synops_nonzero", "neuron_updates", "spikes", "steps") if k not in counters]
    if missing:
        raise SnncError(f"counters lack {', '.join(missing)}; pass hw_sim counters (SimResult.counters())")
    return ActivityCounters(counters["synops_nonzero"], counters["neuron_updates"], counters["spikes"],
                            counters["steps"], counters.get("active_neuron_updates"))


def counters_from_spikes(net: CompiledNetwork, input_columns: np.ndarray,
                         layer_columns: list[np.ndarray]) -> ActivityCounters:
    """Activity implied by reported spike columns: one event per spike (neurons spike at most once per window).

    input_columns: (N, n_in) int64 source columns, -1 = no spike; layer_columns: [(N, n_l)] reported columns.
    Every pulse fires once per sample window; every neuron is updated every step of the window.
    """
    x = np.asarray(input_columns)
    if x.ndim != 2 or x.shape[1] != net.layers[0].n_in:
        raise SnncError(f"input_columns has shape {x.shape}, expected (samples, {net.layers[0].n_in})")
    if len(layer_columns) != len(net.layers):
        raise SnncError(f"got spike columns for {len(layer_columns)} layers, the network has {len(net.layers)}")
    n = x.shape[0]
    syn = np.zeros((n, len(net.layers)), np.int64)
    spk = np.zeros_like(syn)
    upd = np.zeros_like(syn)
    source = x >= 0
    for i, layer in enumerate(net.layers):
        fan = (layer.weights != 0).sum(axis=0)                      # nonzero fan-out of each input
        in_window = np.asarray(layer.pulse_steps) < net.window      # pulses that fire within the window
        pulse_fan = int((layer.pulse_weights[:, in_window] != 0).sum())
        syn[:, i] = source.astype(np.int64) @ fan + pulse_fan
        cols = np.asarray(layer_columns[i])
        spk[:, i] = (cols >= 0).sum(axis=1)
        upd[:, i] = layer.n_out * net.window
        source = cols >= 0
    return ActivityCounters(syn, upd, spk, np.full(n, net.window, np.int64))


@dataclass(frozen=True)
class EnergyReport:
    """Per-sample metrics and estimates (means over samples in ``metrics``), with sources and caveats.

    energy_pj:  (N,) estimated energy per sample, pJ
    latency_ns: (N,) estimated time per sample, ns
    breakdown_pj: component -> mean pJ per sample (synaptic, neuron, spike)
    """

    metrics: dict
    energy_pj: np.ndarray
    latency_ns: np.ndarray
    breakdown_pj: dict
    sources: tuple[str, ...]
    caveats: tuple[str, ...]
    resources: ResourceReport | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """JSON-able: metrics, energy/latency summaries, sources and caveats."""
        return {
            "metrics": self.metrics,
            "energy_per_sample_nJ": {"mean": float(self.energy_pj.mean() / 1e3),
                                     "min": float(self.energy_pj.min() / 1e3),
                                     "max": float(self.energy_pj.max() / 1e3)},
            "latency_per_sample_us": {"mean": float(self.latency_ns.mean() / 1e3),
                                      "max": float(self.latency_ns.max() / 1e3)},
            "breakdown_pJ": self.breakdown_pj,
            "sources": list(self.sources),
            "caveats": list(self.caveats),
        }


def static_metrics(net: CompiledNetwork) -> dict:
    """NeuroBench static metrics: footprint (bytes) and connection sparsity (zero weights / all weights).

    footprint: every synapse at the compiled weight bits + the per-layer constants (``LAYER_CONSTANT_BITS``) +
    one 17-bit threshold per neuron (``NEURON_CONSTANT_BITS``)."""
    bits = 0
    total = nonzero = 0
    for layer in net.layers:
        w = np.hstack([layer.weights, layer.pulse_weights])
        bits += w.size * int(layer.num_weight_bits) + LAYER_CONSTANT_BITS + layer.n_out * NEURON_CONSTANT_BITS
        total += w.size
        nonzero += int((w != 0).sum())
    return {"footprint": bits / 8.0, "connection_sparsity": 1.0 - nonzero / total if total else 0.0}


def estimate(net: CompiledNetwork, counters: ActivityCounters, chip: ChipSpec = LOIHI2,
             costs: OpCosts = LOIHI1_COSTS, strict: bool = True) -> EnergyReport:
    """NeuroBench metrics + energy (pJ) and latency (ns) per sample from activity counters.
    strict=False: a network that breaks a chip design rule is still estimated (violations in ``resources``)."""
    _check_counters(counters, len(net.layers))
    return _estimate(partition(net, chip, strict=strict), static_metrics(net), counters, chip, costs)


def _check_counters(counters: ActivityCounters, n_layers: int) -> None:
    if counters.spikes.shape[1] != n_layers:
        raise SnncError(f"counters cover {counters.spikes.shape[1]} layers, the network has {n_layers}; "
                        f"pass counters from a run of this network")
    if counters.samples == 0:
        raise SnncError("no samples in the activity counters; run at least one sample")


def _estimate(res: ResourceReport, static: dict, counters: ActivityCounters, chip: ChipSpec,
              costs: OpCosts) -> EnergyReport:
    sizes = np.array([r.neurons for r in res.layers], np.int64)
    fan_in = np.array([r.fan_in for r in res.layers], np.int64)
    cores = np.array([r.cores for r in res.layers], np.float64)
    steps = counters.steps.astype(np.float64)

    syn = counters.synaptic_ops.astype(np.float64)
    upd = counters.neuron_updates.astype(np.float64)
    active = upd if counters.active_neuron_updates is None else counters.active_neuron_updates.astype(np.float64)
    inactive = upd - active
    e_syn = syn.sum(1) * costs.synop_pj
    e_neu = active.sum(1) * costs.neuron_active_pj + inactive.sum(1) * costs.neuron_inactive_pj
    e_spk = counters.spikes.sum(1) * costs.spike_tile_pj
    energy = e_syn + e_neu + e_spk
    per_core_ns = (syn * costs.synop_ns + active * costs.neuron_active_ns
                   + inactive * costs.neuron_inactive_ns) / cores
    latency = steps * costs.barrier_ns + per_core_ns.sum(1)

    dense = float((fan_in * sizes).sum()) * steps
    neuron_steps = float(sizes.sum()) * steps
    metrics = dict(static)
    metrics.update({
        "activation_sparsity": float(np.mean(1.0 - counters.spikes.sum(1) / neuron_steps)),
        "synaptic_operations": {"Dense": float(dense.mean()), "Effective_MACs": 0.0,
                                "Effective_ACs": float(syn.sum(1).mean())},
        "samples": counters.samples,
        "time_steps_per_sample": float(steps.mean()),
        "spikes_per_sample": [float(v) for v in counters.spikes.mean(0)],
    })
    breakdown = {"synaptic": float(e_syn.mean()), "neuron": float(e_neu.mean()), "spike": float(e_spk.mean())}
    sources = (costs.source, f"chip limits: {chip.sources}",
               "metric names: NeuroBench (Yik et al., Nature Communications 2025)")
    return EnergyReport(metrics, energy, latency, breakdown, sources, CAVEATS, res)


def model_static_metrics(net: TemporalNetwork, weight_bits: int = 8, pulse_copies: int = 1) -> dict:
    """:func:`static_metrics` of an uncompiled model at ``weight_bits`` (non-zero = non-zero float weight)."""
    bits = 0
    total = nonzero = 0
    for layer in net.layers:
        n = layer.n_out * (layer.n_in + layer.n_pulses * pulse_copies)
        bits += n * int(weight_bits) + LAYER_CONSTANT_BITS + layer.n_out * NEURON_CONSTANT_BITS
        total += n
        nonzero += int(np.count_nonzero(layer.weights)) + pulse_copies * int(np.count_nonzero(layer.pulse_weights))
    return {"footprint": bits / 8.0, "connection_sparsity": 1.0 - nonzero / total if total else 0.0}


def model_activity(net: TemporalNetwork, input_times: np.ndarray, window: int,
                   steps_per_unit: float | None = None) -> ActivityCounters:
    """Activity per sample implied by the exact (float) model on ``input_times`` (N, n_in), time units, inf = none:
    each input or spike reaches its non-zero synapses once, every pulse once per window, every neuron is updated
    every one of ``window`` steps (no active/inactive split: an upper bound). With ``steps_per_unit`` S, spikes
    after the window's last reported column ((window - 1) / S time units) are dropped, as the chip would not see
    them; without it every spike counts."""
    from models.exact import exact_forward

    x = np.asarray(input_times, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != net.layers[0].n_in or x.shape[0] < 1:
        raise SnncError(f"input_times must have shape (N >= 1, {net.layers[0].n_in}), got {x.shape}; pass input "
                        "spike times (models.encoding.latency_encode)")
    outs = exact_forward(net, x)
    n, L = x.shape[0], len(net.layers)
    syn = np.zeros((n, L), np.int64)
    spk = np.zeros((n, L), np.int64)
    upd = np.zeros((n, L), np.int64)
    source = np.isfinite(x)
    for i, layer in enumerate(net.layers):
        fan = np.count_nonzero(layer.weights, axis=0)
        syn[:, i] = source.astype(np.int64) @ fan + int(np.count_nonzero(layer.pulse_weights))
        t = np.asarray(outs[i])
        fired = np.isfinite(t) if steps_per_unit is None else t <= (int(window) - 1) / float(steps_per_unit)
        spk[:, i] = fired.sum(axis=1)
        upd[:, i] = layer.n_out * int(window)
        source = fired
    return ActivityCounters(syn, upd, spk, np.full(n, int(window), np.int64))


def estimate_model(net: TemporalNetwork, input_times: np.ndarray, window: int, chip: ChipSpec = LOIHI2,
                   costs: OpCosts = LOIHI1_COSTS, weight_bits: int = 8, pulse_copies: int = 1,
                   steps_per_unit: float | None = None) -> EnergyReport:
    """Energy/latency and NeuroBench metrics of an *uncompiled* model (any size, also one the compiler rejects):
    the partition of :func:`hw_sim.resources.partition_model` and the activity of :func:`model_activity`.
    window: time steps per sample (``toolchain.compiler.default_window``); steps_per_unit: see
    :func:`model_activity`. Violated design rules are recorded in
    ``report.resources.violations``, not raised."""
    counters = model_activity(net, input_times, window, steps_per_unit)
    res = partition_model(net, chip, weight_bits, pulse_copies, strict=False)
    rep = _estimate(res, model_static_metrics(net, weight_bits, pulse_copies), counters, chip, costs)
    return EnergyReport(rep.metrics, rep.energy_pj, rep.latency_ns, rep.breakdown_pj,
                        rep.sources + ("activity: exact float model, every neuron updated every step",),
                        rep.caveats, rep.resources)


def compiled_summary(net: CompiledNetwork, counters: ActivityCounters | dict | None = None,
                     chip: ChipSpec = LOIHI2, costs: OpCosts = LOIHI1_COSTS) -> dict:
    """JSON-able resources (+ energy when ``counters`` are given: ActivityCounters or hw_sim's counter dict) of a
    compiled network, for reports; never raises on a design-rule violation (``resources.violations``)."""
    res = partition(net, chip, strict=False)
    out = {"resources": res.to_dict()}
    if counters is not None:
        c = counters if isinstance(counters, ActivityCounters) else counters_from_dict(counters)
        out["energy"] = estimate(net, c, chip, costs, strict=False).to_dict()
    return out


def format_energy_table(report: EnergyReport) -> str:
    """Plain-text metrics/energy table followed by the sources and caveats."""
    m = report.metrics
    so = m["synaptic_operations"]
    rows = [
        ("footprint", f"{m['footprint']:.0f}", "bytes (weights at compiled bits + layer constants + per-neuron vth)"),
        ("connection_sparsity", f"{m['connection_sparsity']:.4f}", "zero weights / all weights"),
        ("activation_sparsity", f"{m['activation_sparsity']:.6f}", "1 - spikes / (neurons x steps), mean"),
        ("synaptic_operations Dense", f"{so['Dense']:.4g}", "per sample, every synapse every step"),
        ("synaptic_operations Effective_ACs", f"{so['Effective_ACs']:.4g}", "per sample, spikes x nonzero weights"),
        ("synaptic_operations Effective_MACs", f"{so['Effective_MACs']:.4g}", "per sample (none: spiking)"),
        ("time steps", f"{m['time_steps_per_sample']:.0f}", "per sample"),
        ("energy (estimate)", f"{report.energy_pj.mean() / 1e3:.4g}", "nJ per sample, mean"),
        ("  synaptic ops", f"{report.breakdown_pj['synaptic'] / 1e3:.4g}", "nJ"),
        ("  neuron updates", f"{report.breakdown_pj['neuron'] / 1e3:.4g}", "nJ"),
        ("  spikes", f"{report.breakdown_pj['spike'] / 1e3:.4g}", "nJ"),
        ("latency (estimate)", f"{report.latency_ns.mean() / 1e3:.4g}", "us per sample, mean"),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{'metric'.ljust(w0)}  {'value'.rjust(w1)}  unit", "-" * (w0 + w1 + 30)]
    lines += [f"{a.ljust(w0)}  {b.rjust(w1)}  {c}" for a, b, c in rows]
    lines.append(f"samples: {m['samples']}")
    lines.append("sources:")
    lines += [f"  - {s}" for s in report.sources]
    lines.append("caveats:")
    lines += [f"  - {c}" for c in report.caveats]
    return "\n".join(lines)
