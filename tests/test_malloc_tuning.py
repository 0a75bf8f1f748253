"""toolchain/malloc_tuning.py: the one mallopt wrapper of the sweep workers (experiments/sweep_malloc.py, tested
in tests/test_sweep_worker_process.py) and of benchmarks/hw_sim_speed.py's ``--malloc keep``. Every check runs in
a child process, so the test process keeps its own malloc."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys
sys.path.insert(0, "benchmarks")
from toolchain.malloc_tuning import M_MMAP_MAX, M_TOP_PAD, set_mallopt
from hw_sim_speed import keep_freed_memory
out = {"respected": set_mallopt(((M_TOP_PAD, 1 << 20), (M_MMAP_MAX, 0))),
       "forced": set_mallopt(((M_TOP_PAD, 1 << 20),), respect_env=False),
       "keep": keep_freed_memory()}
print(json.dumps(out))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_settings_named_in_the_environment_are_left_unless_forced_and_the_benchmark_keeps_freed_memory():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = str(ROOT)
    env["MALLOC_TOP_PAD_"] = "0"
    r = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=ROOT, text=True, capture_output=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {"respected": {"MALLOC_MMAP_MAX_": 0}, "forced": {"MALLOC_TOP_PAD_": 1 << 20}, "keep": True}
