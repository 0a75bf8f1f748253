"""Data-calibrated ranges for the compiler's ``range_mode="calibrated"`` (docs/compiler.md, section 3).

The worst-case range checks assume every inhibitory input of a neuron arrives in the same step; for wide layers
(hidden 1024: 1,024 inputs) that bound is far above anything real data produces and forces thresholds (hence
weight grids) that are too coarse, or no compilation at all. Calibration instead runs the float grid mapping
(lava-float's semantics with the deployed decay ``dd = 1 - D/4096``) on sample inputs and measures, per neuron and
only while the neuron can still spike (a once-neuron that has spiked no longer affects any output):

* ``a_in``:  largest |synaptic input of one step|,
* ``u``:     largest |current|,
* ``v_neg``: largest negative voltage |min(v, 0)|,
* ``v_pos``: largest voltage before the reset (information only: positive saturation cannot change a spike),

each divided by theta. The integer value at threshold mantissa ``vth_j`` is then ``vth_j * a_in`` (16-bit input)
and ``64 * vth_j * u`` or ``64 * vth_j * v`` (24-bit state), which is what the compiler bounds, after a margin.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from models.network import TemporalNetwork
from toolchain.errors import CompileError

DEFAULT_CALIBRATION_SAMPLES = 200
DEFAULT_RANGE_MARGIN = 0.5  # measured ranges x (1 + margin): docs/compiler.md, section 3 (test-set maxima)
RANGE_MODES = ("worst-case", "calibrated")
STATS = ("a_in", "u", "v_neg", "v_pos")


@dataclass(frozen=True)
class LayerRanges:
    """Measured maxima per neuron of one layer, in units of theta (float grid mapping), over all samples.

    a_in, u, v_neg, v_pos: (n_out,) float64 (see the module docstring); spiked: (n_out,) fraction of samples in
    which the neuron spiked."""

    a_in: np.ndarray
    u: np.ndarray
    v_neg: np.ndarray
    v_pos: np.ndarray
    spiked: np.ndarray


@dataclass(frozen=True)
class Calibration:
    """Ranges of every layer measured on ``samples`` inputs at ``steps_per_unit`` steps per time unit."""

    layers: tuple[LayerRanges, ...]
    samples: int
    steps_per_unit: float
    window: int


@numba.njit(cache=True, nogil=True)
def _layer_kernel(cols, rows, n_in, p_cols, W, dd, theta, a_max, u_max, vn_max, vp_max, n_spk, out_cols):
    """Float grid run of one layer over every sample. cols: (N, n_in) input columns (-1 none); rows: (n_in + n_p,
    n_out) weights w h dd (inputs, then pulses); p_cols: (n_p,) pulse columns. Updates the running maxima (n_out,)
    in place and writes the reported spike columns (N, n_out) (-1 none)."""
    N = cols.shape[0]
    n_out = rows.shape[1]
    n_p = p_cols.shape[0]
    acc = np.zeros((W, n_out))
    u = np.zeros(n_out)
    v = np.zeros(n_out)
    live = np.zeros(n_out, np.bool_)
    for s in range(N):
        acc[:, :] = 0.0
        first = W
        for i in range(n_in):
            c = cols[s, i]
            if c >= 0:
                first = min(first, c)
                for j in range(n_out):
                    acc[c, j] += rows[i, j]
        for k in range(n_p):
            c = p_cols[k]
            first = min(first, c)
            for j in range(n_out):
                acc[c, j] += rows[n_in + k, j]
        for j in range(n_out):
            u[j] = 0.0
            v[j] = 0.0
            live[j] = True
            out_cols[s, j] = -1
        for n in range(first, W):
            for j in range(n_out):
                if not live[j]:
                    continue
                a = acc[n, j]
                u[j] = dd * u[j] + a
                v[j] = dd * v[j] + u[j]
                if abs(a) > a_max[j]:
                    a_max[j] = abs(a)
                if abs(u[j]) > u_max[j]:
                    u_max[j] = abs(u[j])
                if -v[j] > vn_max[j]:
                    vn_max[j] = -v[j]
                if v[j] > vp_max[j]:
                    vp_max[j] = v[j]
                if v[j] > theta and n < W - 1:  # the window's last update reports no spike
                    live[j] = False
                    out_cols[s, j] = n + 1
                    n_spk[j] += 1


def measure_ranges(net: TemporalNetwork, input_times: np.ndarray, steps_per_unit: float, window: int,
                   pulse_columns: list[np.ndarray], decay: float) -> Calibration:
    """Run the float grid mapping of ``net`` on ``input_times`` (N, n_in), time units, inf = no spike.

    steps_per_unit: S (steps per time unit); window: steps per sample; pulse_columns: per layer, the source column of
    each pulse (the compiler's placement, centring included); decay: the deployed per-step decay dd. Layer l + 1
    sees layer l's grid spikes, as on the chip."""
    x = np.asarray(input_times, dtype=np.float64)
    n_in = net.layers[0].n_in
    if x.ndim != 2 or x.shape[1] != n_in or x.shape[0] < 1:
        raise CompileError(f"calibration inputs must have shape (N >= 1, {n_in}), got {x.shape}; fix: pass input "
                           "spike times of training images (models.encoding.latency_encode)")
    if np.isnan(x).any() or np.isneginf(x).any():
        raise CompileError("calibration inputs contain NaN or -inf; fix: use inf for 'no spike' and times >= 0")
    cols = np.full(x.shape, -1, np.int64)
    fin = np.isfinite(x)
    cols[fin] = np.rint(x[fin] * steps_per_unit).astype(np.int64)
    if np.any(cols[fin] < 0) or np.any(cols[fin] > window - 1):
        raise CompileError(f"calibration input times must lie in [0, {(window - 1) / steps_per_unit:g}] time units "
                           "(inside the sample window); fix: pass latency-coded images (times in [0, 1])")
    h = 1.0 / steps_per_unit
    out = []
    for k, layer in enumerate(net.layers):
        rows = np.ascontiguousarray(np.vstack([layer.weights.T, layer.pulse_weights.T]) * (h * decay))
        stats = [np.zeros(layer.n_out) for _ in STATS]
        n_spk = np.zeros(layer.n_out, np.int64)
        nxt = np.empty((x.shape[0], layer.n_out), np.int64)
        _layer_kernel(cols, rows, layer.n_in, np.asarray(pulse_columns[k], np.int64), int(window), float(decay),
                      float(net.theta), *stats, n_spk, nxt)
        out.append(LayerRanges(*(s / net.theta for s in stats), spiked=n_spk / x.shape[0]))
        cols = nxt
    return Calibration(tuple(out), int(x.shape[0]), float(steps_per_unit), int(window))


def check_range_options(range_mode: str, margin: float, calibration_times) -> None:
    """CompileError for an unknown mode, a bad margin, or calibrated mode without inputs."""
    if range_mode not in RANGE_MODES:
        raise CompileError(f"range_mode={range_mode!r} is not supported; fix: use one of {', '.join(RANGE_MODES)}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) \
            or not 0.0 <= margin <= 100.0:
        raise CompileError(f"range_margin={margin!r} must be a number in [0, 100] (relative headroom over the "
                           f"measured ranges); fix: e.g. {DEFAULT_RANGE_MARGIN}")
    if range_mode == "calibrated" and calibration_times is None:
        raise CompileError("range_mode='calibrated' needs calibration inputs; fix: pass calibration_times= (input "
                           "spike times of training images) or, on the command line, --range calibrated with "
                           "--calibration-samples N (images of the model's training set)")


def calibration_images(metadata: dict, dataset: str | None, samples: int, n_in: int,
                       data_dir: str | None = None) -> tuple[np.ndarray, str]:
    """The first ``samples`` training images (N, n_in) float64 in [0, 1] of ``dataset`` (default: the model's
    metadata 'dataset') for calibration, and where they came from; CompileError naming the fix otherwise."""
    from models.datasets import load_dataset

    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise CompileError(f"calibration_samples={samples!r} must be a positive integer; fix: e.g. "
                           f"{DEFAULT_CALIBRATION_SAMPLES}")
    name = dataset or metadata.get("dataset")
    if not name:
        raise CompileError("the model does not record its training dataset, so calibration does not know which "
                           "images to use; fix: pass --calibration-dataset mnist (or fashion-mnist)")
    ds = load_dataset(name, "train", data_dir=data_dir, limit=int(samples))
    images = np.asarray(ds.images, np.float64).reshape(ds.images.shape[0], -1)
    if images.shape[1] != n_in:
        raise CompileError(f"{name} images have {images.shape[1]} pixels but the model has {n_in} inputs; fix: pass "
                           "the dataset the model was trained on (--calibration-dataset)")
    return images, f"{name} train[:{images.shape[0]}] ({ds.source})"


def training_input_times(net: TemporalNetwork, dataset: str | None, samples: int,
                         data_dir: str | None = None) -> tuple[np.ndarray, str]:
    """Latency-coded input times of the first ``samples`` training images of ``dataset`` (default: the dataset
    recorded in the model's metadata) and a description of where they came from."""
    from models.encoding import latency_encode

    if net.encoding != "latency":
        raise CompileError(f"calibration supports latency-coded models, this one uses {net.encoding!r}; fix: use "
                           "--range worst-case")
    images, source = calibration_images(net.metadata, dataset, samples, net.layers[0].n_in, data_dir)
    return latency_encode(images), source
