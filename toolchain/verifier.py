"""Spike-time verifier: run ``exact`` and every target on the same inputs, compare layer by layer, apply gates.

For every layer and target against exact (details, bounds and default gates: docs/verifier.md):

* presence: (sample, neuron) pairs that spike in both / neither; spikes that *appear* (target only) or *vanish*
  (exact only), each classified as near-threshold (the exact model's peak potential within ``margin`` of theta),
  late (exact spike after the target's observation window), upstream (the previous layer of the same sample
  already differs in presence) or unexplained;
* |dt| = |t_target - t_exact| over spikes present in both: median, p99, max in time units and grid steps;
* the analytic bound per spike (grid + quantization, :mod:`toolchain.spike_bounds`) and the fraction within it;
* reconstruction MSE of the output layer against the images, and its relative change versus exact.

All times in model time units; a "step" is the compiled grid h = 1 / steps_per_unit (brian2: its own dt too).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from models.exact import exact_forward_trace
from models.network import TemporalNetwork
from targets.base import RunResult
from toolchain.compiled import CompiledNetwork
from toolchain.errors import DataError, SnncError, TargetError
from toolchain.spike_bounds import grazes, grid_bound, peak_potential

DEFAULT_MARGIN = 0.02  # relative: |peak V / theta - 1| <= margin is a near-threshold neuron
# targets that implement the integer semantics of docs/compiled-format.md: their columns must be bit-identical
BIT_EXACT_GROUP = ("lava-fixed", "hw_sim", "hil")


@dataclass(frozen=True)
class GateSpec:
    """Pass/fail thresholds for one target (None = not checked). Defaults per target: :data:`DEFAULT_GATES`.

    min_exact_spikes:    per layer, spikes of the exact model (0 = nothing to check: every other gate of the
                         layer would pass vacuously, so the layer fails with "nothing to check")
    min_presence:        per layer, fraction of (sample, neuron) pairs whose presence agrees with exact
    max_unexplained:     per layer, appear/vanish events that are neither near-threshold, late nor upstream
    max_median_dt:       per layer, median |dt| in model time units
    max_p99_dt:          per layer, 99th percentile |dt| in model time units
    max_median_steps:    per layer, median |dt| in steps of the compiled grid (not a default: punishes finer grids)
    max_p99_steps:       per layer, 99th percentile |dt| in steps of the compiled grid (idem)
    min_within_bound:    per layer, fraction of common spikes with |dt| <= the analytic bound
    max_abs_dt_target_dt: |dt| limit in units of the target's own dt (brian2) ...
    min_within_target_dt: ... that this fraction of common spikes must meet
    max_mse_rel:         signed: MSE_target / MSE_exact - 1 on the output layer must not exceed this (a target
                         that reconstructs *better* than exact never fails it)
    """

    min_exact_spikes: int | None = 1
    min_presence: float | None = None
    max_unexplained: int | None = None
    max_median_dt: float | None = None
    max_p99_dt: float | None = None
    max_median_steps: float | None = None
    max_p99_steps: float | None = None
    min_within_bound: float | None = None
    max_abs_dt_target_dt: float | None = None
    min_within_target_dt: float | None = None
    max_mse_rel: float | None = None


# Timing limits in time units, so that a finer grid is never punished (a decoded pixel is 1 - (t - latency): dt
# time units are dt of pixel intensity at any grid). Median: 1 step of the default grid S = 40; p99: a tenth of
# the 1-time-unit coding range. Measurements and the rejected alternatives: docs/verifier.md, section 3.
MAX_MEDIAN_DT = 0.025  # time units
MAX_P99_DT = 0.1  # time units
MAX_MSE_REL = 0.02  # every target: reconstruction at most 2 % worse than exact
_FIXED_GATES = GateSpec(min_presence=0.999, max_median_dt=MAX_MEDIAN_DT, max_p99_dt=MAX_P99_DT,
                        max_mse_rel=MAX_MSE_REL)
DEFAULT_GATES: dict[str, GateSpec] = {
    "exact": GateSpec(min_presence=1.0, max_unexplained=0, max_mse_rel=MAX_MSE_REL),
    "lava-float": GateSpec(max_unexplained=0, min_within_bound=0.999, max_mse_rel=MAX_MSE_REL),
    "lava-fixed": _FIXED_GATES,
    "hw_sim": _FIXED_GATES,
    "hil": _FIXED_GATES,
    "brian2": GateSpec(min_presence=0.999, max_abs_dt_target_dt=2.0, min_within_target_dt=0.999,
                       max_mse_rel=MAX_MSE_REL),
}


MAX_GRAZING_CHECKS = 2000  # spikes beyond the bound classified per layer (a broken target has ~all of them)


@dataclass
class LayerStats:
    """Comparison of one layer of one target with exact. Times in time units, steps of the compiled grid."""

    layer: int
    n_pairs: int
    spikes_exact: int
    spikes_target: int
    spikes_both: int
    appeared: int
    vanished: int
    near_threshold: int
    late: int
    upstream: int
    unexplained: int
    presence_agreement: float
    dt_median: float
    dt_p99: float
    dt_max: float
    dt_median_steps: float
    dt_p99_steps: float
    dt_max_steps: float
    dt_mean_signed: float
    bound_median: float
    bound_median_steps: float
    within_bound: float
    beyond_bound: int = 0
    beyond_bound_grazing: int = 0
    within_target_dt: float | None = None


@dataclass
class GateResult:
    """One gate: ``value`` against ``limit`` (the direction is in the name: min_/max_ of the GateSpec field);
    ``note`` says in words what a failure means (e.g. "nothing to check")."""

    name: str
    value: float
    limit: float
    passed: bool
    layer: int | None = None
    note: str = ""


@dataclass
class Remedy:
    """A compile option that addresses a failure signature the verifier recognised.

    flag:   the CLI flag, e.g. "--horizon-margin"; value: its argument (None for a switch)
    reason: the signature in words, with the numbers measured
    """

    flag: str
    value: float | None
    reason: str

    def command_line(self) -> str:
        return self.flag if self.value is None else f"{self.flag} {self.value:g}"


@dataclass
class TargetReport:
    target: str
    wall_s: float
    info: dict
    layers: list[LayerStats]
    mse: float | None
    mse_rel: float | None
    gates: list[GateResult] = field(default_factory=list)
    remedies: list[Remedy] = field(default_factory=list)
    energy: dict | None = None  # hw_sim.energy estimate from the target's activity counters (hw_sim, hil)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)


@dataclass
class VerifyReport:
    """Everything the verifier measured; ``to_dict()`` is what report.json holds."""

    n_samples: int
    steps_per_unit: float
    window: int
    margin: float
    exact_mse: float | None
    exact_wall_s: float
    targets: list[TargetReport]
    manifest: dict
    latency: float = 0.0  # time units (decoding outputs to pixels)
    context: dict = field(default_factory=dict)  # what was verified: dataset, split, noise, model file and hash
    versions: dict = field(default_factory=dict)  # snnc, lava-nc, brian2, numpy, python
    resources: dict | None = None  # hw_sim.resources partition of the compiled network (or {"drc": message})
    warnings: list[str] = field(default_factory=list)
    # arrays for plots and the spike file (not in report.json)
    exact_times: list[np.ndarray] = field(repr=False, default_factory=list)
    target_times: dict[str, list[np.ndarray]] = field(repr=False, default_factory=dict)
    images01: np.ndarray | None = field(repr=False, default=None)
    input_times: np.ndarray | None = field(repr=False, default=None)  # (N, n_in) network inputs, time units

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.targets)

    def failed_gates(self) -> list[str]:
        out = []
        for t in self.targets:
            for g in t.gates:
                if not g.passed:
                    where = f" layer {g.layer}" if g.layer is not None else ""
                    note = f": {g.note}" if g.note else ""
                    out.append(f"{t.target}{where}: {g.name} = {_fmt(g.value)} (limit {_fmt(g.limit)}){note}")
        return out

    def remedies(self) -> list[str]:
        """One line per suggested compile option: 'target: --flag N (reason)'."""
        return [f"{t.target}: try {r.command_line()} ({r.reason})" for t in self.targets for r in t.remedies]

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "n_samples": self.n_samples,
            "steps_per_unit": self.steps_per_unit,
            "step": 1.0 / self.steps_per_unit,
            "window": self.window,
            "near_threshold_margin": self.margin,
            "latency": self.latency,
            "context": _jsonable(self.context),
            "versions": _jsonable(self.versions),
            "exact": {"mse": self.exact_mse, "wall_s": self.exact_wall_s},
            "targets": [
                {
                    "target": t.target,
                    "passed": t.passed,
                    "wall_s": t.wall_s,
                    "s_per_sample": t.wall_s / max(self.n_samples, 1),
                    "info": _jsonable(t.info),
                    "mse": t.mse,
                    "mse_rel_vs_exact": t.mse_rel,
                    "layers": [asdict(s) for s in t.layers],
                    "gates": [_jsonable(asdict(g)) for g in t.gates],
                    "remedies": [dict(asdict(r), command_line=r.command_line()) for r in t.remedies],
                    "energy": _jsonable(t.energy),
                }
                for t in self.targets
            ],
            "failed_gates": self.failed_gates(),
            "remedies": self.remedies(),
            "warnings": list(self.warnings),
            "resources": _jsonable(self.resources),
            "manifest": _jsonable(self.manifest),
        }


def _fmt(x: float) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    return str(obj)


def summarize_info(info: dict) -> dict:
    """A backend's info dict with arrays (and lists of arrays, also in nested dicts) replaced by a short shape
    description, so per-sample counters do not bloat report.json."""
    out = {}
    for k, v in info.items():
        if isinstance(v, dict):
            out[k] = summarize_info(v)
        elif isinstance(v, np.ndarray):
            out[k] = f"array{tuple(v.shape)}"
        elif isinstance(v, (list, tuple)) and any(isinstance(e, np.ndarray) for e in v):
            out[k] = "[" + ", ".join(f"array{tuple(e.shape)}" if isinstance(e, np.ndarray) else str(e)
                                     for e in v) + "]"
        else:
            out[k] = v
    return out


def _quantile(x: np.ndarray, q: float) -> float:
    return float(np.quantile(x, q)) if x.size else 0.0


def _target_grid(name: str, result: RunResult, net: CompiledNetwork) -> tuple[float, float]:
    """(grid step g, spike-input lag) for the analytic bound of this target, time units."""
    h = net.dt
    if name == "exact":
        return 0.0, 0.0
    if name == "brian2":
        g = float(result.info.get("dt", h))
        lag_free = result.info.get("substep", False) or result.info.get("centre", True)
        return g, 0.0 if lag_free else 0.5 * g
    return h, 0.5 * h  # grid targets: the next layer sees the column after the crossing, reports the mid-step


def _quantized_source(name: str, net: CompiledNetwork) -> TemporalNetwork | None:
    """The float network a target realises once weights and decays are quantized (None: the source itself)."""
    if name in ("lava-fixed", "hw_sim", "hil") and net.layers:
        from toolchain.compiler import deployed_network

        return deployed_network(net)
    return None


def compare_layers(net: CompiledNetwork, exact_traces, peaks: list[np.ndarray], result: RunResult,
                   bounds: list[np.ndarray], margin: float, horizon: float,
                   target_dt_factor: float = 2.0) -> list[LayerStats]:
    """Per-layer :class:`LayerStats` of ``result`` against the exact traces (``within_target_dt``: fraction of
    common spikes with |dt| <= target_dt_factor x the target's own dt, for targets that report one)."""
    h = net.dt
    stats = []
    prev_mismatch = None
    target_dt = float(result.info["dt"]) if result.target == "brian2" and "dt" in result.info else None
    theta = net.source.theta
    for l, tr in enumerate(exact_traces):
        te = tr.t_out
        tt = np.asarray(result.times[l], dtype=np.float64)
        if tt.shape != te.shape:
            raise TargetError(f"target {result.target} returned layer {l} times of shape {tt.shape}, "
                              f"expected {te.shape}; the backend is broken, report it")
        pe, pt = np.isfinite(te), np.isfinite(tt)
        both = pe & pt
        mism = pe != pt
        rel = peaks[l] / theta
        near = mism & (np.abs(rel - 1.0) <= margin)
        late = mism & ~near & pe & (te > horizon)
        up = mism & ~near & ~late
        if prev_mismatch is not None:
            up &= prev_mismatch.any(axis=1, keepdims=True)
        else:
            up &= False
        unexplained = mism & ~near & ~late & ~up
        d = np.abs(tt[both] - te[both])
        signed = (tt[both] - te[both])
        bnd = bounds[l][both]
        ok = d <= bnd * (1 + 1e-9) + 1e-12
        within = float(np.mean(ok)) if d.size else 1.0
        # spikes beyond the bound where the exact potential grazes theta between the two times (explained)
        w_all = net.source.layers[l].all_weights()
        grazing = sum(grazes(tr, w_all, net.source.tau, theta, int(si), int(j), te[si, j], tt[si, j], margin)
                      for si, j in np.argwhere(both)[~ok][:MAX_GRAZING_CHECKS])
        bfin = bnd[np.isfinite(bnd)]
        s = LayerStats(
            layer=l,
            n_pairs=int(te.size),
            spikes_exact=int(pe.sum()),
            spikes_target=int(pt.sum()),
            spikes_both=int(both.sum()),
            appeared=int((pt & ~pe).sum()),
            vanished=int((pe & ~pt).sum()),
            near_threshold=int(near.sum()),
            late=int(late.sum()),
            upstream=int(up.sum()),
            unexplained=int(unexplained.sum()),
            presence_agreement=float(1.0 - mism.mean()) if te.size else 1.0,
            dt_median=_quantile(d, 0.5),
            dt_p99=_quantile(d, 0.99),
            dt_max=float(d.max()) if d.size else 0.0,
            dt_median_steps=_quantile(d, 0.5) / h,
            dt_p99_steps=_quantile(d, 0.99) / h,
            dt_max_steps=(float(d.max()) if d.size else 0.0) / h,
            dt_mean_signed=float(signed.mean()) if signed.size else 0.0,
            bound_median=_quantile(bfin, 0.5),
            bound_median_steps=_quantile(bfin, 0.5) / h,
            within_bound=within,
            beyond_bound=int((~ok).sum()),
            beyond_bound_grazing=int(grazing),
            within_target_dt=None,
        )
        if target_dt is not None:
            s.within_target_dt = float(np.mean(d <= target_dt_factor * target_dt)) if d.size else 1.0
        stats.append(s)
        prev_mismatch = mism
    return stats


def cross_check_columns(other: str, cols_other: list[np.ndarray], cols: list[np.ndarray]) -> list[GateResult]:
    """Per layer, the fraction of (sample, neuron) spike columns identical to those of ``other`` (limit 1.0):
    two implementations of the same integer semantics must agree bit for bit."""
    out = []
    for l, (a, b) in enumerate(zip(cols_other, cols)):
        a, b = np.asarray(a), np.asarray(b)
        frac = float(np.mean(a == b)) if a.shape == b.shape and a.size else float(a.shape == b.shape)
        out.append(GateResult(f"columns_identical_to_{other}", frac, 1.0, frac == 1.0, l))
    return out


def apply_gates(rep: TargetReport, spec: GateSpec, target_dt: float | None, step: float = 0.0) -> list[GateResult]:
    """Evaluate ``spec`` on one target's statistics (``step``: the compiled grid h, time units, for notes)."""
    out: list[GateResult] = []
    for s in rep.layers:
        if spec.min_exact_spikes is not None and s.spikes_exact < spec.min_exact_spikes:
            out.append(GateResult("exact_spikes", s.spikes_exact, spec.min_exact_spikes, False, s.layer,
                                  "nothing to check: the exact model has no spike in this layer, so every other "
                                  "gate of it passes vacuously; verify more samples (--limit) or a trained model"))
        if spec.min_presence is not None:
            out.append(GateResult("presence_agreement", s.presence_agreement, spec.min_presence,
                                  s.presence_agreement >= spec.min_presence, s.layer))
        if spec.max_unexplained is not None:
            out.append(GateResult("unexplained_presence_changes", s.unexplained, spec.max_unexplained,
                                  s.unexplained <= spec.max_unexplained, s.layer))
        for name, value, limit in (("median_dt", s.dt_median, spec.max_median_dt),
                                   ("p99_dt", s.dt_p99, spec.max_p99_dt)):
            if limit is not None:
                note = f"time units ({value / step:.3g} steps of {step:.4g})" if step > 0 else "time units"
                out.append(GateResult(name, value, limit, value <= limit, s.layer, note))
        if spec.max_median_steps is not None:
            out.append(GateResult("median_dt_steps", s.dt_median_steps, spec.max_median_steps,
                                  s.dt_median_steps <= spec.max_median_steps, s.layer))
        if spec.max_p99_steps is not None:
            out.append(GateResult("p99_dt_steps", s.dt_p99_steps, spec.max_p99_steps,
                                  s.dt_p99_steps <= spec.max_p99_steps, s.layer))
        if spec.min_within_bound is not None:
            out.append(GateResult("fraction_within_bound", s.within_bound, spec.min_within_bound,
                                  s.within_bound >= spec.min_within_bound, s.layer))
        if spec.max_abs_dt_target_dt is not None and spec.min_within_target_dt is not None and target_dt:
            frac = s.within_target_dt if s.within_target_dt is not None else 0.0
            out.append(GateResult(f"fraction_within_{spec.max_abs_dt_target_dt:g}_dt", frac,
                                  spec.min_within_target_dt, frac >= spec.min_within_target_dt, s.layer))
    if spec.max_mse_rel is not None and rep.mse_rel is not None:
        # signed: only a reconstruction *worse* than exact fails (better is reported, never punished)
        word = "worse" if rep.mse_rel > 0 else "better"
        out.append(GateResult("mse_rel_vs_exact", rep.mse_rel, spec.max_mse_rel, rep.mse_rel <= spec.max_mse_rel,
                              None, f"MSE {100 * abs(rep.mse_rel):.2f} % {word} than exact; at most "
                                    f"{100 * spec.max_mse_rel:.2f} % worse passes"))
    return out


def make_target(name: str, **options):
    """``targets.registry.get_target`` with a missing backend module reported as a TargetError."""
    from targets.registry import get_target

    try:
        return get_target(name, **options)
    except ImportError as exc:
        raise TargetError(f"target {name!r} is not available in this installation ({exc}); install its backend "
                          f"or choose another target") from None
    except TypeError as exc:
        raise TargetError(f"bad option for target {name!r}: {exc}; see the target's docstring") from None


def _check_inputs(net: CompiledNetwork, input_times: np.ndarray, images01: np.ndarray | None):
    x = np.asarray(input_times, dtype=np.float64)
    n_in = net.source.layers[0].n_in
    if x.ndim != 2 or x.shape[1] != n_in:
        raise DataError(f"input times have shape {x.shape} but the model expects (N, {n_in}); "
                        f"use a dataset whose samples have {n_in} inputs")
    if x.shape[0] == 0:
        raise DataError("no samples to verify; pass at least one (e.g. --limit 10)")
    if np.any(np.isnan(x)) or np.any(x == -np.inf) or np.any(x[np.isfinite(x)] < 0):
        raise DataError("input times contain NaN, -inf or negative values; use times >= 0 and inf for no spike")
    imgs = None
    if images01 is not None:
        imgs = np.asarray(images01, dtype=np.float64)
        if imgs.shape[0] != x.shape[0]:
            raise DataError(f"{imgs.shape[0]} images for {x.shape[0]} input samples; pass one image per sample")
    return x, imgs


def tool_versions() -> dict:
    """Versions of the software a report depends on: snnc, lava-nc, brian2, numpy, python (None: not installed)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("snnc", "lava-nc", "brian2", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    out["python"] = platform.python_version()
    return out


def resources_of(compiled: CompiledNetwork) -> dict | None:
    """``hw_sim.resources.partition(compiled).to_dict()``; {"drc": message} when the network does not fit the
    default chip; None when hw_sim is not installed."""
    try:
        from hw_sim.resources import partition
    except ImportError:
        return None
    from toolchain.errors import DRCError

    try:
        return partition(compiled).to_dict()
    except DRCError as exc:
        return {"drc": f"the network does not fit the default chip: {exc}"}


def energy_of(compiled: CompiledNetwork, counters: dict | None) -> dict | None:
    """hw_sim.energy estimate (NeuroBench metrics, nJ and us per sample) from a target's activity counters
    (hw_sim's ``info["counters"]``, hil's ``last_counters``); None without counters."""
    if not counters:
        return None
    try:
        from hw_sim.energy import counters_from_dict, estimate
    except ImportError:
        return None
    try:
        return estimate(compiled, counters_from_dict(counters)).to_dict()
    except SnncError as exc:
        return {"error": str(exc)}


def _last_spike(times: list[np.ndarray]) -> float:
    return max((float(t[np.isfinite(t)].max()) for t in times if np.isfinite(t).any()), default=0.0)


def horizon_remedy(compiled: CompiledNetwork, exact_times: list[np.ndarray], layers: list[LayerStats],
                   horizon: float) -> Remedy | None:
    """``--horizon-margin N`` when exact spikes fall after the target's window ('late' presence changes).

    N (time units, rounded up to 0.1) makes the compiler's window (``toolchain.compiler.default_window``:
    ceil((base + N) S) + 1 steps, base = max(latency + 1, last pulse, 1)) reach one step past the latest exact
    spike of these samples, so that the verifier's horizon (W - 2) h covers it."""
    late = [s for s in layers if s.late]
    if not late:
        return None
    t_last = _last_spike(exact_times)
    src = compiled.source
    S = float(compiled.steps_per_unit)
    last_pulse = max((float(layer.pulse_times.max()) for layer in src.layers if layer.n_pulses), default=0.0)
    base = max(src.latency + 1.0, last_pulse, 1.0)
    margin = max(math.ceil(round((t_last + 2.0 / S - base) * 10.0, 6)) / 10.0, 0.1)
    where = ", ".join(f"layer {s.layer}: {s.late}" for s in late)
    return Remedy("--horizon-margin", margin,
                  f"{sum(s.late for s in late)} exact spikes fall after the window ({where}); the window sees "
                  f"spikes up to {horizon:.3g} time units, the latest exact spike is at {t_last:.3g}")


