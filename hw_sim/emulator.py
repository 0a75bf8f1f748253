"""Bit-accurate batched emulator of the ``lava-fixed`` target (Lava 0.10.0 ``PyLifResetModelBitAcc`` +
``PyDenseModelBitAcc``, see toolchain/compiled.py and docs/compiled-format.md).

What one sample sees in Lava, per layer l (0-based), is reproduced exactly with integer arithmetic:

* Dense: weights clipped to 8 bits and LSB-masked exactly as Lava does on its first step
  (:func:`lava_dense_weights`), the column sum shifted by ``weight_exp`` (left, or right for a negative exponent,
  which is accepted only where the shift is exact: every effective weight a multiple of ``2**-weight_exp``, e.g.
  -1 with 8-bit, hence even, mantissas), one step of delay;
* LIF: ``u = wrap24(trunc0(u * (4096 - du - 1) / 4096) + (a_in << 6))`` (Lava's single conditional wrap),
  ``v = clip(trunc0(v * (4096 - dv) / 4096) + u, +-(2**23 - 1))``, spike when ``v > vth[j] << 6`` (each neuron j
  has its own threshold), v = 0 on a spike,
  u kept; the int32 wrap of Lava's int32 buffers (a_in, a_in << 6, the sums) is reproduced too;
* ``once=True`` neurons report only their first spike of the window; ``once=False`` neurons spike freely;
* every layer's state is zero at the start of each sample window (OnceLIF = LIFReset, ``reset_offset = 2``);
  the window's last update emits no spike.

Time is counted in *columns* (docs/compiled-format.md, section 2): an input (a sample input, a spike of the
previous layer, or a pulse) at column c enters the layer's update c, and a spike at update c is reported as column
c + 1, which the next layer sees as an input at column c + 1. Every layer has updates 0 ... W - 1 per sample
(W = ``net.window``); the last update never reports a spike, so reported columns lie in [1, W - 1].

Counters (plain int64 arrays, one row per sample; see :class:`SimResult`) feed the energy model
(hw_sim/energy.py). Speed: samples run in parallel (a GIL-free numba kernel on a thread pool); within a sample a
layer starts at its first input, updates all its neurons per step with branch-free (SIMD-vectorized) integer
code until its last input, then updates only the neurons that can still reach the threshold (an exact bound,
see :func:`_can_fire`) and stops when none is left or every once-neuron has fired.
"""
from __future__ import annotations

import dataclasses
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np

from toolchain.compiled import CompiledLayer, CompiledNetwork, shift_is_exact, shift_weights
from toolchain.errors import CompileError, TargetError

U_WRAP = 1 << 23  # Lava: max_uv_val = 2**23 (24-bit u and v)
V_MAX = (1 << 23) - 1  # v saturates at +-(2**23 - 1)
DECAY_UNITY = 4096  # 12-bit decays
VTH_SHIFT = 6  # threshold and synaptic input are MSB-aligned by 6 bits


# --------------------------------------------------------------------------------------------------------------
# Lava's Dense weight preprocessing (lava/utils/weightutils.py: determine_sign_mode, clip_weights, truncate_weights)
# --------------------------------------------------------------------------------------------------------------

def lava_sign_mode(weights: np.ndarray) -> str:
    """Lava's ``determine_sign_mode``: 'excitatory' if min >= 0 (also all zero), 'inhibitory' if max <= 0, else
    'mixed'."""
    w = np.asarray(weights)
    if w.size == 0 or w.min() >= 0:
        return "excitatory"
    if w.max() <= 0:
        return "inhibitory"
    return "mixed"


def lava_dense_weights(weights: np.ndarray, num_weight_bits: int = 8, sign_mode: str | None = None) -> np.ndarray:
    """The weights a ``PyDenseModelBitAcc`` actually uses (int32, same shape).

    Clip to 8 bits (mixed [-256, 255], excitatory [0, 255], inhibitory [-255, 0]), then zero
    ``8 - num_weight_bits + mixed`` least significant bits (arithmetic shift, so negative odd values round down).
    The sign mode is determined from the whole matrix unless given, as in Lava.
    """
    mode = sign_mode or lava_sign_mode(weights)
    if mode not in ("mixed", "excitatory", "inhibitory"):
        raise CompileError(f"unknown sign mode {mode!r}; use 'mixed', 'excitatory' or 'inhibitory'")
    mixed = int(mode == "mixed")
    trunc_bits = 8 - int(num_weight_bits) + mixed
    if trunc_bits < 0 or trunc_bits > 8:
        raise CompileError(
            f"num_weight_bits={num_weight_bits} is outside Lava's range for {mode} weights "
            f"(1..{8 + mixed}); compile with num_weight_bits in that range"
        )
    w = np.asarray(weights).astype(np.int64).astype(np.int32)
    if mode == "inhibitory":
        w = -w
    w = np.clip(w, -256 * mixed, 255)
    w = (w >> trunc_bits) << trunc_bits
    if mode == "inhibitory":
        w = -w
    return w.astype(np.int32)


