"""Bit-accurate emulation of a CompiledConv (toolchain/compiled_conv.py) as ``lava-fixed`` runs it on Lava 0.10's
``PyConvModelFixed`` / ``PySparseModelBitAcc`` / ``PyDenseModelBitAcc`` and the stock LIF (``PyLifResetModelBitAcc``).

Every synapse kind is one event-driven kernel over a *tap table*: for each input pixel, the (output pixel, kernel
tap) pairs it reaches (Conv2d: output pixels whose window covers it; ConvTranspose2d: its stride offsets; Dense:
one pixel, one tap), and weights arranged (C_in, taps, C_out) so that a spike adds one contiguous row per pair.
Only inputs that spiked are visited; where several channels spike at one pixel in a step, their kernels are summed
first (contiguous, vectorized) and scattered once. Every map population is held in the (pixel, channel) layout
(channels of a pixel contiguous; Dense weights touching a map permuted to it) and turned back into PyTorch's C
order only for the results. The LIF update is hw_sim/lif_update.py's (shared with hw_sim/lif.py): branch-free on
32-bit lanes where the step's synaptic inputs allow it, else the per-neuron path with every wrap and saturation
below. The integer arithmetic is Lava's:
the synaptic sum of effective weights,
wrapped to 24 bits for layers Lava runs as Conv (``utils.signed_clamp``; a layer with a second weight block runs on
the sum of both blocks' integers, which is exact: the compiler keeps two blocks only where neither block's sum can
leave 24 bits, so neither Conv process wraps), then the LIF update of hw_sim/lif.py
(u = a << 6 wrapping at 24 bits, v decayed by trunc0(v (4096 - dv) / 4096) and saturated, spike if v > vth << 6,
reset to 0). A Readout integrates its integer input off-chip in float64, ``A = leak (A + a / scale)``, as
targets/lava_conv.py's sink does. Results are aligned to the float model (no connection delays simulated; a Dense
fan-in split into relayed groups, ``fan_in_groups``, sums the same integers and runs unsplit here).
Samples run in parallel threads (numba releases the GIL).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from hw_sim.emulator import default_threads
from hw_sim.lif_update import lif_update, max_abs
from toolchain.compiled_conv import CompiledConv, CompiledConvLayer, validate_compiled_conv
from toolchain.errors import ArtifactError, TargetError
from toolchain.lower_conv import lava_mapping, lava_shapes
from toolchain.quantize import DECAY_UNITY, STATE_SHIFT, UV_MAX

RANGE_EVENTS = ("a_in_over_16bit", "u_wrapped", "v_saturated_low", "v_saturated_high")
_LIM = UV_MAX + 1  # 2**23


def tap_table(cl: CompiledConvLayer) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ptr, opix, tap, wtap): CSR over input pixels of the (output pixel, tap) pairs each one reaches, sorted by
    tap within a pixel, and the effective weights as (C_in, taps, C_out) (int32 where no sum can leave it, else
    int64). Taps are numbered so that consecutive taps of a kernel row reach consecutive output pixels (a Conv2d's
    kernel columns are stored mirrored)."""
    w = _effective32(cl)
    if cl.kind == "dense":
        return (np.array([0, 1], np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64),
                _narrow(w.T[:, None, :]))
    _, h, wd = cl.in_shape
    _, ho, wo = cl.out_shape
    kh, kw = w.shape[2:]
    (sh, sw), (ph, pw) = cl.stride, cl.padding
    y, x, i, j = np.meshgrid(np.arange(h), np.arange(wd), np.arange(kh), np.arange(kw), indexing="ij")
    if cl.kind == "conv":          # output (oy, ox) with oy * sh + i - ph = y
        ny, nx = y + ph - i, x + pw - j
        ok = (ny >= 0) & (nx >= 0) & (ny % sh == 0) & (nx % sw == 0)
        oy, ox = ny // sh, nx // sw
        wtap = w[:, :, :, ::-1].transpose(1, 2, 3, 0).reshape(w.shape[1], kh * kw, w.shape[0])  # (C_in, taps, C_out)
        j = kw - 1 - j             # mirrored column: ox grows with the tap number
    else:                          # ConvTranspose2d: output (y * sh + i - ph, x * sw + j - pw)
        oy, ox = y * sh + i - ph, x * sw + j - pw
        ok = np.ones(oy.shape, bool)
        wtap = w.transpose(0, 2, 3, 1).reshape(w.shape[0], kh * kw, w.shape[1])
    ok &= (oy >= 0) & (oy < ho) & (ox >= 0) & (ox < wo)
    pix = (y * wd + x)[ok]
    order = np.lexsort(((i * kw + j)[ok], pix))
    opix = (oy * wo + ox)[ok][order]
    tap = (i * kw + j)[ok][order]
    ptr = np.zeros(h * wd + 1, np.int64)
    np.add.at(ptr, pix + 1, 1)
    return np.cumsum(ptr), opix.astype(np.int64), tap.astype(np.int64), _narrow(wtap)


