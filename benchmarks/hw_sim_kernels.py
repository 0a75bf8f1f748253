"""CPU seconds of hw_sim's numba kernels on one thread, and a digest of everything they return, to compare two
versions of hw_sim (e.g. before / after a refactoring: the digests must be equal, the times no higher):

    NUMBA_NUM_THREADS=1 .venv/bin/python benchmarks/hw_sim_kernels.py [--repeats 9]

* ``lif_blocks1`` / ``lif_blocks2``: ``simulate_lif`` (hw_sim/lif.py) on benchmarks/hw_sim_speed.py's seeded random
  784-196-784 LIF autoencoder compiled with one / two weight blocks, 2,000 random Bernoulli samples of 15 steps;
* ``conv_mnist``: ``run_conv_fixed`` (hw_sim/conv.py) on the tiny 28 x 28 conv autoencoder of tests/conv_nets.py,
  300 samples of 10 steps;
* ``conv_<scale>_<strided>_<blocks>``: the 12 x 12 conv autoencoder of tests/conv_nets.py (4 and 6 channels) with
  weights of that scale, 1,000 samples of 12 steps; the ``1.0`` cases and the stride-1 case are compiled with
  ranges calibrated on sparse inputs and run on dense ones, so that their steps take the paths with range events
  (``events_...``: per layer, the four counters summed over samples).

Each figure is the minimum CPU time (``time.process_time``) of ``--repeats`` runs after one untimed run (numba
compilation). The last line of stdout is a JSON object with the figures, ``digest`` (SHA-256 prefix of every
train, Readout current and event count) and the load average.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np
from bench_common import ROOT
from hw_sim_speed import random_lif

sys.path.insert(0, str(ROOT / "tests"))
from conv_nets import conv_autoencoder, input_trains, mnist_conv_autoencoder  # noqa: E402

from hw_sim.conv import run_conv_fixed  # noqa: E402
from hw_sim.lif import simulate_lif  # noqa: E402
from toolchain.conv_compiler import compile_conv_graph  # noqa: E402
from toolchain.steps_compiler import compile_graph  # noqa: E402


def min_cpu(fn, repeats: int):
    """(result of a first, untimed call, minimum CPU seconds of ``repeats`` further calls)."""
    result = fn()
    times = []
    for _ in range(repeats):
        c0 = time.process_time()
        fn()
        times.append(time.process_time() - c0)
    return result, min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=9, help="timed runs per case; the minimum counts (default 9)")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    digest = hashlib.sha256()
    out: dict = {}
    rng = np.random.default_rng(0)

    graph = random_lif()
    x = (rng.random((2000, 15, 784)) < 0.3 * rng.random((2000, 1, 784))).astype(np.uint8)
    for blocks in (1, 2):
        cs = compile_graph(graph, 15, weight_bits=8, weight_blocks=blocks)
        run, out[f"lif_blocks{blocks}"] = min_cpu(lambda: simulate_lif(cs, x, threads=1), args.repeats)
        for t in run.trains:
            digest.update(t.tobytes())
        digest.update(json.dumps(run.events).encode())

    def conv_case(name: str, cc, xs) -> None:
        (trains, pots, events), out[name] = min_cpu(lambda: run_conv_fixed(cc, xs, threads=1), args.repeats)
        for a in trains + [p for p in pots if p is not None]:
            digest.update(a.tobytes())
        digest.update(json.dumps(events).encode())
        out[f"events_{name}"] = [[e[k] for k in sorted(e)] for e in events]

    conv_case("conv_mnist", compile_conv_graph(mnist_conv_autoencoder(np.random.default_rng(1)), 10),
              (rng.random((300, 10, 784)) < 0.2).astype(np.uint8))
    for scale, strided, blocks in ((0.3, True, 2), (0.3, False, 1), (1.0, True, 1), (1.0, False, 2), (1.0, False, 1)):
        g = conv_autoencoder(np.random.default_rng(2), c1=4, c2=6, latent=10, scale=scale, strided=strided)
        kw: dict = {"weight_blocks": blocks}
        dense = scale >= 1 or not strided
        if dense:
            kw.update(range_mode="calibrated",
                      calibration_spikes=input_trains(np.random.default_rng(4), n=20, p=0.05))
        conv_case(f"conv_{scale}_{strided}_{blocks}", compile_conv_graph(g, 12, **kw),
                  input_trains(np.random.default_rng(3), n=1000, p=0.9 if dense else 0.6))
    out.update(digest=digest.hexdigest()[:16], repeats=args.repeats, load_average=list(os.getloadavg()),
               numba_threads=int(os.environ.get("NUMBA_NUM_THREADS", "0")) or None)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
