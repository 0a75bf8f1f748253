"""Audio to image (Roy et al. 2019, issue [G]) on the command line:

    snnc train audio --image-model RUN --pairing A|B --out DIR     train the spiking audiocoder (or --ann)
    snnc eval DIR                                                   score an audiocoder on the FSDD test clips
    snnc audio2image CLIP.wav --model DIR --out digit.png           draw the digit a recording says
    snnc audio-deploy DIR --clips 300 --targets hw_sim-lif          compile audiocoder + decoder, verify targets
    snnc audio-deploy DIR --chips 16 --prune 0.5                    multi-chip / pruned variants and their cost

``train audio`` is registered by models/cli_train.py (add_train_audio), ``eval`` of audiocoders is dispatched by
models/cli_eval.py (is_audiocoder), ``audio2image`` and ``audio-deploy`` by toolchain/cli.py (register).
"""
from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import numpy as np

from toolchain.errors import SnncError

TRAIN_EXAMPLES = """examples:
  snnc train rate --preset mnist-196 --out runs/ae196                       # the image model, once
  snnc train audio --image-model runs/ae196 --pairing A --epochs 2 --out runs/audioA
  snnc train audio --image-model runs/ae196 --pairing B --t-h 10 --out runs/audioB
  snnc train audio --image-model runs/ae196 --audio-rate 8000 --frames 500 --hidden 512 --out runs/audio-small
  snnc train audio --ann adam --image-model runs/ae196 --pairing A --out runs/audioA-ann

reads FSDD from $SNNC_DATA/fsdd (or --data-dir) and MNIST beside it; writes <out>/audiocoder.npz (or
audiocoder-ann.npz), <out>/metrics.json and <out>/generated.png (5 test clips per digit); features are cached in
--feature-cache (default <out>/cache).
"""