def _effective32(cl: CompiledConvLayer) -> np.ndarray:
    """cl.effective as int32 (exact: |mantissa| <= 256 at exponent <= 7 plus a fine block stays below 2**16)."""
    out = None
    for m, e in [(cl.weights, cl.weight_exp)] + ([(cl.fine_weights, cl.fine_exp)] if cl.blocks == 2 else []):
        b = np.asarray(m, dtype=np.int32)
        b = b << e if e >= 0 else b >> -e
        out = b if out is None else out + b
    return out


def _narrow(wtap: np.ndarray) -> np.ndarray:
    """int32 weights (twice the SIMD width of int64) when no neuron's sum can leave int32: the sum over a neuron's
    inputs of |w| is at most the sum over all (input channel, tap) of max_o |w| times the pixels, bounded here by
    sum |w| over everything; int64 otherwise."""
    w = np.ascontiguousarray(wtap)
    if int(np.abs(w).sum(dtype=np.int64)) < (1 << 31) - 1:
        return w.astype(np.int32, copy=False)
    return w.astype(np.int64)


@numba.njit(cache=True, nogil=True, inline="always")
def _wrap24(x):  # pragma: no cover  (compiled)
    """Lava Conv's ``utils.signed_clamp(x, 24)``: x wrapped into [-2**23, 2**23 - 1] (int64 x)."""
    return ((x + _LIM) % (2 * _LIM)) - _LIM if x >= _LIM or x < -_LIM else x


@numba.njit(cache=True, nogil=True)
def _layer(src, c_in, hw_in, ptr, opix, tap, wtap, c_out, hw_out, wrap24, readout, dv, thr, lo, hi, out, cur,
           ev):  # pragma: no cover  (compiled)
    """Samples lo .. hi - 1 of one layer, every population in the (pixel, channel) layout (index q c + o: the
    channels of a pixel contiguous). src (N, T, hw_in c_in) uint8; thr (hw_out c_out,) = vth << 6; out
    (N, T, hw_out c_out) uint8 spikes (LIF) or cur (N, T, n) int64 synaptic inputs (readout); ev (N, 4) range
    events. ptr, opix, tap, wtap: :func:`tap_table`. The update: hw_sim.lif_update.lif_update, on the cheapest
    exact path for the step's largest |input|."""
    t_steps = src.shape[1]
    n = c_out * hw_out
    a = np.zeros(n, wtap.dtype)    # int32 when no sum can overflow it
    n_tap = wtap.shape[1]
    wflat = wtap.reshape(c_in, n_tap * c_out)
    z = np.zeros(n_tap * c_out, wtap.dtype)
    v = np.zeros(n, np.int32)
    keep = DECAY_UNITY - dv
    for k in range(lo, hi):
        v[:] = 0
        for t in range(t_steps):
            a[:] = 0
            row = src[k, t]
            for p in range(hw_in):
                base = p * c_in
                cnt = 0
                for ci in range(c_in):
                    cnt += row[base + ci]
                if cnt == 0:
                    continue
                if cnt == 1 or hw_in == 1:            # add each (output pixel, tap) row directly
                    for ci in range(c_in):
                        if row[base + ci]:
                            for e in range(ptr[p], ptr[p + 1]):
                                off = opix[e] * c_out
                                w = wtap[ci, tap[e]]
                                for o in range(c_out):
                                    a[off + o] += w[o]
                else:                                 # several channels: sum their kernels first (contiguous)
                    z[:] = 0
                    for ci in range(c_in):
                        if row[base + ci]:
                            w = wflat[ci]
                            for r in range(n_tap * c_out):
                                z[r] += w[r]
                    for e in range(ptr[p], ptr[p + 1]):
                        off = opix[e] * c_out
                        zo = tap[e] * c_out
                        for o in range(c_out):
                            a[off + o] += z[zo + o]
            big = max_abs(a, n)
            if readout:                             # integer input of the off-chip Readout
                for i in range(n):
                    cur[k, t, i] = _wrap24(np.int64(a[i])) if wrap24 else a[i]
                continue
            if wrap24 and big >= _LIM:              # Lava Conv wraps its output to 24 bits
                for i in range(n):
                    a[i] = _wrap24(np.int64(a[i]))
                big = _LIM                          # a bound of max |a| now
            lif_update(a, n, 0, keep, thr, v, out[k, t], ev[k], big)


