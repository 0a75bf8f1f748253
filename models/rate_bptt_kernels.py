"""Numba kernels of the hand-written surrogate-gradient BPTT (models/rate_bptt.py): the LIF recurrences of both
layers forward over T steps and their adjoints backward, and the cache-tiled event-driven products (sums of the
rows of a dense matrix picked by 0/1 spikes; second half of this file) between them.

Arrays are (T, B, n) in the weights' dtype (float32 or float64; scalars passed in that dtype so that numba does
not promote float32 arithmetic to float64). Per layer, forward:
V_t = min(leak R_{t-1} + I_t, v_th) (clamp), a_t = V_t >= v_th, R_t = V_t (1 - a_t) (reset to 0). Backward, with
the clamp straight through and the reset factor (1 - a_t) not differentiated:
G_t = dL/dV_t = (direct term)_t + leak (1 - a_t) G_{t+1}; dL/dI_t = G_t.
Subnormal surrogate derivatives and adjoints (|x| < tiny, the dtype's smallest normal number) are flushed to 0:
they change no weight by more than ~1e-31 after Adam, and subnormal operands slow the products ~10x.
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import prange
from numba.core import types
from numba.extending import intrinsic

_JIT = dict(parallel=True, fastmath=True, cache=True, error_model="numpy")

TILE = 64          # columns per tile: 4 zmm accumulators in float32 (8 in float64)
ROW_BLOCK = 512    # rows of a packed tile walked at a time by the transposed products (64 x 512 x 4 B = 128 kB)


@numba.njit(**_JIT)
def hidden_forward(i1, a1, u1, leak, v_th, zero):  # pragma: no cover - compiled
    """Hidden layer over all steps: a1 = spikes (uint8 0/1), u1 = V - v_th (<= 0, clamped; the caller turns it into
    e^u with torch's vectorised exp: numba's exp is a scalar libm call here, 30 ms per batch)."""
    t_steps, b, h = i1.shape
    for n in prange(b):
        v = np.zeros(h, i1.dtype)
        for t in range(t_steps):
            a = a1[t, n]
            uu = u1[t, n]
            cur = i1[t, n]
            for i in range(h):                      # branch-free: vectorises
                vv = min(leak * v[i] + cur[i], v_th)
                uu[i] = vv - v_th
                fired = vv >= v_th
                a[i] = 1 if fired else 0
                v[i] = zero if fired else vv


@numba.njit(**_JIT)
def output_layer(i2, x, g2, g2p, packed, counts, sq_err, scale, leak, v_th, zero, tiny):  # pragma: no cover
    """Output layer forward and backward, per sample. Forward over the steps: V = min(leak R + I, v_th), spikes
    a2 = V >= v_th, the masked error err = (v_th x - V) where x != a2 else 0; counts[n, j] = output spikes summed
    over steps, sq_err[n] = sum of err^2 of sample n. Backward: G2_t = scale err_t + leak (1 - a2_t) G2_{t+1}
    (scale = -1/B: dL/dV of 0.5 sum err^2 / B) into g2 (T, B, n_out) and, when ``packed``, also into g2p =
    (n_tiles(n_out), T B, TILE) column tiles (zero-padded) for transposed_tiled. x: (T, B, n_out) 0/1 (any dtype).
    err and a2 live in a per-sample scratch (T x n_out) that stays in the cache between the two passes."""
    t_steps, b, n_out = i2.shape
    nt = g2p.shape[0]
    for n in prange(b):
        v = np.zeros(n_out, i2.dtype)
        err = np.empty((t_steps, n_out), i2.dtype)
        a2 = np.empty((t_steps, n_out), np.uint8)
        sq = zero
        cnt = counts[n]
        for t in range(t_steps):
            e_t = err[t]
            a_t = a2[t]
            for j in range(n_out):
                vv = min(leak * v[j] + i2[t, n, j], v_th)
                fired = vv >= v_th
                xx = x[t, n, j] != 0
                e = v_th * (1 if xx else 0) - vv if xx != fired else zero
                e_t[j] = e
                sq += e * e
                a_t[j] = 1 if fired else 0
                cnt[j] += 1 if fired else 0
                v[j] = zero if fired else vv
        sq_err[n] = sq
        g = np.zeros(nt * TILE if packed else n_out, i2.dtype)
        for t in range(t_steps - 1, -1, -1):
            e_t = err[t]
            a_t = a2[t]
            for j in range(n_out):
                gn = scale * e_t[j] + (zero if a_t[j] else leak * g[j])
                gn = gn if abs(gn) >= tiny else zero
                g[j] = gn
                g2[t, n, j] = gn
            if packed:
                r = t * b + n
                for c in range(nt):
                    g2p[c, r, :] = g[c * TILE:(c + 1) * TILE]


@numba.njit(**_JIT)
def hidden_backward(da1, e1, a1, g1, g1p, packed, leak, one, zero, tiny):  # pragma: no cover - compiled
    """G1_t = dL/da1_t s'(V1_t - v_th) + leak (1 - a1_t) G1_{t+1}, with e1 = e^(V1 - v_th), a1 uint8 spikes and
    s' = e1 / (1 + e1)^2 (flushed to 0 below tiny); into g1 (T, B, H), or when ``packed`` into g1p = (n_tiles(H),
    T B, TILE) column tiles (zero-padded) for transposed_tiled."""
    t_steps, b, h = da1.shape
    nt = g1p.shape[0]
    for n in prange(b):
        g = np.zeros(nt * TILE if packed else h, da1.dtype)
        for t in range(t_steps - 1, -1, -1):
            for i in range(h):
                e = e1[t, n, i]
                sg = e / ((one + e) * (one + e))
                sg = sg if sg >= tiny else zero
                gn = da1[t, n, i] * sg + (zero if a1[t, n, i] else leak * g[i])
                gn = gn if abs(gn) >= tiny else zero
                g[i] = gn
            if packed:
                r = t * b + n
                for c in range(nt):
                    g1p[c, r, :] = g[c * TILE:(c + 1) * TILE]
            else:
                g1[t, n, :] = g


# ---------------------------------------------------------------------------------------------------------------
# Cache-tiled event-driven products. A binary operand (input or hidden spikes) times a dense matrix is a sum of
# the dense matrix's rows picked by the spikes. The dense matrix is packed in column tiles of TILE columns
# ((n_tiles, rows, TILE), zero-padded), each tile small enough for the L2 cache (W1^T: 784 x 64 x 4 B = 200 kB),
# and every sum of rows over one tile is kept in TILE / (64 B / itemsize) vector registers (``_rowsum``, an LLVM
# intrinsic: numba's auto-vectoriser keeps the accumulator in memory and uses 256-bit vectors only). Threads take
# whole tiles, so no two write the same output.



def _make_rowsum(accumulate: bool, unroll: int = 2):
    """An intrinsic rowsum(src, idx, p, p_end, dst): dst[:TILE] (+)= sum of src[idx[k], :TILE] over k in
    [p, p_end). src: 2-D array whose rows hold TILE contiguous elements (C order in the last axis); dst: TILE
    contiguous elements. The sum is held in 64-byte vector registers (``unroll`` rows per loop pass, added as a
    tree), then stored into dst (``accumulate`` False) or added to it."""

    @intrinsic
    def rowsum(typingctx, src, idx, p, p_end, dst):
        if not (isinstance(src, types.Array) and isinstance(dst, types.Array) and isinstance(idx, types.Array)
                and src.dtype == dst.dtype and isinstance(idx.dtype, types.Integer)):
            return None
        sig = types.void(src, idx, p, p_end, dst)

        def codegen(context, builder, signature, args):
            srcv, idxv, pv, pev, dstv = args
            sty, ity, pty, pety, dty = signature.args
            sa = context.make_array(sty)(context, builder, srcv)
            ia = context.make_array(ity)(context, builder, idxv)
            da = context.make_array(dty)(context, builder, dstv)
            i64 = ir.IntType(64)
            ft = context.get_value_type(sty.dtype)
            isz = context.get_abi_sizeof(ft)
            vw = 64 // isz
            nvec = TILE // vw
            vt = ir.VectorType(ft, vw)
            vpt = vt.as_pointer()
            stride0 = builder.extract_value(sa.strides, 0)
            base = builder.bitcast(sa.data, ir.IntType(8).as_pointer())
            istride = builder.extract_value(ia.strides, 0)
            ibase = builder.bitcast(ia.data, ir.IntType(8).as_pointer())
            ielt = context.get_value_type(ity.dtype).as_pointer()
            p0 = context.cast(builder, pv, pty, types.int64)
            p1 = context.cast(builder, pev, pety, types.int64)
            zero = ir.Constant(vt, [ir.Constant(ft, 0.0)] * vw)

            def row_ptr(k):
                kp = builder.bitcast(builder.gep(ibase, [builder.mul(k, istride)]), ielt)
                r = builder.load(kp)
                r = builder.sext(r, i64) if r.type.width < 64 else r
                return builder.bitcast(builder.gep(base, [builder.mul(r, stride0)]), vpt)

            def load(rp, v):
                return builder.load(builder.gep(rp, [ir.Constant(i64, v)]), align=isz)

            def fadd(a, b):
                return builder.fadd(a, b, flags=("fast",))

            def tree(vals):
                while len(vals) > 1:
                    vals = [fadd(vals[i], vals[i + 1]) if i + 1 < len(vals) else vals[i]
                            for i in range(0, len(vals), 2)]
                return vals[0]

            def loop(step, p_start, acc_in, pred):
                """for (p = p_start; p + step <= p1; p += step) acc += rows p .. p + step - 1."""
                hdr = builder.append_basic_block(f"rowsum.hdr{step}")
                body = builder.append_basic_block(f"rowsum.body{step}")
                out = builder.append_basic_block(f"rowsum.out{step}")
                builder.branch(hdr)
                builder.position_at_end(hdr)
                pp = builder.phi(i64)
                pp.add_incoming(p_start, pred)
                acc = []
                for v in range(nvec):
                    a = builder.phi(vt)
                    a.add_incoming(acc_in[v], pred)
                    acc.append(a)
                builder.cbranch(builder.icmp_signed("<=", builder.add(pp, ir.Constant(i64, step)), p1), body, out)
                builder.position_at_end(body)
                rps = [row_ptr(builder.add(pp, ir.Constant(i64, u))) for u in range(step)]
                new = [fadd(acc[v], tree([load(rp, v) for rp in rps])) for v in range(nvec)]
                pp.add_incoming(builder.add(pp, ir.Constant(i64, step)), builder.block)
                for v in range(nvec):
                    acc[v].add_incoming(new[v], builder.block)
                builder.branch(hdr)
                builder.position_at_end(out)
                return pp, acc, out

            pp, acc, blk = loop(unroll, p0, [zero] * nvec, builder.block)
            if unroll > 1:
                pp, acc, blk = loop(1, pp, acc, blk)
            dv = builder.bitcast(da.data, vpt)
            for v in range(nvec):
                ptr = builder.gep(dv, [ir.Constant(i64, v)])
                val = fadd(builder.load(ptr, align=isz), acc[v]) if accumulate else acc[v]
                builder.store(val, ptr, align=isz)
            return context.get_dummy_value()

        return sig, codegen

    return rowsum


rowsum_set = _make_rowsum(False)
rowsum_add = _make_rowsum(True)


def n_tiles(m: int) -> int:
    """Tiles of TILE columns that cover m columns."""
    return (m + TILE - 1) // TILE


@numba.njit(**_JIT)
def pack_transposed(a, out, zero):  # pragma: no cover - compiled
    """a (m, n) -> out (n_tiles(m), n, TILE): out[c, k, j] = a[c TILE + j, k] (0 beyond m): the column tiles of
    a^T (W1^T from W1, W2^T from W2)."""
    m, n = a.shape
    nt = out.shape[0]
    for c in prange(nt):
        c0 = c * TILE
        w = min(TILE, m - c0)
        for k in range(n):
            o = out[c, k]
            for j in range(w):
                o[j] = a[c0 + j, k]
            for j in range(w, TILE):
                o[j] = zero


@numba.njit(**_JIT)
def gather_tiled(ptr, idx, srcp, out):  # pragma: no cover - compiled
    """out[r] = sum of the rows k of src over k in idx[ptr[r]:ptr[r + 1]] (= x @ src for a 0/1 x given as row
    lists), src packed as srcp = (n_tiles, n_src, TILE) column tiles (pack_transposed); out (rows, m), m <= the
    tiles' columns. Parallel over tiles; each tile stays in the L2 cache while all rows walk it."""
    rows, m = out.shape
    nt = srcp.shape[0]
    for c in prange(nt):
        tile = srcp[c]
        c0 = c * TILE
        if c0 + TILE <= m:
            for r in range(rows):
                rowsum_set(tile, idx, ptr[r], ptr[r + 1], out[r, c0:])
        else:
            buf = np.empty(TILE, out.dtype)
            for r in range(rows):
                rowsum_set(tile, idx, ptr[r], ptr[r + 1], buf)
                for j in range(m - c0):
                    out[r, c0 + j] = buf[j]