def add_train_audio(sub) -> None:
    """Add ``snnc train audio`` to the ``train`` subcommands."""
    p = sub.add_parser("audio", help="spiking audiocoder: spoken digits -> MNIST digits (Roy et al. 2019)",
                       description="Train the audiocoder (cochleagram -> H -> the image autoencoder's hidden spike "
                                   "map) with the event-driven online rule, decode the FSDD test clips through the "
                                   "image model's decoder and score them.",
                       epilog=TRAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image-model", default=None,
                   help="the image autoencoder: a `snnc train rate` run folder or its model.onnx (required for the "
                        "SNN; the ANN baseline trains its own)")
    p.add_argument("--pairing", choices=("A", "B"), default="A",
                   help="A: every clip of a digit paired with one image of it; B: each clip with its own image")
    p.add_argument("--audio-rate", type=int, default=12500, choices=(12500, 8000),
                   help="feature sample rate in Hz: 12500 (39 channels, the paper) or 8000 (32 channels)")
    p.add_argument("--frames", type=int, default=1500, help="cochleagram frames per clip (1 frame = 10 samples; "
                                                            "default 1500 = 1.2 s at 12.5 kHz)")
    p.add_argument("--decimation", type=int, default=10,
                   help="samples per cochleagram frame (default 10; e.g. 80 at 8 kHz: 100 frames/s, a deployable "
                        "front end of 32 x 120 = 3,840 inputs with --frames 120)")
    p.add_argument("--hidden", type=int, default=2048, help="hidden LIF neurons (default 2048)")
    p.add_argument("--steps", type=int, default=30, help="time steps T per clip (default 30)")
    p.add_argument("--p-scale", type=float, default=0.02, help="spike probability per step at feature 1 (0.02)")
    p.add_argument("--t-h", type=int, default=None, help="steps of the hidden spike map used as target (A 15, B 10)")
    p.add_argument("--trace-window", type=int, default=None,
                   help="steps an input spike stays in the eligibility trace (default: all T steps, the exact trace "
                        "of the online rule; 1: ~1.7x faster, learns worse); see docs/audio.md")
    p.add_argument("--adam", choices=("batch", "persistent"), default="batch",
                   help="SNN: Adam moments reset every batch (batch, the authors' code) or kept across batches "
                        "(persistent: SparseAdam, +8 bytes per weight of memory); see docs/audio.md")
    p.add_argument("--miss-weight", type=float, default=1.0,
                   help="SNN: factor on the output error where the target spikes and the code does not (1: the "
                        "authors' rule; > 1 counters the masked loss's rate compression); see docs/audio.md")
    p.add_argument("--lr-input-scale", type=float, default=1.0,
                   help="SNN: factor on the step size of the input -> hidden weights (1: --lr for both layers)")
    p.add_argument("--class-image", choices=("nearest-mean", "best-drawn"), default="nearest-mean",
                   help="fixed image per digit (dataset A): nearest the class mean (default), or of the "
                        "--class-candidates nearest, the one the image model draws best from its own spike map")
    p.add_argument("--class-candidates", type=int, default=50,
                   help="images nearest the class mean searched by --class-image best-drawn (default 50)")
    p.add_argument("--lr", type=float, default=None,
                   help="step size (SNN: Adam per time step, 5e-5; ANN: Adam 1e-3, SGD 1e-2; see docs/audio.md)")
    p.add_argument("--batch-size", type=int, default=50, help="clips per batch (default 50)")
    p.add_argument("--epochs", type=int, default=None,
                   help="passes over the 2,700 training clips (default: SNN 1, ANN 20 = the paper's)")
    p.add_argument("--limit-train", type=int, default=None, help="use about N training clips (every k-th)")
    p.add_argument("--limit-test", type=int, default=None, help="score about N test clips (every k-th)")
    p.add_argument("--current-penalty", type=float, default=0.0, metavar="LAM",
                   help="deviation for deployment (default 0: off): add 0.5 LAM relu(|I| - K)^2 per step and neuron "
                        "of the hidden and code layers' input current I (thresholds) to the loss, so that the compiler "
                        "can use fine scales (docs/audio.md, 'The decoder's +-1 step gate')")
    p.add_argument("--current-bound", type=float, default=4.0, metavar="K",
                   help="input current per step left free by --current-penalty, in thresholds (default 4)")
    p.add_argument("--leak", choices=("float", "chip"), default="float",
                   help="audiocoder leak per step: float (default, 0.9 as the paper) or chip (the 12-bit decay the "
                        "chip realises for 0.9, 1 - 410/4096, recorded in the model so the compiler maps it exactly)")
    p.add_argument("--ann", choices=("sgd", "adam"), default=None,
                   help="train the ANN audiocoder baseline instead (with SGD or Adam) against an ANN image model")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, batches, pairing B and input spikes")
    p.add_argument("--data-dir", default=None, help="folder holding fsdd/ and mnist/ (default $SNNC_DATA)")
    p.add_argument("--feature-cache", default=None, help="cochleagram cache folder (default <out>/cache)")
    p.add_argument("--threads", type=int, default=1,
                   help="numba threads of the SNN training kernel (default 1: measured faster than 2 on the paper's "
                        "network, 77 vs 113 s per epoch; see docs/audio.md)")
    p.add_argument("--force", action="store_true", help="replace a trained run already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", default="runs/audio", help="output folder (default runs/audio)")
    p.set_defaults(func=train_audio_cli)


def train_audio_cli(args: argparse.Namespace) -> int:
    from models.audio_trainer import AudioConfig, train_audio

    cfg = AudioConfig(pairing=args.pairing, rate=args.audio_rate, frames=args.frames, decimation=args.decimation,
                      hidden=args.hidden,
                      steps=args.steps, p_scale=args.p_scale,
                      epochs=args.epochs if args.epochs is not None else (20 if args.ann else 1), seed=args.seed,
                      batch_size=args.batch_size, t_h=args.t_h, trace_window=args.trace_window, adam=args.adam,
                      miss_weight=args.miss_weight, lr_input_scale=args.lr_input_scale, class_image=args.class_image,
                      class_candidates=args.class_candidates,
                      limit_train=args.limit_train, limit_test=args.limit_test,
                      current_penalty=args.current_penalty, current_bound=args.current_bound, leak=args.leak,
                      **({"lr": args.lr} if args.lr is not None and args.ann is None else {}))
    if args.ann is None and args.image_model is None:
        raise SnncError("snnc train audio needs --image-model (a `snnc train rate --preset mnist-196` run): its hidden "
                        "spike maps are the targets and its decoder draws the digits")
    if args.ann is not None:
        from models.audio_ann import train_audio_ann

        check_ann_options(args)

        m = train_audio_ann(cfg, args.out, args.image_model, optimizer=args.ann, lr=args.lr, data_dir=args.data_dir,
                            cache_dir=args.feature_cache, force=args.force, progress=not args.no_progress)
    else:
        print(f"training audiocoder {cfg.spec.n_inputs}-{cfg.hidden}-code, dataset {cfg.pairing}, T={cfg.steps}, "
              f"T_h={cfg.resolved_t_h()}, lr {cfg.lr:g}, batch {cfg.batch_size}, trace window "
              f"{cfg.trace_window if cfg.trace_window is not None else 'exact'}")
        m = train_audio(cfg, args.out, args.image_model, data_dir=args.data_dir, cache_dir=args.feature_cache,
                        force=args.force, threads=args.threads, progress=not args.no_progress)
    print(f"test MSE {m['test_mse']:.4f} (dataset {m['pairing']}, z-scored)")
    return 0


