"""Deployment of the audio-to-image model: audiocoder + the autoencoder's decoder as ONE LIF steps graph, its
chip resources (hw_sim/resources.py design rules) and its verification on the LIF targets (toolchain/verify_trains).

``joint_graph``: input (n_in cochleagram features as Bernoulli spikes) -> Dense W1 -> LIF H -> Dense W2 ->
LIF n_code -> Dense W_dec -> LIF 784 (leak/v_th of each population, clamp, reset to zero): the same equations as
models/audio_model.run_clip (tested to give the same spikes through toolchain.lif_reference).

``chip_resources``: the partition of those three layers (8-bit dense synapses, no pulses) onto Loihi-2-like chips.
The paper's 58,500 x 2,048 front end breaks two rules: 58,500 input axons per core (limit 4,096) and 1,030 cores
(one chip: 128). :func:`check_deployable` raises that DRCError with the fix: a smaller front end, e.g.
``snnc train audio --audio-rate 8000 --decimation 80 --frames 120 --hidden 512`` (32 x 120 = 3,840 inputs).
"""
from __future__ import annotations

import math

import numpy as np

from toolchain.errors import DRCError

SMALL_FRONT_END = "--audio-rate 8000 --decimation 80 --frames 120 --hidden 512 --p-scale 0.15"


def joint_graph(ac):
    """The IR steps graph of an audiocoder (models.audio_model.AudioCoder) followed by its decoder."""
    from toolchain.ir import LIF, lif_chain

    meta = {"family": "audio-to-image", "encoding": "bernoulli", "p_scale": ac.p_scale, "steps": ac.steps,
            "spec": ac.meta.get("spec"), "pairing": ac.meta.get("pairing")}
    return lif_chain([np.asarray(ac.w1t, np.float64).T, np.asarray(ac.w2, np.float64), ac.dec_w],
                     [LIF(ac.hidden, leak=0.9, v_th=1.0, clamp=True), LIF(ac.n_code, leak=0.9, v_th=1.0, clamp=True),
                      LIF(ac.dec_w.shape[0], leak=ac.dec_leak, v_th=ac.dec_v_th, clamp=True)], metadata=meta)


def chip_resources(n_in: int, hidden: int, n_code: int = 196, n_img: int = 784, chip: str = "loihi2",
                   chips: int = 1, weight_bits: int = 8):
    """ResourceReport (strict=False: violations listed) of the joint network's three dense layers on ``chips``
    chips; also ``chips_needed`` = chips whose cores hold the partition (fan-in rules aside)."""
    import dataclasses

    from hw_sim.resources import LayerSpec, get_chip, partition_specs

    spec = dataclasses.replace(get_chip(chip), chips=int(chips))
    layers = [LayerSpec("audio.fc0", n_in, hidden, 0, weight_bits, n_in * hidden),
              LayerSpec("audio.fc1", hidden, n_code, 0, weight_bits, hidden * n_code),
              LayerSpec("decoder", n_code, n_img, 0, weight_bits, n_code * n_img)]
    rep = partition_specs(layers, spec, strict=False)
    return rep, math.ceil(rep.cores / spec.cores_per_chip)


def check_deployable(n_in: int, hidden: int, n_code: int = 196, chip: str = "loihi2", chips: int = 1) -> None:
    """Raise DRCError (naming the rule, the excess and the fix) when the joint network does not fit."""
    rep, need = chip_resources(n_in, hidden, n_code, chip=chip, chips=chips)
    if rep.violations:
        raise DRCError(f"the audiocoder {n_in}-{hidden}-{n_code} + decoder does not fit {chips} {chip} chip(s): "
                       + " ; ".join(rep.violations)
                       + f". Its {rep.cores} cores would need {need} chips, but the fan-in of {n_in} inputs per "
                         f"neuron cannot be split by adding chips: train a deployable front end with at most "
                         f"{rep.chip.max_fan_in_axons} inputs, e.g. snnc train audio {SMALL_FRONT_END}")


def deploy_check(ac, features, n_clips: int, targets=("hw_sim-lif",), seed: int = 7, weight_bits: int = 8,
                 calibration_clips: int = 50, range_mode: str = "calibrated", weight_blocks: int = 2,
                 calibration=None):
    """Compile the joint graph (8-bit weights, ``weight_blocks`` Dense blocks per layer, ranges calibrated on
    ``calibration_clips`` clips of ``calibration`` (a FeatureSet, e.g. training clips; None: the tail of
    ``features``), or ``range_mode`` "worst-case") and verify ``targets`` on the first ``n_clips`` clips of
    ``features`` against the float reference. Returns (StepsVerifyReport, CompiledSteps); raises DRCError first
    when the network does not fit one chip."""
    from models.audio_model import encode_clip
    from toolchain.steps_compiler import compile_graph
    from toolchain.verify_trains import verify_steps

    check_deployable(ac.n_in, ac.hidden, ac.n_code)
    graph = joint_graph(ac)
    rng = np.random.default_rng(seed)

    def trains(fs, rows):
        x = np.zeros((len(rows), ac.steps, ac.n_in), np.uint8)
        for k, n in enumerate(rows):
            for t, idx in enumerate(encode_clip(*fs.sparse(n), ac.steps, ac.p_scale, rng)):
                x[k, t, idx] = 1
        return x

    n = len(features)
    if calibration is None:
        calib = trains(features, range(max(0, n - calibration_clips), n))
    else:
        k = len(calibration)
        calib = trains(calibration, np.linspace(0, k - 1, min(calibration_clips, k)).astype(np.int64))
    cs = compile_graph(graph, ac.steps, weight_bits=weight_bits, range_mode=range_mode, weight_blocks=weight_blocks,
                       calibration_spikes=calib if range_mode == "calibrated" else None,
                       calibration_source=f"{calibration_clips} FSDD clips" if range_mode == "calibrated" else "")
    x = trains(features, range(min(n_clips, n)))
    return verify_steps(cs, x, None, targets), cs
