"""The leak's share of the deployed audiocoder + decoder's moved spikes (docs/audio.md, "The decoder's +-1 step
gate"): one deployment (`snnc audio-deploy`'s defaults: fine exponent, margin 0.1, hw_sim-lif, all N test clips),
its spikes matched within 0 and +-1 step against

- the float model (the model's own leaks: the audiocoder's, 0.9 or with --leak chip 3686/4096; the decoder's 0.9),
- the same weights with the chip's leak in the audiocoder (toolchain.quantize.realised_leak),
- the same weights with the chip's leak in the decoder too,

and those float models against each other (the leak alone). Per population hidden / code / decoder.

    SNNC_DATA=/path/to/datasets python benchmarks/deploy_audio_leak.py RUN [N] [MARGIN]

Features are cached in runs/cache ($SNNC_AUDIO_CACHE overrides). Last line: JSON.
"""
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.audio_deploy import deploy_check, joint_graph  # noqa: E402
from models.audio_model import load_audiocoder  # noqa: E402
from models.cochleagram import FeatureSpec, load_features  # noqa: E402
from targets.lif_float import FloatStepsTarget  # noqa: E402
from toolchain.quantize import realised_leak  # noqa: E402
from toolchain.spike_metrics import match_spikes  # noqa: E402


def main() -> int:
    run = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    margin = float(sys.argv[3]) if len(sys.argv) > 3 else None
    cache = os.environ.get("SNNC_AUDIO_CACHE", "runs/cache")
    c0 = time.process_time()
    ac = load_audiocoder(run)
    spec = FeatureSpec(**ac.meta["spec"])
    dep = deploy_check(ac, load_features("test", spec, cache_dir=cache), n,
                       calibration=load_features("train", spec, cache_dir=cache), range_margin=margin)
    hw = dep.runs["hw_sim-lif"].trains
    chip_ac = dataclasses.replace(ac, meta={**ac.meta, "leak": realised_leak(float(ac.meta.get("leak", 0.9)))})
    chip_all = dataclasses.replace(chip_ac, dec_leak=realised_leak(ac.dec_leak))
    refs = {name: FloatStepsTarget().run(joint_graph(a), dep.inputs).trains
            for name, a in (("float_model", ac), ("chip_leak_audiocoder", chip_ac), ("chip_leak_all", chip_all))}

    def agree(a, b):
        return {f"within_{k}": [round(match_spikes(x, y, k).fraction, 5) for x, y in zip(a, b)] for k in (0, 1)}

    out = {"model": run, "clips": n, "audiocoder_leak": float(ac.meta.get("leak", 0.9)), "decoder_leak": ac.dec_leak,
           "range_margin": (dep.compiled.manifest.get("calibration") or {}).get("margin"),
           "deployed_vs": {name: agree(ref, hw) for name, ref in refs.items()},
           "float_model_vs_chip_leak_audiocoder": agree(refs["float_model"], refs["chip_leak_audiocoder"]),
           "chip_leak_audiocoder_vs_chip_leak_all": agree(refs["chip_leak_audiocoder"], refs["chip_leak_all"]),
           "cpu_s": round(time.process_time() - c0, 1)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