def layouts(cc: CompiledConv) -> list[tuple[int, int]]:
    """(channels, pixels) of the input and of every population as hw_sim holds them: a map (a population a
    convolution feeds or reads, toolchain.lower_conv.lava_shapes) in the (pixel, channel) layout, a flat vector
    as (n, 1)."""
    return [(n, 1) if s is None else (int(s[0]), int(s[1] * s[2]))
            for s, n in zip(lava_shapes(cc), [cc.n_in] + [cl.n_out for cl in cc.layers])]


def to_internal(lay: tuple[int, int]) -> np.ndarray | None:
    """P with internal[..., P] = torch[...] for a (channels, pixels) layout (None: the identity)."""
    c, hw = lay
    if hw == 1 or c == 1:
        return None
    return np.arange(c * hw).reshape(c, hw).T.reshape(-1).argsort().astype(np.int64)


def _kernel_weights(cl: CompiledConvLayer, p_in, p_out):
    """The tap table of ``cl`` with a Dense layer's rows / columns in the internal orders of its source and
    destination (``p_in``, ``p_out``: torch -> internal index maps or None)."""
    ptr, opix, tap, wtap = tap_table(cl)
    if cl.kind == "dense" and (p_in is not None or p_out is not None):
        w = wtap[:, 0, :]
        if p_in is not None:
            w = w[np.argsort(p_in)]              # row i (internal) = torch row inverse(p_in)[i]
        if p_out is not None:
            w = w[:, np.argsort(p_out)]
        wtap = np.ascontiguousarray(w[:, None, :])
    return ptr, opix, tap, wtap


