"""Bit-accurate emulation of a CompiledSteps (Dense -> LIF chain) as ``lava-fixed`` runs it on Lava 0.10's stock
``PyDenseModelBitAcc`` and ``PyLifResetModelBitAcc`` (toolchain/compiled_steps.py states the integer equations).

One numba kernel runs every layer of a sample step by step (threads take chunks of CHUNK_SAMPLES samples in turn
and run each chunk through every layer, GIL-free; the kernel checks the values of uint8 input in its scan of them
and returns spike trains only: first-spike steps are computed from them when read, FirstSpikeSteps):

* synaptic sums are event-driven: each step a layer adds only the weight rows of the inputs that spiked (lists of
  active inputs, found by scanning the input 8 bytes at a time and built by each layer for the next one), four
  rows per pass over the accumulator;
* the sums run on the weight mantissas in units of the grid step (8-bit: m / 2, 9-bit: m) and are shifted by the
  exponent afterwards, which equals Lava's sum of ``m << weight_exp`` (or ``>> 1``, exact on even mantissas).
  A layer with a second Dense block (fine_weights) runs on the sum of both blocks' integer weights, which is
  what Lava's LIF receives (its a_in port adds the two Dense outputs; each Dense sums its integer weights and
  then shifts the sum, exactly). They run on 16-bit lanes (SIMD) when ``active inputs x max |mantissa| <=
  2**15 - 1`` makes the exact sum fit (wrapping partial sums then still give it), as two exact 16-bit partial
  sums added in 32 bits when the events split into two such groups, else on 32-bit lanes;
* the LIF update (hw_sim/lif_update.py, shared with hw_sim/conv.py: u wrap at 24 bits, truncating decay of v,
  saturation, strict threshold, reset to zero) runs branch-free on 32-bit lanes, without per-neuron range checks
  when the step's sums cannot exceed 16 bits: ``trunc0(v (4096 - dv) / 4096)`` is split into ``(|v| >> 12) keep
  + ((|v| & 4095) keep) >> 12`` so that no product leaves 32 bits (64-bit lanes on the rare path whose sum
  exceeds 16 bits).

Results are aligned to the float model (toolchain/lif_reference.py): the Dense delay and the source step are not
simulated, since they only shift each layer's train by a constant number of steps (targets/lava_lif.py shifts
Lava's results back by the same amount). ``run_lif_reference`` is the plain, obviously-Lava per-layer loop kept
as the test oracle of the fast kernel.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numba
import numpy as np

from hw_sim.emulator import default_threads
from hw_sim.lif_update import lif_update, max_abs, update16, update16_quiet
from toolchain.compiled_steps import CompiledSteps, validate_compiled_steps
from toolchain.errors import ArtifactError, TargetError
from toolchain.quantize import A_IN_MAX, DECAY_BITS, DECAY_UNITY, MANTISSA, STATE_SHIFT, UV_MAX


def compiled_steps_of(net, inputs, target: str) -> CompiledSteps:
    """``net`` itself when it is a valid CompiledSteps; a steps Graph compiled with compile_graph's defaults for
    the inputs' number of steps; TargetError naming the problem otherwise."""
    from toolchain.ir import Graph

    if isinstance(net, Graph):
        from toolchain.errors import CompileError
        from toolchain.steps_compiler import compile_graph

        shape = np.shape(_as_array(inputs, target))
        if len(shape) != 3:
            raise TargetError(f"{target}: input spike trains must have shape (samples, steps, channels), got "
                              f"{shape}; fix: pass one (steps, channels) 0/1 array per sample")
        try:
            return compile_graph(net, int(shape[1]))
        except CompileError as exc:
            raise TargetError(f"{target}: {exc}") from None
    try:
        return validate_compiled_steps(net, f"{target} input")
    except ArtifactError as exc:
        raise TargetError(str(exc)) from None


def _as_array(spikes_in, target: str) -> np.ndarray:
    """np.asarray of the inputs; TargetError for ragged nested sequences (samples or steps of different lengths)."""
    try:
        return np.asarray(spikes_in)
    except ValueError as exc:
        raise TargetError(f"{target}: input spike trains must form one (samples, steps, channels) array, but the "
                          f"nested sequences differ in length ({exc}); fix: give every sample the same number of "
                          "steps and channels") from None


