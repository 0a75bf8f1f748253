"""CPU thread policy of the training kernels (numba) and why small batches run in one thread.

A batch of the preset's size (7) is ~1 ms of work split over 4 kernel calls. Run in parallel, each call is a
fork/join of numba's threads, i.e. ~30,000 joins per epoch; on a machine where other processes compete for
the cores a join waits until every thread has been scheduled again, and the epoch time explodes (measured on a
2-core machine with load ~8: 1,211 s per epoch with 2 threads and numba's default OpenMP layer, 446 s with
its 'workqueue' layer, 37 s in one thread). So batches smaller than :data:`PARALLEL_MIN_BATCH` run their kernels
in the calling thread (no parallel region at all) and larger ones use the configured number of threads, where
each kernel call is milliseconds of work and a join costs little. Results do not depend on the thread count
(the kernels sum in a fixed order), so this is a pure speed choice.

The configured number is numba's (``numba.set_num_threads``, set by ``snnc train temporal --threads``); the
default is every core this process may run on (``os.sched_getaffinity``), capped by ``NUMBA_NUM_THREADS``.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numba

from toolchain.errors import SnncError

# Batches with fewer samples than this run the kernels in one thread (see the module docstring).
PARALLEL_MIN_BATCH = 64


def max_threads() -> int:
    """Most threads the kernels can use: numba's pool size (``NUMBA_NUM_THREADS``, default: all CPUs)."""
    return int(numba.config.NUMBA_NUM_THREADS)


def default_threads() -> int:
    """Cores this process may run on (CPU affinity, e.g. under ``taskset``), at most :func:`max_threads`."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, max_threads()))


def check_threads(threads: int) -> int:
    """``threads`` if it is a usable thread count, else an SnncError naming the allowed range."""
    hi = max_threads()
    if not isinstance(threads, int) or not 1 <= threads <= hi:
        raise SnncError(f"--threads must be between 1 and {hi} (numba's pool, NUMBA_NUM_THREADS), got {threads!r}")
    return threads


def batch_threads(batch_size: int, threads: int | None = None) -> int:
    """Threads for the kernels of one batch: 1 below :data:`PARALLEL_MIN_BATCH` samples, else ``threads``
    (default: numba's current setting)."""
    n = numba.get_num_threads() if threads is None else threads
    return 1 if batch_size < PARALLEL_MIN_BATCH else n


@contextmanager
def numba_threads(threads: int) -> Iterator[None]:
    """Run the enclosed numba kernels with ``threads`` threads (numba's setting is per calling thread), then
    restore the previous setting."""
    before = numba.get_num_threads()
    if threads == before:
        yield
        return
    numba.set_num_threads(threads)
    try:
        yield
    finally:
        numba.set_num_threads(before)
