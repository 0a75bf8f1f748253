"""Figs. 8-10 of Comsa et al. 2021: spike dynamics and weights of spiking autoencoders (MNIST, hidden 32, noise 0)
trained at target latency 1 and 16.

* Fig. 8 (``fig8.png``): spike-time distributions on the test images of inputs, hidden neurons and outputs, and
  each layer's pulse times (shown individually).
* Fig. 9 (``fig9.png``): the membrane potential over time of one output neuron of test item 0, split into the
  part from regular (hidden) inputs and the part from pulses; the neuron is the one nearest the image centre whose
  target spike time is below latency + 0.1 (pixel > 0.9), as the paper picks it.
  V(t) = sum_i w_i (t - t_i) exp(-tau (t - t_i)) over inputs t_i <= t (time units; theta in the same units).
* Fig. 10 (``fig10.png``): weight distributions of regular inputs vs pulses, per layer (encoder, decoder).

``fig8_10.csv`` holds every number (figure, latency, quantity, value) and ``fig8_10.md`` the paper's claims next
to them: at latency 16 the pulses move late while hidden spikes stay early, and regular weights turn inhibitory
(mean < 0) while pulse weights are excitatory (mean > 0).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.paper_common import (TrainSettings, csv_text, figure_spec, load_snn, load_split, new_figure,
                                      png_bytes, require, settings_line, snn_layers, write_outputs)

FIELDS = ("figure", "latency", "quantity", "value")
LAYERS = ("encoder", "decoder")


def fig8_10_spec(settings: TrainSettings, latencies=(1.0, 16.0)):
    return figure_spec("fig8_10", settings, {"trainer": ["temporal"], "dataset": ["mnist"], "noise": [0.0],
                                             "hidden": [32], "latency": list(latencies)})


def potential(t: np.ndarray, times: np.ndarray, weights: np.ndarray, tau: float) -> np.ndarray:
    """V(t) of one neuron from inputs at ``times`` (inf = none) with ``weights``: (len(t),)."""
    ok = np.isfinite(times)
    dt = t[:, None] - times[ok][None, :]
    return np.where(dt >= 0, weights[ok][None, :] * dt * np.exp(-tau * np.maximum(dt, 0.0)), 0.0).sum(axis=1)


def pick_output_neuron(image01: np.ndarray) -> int:
    """The pixel nearest the image centre with brightness > 0.9 (target time < latency + 0.1); else the brightest."""
    yy, xx = np.divmod(np.arange(image01.size), 28)
    dist = (yy - 13.5) ** 2 + (xx - 13.5) ** 2
    bright = np.flatnonzero(image01 > 0.9)
    return int(bright[np.argmin(dist[bright])]) if bright.size else int(np.argmax(image01))


def _stats(x: np.ndarray) -> tuple[float | None, float | None]:
    x = x[np.isfinite(x)]
    return (float(x.mean()), float(np.median(x))) if x.size else (None, None)


def collect_fig8_10(spec, runs: str | Path, out: str | Path, settings: TrainSettings, *, seed: int = 0) -> dict:
    lats = spec.grid["latency"]
    test = load_split("mnist", "test", settings.limit_eval)
    images = test.images.astype(np.float64)
    rows: list[dict] = []

    def add(fig, lat, q, v):
        rows.append({"figure": fig, "latency": lat, "quantity": q, "value": None if v is None else float(v)})

    f8, f9, f10 = new_figure(4.5 * len(lats), 3.4), new_figure(4.5 * len(lats), 3.4), new_figure(4.5 * len(lats), 5.5)
    ax10 = f10.subplots(2, len(lats), squeeze=False)
    nets = {}
    for c, lat in enumerate(lats):
        trial = require(runs, spec, {"trainer": "temporal", "dataset": "mnist", "noise": 0.0, "hidden": 32,
                                     "latency": lat})
        net = nets[lat] = load_snn(trial)
        x, hid, t_out = snn_layers(net, images, seed, noise=0.0)
        # Fig. 8
        ax = f8.add_subplot(1, len(lats), c + 1)
        bins = np.linspace(0, lat + 2.5, 60)
        for name, v in (("inputs", x), ("hidden", hid), ("outputs", t_out)):
            v = v[np.isfinite(v)]
            mean, med = _stats(v)
            add("fig8", lat, f"{name}_mean_time", mean)
            add("fig8", lat, f"{name}_median_time", med)
            add("fig8", lat, f"{name}_spike_fraction", np.isfinite(
                {"inputs": x, "hidden": hid, "outputs": t_out}[name]).mean())
            if v.size:
                ax.hist(np.clip(v, 0, bins[-1]), bins=bins, alpha=0.5, density=True, label=name,
                        color={"inputs": "tab:blue", "hidden": "tab:orange", "outputs": "tab:green"}[name])
        for li, (layer, colour) in enumerate(zip(net.layers, ("tab:red", "tab:purple"))):
            add("fig8", lat, f"{LAYERS[li]}_pulse_mean_time", layer.pulse_times.mean())
            for k, pt in enumerate(layer.pulse_times):
                ax.axvline(min(pt, bins[-1]), color=colour, lw=0.8, ls="--",
                           label=f"{LAYERS[li]} pulses" if k == 0 else None)
        ax.set_title(f"latency {lat:g}", fontsize=9)
        ax.set_xlabel("spike time (time units)")
        ax.legend(fontsize=6)
        # Fig. 9
        j = pick_output_neuron(images[0])
        dec = net.layers[1]
        t = np.linspace(0.0, lat + 2.0, 600)
        v_reg = potential(t, hid[0], dec.weights[j], net.tau)
        v_pul = potential(t, dec.pulse_times, dec.pulse_weights[j], net.tau)
        ts = t_out[0, j]
        before = t <= (ts if np.isfinite(ts) else t[-1])
        add("fig9", lat, "neuron", j)
        add("fig9", lat, "target_time", lat + 1.0 - images[0, j])
        add("fig9", lat, "output_spike_time", ts if np.isfinite(ts) else None)
        add("fig9", lat, "min_potential_before_spike", (v_reg + v_pul)[before].min())
        add("fig9", lat, "min_regular_part_before_spike", v_reg[before].min())
        t_ref = np.array([ts if np.isfinite(ts) else t[-1]])
        reg_at = float(potential(t_ref, hid[0], dec.weights[j], net.tau)[0])
        pul_at = float(potential(t_ref, dec.pulse_times, dec.pulse_weights[j], net.tau)[0])
        add("fig9", lat, "regular_part_at_spike", reg_at)
        add("fig9", lat, "pulse_part_at_spike", pul_at)
        add("fig9", lat, "potential_at_spike", reg_at + pul_at)
        ax = f9.add_subplot(1, len(lats), c + 1)
        ax.plot(t, v_reg + v_pul, "k", label="V")
        ax.plot(t, v_reg, "tab:blue", lw=0.8, label="from hidden")
        ax.plot(t, v_pul, "tab:red", lw=0.8, label="from pulses")
        ax.axhline(net.theta, color="gray", ls=":", label="theta")
        if np.isfinite(ts):
            ax.axvline(ts, color="tab:green", ls="--", label="output spike")
        ax.set_title(f"latency {lat:g}, output neuron {j}", fontsize=9)
        ax.set_xlabel("time (time units)")
        ax.legend(fontsize=6)
        # Fig. 10
        for li, layer in enumerate(net.layers):
            for kind, w in (("regular", layer.weights), ("pulse", layer.pulse_weights)):
                add("fig10", lat, f"{LAYERS[li]}_{kind}_weight_mean", w.mean())
                add("fig10", lat, f"{LAYERS[li]}_{kind}_weight_negative_fraction", (w < 0).mean())
            a = ax10[li, c]
            lo, hi = np.percentile(np.concatenate([layer.weights.ravel(), layer.pulse_weights.ravel()]), [0.5, 99.5])
            b = np.linspace(lo, hi, 50)
            a.hist(np.clip(layer.weights.ravel(), lo, hi), bins=b, alpha=0.6, density=True, label="regular")
            a.hist(np.clip(layer.pulse_weights.ravel(), lo, hi), bins=b, alpha=0.6, density=True, label="pulses")
            a.set_title(f"latency {lat:g}, {LAYERS[li]}", fontsize=9)
            a.legend(fontsize=6)
    for f, title in ((f8, "Fig. 8: spike-time distributions (MNIST test, hidden 32, noise 0)"),
                     (f9, "Fig. 9: output potential, test item 0"), (f10, "Fig. 10: weight distributions")):
        f.suptitle(title, fontsize=9)
        f.tight_layout()

    val = {(r["latency"], r["quantity"]): r["value"] for r in rows}
    md = ["# Figs. 8-10: spike times, output potentials and weights at latency " + " vs ".join(f"{l:g}" for l in lats),
          "", settings_line(settings, test.source, runs), "",
          "| quantity | " + " | ".join(f"latency {l:g}" for l in lats) + " |", "|---|" + "---|" * len(lats)]
    for q in dict.fromkeys(r["quantity"] for r in rows):
        md.append(f"| {q} | " + " | ".join("-" if val.get((l, q)) is None else f"{val[(l, q)]:.4g}" for l in lats)
                  + " |")
    lo_l, hi_l = min(lats), max(lats)
    if hi_l > lo_l:
        def cmp(q):
            a, b = val.get((lo_l, q)), val.get((hi_l, q))
            return None if a is None or b is None else b > a
        late = [cmp(f"{n}_pulse_mean_time") for n in LAYERS]
        inhib = [val.get((hi_l, f"{n}_regular_weight_mean")) for n in LAYERS]
        excit = [val.get((hi_l, f"{n}_pulse_weight_mean")) for n in LAYERS]
        hid_med, out_med = val.get((hi_l, "hidden_median_time")), val.get((hi_l, "outputs_median_time"))
        def g(lat, q):
            return val.get((lat, q))

        reg_min, pul_at = g(hi_l, "min_regular_part_before_spike"), g(hi_l, "pulse_part_at_spike")
        md += ["", "Paper's claims, and Ours:",
               f"- Paper: at latency {hi_l:g} the pulses move late. Ours: mean pulse time later than at latency "
               f"{lo_l:g} in {sum(bool(x) for x in late)}/2 layers (encoder {g(lo_l, 'encoder_pulse_mean_time'):.3f}"
               f" -> {g(hi_l, 'encoder_pulse_mean_time'):.3f}, decoder {g(lo_l, 'decoder_pulse_mean_time'):.3f}"
               f" -> {g(hi_l, 'decoder_pulse_mean_time'):.3f} time units).",
               "- Paper: hidden spikes stay early. Ours: median hidden spike time "
               + (f"{hid_med:.3f} vs median output time {out_med:.3f} at latency {hi_l:g}."
                  if hid_med is not None and out_med is not None else "not measurable (no spikes)."),
               f"- Paper: regular weights turn inhibitory at latency {hi_l:g}, pulses are excitatory. Ours: mean "
               f"regular weight < 0 in {sum(w is not None and w < 0 for w in inhib)}/2 layers "
               f"({', '.join(f'{w:.3g}' for w in inhib)}); pulse weights excitatory (mean > 0) in "
               f"{sum(w is not None and w > 0 for w in excit)}/2 layers ({', '.join(f'{w:.3g}' for w in excit)}).",
               f"- Paper (Fig. 9, latency {hi_l:g}): an initial negative response, then the pulses drive the "
               f"output spike. Ours: minimum of the part from hidden spikes before the output spike {reg_min:.3g}; "
               f"theta = {nets[hi_l].theta:.3g} (at the spike: hidden part {g(hi_l, 'regular_part_at_spike'):.3g}, "
               f"pulse part {pul_at:.3g})" + (": consistent." if reg_min < 0 < pul_at else ": not seen in this model.")]
    paths = write_outputs(out, {"fig8.png": png_bytes(f8), "fig9.png": png_bytes(f9), "fig10.png": png_bytes(f10),
                                "fig8_10.csv": csv_text(rows, FIELDS), "fig8_10.md": "\n".join(md) + "\n"})
    return {"rows": rows, "paths": paths}
