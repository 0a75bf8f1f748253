"""What hardware-in-the-loop fine-tuning (``snnc finetune``, models/finetune.py) gains on hw_sim, with the verifier's
gates before and after, and a control: the same number of updates of plain float fine-tuning.

    PYTHONPATH=. SNNC_DATA=... python benchmarks/finetune_gain.py --model runs/mnist-h32/model.onnx -S 32 \
        [--limit-train N] [--epochs 1] [--samples 1000] [--control] [--out ft.onnx]
    PYTHONPATH=. SNNC_DATA=... python benchmarks/finetune_gain.py --model runs/rate196/model.onnx \
        --range calibrated [--weight-blocks 1] [--limit-train N] [--samples 1000] [--control]

Alpha models: compile with ``-S`` (and the other options), fine-tune through hw_sim (validation and test figures
on the first ``--samples`` images of each split), then ``toolchain.verifier.verify`` the input and the fine-tuned
model on hw_sim over the same test images. LIF models: the same with ``toolchain.verify_trains.verify_steps``
(hw_sim-lif against the float model). ``--control`` also fine-tunes without the device (alpha: the ``exact``
target, i.e. ordinary exact-gradient training; LIF: the ``float`` target, i.e. surrogate BPTT) with the same
updates and verifies that model, to separate the effect of the device in the loop from that of more training.

Ends with one JSON line: mse_float, mse_deployed_before, mse_exact_after, mse_deployed_after, gates_pass (the
fine-tuned model's), gates_pass_before, failed gates, timings (process CPU seconds) and the control's figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def _images(dataset: str, split: str, limit: int | None) -> np.ndarray:
    from models.datasets import load_dataset

    ds = load_dataset(dataset, split, limit=limit)
    return np.asarray(ds.images, dtype=np.float64).reshape(ds.images.shape[0], -1)


def verify_alpha(net, kw: dict, images: np.ndarray) -> dict:
    from models.encoding import latency_encode
    from toolchain.compiler import compile_network
    from toolchain.verifier import verify

    rep = verify(compile_network(net, **kw), latency_encode(images), images, ["hw_sim"])
    t = rep.targets[0]
    return {"passed": bool(rep.passed), "failed": list(rep.failed_gates()), "mse_exact": rep.exact_mse,
            "mse_deployed": t.mse, "mse_rel_vs_exact": t.mse_rel,
            "p99_dt": max(s.dt_p99 for s in t.layers), "median_dt": max(s.dt_median for s in t.layers),
            "presence": min(s.presence_agreement for s in t.layers)}


def verify_lif(graph, kw: dict, images: np.ndarray, seed: int) -> dict:
    from models.rate_encoding import bernoulli_encode
    from targets.hw_sim_lif import HwSimLifTarget
    from toolchain.steps_compiler import compile_graph
    from toolchain.verify_trains import verify_steps

    t = int(graph.metadata["steps"])
    cs = compile_graph(graph, t, **kw)
    x = bernoulli_encode(images, t, float(graph.metadata["p_scale"]), np.random.default_rng(seed))
    rep = verify_steps(cs, x, images, {"hw_sim-lif": HwSimLifTarget().run(cs, x)}, tolerance=1)
    from toolchain.cli_steps import failed_gates

    return {"passed": bool(rep.passed), "failed": failed_gates(rep), "summary": rep.summary()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model.onnx (alpha or LIF)")
    ap.add_argument("--steps-per-unit", "-S", type=int, default=None, help="alpha: grid S (default the compiler's)")
    ap.add_argument("--range", dest="range_mode", default=None, choices=("worst-case", "calibrated"))
    ap.add_argument("--weight-blocks", type=int, default=None, choices=(1, 2), help="LIF: Dense blocks per layer")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--limit-train", type=int, default=None, help="training images (default all)")
    ap.add_argument("--samples", type=int, default=1000, help="validation and test images (default 1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=None, help="validate every N updates (keep the best)")
    ap.add_argument("--control", action="store_true", help="also fine-tune without the device (see above)")
    ap.add_argument("--out", default=None, help="write the fine-tuned model here")
    args = ap.parse_args()

    from models.finetune import FinetuneOptions
    from toolchain.cli_steps import is_steps_model

    opts = FinetuneOptions(target="hw_sim", epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                           limit_train=args.limit_train, limit_eval=args.samples, seed=args.seed,
                           eval_every=args.eval_every)
    quiet = lambda s: print(s, file=sys.stderr)   # noqa: E731
    lif = is_steps_model(args.model)
    if lif:
        from models.finetune_lif import finetune_lif as finetune
        from targets.lif_float import FloatStepsTarget as Control
        from toolchain.artifact_graph import load_graph, save_graph as save
        from toolchain.steps_calibration import DEFAULT_CALIBRATION_SAMPLES, training_input_spikes

        model = load_graph(args.model)
        kw = {} if args.weight_blocks is None else {"weight_blocks": args.weight_blocks}
        if args.range_mode == "calibrated":
            xc, src = training_input_spikes(model, None, DEFAULT_CALIBRATION_SAMPLES, int(model.metadata["steps"]),
                                            None, 0, None)
            kw.update(range_mode="calibrated", calibration_spikes=xc, calibration_source=src)
        check = lambda m, imgs: verify_lif(m, kw, imgs, args.seed + 2)   # noqa: E731
    else:
        from models.finetune_alpha import finetune_alpha as finetune
        from targets.exact import ExactTarget as Control
        from toolchain.artifact import load_onnx, save_onnx as save
        from toolchain.calibration import DEFAULT_CALIBRATION_SAMPLES, training_input_times

        model = load_onnx(args.model)
        kw = {} if args.steps_per_unit is None else {"steps_per_unit": args.steps_per_unit}
        if args.range_mode == "calibrated":
            times, src = training_input_times(model, None, DEFAULT_CALIBRATION_SAMPLES)
            kw.update(range_mode="calibrated", calibration_times=times, calibration_source=src)
        check = lambda m, imgs: verify_alpha(m, kw, imgs)   # noqa: E731
    dataset = model.metadata.get("dataset", "mnist")
    train = _images(dataset, "train", args.limit_train)
    val, test = _images(dataset, "val", args.samples), _images(dataset, "test", args.samples)

    before = check(model, test)
    c0 = time.process_time()
    tuned, m = finetune(model, kw, train, val, test, opts, quiet)
    cpu = time.process_time() - c0
    after = check(tuned, test)
    if args.out:
        save(tuned, args.out)
    result = {"model": args.model, "family": m["family"], "compile_options": m["compile_options"],
              "n_train": m["n_train"], "samples": args.samples, "epochs": args.epochs, "updates": m["updates"],
              "lr": m.get("lr", m.get("lr_weights")), "batch_size": m["batch_size"],
              "mse_float": m["mse_float"], "mse_deployed_before": m["mse_deployed_before"],
              "mse_exact_after": m["mse_exact_after"], "mse_deployed_after": m["mse_deployed_after"],
              "gates_pass_before": before["passed"], "failed_before": before["failed"],
              "gates_pass": after["passed"], "failed_after": after["failed"], "verify_before": before,
              "verify_after": after, "finetune_cpu_s": round(cpu, 1), "best_epoch": m["best_epoch"],
              "best_updates": m["best_updates"], "history": m["history"]}
    if args.control:
        c0 = time.process_time()
        ctl, mc = finetune(model, kw, train, val, test, opts, quiet, runner=Control())
        result["control"] = {"cpu_s": round(time.process_time() - c0, 1), "mse_exact_after": mc["mse_exact_after"],
                             "verify": check(ctl, test)}
    print(json.dumps(result, default=float))


if __name__ == "__main__":
    main()