def check_steps_input(cs: CompiledSteps, spikes_in: np.ndarray, target: str, uint8_values: bool = True) -> np.ndarray:
    """(N, T, n_in) 0/1 spike trains with 1 <= T <= cs.max_steps -> uint8 (no copy for uint8 or bool input);
    TargetError naming the problem. ``uint8_values=False`` leaves the values of uint8 input unchecked (the caller
    checks them: simulate_lif's kernel does, in the pass that reads them anyway)."""
    x = _as_array(spikes_in, target)
    if x.ndim != 3 or x.shape[2] != cs.n_in or x.shape[0] < 1 or x.shape[1] < 1:
        raise TargetError(f"{target}: input spike trains must have shape (samples, steps, {cs.n_in}), got "
                          f"{x.shape}; fix: pass one (steps, {cs.n_in}) 0/1 array per sample")
    if x.dtype == np.bool_:
        ok = True
    elif x.dtype == np.uint8:
        ok = not uint8_values or int(x.max()) <= 1
    else:
        ok = x.dtype.kind in "biuf" and bool(np.all((x == 0) | (x == 1)))
    if not ok:
        raise _not_binary(target)
    if x.shape[1] > cs.max_steps:
        raise TargetError(f"{target}: samples have {x.shape[1]} steps but the network was compiled (and its ranges "
                          f"checked) for at most {cs.max_steps}; fix: recompile with max_steps={x.shape[1]}")
    return x.view(np.uint8) if x.dtype == np.bool_ else x.astype(np.uint8, copy=False)


def _not_binary(target: str) -> TargetError:
    return TargetError(f"{target}: input spike trains must hold only 0 and 1; fix: encode the inputs as spike "
                       "trains (one spike per channel and step at most)")


_LIM = UV_MAX + 1  # Lava's max_uv_val = 2**23
_A_MAX = A_IN_MAX  # 16-bit synaptic input (hardware; Lava's simulation does not limit it)
_I16 = (1 << 15) - 1
RANGE_EVENTS = ("a_in_over_16bit", "u_wrapped", "v_saturated_low", "v_saturated_high")


@dataclass(frozen=True)
class LifRun:
    """A run of hw_sim's LIF emulation: ``trains`` [(N, T, n) uint8] per layer; ``events`` per layer: range events
    in neuron-steps (RANGE_EVENTS); ``threads`` used; ``populations``: the layers' node names. ``first``: per
    layer, the (N, n) float64 step of each neuron's first spike (inf: none), computed from the trains when first
    read (:class:`FirstSpikeSteps`)."""

    trains: list[np.ndarray]
    events: list[dict[str, int]]
    threads: int
    populations: list[str] = field(default_factory=list)

    @cached_property
    def first(self) -> "FirstSpikeSteps":
        return FirstSpikeSteps(self.trains)


def _byte_tables() -> tuple[np.ndarray, np.ndarray]:
    """For a word of 8 bytes, each 0 or 1: ``(word * _GATHER) >> 56`` is an 8-bit code (distinct for each of the
    256 patterns); _POSITIONS[code] lists the positions of its 1 bytes (padded with 0) and _COUNTS[code] their
    number. Built by enumerating the patterns, so the code need not be a plain bit mask."""
    positions, counts = np.zeros((256, 8), np.int64), np.zeros(256, np.int64)
    for pattern in range(256):
        ones = [b for b in range(8) if pattern >> b & 1]
        word = sum(1 << (8 * b) for b in ones)
        code = ((word * _GATHER) & (2**64 - 1)) >> 56
        assert counts[code] == 0 and (code or not ones), "gather code collision"
        positions[code, :len(ones)] = ones
        counts[code] = len(ones)
    return positions, counts


_GATHER = 0x0102040810204080
_NOT_LOW_BITS = 0xFEFEFEFEFEFEFEFE
_POSITIONS, _COUNTS = _byte_tables()