# --------------------------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SimResult:
    """What :func:`simulate` returns. N samples, L layers, n_l neurons in layer l.

    columns:        [(N, n_l) int64] first reported column of every neuron (steps; -1 = no spike), as lava-fixed
                    reports it (``CompiledNetwork.columns_to_times`` turns it into model time)
    spike_counts:   [(N, n_l) int32] spikes per neuron in the window (0/1 for once=True layers)
    spikes:         (N, L) int64 spikes emitted per layer
    input_spikes:   (N,)   int64 input spikes of the sample (source columns >= 0)
    in_events:      (N, L) int64 presynaptic events delivered to layer l: its input spikes (previous layer's
                    spikes, or the sample's inputs for l = 0) plus its pulses
    synops:         (N, L) int64 synaptic operations of layer l = in_events * n_l (dense fan-out, zero weights
                    included, as a dense synapse block processes them)
    synops_nonzero: (N, L) int64 the same, counting only synapses whose effective weight is non-zero
    neuron_updates: (N, L) int64 compartment updates of layer l = n_l * W (a Loihi core updates every
                    compartment every time step, whether it fires or not)
    active_neuron_updates: (N, L) int64 the updates of neurons not yet masked: a once=True neuron reported at
                    column c (update c - 1) is inactive for the W - c updates after its spike
    steps:          (N,)   int64 time steps per sample (= W; lava-fixed runs K samples in K W + 1 steps)
    wall_s:         seconds spent in :func:`simulate`
    u_wraps:        (N, L) int64 neuron updates of layer l in which the 24-bit current u wrapped (or an int32
                    buffer of Lava's did), counted in neurons that can still spike; 0 when the compiler's worst-case
                    ranges hold; may be > 0 for a ``--range calibrated`` network on inputs beyond its calibration
    v_saturations:  (N, L) int64 the same for the 24-bit voltage v clamped at +-(2**23 - 1)
    """

    columns: list[np.ndarray]
    spike_counts: list[np.ndarray]
    spikes: np.ndarray
    input_spikes: np.ndarray
    in_events: np.ndarray
    synops: np.ndarray
    synops_nonzero: np.ndarray
    neuron_updates: np.ndarray
    active_neuron_updates: np.ndarray
    steps: np.ndarray
    wall_s: float = 0.0
    u_wraps: np.ndarray | None = None
    v_saturations: np.ndarray | None = None

    def counters(self) -> dict[str, np.ndarray]:
        """The per-sample counters as a plain dict of arrays (for RunResult.info and the energy model)."""
        return {
            "spikes": self.spikes,
            "input_spikes": self.input_spikes,
            "in_events": self.in_events,
            "synops": self.synops,
            "synops_nonzero": self.synops_nonzero,
            "neuron_updates": self.neuron_updates,
            "active_neuron_updates": self.active_neuron_updates,
            "steps": self.steps,
            "u_wraps": self.u_wraps,
            "v_saturations": self.v_saturations,
        }

    def activity(self):
        """The counters as hw_sim.energy.ActivityCounters (synaptic ops = non-zero synapses reached)."""
        from hw_sim.energy import counters_from_dict

        return counters_from_dict(self.counters())


# --------------------------------------------------------------------------------------------------------------
# Packed network (flat arrays the numba kernel can take)
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PackedNetwork:
    """Flat integer arrays of a compiled network, ready for the kernel. Built once by :func:`pack`.

    Layer l's synapse rows (inputs first, then its pulses sorted by column) form an (n_in + n_pulses, n_out) block
    of ``w_flat`` at ``w_off[l]``: row i holds input i's effective Lava weights shifted by its Dense's exponent
    (``weight_exp`` for inputs, ``pulse_weight_exp`` for pulses). Several pulse columns may share one step (the
    compiler splits a pulse whose weights exceed one 8-bit mantissa into copies): each copy is its own row and
    the kernel sums every row of a step, as Lava's Dense sums its inputs.
    Neuron j of layer l is entry ``neuron_off[l] + j`` of the per-neuron arrays (``thr``), with ``neuron_off``
    the cumulative sum of ``n_out``.
    """

    window: int
    n_in: np.ndarray  # (L,) int64
    n_out: np.ndarray  # (L,)
    once: np.ndarray  # (L,) 0/1
    du: np.ndarray  # (L,)
    dv: np.ndarray  # (L,)
    thr: np.ndarray  # (sum n_out,) vth[j] << 6 of every neuron, layer after layer (neuron_off indexing)
    wrap32: np.ndarray  # (L,) 1 = Lava's int32 buffers may wrap: emulate it (0 = provably never, skipped)
    w_off: np.ndarray  # (L,)
    w_flat: np.ndarray  # int64
    nz_off: np.ndarray  # (L,) offset of layer l's per-row non-zero fan-out counts in nz_flat
    nz_flat: np.ndarray  # int64
    p_off: np.ndarray  # (L,) offset of layer l's sorted pulse columns in p_col
    p_n: np.ndarray  # (L,)
    p_col: np.ndarray  # int64
    ev_cap: int  # capacity of one event buffer


