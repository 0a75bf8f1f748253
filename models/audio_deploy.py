"""Deployment of the audio-to-image model: audiocoder + the autoencoder's decoder as ONE LIF steps graph, its
chip resources (hw_sim/resources.py design rules) and its verification on the LIF targets (toolchain/verify_trains).

``joint_graph``: input (n_in cochleagram features as Bernoulli spikes) -> Dense W1 -> LIF H -> Dense W2 ->
LIF n_code -> Dense W_dec -> LIF 784 (leak/v_th of each population, clamp, reset to zero): the same equations as
models/audio_model.run_clip (tested to give the same spikes through toolchain.lif_reference).

``chip_resources``: the partition of those three layers (8-bit Dense synapses in one or two weight blocks, no
pulses) onto Loihi-2-like chips (hw_sim/conv_resources.py + hw_sim/multichip.py): a fan-in beyond a core's 4,096
input axons is split into relay groups (the compiler's ``max_fan_in``, issue [F]), cores fill chips in layer order,
and :func:`check_deployable` raises a DRCError naming the chips needed and the fixes when ``chips`` is too few. The
paper's 58,500-2,048 front end needs 15 relay groups and many chips (docs/audio.md, "Deployment"); the small front
end (``snnc train audio --audio-rate 8000 --decimation 80 --frames 120 --hidden 512``, 32 x 120 = 3,840 inputs)
fits one chip. :func:`prune_audiocoder` zeroes the smallest weights (``snnc audio-deploy --prune``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolchain.errors import DRCError, SnncError

SMALL_FRONT_END = "--audio-rate 8000 --decimation 80 --frames 120 --hidden 512 --p-scale 0.15"
AUDIO_RANGE_MARGIN = 0.5   # calibrated ranges x (1 + margin) of snnc audio-deploy, as the compiler's: almost no
#                            16-bit input overflows; 0.1 is finer (docs/audio.md, "The decoder's +-1 step gate")


def joint_graph(ac):
    """The IR steps graph of an audiocoder (models.audio_model.AudioCoder) followed by its decoder: the
    audiocoder's layers with the leak recorded in its metadata (0.9, or the chip's 1 - 410/4096 for a model trained
    with ``--leak chip``, which the compiler then maps exactly), the decoder with the image model's own leak."""
    from toolchain.ir import LIF, lif_chain

    meta = {"family": "audio-to-image", "encoding": "bernoulli", "p_scale": ac.p_scale, "steps": ac.steps,
            "spec": ac.meta.get("spec"), "pairing": ac.meta.get("pairing")}
    leak = float(ac.meta.get("leak", 0.9))       # the audiocoder's own (snnc train audio --leak chip: 3686/4096)
    return lif_chain([np.asarray(ac.w1t, np.float64).T, np.asarray(ac.w2, np.float64), ac.dec_w],
                     [LIF(ac.hidden, leak=leak, v_th=1.0, clamp=True), LIF(ac.n_code, leak=leak, v_th=1.0, clamp=True),
                      LIF(ac.dec_w.shape[0], leak=ac.dec_leak, v_th=ac.dec_v_th, clamp=True)], metadata=meta)


def get_chip_spec(chip: "str | ChipSpec") -> "ChipSpec":
    """A chip by name ('loihi2', 'loihi1') or a hw_sim.resources.ChipSpec itself (tests use small ones)."""
    from hw_sim.resources import ChipSpec, get_chip

    return chip if isinstance(chip, ChipSpec) else get_chip(chip)


