"""The steps compiler's weight-exponent choice on a trained rate (LIF) model: compile_graph(exponent="mantissa")
(the default) against "fine" (two weight blocks, the option), each verified on hw_sim-lif against the float
model: spikes within +-1 step per population, the reconstruction gates, cores, non-zero synapses and energy per
image (hw_sim/conv_resources.py). Ranges as `snnc verify --range calibrated` (margin 0.5).

    SNNC_DATA=/path/to/datasets python benchmarks/steps_exponent.py MODEL.onnx [N] [BITS] [DATASET] [CALIB]

N test images (default 1000), BITS 8 (default) or 9, DATASET mnist (default, p_scale 0.3 when the model does not
record one) or fashion-mnist, CALIB training images for the ranges (default 200). Conv graphs (issue [F]) go
through compile_conv_graph, whose exponent choice applies to their unsplit Dense layers. One line per choice, then a JSON line with both.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hw_sim.conv_resources import conv_energy, conv_partition  # noqa: E402
from targets.registry import get_target  # noqa: E402
from toolchain.artifact_graph import load_graph  # noqa: E402
from toolchain.cli_steps import _range_options, steps_inputs  # noqa: E402
from toolchain.conv_compiler import as_compiled_conv, compile_conv_graph, needs_conv_compiler  # noqa: E402
from toolchain.steps_compiler import compile_graph  # noqa: E402
from toolchain.verify_trains import verify_steps  # noqa: E402


def main() -> int:
    model = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    bits = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    ds = sys.argv[4] if len(sys.argv) > 4 else "mnist"
    calib = int(sys.argv[5]) if len(sys.argv) > 5 else None
    g = load_graph(model)
    t = int(g.metadata["steps"])
    p_scale = g.metadata.get("p_scale") or (0.3 if ds == "mnist" else None)
    args = argparse.Namespace(range_mode="calibrated", calibration_samples=calib, calibration_dataset=ds,
                              range_margin=None, p_scale=p_scale, seed=0, data_dir=None, limit=n, split="test",
                              dataset=ds, time_steps=None, noise=0.0)
    kw = _range_options(g, t, args)
    out = {"model": model, "images": n, "weight_bits": bits, "dataset": ds}
    for exp in ("mantissa", "fine"):
        c0 = time.process_time()
        compiler = compile_conv_graph if needs_conv_compiler(g) else compile_graph    # conv graphs: issue [F]
        cs = compiler(g, t, exponent=exp, weight_bits=bits, **kw)
        images, x, _ = steps_inputs(cs, args)
        run = get_target("hw_sim-lif").run(cs, x)
        rep = verify_steps(cs, x, images, {"hw_sim-lif": run}, tolerance=1)
        cc = as_compiled_conv(cs)
        res = conv_partition(cc, strict=False)[0]
        energy = conv_energy(cc, x, run.trains).to_dict()["energy_per_sample_nJ"]["mean"]
        r = {"passed": rep.passed, "weight_exp": [cl.weight_exp for cl in cs.layers],
             "kind": [getattr(cl, "kind", "dense") for cl in cs.layers],
             "scale_median": [int(np.median(cl.scale)) for cl in cs.layers],
             "gates": {f"{g_.name}[{g_.layer}]": round(float(g_.value), 5) for g_ in rep.targets[0].gates},
             "cores": res.cores, "nonzero_synapses": res.nonzero_synapses, "energy_per_image_nJ": round(energy, 1),
             "cpu_s": round(time.process_time() - c0, 1)}
        print(exp, json.dumps(r), flush=True)
        out[exp] = r
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
