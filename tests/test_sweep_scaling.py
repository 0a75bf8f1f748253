"""benchmarks/sweep_scaling.py's bookkeeping: each worker's first trial and the per-config steady slowdown (the
benchmark itself runs two sweeps and is not part of the suite; its helpers are)."""
from __future__ import annotations

import pytest
from bench_loader import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("sweep_scaling")


def _rec(h, worker, start, wall):
    return {"hash": h, "worker": worker, "started_unix": start, "finished_unix": start + wall, "wall_s": wall}


def test_first_trials_and_steady_slowdown_leave_out_each_workers_first_trial(bench):
    one = [_rec("a", "w1", 0, 5.0), _rec("b", "w1", 5, 2.0), _rec("c", "w1", 7, 3.0), _rec("d", "w1", 10, 4.0)]
    two = [_rec("a", "w2", 0, 6.0), _rec("b", "w3", 0, 9.0), _rec("c", "w2", 6, 3.3), _rec("d", "w3", 9, 4.8)]
    assert bench._first_trials(one) == {"a"} and bench._first_trials(two) == {"a", "b"}
    r1 = {"trial_wall_s": {r["hash"]: r["wall_s"] for r in one}, "first_trials": sorted(bench._first_trials(one))}
    r2 = {"trial_wall_s": {r["hash"]: r["wall_s"] for r in two}, "first_trials": sorted(bench._first_trials(two))}
    assert bench.steady_slowdown(r1, r2) == pytest.approx((3.3 / 3.0 + 4.8 / 4.0) / 2)
    r2["first_trials"] = ["a", "b", "c", "d"]
    assert bench.steady_slowdown(r1, r2) is None


def test_grid_spec_has_the_asked_number_of_trials(bench):
    from experiments.sweep_spec import spec_from_dict

    import tomllib

    text = bench.grid_spec(8, 10, 1800, 500, "mnist")
    spec = spec_from_dict(tomllib.loads(text), origin="bench")
    assert len(spec.configs()) == 8 and spec.order == "longest-first"
    with pytest.raises(SystemExit):
        bench.grid_spec(3, 1, 10, 10, "mnist")