# options of the spiking audiocoder's online rule that the ANN baseline has no use for: (argparse dest, flag).
# --steps, --t-h and --p-scale are not among them: they also set the SNN-side choice of --class-image best-drawn,
# and a command line shared by an SNN and an ANN run may keep them.
SNN_ONLY = (("current_penalty", "--current-penalty"), ("current_bound", "--current-bound"), ("adam", "--adam"),
            ("miss_weight", "--miss-weight"), ("lr_input_scale", "--lr-input-scale"),
            ("trace_window", "--trace-window"), ("leak", "--leak"))


def check_ann_options(args: argparse.Namespace, parser_defaults: dict | None = None) -> None:
    """With ``--ann``, an option of the SNN rule (``SNN_ONLY``) set to anything but its default is a SnncError
    naming it and the fix (the ANN would silently ignore it). ``parser_defaults``: {dest: default} (default: this
    parser's)."""
    if parser_defaults is None:
        sub = argparse.ArgumentParser()
        add_train_audio(sub.add_subparsers())
        parser_defaults = {d: sub.parse_args(["audio"]).__dict__[d] for d, _ in SNN_ONLY}
    given = [flag for dest, flag in SNN_ONLY if hasattr(args, dest) and getattr(args, dest) != parser_defaults[dest]]
    if given:
        one = len(given) == 1
        raise SnncError(f"{', '.join(given)} {'applies' if one else 'apply'} to the spiking audiocoder only and the "
                        f"ANN baseline (--ann {args.ann}) would ignore {'it' if one else 'them'}; fix: drop "
                        f"{'it' if one else 'them'}, or drop --ann to train the SNN")


def is_audiocoder(model: str | Path) -> bool:
    """True for an audiocoder run folder or file (``snnc eval`` dispatches those here)."""
    p = Path(model)
    return (p.is_dir() and any((p / n).is_file() for n in ("audiocoder.npz", "audiocoder-ann.npz"))) or \
        (p.is_file() and p.name.endswith(".npz") and p.name.startswith("audiocoder"))


