"""``snnc resources MODEL``: cores, memory and energy of a model on a Loihi-like chip, compiled or not.

    snnc resources runs/h1024/model.onnx [--chip loihi2] [--samples 20] [--json]
    snnc resources compiled.npz --chips 2 [--rates 0.02,0.05,0.1]    (steps models: multi-chip partition)

Works from the ONNX network directly, so it answers for any size, also a model the compiler rejects (the
partition rules are hw_sim/resources.py's; design-rule violations are listed, not fatal). Energy per inference
comes from the activity of the exact float model on the first ``--samples`` test images of the model's dataset
(hw_sim/energy.py, Loihi 1 per-operation figures). A compiled.npz is accepted too (its pulse copies and integer
weights are then used for the partition). Steps (LIF) models, convolutional or not, go to
hw_sim/conv_resources.py (shared-kernel and expanded storage; energy from hw_sim's activity on Bernoulli inputs).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from toolchain.errors import ArtifactError, DataError


def _inputs(net, args) -> tuple[np.ndarray, str]:
    from models.datasets import load_dataset
    from models.encoding import latency_encode

    name = args.dataset or net.metadata.get("dataset")
    if not name:
        raise DataError("the model does not record its dataset; fix: pass --dataset mnist (or fashion-mnist)")
    if net.encoding != "latency":
        raise ArtifactError(f"the model uses input encoding {net.encoding!r}; `snnc resources` estimates activity "
                            "for latency-coded models only; fix: pass --samples 0 for resources without energy")
    ds = load_dataset(name, args.split, data_dir=args.data_dir, limit=args.samples)
    if ds.images.shape[1] != net.layers[0].n_in:
        raise DataError(f"{name} images have {ds.images.shape[1]} pixels but the model has {net.layers[0].n_in} "
                        "inputs; fix: pass the dataset the model was trained on (--dataset) or --samples 0")
    return latency_encode(np.asarray(ds.images, np.float64)), f"{name} {args.split}[:{ds.images.shape[0]}]"


def resources_report(path: str | Path, args) -> tuple[dict, str]:
    """(JSON-able report, printable text) for the model or compiled network at ``path``."""
    from hw_sim.energy import estimate, estimate_model, format_energy_table, model_activity
    from hw_sim.resources import format_resource_table, get_chip, partition, partition_model
    from toolchain.compiler import DEFAULT_STEPS_PER_UNIT, default_window

    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"model file {p} does not exist; fix: pass a model.onnx (snnc train) or a "
                            "compiled.npz (snnc compile)")
    if args.samples < 0:
        raise DataError(f"--samples must be >= 0 (0 = resources only), got {args.samples}")
    chip = get_chip(args.chip)
    chips = getattr(args, "chips", None)
    if chips is not None and chips < 1:
        raise DataError(f"--chips must be >= 1, got {chips}; fix: e.g. --chips 2, or leave it out (as many as needed)")
    from toolchain.cli_steps import is_steps_model

    if is_steps_model(p):        # steps models (issue [F]: conv; Dense LIF chains through the same model)
        from hw_sim.conv_resources import conv_resources_report

        return conv_resources_report(p, args, chip)
    if chips is not None:        # alpha models: the core-count rule over that many chips (no traffic model)
        import dataclasses

        chip = dataclasses.replace(chip, chips=int(chips))
    if p.suffix == ".npz":
        from toolchain.compiled_io import load_compiled

        cn = load_compiled(p)
        net, window, compiled, S = cn.source, int(cn.window), cn, float(cn.steps_per_unit)
    else:
        from toolchain.artifact import load_onnx

        net = load_onnx(p)
        S = args.steps_per_unit or DEFAULT_STEPS_PER_UNIT
        if S < 2:
            raise DataError(f"--steps-per-unit must be >= 2, got {S}")
        window, compiled = default_window(net, S), None
    basis = (f"compiled network {p.name} (S={compiled.steps_per_unit:g})" if compiled is not None else
             f"uncompiled model {p.name}: {args.weight_bits}-bit weights, {args.pulse_copies} axon(s) per pulse "
             f"(the compiler may use up to 8 copies for large pulse weights), S={args.steps_per_unit or 40}")
    res = (partition(compiled, chip, strict=False) if compiled is not None else
           partition_model(net, chip, args.weight_bits, args.pulse_copies, strict=False))
    out = {"model": str(p), "basis": basis, "network": "-".join(map(str, net.sizes)), "window_steps": window,
           "resources": res.to_dict()}
    text = [f"{basis}; network {out['network']}, {window} steps per inference", "", format_resource_table(res)]
    if args.samples > 0:
        x, source = _inputs(net, args)
        if compiled is not None:
            rep = estimate(compiled, model_activity(net, x, window, S), chip, strict=False)
        else:
            rep = estimate_model(net, x, window, chip, weight_bits=args.weight_bits, pulse_copies=args.pulse_copies,
                                 steps_per_unit=S)
        out["energy"] = rep.to_dict()
        out["activity_inputs"] = source
        text += ["", f"energy per inference, activity of the exact model on {source} (spikes after the "
                 f"{window}-step window dropped):", format_energy_table(rep)]
    return out, "\n".join(text)


def _cmd_resources(args) -> int:
    report, text = resources_report(args.model, args)
    if args.out:
        from toolchain.atomic import atomic_path

        with atomic_path(args.out) as tmp:
            Path(tmp).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2) if args.json else text)
    if args.out and not args.json:
        print(f"\nwrote {args.out}")
    return 0


def register(subparsers) -> None:
    """Add ``resources`` to the snnc command."""
    p = subparsers.add_parser("resources", help="estimate cores, memory and energy of a model (compiled or not)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model.onnx (any size, also one that does not compile) or compiled.npz")
    p.add_argument("--chip", choices=("loihi2", "loihi1"), default="loihi2", help="chip limits (default loihi2)")
    p.add_argument("--steps-per-unit", "-S", type=int, default=None,
                   help="time grid for an ONNX model, steps per time unit (default 40, the compiler's)")
    p.add_argument("--weight-bits", type=int, choices=(8, 9), default=8, help="synaptic weight bits (default 8)")
    p.add_argument("--pulse-copies", type=int, default=1,
                   help="axons per pulse assumed for an ONNX model (default 1; the compiler uses up to 8)")
    p.add_argument("--samples", type=int, default=20,
                   help="test images whose exact-model activity gives the energy estimate (default 20; 0: none)")
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default=None,
                   help="dataset for the activity (default: the model's, from its metadata)")
    p.add_argument("--split", choices=("train", "val", "test"), default="test")
    p.add_argument("--data-dir", default=None, help="folder with mnist/ and fashion-mnist/ (default $SNNC_DATA)")
    p.add_argument("--chips", type=int, default=None,
                   help="chips available (default: as many as the cores need). Steps models: cores fill chips in "
                        "layer order and the report counts inter-chip spikes and relay payloads per sample "
                        "(hw_sim/multichip.py); too few chips is a DRC error naming the chips needed")
    p.add_argument("--rates", default=None,
                   help="steps models: activity estimate for the inter-chip traffic instead of a hw_sim run, "
                        "comma-separated spikes per neuron and step of the input and of every population")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    p.add_argument("--out", default=None, help="also write the JSON report to this file")
    p.set_defaults(func=_cmd_resources)