def shape_net(n_in: int, hidden: int, n_code: int = 196, n_img: int = 784, chip="loihi2", weight_bits: int = 8,
              weight_blocks: int = 2, nonzero: tuple[int | None, ...] = (None, None, None)):
    """The joint network's three Dense layers as shapes (hw_sim.conv_resources.ShapeNet): a fan-in beyond a core's
    input axons split into ceil(n_in / axons) relay groups as the compiler's ``max_fan_in`` does; ``nonzero``: the
    non-zero synapses per layer over both blocks (None: all)."""
    from hw_sim.conv_resources import DenseShape, ShapeNet

    axons = get_chip_spec(chip).max_fan_in_axons
    sizes = [(n_in, hidden, "audio.fc0"), (hidden, n_code, "audio.fc1"), (n_code, n_img, "decoder")]
    return ShapeNet(tuple(DenseShape(name, a, b, int(weight_bits), int(weight_blocks), max(1, -(-a // axons)),
                                     nz) for (a, b, name), nz in zip(sizes, nonzero)))


def chip_resources(n_in: int, hidden: int, n_code: int = 196, n_img: int = 784, chip="loihi2",
                   chips: int | None = None, weight_bits: int = 8, weight_blocks: int = 2,
                   nonzero: tuple[int | None, ...] = (None, None, None), storage: str = "shared"):
    """(ResourceReport, ChipAssignment) of the joint network's three Dense layers (8-bit synapses, ``weight_blocks``
    per layer, fan-ins beyond a core's axons split into relay groups) on ``chips`` chips (None: as many as needed;
    too few: DRCError naming the chips needed). ``storage`` 'sparse' counts only non-zero synapses (pruned)."""
    from hw_sim.multichip import multichip_partition

    net = shape_net(n_in, hidden, n_code, n_img, chip, weight_bits, weight_blocks, nonzero)
    rep, _, assign = multichip_partition(net, get_chip_spec(chip), chips, storage)
    return rep, assign


def check_deployable(n_in: int, hidden: int, n_code: int = 196, chip="loihi2", chips: int = 1,
                     weight_blocks: int = 2, nonzero: tuple[int | None, ...] = (None, None, None),
                     storage: str = "shared"):
    """The ChipAssignment of the joint network on ``chips`` chips; DRCError (naming the cores, the chips needed,
    the relay split and the fixes) when it does not fit."""
    from hw_sim.multichip import chips_needed

    spec = get_chip_spec(chip)
    rep, assign = chip_resources(n_in, hidden, n_code, chip=spec, chips=None, weight_blocks=weight_blocks,
                                 nonzero=nonzero, storage=storage)
    need = chips_needed(rep.cores, spec)
    if rep.violations or need > chips:
        split = (f" (the fan-in of {n_in} inputs per neuron exceeds {spec.max_fan_in_axons} input axons per core: it "
                 f"is split into {-(-n_in // spec.max_fan_in_axons)} relay groups whose partial sums travel as graded "
                 "spikes, +1 step)") if n_in > spec.max_fan_in_axons else ""
        raise DRCError(f"the audiocoder {n_in}-{hidden}-{n_code} + decoder does not fit {chips} {spec.name} chip(s): "
                       f"it needs {rep.cores} neuro-cores = {need} chips of {spec.cores_per_chip}{split}"
                       + "".join(f"; {v}" for v in rep.violations)
                       + f". Fix: deploy on {need} chips (snnc audio-deploy --chips {need}: multi-chip partition, "
                         f"spikes cross chip boundaries), prune the weights (--prune 0.9 with sparse storage), or "
                         f"train a front end with at most {spec.max_fan_in_axons} inputs that fits one chip, e.g. "
                         f"snnc train audio {SMALL_FRONT_END}")
    return chip_resources(n_in, hidden, n_code, chip=spec, chips=chips, weight_blocks=weight_blocks, nonzero=nonzero,
                          storage=storage)[1]


def prune_audiocoder(ac, fraction: float, layers: tuple[str, ...] = ("fc0", "fc1")):
    """A copy of ``ac`` whose ``layers`` ('fc0' = input -> hidden, 'fc1' = hidden -> code, 'decoder') each have the
    ``fraction`` of their weights with the smallest magnitude set to 0 (per layer; ties at the cut pruned too)."""
    import dataclasses

    if not 0.0 <= float(fraction) < 1.0:
        raise SnncError(f"--prune {fraction!r} must be a fraction in [0, 1) of the weights to zero; fix: e.g. 0.8")
    bad = set(layers) - {"fc0", "fc1", "decoder"}
    if bad:
        raise SnncError(f"cannot prune layer(s) {sorted(bad)}; fix: choose from fc0, fc1, decoder")

    def cut(w):
        w = np.array(w, copy=True)
        k = int(round(float(fraction) * w.size))
        if k > 0:
            thr = np.partition(np.abs(w).ravel(), k - 1)[k - 1]
            w[np.abs(w) <= thr] = 0
        return w

    return dataclasses.replace(ac, w1t=cut(ac.w1t) if "fc0" in layers else ac.w1t,
                               w2=cut(ac.w2) if "fc1" in layers else ac.w2,
                               dec_w=cut(ac.dec_w) if "decoder" in layers else ac.dec_w,
                               meta={**ac.meta, "pruned": {"fraction": float(fraction), "layers": list(layers)}})


def clip_trains(ac, features, rows, seed: int) -> np.ndarray:
    """(len(rows), T, n_in) uint8 Bernoulli input trains of the clips ``rows`` of a FeatureSet (seeded)."""
    from models.audio_model import encode_clip

    rng = np.random.default_rng(seed)
    x = np.zeros((len(rows), ac.steps, ac.n_in), np.uint8)
    for k, n in enumerate(rows):
        for t, idx in enumerate(encode_clip(*features.sparse(n), ac.steps, ac.p_scale, rng)):
            x[k, t, idx] = 1
    return x


@dataclass(frozen=True)
class Deployment:
    """A compiled and verified joint network: ``report`` (StepsVerifyReport), ``compiled`` (CompiledSteps, or
    CompiledConv when a fan-in is split), ``inputs`` (N, T, n_in), ``runs`` {target: RunResult}, ``assign``
    (ChipAssignment)."""

    report: object
    compiled: object
    inputs: np.ndarray
    runs: dict
    assign: object


def deploy_check(ac, features, n_clips: int, targets=("hw_sim-lif",), seed: int = 7, weight_bits: int = 8,
                 calibration_clips: int = 50, range_mode: str = "calibrated", weight_blocks: int = 2,
                 calibration=None, chip="loihi2", chips: int = 1, range_margin: float | None = None,
                 storage: str = "shared", exponent: str = "fine") -> Deployment:
    """Compile the joint graph (``weight_bits`` weights, ``weight_blocks`` Dense blocks per layer, ranges calibrated
    on ``calibration_clips`` clips of ``calibration`` (a FeatureSet, e.g. training clips; None: the tail of
    ``features``) with ``range_margin`` (None: AUDIO_RANGE_MARGIN, 0.5), or ``range_mode`` "worst-case") and verify
    ``targets`` on the first ``n_clips`` clips of ``features`` against the float reference. A fan-in beyond a core's
    input axons is compiled as relay groups (toolchain/conv_compiler.py, ``max_fan_in``). Raises DRCError first when
    the network does not fit ``chips`` chips (``storage`` 'sparse': only non-zero synapses stored, for pruned
    weights). ``exponent`` "fine" (the default here; compile_graph's option with two weight blocks): each layer's weight
    exponent is chosen for the grid of both blocks (toolchain.steps_compiler.compile_graph), so the scales grow to
    what the ranges allow; "mantissa": the first block's grid (always used with one block, and for the layer of a
    split fan-in alone: :func:`used_exponent`)."""
    from targets.registry import get_target
    from toolchain.verify_trains import verify_steps

    spec = get_chip_spec(chip)
    exp_used = used_exponent(exponent, weight_blocks)
    nonzero = tuple(int(np.count_nonzero(w)) * weight_blocks for w in (ac.w1t, ac.w2, ac.dec_w))
    assign = check_deployable(ac.n_in, ac.hidden, ac.n_code, chip=spec, chips=chips, weight_blocks=weight_blocks,
                              nonzero=nonzero if storage == "sparse" else (None, None, None), storage=storage)
    graph = joint_graph(ac)
    n = len(features)
    if calibration is None:
        calib = clip_trains(ac, features, range(max(0, n - calibration_clips), n), seed)
    else:
        k = len(calibration)
        calib = clip_trains(ac, calibration, np.linspace(0, k - 1, min(calibration_clips, k)).astype(np.int64), seed)
    opts = dict(weight_bits=weight_bits, range_mode=range_mode, weight_blocks=weight_blocks,
                calibration_spikes=calib if range_mode == "calibrated" else None,
                calibration_source=f"{calibration_clips} FSDD clips" if range_mode == "calibrated" else "",
                range_margin=float(AUDIO_RANGE_MARGIN if range_margin is None else range_margin))
    if ac.n_in > spec.max_fan_in_axons:
        from toolchain.conv_compiler import compile_conv_graph

        cs = compile_conv_graph(graph, ac.steps, max_fan_in=spec.max_fan_in_axons, exponent=exp_used, **opts)
    else:
        from toolchain.steps_compiler import compile_graph

        cs = compile_graph(graph, ac.steps, exponent=exp_used, **opts)
    x = clip_trains(ac, features, range(min(n_clips, n)), seed + 1)
    runs = {t: get_target(t).run(cs, x) for t in targets}
    return Deployment(verify_steps(cs, x, None, runs), cs, x, runs, assign)


def used_exponent(exponent: str, weight_blocks: int) -> str:
    """The exponent choice :func:`deploy_check` compiles with: ``exponent`` ('fine' or 'mantissa') with two weight
    blocks, else 'mantissa' (a fan-in split into relay groups takes 'mantissa' for that layer alone: the compiled
    manifest's per-layer ``exponent``). SnncError for an unknown one."""
    if exponent not in ("fine", "mantissa"):
        raise SnncError(f"--exponent {exponent!r} is not one of fine, mantissa; fix: use fine (default: each layer's "
                        "weight exponent chosen for the grid of both weight blocks) or mantissa (the first block's "
                        "grid)")
    return exponent if weight_blocks == 2 else "mantissa"


def decoder_on_equal_codes(reference: list[np.ndarray], target: list[np.ndarray]) -> dict:
    """Where the decoder's differences come from: the clips whose code trains (population 1) equal the float
    model's, and the decoder's spikes matched within +-1 step on those clips and on the others (as issue [F] did)."""
    from toolchain.spike_metrics import count_agreement, match_spikes

    equal = np.all(reference[1] == target[1], axis=(1, 2))
    out = {"clips": int(equal.size), "clips_code_equal": int(equal.sum())}
    for key, rows in (("code_equal", equal), ("code_differs", ~equal)):
        if rows.any():
            m = match_spikes(reference[2][rows], target[2][rows], 1)
            out[f"decoder_matched_1_{key}"] = m.fraction
            out[f"decoder_identical_{key}"] = float(np.all(reference[2][rows] == target[2][rows], axis=(1, 2)).mean())
            out[f"decoder_count_agreement_{key}"] = count_agreement(reference[2][rows], target[2][rows])[0]
    diff = np.any(reference[1] != target[1], axis=1).sum(axis=1)          # differing code trains per clip
    bins = []
    for lo, hi in ((0, 0), (1, 2), (3, 5), (6, 10), (11, 20), (21, 40), (41, 10**9)):
        rows = (diff >= lo) & (diff <= hi)
        if rows.any():
            bins.append({"code_trains_differing": f"{lo}-{hi}" if hi < 10**9 else f">={lo}", "clips": int(rows.sum()),
                         "decoder_matched_1": match_spikes(reference[2][rows], target[2][rows], 1).fraction})
    out["by_code_differences"] = bins
    out["code_trains_differing_median"] = float(np.median(diff))
    return out


def images_of(trains: list[np.ndarray]) -> np.ndarray:
    """(N, 784) generated images: decoder spike counts over the T steps (models/audio_model.generate)."""
    return np.asarray(trains[-1]).sum(axis=1, dtype=np.int64).astype(np.float64)


def isolated_layers(compiled, inputs: np.ndarray, reference: list[np.ndarray]) -> list[dict]:
    """Each deployed layer alone (hw_sim, the compiled integers) driven by the float model's trains of the population
    before it (``inputs`` for the first): its own error without the flips it inherits. Per layer: spikes matched
    within 0 and +-1 step of the float model's, and the fraction of (clip, neuron) trains identical."""
    from hw_sim.conv import run_conv_fixed
    from toolchain.compiled_conv import CompiledConv
    from toolchain.conv_compiler import as_compiled_conv
    from toolchain.spike_metrics import match_spikes

    cc = as_compiled_conv(compiled)
    out = []
    for k, cl in enumerate(cc.layers):
        src = inputs if k == 0 else reference[k - 1]
        one = CompiledConv((cl,), cc.max_steps, {}, "input")
        tr = run_conv_fixed(one, np.ascontiguousarray(src, dtype=np.uint8), threads=1)[0][0]
        out.append({"layer": cl.name, "matched_0": match_spikes(reference[k], tr, 0).fraction,
                    "matched_1": match_spikes(reference[k], tr, 1).fraction,
                    "identical_trains": float(np.mean(np.all(reference[k] == tr, axis=1)))})
    return out