@numba.njit(cache=True, nogil=True, inline="always")
def _scan_words(words, idx, nonzero, bad):  # pragma: no cover  (compiled)
    """Indices of the 1 bytes of a row given as uint64 words (8 bytes of 0/1 each) -> idx (room for 8 more);
    returns their number. Branch-free: the nonzero words are listed first, then each expands through the
    _POSITIONS table (an unpredictable branch per word would cost more than the work). bad[0] |= the words'
    bits other than each byte's lowest: nonzero when a byte is neither 0 nor 1 (the input check, done here
    instead of a separate pass over the inputs; such bytes only select wrong, in-range table rows)."""
    m = 0
    orv = np.uint64(0)
    for w in range(words.shape[0]):
        nonzero[m] = w
        m += words[w] != 0
        orv |= words[w]
    bad[0] |= orv & np.uint64(_NOT_LOW_BITS)
    c = 0
    for i in range(m):
        w = nonzero[i]
        code = (words[w] * np.uint64(_GATHER)) >> np.uint64(56)
        base = 8 * w
        for b in range(8):
            idx[c + b] = base + _POSITIONS[code, b]
        c += _COUNTS[code]
    return c


@numba.njit(cache=True, nogil=True, inline="always")
def _scan_bytes(row, n, idx):  # pragma: no cover  (compiled)
    c = 0
    for i in range(n):
        idx[c] = i
        c += row[i]
    return c


@numba.njit(cache=True, nogil=True, inline="always")
def _accumulate32(w, idx, n_ev, acc, n_out):  # pragma: no cover  (compiled)
    """acc[:n_out] (int32) = sum of the (int8 or int16) rows w[idx[:n_ev]], four rows per pass: the path of sums
    that may exceed 16 bits."""
    i32 = np.int32
    for j in range(n_out):
        acc[j] = 0
    e = 0
    while e + 4 <= n_ev:
        r0 = w[idx[e]]
        r1 = w[idx[e + 1]]
        r2 = w[idx[e + 2]]
        r3 = w[idx[e + 3]]
        for j in range(n_out):
            acc[j] = i32(acc[j] + i32(i32(i32(r0[j]) + i32(r1[j])) + i32(i32(r2[j]) + i32(r3[j]))))
        e += 4
    while e < n_ev:
        r0 = w[idx[e]]
        for j in range(n_out):
            acc[j] = i32(acc[j] + i32(r0[j]))
        e += 1


@numba.njit(cache=True, nogil=True, inline="always")
def _accumulate16(w, idx, n_ev, acc, n_out):  # pragma: no cover  (compiled)
    """acc[:n_out] (int16) = sum of the rows w[idx[:n_ev]] (int8 or int16 rows), wrapping; four rows per pass
    (one load and store of acc per four rows; the first pass writes acc instead of adding to zeros). Every
    intermediate is cast to int16, else numba widens to int64; rows are indexed as w[i, j], not through row
    views (about 4 % faster on the output layer's sums)."""
    i16 = np.int16
    e = 0
    if n_ev >= 4:
        a0 = idx[0]
        a1 = idx[1]
        a2 = idx[2]
        a3 = idx[3]
        for j in range(n_out):
            acc[j] = i16(i16(i16(w[a0, j]) + i16(w[a1, j])) + i16(i16(w[a2, j]) + i16(w[a3, j])))
        e = 4
    else:
        for j in range(n_out):
            acc[j] = 0
    while e + 4 <= n_ev:
        a0 = idx[e]
        a1 = idx[e + 1]
        a2 = idx[e + 2]
        a3 = idx[e + 3]
        for j in range(n_out):
            acc[j] = i16(acc[j] + i16(i16(i16(w[a0, j]) + i16(w[a1, j])) + i16(i16(w[a2, j]) + i16(w[a3, j]))))
        e += 4
    while e < n_ev:
        a0 = idx[e]
        for j in range(n_out):
            acc[j] = i16(acc[j] + i16(w[a0, j]))
        e += 1


