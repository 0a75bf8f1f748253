"""Speed work on the temporal trainer (issue [D] section 6) changes no number.

- the restructured kernels equal the frozen pre-change kernels (tests/reference_temporal_kernels.py) bitwise,
  in one thread and in parallel;
- the numba Adam step equals torch's Adam (same state, to rounding) and falls back to torch where it must;
- the thread policy (models/threads.py) and the trainer give the same parameters whatever the thread count;
- benchmarks/train_speed.py cycles or refuses the bundled subset and says where its data came from.
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
import torch

import reference_temporal_kernels as old
from models import temporal_kernels as new
from models.adam_step import adam_step
from models.temporal_backprop import layer_forward, reconstruction_gradients
from models.threads import (PARALLEL_MIN_BATCH, AdaptiveThreads, batch_threads, check_threads, default_threads,
                            numba_threads)
from toolchain.errors import SnncError

ROOT = Path(__file__).resolve().parents[1]


def _inputs(rng, n, n_in, p_silent, levels):
    x = rng.uniform(0.0, 1.5, (n, n_in))
    if levels:
        x = np.round(x * levels) / levels
    x[rng.uniform(size=x.shape) < p_silent] = np.inf
    return x


def _cases(rng):
    """Layers like the autoencoder's (wide input + pulses, wide output) and random small ones."""
    yield _inputs(rng, 9, 794, 0.5, 255), rng.normal(0.02, 0.08, (32, 794)), 0.17, 0.83
    yield _inputs(rng, 7, 42, 0.05, None), rng.normal(0.3, 0.5, (784, 42)), 0.17, 0.83
    for trial in range(12):
        n_in, n_out, n = (int(v) for v in rng.integers((1, 1, 1), (90, 150, 10)))
        yield (_inputs(rng, n, n_in, float(rng.uniform(0, 0.9)), [None, 8, 255][trial % 3]),
               rng.normal(float(rng.uniform(-0.3, 1.0)), 1.0, (n_out, n_in)), float(rng.uniform(0.1, 2.0)),
               float(rng.uniform(0.2, 1.5)))


@pytest.mark.parametrize("threads", [1, 2])
def test_forward_and_backward_kernels_equal_the_frozen_originals(threads):
    rng = np.random.default_rng(11)
    checked = 0
    with numba_threads(min(threads, numba.config.NUMBA_NUM_THREADS)):
        for x, w, tau, theta in _cases(rng):
            wt = np.ascontiguousarray(w.T)
            ref = old.layer_forward_fast(x, wt, tau, theta, 1)
            for n_split in (1, 3):
                got = new.layer_forward_fast(x, wt, tau, theta, n_split)
                for name, r, g in zip(("t", "A", "B", "W", "n_prefix", "order", "n_valid"), ref[:7], got[:7]):
                    assert np.array_equal(r, g), name
                for s, nv in enumerate(ref[6]):  # es, ts: defined for the first n_valid entries
                    assert np.array_equal(ref[7][s, :nv], got[7][s, :nv])
                    assert np.array_equal(ref[8][s, :nv], got[8][s, :nv])
            t, a, b, ww, k, order, _, es, ts = ref
            g = rng.normal(0.0, 1.0, t.shape)
            for col_start in (0, max(0, w.shape[1] - 3)):
                args = (ts, es, w, t, a, b, ww, k, order, g, tau, 3.0, 0.4, col_start)
                gw0, gin0 = old.layer_grads(*args, -1)
                for mode in (-1, 0, 1) if col_start == 0 else (-1, 0):
                    gw1, gin1 = new.layer_grads(*args, mode)
                    assert np.array_equal(gw0, gw1) and np.array_equal(gin0, gin1), (col_start, mode)
            checked += int(np.isfinite(t).sum())
    assert checked > 2000  # the cases do spike


def _adam(params, fused, weight_decay):
    return torch.optim.Adam([{"params": params[:2], "lr": 1e-3, "weight_decay": weight_decay},
                             {"params": params[2:], "lr": 2e-3}], betas=(0.9, 0.999), eps=1e-8, fused=fused)


def test_numba_adam_step_equals_torch_adam_and_keeps_its_state():
    rng = np.random.default_rng(3)
    shapes = [(5, 7), (3, 5), (4,), (4,)]
    init = [rng.normal(size=s) for s in shapes]
    grads = [[rng.normal(size=s) for s in shapes] for _ in range(12)]
    runs = {}
    for name in ("torch", "numba", "mixed"):
        ps = [torch.tensor(a.copy(), requires_grad=True) for a in init]
        opt = _adam(ps, fused=False, weight_decay=0.01)
        for i, gs in enumerate(grads):
            for p, g in zip(ps, gs):
                p.grad = torch.from_numpy(g.copy())
            if name == "torch" or (name == "mixed" and i % 3 == 1):
                opt.step()
            else:
                adam_step(opt)
        runs[name] = (ps, opt)
    ref_ps, ref_opt = runs["torch"]
    for name in ("numba", "mixed"):
        ps, opt = runs[name]
        for p, r in zip(ps, ref_ps):
            np.testing.assert_allclose(p.detach().numpy(), r.detach().numpy(), rtol=1e-13, atol=1e-15)
        for i in range(len(ps)):
            st, rst = opt.state_dict()["state"][i], ref_opt.state_dict()["state"][i]
            assert float(st["step"]) == float(rst["step"]) == len(grads)
            np.testing.assert_allclose(st["exp_avg_sq"].numpy(), rst["exp_avg_sq"].numpy(), rtol=1e-13, atol=0)
    # a state loaded from a checkpoint is picked up (the cached views follow the new tensors)
    ps, opt = runs["numba"]
    ps2 = [torch.tensor(p.detach().numpy().copy(), requires_grad=True) for p in ps]
    opt2 = _adam(ps2, fused=False, weight_decay=0.01)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # as from a checkpoint: tensors not shared
    for pair in ((ps, opt), (ps2, opt2)):
        for p, g in zip(pair[0], grads[0]):
            p.grad = torch.from_numpy(g.copy())
        adam_step(pair[1])
    for p, p2 in zip(ps, ps2):
        assert np.array_equal(p.detach().numpy(), p2.detach().numpy())


