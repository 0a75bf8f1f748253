"""``snnc finetune``: hardware-in-the-loop quantization-aware fine-tuning (models/finetune.py, docs/finetune.md).

    snnc finetune MODEL --target hw_sim|hil [--steps-per-unit S] [--epochs N] [--lr LR] -o OUT

MODEL is a model.onnx of either family: alpha (temporal, ``snnc train temporal``; compile options as for
``snnc compile`` of alpha models) or LIF (rate, ``snnc train rate``; steps compile options). OUT is the fine-tuned
model file, same format and family, written atomically; its metadata ``finetune`` holds the before/after figures,
which are also printed as one JSON line on stdout. Every bad input exits 2 before any training step runs.
"""
from __future__ import annotations

import argparse
import json
import sys

EXAMPLES = """examples:
  snnc finetune runs/mnist-h32/model.onnx --target hw_sim -S 32 --epochs 1 -o runs/mnist-h32/ft32.onnx
  snnc verify runs/mnist-h32/ft32.onnx --targets hw_sim -S 32 --limit 1000      # deploy it with the same -S
  snnc finetune runs/mnist-h32/model.onnx --target hil --limit-train 2000 -o runs/ft-hil.onnx
  snnc finetune runs/rate196/model.onnx --target hw_sim --range calibrated --weight-blocks 1 -o runs/rate-ft.onnx

the forward pass of every batch runs on the deployed integer network (hw_sim, or the hil loopback device: a
private one is started, or -O port=7341 for a running `snnc device serve`); gradients come from the float model
at the deployed spikes (exact for alpha models, surrogate for LIF models). Compile the result with the same
options you fine-tuned with.
"""

LIF_ONLY = {"time_steps": "--time-steps", "weight_blocks": "--weight-blocks"}


def _target_option(text: str) -> tuple[str, object]:
    from models.finetune import FinetuneError

    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise FinetuneError(f"target option {text!r} is not KEY=VALUE; e.g. -O port=7341 or -O threads=1")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def _options(args):
    from models.finetune import FinetuneOptions

    return FinetuneOptions(target=args.target, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                           compile_every=args.compile_every, limit_train=args.limit_train,
                           limit_eval=args.limit_eval, seed=args.seed, eval_every=args.eval_every,
                           target_options=dict(_target_option(t) for t in args.target_option))


def _alpha_compile_kw(net, args) -> dict:
    """compile_network keywords from the CLI's compile options (toolchain/cli_deploy.py's flags)."""
    from toolchain.calibration import DEFAULT_CALIBRATION_SAMPLES, training_input_times
    from toolchain.cli_deploy import _compile_kwargs
    from toolchain.errors import CompileError

    given = [flag for dest, flag in LIF_ONLY.items() if getattr(args, dest, None) is not None]
    if given:
        raise CompileError(f"{', '.join(given)} apply to steps (LIF) models only; this is an alpha (temporal) "
                           f"model: drop them (alpha models take --steps-per-unit, --weight-bits, --threshold, ...)")
    kw = _compile_kwargs(args)
    kw.pop("data_dir", None)
    samples = kw.pop("calibration_samples", None)
    dataset = kw.pop("calibration_dataset", None)
    if kw.get("range_mode") == "calibrated":
        times, source = training_input_times(net, dataset, samples or DEFAULT_CALIBRATION_SAMPLES, args.data_dir)
        kw.update(calibration_times=times, calibration_source=source)
    return kw


def _lif_compile_kw(graph, args) -> dict:
    from toolchain.cli_steps import _range_options, _refuse_alpha_options

    _refuse_alpha_options(args)
    if getattr(args, "time_steps", None) is not None:
        from models.finetune import FinetuneError

        raise FinetuneError("--time-steps: fine-tuning runs the model's recorded steps per sample (metadata "
                            "'steps'); drop --time-steps")
    kw = {}
    for name in ("weight_bits", "threshold", "weight_blocks"):
        if getattr(args, name, None) is not None:
            kw[name] = getattr(args, name)
    kw.update(_range_options(graph, int(graph.metadata.get("steps") or 0), args))
    return kw


def _images(dataset: str, split: str, limit: int | None, args):
    import numpy as np

    from models.datasets import load_dataset

    ds = load_dataset(dataset, split, data_dir=args.data_dir, limit=limit)
    return np.asarray(ds.images, dtype=np.float64).reshape(ds.images.shape[0], -1)


def _dataset(meta: dict, args) -> str:
    from models.finetune import FinetuneError

    if args.dataset:
        return args.dataset
    ds = meta.get("dataset")
    if ds not in ("mnist", "fashion-mnist"):
        raise FinetuneError(f"the model records dataset {ds!r}, which snnc cannot load; pass --dataset "
                            f"(mnist or fashion-mnist)")
    return ds


def _check_sizes(n_in: int, n_out: int, n_px: int, dataset: str) -> None:
    from toolchain.errors import DataError

    if n_in != n_px or n_out != n_px:
        raise DataError(f"the model is {n_in}-...-{n_out} but {dataset} images have {n_px} pixels; fine-tune an "
                        f"autoencoder {n_px}-...-{n_px}")


