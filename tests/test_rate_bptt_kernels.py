"""BPTT speed kernels (issue [E] section 4): the cache-tiled event-driven products of models/rate_bptt_kernels.py
against dense numpy products, and bptt_grads' spike-list paths against its BLAS paths and torch autograd."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models import rate_bptt_kernels as K  # noqa: E402
from models.rate_bptt import BpttLearner, bptt_grads  # noqa: E402
from models.rate_kernels import spike_lists  # noqa: E402


def _spikes(rng, shape, p):
    x = (rng.random(shape) < p).astype(np.uint8)
    x[0, 0] = 0                                    # an empty row
    x[..., 1] = 0                                  # a never-active column
    return x


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-6)])
@pytest.mark.parametrize("m", [64, 150, 20])      # whole tiles, a partial last tile, one partial tile
def test_tiled_row_sums_equal_dense_products(dtype, rtol, m):
    rng = np.random.default_rng(m)
    t_steps, b, n = 7, 11, 90
    x = _spikes(rng, (t_steps, b, n), 0.2)
    flat = x.reshape(-1, n).astype(np.float64)
    ptr, idx = spike_lists(x)
    zero = dtype(0)
    # x @ W^T with W (m, n): gather_tiled over the packed column tiles of W^T
    w = rng.normal(size=(m, n)).astype(dtype)
    wp = np.full((K.n_tiles(m), n, K.TILE), np.nan, dtype)
    K.pack_transposed(w, wp, zero)
    np.testing.assert_array_equal(wp.transpose(1, 0, 2).reshape(n, -1)[:, :m], w.T)
    assert not wp.transpose(1, 0, 2).reshape(n, -1)[:, m:].any()         # zero padding
    out = np.full((t_steps * b, m), np.nan, dtype)
    K.gather_tiled(ptr, idx, wp, out)
    np.testing.assert_allclose(out, flat @ w.T.astype(np.float64), rtol=rtol, atol=rtol * 10)
    # G^T @ x with G (rows, m): transposed_tiled over the packed column tiles of G, row blocks of several sizes
    g = rng.normal(size=(t_steps * b, m)).astype(dtype)
    gp = np.zeros((K.n_tiles(m), t_steps * b, K.TILE), dtype)
    for c in range(K.n_tiles(m)):
        cols = g[:, c * K.TILE:(c + 1) * K.TILE]
        gp[c, :, :cols.shape[1]] = cols
    want = flat.T @ g.astype(np.float64)
    for rblk in (1, 16, 1000):
        bptr, bidx = K.block_columns(ptr, idx, n, rblk)
        for r0 in range(0, t_steps * b, rblk):            # the transposed lists of each row block
            for k in (0, 1, 5, n - 1):
                q = (r0 // rblk) * n + k
                rows = np.flatnonzero(x.reshape(-1, n)[r0:r0 + rblk, k]) + r0
                np.testing.assert_array_equal(bidx[bptr[q]:bptr[q + 1]], rows)
        got = np.full((m, n), np.nan, dtype)
        K.transposed_tiled(bptr, bidx, rblk, gp, got)
        np.testing.assert_allclose(got, want.T, rtol=rtol, atol=rtol * 10)


@pytest.mark.parametrize("lists,input_lists", [(True, True), (False, True), (True, False)])
def test_tiled_bptt_gradient_equals_autograd_over_several_tiles(lists, input_lists):
    """Hidden 150 and 100 inputs/outputs span whole and partial tiles of both layers (float64, to 1e-12)."""
    from reference_rate import reference_bptt_loss

    rng = np.random.default_rng(21)
    h, n, t_steps, b = 150, 100, 10, 7
    w1 = rng.uniform(-0.15, 0.2, (h, n))
    w2 = rng.uniform(-0.1, 0.45, (n, h))
    x = _spikes(rng, (t_steps, b, n), 0.25)
    tw1, tw2 = torch.tensor(w1, requires_grad=True), torch.tensor(w2, requires_grad=True)
    loss, a2 = reference_bptt_loss(tw1, tw2, torch.tensor(x, dtype=torch.float64))
    loss.backward()
    r = bptt_grads(torch.tensor(w1), torch.tensor(w2), torch.tensor(x), spike_lists=lists, input_lists=input_lists)
    assert 0.01 < r["hidden_density"] < 0.5
    assert r["loss"] == pytest.approx(float(loss.detach()), rel=1e-12)
    np.testing.assert_array_equal(r["out_spikes"].numpy(), a2.detach().sum(dim=0).numpy())
    np.testing.assert_allclose(r["g1"].numpy(), tw1.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(r["g2"].numpy(), tw2.grad.numpy(), rtol=0, atol=1e-12)
    assert float(tw1.grad.abs().max()) > 1e-3 and float(tw2.grad.abs().max()) > 1e-3


def test_float32_spike_list_paths_equal_blas_paths_on_fashion_shaped_batch():
    """784 inputs at Fashion's input density (p = 0.5 pixel), 1024 hidden, float32: the tiled row sums (the
    default at this density) give the BLAS products' gradients to float32 rounding and the same spikes."""
    from models.rate_encoding import bernoulli_encode

    rng = np.random.default_rng(5)
    w1 = rng.uniform(-0.1, 0.1, (1024, 784)).astype(np.float32)
    w2 = rng.uniform(-0.1, 0.1, (784, 1024)).astype(np.float32)
    images = rng.random((20, 784)) * (rng.random((20, 784)) < 0.55)
    x = torch.tensor(bernoulli_encode(images, 8, 0.5, rng).transpose(1, 0, 2).copy())
    tw1, tw2 = torch.tensor(w1), torch.tensor(w2)
    fast = bptt_grads(tw1, tw2, x)                           # defaults: lists at these densities
    assert fast["hidden_density"] < 0.1
    slow = bptt_grads(tw1, tw2, x, spike_lists=False, input_lists=False)
    np.testing.assert_array_equal(fast["out_spikes"].numpy(), slow["out_spikes"].numpy())
    assert fast["loss"] == pytest.approx(slow["loss"], rel=1e-5)
    for k in ("g1", "g2"):
        a, c = fast[k].numpy(), slow[k].numpy()
        assert a.shape == c.shape and np.abs(c).max() > 1e-4 and fast[k].is_contiguous()
        np.testing.assert_allclose(a, c, rtol=0, atol=1e-5 * np.abs(c).max())


