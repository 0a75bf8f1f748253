"""The compiled network: what the compiler (toolchain/compiler.py) emits and every target runs.

Plain data. Integer fields follow Lava 0.10.0's bit-accurate CUBA LIF + Dense semantics
(``Loihi2SimCfg(select_tag='fixed_pt')``, see docs/compiled-format.md and ../shared/docs/lava-brian2-notes.md):

* time grid: ``S = steps_per_unit`` steps per model time unit, h = 1/S; an input/pulse at model time t
  becomes source column ``round(t * S)`` (a step index within the sample's window of ``window`` steps).
* Dense: 8-bit mixed-sign weight mantissas (even values in [-256, 254] survive Lava's clip/LSB masking),
  one step of delay, sum scaled by ``2**weight_exp`` (weight_exp >= 0) and by 64 into u.
* LIF, per step: ``u = trunc0(u * (4096 - (du + 1)) / 4096) + a_in * 64`` (24-bit wrap),
  ``v = clip(trunc0(v * (4096 - dv) / 4096) + u, +-(2**23 - 1))``, spike when ``v > vth[j] * 64``, then v = 0
  (one 17-bit threshold per neuron j: the compiler scales each neuron's weights to its own range).
  ``once=True`` neurons are masked after their first spike until the window's reset.
* reporting: a spike of any layer is reported as its *equivalent source column* c (it acts on the next
  layer like an input at column c); the float model's crossing lies in ((c - 1) h, c h].

The float mapping for ``lava-float`` is stored beside the integers (``weights_float``, ``du_float``...).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.network import TemporalNetwork


def shift_weights(m: np.ndarray, e: int) -> np.ndarray:
    """Integer weights as a Dense block with exponent e applies them: m << e, or m >> -e for e < 0 (Lava
    right-shifts the summed weights; per weight this equals that only when :func:`shift_is_exact`)."""
    return m << e if e >= 0 else m >> -e


def shift_is_exact(m: np.ndarray, e: int) -> bool:
    """True when exponent e loses nothing on mantissas m (e >= 0, or every m divisible by 2**-e)."""
    return e >= 0 or not np.any(np.asarray(m, dtype=np.int64) % (1 << -e))


def sum_pulse_copies(weights: np.ndarray, source: np.ndarray, n_pulses: int) -> np.ndarray:
    """(n_out, n_columns) pulse weights of the copies -> (n_out, n_pulses) per source pulse (copies summed)."""
    out = np.zeros((weights.shape[0], n_pulses), dtype=np.result_type(weights, np.int64))
    np.add.at(out.T, source, weights.T)
    return out


@dataclass(frozen=True)
class CompiledLayer:
    """One layer on chip: a Dense synapse block feeding a CUBA LIF population.

    weights:        int32 (n_out, n_in)     Dense mantissas for ordinary inputs
    pulse_weights:  int32 (n_out, n_pulses) Dense mantissas for this layer's pulse source
    pulse_steps:    int64 (n_pulses,)       source column of each pulse within the sample window (steps); a pulse
                    may appear several times: copies on parallel axons that together carry a weight beyond one
                    mantissa (Dense sums them)
    pulse_source:   int64 (n_pulses,)       index of the source model's pulse each column carries (default: arange)
    weight_exp:     Dense weight exponent (>= 0) of the input block; u increment = w * 2**weight_exp * 64
    pulse_weight_exp: exponent of the pulse block (its own Dense); None = weight_exp
    du, dv:         12-bit decays (alpha neurons: du = D - 1, dv = D, D = round(4096 (1 - exp(-tau h))))
    vth:            int64 (n_out,) 17-bit threshold mantissa per neuron; spike when v > vth[j] * 64
                    (a scalar given to the constructor is broadcast to every neuron)
    once:           neuron spikes at most once per sample window (alpha neurons); False = plain LIF
    weights_float, pulse_weights_float, du_float, dv_float, vth_float: the floating_pt mapping
    time_offset_steps: mean lag (steps) of this layer's spikes on the grid, subtracted when reporting times
    """

    name: str
    weights: np.ndarray
    pulse_weights: np.ndarray
    pulse_steps: np.ndarray
    weight_exp: int
    du: int
    dv: int
    vth: np.ndarray
    once: bool
    weights_float: np.ndarray
    pulse_weights_float: np.ndarray
    du_float: float
    dv_float: float
    vth_float: float
    kind: str = "dense"
    num_weight_bits: int = 8
    pulse_weight_exp: int | None = None
    time_offset_steps: float = 0.0
    pulse_source: np.ndarray | None = None

    def __post_init__(self) -> None:
        n_out = np.shape(self.weights)[0]
        vth = np.asarray(self.vth)
        if vth.ndim > 1 or (vth.ndim == 1 and vth.shape[0] != n_out):
            raise ValueError(f"{self.name}: vth must be a scalar or one value per neuron ({n_out}), "
                             f"got shape {vth.shape}")
        if vth.size and not np.all(np.equal(np.mod(vth, 1), 0)):
            raise ValueError(f"{self.name}: vth must hold integers (17-bit mantissas), got {vth!r}")
        vth = np.broadcast_to(vth.astype(np.int64), (n_out,)).copy()
        vth.flags.writeable = False
        object.__setattr__(self, "vth", vth)
        n_cols = np.shape(self.pulse_steps)[0] if np.ndim(self.pulse_steps) == 1 else 0
        src = np.arange(n_cols) if self.pulse_source is None else np.asarray(self.pulse_source)
        if src.shape != (n_cols,) or (src.size and (src.dtype.kind not in "iu" or src.min() < 0)):
            raise ValueError(f"{self.name}: pulse_source must hold one non-negative integer per pulse column "
                             f"({n_cols}), got {src!r}")
        object.__setattr__(self, "pulse_source", src.astype(np.int64))

    @property
    def pulse_exp(self) -> int:
        """Exponent of the pulse block (``pulse_weight_exp``, or ``weight_exp`` when unset)."""
        return self.weight_exp if self.pulse_weight_exp is None else self.pulse_weight_exp

    @property
    def n_in(self) -> int:
        return self.weights.shape[1]

    @property
    def n_out(self) -> int:
        return self.weights.shape[0]


@dataclass(frozen=True)
class CompiledNetwork:
    """A compiled network plus the float model it came from (the ``exact`` target runs that).

    steps_per_unit: S, steps per model time unit
    window:         steps per sample window (samples are run back to back, state reset between windows)
    manifest:       source model hash, every scale/bit width/exponent, tool versions (JSON-able dict)
    """

    steps_per_unit: int
    window: int
    layers: tuple[CompiledLayer, ...]
    source: TemporalNetwork
    manifest: dict = field(default_factory=dict)

    @property
    def dt(self) -> float:
        """Step length h in model time units."""
        return 1.0 / self.steps_per_unit

    def input_columns(self, input_times: np.ndarray) -> np.ndarray:
        """Model input times (N, n_in) -> source columns (int64), -1 where no spike (inf)."""
        t = np.asarray(input_times, dtype=np.float64)
        cols = np.full(t.shape, -1, dtype=np.int64)
        finite = np.isfinite(t)
        cols[finite] = np.rint(t[finite] * self.steps_per_unit).astype(np.int64)
        return cols

    def columns_to_times(self, cols: np.ndarray, layer: int) -> np.ndarray:
        """Reported spike columns of layer ``layer`` -> model-time estimate (c - 1/2 - offset) h, inf where c < 0.

        offset is the layer's ``time_offset_steps``."""
        cols = np.asarray(cols)
        offset = self.layers[layer].time_offset_steps
        out = np.full(cols.shape, np.inf)
        m = cols >= 0
        out[m] = (cols[m] - 0.5 - offset) / self.steps_per_unit
        return out