def _cmd_finetune(args: argparse.Namespace) -> int:
    from pathlib import Path

    from toolchain.atomic import check_output_path
    from toolchain.cli_steps import is_steps_model
    from toolchain.errors import ArtifactError

    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr))
    model = Path(args.model)
    if not model.is_file():
        raise ArtifactError(f"model file {model} does not exist; pass a model.onnx written by `snnc train`")
    if model.suffix == ".npz":
        raise ArtifactError(f"{model} is a compiled network; fine-tuning changes the float parameters: pass the "
                            f"model.onnx it was compiled from")
    out = check_output_path(args.out, "file", "--out")
    if out.resolve() == model.resolve():
        raise ArtifactError(f"--out {out} is the input model; write the fine-tuned model to another file")
    options = _options(args)
    if is_steps_model(model):
        from models.finetune import target_name
        from models.finetune_lif import finetune_lif
        from toolchain.artifact_graph import load_graph, save_graph

        target_name("lif", options.target)
        graph = load_graph(model)
        kw = _lif_compile_kw(graph, args)
        dataset = _dataset(graph.metadata, args)
        n_in, n_out = graph.nodes[graph.input_name].n, graph.nodes[graph.chain()[-1][1]].n
        run = lambda tr, va, te: finetune_lif(graph, kw, tr, va, te, options, log)   # noqa: E731
        save = save_graph
    else:
        from models.finetune_alpha import finetune_alpha
        from toolchain.artifact import load_onnx, save_onnx

        net = load_onnx(model)
        kw = _alpha_compile_kw(net, args)
        dataset = _dataset(net.metadata, args)
        n_in, n_out = net.layers[0].n_in, net.layers[-1].n_out
        run = lambda tr, va, te: finetune_alpha(net, kw, tr, va, te, options, log)   # noqa: E731
        save = save_onnx
    train = _images(dataset, "train", options.limit_train, args)
    _check_sizes(n_in, n_out, train.shape[1], dataset)
    val = _images(dataset, "val", options.limit_eval, args)
    test = _images(dataset, "test", options.limit_eval, args)
    result, metrics = run(train, val, test)
    save(result, out)
    summary = {k: metrics[k] for k in ("family", "mse_float", "mse_deployed_before", "mse_exact_after",
                                       "mse_deployed_after", "best_epoch", "best_updates", "updates")}
    summary.update(target=options.target, dataset=dataset, model=str(model), out=str(out),
                   compile_options=metrics["compile_options"])
    print(json.dumps(summary))
    return 0


def register(subparsers) -> None:
    """Add ``snnc finetune`` to the snnc command."""
    from toolchain.cli_deploy import _compile_args

    p = subparsers.add_parser(
        "finetune", help="hardware-in-the-loop fine-tuning: forward on the deployed network, float gradients",
        description="Fine-tune a trained model through its deployed integer network: every batch runs on the "
                    "target (hw_sim, or the hil device), the loss is computed on the deployed output and the float "
                    "model, linearised at the deployed spikes, gives the gradients (exact for alpha models, a "
                    "surrogate for LIF models); the model is re-compiled after every update. Writes an ordinary "
                    "model file (docs/finetune.md).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model.onnx of an alpha (temporal) or LIF (rate) model")
    p.add_argument("--target", default="hw_sim", help="where the deployed network runs: hw_sim (default) or hil")
    p.add_argument("--out", "-o", required=True, help="output model file (ONNX, written atomically)")
    p.add_argument("--epochs", type=int, default=1, help="passes over the training images (default 1)")
    p.add_argument("--lr", type=float, default=None,
                   help="Adam step of the weights (default: alpha 0.1 x the model's training rate, pulse times "
                        "scaled alike; LIF 1e-4)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per update (default: alpha the model's training batch, LIF 100)")
    p.add_argument("--compile-every", type=int, default=1,
                   help="batches between re-compilations (default 1: every update is deployed before the next)")
    p.add_argument("--limit-train", type=int, default=None, help="first N training images (default all)")
    p.add_argument("--limit-eval", type=int, default=1000,
                   help="first N validation and test images for model selection and before/after (default 1000)")
    p.add_argument("--eval-every", type=int, default=None, metavar="N",
                   help="also validate every N updates and keep the best model on the deployed validation MSE "
                        "(default: after each epoch only)")
    p.add_argument("--seed", type=int, default=0, help="shuffling and input-encoding seed (default 0)")
    p.add_argument("--dataset", default=None, choices=("mnist", "fashion-mnist"),
                   help="training images (default: the dataset the model records)")
    p.add_argument("--data-dir", default=None,
                   help="folder with mnist/ and fashion-mnist/ (default $SNNC_DATA; neither: the bundled subset)")
    p.add_argument("--target-option", "-O", action="append", default=[], metavar="KEY=VALUE",
                   help="target option, repeatable, e.g. -O port=7341 (a running hil device) or -O threads=1")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    _compile_args(p)
    p.set_defaults(func=_cmd_finetune)
