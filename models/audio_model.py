"""The spiking audiocoder (cochleagram -> H -> 196, LIF as in models/rate_model.py) joined to the image
autoencoder's decoder (196 -> 784), its event-driven float64 forward pass and its file ``audiocoder.npz``.

Neurons: V = min(leak V + I, v_th); spike when V >= v_th; reset to 0 (leak 0.9, v_th 1: threshold units).
Input: each feature value v in [0, 1] spikes with probability ``p_scale * v`` per step (Bernoulli, p_scale 0.02).
The audiocoder's output spikes drive the decoder step by step; the generated image is the decoder's output spike
counts over the T steps (z-scored for scoring: models/audio_metrics.py).

File: one npz written atomically: ``w1t`` float32 (n_in, H) = W1 transposed (one row per input), ``w2`` float32
(n_code, H), ``dec_w`` float64 (784, n_code) and ``dec_leak``/``dec_v_th`` (the decoder's Dense + LIF copied from
the image model), ``meta`` (JSON: feature spec, T, p_scale, leak, v_th, dataset A/B, T_h, training settings).
A 120 M-weight audiocoder is 480 MB in float32 (artifact format 2 stores float64: 960 MB; the file of the joint LIF
graph is written by the deployment step only for deployable front ends).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from toolchain.atomic import atomic_path
from toolchain.errors import ArtifactError

LEAK = 0.9
V_TH = 1.0
FILE_NAME = "audiocoder.npz"
FORMAT = "snnc-audiocoder"
VERSION = 1


@dataclass(frozen=True, eq=False)
class AudioCoder:
    """Weights and settings of an audiocoder + decoder (see module docstring for units and shapes)."""

    w1t: np.ndarray
    w2: np.ndarray
    dec_w: np.ndarray
    dec_leak: float
    dec_v_th: float
    meta: dict

    @property
    def n_in(self) -> int:
        return int(self.w1t.shape[0])

    @property
    def hidden(self) -> int:
        return int(self.w1t.shape[1])

    @property
    def n_code(self) -> int:
        return int(self.w2.shape[0])

    @property
    def steps(self) -> int:
        return int(self.meta["steps"])

    @property
    def p_scale(self) -> float:
        return float(self.meta["p_scale"])


def decoder_of(image_graph) -> tuple[np.ndarray, float, float]:
    """(weight (784, n_code) float64, leak, v_th) of an image autoencoder's second layer (a rate LIF graph)."""
    from models.rate_model import graph_weights

    ws, pops = graph_weights(image_graph)
    if len(ws) != 2:
        raise ArtifactError(f"the image model has {len(ws)} layers; an autoencoder n-H-n (snnc train rate) is needed")
    return ws[1], float(pops[1].leak), float(pops[1].v_th)


def check_decoder(n_code: int, dec_w: np.ndarray, where: str = "the image model") -> None:
    if dec_w.shape[1] != n_code:
        raise ArtifactError(f"{where}'s decoder takes {dec_w.shape[1]} hidden neurons but the audiocoder produces "
                            f"{n_code}; use the image autoencoder the audiocoder was trained against (or train the "
                            f"audiocoder with --code {dec_w.shape[1]} against this one)")


def save_audiocoder(ac: AudioCoder, path: str | os.PathLike) -> None:
    meta = dict(ac.meta, format=FORMAT, version=VERSION)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, w1t=np.ascontiguousarray(ac.w1t, np.float32), w2=np.ascontiguousarray(ac.w2, np.float32),
                     dec_w=np.asarray(ac.dec_w, np.float64), dec_leak=np.array(ac.dec_leak),
                     dec_v_th=np.array(ac.dec_v_th), meta=np.array(json.dumps(meta)))


