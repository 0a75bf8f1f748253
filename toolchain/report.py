"""Write a :class:`~toolchain.verifier.VerifyReport` to a folder: report.json, report.md, summary tables, spike
times and plots.

Files (docs/verifier.md, section 4): ``report.json``, ``report.md``, ``summary.csv`` and ``summary.tex`` (one row
per target), ``spikes.npz`` and the plots ``dt_hist.png`` (signed dt per layer and target, steps, log scale),
``raster.png`` (one sample: input layer, then exact vs each target per layer, each target with its own marker and
offset so identical targets stay visible), ``reconstructions.png`` (images, every model's decoded output and its
error map with the per-image MSE; 28x28 outputs only).

The whole folder is written at once: every file goes to a staging folder beside it first and is moved in only
when all of them were written, report.json last (its presence means the folder is complete). A failure leaves an
earlier report in that folder untouched and no debris.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from toolchain.atomic import atomic_write_bytes, atomic_write_text, check_output_path, ensure_output_folder
from toolchain.errors import SnncError
from toolchain.verifier import TargetReport, VerifyReport

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
SPIKES_NPZ = "spikes.npz"
SUMMARY_CSV = "summary.csv"
SUMMARY_TEX = "summary.tex"
PLOTS = ("dt_hist.png", "raster.png", "reconstructions.png")
DEFAULT_RASTER_NEURONS = 100  # neurons per layer shown in the raster when none are chosen

# what each backend is, in words (report.md's backend section)
BACKEND_WORDS = {
    "exact": "the exact float64 event-driven model (closed form with Lambert W), the reference itself",
    "lava-float": "Lava (CPU simulation), floating-point CUBA LIF on the compiled grid (float mapping)",
    "lava-fixed": "Lava (CPU simulation), fixed-point CUBA LIF with Loihi integer semantics (8-bit weights, "
                  "12-bit decays, 24-bit state)",
    "hw_sim": "snnc's bit-accurate emulator of the Loihi integer semantics (hw_sim, numba)",
    "brian2": "Brian2, exact integration of the alpha-synapse ODE",
    "hil": "a hardware-in-the-loop device over TCP (snnc device protocol)",
}
# backend info keys in words; keys not listed are shown as they are
INFO_WORDS = {
    "precision": "precision", "lava": "Lava version", "runs": "Lava runs", "chunk_size": "samples per Lava run",
    "window": "window (steps)", "steps_per_unit": "grid S (steps per time unit)", "threads": "threads",
    "sim_wall_s": "simulation time (s)", "dt": "integration step (time units)", "codegen": "code generation",
    "centre": "grid-lag centring", "substep": "sub-step input delivery and spike timing",
    "duration": "simulated time per sample (time units)", "chunk": "samples per Brian2 run",
    "brian2": "Brian2 version", "time_unit": "time unit", "device": "device address", "batches": "batches sent",
    "batches_reused": "batches reused", "batch_size": "samples per batch", "network_sha256": "network sha256",
    "counter_totals": "activity counter totals", "cache_dir": "code cache", "codegen_fallback": "code generation fallback",
}
_SKIP_INFO = ("spike_counts", "counters")  # per-sample arrays: in spikes.npz / the energy section instead


def _f(x, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return f"{x:.{digits}g}"
    return str(x)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.2f} %"


def _worst(t: TargetReport, attr: str, fn=max):
    vals = [getattr(s, attr) for s in t.layers]
    return fn(vals) if vals else None


def summary_rows(rep: VerifyReport) -> list[dict]:
    """One row per target (exact first): verdict, speed, MSE, worst-layer presence and |dt| (time units and
    steps), energy per sample when known. The source of summary.csv and summary.tex."""
    h = 1.0 / rep.steps_per_unit
    rows = [{"target": "exact", "passed": None, "s_per_sample": rep.exact_wall_s / max(rep.n_samples, 1),
             "mse": rep.exact_mse, "mse_rel_vs_exact": 0.0 if rep.exact_mse is not None else None,
             "presence_min": 1.0, "median_dt": 0.0, "p99_dt": 0.0, "p99_dt_steps": 0.0,
             "energy_nJ_per_sample": None}]
    for t in rep.targets:
        p99 = _worst(t, "dt_p99")
        energy = (t.energy or {}).get("energy_per_sample_nJ", {}).get("mean") if t.energy else None
        rows.append({"target": t.target, "passed": t.passed, "s_per_sample": t.wall_s / max(rep.n_samples, 1),
                     "mse": t.mse, "mse_rel_vs_exact": t.mse_rel, "presence_min": _worst(t, "presence_agreement", min),
                     "median_dt": _worst(t, "dt_median"), "p99_dt": p99,
                     "p99_dt_steps": None if p99 is None else p99 / h, "energy_nJ_per_sample": energy})
    return rows


def render_csv(rep: VerifyReport) -> str:
    """summary.csv: :func:`summary_rows` with a header; times in model time units, MSE in pixel units squared."""
    buf = io.StringIO()
    rows = summary_rows(rep)
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def _tex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(a, b)
    return text


def render_latex(rep: VerifyReport) -> str:
    """summary.tex: a booktabs tabular of :func:`summary_rows` (\\usepackage{booktabs})."""
    lines = [
        f"% snnc verification summary: {rep.n_samples} samples, S = {rep.steps_per_unit:g}",
        r"\begin{tabular}{lcrrrrrr}",
        r"\toprule",
        r"target & pass & s/sample & MSE & MSE vs exact & presence & p99 $|\Delta t|$ (units) & energy (nJ) \\",
        r"\midrule",
    ]
    for r in summary_rows(rep):
        verdict = "-" if r["passed"] is None else ("yes" if r["passed"] else "no")
        rel = "-" if r["mse_rel_vs_exact"] is None else f"{100 * r['mse_rel_vs_exact']:+.2f}\\,\\%"
        pres = "-" if r["presence_min"] is None else f"{100 * r['presence_min']:.3f}\\,\\%"
        lines.append(f"{_tex_escape(r['target'])} & {verdict} & {_f(r['s_per_sample'], 3)} & {_f(r['mse'])} & "
                     f"{rel} & {pres} & {_f(r['p99_dt'], 3)} & {_f(r['energy_nJ_per_sample'], 3)} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def _info_words(info: dict) -> str:
    parts = []
    for k, v in info.items():
        if k in _SKIP_INFO:
            continue
        if isinstance(v, dict):
            v = ", ".join(f"{a} {_f(b)}" for a, b in v.items())
        parts.append(f"{INFO_WORDS.get(k, k.replace('_', ' '))}: {_f(v)}")
    return "; ".join(parts)


def _context_lines(rep: VerifyReport) -> list[str]:
    c = rep.context
    m = rep.manifest
    h = 1.0 / rep.steps_per_unit
    noise = c.get("noise", 0.0)
    rows = [
        ("dataset", f"{c.get('dataset', '-')} ({c.get('dataset_source', 'source not recorded')}), split "
                    f"{c.get('split', '-')}, {rep.n_samples} samples"),
        ("input encoding", f"{c.get('encoding', m.get('encoding', '-'))}; input noise {_f(noise)}"
                           + (f" (model trained with noise {_f(c['trained_noise'])})" if c.get("trained_noise")
                              is not None else "")),
        ("model file", f"`{c['model']}`" if c.get("model") else "-"),
        ("model sha256", f"`{c['model_sha256']}`" if c.get("model_sha256") else "-"),
        ("source ONNX sha256", f"`{m['source_hash']}`" if m.get("source_hash") else "-"),
        ("grid", f"S = {_f(rep.steps_per_unit)} steps per time unit (1 step = {_f(h)} time units), window "
                 f"{rep.window} steps" + (", tau compensated" if m.get("compensate_tau") else "")),
        ("near-threshold margin", f"{rep.margin:g} (|peak V / theta - 1|)"),
        ("versions", ", ".join(f"{k} {v if v is not None else 'not installed'}" for k, v in rep.versions.items())),
    ]
    return ["| | |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]


def render_markdown(rep: VerifyReport, plots: tuple[str, ...] = PLOTS) -> str:
    """The human-readable report: what was verified, summary, remedies, per-layer tables, gates, backends,
    resources and energy."""
    h = 1.0 / rep.steps_per_unit
    lines = ["# snnc verification report", "", f"**Result: {'PASS' if rep.passed else 'FAIL'}**", ""]
    for w in rep.warnings:
        lines.append(f"> **WARNING:** {w}")
    if rep.warnings:
        lines.append("")
    lines += ["## What was verified", ""] + _context_lines(rep)
    lines += [
        "",
        "## Summary",
        "",
        f"Also as [{SUMMARY_CSV}]({SUMMARY_CSV}) and [{SUMMARY_TEX}]({SUMMARY_TEX}). MSE vs exact is signed "
        "(negative: better than exact).",
        "",
        "| target | pass | s/sample | MSE | MSE vs exact | worst p99 \\|dt\\| (time units / steps) | energy "
        "(nJ/sample) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary_rows(rep):
        verdict = "-" if r["passed"] is None else ("yes" if r["passed"] else "**NO**")
        name = "exact (reference)" if r["target"] == "exact" and r["passed"] is None else r["target"]
        p99 = "-" if r["p99_dt"] is None else f"{_f(r['p99_dt'])} / {_f(r['p99_dt_steps'], 3)}"
        lines.append(f"| {name} | {verdict} | {_f(r['s_per_sample'])} | {_f(r['mse'])} | "
                     f"{_pct(r['mse_rel_vs_exact']) if r['passed'] is not None else '-'} | {p99} | "
                     f"{_f(r['energy_nJ_per_sample'])} |")
    failed = rep.failed_gates()
    if failed:
        lines += ["", "Failed gates:", ""] + [f"- {g}" for g in failed]
    remedies = rep.remedies()
    if remedies:
        lines += ["", "## Suggested remedies", "",
                  "Recompile with these options (docs/verifier.md, section 3):", ""]
        lines += [f"- **{t.target}**: `{r.command_line()}`: {r.reason}" for t in rep.targets for r in t.remedies]
    lines += [
        "",
        "## Spike times against exact, per layer",
        "",
        f"Spike-time error |dt| = |t_target - t_exact| over spikes present in both, in time units (and steps of "
        f"the compiled grid, 1 step = {_f(h)}). Presence changes: appeared / vanished, explained as "
        "near-threshold, late (after the window) or upstream (the previous layer already differs); the rest are "
        "unexplained. Bound: docs/verifier.md; beyond (grazing): common spikes beyond the bound, and how many "
        "of them are explained by a potential that grazes theta between the exact and the target time.",
        "",
        "| target | layer | spikes exact/target/both | presence agree | appeared | vanished | near-thr | late | "
        "upstream | unexplained | median | p99 | max | mean signed (steps) | bound median (steps) | within bound "
        "| beyond (grazing) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in rep.targets:
        for s in t.layers:
            lines.append(
                f"| {t.target} | {s.layer} | {s.spikes_exact}/{s.spikes_target}/{s.spikes_both} | "
                f"{100 * s.presence_agreement:.3f} % | {s.appeared} | {s.vanished} | {s.near_threshold} | {s.late} | "
                f"{s.upstream} | {s.unexplained} | {_f(s.dt_median)} ({_f(s.dt_median_steps, 3)}) | "
                f"{_f(s.dt_p99)} ({_f(s.dt_p99_steps, 3)}) | {_f(s.dt_max)} ({_f(s.dt_max_steps, 3)}) | "
                f"{_f(s.dt_mean_signed / h, 3)} | {_f(s.bound_median_steps, 3)} | "
                f"{100 * s.within_bound:.2f} % | {s.beyond_bound} ({s.beyond_bound_grazing}) |"
            )
    lines += ["", "## Gates", "", "| target | layer | gate | value | limit | pass | note |",
              "|---|---|---|---|---|---|---|"]
    for t in rep.targets:
        for g in t.gates:
            value = _pct(g.value) if g.name == "mse_rel_vs_exact" else _f(g.value)
            limit = f"<= {_pct(g.limit)}" if g.name == "mse_rel_vs_exact" else _f(g.limit)
            lines.append(f"| {t.target} | {'-' if g.layer is None else g.layer} | {g.name} | {value} | "
                         f"{limit} | {'yes' if g.passed else '**NO**'} | {g.note} |")
    lines += ["", "## Backends", ""]
    for t in rep.targets:
        words = BACKEND_WORDS.get(t.target, "a registered backend")
        lines.append(f"- **{t.target}**: {words}; ran {rep.n_samples} samples in {_f(t.wall_s)} s. "
                     f"{_info_words(t.info)}")
    lines += _resources_md(rep)
    lines += _energy_md(rep)
    lines += ["", "Plots: " + ", ".join(f"[{p}]({p})" for p in plots), f"Spike times: [{SPIKES_NPZ}]({SPIKES_NPZ})",
              ""]
    return "\n".join(lines)


def _resources_md(rep: VerifyReport) -> list[str]:
    r = rep.resources
    if not r:
        return []
    if "drc" in r:
        return ["", "## Resources", "", f"DRC: {r['drc']}"]
    out = ["", "## Resources (hw_sim.resources, dense synapse storage)", "",
           f"Chip {r['chip']}: {r['cores']} of {r['cores_available']} cores, {r['neurons']} neurons, "
           f"{r['synapses']} synapses ({r['nonzero_synapses']} non-zero), "
           f"{r['synaptic_memory_bytes'] / 1024:.1f} KiB synaptic memory, {r['neuron_config_bytes'] / 1024:.2f} KiB "
           "neuron configuration.", "",
           "| layer | neurons | fan-in | fan-out | synapses | weight bits | cores | neurons/core |",
           "|---|---|---|---|---|---|---|---|"]
    for layer in r["layers"]:
        out.append(f"| {layer['name']} | {layer['neurons']} | {layer['fan_in']} | {layer['fan_out']} | "
                   f"{layer['synapses']} | {layer['weight_bits']} | {layer['cores']} | {layer['neurons_per_core']} |")
    return out


def _energy_md(rep: VerifyReport) -> list[str]:
    rows = [(t.target, t.energy) for t in rep.targets if t.energy]
    if not rows:
        return []
    out = ["", "## Energy and latency estimate (hw_sim.energy, from the target's activity counters)", "",
           "| target | energy (nJ/sample, mean) | latency (us/sample, mean) | synaptic ops / sample | "
           "activation sparsity |", "|---|---|---|---|---|"]
    caveats = []
    for name, e in rows:
        if "error" in e:
            out.append(f"| {name} | {e['error']} | | | |")
            continue
        m = e.get("metrics", {})
        ops = m.get("synaptic_operations", {}).get("Effective_ACs")
        out.append(f"| {name} | {_f(e['energy_per_sample_nJ']['mean'])} | {_f(e['latency_per_sample_us']['mean'])} "
                   f"| {_f(ops)} | {_f(m.get('activation_sparsity'), 6)} |")
        caveats = e.get("caveats", caveats)
        sources = e.get("sources", [])
    if caveats:
        out += ["", "Caveats: " + " ".join(caveats)]
        out += ["Sources: " + "; ".join(sources)]
    return out


# ---- plots -------------------------------------------------------------------------------------------------------

def _save_fig(fig, path: Path) -> None:
    """Write ``fig`` to ``path`` as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _no_ticks(axes) -> None:
    """Image grids: no ticks on any of the (rows of) axes."""
    for row in axes:
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])