@numba.njit(cache=True, nogil=True)
def _run_layer(src, words, lo, hi, w_small, out, shift, keep, qmax, thr, ev):  # pragma: no cover
    """Samples lo .. hi - 1 of one layer. Input: ``words`` (N, T, W) uint64 (8 input bytes per word, zero padded;
    the first layer) when W > 0, else ``src`` (N, T, n_in) uint8 (the previous layer's trains). w_small:
    (n_in, n_out) integer weights in grid units, int8 where they fit (half the bytes to load), else int16; out
    (N, T, n_out) uint8, written; shift: a_in = sum << shift; keep: 4096 - dv; qmax (n_in,): largest |mantissa|
    of each input's row, grid units; thr (n_out,) int32 = vth << 6; ev (N, 4) int32 range events, added to.
    Returns the bits of the input words other than each byte's lowest (0 when every input byte is 0 or 1; only
    the word input is checked). The layer's parameters are scalars of this call, loop-invariant for LLVM (loaded
    per step inside a loop over layers they cost ~50 %)."""
    t_steps = out.shape[1]
    n_out = out.shape[2]
    use_words = words.shape[2] > 0
    n_in = 8 * words.shape[2] if use_words else src.shape[2]
    idx = np.zeros(n_in + 8, np.int64)
    nonzero = np.zeros(words.shape[2], np.int64)
    bad = np.zeros(1, np.uint64)
    acc16 = np.zeros(n_out, np.int16)
    acc16b = np.zeros(n_out, np.int16)
    acc32 = np.zeros(n_out, np.int32)
    v = np.zeros(n_out, np.int32)
    for k in range(lo, hi):
        v[:] = 0
        evk = ev[k]
        for t in range(t_steps):
            n_ev = _scan_words(words[k, t], idx, nonzero, bad) if use_words else _scan_bytes(src[k, t], n_in, idx)
            row = out[k, t]
            bound = 0                                 # bound of |sum| in grid units: the active rows' max |q|
            for e in range(n_ev):
                bound += qmax[idx[e]]
            if bound << shift <= _A_MAX:                # the common step: no sum can leave 16 bits
                _accumulate16(w_small, idx, n_ev, acc16, n_out)
                update16_quiet(acc16, n_out, shift, keep, thr, v, row, evk)
            elif bound <= _I16:
                _accumulate16(w_small, idx, n_ev, acc16, n_out)
                if max_abs(acc16, n_out) << shift <= _A_MAX:
                    update16_quiet(acc16, n_out, shift, keep, thr, v, row, evk)
                else:                                 # |a_in| <= 2**15 << 8 = 2**23
                    update16(acc16, n_out, shift, keep, thr, v, row, evk)
            else:
                m = 0                                 # the longest prefix of events whose bound fits 16 bits
                part = 0
                while m < n_ev and part + qmax[idx[m]] <= _I16:
                    part += qmax[idx[m]]
                    m += 1
                if bound - part <= _I16:              # two exact 16-bit partial sums (half the bytes of int32)
                    _accumulate16(w_small, idx, m, acc16, n_out)
                    _accumulate16(w_small, idx[m:], n_ev - m, acc16b, n_out)
                    for j in range(n_out):
                        acc32[j] = np.int32(np.int32(acc16[j]) + np.int32(acc16b[j]))
                else:
                    _accumulate32(w_small, idx, n_ev, acc32, n_out)
                lif_update(acc32, n_out, shift, keep, thr, v, row, evk, max_abs(acc32, n_out))
    return bad[0]


@numba.njit(cache=True, nogil=True)
def _first_spikes(trains, first):  # pragma: no cover  (compiled)
    """first (N, n) float64 = step of each neuron's first spike in trains (N, T, n) uint8, inf where none."""
    for k in range(trains.shape[0]):
        fk = first[k]
        fk[:] = np.inf
        for t in range(trains.shape[1] - 1, -1, -1):
            row = trains[k, t]
            for j in range(trains.shape[2]):
                if row[j]:
                    fk[j] = t


def first_spike_view(trains: np.ndarray) -> np.ndarray:
    """(N, T, n) 0/1 uint8 trains -> (N, n) float64 step of each neuron's first spike, inf where it never spikes
    (targets.base.first_spike_steps, compiled)."""
    first = np.empty((trains.shape[0], trains.shape[2]), dtype=np.float64)
    _first_spikes(np.ascontiguousarray(trains), first)
    return first


class FirstSpikeSteps(Sequence):
    """Per layer, the (N, n) float64 first-spike steps of ``trains`` (inf: none), computed on first access and
    kept: most callers (the spike-train verifier) read only the trains, so a run does not write these 8 bytes per
    neuron and sample (a third of its output) unasked."""

    def __init__(self, trains: list[np.ndarray]) -> None:
        self._trains = trains
        self._done: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._trains)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        j = range(len(self))[i]                  # IndexError as a list's; negative indices allowed
        if j not in self._done:
            self._done[j] = first_spike_view(self._trains[j])
        return self._done[j]

    def __repr__(self) -> str:
        return f"FirstSpikeSteps({len(self)} layers)"