def test_tiled_paths_give_the_same_bits_on_one_and_two_threads():
    """Each tile is summed by one thread in a fixed order: the thread count does not change a bit."""
    import numba

    rng = np.random.default_rng(8)
    w1 = rng.uniform(-0.1, 0.3, (200, 120)).astype(np.float32)
    w2 = rng.uniform(-0.1, 0.4, (120, 200)).astype(np.float32)
    xs = [torch.tensor(_spikes(rng, (9, 13, 120), 0.15)) for _ in range(3)]
    results = []
    before = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            lrn = BpttLearner(w1, w2, lr=1e-2)
            for x in xs:
                lrn.train_batch(x)
            results.append(lrn.numpy())
    finally:
        numba.set_num_threads(before)
    for a, c in zip(*results):
        np.testing.assert_array_equal(a, c)


def test_speed_benchmark_floor_mode(capsys):
    """benchmarks/train_speed_rate.py --floor: the floor parts, and the epoch floors made of them."""
    import json

    from bench_loader import load_benchmark

    mod = load_benchmark("train_speed_rate")
    assert mod.main(["--floor", "--threads", "1", "--repeats", "1"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for kind in ("wall", "cpu"):
        r = res[kind]
        assert r["bptt_G2W2_ms_per_batch"] > 0 and r["online_adam_ms_per_step"] > 0
        assert r["bptt_seconds_per_epoch"] == pytest.approx(600 * r["bptt_G2W2_ms_per_batch"] / 1e3, rel=1e-3)
        assert r["online_seconds_per_epoch"] == pytest.approx(
            36_000 * (3 * r["online_step_product_ms"] + r["online_adam_ms_per_step"]) / 1e3, rel=1e-2)
    assert res["floor_seconds_per_epoch"]["bptt"] == res["wall"]["bptt_seconds_per_epoch"]
    assert res["floor_seconds_per_epoch_perfect_cores"]["online"] == res["cpu"]["online_seconds_per_epoch"]
