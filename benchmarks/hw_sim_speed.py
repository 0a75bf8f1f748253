"""Images per second of hw_sim versus lava-fixed on the same compiled MNIST autoencoder (spikes must be identical).

    .venv/bin/python benchmarks/hw_sim_speed.py [--model runs/mnist-h32/model.onnx] [--lava-samples 20]
                                                [--samples 10000] [--threads N] [--full-verify]

* lava-fixed runs the first ``--lava-samples`` test images in one chunk (timing includes building and starting the
  Lava processes: what a user waits for); hw_sim runs ``--samples`` images three times, the median counts (its
  one-off numba compilation, seconds, is done first and reported separately as ``hw_sim_compile_s``).
* ``identical``: hw_sim's first-spike columns and spike counts equal lava-fixed's on every neuron of every layer
  for the images both ran.
* ``--full-verify`` also times ``snnc verify MODEL --targets hw_sim --dataset mnist --limit 10000`` end to end in a
  fresh process (imports, exact reference, hw_sim, comparison, report), the figure the < 20 s goal refers to.

The model defaults to runs/mnist-h32/model.onnx when it exists, else a seeded random untrained 784-32-784
(benchmarks/bench_common.py). Datasets come from $SNNC_DATA (or the bundled subset, which has fewer images).
The last line of stdout is a JSON object: hw_sim_images_per_s, lava_fixed_images_per_s, ratio, identical, ...

**LIF (steps) models** (issue [E] section 4): ``--model M.onnx`` of a format-2 steps graph (e.g. written by
``snnc train rate``) or ``--model random-lif`` (a seeded random untrained 784-196-784 LIF autoencoder, leak 0.9,
threshold 1, clamp, as Roy et al. 2019's MNIST network; T = 15, p_scale 0.3) compares ``hw_sim-lif`` with
``lava-fixed-lif`` on the model's Bernoulli inputs (its recorded T and p_scale; seed ``--seed``):

    .venv/bin/python benchmarks/hw_sim_speed.py --model random-lif [--lava-samples 200] [--samples 10000]
        [--threads N] [--weight-bits 8|9] [--weight-blocks 1|2] [--range worst-case|calibrated
        [--calibration-samples 200]] [--repeats 5] [--malloc keep|default]

* lava-fixed-lif runs ``--lava-samples`` images (default 200 for LIF models, so that Lava's start-up is amortised)
  in one chunk, and 1 image on its own (after a first, untimed run that pays the one-off imports):
  ``lava_fixed_startup_s`` is that single run's wall time and
  ``ratio_excluding_startup`` compares hw_sim with Lava's marginal time per image,
  (wall(N) - wall(1)) / (N - 1). ``ratio`` (total wall times, start-up included) is the headline figure.
* ``identical``: hw_sim-lif's spike trains equal lava-fixed-lif's, every layer, step and neuron, for the images
  both ran.
* hw_sim-lif runs ``--samples`` images once cold (``hw_sim_cold_s``: the first time the process allocates its
  output trains) and then ``--repeats`` times (default 5); ``hw_sim_s`` is the median of those (``hw_sim_runs_s``
  lists them), the throughput of a process that keeps running. ``--malloc keep`` (default) makes glibc keep freed
  memory in the process (``mallopt(M_MMAP_MAX, 0)``, ``mallopt(M_TRIM_THRESHOLD, 2**31 - 1)``, set before the
  model and the inputs are loaded): the repeated runs then reuse the pages of the previous run's trains instead
  of faulting in fresh ones, which on this VM (Firecracker; freed guest pages are reported to the host) cost up
  to 28 us of system CPU per image at one thread (measured 2026-11-29), and more wall time outside the guest's
  accounting. ``--malloc default`` leaves glibc as it is (large arrays mmap'ed and unmapped on free).
* ``hw_sim_cpu_s``: median CPU seconds (user + system, all threads) of the repeated runs, ``hw_sim_sys_s`` the
  system part (page faults); ``first_touch_us_per_image``: CPU microseconds per image to allocate and first write
  as many bytes as hw_sim-lif returns (``hw_sim_output_bytes_per_image``: the trains; first-spike times are
  computed only when read), i.e. what a run pays in page faults when its memory is fresh (with ``--malloc keep``
  the allocation reuses kept pages, so this is then the cost of writing them).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_common import ROOT, load_inputs, load_model

from targets.registry import get_target
from toolchain.compiler import DEFAULT_STEPS_PER_UNIT, compile_network
from toolchain.malloc_tuning import M_MMAP_MAX, M_TRIM_THRESHOLD, set_mallopt

TRAINED = ROOT / "runs" / "mnist-h32" / "model.onnx"
KEEP_FREED = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))  # --malloc keep: no mmap, no trimming


def time_full_verify(model_path: str | None, net, limit: int, steps_per_unit: int) -> dict:
    """Wall time of `snnc verify MODEL --targets hw_sim --dataset mnist --limit N` in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        if model_path is None:  # the random model has no file yet: write it as the ONNX artifact
            from toolchain.artifact import save_onnx

            model_path = str(Path(tmp) / "model.onnx")
            save_onnx(net, model_path)
        cmd = [sys.executable, "-m", "toolchain.cli", "verify", model_path, "--targets", "hw_sim", "--dataset",
               "mnist", "--limit", str(limit), "--steps-per-unit", str(steps_per_unit), "--out",
               str(Path(tmp) / "report")]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    print(proc.stdout.strip(), flush=True)
    if proc.returncode not in (0, 1):  # 1 = a gate failed: still a timing
        print(proc.stderr, file=sys.stderr)
        raise SystemExit(f"snnc verify failed with exit code {proc.returncode}")
    return {"full_verify_s": wall, "full_verify_images": limit, "full_verify_exit_code": proc.returncode,
            "full_verify_command": " ".join(["snnc"] + cmd[3:])}