def load_audiocoder(path: str | os.PathLike) -> AudioCoder:
    """Read and check an audiocoder file (or a run folder holding audiocoder.npz)."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    if not path.is_file():
        raise ArtifactError(f"no audiocoder at {path}; train one with `snnc train audio --out DIR` and pass DIR")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            ac = AudioCoder(np.ascontiguousarray(z["w1t"], np.float32), np.ascontiguousarray(z["w2"], np.float32),
                            np.asarray(z["dec_w"], np.float64), float(z["dec_leak"]), float(z["dec_v_th"]), meta)
    except (OSError, KeyError, ValueError, EOFError, TypeError) as exc:
        raise ArtifactError(f"{path} is not a readable audiocoder file ({type(exc).__name__}: {exc}); retrain it with "
                            f"`snnc train audio`") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ArtifactError(f"{path} is not an snnc audiocoder file of version {VERSION}; retrain it")
    if ac.w2.shape[1] != ac.hidden or ac.w1t.ndim != 2 or ac.dec_w.ndim != 2:
        raise ArtifactError(f"{path}: weight shapes {ac.w1t.shape}, {ac.w2.shape} do not chain; retrain it")
    check_decoder(ac.n_code, ac.dec_w, str(path))
    if not all(np.all(np.isfinite(a)) for a in (ac.w1t, ac.w2, ac.dec_w)):
        raise ArtifactError(f"{path} holds non-finite weights; retrain it")
    if "spec" not in meta or "steps" not in meta or "p_scale" not in meta:
        raise ArtifactError(f"{path} lacks its feature settings (spec, steps, p_scale); retrain it")
    return ac


@numba.njit(cache=True, fastmath=False)
def _forward_one(w1t, w2, dec_w, ev_ptr, ev_i, leak, vth, dleak, dvth, code_out, img_out, hid_out):  # pragma: no cover
    """One clip: events of step t are ev_i[ev_ptr[t]:ev_ptr[t+1]]. code_out (T, n_code) uint8 spikes of the
    audiocoder; img_out (784,) decoder spike counts; hid_out (H,) += hidden spike counts. float64 potentials, reset
    to zero, clamp at v_th."""
    t_steps = ev_ptr.shape[0] - 1
    h = w1t.shape[1]
    n_code = w2.shape[0]
    n_img = dec_w.shape[0]
    v1 = np.zeros(h)
    v2 = np.zeros(n_code)
    v3 = np.zeros(n_img)
    cur = np.zeros(h)
    fired = np.empty(h, np.int64)
    for t in range(t_steps):
        cur[:] = 0.0
        for e in range(ev_ptr[t], ev_ptr[t + 1]):
            row = w1t[ev_i[e]]
            for j in range(h):
                cur[j] += row[j]
        nf = 0
        for j in range(h):
            v = leak * v1[j] + cur[j]
            if v > vth:
                v = vth
            if v >= vth:
                v1[j] = 0.0
                fired[nf] = j
                nf += 1
                hid_out[j] += 1.0
            else:
                v1[j] = v
        for k in range(n_code):
            c = 0.0
            for q in range(nf):
                c += w2[k, fired[q]]
            v = leak * v2[k] + c
            if v > vth:
                v = vth
            if v >= vth:
                v2[k] = 0.0
                code_out[t, k] = 1
            else:
                v2[k] = v
        for p in range(n_img):
            c = 0.0
            for k in range(n_code):
                if code_out[t, k]:
                    c += dec_w[p, k]
            v = dleak * v3[p] + c
            if v > dvth:
                v = dvth
            if v >= dvth:
                v3[p] = 0.0
                img_out[p] += 1.0
            else:
                v3[p] = v


def encode_clip(idx: np.ndarray, val: np.ndarray, steps: int, p_scale: float,
                rng: np.random.Generator) -> list[np.ndarray]:
    """Bernoulli spikes of one clip: [input indices spiking in step t] for t < steps; P = p_scale * value."""
    p = (np.float32(p_scale) * val).astype(np.float32)
    r = rng.random((steps, idx.shape[0]), dtype=np.float32) < p
    return [idx[r[t]] for t in range(steps)]


def run_clip(ac: AudioCoder, spikes: list[np.ndarray],
             hidden_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(code spikes (T, n_code) uint8, generated image = decoder spike counts (784,) float64) of one clip;
    ``hidden_out`` (H,) float64, if given, += the hidden layer's spike counts."""
    ptr = np.concatenate([[0], np.cumsum([len(s) for s in spikes])]).astype(np.int64)
    ev = np.concatenate(spikes).astype(np.int64) if spikes else np.zeros(0, np.int64)
    code = np.zeros((len(spikes), ac.n_code), np.uint8)
    img = np.zeros(ac.dec_w.shape[0])
    hid = hidden_out if hidden_out is not None else np.zeros(ac.hidden)
    leak = float(ac.meta.get("leak", LEAK))            # the audiocoder's own (snnc train audio --leak chip)
    _forward_one(ac.w1t, ac.w2, ac.dec_w, ptr, ev, leak, V_TH, ac.dec_leak, ac.dec_v_th, code, img, hid)
    return code, img


def generate(ac: AudioCoder, features, seed: int, hidden: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Generated images (N, 784) (decoder spike counts over T steps) and code spike counts (N, n_code) for a
    models.cochleagram.FeatureSet; Bernoulli inputs drawn from ``seed``. ``hidden`` (N, H) float64, if given,
    receives the hidden layer's spike counts per clip."""
    rng = np.random.default_rng(seed)
    imgs = np.zeros((len(features), ac.dec_w.shape[0]))
    codes = np.zeros((len(features), ac.n_code))
    for n in range(len(features)):
        idx, val = features.sparse(n)
        code, img = run_clip(ac, encode_clip(idx, val, ac.steps, ac.p_scale, rng),
                             hidden[n] if hidden is not None else None)
        imgs[n], codes[n] = img, code.sum(axis=0)
    return imgs, codes


def decode_trains(codes: np.ndarray, dec_w: np.ndarray, dec_leak: float, dec_v_th: float) -> np.ndarray:
    """Generated images (N, 784) float64 (decoder spike counts) for code spike trains ``codes`` (N, T, n_code) 0/1,
    with the decoder equations of :func:`run_clip` (float64 potentials, V = leak V + I, clamp at v_th, spike when
    V >= v_th, reset to 0), run by the rate model's float reference (models.rate_model.forward_spikes) on the
    decoder as a one-layer graph. Used to score target spike maps (the floor of any audiocoder)."""
    from models.rate_model import forward_spikes
    from toolchain.ir import LIF, lif_chain

    w = np.asarray(dec_w, np.float64)
    decoder = lif_chain([w], [LIF(w.shape[0], leak=float(dec_leak), v_th=float(dec_v_th), clamp=True)])
    return forward_spikes(decoder, np.asarray(codes))[0].sum(axis=1, dtype=np.float64)