def _check_layer(i: int, layer: CompiledLayer, window: int) -> None:
    name = f"layer {i} ({layer.name})"
    for field_name in ("du", "dv"):
        d = int(getattr(layer, field_name))
        if not 0 <= d <= 4095:
            raise CompileError(f"{name}: {field_name}={d} is not a 12-bit decay (0..4095); recompile the network")
    w_eff, pw_eff = None, None
    for field_name, e in (("weight_exp", int(layer.weight_exp)), ("pulse_weight_exp", int(layer.pulse_exp))):
        if e < 0:
            if w_eff is None:
                w_eff, pw_eff = dense_blocks(layer)
            block = w_eff if field_name == "weight_exp" else pw_eff
            if e < -8 or not shift_is_exact(block, e):
                raise CompileError(
                    f"{name}: {field_name}={e} < 0 floors the Dense sum, exact only when every effective weight of "
                    f"the block is a multiple of 2**{-e} (e.g. -1 with 8-bit, even mantissas); compile with "
                    f"{field_name} >= 0 or with such weights")
        if e > 24:
            raise CompileError(f"{name}: {field_name}={e} > 24 overflows Lava's int32 buffers; recompile")
    w, pw, ps = np.asarray(layer.weights), np.asarray(layer.pulse_weights), np.asarray(layer.pulse_steps)
    if w.ndim != 2 or pw.ndim != 2 or ps.ndim != 1 or pw.shape != (w.shape[0], ps.shape[0]):
        raise CompileError(
            f"{name}: weights {w.shape}, pulse_weights {pw.shape} and pulse_steps {ps.shape} are inconsistent; "
            "expected (n_out, n_in), (n_out, n_pulses), (n_pulses,)"
        )
    vth = layer.vth  # int64 (n_out,): CompiledLayer checks shape and integrality
    bad = np.flatnonzero((vth < 0) | (vth >= (1 << 25)))
    if bad.size:
        j = int(bad[0])
        raise CompileError(f"{name}: vth[{j}]={int(vth[j])} must be in [0, 2**25) so that vth << 6 fits int32 "
                           f"({bad.size} neuron(s) out of range); recompile")
    if ps.size and (ps.min() < 0 or ps.max() > window - 1):
        raise CompileError(
            f"{name}: pulse columns must lie in the sample window [0, {window - 1}], got [{ps.min()}, {ps.max()}]; "
            "recompile (the compiler keeps pulses inside the window) or pass a larger window"
        )