def compensate_tau_remedy(compiled: CompiledNetwork, out_stats: LayerStats,
                          predicted_p99: tuple[float, float] | None = None) -> Remedy | None:
    """``--compensate-tau`` when the output layer is systematically late (or early) in the direction of the
    12-bit decay's tau error: |mean signed dt| >= 0.5 step with the sign of tau_eff / tau - 1 (a faster decay,
    tau_eff > tau, lowers the potential and crosses later), for an uncompensated compile with |tau error| >= 0.5 %.

    predicted_p99: output-layer p99 |t - t_exact| (time units) of the exact model run on the deployed network
    with tau_eff and with tau restored (what --compensate-tau realises), quoted in the reason."""
    m = compiled.manifest
    tau_err = float(m.get("tau_rel_error") or 0.0)
    if m.get("compensate_tau") or abs(tau_err) < 0.005 or not out_stats.spikes_both:
        return None
    bias = out_stats.dt_mean_signed * compiled.steps_per_unit  # steps
    if abs(bias) < 0.5 or np.sign(bias) != np.sign(tau_err):
        return None
    side = "late" if bias > 0 else "early"
    why = "faster" if tau_err > 0 else "slower"
    pred = ""
    if predicted_p99 is not None:
        pred = (f"; the exact model of the quantized network has an output p99 |dt| of {predicted_p99[0]:.3g} "
                f"time units with this decay and {predicted_p99[1]:.3g} with tau restored")
    return Remedy("--compensate-tau", None,
                  f"output spikes are {abs(bias):.2g} steps {side} on average (mean signed dt), as the 12-bit "
                  f"decay's tau error {100 * tau_err:+.2f} % predicts (a {why} decay){pred}")


