"""Verifier for steps (LIF) models: every target's spike trains against the float64 model, with gates.

Per target and population (graph order) it measures, against ``float`` (toolchain/lif_reference.simulate through
the target interface):

- spike-count agreement: the fraction of (sample, neuron) pairs whose spike counts are equal, and the mean
  |count difference|;
- spikes matched within +-k steps for k = 0, 1 and the requested tolerance (optimal matching per sample and
  neuron; precision = matched / target spikes, recall = matched / reference spikes, F1);
- at k = 0, a classification of every train (sample, neuron) that differs, at its first differing step t0:
  ``propagated`` when the population's input already differed at a step <= t0 in that sample (the upstream
  population's first difference), else ``near_threshold`` when the float model's potential there, before the
  clamp, lies within ``margin`` (relative) of v_th — a rounding-level flip of the spike test, documented rather
  than failed — else ``unexplained``;
- with images, the rate family's reconstruction metrics of the output population's spike-count map (z-scored per
  image, sample std): ``mse_image`` against the image and ``spike_mse`` against the input spike-count map, and their
  signed relative difference to the float model's (only worse counts against a target).

Gates (issue [E] section 3), by target kind (``target_kind``: 'fixed' for names with 'fixed', hw_sim and hil;
'float' otherwise):

- float kind (lava-float, brian2-lif): per population, matched within 0 steps >= 99.9 % of spikes once trains
  classified as near-threshold flips or their propagation are set aside;
- fixed kind (lava-fixed, hw_sim): per population, matched within +-1 step >= 95 %; each reconstruction metric at
  most 2 % (relative) worse than the float model's; and lava-fixed and hw_sim identical when both ran (cross gate).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from targets.base import RunResult, check_input_trains, steps_graph
from toolchain.errors import DataError, TargetError
from toolchain.ir import LIF, Dense, Graph, Readout
from toolchain.lif_reference import synapse_current
from toolchain.spike_metrics import count_agreement, match_spikes, zscore_mse

DEFAULT_MARGIN = 1e-6       # relative distance of the float potential to v_th that counts as near threshold
MIN_MATCHED_FLOAT = 0.999   # float-kind targets: matched within 0 steps (flips set aside)
MIN_MATCHED_FIXED = 0.95    # fixed-kind targets: matched within +-1 step
MAX_METRIC_WORSE = 0.02     # fixed-kind targets: reconstruction metric at most 2 % (relative) worse than float


@dataclass
class Gate:
    """One gate: ``value`` against ``limit``; ``kind`` 'min' (value >= limit passes) or 'max'."""

    name: str
    value: float
    limit: float
    kind: str
    passed: bool
    layer: str | None = None
    note: str = ""


@dataclass
class LayerTrainStats:
    """One population of one target against the float model (counts are spikes over all samples)."""

    layer: str
    n_reference: int
    n_target: int
    count_agreement: float          # fraction of (sample, neuron) pairs with equal counts
    count_mae: float                # mean |count difference| per (sample, neuron)
    matched: dict[int, int]         # tolerance k (steps) -> matched spikes
    precision: dict[int, float]
    recall: dict[int, float]
    f1: dict[int, float]
    fraction: dict[int, float]      # matched / max(n_reference, n_target)
    differing_trains: int           # (sample, neuron) trains not identical to the float model's
    flips: dict[str, int]           # differing trains by class: near_threshold, propagated, unexplained
    matched0_flips_aside: float     # fraction matched within 0 steps over trains not set aside as flips


@dataclass
class TargetTrainReport:
    target: str
    kind: str                                        # 'float' or 'fixed'
    layers: list[LayerTrainStats]
    metrics: dict[str, float]                        # mse_image / spike_mse of this target (when images given)
    metrics_rel: dict[str, float]                    # (target - float) / float, signed: > 0 is worse
    gates: list[Gate]
    wall_s: float
    info: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)


@dataclass
class StepsVerifyReport:
    """The whole verification: the float model's metrics, one report per target, cross-target gates."""

    tolerance: int
    margin: float
    samples: int
    steps: int
    populations: list[str]
    reference_metrics: dict[str, float]
    targets: list[TargetTrainReport]
    cross_gates: list[Gate]

    @property
    def gates(self) -> list[Gate]:
        return [g for t in self.targets for g in t.gates] + list(self.cross_gates)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    def to_dict(self) -> dict:
        """JSON-able dict (dict keys of tolerances become strings; inf/NaN become None)."""
        d = asdict(self)
        d["passed"] = self.passed
        for t, rep in zip(d["targets"], self.targets):
            t["passed"] = rep.passed
            t["info"] = {k: v for k, v in rep.info.items() if isinstance(v, (str, int, float, bool, list))}
        return _jsonable(d)

    def summary(self) -> str:
        """Printable summary: per target and population, spikes, matched fractions, F1, counts, flips; gates."""
        k = self.tolerance
        lines = [f"steps verification: {self.samples} samples x {self.steps} steps, populations "
                 f"{', '.join(self.populations)}; tolerance +-{k} steps, near-threshold margin {self.margin:g}"]
        if self.reference_metrics:
            lines.append("  float model: " + ", ".join(f"{m} {v:.4f}" for m, v in self.reference_metrics.items()))
        for t in self.targets:
            lines.append(f"  {t.target} ({t.kind}, {t.wall_s:.2f} s): {'PASS' if t.passed else 'FAIL'}")
            for s in t.layers:
                lines.append(
                    f"    {s.layer}: spikes {s.n_reference} -> {s.n_target}; matched@0 {100 * s.fraction[0]:.3f}%"
                    f" (flips set aside {100 * s.matched0_flips_aside:.3f}%), matched@+-{k} "
                    f"{100 * s.fraction[k]:.3f}%, F1@+-{k} {s.f1[k]:.4f}; equal counts "
                    f"{100 * s.count_agreement:.2f}%; differing trains {s.differing_trains} {s.flips}")
            for m, v in t.metrics.items():
                lines.append(f"    {m} {v:.4f} ({100 * t.metrics_rel[m]:+.2f}% vs float)")
            for g in t.gates:
                if not g.passed:
                    lines.append(f"    FAIL {g.name}{'' if g.layer is None else ' [' + g.layer + ']'}: "
                                 f"{g.value:.6g} vs {g.kind} {g.limit:g}{' - ' + g.note if g.note else ''}")
        for g in self.cross_gates:
            lines.append(f"  {g.name}: {'PASS' if g.passed else 'FAIL'} ({g.note})")
        lines.append(f"verdict: {'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def target_kind(name: str) -> str:
    """'fixed' for fixed-point targets (names containing 'fixed', hw_sim*, hil*), else 'float'."""
    return "fixed" if ("fixed" in name or name.startswith(("hw_sim", "hil"))) else "float"


def _first_diff(ref: np.ndarray, tgt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trains (sample, neuron) that differ and the step of their first difference."""
    diff = ref != tgt                                   # (N, T, n)
    s, j = np.nonzero(diff.any(axis=1))
    t0 = np.argmax(diff[s, :, j], axis=1) if s.size else np.zeros(0, np.int64)
    return s, j, t0


def classify_flips(graph: Graph, spikes_in: np.ndarray, ref_trains: list[np.ndarray],
                   ref_potentials: list[np.ndarray], trains: list[np.ndarray],
                   margin: float = DEFAULT_MARGIN) -> list[dict[str, np.ndarray]]:
    """Per population: the differing trains (sample ``s``, neuron ``j``, first differing step ``t0``) and their
    class (``cls``: 0 near_threshold, 1 propagated, 2 unexplained; see the module doc).

    The float model's potential before the clamp at t0 is rebuilt from its trace: leak * V_post[t0-1] + I[t0]."""
    out = []
    up_first = np.full(spikes_in.shape[0], np.inf)       # the input trains are the same for every target
    for (syn, pop_name), ref, v_rec, tgt in zip(graph.chain(), ref_trains, ref_potentials, trains):
        pop, node = graph.nodes[pop_name], graph.nodes[syn]
        s, j, t0 = _first_diff(ref, tgt)
        cls = np.full(s.size, 2, np.int8)
        if s.size and isinstance(pop, LIF):
            src = spikes_in if not out else ref_trains[len(out) - 1]
            if isinstance(node, Dense):
                current = np.einsum("ij,ij->i", src[s, t0, :].astype(np.float64), node.weight[j, :])
            else:                                        # convolutions: the whole map, then neuron j
                current = synapse_current(node, src[s, t0, :])[np.arange(s.size), j]
            prev = np.where(t0 > 0, v_rec[s, np.maximum(t0 - 1, 0), j], 0.0)
            fired = (t0 > 0) & (ref[s, np.maximum(t0 - 1, 0), j] != 0)
            reset = 0.0 if pop.reset == "zero" else prev - pop.v_th
            v_raw = pop.leak * np.where(fired, reset, prev) + current
            cls[np.abs(v_raw - pop.v_th) <= margin * pop.v_th] = 0
        cls[up_first[s] <= t0] = 1
        out.append({"s": s, "j": j, "t0": t0, "cls": cls})
        first = np.full(spikes_in.shape[0], np.inf)
        np.minimum.at(first, s, t0.astype(np.float64))
        up_first = first
    return out


def layer_stats(name: str, ref: np.ndarray, tgt: np.ndarray, flips: dict[str, np.ndarray],
                tolerances: Sequence[int]) -> LayerTrainStats:
    """Counts, matching at every tolerance and the flip classes of one population."""
    m = {k: match_spikes(ref, tgt, k) for k in tolerances}
    agree, mae = count_agreement(ref, tgt)
    cls = flips["cls"]
    keep = np.ones(ref.shape[0::2], dtype=bool)          # (N, n) trains kept for the flips-aside fraction
    aside = cls < 2
    keep[flips["s"][aside], flips["j"][aside]] = False
    kept = match_spikes(ref * keep[:, None, :], tgt * keep[:, None, :], 0)
    return LayerTrainStats(
        layer=name, n_reference=m[0].n_reference, n_target=m[0].n_target, count_agreement=agree, count_mae=mae,
        matched={k: c.matched for k, c in m.items()}, precision={k: c.precision for k, c in m.items()},
        recall={k: c.recall for k, c in m.items()}, f1={k: c.f1 for k, c in m.items()},
        fraction={k: c.fraction for k, c in m.items()}, differing_trains=int(cls.size),
        flips={"near_threshold": int(np.sum(cls == 0)), "propagated": int(np.sum(cls == 1)),
               "unexplained": int(np.sum(cls == 2))},
        matched0_flips_aside=kept.fraction)


def readout_images(graph: Graph, potentials: np.ndarray) -> np.ndarray:
    """Reconstructed images of a final Readout (Hübotter et al.'s code): max over steps of A, divided by
    T p_scale (the expected input spike count at pixel 1; ``graph.metadata['p_scale']``, 1 when absent)."""
    a = np.asarray(potentials, dtype=np.float64)
    p = float(graph.metadata.get("p_scale", 1.0) or 1.0)
    return a.max(axis=1) / (a.shape[1] * p)


def recon_metrics(graph: Graph, spikes_in: np.ndarray, trains: list[np.ndarray],
                  images: np.ndarray | None, potentials: list | None = None) -> dict[str, float]:
    """mse_image and spike_mse of the output population's spike-count map (empty without images); for a graph
    whose last population is a Readout, ``mse_readout``: the per-pixel MSE of :func:`readout_images` of the
    last population's potentials (``potentials[-1]``) against the images (pixel units)."""
    if images is None:
        return {}
    if isinstance(graph.nodes[graph.populations()[-1]], Readout):
        if potentials is None or potentials[-1] is None:
            raise TargetError("the last population is a Readout but the target returned no potentials for it; "
                              "a steps target must return the Readout's trace A in RunResult.potentials")
        rec = readout_images(graph, potentials[-1])
        return {"mse_readout": float(np.mean((rec - np.asarray(images, dtype=np.float64).reshape(rec.shape)) ** 2))}
    out = trains[-1].sum(axis=1, dtype=np.int64)                          # (N, n_out) spike counts over T
    metrics = {"mse_image": zscore_mse(out, images)}
    if spikes_in.shape[2] == out.shape[1]:
        metrics["spike_mse"] = zscore_mse(out, spikes_in.sum(axis=1, dtype=np.int64))
    return metrics


def _check_images(graph: Graph, images: np.ndarray | None, n_samples: int) -> np.ndarray | None:
    if images is None:
        return None
    img = np.asarray(images, dtype=np.float64)
    last = graph.nodes[graph.populations()[-1]]
    if img.shape[0] != n_samples or img.reshape(img.shape[0], -1).shape[1] != last.n:
        raise DataError(f"images of shape {img.shape} do not fit: expected {n_samples} images of {last.n} pixels "
                        f"(one per input sample, as many pixels as the output population has neurons)")
    if not np.all(np.isfinite(img)):
        raise DataError("images contain NaN or inf; pass pixel intensities (e.g. in [0, 1])")
    return img.reshape(n_samples, -1)


def _trains_of(name: str, res: RunResult, ref: list[np.ndarray], pops: list[str]) -> list[np.ndarray]:
    if res.trains is None or len(res.trains) != len(ref):
        got = "no trains" if res.trains is None else f"{len(res.trains)} populations"
        raise TargetError(f"target {name!r} returned {got}; a steps target must return spike trains of every "
                          f"population ({', '.join(pops)})")
    for p, a, b in zip(pops, ref, res.trains):
        if np.shape(b) != a.shape:
            raise TargetError(f"target {name!r} returned trains of shape {np.shape(b)} for {p!r}; expected "
                              f"{a.shape} (samples, steps, neurons) aligned to the float model")
    return [np.asarray(b) for b in res.trains]


def verify_steps(net: Any, spikes_in: np.ndarray, images: np.ndarray | None = None,
                 targets: Sequence[str | Any] | Mapping[str, RunResult] = ("brian2-lif",), tolerance: int = 1,
                 margin: float = DEFAULT_MARGIN, target_options: Mapping[str, dict] | None = None,
                 kinds: Mapping[str, str] | None = None) -> StepsVerifyReport:
    """Run ``targets`` on a steps graph (or a compiled form carrying it) and compare every one to the float model.

    net:        toolchain.ir.Graph with time 'steps', or an object with ``.graph`` / ``.source`` holding one
    spikes_in:  (N, T, n_in) 0/1 input trains, the same every target sees
    images:     optional (N, n_out) or (N, H, W) pixel intensities for the reconstruction metrics
    targets:    registry names, target objects (with ``name`` and ``run``), or a mapping name -> RunResult of
                runs already made on these inputs
    tolerance:  k of the matched-within-+-k figures (steps, >= 1)
    margin:     relative distance |V - v_th| / v_th under which a float-kind mismatch counts as near threshold
    kinds:      override of :func:`target_kind` per name ('float' or 'fixed')
    """
    from targets.lif_float import FloatStepsTarget
    from targets.registry import get_target

    graph = steps_graph(net)
    x = check_input_trains(graph, spikes_in)
    if int(tolerance) != tolerance or tolerance < 1:
        raise TargetError(f"tolerance must be a whole number of steps >= 1, got {tolerance!r}")
    if not (margin >= 0 and math.isfinite(margin)):
        raise TargetError(f"margin must be a finite relative distance >= 0, got {margin!r}")
    img = _check_images(graph, images, x.shape[0])
    tol = sorted({0, 1, int(tolerance)})
    pops = [p for _, p in graph.chain()]
    reference = FloatStepsTarget().run(graph, x)
    ref_metrics = recon_metrics(graph, x, reference.trains, img, reference.potentials)

    if isinstance(targets, Mapping):
        runs = list(targets.items())
    else:
        runs = []
        for t in targets:
            if isinstance(t, RunResult):
                runs.append((t.target, t))
            elif isinstance(t, str):
                runs.append((t, get_target(t, **dict((target_options or {}).get(t, {})))))
            else:
                runs.append((t.name, t))
    reports, trains_by_name, readout_by_name = [], {}, {}
    for name, item in runs:
        res = item if isinstance(item, RunResult) else item.run(net, x)
        tr = _trains_of(name, res, reference.trains, pops)
        trains_by_name[name] = tr
        if res.potentials is not None and isinstance(graph.nodes[pops[-1]], Readout):
            readout_by_name[name] = res.potentials[-1]
        kind = (kinds or {}).get(name, target_kind(name))
        if kind not in ("float", "fixed"):
            raise TargetError(f"target kind {kind!r} for {name!r} is unknown; use 'float' or 'fixed'")
        flips = classify_flips(graph, x, reference.trains, reference.potentials, tr, margin)
        stats = [layer_stats(p, a, b, f, tol) for p, a, b, f in zip(pops, reference.trains, tr, flips)]
        metrics = recon_metrics(graph, x, tr, img, res.potentials)
        rel = {m: _rel(v, ref_metrics[m]) for m, v in metrics.items()}
        reports.append(TargetTrainReport(name, kind, stats, metrics, rel, _gates(kind, stats, rel, tolerance),
                                         float(res.wall_s), dict(res.info)))
    cross = []
    fixed = [n for n in trains_by_name if n.startswith("lava-fixed")]
    sims = [n for n in trains_by_name if n.startswith("hw_sim")]
    for a in fixed:
        for b in sims:
            same = sum(int(np.sum(p != q)) for p, q in zip(trains_by_name[a], trains_by_name[b]))
            if readout_by_name.get(a) is not None and readout_by_name.get(b) is not None:   # bit-identical A
                same += int(np.sum(np.asarray(readout_by_name[a]) != np.asarray(readout_by_name[b])))
            cross.append(Gate(f"{a} = {b}", float(same), 0.0, "max", same == 0, None,
                              f"{same} (sample, step, neuron) entries differ"))
    return StepsVerifyReport(int(tolerance), float(margin), int(x.shape[0]), int(x.shape[1]), pops, ref_metrics,
                             reports, cross)


def _rel(value: float, ref: float) -> float:
    if ref == 0:
        return 0.0 if value == 0 else math.copysign(math.inf, value)
    return (value - ref) / abs(ref)


def _gates(kind: str, stats: list[LayerTrainStats], rel: dict[str, float], k: int) -> list[Gate]:
    gates = []
    for s in stats:
        if kind == "float":
            gates.append(Gate("min_matched_0_steps", s.matched0_flips_aside, MIN_MATCHED_FLOAT, "min",
                              s.matched0_flips_aside >= MIN_MATCHED_FLOAT, s.layer,
                              f"near-threshold flips set aside: {s.flips['near_threshold']} trains, propagated "
                              f"{s.flips['propagated']}"))
        else:
            gates.append(Gate("min_matched_1_step", s.fraction[1], MIN_MATCHED_FIXED, "min",
                              s.fraction[1] >= MIN_MATCHED_FIXED, s.layer))
    if kind == "fixed":
        for m, r in rel.items():
            gates.append(Gate(f"max_{m}_worse", r, MAX_METRIC_WORSE, "max", r <= MAX_METRIC_WORSE, None,
                              "relative to the float model; only worse fails"))
    return gates


def write_steps_report(rep: StepsVerifyReport, out_dir: str | Any) -> list[Any]:
    """Write ``steps_report.json`` (:meth:`StepsVerifyReport.to_dict`) and ``steps_summary.txt`` into ``out_dir``,
    each atomically (a failure leaves earlier files intact). Returns the paths written."""
    import json

    from toolchain.atomic import atomic_write_text, ensure_output_folder

    folder = ensure_output_folder(out_dir)
    paths = [folder / "steps_report.json", folder / "steps_summary.txt"]
    atomic_write_text(paths[0], json.dumps(rep.to_dict(), indent=1, allow_nan=False) + "\n")
    atomic_write_text(paths[1], rep.summary() + "\n")
    return paths