def pack(net: CompiledNetwork) -> PackedNetwork:
    """Check ``net`` and flatten it for the kernel (effective Lava weights, pre-shifted by ``weight_exp``)."""
    layers = net.layers
    if not layers:
        raise CompileError("the compiled network has no layers; compile a network with at least one layer")
    window = int(net.window)
    if window < 2:
        raise CompileError(f"window={window} steps is too short; compile with window >= 3")
    L = len(layers)
    ints = {k: np.zeros(L, np.int64) for k in ("n_in", "n_out", "once", "du", "dv", "wrap32", "w_off",
                                                "nz_off", "p_off", "p_n")}
    w_parts, nz_parts, pc_parts, thr_parts = [], [], [], []
    pos_w = pos_nz = pos_p = 0
    ev_cap = 1
    for i, layer in enumerate(layers):
        _check_layer(i, layer, window)
        if i > 0 and layer.n_in != layers[i - 1].n_out:
            raise CompileError(
                f"layer {i} expects {layer.n_in} inputs but layer {i - 1} has {layers[i - 1].n_out} neurons"
            )
        w_eff, pw_eff = dense_blocks(layer)
        order = np.argsort(np.asarray(layer.pulse_steps), kind="stable")
        rows = np.vstack([shift_weights(w_eff.T.astype(np.int64), int(layer.weight_exp)),
                          shift_weights(pw_eff.T[order].astype(np.int64), int(layer.pulse_exp))])
        # largest |a_in| of one update (every input and pulse at once); with 2**24 + W * 64 * a_max < 2**31 no
        # int32 intermediate of Lava's can wrap (|u| grows by at most 64 a_max per update), so the kernel skips it
        a_max = int(np.abs(rows).sum(0).max(initial=0))
        ints["n_in"][i], ints["n_out"][i] = layer.n_in, layer.n_out
        ints["once"][i] = int(bool(layer.once))
        ints["du"][i], ints["dv"][i] = int(layer.du), int(layer.dv)
        thr_parts.append(layer.vth << VTH_SHIFT)
        ints["wrap32"][i] = int((1 << 24) + window * 64 * a_max >= (1 << 31))
        ints["w_off"][i], ints["nz_off"][i], ints["p_off"][i] = pos_w, pos_nz, pos_p
        ints["p_n"][i] = order.size
        w_parts.append(np.ascontiguousarray(rows).ravel())
        nz_parts.append((rows != 0).sum(1).astype(np.int64))
        pc_parts.append(np.asarray(layer.pulse_steps, np.int64)[order])
        pos_w += rows.size
        pos_nz += rows.shape[0]
        pos_p += order.size
        ev_cap = max(ev_cap, layer.n_in, layer.n_out if layer.once else layer.n_out * window)

    def cat(parts, dtype=np.int64):
        return np.ascontiguousarray(np.concatenate(parts).astype(dtype))

    return PackedNetwork(window, ints["n_in"], ints["n_out"], ints["once"], ints["du"], ints["dv"], cat(thr_parts),
                         ints["wrap32"], ints["w_off"], cat(w_parts), ints["nz_off"], cat(nz_parts), ints["p_off"],
                         ints["p_n"], cat(pc_parts), int(ev_cap))


def dense_blocks(layer: CompiledLayer) -> tuple[np.ndarray, np.ndarray]:
    """Effective (Lava-processed) input and pulse weight matrices of one layer, int32 (n_out, n_in), (n_out, n_p).

    lava-fixed creates every Dense with ``sign_mode=SignMode.MIXED`` (targets/lava.py), so both matrices are
    clipped to [-256, 255] and lose ``9 - num_weight_bits`` low bits whatever their signs.
    """
    nwb = int(layer.num_weight_bits)
    w = lava_dense_weights(layer.weights, nwb, "mixed")
    pw = lava_dense_weights(layer.pulse_weights, nwb, "mixed")
    return w, pw


# --------------------------------------------------------------------------------------------------------------
# Kernel
# --------------------------------------------------------------------------------------------------------------

@numba.njit(cache=True, inline="always")
def _wrap32(x):
    """Two's-complement int32 wrap of an int64 (numpy's int32 buffers in Lava)."""
    return ((x + 2147483648) & 4294967295) - 2147483648


@numba.njit(cache=True, inline="always")
def _can_fire(u, v, thr, du, dv):
    """0 when, with no further input, the neuron provably never exceeds thr again, else 1 (branch-free).

    Without input and with -2**23 < u <= 2**23, u keeps its sign, shrinks and never wraps; v_{n+1} <=
    b v_n + u a^(n+1) (a = (4095 - du)/4096, b = (4096 - dv)/4096, truncation toward zero only lowers positive
    values), so v stays <= M = max(v, u a / (1 - b)). M <= thr <=> v <= thr and u (4095 - du) <= thr dv.
    """
    return (v > thr) | (u <= -U_WRAP) | (u > U_WRAP) | ((u > 0) & (u * (4095 - du) > thr * dv))


@numba.njit(cache=True)
def _update(no, u, v, acc, live, spk, fu, fv, th, sh):
    """One update of neurons 0 ... no - 1 (Lava's int32 buffers provably never wrap). Branch-free, so LLVM
    vectorizes it. acc: the update's input (sum of effective shifted weights), shifted by sh = 6; th[j]: neuron
    j's threshold vth[j] << 6.
    A neuron spikes only if live; returns (spikes (flags in spk), u wraps, v saturations), the last two counted in
    live neurons only (a once-neuron that has spiked no longer affects any output)."""
    n_fire = 0
    n_wrap = 0
    n_sat = 0
    for j in range(no):
        p = u[j] * fu
        pre = ((p + ((p >> 63) & 4095)) >> 12) + (acc[j] << sh)
        w = (pre > U_WRAP) | (pre <= -U_WRAP)
        pre = pre - 2 * U_WRAP if pre > U_WRAP else pre  # 24-bit wrap (Lava's single conditional wrap)
        pre = pre + 2 * U_WRAP if pre <= -U_WRAP else pre
        q = v[j] * fv
        vv = ((q + ((q >> 63) & 4095)) >> 12) + pre
        c = (vv > V_MAX) | (vv < -V_MAX)
        vv = min(max(vv, -V_MAX), V_MAX)
        f = (vv > th[j]) & live[j]
        u[j] = pre
        v[j] = 0 if f else vv
        spk[j] = f
        n_fire += f
        n_wrap += w & live[j]
        n_sat += c & live[j]
    return n_fire, n_wrap, n_sat