def is_steps_onnx(path: str) -> bool:
    """True for an ONNX artifact of format 2 whose graph time is 'steps' (a LIF model)."""
    import onnx

    if not Path(path).is_file():
        return False
    props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    return props.get("snnc.format_version") == "2" and props.get("snnc.time") == "steps"


def random_lif(hidden: int = 196, seed: int = 0):
    """Seeded random untrained 784-hidden-784 LIF autoencoder (weights as benchmarks/lif_targets.py: both layers
    spike), with the metadata a rate model records (T = 15, p_scale 0.3)."""
    from toolchain.ir import LIF, lif_chain

    rng = np.random.default_rng(seed)
    return lif_chain([rng.normal(0.01, 0.06, (hidden, 784)), rng.normal(0.02, 0.15, (784, hidden))],
                     [LIF(hidden, 0.9, clamp=True), LIF(784, 0.9, clamp=True)],
                     {"steps": 15, "p_scale": 0.3, "encoding": "bernoulli", "dataset": "mnist",
                      "benchmark": f"random-untrained 784-{hidden}-784 seed {seed}"})


def first_touch_us(n_bytes: int, n_images: int, reps: int = 3) -> float:
    """Median CPU microseconds per image to allocate and first write ``n_bytes`` (hw_sim-lif's output trains and
    first-spike times): the share of a run that is page faults, not emulation. On a VM that returns freed memory
    to its host (virtio-balloon free page reporting) this grows when memory was freed a few seconds earlier."""
    cpu = []
    for _ in range(reps):
        c0 = time.process_time()
        buf = np.empty(n_bytes, dtype=np.uint8)
        buf.fill(1)
        cpu.append(time.process_time() - c0)
        del buf
    return float(np.median(cpu)) / n_images * 1e6


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory in the process (no mmap for large blocks, no trimming of the heap top), so that
    a repeated allocation reuses pages already faulted in; False where that is not glibc."""
    done = set_mallopt(KEEP_FREED, respect_env=False)
    return done is not None and len(done) == len(KEEP_FREED)


def lif_main(args) -> None:
    """hw_sim-lif versus lava-fixed-lif on a steps model (see the module docstring); prints the JSON line."""
    from models.datasets import load_dataset
    from models.rate_encoding import bernoulli_encode
    from toolchain.steps_compiler import compile_graph

    if args.model == "random-lif":
        graph, desc = random_lif(), "random untrained 784-196-784 LIF (seed 0, leak 0.9, clamp)"
    else:
        from toolchain.artifact_graph import load_graph

        graph, desc = load_graph(args.model), args.model
    steps, p_scale = int(graph.metadata.get("steps", 15)), float(graph.metadata.get("p_scale", 0.3))
    if args.range == "calibrated":
        from toolchain.steps_calibration import training_input_spikes

        xc, source = training_input_spikes(graph, args.dataset, args.calibration_samples, steps, None)
        cs = compile_graph(graph, steps, weight_bits=args.weight_bits, range_mode="calibrated",
                           calibration_spikes=xc, calibration_source=source, weight_blocks=args.weight_blocks)
    else:
        cs = compile_graph(graph, steps, weight_bits=args.weight_bits, weight_blocks=args.weight_blocks)
    n = max(args.samples, args.lava_samples)
    images = np.asarray(load_dataset(args.dataset, "test", limit=n).images, dtype=np.float64).reshape(-1, 784)
    x = bernoulli_encode(images, steps, p_scale, np.random.default_rng(args.seed))
    n_hw, n_lava = min(args.samples, x.shape[0]), min(args.lava_samples, x.shape[0])
    out = {"model": desc, "family": "steps", "dataset": args.dataset, "steps": steps, "p_scale": p_scale,
           "weight_bits": args.weight_bits, "range": args.range, "weight_blocks": args.weight_blocks,
           "sizes": [cs.n_in] + [cl.n_out for cl in cs.layers], "cpus": os.cpu_count(), "seed": args.seed}

    hw = get_target("hw_sim-lif", threads=args.threads)
    t0 = time.perf_counter()
    hw.run(cs, x[:2])  # numba compilation (cached on disk after the first run)
    out["hw_sim_compile_s"] = time.perf_counter() - t0

    get_target("lava-fixed-lif", chunk_size=1).run(cs, x[:1])  # one-off imports and Lava's code generation
    t0 = time.perf_counter()
    get_target("lava-fixed-lif", chunk_size=1).run(cs, x[:1])
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    lava = get_target("lava-fixed-lif", chunk_size=n_lava).run(cs, x[:n_lava])
    lava_wall = time.perf_counter() - t0

    t0 = time.perf_counter()
    res = hw.run(cs, x[:n_hw])
    cold = time.perf_counter() - t0
    del res
    walls, cpus, syss = [], [], []
    for _ in range(args.repeats):  # the machine is shared: report the median of the repeated runs
        r0, t0 = os.times(), time.perf_counter()
        res = hw.run(cs, x[:n_hw])
        walls.append(time.perf_counter() - t0)
        r1 = os.times()
        cpus.append(r1.user - r0.user + r1.system - r0.system)
        syss.append(r1.system - r0.system)
        if len(walls) < args.repeats:
            del res
    hw_wall = float(np.median(walls))
    identical = all(np.array_equal(h[:n_lava], l) for h, l in zip(res.trains, lava.trains))
    out_bytes = sum(t.nbytes for t in res.trains)
    out["hw_sim_output_bytes_per_image"] = out_bytes / n_hw
    out["first_touch_us_per_image"] = first_touch_us(out_bytes, n_hw)
    out["hw_sim_cold_s"] = cold
    out["hw_sim_sys_s"] = float(np.median(syss))
    marginal = (lava_wall - startup) / (n_lava - 1)
    out.update({
        "lava_fixed_images": n_lava, "lava_fixed_s": lava_wall, "lava_fixed_images_per_s": n_lava / lava_wall,
        "lava_fixed_startup_s": startup, "lava_fixed_marginal_s_per_image": marginal,
        "hw_sim_images": n_hw, "hw_sim_s": hw_wall, "hw_sim_runs_s": walls, "hw_sim_cpu_s": float(np.median(cpus)),
        "hw_sim_repeats": args.repeats, "malloc": args.malloc, "load_average": list(os.getloadavg()),
        "hw_sim_images_per_s": n_hw / hw_wall, "hw_sim_threads": res.info["threads"],
        "spikes_per_image": [float(t.sum() / max(t.shape[0], 1)) for t in res.trains],
    })
    out["ratio"] = out["hw_sim_images_per_s"] / out["lava_fixed_images_per_s"]
    out["ratio_excluding_startup"] = (out["hw_sim_images_per_s"] * marginal if marginal > 0 else None)
    out["identical"] = bool(identical)
    print(f"lava-fixed-lif {n_lava} images {lava_wall:8.2f} s  {out['lava_fixed_images_per_s']:10.1f} images/s "
          f"(1 image alone {startup:.2f} s)", flush=True)
    print(f"hw_sim-lif     {n_hw} images {hw_wall:8.2f} s  {out['hw_sim_images_per_s']:10.1f} images/s  "
          f"ratio {out['ratio']:.0f}x  identical spikes: {identical}  (cold first run {cold:.2f} s, "
          f"{n_hw / cold:.0f} images/s; malloc {args.malloc})", flush=True)
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None,
                    help="ONNX artifact (default: runs/mnist-h32/model.onnx if present, else seeded random 784-32-784; "
                         "'random' forces the random model)")
    ap.add_argument("--steps-per-unit", type=int, default=DEFAULT_STEPS_PER_UNIT)
    ap.add_argument("--lava-samples", type=int, default=None,
                    help="images run on lava-fixed (slow; default 20, LIF models 200)")
    ap.add_argument("--samples", type=int, default=10000, help="images run on hw_sim")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--threads", type=int, default=None, help="hw_sim threads (default: all usable CPUs)")
    ap.add_argument("--full-verify", action="store_true",
                    help="also time `snnc verify --targets hw_sim` on 10,000 images end to end")
    ap.add_argument("--seed", type=int, default=0, help="LIF models: seed of the Bernoulli inputs (default 0)")
    ap.add_argument("--weight-bits", type=int, default=8, choices=(8, 9), help="LIF models: weight bits (default 8)")
    ap.add_argument("--weight-blocks", type=int, default=2, choices=(1, 2),
                    help="LIF models: Dense blocks per layer (default 2, the compiler's default)")
    ap.add_argument("--range", default="worst-case", choices=("worst-case", "calibrated"),
                    help="LIF models: range mode of the compiler (trained full-MNIST models need 'calibrated')")
    ap.add_argument("--calibration-samples", type=int, default=200,
                    help="LIF models, --range calibrated: training images the ranges are measured on")
    ap.add_argument("--repeats", type=int, default=5,
                    help="LIF models: timed hw_sim-lif runs after the cold one; the median counts (default 5)")
    ap.add_argument("--malloc", default="keep", choices=("keep", "default"),
                    help="LIF models: 'keep' (default) keeps freed memory in the process so that repeated runs "
                         "reuse their output pages; 'default' leaves glibc's allocator as it is")
    args = ap.parse_args()
    if args.model == "random-lif" or (args.model and is_steps_onnx(args.model)):
        if args.full_verify:
            ap.error("--full-verify is for alpha models")
        args.lava_samples = 200 if args.lava_samples is None else args.lava_samples
        if args.lava_samples < 2 or args.samples < 1 or args.repeats < 1:
            ap.error("--lava-samples must be >= 2, --samples and --repeats >= 1 for LIF models")
        if args.malloc == "keep" and not keep_freed_memory():
            ap.error("--malloc keep needs glibc (mallopt); use --malloc default")
        lif_main(args)
        return
    args.lava_samples = 20 if args.lava_samples is None else args.lava_samples
    if args.lava_samples < 1 or args.samples < 1:
        ap.error("--lava-samples and --samples must be >= 1")

    if args.model == "random":
        model_path = None
    else:
        model_path = args.model or (str(TRAINED) if TRAINED.is_file() else None)
    net, desc = load_model(model_path)
    cn = compile_network(net, steps_per_unit=args.steps_per_unit)
    _, x = load_inputs(args.dataset, max(args.samples, args.lava_samples))
    n_hw, n_lava = min(args.samples, x.shape[0]), min(args.lava_samples, x.shape[0])
    out = {"model": desc, "dataset": args.dataset, "steps_per_unit": cn.steps_per_unit, "window": cn.window,
           "sizes": cn.source.sizes, "cpus": os.cpu_count()}

    hw = get_target("hw_sim", threads=args.threads)
    t0 = time.perf_counter()
    hw.run(cn, x[:2])  # numba compilation (cached on disk after the first run)
    out["hw_sim_compile_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    lava = get_target("lava-fixed", chunk_size=n_lava).run(cn, x[:n_lava])
    lava_wall = time.perf_counter() - t0

    walls = []
    for _ in range(3):  # the machine is shared: report the median of three runs (and the first)
        t0 = time.perf_counter()
        res = hw.run(cn, x[:n_hw])
        walls.append(time.perf_counter() - t0)
    hw_wall = float(np.median(walls))
    out["hw_sim_runs_s"] = walls

    identical = all(
        np.array_equal(res.columns[l][:n_lava], lava.columns[l])
        and np.array_equal(res.info["spike_counts"][l][:n_lava], lava.info["spike_counts"][l])
        for l in range(len(cn.layers))
    )
    out.update({
        "lava_fixed_images": n_lava, "lava_fixed_s": lava_wall, "lava_fixed_images_per_s": n_lava / lava_wall,
        "hw_sim_images": n_hw, "hw_sim_s": hw_wall, "hw_sim_images_per_s": n_hw / hw_wall,
        "hw_sim_threads": res.info["threads"],
        "spikes_per_image": [float(v) for v in res.info["counters"]["spikes"].mean(0)],
    })
    out["ratio"] = out["hw_sim_images_per_s"] / out["lava_fixed_images_per_s"]
    out["identical"] = bool(identical)
    print(f"lava-fixed {n_lava} images {lava_wall:8.2f} s  {out['lava_fixed_images_per_s']:10.1f} images/s", flush=True)
    print(f"hw_sim     {n_hw} images {hw_wall:8.2f} s  {out['hw_sim_images_per_s']:10.1f} images/s  "
          f"ratio {out['ratio']:.0f}x  identical spikes: {identical}", flush=True)
    if args.full_verify:
        out.update(time_full_verify(model_path, net, 10000, args.steps_per_unit))
        print(f"snnc verify --targets hw_sim, 10000 images: {out['full_verify_s']:.1f} s", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
