"""Chips, cores and inter-chip traffic of the paper-size audiocoder + decoder (58,500-2,048-196-784; issue [G]),
which is not trained here: the resource model of models/audio_deploy.chip_resources (fan-in split into 15 relay
groups, cores filling Loihi-2-like chips in layer order) and hw_sim/multichip.traffic_estimate at given activity.

    python benchmarks/deploy_audio_paper.py [RUN] [--input-rate R]

Rates (spikes per neuron and step): input 65.2 / 58,500 (measured on the FSDD features, docs/audio.md); hidden,
code and decoder from the float model of a trained small-front-end RUN on its first 50 test clips (SNNC_DATA needed;
without RUN: 0.02, 0.25, 0.02). Variants: 1 and 2 weight blocks, dense storage; 90 % of fc0 pruned with sparse
storage. Last line: JSON.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from hw_sim.multichip import traffic_estimate  # noqa: E402
from models.audio_deploy import chip_resources, shape_net  # noqa: E402

N_IN, HIDDEN, CODE, IMG = 58_500, 2048, 196, 784


def measured_rates(run: str, clips: int = 50) -> list[float]:
    from models.audio_deploy import clip_trains, joint_graph
    from models.audio_model import load_audiocoder
    from models.cochleagram import FeatureSpec, load_features
    from toolchain.lif_reference import simulate

    ac = load_audiocoder(run)
    test = load_features("test", FeatureSpec(**ac.meta["spec"]), cache_dir="runs/cache")
    x = clip_trains(ac, test, range(min(clips, len(test))), 8)
    return [float(np.mean(s)) for s in simulate(joint_graph(ac), x).spikes]


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    in_rate = 65.2 / N_IN
    if "--input-rate" in sys.argv:
        in_rate = float(sys.argv[sys.argv.index("--input-rate") + 1])
        args = [a for a in args if a != str(sys.argv[sys.argv.index("--input-rate") + 1])]
    pops = measured_rates(args[0]) if args else [0.02, 0.25, 0.02]
    rates = [in_rate] + pops
    out = {"network": f"{N_IN}-{HIDDEN}-{CODE}-{IMG}", "rates": rates, "steps": 30,
           "rates_source": f"input 65.2 / 58,500; populations: float model of {args[0]}" if args else "assumed"}
    variants = {"blocks=1": dict(weight_blocks=1), "blocks=2": dict(weight_blocks=2),
                "blocks=2, fc0 90 % pruned, sparse": dict(weight_blocks=2, storage="sparse",
                                                          nonzero=(int(N_IN * HIDDEN * 2 * 0.1), None, None))}
    for name, kw in variants.items():
        rep, assign = chip_resources(N_IN, HIDDEN, CODE, IMG, **kw)
        net = shape_net(N_IN, HIDDEN, CODE, IMG, weight_blocks=kw["weight_blocks"],
                        nonzero=kw.get("nonzero", (None, None, None)))
        tr = traffic_estimate(net, assign, rates, 30)
        out[name] = {"cores": rep.cores, "chips": assign.chips, "cores_per_chip": list(assign.cores_per_chip),
                     "layer_cores": {lr.name: lr.cores for lr in rep.layers},
                     "layer_chips": {lp.name: assign.layer_chips(k) for k, lp in enumerate(assign.layers)},
                     "relay_groups": net.layers[0].fan_in_groups,
                     "synaptic_memory_mib": rep.synaptic_memory_bits / 8 / 2**20,
                     **tr.to_dict()}
        print(name, json.dumps(out[name]), flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