def test_adam_step_falls_back_to_torch_outside_its_kernel():
    p = torch.zeros(3, dtype=torch.float32, requires_grad=True)  # float32: not the kernel's
    opt = torch.optim.Adam([p], lr=0.1, amsgrad=False)
    p.grad = torch.ones(3)
    adam_step(opt)
    assert torch.allclose(p.detach(), torch.full((3,), -0.1))
    q = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([q], lr=0.1, amsgrad=True)
    q.grad = torch.ones(2, dtype=torch.float64)
    adam_step(opt)
    assert "max_exp_avg_sq" in opt.state[q]  # torch's own amsgrad step ran


def test_thread_policy_and_checks():
    assert batch_threads(PARALLEL_MIN_BATCH - 1, 2) == 1 and batch_threads(PARALLEL_MIN_BATCH, 2) == 2
    assert 1 <= default_threads() <= numba.config.NUMBA_NUM_THREADS
    assert check_threads(1) == 1
    for bad in (0, -1, numba.config.NUMBA_NUM_THREADS + 1):
        with pytest.raises(SnncError, match="--threads must be between 1 and"):
            check_threads(bad)
    before = numba.get_num_threads()
    with numba_threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before


def test_adaptive_threads_switches_to_the_faster_candidate():
    pol = AdaptiveThreads(threads=1)
    assert pol.choose(7) == 1  # one thread: nothing to choose
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs NUMBA_NUM_THREADS >= 2")
    pol = AdaptiveThreads(threads=2, probe_every=14)  # probe every 2 batches of 7
    speed = {1: 1.0, 2: 0.5}  # seconds per batch: parallel twice as fast
    seen = []
    for _ in range(40):
        t = pol.choose(7)
        seen.append(t)
        pol.record(t, speed[t], 7)
    assert seen[0] == 1 and seen[-20:].count(2) >= 17  # starts in one thread (small batch), moves to the faster
    for _ in range(300):  # a long quiet stretch: probes of one thread become rare
        pol.record(pol.choose(7), speed[pol.choose(7)], 7)
    speed = {1: 1.0, 2: 50.0}  # now the machine is busy: parallel batches crawl
    seen = []
    for _ in range(200):
        t = pol.choose(7)
        seen.append(t)
        pol.record(t, speed[t], 7)
    assert seen[:12].count(2) <= 6  # the slow-down is noticed within a few batches, not at the next probe
    assert seen[-100:].count(2) <= 4  # back to one thread, probing (two batches each) ever more rarely
    assert sum(pol.batches.values()) == 540


def test_training_results_do_not_depend_on_threads():
    rng = np.random.default_rng(8)
    params = [(rng.normal(0.05, 0.1, (12, 60 + 3)), np.array([0.2, 0.5, 0.8])),
              (rng.normal(0.3, 0.4, (60, 12 + 3)), np.array([0.2, 0.5, 0.8]))]
    x = _inputs(rng, PARALLEL_MIN_BATCH, 60, 0.3, 255)
    y = rng.uniform(0, 1, (PARALLEL_MIN_BATCH, 60))
    res = [reconstruction_gradients(params, x, y, 1.0, 0.7, 0.8, 5.0, 0.3, threads=t)
           for t in (1, min(2, numba.config.NUMBA_NUM_THREADS), None, AdaptiveThreads())]
    for r in res[1:]:
        assert r.sq_error_sum == res[0].sq_error_sum
        for g, g0 in zip(r.grads, res[0].grads):
            assert np.array_equal(g.weights_all, g0.weights_all) and np.array_equal(g.pulse_times, g0.pulse_times)
    assert np.array_equal(layer_forward(x, params[0][0], params[0][1], 0.7, 0.8).t_out,
                          old.layer_forward_fast(np.hstack([x, np.tile(params[0][1], (len(x), 1))]),
                                                 np.ascontiguousarray(params[0][0].T), 0.7, 0.8)[0])


def _bench(*args, env_data=None):
    import os

    env = {k: v for k, v in os.environ.items() if k != "SNNC_DATA"}
    env.update(PYTHONPATH=str(ROOT), NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_speed.py"), *args], env=env,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_train_speed_benchmark_cycles_the_bundled_subset_or_refuses():
    r = _bench("--examples", "1200", "--warmup", "14", "--large-batch", "64")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["data_source"] == "bundled" and summary["data_cycled"] is True
    assert summary["data_images"] < 1200 + 64
    assert set(summary["seconds_per_epoch_by_batch"]) == {"7", "64"}
    assert all(v > 0 for v in summary["seconds_per_epoch_by_batch"].values())
    assert summary["threads"] == 1 and summary["configs"][0]["examples"] == 1197
    assert "bundled" in r.stderr and "cycled" in r.stderr
    r = _bench("--examples", "1200", "--warmup", "14", "--no-cycle")
    assert r.returncode != 0 and "--no-cycle" in r.stderr and r.stdout == ""