def evaluate_audio(model: str | Path, *, data_dir: str | None = None, cache_dir: str | Path | None = None,
                   limit: int | None = None, seed: int = 2, png: str | Path | None = None,
                   json_path: str | Path | None = None) -> dict:
    """Score an audiocoder on the FSDD test clips (its pairing's score, models/audio_metrics.py); writes the grid
    of generated digits (``png``, default beside the model) and optionally the metrics JSON, as one set."""
    from models.audio_metrics import score
    from models.audio_model import generate, load_audiocoder
    from models.audio_pairs import pair
    from models.cochleagram import FeatureSpec, load_features
    from models.datasets import load_dataset
    from models.fsdd import split_labels
    from models.audio_trainer import grid_png_bytes
    from toolchain.atomic import atomic_path, check_output_path

    path = Path(model)
    mpath = path
    if path.is_dir():
        mpath = path / "audiocoder.npz" if (path / "audiocoder.npz").is_file() else path / "audiocoder-ann.npz"
    png_path = check_output_path(png if png else mpath.with_name(f"{mpath.stem}_eval_test.png"), "file", "--png")
    if json_path is not None:
        json_path = check_output_path(json_path, "file", "--json")
    if mpath.name.startswith("audiocoder-ann"):
        from models.audio_ann import ann_generate, load_ann

        w1, w2, dec, meta = load_ann(mpath)
        kind, sizes = f"ann-{meta['optimizer']}", [w1.shape[1], w1.shape[0], w2.shape[0], dec.shape[0]]
    else:
        ac = load_audiocoder(mpath)
        meta, kind, sizes = ac.meta, "audiocoder", [ac.n_in, ac.hidden, ac.n_code, ac.dec_w.shape[0]]
    cfg = meta.get("config", {})
    limit = cfg.get("limit_test") if limit is None else limit   # default: the clips the training run scored
    spec = FeatureSpec(**meta["spec"])
    if spec.n_inputs != sizes[0]:
        raise SnncError(f"{mpath}: {sizes[0]} inputs but its feature settings give {spec.n_inputs}; retrain it")
    test = load_features("test", spec, data_dir=data_dir, cache_dir=cache_dir, limit=limit)
    mnist = load_dataset("mnist", "train", data_dir=data_dir)
    class_ids = meta.get("class_image_ids")   # absent in files written before the option (nearest-mean)
    pairing = pair(meta["pairing"], split_labels("train", cfg.get("limit_train")), mnist.images, mnist.labels,
                   int(cfg.get("seed", 0)), None if class_ids is None else np.asarray(class_ids, np.int64))
    if kind == "audiocoder":
        gen, codes = generate(ac, test, seed)
        spikes = float(codes.sum(1).mean())
    else:
        gen, spikes = ann_generate(w1, w2, dec, test), None
    sc = score(gen, test.labels, pairing)
    result = {"model": str(mpath), "kind": kind, "pairing": meta["pairing"], "test_mse": sc["mse"],
              "test_mse_per_digit": sc["mse_per_digit"], "test_class_accuracy": sc["class_accuracy"],
              "n_test": len(test), "seed": seed, "sizes": sizes, "code_spikes_per_clip": spikes,
              "png": str(png_path)}
    with contextlib.ExitStack() as stack:
        stack.enter_context(atomic_path(png_path)).write_bytes(
            grid_png_bytes(gen, test.labels, title=f"{kind} ({meta['pairing']}) test: MSE {sc['mse']:.4f}"))
        if json_path is not None:
            result["json"] = str(json_path)
            stack.enter_context(atomic_path(json_path)).write_text(json.dumps(result, indent=2) + "\n")
    return result


def eval_audio_cli(args: argparse.Namespace) -> int:
    r = evaluate_audio(args.model, data_dir=args.data_dir, limit=args.limit, seed=args.seed + 2, png=args.png,
                       json_path=args.json)
    print(f"model: {r['model']} ({r['kind']} {'-'.join(map(str, r['sizes']))}, dataset {r['pairing']})")
    print(f"test MSE {r['test_mse']:.4f} (z-scored, {r['n_test']} FSDD test clips); generated digit nearest to its "
          f"class image in {100 * r['test_class_accuracy']:.1f} % of clips")
    print(f"generated digits: {r['png']}")
    return 0


def audio_to_image(clip: str | Path, model: str | Path, out: str | Path, *, seed: int = 0, cut: bool = False) -> dict:
    """Generate the digit image (28 x 28 PNG, decoder spike counts scaled to their maximum) for one wav file."""
    from models.audio_model import encode_clip, load_audiocoder, run_clip
    from models.cochleagram import FeatureSpec, clip_features
    from toolchain.atomic import atomic_write_bytes, check_output_path

    out = check_output_path(out, "file", "--out")
    ac = load_audiocoder(model)
    spec = FeatureSpec(**ac.meta["spec"])
    x = clip_features(clip, spec, cut=cut)
    idx = np.flatnonzero(x).astype(np.int64)
    code, img = run_clip(ac, encode_clip(idx, x[idx], ac.steps, ac.p_scale, np.random.default_rng(seed)))
    atomic_write_bytes(out, _png_bytes(img))
    return {"image": img, "code_spikes": int(code.sum()), "out": str(out)}


