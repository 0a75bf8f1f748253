"""Numba kernels of the hand-written surrogate-gradient BPTT (models/rate_bptt.py): the LIF recurrences of both
layers forward over T steps and their adjoints backward; the matrix products between them are BLAS (torch).

Arrays are (T, B, n) in the weights' dtype (float32 or float64; scalars passed in that dtype so that numba does
not promote float32 arithmetic to float64), parallel over samples (numba threads). Per layer, forward:
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
def output_forward(i2, x, a2, err, counts, sq_err, leak, v_th, one, zero):  # pragma: no cover - compiled
    """Output layer over all steps: a2 spikes (uint8), err = (v_th x - V) where x != a2 else 0 (masked loss
    term), counts[n, j] = output spikes summed over steps, sq_err[n] = sum of err^2 of sample n."""
    t_steps, b, n_out = i2.shape
    for n in prange(b):
        v = np.zeros(n_out, i2.dtype)
        sq = zero
        for t in range(t_steps):
            for j in range(n_out):
                vv = leak * v[j] + i2[t, n, j]
                if vv > v_th:
                    vv = v_th
                xx = x[t, n, j]
                fired = vv >= v_th
                if (xx != zero) != fired:
                    e = v_th * xx - vv
                    err[t, n, j] = e
                    sq += e * e
                else:
                    err[t, n, j] = zero
                if fired:
                    a2[t, n, j] = 1
                    counts[n, j] += one
                    v[j] = zero
                else:
                    a2[t, n, j] = 0
                    v[j] = vv
        sq_err[n] = sq


@numba.njit(**_JIT)
def output_backward(err, a2, g2, g2p, packed, scale, leak, zero, tiny):  # pragma: no cover - compiled
    """G2_t = scale err_t + leak (1 - a2_t) G2_{t+1} (scale = -1/B: dL/dV of 0.5 sum err^2 / B) into g2 (T, B, n_out)
    and, when ``packed``, also into g2p = (n_tiles(n_out), T B, TILE) column tiles (zero-padded) for
    transposed_tiled."""
    t_steps, b, n_out = err.shape
    nt = g2p.shape[0]
    for n in prange(b):
        g = np.zeros(nt * TILE if packed else n_out, err.dtype)
        for t in range(t_steps - 1, -1, -1):
            for j in range(n_out):
                gn = scale * err[t, n, j] + (zero if a2[t, n, j] else leak * g[j])
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

TILE = 64          # columns per tile: 4 zmm accumulators in float32 (8 in float64)
ROW_BLOCK = 512    # rows of a packed tile walked at a time by the transposed products (64 x 512 x 4 B = 128 kB)


def _make_rowsum(accumulate: bool):
    """An intrinsic rowsum(src, idx, p, p_end, dst): dst[:TILE] (+)= sum of src[idx[k], :TILE] over k in
    [p, p_end). src: 2-D array whose rows hold TILE contiguous elements (C order in the last axis); dst: TILE
    contiguous elements. The sum is held in 64-byte vector registers (two rows per loop pass, added pairwise), then
    stored into dst (``accumulate`` False) or added to it."""

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

            pre = builder.block
            # main loop: two rows per pass
            hdr2 = builder.append_basic_block("rowsum.hdr2")
            body2 = builder.append_basic_block("rowsum.body2")
            hdr1 = builder.append_basic_block("rowsum.hdr1")
            body1 = builder.append_basic_block("rowsum.body1")
            done = builder.append_basic_block("rowsum.done")
            builder.branch(hdr2)
            builder.position_at_end(hdr2)
            pp2 = builder.phi(i64)
            pp2.add_incoming(p0, pre)
            acc2 = []
            for _ in range(nvec):
                a = builder.phi(vt)
                a.add_incoming(zero, pre)
                acc2.append(a)
            builder.cbranch(builder.icmp_signed("<=", builder.add(pp2, ir.Constant(i64, 2)), p1), body2, hdr1)
            builder.position_at_end(body2)
            ra = row_ptr(pp2)
            rb = row_ptr(builder.add(pp2, ir.Constant(i64, 1)))
            new2 = [builder.fadd(acc2[v], builder.fadd(load(ra, v), load(rb, v), flags=("fast",)), flags=("fast",))
                    for v in range(nvec)]
            pp2.add_incoming(builder.add(pp2, ir.Constant(i64, 2)), body2)
            for v in range(nvec):
                acc2[v].add_incoming(new2[v], body2)
            builder.branch(hdr2)
            # tail: at most one row
            builder.position_at_end(hdr1)
            builder.cbranch(builder.icmp_signed("<", pp2, p1), body1, done)
            builder.position_at_end(body1)
            r1 = row_ptr(pp2)
            new1 = [builder.fadd(acc2[v], load(r1, v), flags=("fast",)) for v in range(nvec)]
            builder.branch(done)
            builder.position_at_end(done)
            accs = []
            for v in range(nvec):                 # phi nodes first in the block
                acc = builder.phi(vt)
                acc.add_incoming(acc2[v], hdr1)
                acc.add_incoming(new1[v], body1)
                accs.append(acc)
            dv = builder.bitcast(da.data, vpt)
            for v, acc in enumerate(accs):
                ptr = builder.gep(dv, [ir.Constant(i64, v)])
                val = builder.fadd(builder.load(ptr, align=isz), acc, flags=("fast",)) if accumulate else acc
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
        for j in range(TILE):
            h = c * TILE + j
            if h < m:
                for k in range(n):
                    out[c, k, j] = a[h, k]
            else:
                for k in range(n):
                    out[c, k, j] = zero


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
    """out[k] = sum of the rows r of G in which column k of the 0/1 operand spiked (= x^T @ G), with the transposed
    row-block lists of block_columns and G packed as gp = (n_tiles, rows, TILE) column tiles; out (n, m), m <= the
    tiles' columns. Parallel over tiles; within a tile ROW_BLOCK-row blocks (L2-resident) are walked by every k."""
    nt, rows, _ = gp.shape
    n, m = out.shape
    nrb = (rows + rblk - 1) // rblk
    for c in prange(nt):
        tile = gp[c]
        c0 = c * TILE
        w = min(TILE, m - c0)
        acc = np.zeros((n, TILE), out.dtype)
        for b in range(nrb):
            for k in range(n):
                rowsum_add(tile, bidx, bptr[b * n + k], bptr[b * n + k + 1], acc[k])
        for k in range(n):
            for j in range(w):
                out[k, c0 + j] = acc[k, j]