def _pack(cs: CompiledSteps) -> list[tuple]:
    """Per layer: (w_small, shift, keep, qmax, thr) kernel arguments (see _run_layer). The weights in grid units
    fit 16 bits: |mantissa| <= 256 at one block; with two, at most 254 * 2**7 + 2**7 / 2 fine units."""
    layers = []
    for cl in cs.layers:
        step = MANTISSA[cl.num_weight_bits][2]
        low_exp = cl.weight_exp if cl.fine_weights is None else cl.fine_exp
        unit = low_exp + step.bit_length() - 1          # effective weights are multiples of 2**unit (unit >= 0)
        q = cl.effective >> unit                                                        # exact, (n_out, n_in)
        lo, hi = (int(q.min()), int(q.max())) if q.size else (0, 0)
        assert -32767 <= lo and hi <= 32767, "weights beyond 16 bits in grid units"
        q = q.astype(np.int8 if -128 <= lo and hi <= 127 else np.int16)                 # narrowed, then transposed
        layers.append((np.ascontiguousarray(q.T),
                       np.int64(unit),
                       np.int64(DECAY_UNITY - cl.dv),
                       np.maximum(q.max(axis=0, initial=0).astype(np.int64),         # |q| per input row, in int64
                                  -q.min(axis=0, initial=0).astype(np.int64)),       # (np.abs(int8 -128) wraps)
                       np.asarray(cl.vth, dtype=np.int32) << STATE_SHIFT))              # <= (2**17 - 1) << 6
    return layers