def _png_bytes(img: np.ndarray, scale: int = 8) -> bytes:
    import io

    from matplotlib.image import imsave

    a = (img / max(float(img.max()), 1e-12)).reshape(28, 28)
    a = np.kron(a, np.ones((scale, scale)))
    buf = io.BytesIO()
    imsave(buf, a, cmap="gray", vmin=0.0, vmax=1.0, format="png")
    return buf.getvalue()


def _audio2image(args: argparse.Namespace) -> int:
    r = audio_to_image(args.clip, args.model, args.out, seed=args.seed, cut=args.cut)
    print(f"{args.clip}: {r['code_spikes']} code spikes, {int(r['image'].sum())} image spikes -> {r['out']}")
    return 0


def audio_deploy(model: str | Path, *, clips: int = 300, targets: tuple[str, ...] = ("hw_sim-lif",),
                 weight_blocks: int = 2, weight_bits: int = 8, range_mode: str = "calibrated",
                 calibration_clips: int = 50, data_dir: str | None = None, cache_dir: str | Path | None = None,
                 json_path: str | Path | None = None, compiled_out: str | Path | None = None, chips: int = 1,
                 chip: str = "loihi2", prune: float = 0.0, prune_layers: tuple[str, ...] = ("fc0", "fc1"),
                 range_margin: float | None = None, scores: bool = True, exponent: str = "fine") -> dict:
    """Compile an audiocoder + its decoder as one LIF network (models/audio_deploy.py), optionally magnitude-pruned
    (``prune``: fraction of each of ``prune_layers`` zeroed; stored sparse where that needs fewer cores), check that
    it fits ``chips`` chips (DRCError with the fix otherwise), verify ``targets`` on the first ``clips`` FSDD test clips
    against the float reference with the spike-train gates of toolchain/verify_trains.py (ranges calibrated on
    training clips), and measure the deployed network: cores, chips, synapses, inter-chip traffic and energy per
    clip from the first target's run, its generated digits' test MSE / nearest class (``scores``: needs MNIST)
    next to the unpruned float model's, and where the decoder's differences come from (``exponent``: the weight
    exponent choice, models/audio_deploy.deploy_check). Writes the report JSON
    (``json_path``) and the compiled network (``compiled_out``, npz) atomically."""
    from hw_sim.conv_resources import conv_energy
    from hw_sim.multichip import multichip_partition, traffic_from_run
    from models.audio_deploy import (check_deployable, decoder_on_equal_codes, deploy_check, get_chip_spec,
                                     images_of, isolated_layers, joint_graph, prune_audiocoder, used_exponent)
    from models.audio_model import load_audiocoder
    from models.cochleagram import FeatureSpec, load_features
    from targets.lif_float import FloatStepsTarget
    from toolchain.atomic import atomic_write_text, check_output_path
    from toolchain.conv_compiler import as_compiled_conv

    if not 1 <= int(clips) <= 300:
        raise SnncError(f"--clips must lie in 1..300 (the FSDD test clips), got {clips}")
    if int(chips) < 1:
        raise SnncError(f"--chips must be >= 1, got {chips}")
    if json_path is not None:
        json_path = check_output_path(json_path, "file", "--json")
    if compiled_out is not None:
        compiled_out = check_output_path(compiled_out, "file", "--out")
    spec_chip = get_chip_spec(chip)
    used_exponent(exponent, weight_blocks)                     # a bad choice is refused first
    ac0 = load_audiocoder(model)
    ac = prune_audiocoder(ac0, prune, tuple(prune_layers)) if prune else ac0
    nonzero = tuple(int(np.count_nonzero(w)) * weight_blocks for w in (ac.w1t, ac.w2, ac.dec_w))
    storage = "shared"
    if prune:     # sparse storage pays an axon index per synapse: keep whichever needs fewer cores
        from models.audio_deploy import chip_resources

        sizes = (ac.n_in, ac.hidden, ac.n_code)
        if chip_resources(*sizes, chip=spec_chip, weight_blocks=weight_blocks, nonzero=nonzero,
                          storage="sparse")[0].cores < \
                chip_resources(*sizes, chip=spec_chip, weight_blocks=weight_blocks)[0].cores:
            storage = "sparse"
    check_deployable(ac.n_in, ac.hidden, ac.n_code, chip=spec_chip, chips=int(chips), weight_blocks=weight_blocks,
                     nonzero=nonzero, storage=storage)          # before any feature is computed
    spec = FeatureSpec(**ac.meta["spec"])
    cfg = ac.meta.get("config", {})   # the clips the training run used (all, unless it ran with --limit-*)
    test = load_features("test", spec, data_dir=data_dir, cache_dir=cache_dir, limit=cfg.get("limit_test"))
    if int(clips) > len(test):
        raise SnncError(f"--clips {clips} exceeds the {len(test)} test clips this audiocoder was scored on; lower it")
    calib = load_features("train", spec, data_dir=data_dir, cache_dir=cache_dir, limit=cfg.get("limit_train")) \
        if range_mode == "calibrated" else None
    dep = deploy_check(ac, test, n_clips=int(clips), targets=tuple(targets), weight_bits=weight_bits,
                       calibration_clips=calibration_clips, range_mode=range_mode, weight_blocks=weight_blocks,
                       calibration=calib, chip=spec_chip, chips=int(chips), range_margin=range_margin,
                       storage=storage, exponent=exponent)
    rep, cs = dep.report, dep.compiled
    cc = as_compiled_conv(cs)
    if prune:     # the compiled network decides (a layer may use one weight block): fewer cores wins
        storage = min(("shared", "sparse"), key=lambda st: multichip_partition(cc, spec_chip, None, st)[0].cores)
    res, _, assign = multichip_partition(cc, spec_chip, int(chips), storage)
    other = multichip_partition(cc, spec_chip, None, "sparse" if storage == "shared" else "shared")[0]
    first = dep.runs[targets[0]].trains
    energy = conv_energy(cc, dep.inputs, first, spec_chip, storage="shared" if storage == "shared" else "sparse")
    result = {"model": str(model), "sizes": [ac.n_in, ac.hidden, ac.n_code, ac.dec_w.shape[0]],
              "prune": {"fraction": float(prune), "layers": list(prune_layers)} if prune else None,
              "storage": storage, "cores": res.cores, f"cores_{other_name(storage)}_storage": other.cores, "chips": assign.chips, "chips_available": int(chips),
              "cores_per_chip": list(assign.cores_per_chip), "synapses": res.synapses,
              "nonzero_synapses": res.nonzero_synapses, "synaptic_memory_kib": res.synaptic_memory_bits / 8192,
              "fits": not res.violations, "violations": list(res.violations),
              "inter_chip": traffic_from_run(cc, assign, dep.inputs, first).to_dict(),
              "energy_per_clip_nJ": energy.to_dict()["energy_per_sample_nJ"]["mean"],
              "weight_bits": weight_bits, "weight_blocks": weight_blocks, "blocks_used": [cl.blocks for cl in cc.layers],
              "exponent": used_exponent(exponent, weight_blocks),
              "scales": [[int(np.min(cl.scale)), int(np.median(cl.scale)), int(np.max(cl.scale))] for cl in cc.layers],
              "range_mode": range_mode, "clips": int(clips),
              "range_margin": (cs.manifest.get("calibration") or {}).get("margin"),   # as compiled (None: worst case)
              "range_events": dep.runs[targets[0]].info.get("range_events"),     # per layer, neuron-steps
              "passed": rep.passed,
              "targets": {t.target: {"passed": t.passed,
                                     "matched_within_1": {pop: float(l.fraction[1]) for pop, l in
                                                          zip(rep.populations, t.layers)}}
                          for t in rep.targets},
              "failed_gates": [str(g) for g in rep.gates if not g.passed], "summary": rep.summary()}
    for t in targets[1:]:        # e.g. lava-fixed-lif beside hw_sim-lif: the (sample, step, neuron) entries that differ
        result["targets"][t][f"entries_differing_from_{targets[0]}"] = int(sum(
            int((np.asarray(a) != np.asarray(b)).sum()) for a, b in zip(dep.runs[t].trains, first)))
    ref = FloatStepsTarget().run(joint_graph(ac), dep.inputs).trains
    result["decoder_flips"] = decoder_on_equal_codes(ref, first)
    result["layers_alone"] = isolated_layers(cs, dep.inputs, ref)
    if scores:
        from models.audio_metrics import score
        from models.audio_pairs import pair
        from models.datasets import load_dataset
        from models.fsdd import split_labels
        from models.rate_metrics import zscore_rows

        mnist = load_dataset("mnist", "train", data_dir=data_dir)
        cids = ac.meta.get("class_image_ids")
        pairing = pair(ac.meta["pairing"], split_labels("train", cfg.get("limit_train")), mnist.images,
                       mnist.labels, int(cfg.get("seed", 0)), None if cids is None else np.asarray(cids, np.int64))
        labels = test.labels[:int(clips)]
        full = ref if not prune else FloatStepsTarget().run(joint_graph(ac0), dep.inputs).trains
        imgs = {"float": images_of(full), "float_pruned": images_of(ref), targets[0]: images_of(first)}
        result["scores"] = {k: {"test_mse": (sc := score(v, labels, pairing))["mse"],
                                "nearest_class": sc["class_accuracy"],
                                "zscore_mse_vs_float": float(((zscore_rows(v) - zscore_rows(imgs["float"])) ** 2)
                                                             .mean())}
                            for k, v in imgs.items() if k != "float_pruned" or prune}
    if compiled_out is not None:
        from toolchain.compiled_conv_io import save_compiled_any

        save_compiled_any(cs, compiled_out)
        result["compiled"] = str(compiled_out)
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(result, indent=2, default=str) + "\n")
    return result


