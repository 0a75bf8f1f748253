"""glibc malloc settings through ``mallopt``: the one place that loads the C library and applies them, for the
processes that want freed memory kept for their next allocations (experiments/sweep_malloc.py's sweep workers,
benchmarks/hw_sim_speed.py's ``--malloc keep``). Each caller chooses its own settings; this module has none.

Parameters are glibc's (malloc.h); sizes in bytes. Each has an environment variable (``MALLOC_..._``) that glibc
reads at start-up; :func:`set_mallopt` can leave a parameter named there to the user.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Sequence

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
ENV_NAMES = {M_TRIM_THRESHOLD: "MALLOC_TRIM_THRESHOLD_", M_TOP_PAD: "MALLOC_TOP_PAD_",
             M_MMAP_THRESHOLD: "MALLOC_MMAP_THRESHOLD_", M_MMAP_MAX: "MALLOC_MMAP_MAX_"}


def _libc():
    """The C library when it is glibc with mallopt (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None
    except OSError:
        return None


def set_mallopt(settings: Sequence[tuple[int, int]], respect_env: bool = True) -> dict[str, int] | None:
    """Apply ``settings``, (parameter, value) pairs of this module's M_* constants, in order to this process.
    Returns {environment variable name: value} of those glibc accepted (a value it refuses is left out), or None
    where the C library is not glibc. ``respect_env``: a parameter whose variable is set in the environment is
    left to it (not applied, not returned)."""
    libc = _libc()
    if libc is None:
        return None
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    done = {}
    for param, value in settings:
        env = ENV_NAMES[param]
        if respect_env and env in os.environ:
            continue
        if libc.mallopt(param, value) == 1:
            done[env] = value
    return done