@numba.njit(**_JIT)
def hidden_forward_tiled(ptr, idx, w1p, a1, u1, leak, v_th, zero):  # pragma: no cover - compiled
    """hidden_forward with the input currents computed on the fly: the current of row r = t B + n is the sum of the
    rows k of W1^T over its input spikes k in idx[ptr[r]:ptr[r + 1]] (W1^T packed as w1p = (n_tiles(H), n_in,
    TILE), pack_transposed). Parallel over tiles of TILE hidden neurons: the tile's W1^T stays in the L2 cache, the
    current and potentials of one sample in registers / L1; the currents are never stored."""
    t_steps, b, h = a1.shape
    nt = w1p.shape[0]
    for c in prange(nt):
        tile = w1p[c]
        c0 = c * TILE
        w = min(TILE, h - c0)
        cur = np.empty(TILE, u1.dtype)
        v = np.empty(TILE, u1.dtype)
        for n in range(b):
            v[:] = zero
            for t in range(t_steps):
                r = t * b + n
                rowsum_set(tile, idx, ptr[r], ptr[r + 1], cur)
                a = a1[t, n, c0:c0 + w]
                uu = u1[t, n, c0:c0 + w]
                for j in range(w):
                    vv = min(leak * v[j] + cur[j], v_th)
                    uu[j] = vv - v_th
                    fired = vv >= v_th
                    a[j] = 1 if fired else 0
                    v[j] = zero if fired else vv