def other_name(storage: str) -> str:
    """The storage model not chosen ('shared' = every Dense synapse stored, 'sparse' = non-zero ones only)."""
    return "sparse" if storage == "shared" else "dense"


def _audio_deploy(args: argparse.Namespace) -> int:
    r = audio_deploy(args.model, clips=args.clips, targets=tuple(t.strip() for t in args.targets.split(",") if t),
                     weight_blocks=args.weight_blocks, weight_bits=args.weight_bits, range_mode=args.range,
                     calibration_clips=args.calibration_clips, data_dir=args.data_dir, cache_dir=args.feature_cache,
                     json_path=args.json, compiled_out=args.out, chips=args.chips, chip=args.chip,
                     prune=args.prune, prune_layers=tuple(x.strip() for x in args.prune_layers.split(",") if x),
                     range_margin=args.range_margin, scores=not args.no_scores, exponent=args.exponent)
    pr = f", {100 * r['prune']['fraction']:g} % of {'+'.join(r['prune']['layers'])} pruned" if r["prune"] else ""
    print(f"audiocoder + decoder {'-'.join(map(str, r['sizes']))}{pr}: {r['cores']} cores on {r['chips']} chip(s) "
          f"{r['cores_per_chip']}, {r['nonzero_synapses']} non-zero synapses ({r['storage']} storage), "
          f"{r['weight_bits']}-bit weights x {r['weight_blocks']} block(s), {r['range_mode']} ranges")
    ic = r["inter_chip"]
    print(f"per clip: {r['energy_per_clip_nJ']:.1f} nJ; {ic['inter_chip_spikes_per_sample']:.1f} inter-chip spikes, "
          f"{ic['inter_chip_payloads_per_sample']:.1f} inter-chip relay payloads")
    for k, v in (r.get("scores") or {}).items():
        print(f"{k}: test MSE {v['test_mse']:.4f}, nearest class {100 * v['nearest_class']:.1f} %, z-scored MSE vs "
              f"the float model {v['zscore_mse_vs_float']:.4f}")
    f = r["decoder_flips"]
    print(f"code trains equal to the float model's on {f['clips_code_equal']} of {f['clips']} clips; decoder within "
          f"+-1 step there: {100 * f.get('decoder_matched_1_code_equal', float('nan')):.2f} %, elsewhere "
          f"{100 * f.get('decoder_matched_1_code_differs', float('nan')):.2f} %")
    print("each layer alone, driven by the float model's trains (its own error): " + ", ".join(
        f"{d['layer']} {100 * d['matched_1']:.2f} %" for d in r["layers_alone"]) + " within +-1 step")
    print(r["summary"])
    print("PASS" if r["passed"] else "FAIL: " + "; ".join(r["failed_gates"][:5]))
    return 0 if r["passed"] else 1


