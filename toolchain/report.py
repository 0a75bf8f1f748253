"""Write a :class:`~toolchain.verifier.VerifyReport` to a folder: report.json, report.md, spikes.npz and plots.

Every file is written atomically (toolchain/atomic.py); report.json is written last, so its presence means the
folder is complete. Plots (matplotlib, Agg): ``dt_hist.png`` (|dt| per layer and target, in steps),
``raster.png`` (sample 0: exact vs each target, every layer), ``reconstructions.png`` (images, exact and each
target's output decoded as pixels, when the output is a 28x28 image).
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

from toolchain.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from toolchain.verifier import VerifyReport

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
SPIKES_NPZ = "spikes.npz"
PLOTS = ("dt_hist.png", "raster.png", "reconstructions.png")


def _f(x, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{x:.{digits}g}"


def render_markdown(rep: VerifyReport, plots: tuple[str, ...] = PLOTS) -> str:
    """The human-readable report (tables of presence, |dt| and gates per target and layer)."""
    h = 1.0 / rep.steps_per_unit
    lines = [
        "# snnc verification report",
        "",
        f"**Result: {'PASS' if rep.passed else 'FAIL'}**  ",
        f"{rep.n_samples} samples; grid S = {_f(rep.steps_per_unit)} steps per time unit (1 step = {_f(h)} time "
        f"units); window {rep.window} steps; near-threshold margin {rep.margin:g} (|peak V / theta - 1|).",
        "",
        "## Summary",
        "",
        "| target | pass | s/sample | MSE | MSE vs exact |",
        "|---|---|---|---|---|",
        f"| exact (reference) | - | {_f(rep.exact_wall_s / max(rep.n_samples, 1))} | {_f(rep.exact_mse)} | - |",
    ]
    for t in rep.targets:
        rel = "-" if t.mse_rel is None else f"{100 * t.mse_rel:+.2f} %"
        lines.append(f"| {t.target} | {'yes' if t.passed else '**NO**'} | {_f(t.wall_s / max(rep.n_samples, 1))} "
                     f"| {_f(t.mse)} | {rel} |")
    lines += [
        "",
        "## Spike times against exact, per layer",
        "",
        "Spike-time error |dt| = |t_target - t_exact| over spikes present in both (steps of the compiled grid). Presence changes: "
        "appeared / vanished, explained as near-threshold, late (after the window) or upstream (the previous "
        "layer already differs); the rest are unexplained. Bound: docs/verifier.md; beyond (grazing): common spikes "
        "beyond the bound, and how many of them are explained by a potential that grazes theta between the exact "
        "and the target time.",
        "",
        "| target | layer | spikes exact/target/both | presence agree | appeared | vanished | near-thr | late | "
        "upstream | unexplained | median | p99 | max | mean signed | bound median | within bound | beyond (grazing) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in rep.targets:
        for s in t.layers:
            lines.append(
                f"| {t.target} | {s.layer} | {s.spikes_exact}/{s.spikes_target}/{s.spikes_both} | "
                f"{100 * s.presence_agreement:.3f} % | {s.appeared} | {s.vanished} | {s.near_threshold} | {s.late} | "
                f"{s.upstream} | {s.unexplained} | {_f(s.dt_median_steps)} | {_f(s.dt_p99_steps)} | "
                f"{_f(s.dt_max_steps)} | {_f(s.dt_mean_signed / h)} | {_f(s.bound_median_steps)} | "
                f"{100 * s.within_bound:.2f} % | {s.beyond_bound} ({s.beyond_bound_grazing}) |"
            )
    lines += ["", "## Gates", "", "| target | layer | gate | value | limit | pass |", "|---|---|---|---|---|---|"]
    for t in rep.targets:
        for g in t.gates:
            lines.append(f"| {t.target} | {'-' if g.layer is None else g.layer} | {g.name} | {_f(g.value)} | "
                         f"{_f(g.limit)} | {'yes' if g.passed else '**NO**'} |")
    if rep.failed_gates():
        lines += ["", "Failed gates:", ""] + [f"- {g}" for g in rep.failed_gates()]
    lines += ["", "## Backends", ""]
    for t in rep.targets:
        info = ", ".join(f"{k}={v}" for k, v in t.info.items())
        lines.append(f"- **{t.target}** ({_f(t.wall_s)} s): {info}")
    src = rep.manifest.get("source_hash")
    if src:
        lines += ["", f"Source model sha256: `{src}`"]
    lines += ["", "Plots: " + ", ".join(f"[{p}]({p})" for p in plots), f"Spike times: [{SPIKES_NPZ}]({SPIKES_NPZ})", ""]
    return "\n".join(lines)


def _save_fig(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    atomic_write_bytes(path, buf.getvalue())


def plot_dt_hist(rep: VerifyReport, path: Path) -> None:
    """|dt| histograms (steps), one row per target, one column per layer."""
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
            d = np.abs(tt[both] - te[both]) * rep.steps_per_unit
            if d.size:
                ax.hist(d, bins=40, color="tab:blue")
            ax.set_title(f"{name}, layer {l} (n={d.size})", fontsize=9)
            ax.set_xlabel("|t - t_exact| (steps)", fontsize=8)
    fig.tight_layout()
    _save_fig(fig, path)
    plt.close(fig)


def plot_raster(rep: VerifyReport, path: Path, sample: int = 0, max_neurons: int = 100) -> None:
    """Spike raster of one sample: exact (black dots) overlaid with each target (coloured crosses), per layer
    (the first ``max_neurons`` neurons of larger layers, so that single spikes stay visible)."""
    import matplotlib.pyplot as plt

    n_layers = len(rep.exact_times)
    fig, axes = plt.subplots(1, n_layers, figsize=(5 * n_layers, 4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for l in range(n_layers):
        ax = axes[0][l]
        n = rep.exact_times[l].shape[1]
        shown = min(n, max_neurons)
        te = rep.exact_times[l][sample, :shown]
        idx = np.nonzero(np.isfinite(te))[0]
        ax.plot(te[idx], idx, "k.", ms=5, label="exact")
        for c, (name, times) in enumerate(rep.target_times.items()):
            if name == "exact":
                continue
            tt = times[l][sample, :shown]
            k = np.nonzero(np.isfinite(tt))[0]
            ax.plot(tt[k], k, "x", ms=4, color=colors[c % len(colors)], label=name)
        part = f", neurons 0-{shown - 1} of {n}" if shown < n else ""
        ax.set_title(f"layer {l}, sample {sample}{part}", fontsize=9)
        ax.set_xlabel("time (time units)")
        ax.set_ylabel("neuron")
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save_fig(fig, path)
    plt.close(fig)


def plot_reconstructions(rep: VerifyReport, path: Path, n: int = 6) -> bool:
    """Input images and decoded outputs (exact, each target) side by side; False when outputs are not 28x28."""
    import matplotlib.pyplot as plt

    from models.encoding import decode

    if rep.images01 is None or rep.images01.shape[1] != 784:
        return False
    latency = rep.latency
    rows = [("input", rep.images01)] + [("exact", decode(rep.exact_times[-1], latency))]
    rows += [(name, decode(t[-1], latency)) for name, t in rep.target_times.items() if name != "exact"]
    n = min(n, rep.n_samples)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n, 1.4 * len(rows)), squeeze=False)
    for r, (name, imgs) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(np.asarray(imgs[c]).reshape(28, 28), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.tight_layout()
    _save_fig(fig, path)
    plt.close(fig)
    return True


def write_report(rep: VerifyReport, out_dir: str | os.PathLike) -> Path:
    """Write spikes.npz, the plots, report.md and (last) report.json into ``out_dir``; returns report.json's path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {f"exact_layer{l}": t for l, t in enumerate(rep.exact_times)}
    for name, times in rep.target_times.items():
        for l, t in enumerate(times):
            arrays[f"{name}_layer{l}"] = t
    with atomic_path(out / SPIKES_NPZ) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    plot_dt_hist(rep, out / PLOTS[0])
    plot_raster(rep, out / PLOTS[1])
    made = PLOTS if plot_reconstructions(rep, out / PLOTS[2]) else PLOTS[:2]
    atomic_write_text(out / REPORT_MD, render_markdown(rep, made))
    path = out / REPORT_JSON
    atomic_write_text(path, json.dumps(rep.to_dict(), indent=2, allow_nan=False))
    return path