@numba.njit(cache=True)
def _update_wrap32(no, u, v, acc, live, spk, fu, fv, th, sh):
    """:func:`_update` with the int32 wraps of Lava's buffers (a_in, a_in << 6, the u and v sums); an int32 wrap
    of the u sum counts as a u wrap too."""
    n_fire = 0
    n_wrap = 0
    n_sat = 0
    for j in range(no):
        a_in = _wrap32(acc[j] << (sh - 6))
        p = u[j] * fu
        raw = ((p + ((p >> 63) & 4095)) >> 12) + _wrap32(a_in << 6)
        pre = _wrap32(raw)
        w = (pre != raw) | (pre > U_WRAP) | (pre <= -U_WRAP)
        if pre > U_WRAP:
            pre -= 2 * U_WRAP
        elif pre <= -U_WRAP:
            pre += 2 * U_WRAP
        q = v[j] * fv
        vv = _wrap32(((q + ((q >> 63) & 4095)) >> 12) + pre)
        c = (vv > V_MAX) | (vv < -V_MAX)
        vv = min(max(vv, -V_MAX), V_MAX)
        f = (vv > th[j]) & live[j]
        u[j] = pre
        v[j] = 0 if f else vv
        spk[j] = f
        n_fire += f
        n_wrap += w & live[j]
        n_sat += c & live[j]
    return n_fire, n_wrap, n_sat