def register(subparsers) -> None:
    """Add ``snnc audio2image`` and ``snnc audio-deploy`` to the snnc command."""
    d = subparsers.add_parser("audio-deploy", help="compile audiocoder + decoder as one LIF network and verify it",
                              description="Compile a trained audiocoder and the image model's decoder as one LIF "
                                          "network (8-bit weights), check the chip's design rules (a front end "
                                          "beyond one chip is refused with the fix), and verify the targets on "
                                          "FSDD test clips against the float reference with the spike-train gates.")
    d.add_argument("model", help="audiocoder run folder (snnc train audio) or its audiocoder.npz")
    d.add_argument("--clips", type=int, default=300, help="FSDD test clips to verify (default all 300)")
    d.add_argument("--targets", default="hw_sim-lif", help="comma-separated targets (hw_sim-lif, lava-fixed-lif, "
                                                           "brian2-lif, ...)")
    d.add_argument("--weight-blocks", type=int, choices=(1, 2), default=2,
                   help="Dense blocks per layer (2: rounding residuals in a second block, about 10-bit weights)")
    d.add_argument("--weight-bits", type=int, choices=(8, 9), default=8)
    d.add_argument("--chips", type=int, default=1,
                   help="chips available (default 1): a network needing more is refused naming the chips needed; "
                        "cores fill chips in layer order and the report counts inter-chip spikes per clip")
    d.add_argument("--chip", choices=("loihi2", "loihi1"), default="loihi2", help="chip limits (default loihi2)")
    d.add_argument("--prune", type=float, default=0.0,
                   help="zero this fraction of the smallest weights of each --prune-layers layer (e.g. 0.5, 0.8, "
                        "0.9); the pruned synapses are not stored (sparse storage: weight + axon index bits)")
    d.add_argument("--prune-layers", default="fc0,fc1",
                   help="layers to prune: fc0 (input -> hidden), fc1 (hidden -> code), decoder (default fc0,fc1)")
    d.add_argument("--range-margin", type=float, default=None,
                   help="calibrated ranges: measured maxima x (1 + margin) (default 0.5, the compiler's: "
                        "almost no 16-bit input overflows; 0.1 gives finer scales and a higher decoder agreement on "
                        "weak models, with overflows on ~0.01 %% of neuron-steps, docs/audio.md)")
    d.add_argument("--exponent", choices=("fine", "mantissa"), default="fine",
                   help="weight exponent per layer: fine (default here; the compiler's option with two weight "
                        "blocks) = chosen for the grid of both weight blocks, so each neuron's scale grows to what its "
                        "ranges allow; mantissa = the first block's grid (the compiler's default)")
    d.add_argument("--no-scores", action="store_true",
                   help="skip the generated digits' test MSE / nearest class (they need MNIST for the pairing)")
    d.add_argument("--range", choices=("calibrated", "worst-case"), default="calibrated",
                   help="ranges from --calibration-clips training clips (default) or worst case")
    d.add_argument("--calibration-clips", type=int, default=50)
    d.add_argument("--data-dir", default=None, help="folder holding fsdd/ (default $SNNC_DATA)")
    d.add_argument("--feature-cache", default=None, help="cochleagram cache folder (default: none)")
    d.add_argument("--json", default=None, help="write the report here (JSON)")
    d.add_argument("--out", default=None, help="write the compiled network here (npz)")
    d.set_defaults(func=_audio_deploy)
    p = subparsers.add_parser("audio2image", help="draw the digit a spoken-digit recording says (audiocoder)",
                              description="Run a wav recording (8 kHz mono 16-bit PCM) through a trained audiocoder "
                                          "and the image autoencoder's decoder; write the generated digit as PNG.")
    p.add_argument("clip", help="wav file: mono 16-bit PCM at 8000 Hz (or the model's feature rate)")
    p.add_argument("--model", required=True, help="audiocoder run folder (snnc train audio) or its audiocoder.npz")
    p.add_argument("--out", default="digit.png", help="output PNG (default digit.png)")
    p.add_argument("--seed", type=int, default=0, help="seed of the Bernoulli input spikes")
    p.add_argument("--cut", action="store_true", help="cut a clip longer than the model's window instead of "
                                                      "refusing it")
    p.set_defaults(func=_audio2image)
