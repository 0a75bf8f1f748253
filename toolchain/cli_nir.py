"""``snnc export nir`` / ``snnc import nir`` and ``snnc verify --nir-peers`` (issue [I], docs/nir.md).

    snnc export nir MODEL.onnx -o model.nir [--dt SECONDS] [--lif-form lif|cuba] [--conv-layout maps|flat]
    snnc import nir model.nir -o model.onnx [--dt SECONDS] [--dataset D --time-steps T --p-scale P]
    snnc verify MODEL.onnx --targets float --nir-peers snntorch,norse

``export`` writes any snnc model (steps or alpha family) as a NIR HDF5 file (toolchain/nir_export.py): ``--dt`` is
the step in seconds the time constants are written for (default: the model's dt_ms; snnTorch 1.0 reads every file
as if dt were 1e-4 s), ``--lif-form cuba`` writes LIF populations as CubaLIF with tau_syn = dt (for importers that
ignore r on LIF nodes, e.g. Norse 1.1), ``--conv-layout`` chooses how graphs with convolutions are written. ``import`` turns a NIR graph (ours or made elsewhere) into an snnc ONNX
artifact (format 2) that compiles, deploys and verifies like our own models; ``--dt`` is needed for files that do
not state it (files from snnTorch: 1e-4). ``--nir-peers`` adds the targets snntorch-nir / norse-nir (targets/
nir_peers.py) to a steps model's verification: each runs the model through that package's own NIR importer and is
compared spike by spike with the float model under the float-kind gates of docs/verifier.md.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from toolchain.atomic import check_output_path
from toolchain.errors import ArtifactError, TargetError

PEERS = {"snntorch": "snntorch-nir", "norse": "norse-nir"}


def _dt(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--dt takes seconds as a number, got {value!r}") from None
    if not (v > 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"--dt must be a positive number of seconds, got {value!r}")
    return v


def _positive_int(value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value!r}")
    return v


def _probability(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in (0, 1], got {value!r}") from None
    if not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in (0, 1], got {value!r}")
    return v


def peer_names(text: str | None) -> list[str]:
    """'snntorch,norse' -> ['snntorch-nir', 'norse-nir'] (registry names); TargetError for an unknown peer."""
    if text is None:
        return []
    out = []
    for n in (t.strip() for t in text.split(",")):
        if not n:
            continue
        name = PEERS.get(n, n if n in PEERS.values() else None)
        if name is None:
            raise TargetError(f"unknown NIR peer {n!r} in --nir-peers; choose from: {', '.join(PEERS)}")
        if name not in out:
            out.append(name)
    if not out:
        raise TargetError("--nir-peers names no peer; e.g. --nir-peers snntorch,norse")
    return out


def cmd_export(args) -> int:
    from toolchain.artifact_graph import load_graph
    from toolchain.nir_export import write_nir

    model = Path(args.model)
    out = check_output_path(Path(args.out) if args.out else model.with_suffix(".nir"), "file", "-o")
    if out.resolve() == model.resolve():
        raise ArtifactError(f"-o {out} would overwrite the model itself; fix: choose another output name")
    graph = load_graph(model)
    write_nir(graph, out, args.dt, args.lif_form, args.conv_layout)
    kinds = sorted({type(v).__name__ for v in graph.nodes.values()})
    print(f"wrote {out} ({graph.time} graph, {len(graph.nodes)} nodes: {', '.join(kinds)})")
    return 0


def cmd_import(args) -> int:
    from toolchain.artifact_graph import save_graph
    from toolchain.nir_import import load_nir

    src = Path(args.nir_file)
    out = check_output_path(Path(args.out) if args.out else src.with_suffix(".onnx"), "file", "-o")
    if out.resolve() == src.resolve():
        raise ArtifactError(f"-o {out} would overwrite the NIR file itself; fix: choose another output name")
    graph = load_nir(src, args.dt)
    extra = {k: v for k, v in (("dataset", args.dataset), ("steps", args.time_steps), ("p_scale", args.p_scale))
             if v is not None}
    if extra:
        if graph.time != "steps":
            raise ArtifactError("--dataset, --time-steps and --p-scale describe the inputs of steps (LIF) models; "
                                f"{src} holds a {graph.time} graph: drop them")
        graph = replace(graph, metadata={**graph.metadata, "encoding": "bernoulli", **extra})
    save_graph(graph, out)
    pops = ", ".join(f"{k} ({type(graph.nodes[k]).__name__} {graph.nodes[k].n_out})" for k in graph.populations())
    print(f"wrote {out} ({graph.time} graph: {pops})")
    return 0


def _verify_with_peers(original):
    """Wrap ``snnc verify``'s function: --nir-peers applies to steps models only."""

    def run(args) -> int:
        if getattr(args, "nir_peers", None) is not None:
            from toolchain.cli_steps import is_steps_model

            peer_names(args.nir_peers)              # bad names fail before anything loads
            if not is_steps_model(args.model):
                raise TargetError(f"--nir-peers runs steps (LIF) models; {args.model} is not one (alpha models "
                                  "have no NIR importer to run them); drop --nir-peers")
        return original(args)

    return run


