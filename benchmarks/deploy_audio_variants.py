"""Deployable variants of a trained audiocoder + decoder and their cost (`snnc audio-deploy` = models/cli_audio.
audio_deploy): per variant cores, chips, non-zero synapses, synaptic memory, energy and inter-chip traffic per clip,
the deployed (hw_sim-lif) test MSE / nearest class next to the unpruned float model's, spikes within +-1 step of the
float model per population, and each layer alone (its own error).

    SNNC_DATA=/path/to/datasets python benchmarks/deploy_audio_variants.py RUN [N] [VARIANT ...]

N test clips (default 300). A VARIANT is comma-separated key=value of audio_deploy options: prune (fraction),
layers (prune layers joined by +, e.g. fc0+fc1+decoder), bits (8 or 9), blocks (1 or 2), margin (range margin),
chips, exp (weight exponent choice: fine, the default, or mantissa); "base" = the defaults (fine exponent,
margin 0.5 as the compiler's). Default variants: base
prune=0.5 prune=0.8 prune=0.9. Features are cached in
runs/cache ($SNNC_AUDIO_CACHE overrides). Last line: JSON with one entry per variant (and wall / CPU seconds).
"""
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.cli_audio import audio_deploy  # noqa: E402

KEYS = {"prune": ("prune", float), "layers": ("prune_layers", lambda v: tuple(v.split("+"))),
        "bits": ("weight_bits", int), "blocks": ("weight_blocks", int), "margin": ("range_margin", float),
        "chips": ("chips", int), "exp": ("exponent", str)}


def options(variant: str) -> dict:
    out = {}
    for item in filter(None, variant.split(",")):
        if item == "base":
            continue
        key, _, val = item.partition("=")
        if key not in KEYS:
            raise SystemExit(f"unknown variant key {key!r}; use {', '.join(KEYS)}")
        name, conv = KEYS[key]
        out[name] = conv(val)
    return out


def main() -> int:
    run = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    variants = sys.argv[3:] or ["base", "prune=0.5", "prune=0.8", "prune=0.9"]
    out = {"model": run, "clips": n, "variants": {}}
    for v in variants:
        c0, t0 = time.process_time(), time.perf_counter()
        r = audio_deploy(run, clips=n, cache_dir=os.environ.get("SNNC_AUDIO_CACHE", "runs/cache"), **options(v))
        res = {k: r[k] for k in ("cores", "chips", "nonzero_synapses", "synaptic_memory_kib", "storage",
                                 "energy_per_clip_nJ", "blocks_used", "exponent", "scales", "range_margin",
                                 "range_events", "passed")}
        res.update(inter_chip_spikes=r["inter_chip"]["inter_chip_spikes_per_sample"],
                   scores=r.get("scores"), matched_within_1=r["targets"]["hw_sim-lif"]["matched_within_1"],
                   layers_alone={d["layer"]: round(d["matched_1"], 5) for d in r["layers_alone"]},
                   decoder_flips=r["decoder_flips"], failed_gates=r["failed_gates"][:3],
                   wall_s=round(time.perf_counter() - t0, 1), cpu_s=round(time.process_time() - c0, 1))
        out["variants"][v] = res
        print(v, json.dumps(res), flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