@numba.njit(parallel=True, cache=True)
def block_columns(ptr, idx, n, rblk):  # pragma: no cover - compiled
    """Row lists (ptr, idx: the spiking columns of row r are idx[ptr[r]:ptr[r + 1]]) -> per block of rblk rows and
    column k, the rows in which k spiked: bidx[bptr[b n + k]:bptr[b n + k + 1]], increasing (the transposed lists,
    cut into row blocks). Parallel over blocks (a counting sort each)."""
    rows = ptr.shape[0] - 1
    nrb = (rows + rblk - 1) // rblk
    bptr = np.empty(nrb * n + 1, np.int64)
    bidx = np.empty(idx.shape[0], np.int32)
    for b in prange(nrb):
        r0 = b * rblk
        r1 = min(rows, r0 + rblk)
        cnt = np.zeros(n + 1, np.int64)
        for q in range(ptr[r0], ptr[r1]):
            cnt[idx[q] + 1] += 1
        cnt[0] = ptr[r0]
        for k in range(n):
            cnt[k + 1] += cnt[k]
        for k in range(n):
            bptr[b * n + k] = cnt[k]
        for r in range(r0, r1):
            for q in range(ptr[r], ptr[r + 1]):
                k = idx[q]
                bidx[cnt[k]] = r
                cnt[k] += 1
    bptr[nrb * n] = ptr[rows]
    return bptr, bidx


@numba.njit(**_JIT)
def transposed_tiled(bptr, bidx, rblk, gp, out):  # pragma: no cover - compiled
    """out[j, k] = sum of G[r, j] over the rows r in which column k of the 0/1 operand spiked (out = G^T @ x: the
    weight gradient's layout, contiguous), with the transposed row-block lists of block_columns and G packed as
    gp = (n_tiles, rows, TILE) column tiles; out (m, n), m <= the tiles' columns. Parallel over tiles; within a
    tile, blocks of rblk rows (ROW_BLOCK: L2-resident) are walked by every k, the sums of one k in registers."""
    nt, rows, _ = gp.shape
    m, n = out.shape
    nrb = (rows + rblk - 1) // rblk
    for c in prange(nt):
        tile = gp[c]
        c0 = c * TILE
        w = min(TILE, m - c0)
        acc = np.zeros((n, TILE), out.dtype)
        for b in range(nrb):
            for k in range(n):
                rowsum_add(tile, bidx, bptr[b * n + k], bptr[b * n + k + 1], acc[k])
        for j in range(w):
            o = out[c0 + j]
            for k in range(n):
                o[k] = acc[k, j]