def register(subparsers) -> None:
    """Add ``export nir`` and ``import nir``; give ``verify`` (registered before, by toolchain/cli_deploy.py) the
    ``--nir-peers`` option."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("export", help="export a model to an interchange format (nir)", description=__doc__,
                              formatter_class=fmt)
    sub = p.add_subparsers(dest="format", required=True, metavar="FORMAT")
    q = sub.add_parser("nir", help="write a model as a NIR graph (HDF5)", description=__doc__, formatter_class=fmt)
    q.add_argument("model", help="model.onnx (any snnc model)")
    q.add_argument("-o", "--out", default=None, help="output .nir file (default: <model>.nir)")
    q.add_argument("--dt", type=_dt, default=None,
                   help="step in seconds the time constants are written for (default: the model's dt_ms)")
    q.add_argument("--lif-form", choices=("lif", "cuba"), default="lif",
                   help="LIF populations as NIR LIF (default) or CubaLIF with tau_syn = dt")
    q.add_argument("--conv-layout", choices=("maps", "flat"), default=None,
                   help="graphs with convolutions: every synapse a NIR Conv2d on (C, H, W) maps (maps, default) or "
                        "Linear nodes behind Flatten nodes (flat)")
    q.set_defaults(func=cmd_export)

    p = subparsers.add_parser("import", help="import a model from an interchange format (nir)", description=__doc__,
                              formatter_class=fmt)
    sub = p.add_subparsers(dest="format", required=True, metavar="FORMAT")
    q = sub.add_parser("nir", help="read a NIR graph (HDF5) as an snnc model.onnx", description=__doc__,
                       formatter_class=fmt)
    q.add_argument("nir_file", help="a .nir file (nir.write, snnTorch export_to_nir, Norse to_nir)")
    q.add_argument("-o", "--out", default=None, help="output model.onnx (default: <file>.onnx)")
    q.add_argument("--dt", type=_dt, default=None,
                   help="step in seconds of the discretisation (default: the dt the file states; snnTorch: 1e-4)")
    q.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default=None,
                   help="record the dataset the model reads (steps models; compile/verify/deploy use it)")
    q.add_argument("--time-steps", type=_positive_int, default=None, help="record the steps T per sample")
    q.add_argument("--p-scale", type=_probability, default=None,
                   help="record the Bernoulli spike probability per step at pixel 1")
    q.set_defaults(func=cmd_import)

    verify = subparsers.choices.get("verify")
    if verify is not None:
        verify.add_argument("--nir-peers", default=None, metavar="LIST",
                            help="steps models: also run the model in these packages through their NIR importers "
                                 "and compare spike by spike (snntorch, norse)")
        verify.set_defaults(func=_verify_with_peers(verify.get_default("func")))