def _words(x: np.ndarray) -> np.ndarray:
    """(N, T, n) uint8 -> (N, T, ceil(n / 8)) uint64 view (a zero-padded copy when n is not a multiple of 8)."""
    n = x.shape[2]
    if n % 8 or not x.flags.c_contiguous:
        pad = np.zeros(x.shape[:2] + (-(-n // 8) * 8,), dtype=np.uint8)
        pad[:, :, :n] = x
        x = pad
    return x.view(np.uint64)


CHUNK_SAMPLES = 64
"""Samples per work item of simulate_lif's threads: small enough that the threads finish together (they take
chunks in turn) and a chunk's hidden trains are still in L2 when the next layer reads them."""


def simulate_lif(cs: CompiledSteps, spikes_in: np.ndarray, threads: int | None = None,
                 target: str = "hw_sim-lif") -> LifRun:
    """Run ``cs`` (a CompiledSteps, or a steps Graph compiled here with compile_graph's defaults for the inputs'
    T) on (N, T, n_in) 0/1 trains; samples on ``threads`` threads (default hw_sim.emulator.default_threads(),
    i.e. $SNNC_THREADS or the usable CPUs), which take chunks of CHUNK_SAMPLES samples in turn and run each
    through every layer. TargetError for bad input (naming ``target``) before any result exists: shapes and
    non-uint8 values before anything runs; the values of uint8 input inside the kernel's first pass over them
    (the threads stop at the first chunk that holds a value other than 0 and 1)."""
    cs = compiled_steps_of(cs, spikes_in, target)
    x = check_steps_input(cs, spikes_in, target, uint8_values=False)
    n, t_steps = x.shape[:2]
    n_threads = max(1, min(int(threads or default_threads()), n))
    layers = _pack(cs)
    outs = [np.empty((n, t_steps, cl.n_out), dtype=np.uint8) for cl in cs.layers]
    evs = [np.zeros((n, len(RANGE_EVENTS)), dtype=np.int32) for _ in cs.layers]
    xw = _words(x)
    no_words = np.zeros((1, 1, 0), dtype=np.uint64)
    starts = iter(range(0, n, CHUNK_SAMPLES))
    lock = threading.Lock()
    failed: list[bool] = []

    def work() -> None:
        while not failed:
            with lock:
                lo = next(starts, None)
            if lo is None:
                return
            hi = min(lo + CHUNK_SAMPLES, n)
            src, words = x, xw
            for (w_small, shift, keep, qmax, thr), out, ev in zip(layers, outs, evs):
                if _run_layer(src, words, lo, hi, w_small, out, shift, keep, qmax, thr, ev):
                    failed.append(True)       # an input byte other than 0 / 1
                    return
                src, words = out, no_words

    if n_threads == 1:
        work()
    else:
        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            try:
                for f in [pool.submit(work) for _ in range(n_threads)]:
                    f.result()
            except BaseException:                  # Ctrl-C / SIGTERM: the threads stop after their chunk
                failed.append(False)
                raise
    if any(failed):
        raise _not_binary(target)
    events = [{key: int(c) for key, c in zip(RANGE_EVENTS, ev.sum(axis=0, dtype=np.int64))} for ev in evs]
    return LifRun(outs, events, n_threads, list(cs.names))


def run_lif_fixed(cs: CompiledSteps, spikes_in: np.ndarray, threads: int | None = None) -> list[np.ndarray]:
    """Spike trains [(N, T, n) uint8] of every layer, aligned to the float model's steps (cs: a CompiledSteps,
    or a steps Graph compiled here with compile_graph's defaults for the inputs' T). Samples run on
    ``threads`` threads (default: hw_sim.emulator.default_threads(), i.e. $SNNC_THREADS or the usable CPUs)."""
    return simulate_lif(cs, spikes_in, threads).trains


def run_lif_fixed_events(cs: CompiledSteps, spikes_in: np.ndarray,
                         threads: int | None = None) -> tuple[list[np.ndarray], list[dict[str, int]]]:
    """:func:`run_lif_fixed` plus, per layer, the range events counted in neuron-steps (``RANGE_EVENTS``):
    synaptic inputs beyond 16 bits, wrapped currents u, voltages saturated low / high. A worst-case compiled
    network has none but saturation high (harmless: only in a step that spikes); a calibrated one has them when
    an input exceeds what the calibration saw (lava-fixed does the same arithmetic, so spikes still match it)."""
    run = simulate_lif(cs, spikes_in, threads)
    return run.trains, run.events


@numba.njit(cache=True, nogil=True)
def _reference_layer(src, w_t, dv, thr, out, ev):  # pragma: no cover  (compiled)
    """The plain per-layer loop (test oracle): src (N, T, n_in) uint8, w_t (n_in, n_out) int64 effective weights
    (mantissa * 2**weight_exp), thr = vth << 6; writes out and adds range events to ev (N, 4)."""
    n_in, n_out = w_t.shape
    a = np.zeros(n_out, np.int64)
    v = np.zeros(n_out, np.int64)
    keep = DECAY_UNITY - dv
    for k in range(src.shape[0]):
        v[:] = 0
        for t in range(src.shape[1]):
            a[:] = 0
            for i in range(n_in):
                if src[k, t, i]:
                    for j in range(n_out):
                        a[j] += w_t[i, j]
            for j in range(n_out):
                if a[j] > _A_MAX or a[j] < -_A_MAX:
                    ev[k, 0] += 1
                u = a[j] << STATE_SHIFT
                if u > _LIM:
                    u -= 2 * _LIM
                    ev[k, 1] += 1
                elif u <= -_LIM:
                    u += 2 * _LIM
                    ev[k, 1] += 1
                x = v[j] * keep
                d = (x >> DECAY_BITS) if x >= 0 else -((-x) >> DECAY_BITS)
                vv = d + u
                if vv < -_LIM + 1:
                    vv = -_LIM + 1
                    ev[k, 2] += 1
                elif vv > _LIM - 1:
                    vv = _LIM - 1
                    ev[k, 3] += 1
                if vv > thr[j]:
                    out[k, t, j] = 1
                    vv = 0
                v[j] = vv


def run_lif_reference(cs: CompiledSteps, spikes_in: np.ndarray) -> tuple[list[np.ndarray], list[dict[str, int]]]:
    """The test oracle of :func:`simulate_lif`: Lava's integer equations written as a plain loop per layer (int64
    throughout, one thread). Same results, several times slower."""
    cs = compiled_steps_of(cs, spikes_in, "hw_sim")
    src = np.ascontiguousarray(check_steps_input(cs, spikes_in, "hw_sim"))
    out, events = [], []
    for cl in cs.layers:
        s_out = np.zeros(src.shape[:2] + (cl.n_out,), dtype=np.uint8)
        ev = np.zeros((src.shape[0], len(RANGE_EVENTS)), dtype=np.int64)
        _reference_layer(src, np.ascontiguousarray(cl.effective.T),
                         np.int64(cl.dv), np.asarray(cl.vth, dtype=np.int64) << STATE_SHIFT, s_out, ev)
        out.append(s_out)
        events.append({key: int(c) for key, c in zip(RANGE_EVENTS, ev.sum(axis=0))})
        src = s_out
    return out, events