def _transpose_last(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(..., rows x cols) -> (..., cols x rows): the last axis read as a C-order (rows, cols) matrix and transposed
    (a strided copy)."""
    lead = x.shape[:-1]
    return np.ascontiguousarray(np.swapaxes(x.reshape(lead + (rows, cols)), -1, -2)).reshape(lead + (rows * cols,))


def _to_torch(x: np.ndarray, lay: tuple[int, int]) -> np.ndarray:
    """(..., pixels x channels) internal order -> (..., channels x pixels) torch C order."""
    c, hw = lay
    return x if hw == 1 or c == 1 else _transpose_last(x, hw, c)


def _to_internal(x: np.ndarray, lay: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`_to_torch`."""
    c, hw = lay
    return x if hw == 1 or c == 1 else _transpose_last(x, c, hw)


def readout_trace(currents: np.ndarray, scale: np.ndarray, leak: float) -> np.ndarray:
    """Off-chip Readout of integer synaptic inputs (N, T, n): A[t] = leak (A[t-1] + a[t] / scale), float64 (the
    same elementwise operations targets/lava_conv_procs' ReadoutSink performs, so both agree bit for bit)."""
    cur = np.asarray(currents)
    a = np.zeros((cur.shape[0], cur.shape[2]))
    out = np.empty(cur.shape, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64)
    for t in range(cur.shape[1]):
        a = leak * (a + cur[:, t] / s)
        out[:, t] = a
    return out


def compiled_conv_of(net, target: str) -> CompiledConv:
    """``net`` when it is a valid CompiledConv; a steps Graph is compiled with the defaults elsewhere."""
    try:
        return validate_compiled_conv(net, f"{target} input")
    except ArtifactError as exc:
        raise TargetError(str(exc)) from None


def check_conv_input(cc: CompiledConv, spikes_in: np.ndarray, target: str) -> np.ndarray:
    """(N, T, n_in) 0/1 trains with 1 <= T <= cc.max_steps -> uint8; TargetError naming the problem."""
    x = np.asarray(spikes_in)
    if x.ndim != 3 or x.shape[2] != cc.n_in or x.shape[0] < 1 or x.shape[1] < 1:
        raise TargetError(f"{target}: input spike trains must have shape (samples, steps, {cc.n_in}), got "
                          f"{x.shape}; fix: pass one (steps, {cc.n_in}) 0/1 array per sample")
    if x.dtype.kind not in "biuf" or not np.all((x == 0) | (x == 1)):
        raise TargetError(f"{target}: input spike trains must hold only 0 and 1; fix: encode the inputs as spike "
                          "trains (one spike per channel and step at most)")
    if x.shape[1] > cc.max_steps:
        raise TargetError(f"{target}: samples have {x.shape[1]} steps but the network was compiled (and its ranges "
                          f"checked) for at most {cc.max_steps}; fix: recompile with max_steps={x.shape[1]}")
    return x.astype(np.uint8)


def run_conv_fixed(cc: CompiledConv, spikes_in: np.ndarray, threads: int | None = None
                   ) -> tuple[list[np.ndarray], list[np.ndarray | None], list[dict[str, int]]]:
    """Spike trains [(N, T, n) uint8] of every population (a Readout's are zero), potentials [None for LIF
    populations, (N, T, n) float64 A for a Readout] and range events per layer (neuron-steps, ``RANGE_EVENTS``),
    aligned to the float model's steps and in its (C, H, W) C order. Samples run on ``threads`` threads (default
    $SNNC_THREADS / the CPUs)."""
    cc = compiled_conv_of(cc, "hw_sim")
    x = check_conv_input(cc, spikes_in, "hw_sim")
    n, t_steps = x.shape[:2]
    n_threads = max(1, min(int(threads or default_threads()), n))
    bounds = np.linspace(0, n, n_threads + 1).astype(np.int64)
    lay = layouts(cc)
    perms = [to_internal(la) for la in lay]
    x = _to_internal(x, lay[0])
    src, trains, pots, events = np.ascontiguousarray(x), [], [], []
    for l, cl in enumerate(cc.layers):
        ptr, opix, tap, wtap = _kernel_weights(cl, perms[l], perms[l + 1])
        if cl.kind == "dense":
            c_in, hw_in, c_out, hw_out = cl.n_in, 1, cl.n_out, 1
        else:
            (c_in, h, w), (c_out, ho, wo) = cl.in_shape, cl.out_shape
            hw_in, hw_out = h * w, ho * wo
        readout = cl.population == "readout"
        s_out = np.zeros((n, t_steps, cl.n_out), dtype=np.uint8)
        cur = np.zeros((n, t_steps, cl.n_out) if readout else (1, 1, 1), dtype=np.int64)
        thr = _to_internal(np.asarray(cl.vth, dtype=np.int32) << STATE_SHIFT, lay[l + 1])  # <= (2**17 - 1) << 6
        ev = np.zeros((n, len(RANGE_EVENTS)), dtype=np.int64)
        args = [(src, np.int64(c_in), np.int64(hw_in), ptr, opix, tap, wtap, np.int64(c_out), np.int64(hw_out),
                 lava_mapping(cl) == "Conv" and cl.blocks == 1, readout, np.int64(cl.dv),
                 np.ascontiguousarray(thr), np.int64(lo), np.int64(hi), s_out, cur, ev)
                for lo, hi in zip(bounds[:-1], bounds[1:])]
        if n_threads == 1:
            _layer(*args[0])
        else:
            with ThreadPoolExecutor(max_workers=n_threads) as pool:
                list(pool.map(lambda a: _layer(*a), args))
        trains.append(_to_torch(s_out, lay[l + 1]))
        pots.append(readout_trace(_to_torch(cur, lay[l + 1]), cl.scale, cl.leak) if readout else None)
        events.append({key: int(c) for key, c in zip(RANGE_EVENTS, ev.sum(axis=0))})
        src = s_out
    return trains, pots, events


def conv_net_of(net, inputs, target: str) -> CompiledConv | None:
    """The CompiledConv behind ``net`` for the steps targets' dispatch: ``net`` itself, or a steps Graph with
    convolutions / a Readout compiled with compile_conv_graph's defaults for the inputs' T; None for anything
    else (Dense chains and CompiledSteps stay with hw_sim/lif.py and targets/lava_lif.py)."""
    from toolchain.conv_compiler import compile_conv_graph, needs_conv_compiler
    from toolchain.errors import CompileError

    if isinstance(net, CompiledConv):
        return net
    if needs_conv_compiler(net):
        shape = np.shape(inputs)
        if len(shape) != 3:
            raise TargetError(f"{target}: input spike trains must have shape (samples, steps, channels), got "
                              f"{shape}; fix: pass one (steps, channels) 0/1 array per sample")
        try:
            return compile_conv_graph(net, int(shape[1]))
        except CompileError as exc:
            raise TargetError(f"{target}: {exc}") from None
    return None