@numba.njit(cache=True)
def _sample_core(s, in_cols, W, L, n_in, n_out, once, du, dv, thr, wrap32, w_off, w_flat, nz_off, nz_flat,
                 p_off, p_n, p_col, neuron_off, ev_col, ev_src, ev_n, u, v, acc, live, spk, idx, bucket,
                 out_cols, out_counts, spikes, in_events, synops_nz, masked, u_wraps, v_sats):
    """Run sample s through all layers. ev_* slot 0 = input events, slot l + 1 = layer l's spikes (by column).

    Internally a layer's update c is "tick" c + 1 = the column a spike at that update is reported as; ticks
    1 ... W - 1 are simulated (update W - 1 never reports a spike). Every neuron of the layer is updated at every
    tick (vectorized); the layer starts at its first input and stops when no neuron can fire any more.
    """
    for j in range(out_cols.shape[1]):  # outputs are initialised here, in the worker thread
        out_cols[s, j] = -1
        out_counts[s, j] = 0
    # layer-0 input events sorted by column (counting sort)
    n0 = n_in[0]
    for c in range(W + 1):
        bucket[c] = 0
    cnt = 0
    for i in range(n0):
        c = in_cols[s, i]
        if c >= 0:
            bucket[c + 1] += 1
            cnt += 1
    for c in range(W):
        bucket[c + 1] += bucket[c]
    for i in range(n0):
        c = in_cols[s, i]
        if c >= 0:
            k = bucket[c]
            ev_col[0, k] = c
            ev_src[0, k] = i
            bucket[c] = k + 1
    ev_n[0] = cnt

    t_hi = W - 1
    for l in range(L):
        no = n_out[l]
        ni = n_in[l]
        nev = ev_n[l]
        npl = p_n[l]
        po = p_off[l]
        wo = w_off[l]
        nzo = nz_off[l]
        ev_n[l + 1] = 0
        # counters: every event (columns 0 ... W - 1) reaches the layer's synapses
        nz = 0
        for k in range(nev):
            nz += nz_flat[nzo + ev_src[l, k]]
        for k in range(npl):
            nz += nz_flat[nzo + ni + k]
        in_events[s, l] = nev + npl
        synops_nz[s, l] = nz
        # first and last input tick (inputs at column c act at tick c + 1)
        first = t_hi + 1
        last = -1
        if nev > 0:
            first = ev_col[l, 0] + 1
            last = ev_col[l, nev - 1] + 1
        if npl > 0:
            first = min(first, p_col[po] + 1)
            last = max(last, p_col[po + npl - 1] + 1)
        if first > t_hi:
            continue  # silent layer: zero state never exceeds any thr >= 0
        off = neuron_off[l]
        th = thr[off:off + no]  # this layer's per-neuron thresholds (a view)
        dul = du[l]
        dvl = dv[l]
        fu = DECAY_UNITY - dul - 1
        fv = DECAY_UNITY - dvl
        is_once = once[l] != 0
        wrap = wrap32[l] != 0
        sh = VTH_SHIFT
        for j in range(no):
            u[j] = 0
            v[j] = 0
            acc[j] = 0
            live[j] = 1
        nb8 = (no + 7) // 8
        spk8 = spk.view(np.int64)
        for j in range(no, 8 * nb8):
            spk[j] = 0
        n_live = no
        acc_zero = True
        nout_ev = 0
        n_masked = 0
        n_uwrap = 0
        n_vsat = 0
        ep = 0
        pp = 0
        tick = first
        while tick <= t_hi:
            # this tick's events (columns tick - 1): sum their weight rows into acc
            m = 0
            while ep < nev and ev_col[l, ep] + 1 <= tick:
                r = wo + ev_src[l, ep] * no
                if m == 0:
                    for j in range(no):
                        acc[j] = w_flat[r + j]
                else:
                    for j in range(no):
                        acc[j] += w_flat[r + j]
                m += 1
                ep += 1
            while pp < npl and p_col[po + pp] + 1 <= tick:
                r = wo + (ni + pp) * no
                if m == 0:
                    for j in range(no):
                        acc[j] = w_flat[r + j]
                else:
                    for j in range(no):
                        acc[j] += w_flat[r + j]
                m += 1
                pp += 1
            if m == 0 and not acc_zero:
                for j in range(no):
                    acc[j] = 0
            acc_zero = m == 0
            if wrap:
                n_fire, n_w, n_s = _update_wrap32(no, u, v, acc, live, spk, fu, fv, th, sh)
            else:
                n_fire, n_w, n_s = _update(no, u, v, acc, live, spk, fu, fv, th, sh)
            n_uwrap += n_w
            n_vsat += n_s
            if n_fire > 0:
                # find the flags 8 at a time (spk is uint8, padded to a multiple of 8 with zeros)
                for b in range(nb8):
                    word = spk8[b]
                    while word != 0:
                        low = word & -word  # lowest set flag: bit 8 k of the word (flags are 0/1 bytes)
                        word ^= low
                        # k = number of bytes below it: sum the byte-LSBs of low - 1 into the top byte
                        j = 8 * b + (((((low - 1) & 0x0101010101010101) * 0x0101010101010101) >> 56) & 0xFF)
                        if out_cols[s, off + j] < 0:
                            out_cols[s, off + j] = tick
                        out_counts[s, off + j] += 1
                        ev_col[l + 1, nout_ev] = tick
                        ev_src[l + 1, nout_ev] = j
                        nout_ev += 1
                        if is_once:
                            live[j] = 0
                            n_masked += W - tick
                if is_once:
                    n_live -= n_fire
                    if n_live == 0:
                        break
            if tick >= last:
                # no input left: only the neurons that can still reach the threshold matter; finish them
                # one by one (usually few) instead of updating the whole layer
                n_c = 0
                for j in range(no):
                    if live[j] and _can_fire(u[j], v[j], th[j], dul, dvl):
                        idx[n_c] = j
                        n_c += 1
                tick += 1
                while n_c > 0 and tick <= t_hi:
                    kept = 0
                    for k in range(n_c):
                        j = idx[k]
                        p = u[j] * fu
                        uj = (p + ((p >> 63) & 4095)) >> 12  # no input; |u| < 2**31 so no int32 wrap here
                        if uj > U_WRAP:
                            uj -= 2 * U_WRAP
                        elif uj <= -U_WRAP:
                            uj += 2 * U_WRAP
                        q = v[j] * fv
                        vj = ((q + ((q >> 63) & 4095)) >> 12) + uj
                        if wrap:
                            vj = _wrap32(vj)
                        if vj > V_MAX or vj < -V_MAX:
                            n_vsat += 1  # j is live here
                        vj = min(max(vj, -V_MAX), V_MAX)
                        keep = True
                        if vj > th[j]:
                            vj = 0
                            if out_cols[s, off + j] < 0:
                                out_cols[s, off + j] = tick
                            out_counts[s, off + j] += 1
                            ev_col[l + 1, nout_ev] = tick
                            ev_src[l + 1, nout_ev] = j
                            nout_ev += 1
                            if is_once:
                                keep = False
                                n_masked += W - tick
                        u[j] = uj
                        v[j] = vj
                        if keep and _can_fire(uj, vj, th[j], dul, dvl):
                            idx[kept] = j
                            kept += 1
                    n_c = kept
                    tick += 1
                break
            tick += 1
        ev_n[l + 1] = nout_ev
        spikes[s, l] = nout_ev
        masked[s, l] = n_masked
        u_wraps[s, l] = n_uwrap
        v_sats[s, l] = n_vsat