def _p99_vs(a: np.ndarray, b: np.ndarray) -> float:
    both = np.isfinite(a) & np.isfinite(b)
    return _quantile(np.abs(a[both] - b[both]), 0.99)


def verify(compiled: CompiledNetwork, input_times: np.ndarray, images01: np.ndarray | None,
           targets: list[str], *, margin: float = DEFAULT_MARGIN, gates: dict[str, GateSpec] | None = None,
           target_options: dict[str, dict] | None = None, results: dict[str, RunResult] | None = None,
           context: dict | None = None, progress: Callable[[str], None] | None = None) -> VerifyReport:
    """Run exact and every target on ``input_times`` (N, n_in), time units, and compare (see module doc).

    images01:       (N, n_out) images in [0, 1] for the reconstruction MSE, or None (no MSE, no MSE gate)
    targets:        registry names, e.g. ["lava-fixed", "brian2"]
    margin:         relative near-threshold margin on the exact peak potential / theta
    gates:          per-target GateSpec overriding :data:`DEFAULT_GATES` (unknown targets: lava-fixed gates)
    target_options: per-target keyword options for ``get_target`` (e.g. {"brian2": {"codegen": "numpy"}})
    results:        precomputed RunResults by target name (skips running those targets)
    context:        what is verified, copied into the report (dataset, split, noise, model file, sha256, ...)
    progress:       called with one line before and after each stage (exact, every target), e.g. print to stderr
    """
    import time

    from models.encoding import reconstruction_mse

    say = progress or (lambda _msg: None)
    if not (0.0 <= float(margin) < 1.0):
        raise SnncError(f"near-threshold margin {margin} must lie in [0, 1) (relative to theta); default 0.02")
    if not targets:
        raise TargetError("no target to verify; pass e.g. targets=['lava-fixed', 'brian2']")
    x, imgs = _check_inputs(compiled, input_times, images01)
    src = compiled.source
    if imgs is not None and imgs.shape[1] != src.layers[-1].n_out:
        imgs = None  # not an autoencoder of these images: no reconstruction MSE
    gates = {**DEFAULT_GATES, **(gates or {})}
    target_options = target_options or {}
    results = dict(results or {})
    # instantiate every target first: bad names/options fail before anything runs
    backends = {n: make_target(n, **target_options.get(n, {})) for n in targets if n not in results}
    n = int(x.shape[0])

    say(f"exact reference: {n} samples ...")
    t0 = time.perf_counter()
    traces = exact_forward_trace(src, x)
    exact_wall = time.perf_counter() - t0
    exact_times = [tr.t_out for tr in traces]
    peaks = [peak_potential(tr, layer.all_weights(), src.tau) for tr, layer in zip(traces, src.layers)]
    exact_mse = reconstruction_mse(exact_times[-1], imgs, src.latency) if imgs is not None else None
    say(f"exact reference: done in {exact_wall:.1f} s")
    # exact spikes after this time cannot be seen by a windowed target
    # (the last update of a window never reports a spike, docs/compiled-format.md; one step of slack for the grid)
    horizon = (compiled.window - 2) / compiled.steps_per_unit
    warnings = [f"layer {l}: the exact model has no spike in {n} samples: nothing to check there (every target "
                f"fails its exact_spikes gate)" for l, t in enumerate(exact_times) if not np.isfinite(t).any()]

    reports = []
    quantized_traces = None
    predicted = None  # output p99 of the deployed network with tau_eff / with tau restored
    all_times = {}
    all_columns: dict[str, list[np.ndarray]] = {}
    w_all = [layer.all_weights() for layer in src.layers]
    for k, name in enumerate(targets):
        res = results.get(name)
        if res is None:
            say(f"[{k + 1}/{len(targets)}] {name}: running {n} samples ...")
            res = backends[name].run(compiled, x)
        g, lag = _target_grid(name, res, compiled)
        qnet = _quantized_source(name, compiled)
        bounds = grid_bound(traces, w_all, src.tau, g, lag) if g > 0 else [np.zeros_like(t) for t in exact_times]
        if qnet is not None:  # + exact effect of quantization (weights, tau_eff) on each spike
            if quantized_traces is None:  # the same deployed network for every fixed-point target
                quantized_traces = exact_forward_trace(qnet, x)
            qt = quantized_traces
            with np.errstate(invalid="ignore"):
                bounds = [b + np.where(np.isfinite(q.t_out) & np.isfinite(t), np.abs(q.t_out - t), np.inf)
                          for b, q, t in zip(bounds, qt, exact_times)]
        spec = gates.get(name, _FIXED_GATES)
        layers = compare_layers(compiled, traces, peaks, res, bounds, margin, horizon,
                                spec.max_abs_dt_target_dt or 2.0)
        mse = reconstruction_mse(res.times[-1], imgs, src.latency) if imgs is not None else None
        mse_rel = None
        if mse is not None and exact_mse is not None and exact_mse > 0:
            mse_rel = mse / exact_mse - 1.0
        counters = res.info.get("counters") if isinstance(res.info.get("counters"), dict) else \
            getattr(backends.get(name), "last_counters", None)
        rep = TargetReport(name, res.wall_s, summarize_info(res.info), layers, mse, mse_rel,
                           energy=energy_of(compiled, counters))
        target_dt = float(res.info["dt"]) if name == "brian2" and "dt" in res.info else None
        rep.gates = apply_gates(rep, spec, target_dt, compiled.dt)
        if name in BIT_EXACT_GROUP and res.columns is not None:
            for other, cols in all_columns.items():
                rep.gates += cross_check_columns(other, cols, res.columns)
            all_columns[name] = res.columns
        if not rep.passed:
            remedy = horizon_remedy(compiled, exact_times, layers, horizon)
            if remedy is not None:
                rep.remedies.append(remedy)
            if qnet is not None and compensate_tau_remedy(compiled, layers[-1]) is not None:
                if predicted is None:
                    comp = exact_forward_trace(replace(qnet, tau=src.tau), x)[-1].t_out
                    predicted = (_p99_vs(quantized_traces[-1].t_out, exact_times[-1]), _p99_vs(comp, exact_times[-1]))
                rep.remedies.append(compensate_tau_remedy(compiled, layers[-1], predicted))
        reports.append(rep)
        all_times[name] = [np.asarray(t, dtype=np.float64) for t in res.times]
        say(f"[{k + 1}/{len(targets)}] {name}: {'PASS' if rep.passed else 'FAIL'} ({res.wall_s:.1f} s)")

    return VerifyReport(
        n_samples=n,
        steps_per_unit=float(compiled.steps_per_unit),
        window=int(compiled.window),
        margin=float(margin),
        exact_mse=exact_mse,
        exact_wall_s=exact_wall,
        targets=reports,
        manifest=dict(compiled.manifest),
        latency=float(src.latency),
        context=dict(context or {}),
        versions=tool_versions(),
        resources=resources_of(compiled),
        warnings=warnings,
        exact_times=exact_times,
        target_times=all_times,
        images01=imgs,
        input_times=x,
    )