_MARKERS = ("x", "+", "1", "^", "s", "d", "v")
_STYLES = ("-", "--", ":", "-.")


def plot_dt_hist(rep: VerifyReport, path: Path) -> None:
    """Signed dt = t_target - t_exact histograms (steps of the compiled grid, log-scale counts), one row per
    target, one column per layer, over the spikes present in both."""
    import matplotlib.pyplot as plt

    n_layers = len(rep.exact_times)
    names = list(rep.target_times)
    fig, axes = plt.subplots(max(len(names), 1), n_layers, figsize=(4 * n_layers, 2.6 * max(len(names), 1)),
                             squeeze=False)
    for r, name in enumerate(names):
        for l in range(n_layers):
            ax = axes[r][l]
            te, tt = rep.exact_times[l], rep.target_times[name][l]
            both = np.isfinite(te) & np.isfinite(tt)
            d = (tt[both] - te[both]) * rep.steps_per_unit
            if d.size:
                lim = max(float(np.max(np.abs(d))), 0.5)
                ax.hist(d, bins=np.linspace(-lim, lim, 61), color="tab:blue")
                ax.set_yscale("log")
                ax.axvline(0.0, color="k", lw=0.6)
            else:
                ax.text(0.5, 0.5, "no common spikes", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(f"{name}, layer {l} (n={d.size})", fontsize=9)
            ax.set_xlabel("t - t_exact (steps)", fontsize=8)
            ax.set_ylabel("spikes (log)", fontsize=8)
    fig.tight_layout()
    _save_fig(fig, path)


def _neuron_index(n: int, neurons: Sequence[int] | None) -> np.ndarray:
    if neurons is None:
        return np.arange(min(n, DEFAULT_RASTER_NEURONS))
    idx = np.asarray([j for j in neurons if 0 <= j < n], dtype=np.int64)
    return idx if idx.size else np.arange(min(n, DEFAULT_RASTER_NEURONS))


def plot_raster(rep: VerifyReport, path: Path, sample: int = 0, neurons: Sequence[int] | None = None) -> None:
    """Spike raster of one sample: the network input (its spiking pixels, up to 100), then per layer exact (black
    dots) and each target (its own marker, colour and a small vertical offset, so that bit-identical targets such
    as lava-fixed and hw_sim are both visible). ``neurons``: indices shown in every layer (those beyond a layer's
    size are dropped; default the first 100)."""
    import matplotlib.pyplot as plt

    layers = [("input", rep.input_times)] if rep.input_times is not None else []
    layers += [(f"layer {l}", t) for l, t in enumerate(rep.exact_times)]
    targets = [n for n in rep.target_times if n != "exact"]
    fig, axes = plt.subplots(1, len(layers), figsize=(5 * len(layers), 4.5), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (title, times) in enumerate(layers):
        ax = axes[0][k]
        n = times.shape[1]
        if title == "input":  # the inputs that spike in this sample (most pixels of an image are background)
            idx = np.nonzero(np.isfinite(times[sample]))[0][:DEFAULT_RASTER_NEURONS]
            title = f"input ({idx.size} spiking pixels shown)"
        else:
            idx = _neuron_index(n, neurons)
        row = np.arange(idx.size)
        te = times[sample, idx]
        live = np.isfinite(te)
        ax.plot(te[live], row[live], "k.", ms=5, label="input spikes" if title.startswith("input") else "exact")
        if not title.startswith("input"):
            l = k - (1 if rep.input_times is not None else 0)
            for c, name in enumerate(targets):
                tt = rep.target_times[name][l][sample, idx]
                ok = np.isfinite(tt)
                offset = 0.18 * (c + 1)
                ax.plot(tt[ok], row[ok] + offset, _MARKERS[c % len(_MARKERS)], ms=5, ls="none",
                        color=colors[(c + 1) % len(colors)], label=f"{name} (+{offset:.2f})")
        part = f", {idx.size} of {n} neurons" if idx.size < n else ""
        ax.set_title(f"{title}, sample {sample}{part}", fontsize=9)
        ax.set_xlabel("time (time units)")
        ax.set_ylabel("neuron (row of the shown set)" if idx.size < n else "neuron")
        if idx.size < n and idx.size <= 20:
            ax.set_yticks(row, [str(j) for j in idx], fontsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save_fig(fig, path)


def per_image_mse(t_out: np.ndarray, images01: np.ndarray, latency: float) -> np.ndarray:
    """(N,) reconstruction MSE of each image, the loss of ``models.encoding.reconstruction_mse`` per image."""
    from models.encoding import target_times

    t = np.asarray(t_out, dtype=np.float64)
    rel = np.where(np.isfinite(t), t - latency, 1.0)
    return np.mean((rel - target_times(images01)) ** 2, axis=1)


def plot_reconstructions(rep: VerifyReport, path: Path, n: int = 6, first: int = 0) -> bool:
    """Input images, then for exact and each target its decoded output and the error map (decoded - input,
    red = too bright, blue = too dark) titled with the per-image MSE; samples ``first`` .. ``first + n - 1``.
    False when the outputs are not 28x28 images."""
    import matplotlib.pyplot as plt

    from models.encoding import decode

    if rep.images01 is None or rep.images01.shape[1] != 784:
        return False
    first = min(max(first, 0), rep.n_samples - 1)
    sel = np.arange(first, min(first + n, rep.n_samples))
    images = rep.images01[sel]
    models = [("exact", rep.exact_times[-1][sel])]
    models += [(name, t[-1][sel]) for name, t in rep.target_times.items() if name != "exact"]
    rows = 1 + 2 * len(models)
    fig, axes = plt.subplots(rows, sel.size, figsize=(1.4 * sel.size, 1.45 * rows), squeeze=False)
    for c in range(sel.size):
        axes[0][c].imshow(images[c].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
        axes[0][c].set_title(f"#{sel[c]}", fontsize=7)
    axes[0][0].set_ylabel("input", fontsize=8)
    for m, (name, t_out) in enumerate(models):
        recon = decode(t_out, rep.latency)
        mse = per_image_mse(t_out, images, rep.latency)
        for c in range(sel.size):
            axes[1 + 2 * m][c].imshow(recon[c].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
            err = axes[2 + 2 * m][c]
            err.imshow((recon[c] - images[c]).reshape(28, 28), cmap="bwr", vmin=-1, vmax=1)
            err.set_title(f"MSE {mse[c]:.4f}", fontsize=6)
        axes[1 + 2 * m][0].set_ylabel(name, fontsize=8)
        axes[2 + 2 * m][0].set_ylabel(f"{name}\nerror", fontsize=7)
    _no_ticks(axes)
    fig.tight_layout()
    _save_fig(fig, path)
    return True


# ---- the folder ----------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """A temporary folder beside ``out``; on success its files replace those in ``out`` (``report.json`` last),
    on failure it is removed and ``out`` stays as it was."""
    out = Path(out)
    ensure_output_folder(out.parent)
    check_output_path(out, "folder")
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".staging", dir=out.parent))
    try:
        yield stage
        out.mkdir(parents=True, exist_ok=True)
        names = sorted(p.name for p in stage.iterdir())
        names.sort(key=lambda n: n == REPORT_JSON)  # report.json last: it marks a complete folder
        for name in names:
            os.replace(stage / name, out / name)
        for name in PLOTS:  # a plot this report does not have must not survive from an earlier one
            if name not in names and (out / name).is_file():
                (out / name).unlink()
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_report(rep: VerifyReport, out_dir: str | os.PathLike, *, sample: int = 0,
                 neurons: Sequence[int] | None = None,
                 extra: dict[str, Callable[[Path], None]] | None = None) -> Path:
    """Write spikes.npz, the plots, summary.csv/.tex, report.md and report.json into ``out_dir`` at once (see
    the module doc); returns report.json's path.

    sample:  the sample shown in the raster and the first of the reconstructions
    neurons: neuron indices shown in the raster (every layer; default the first 100)
    extra:   more files for the same folder, name -> writer(path) (e.g. deploy's compiled.npz)
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    if not 0 <= sample < rep.n_samples:
        raise SnncError(f"plot sample {sample} is outside the {rep.n_samples} verified samples; pass 0.."
                        f"{rep.n_samples - 1}")
    out = Path(out_dir)
    with staged_dir(out) as stage:
        for name, writer in (extra or {}).items():
            writer(stage / name)
        arrays = {f"exact_layer{l}": t for l, t in enumerate(rep.exact_times)}
        if rep.input_times is not None:
            arrays["input"] = rep.input_times
        for name, times in rep.target_times.items():
            for l, t in enumerate(times):
                arrays[f"{name}_layer{l}"] = t
        with open(stage / SPIKES_NPZ, "wb") as f:
            np.savez_compressed(f, **arrays)
        plot_dt_hist(rep, stage / PLOTS[0])
        plot_raster(rep, stage / PLOTS[1], sample, neurons)
        made = PLOTS if plot_reconstructions(rep, stage / PLOTS[2], first=sample) else PLOTS[:2]
        atomic_write_text(stage / SUMMARY_CSV, render_csv(rep))
        atomic_write_text(stage / SUMMARY_TEX, render_latex(rep))
        atomic_write_text(stage / REPORT_MD, render_markdown(rep, made))
        atomic_write_text(stage / REPORT_JSON, json.dumps(rep.to_dict(), indent=2, allow_nan=False))
    return out / REPORT_JSON