@numba.njit(cache=True, nogil=True)
def _batch_kernel(lo, hi, in_cols, W, L, n_in, n_out, once, du, dv, thr, wrap32, w_off, w_flat, nz_off,
                  nz_flat, p_off, p_n, p_col, neuron_off, ev_cap, out_cols, out_counts, spikes, in_events, synops_nz,
                  masked, u_wraps, v_sats, record, rec_sample, rec_col, rec_src, rec_n):
    """Samples lo ... hi - 1, serially, without the GIL (threads run disjoint ranges in parallel).

    With record, every spike is also appended to rec_*[l] = (sample, column, neuron) of layer l.
    """
    max_out = 1
    for l in range(L):
        max_out = max(max_out, n_out[l])
    ev_col = np.empty((L + 1, ev_cap), np.int64)
    ev_src = np.empty((L + 1, ev_cap), np.int64)
    ev_n = np.zeros(L + 1, np.int64)
    u = np.zeros(max_out, np.int64)
    v = np.zeros(max_out, np.int64)
    acc = np.zeros(max_out, np.int64)
    live = np.zeros(max_out, np.uint8)
    spk = np.zeros(8 * ((max_out + 7) // 8), np.uint8)
    idx = np.zeros(max_out, np.int64)
    bucket = np.zeros(W + 1, np.int64)
    for s in range(lo, hi):
        _sample_core(s, in_cols, W, L, n_in, n_out, once, du, dv, thr, wrap32, w_off, w_flat, nz_off, nz_flat,
                     p_off, p_n, p_col, neuron_off, ev_col, ev_src, ev_n, u, v, acc, live, spk, idx, bucket,
                     out_cols, out_counts, spikes, in_events, synops_nz, masked, u_wraps, v_sats)
        if record:
            for l in range(L):
                for k in range(ev_n[l + 1]):
                    r = rec_n[l]
                    rec_sample[l, r] = s
                    rec_col[l, r] = ev_col[l + 1, k]
                    rec_src[l, r] = ev_src[l + 1, k]
                    rec_n[l] = r + 1


# --------------------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------------------

def default_threads() -> int:
    """Threads for :func:`simulate`: ``$SNNC_THREADS`` if set, else the CPUs this process may use."""
    env = os.environ.get("SNNC_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise TargetError(f"SNNC_THREADS={env!r} is not a positive integer; fix: e.g. export SNNC_THREADS=2")
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _check_inputs(pk: PackedNetwork, input_columns: np.ndarray) -> np.ndarray:
    cols = np.asarray(input_columns)
    if cols.ndim != 2 or cols.shape[1] != pk.n_in[0]:
        raise TargetError(
            f"input_columns must have shape (N, {pk.n_in[0]}), got {cols.shape}; build them with "
            "CompiledNetwork.input_columns(input_times)"
        )
    if not np.issubdtype(cols.dtype, np.integer):
        raise TargetError(f"input_columns must be integers (source columns, -1 = none), got dtype {cols.dtype}")
    cols = np.ascontiguousarray(cols, dtype=np.int64)
    if cols.size and (cols.min() < -1 or cols.max() > pk.window - 1):
        raise TargetError(
            f"input columns must lie in [0, {pk.window - 1}] (or -1 for no spike), got [{cols.min()}, "
            f"{cols.max()}]; clip the input times to the window or compile with a larger window"
        )
    return cols


def _run(pk: PackedNetwork, cols: np.ndarray, record: bool, threads: int | None = None):
    n = cols.shape[0]
    L = pk.n_in.shape[0]
    neuron_off = np.zeros(L + 1, np.int64)
    neuron_off[1:] = np.cumsum(pk.n_out)
    out_cols = np.empty((n, int(neuron_off[-1])), np.int64)  # filled by the kernel
    out_counts = np.empty((n, int(neuron_off[-1])), np.int32)
    spikes = np.zeros((n, L), np.int64)
    in_events = np.zeros((n, L), np.int64)
    synops_nz = np.zeros((n, L), np.int64)
    masked = np.zeros((n, L), np.int64)
    u_wraps = np.zeros((n, L), np.int64)
    v_sats = np.zeros((n, L), np.int64)
    args = (cols, pk.window, L, pk.n_in, pk.n_out, pk.once, pk.du, pk.dv, pk.thr, pk.wrap32, pk.w_off,
            pk.w_flat, pk.nz_off, pk.nz_flat, pk.p_off, pk.p_n, pk.p_col, neuron_off, pk.ev_cap, out_cols,
            out_counts, spikes, in_events, synops_nz, masked, u_wraps, v_sats)
    events = None
    if record:
        # record in chunks of samples so that the spike buffers stay small (<= ~48 MB)
        chunk = max(1, min(n, (2 << 20) // max(1, L * int(pk.ev_cap))))
        cap = chunk * int(pk.ev_cap)
        rec_sample = np.zeros((L, cap), np.int64)
        rec_col = np.zeros((L, cap), np.int64)
        rec_src = np.zeros((L, cap), np.int64)
        parts: list[list[np.ndarray]] = [[] for _ in range(L)]
        for lo in range(0, n, chunk):
            rec_n = np.zeros(L, np.int64)
            _batch_kernel(lo, min(n, lo + chunk), *args, True, rec_sample, rec_col, rec_src, rec_n)
            for l in range(L):
                k = int(rec_n[l])
                parts[l].append(np.stack([rec_sample[l, :k], rec_col[l, :k], rec_src[l, :k]], axis=1))
        events = [np.concatenate(p) if p else np.zeros((0, 3), np.int64) for p in parts]
    elif n:
        dummy = np.zeros((1, 1), np.int64)
        dummy_n = np.zeros(1, np.int64)
        n_threads = max(1, min(int(threads or default_threads()), n))
        # a few chunks per thread balance uneven samples; each chunk is one GIL-free kernel call
        n_chunks = n_threads if n < 64 * n_threads else 4 * n_threads
        bounds = np.linspace(0, n, n_chunks + 1).astype(np.int64)
        ranges = [(int(bounds[i]), int(bounds[i + 1])) for i in range(n_chunks) if bounds[i + 1] > bounds[i]]
        if n_threads == 1:
            for lo, hi in ranges:
                _batch_kernel(lo, hi, *args, False, dummy, dummy, dummy, dummy_n)
        else:
            with ThreadPoolExecutor(max_workers=n_threads) as pool:
                for f in [pool.submit(_batch_kernel, lo, hi, *args, False, dummy, dummy, dummy, dummy_n)
                          for lo, hi in ranges]:
                    f.result()
    columns = [out_cols[:, neuron_off[l]:neuron_off[l + 1]] for l in range(L)]
    counts = [out_counts[:, neuron_off[l]:neuron_off[l + 1]] for l in range(L)]
    neuron_updates = np.broadcast_to(pk.n_out[None, :] * pk.window, (n, L)).copy()
    result = SimResult(
        columns=columns,
        spike_counts=counts,
        spikes=spikes,
        input_spikes=(cols >= 0).sum(1).astype(np.int64),
        in_events=in_events,
        synops=in_events * pk.n_out[None, :],
        synops_nonzero=synops_nz,
        neuron_updates=neuron_updates,
        active_neuron_updates=neuron_updates - masked,
        steps=np.full(n, pk.window, np.int64),
        u_wraps=u_wraps,
        v_saturations=v_sats,
    )
    return result, events


def simulate(net: CompiledNetwork | PackedNetwork, input_columns: np.ndarray, threads: int | None = None
             ) -> SimResult:
    """Run every sample (rows of ``input_columns``: (N, n_in) int source columns, -1 = no spike) bit-exactly as
    lava-fixed does. Samples run in parallel on ``threads`` threads (default: :func:`default_threads`). Pass a
    :class:`PackedNetwork` (from :func:`pack`) to skip the per-call packing."""
    t0 = time.perf_counter()
    pk = net if isinstance(net, PackedNetwork) else pack(net)
    result, _ = _run(pk, _check_inputs(pk, input_columns), record=False, threads=threads)
    return _with_wall(result, time.perf_counter() - t0)


def simulate_events(net: CompiledNetwork | PackedNetwork, input_columns: np.ndarray
                    ) -> tuple[SimResult, list[np.ndarray]]:
    """Like :func:`simulate` (serial), plus every spike: per layer an (n_spikes, 3) int64 array of
    (sample, column, neuron) rows, ordered by sample then column. For tests and per-step comparisons."""
    t0 = time.perf_counter()
    pk = net if isinstance(net, PackedNetwork) else pack(net)
    result, events = _run(pk, _check_inputs(pk, input_columns), record=True)
    return _with_wall(result, time.perf_counter() - t0), events


def _with_wall(r: SimResult, wall: float) -> SimResult:
    return dataclasses.replace(r, wall_s=wall)
