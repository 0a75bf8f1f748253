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


class AdaptiveThreads:
    """Per-batch thread count for the training kernels, chosen from the measured batch times.

    Two candidates: 1 thread and ``threads``. Batches start with :func:`batch_threads`'s choice; after every
    ``probe_every`` examples (rounded up to at least 2 batches) the other candidate runs for one uncounted batch
    (it wakes or starts the threads) and then up to 6 batches (2 from 64 samples up; the probe stops after one
    if that one is already 1.5x slower), and the candidate with the lower median time per example is kept. Each time the probe loses, the next one comes twice as late
    (up to 64 x ``probe_every``), so a machine that is busy for long pays little for probing; a switch resets
    the interval, and so does the current choice becoming 1.5x slower than when it was confirmed (load arrived),
    which starts a probe at once. This keeps parallel kernels on a
    quiet machine and falls back to one thread when other processes make every fork/join wait (see the module
    docstring). Results do not depend on the choice (the kernels are deterministic).
    """

    def __init__(self, threads: int | None = None, probe_every: int = 2000):
        self.threads = numba.get_num_threads() if threads is None else check_threads(threads)
        self.probe_every = probe_every  # examples
        self.probe_len = 6  # batches, set by the first batch size
        self._best: int | None = None  # current choice (None: not decided yet -> batch_threads)
        self._base = self._interval = 2  # batches between probes, set by the first batch size
        self._since_probe = 0
        self._probe: list[float] = []  # times per example of the running probe
        self._probe_warm = False  # the running probe's first (uncounted) batch is done
        self._ref: float | None = None  # median time per example of the current choice when it was confirmed
        self._recent: dict[int, list[float]] = {}
        self.batches: dict[int, int] = {}  # thread count -> batches run with it

    def _other(self, t: int) -> int:
        return self.threads if t == 1 else 1

    def choose(self, batch_size: int) -> int:
        """Thread count for the next batch of ``batch_size`` samples."""
        if self._best is None:
            self._best = batch_threads(batch_size, self.threads)
            self._base = self._interval = max(2, -(-self.probe_every // max(1, batch_size)))
            self.probe_len = 6 if batch_size < PARALLEL_MIN_BATCH else 2
        if self.threads == 1:
            return 1
        if self._since_probe >= self._interval:
            return self._other(self._best)
        return self._best

    def record(self, threads: int, seconds: float, batch_size: int) -> None:
        """Report the wall time of a batch run with ``threads`` threads."""
        self.batches[threads] = self.batches.get(threads, 0) + 1
        per_example = seconds / max(1, batch_size)
        if self._best is None or self.threads == 1:
            return
        if threads == self._best:
            rec = self._recent.setdefault(threads, [])
            rec.append(per_example)
            del rec[:-self.probe_len]
            self._since_probe += 1
            if len(rec) >= self.probe_len:
                now = _median(rec)
                if self._ref is None:
                    self._ref = now
                elif now > 1.5 * self._ref:  # the current choice got slow (load came): probe the other now
                    self._interval = self._base
                    self._since_probe = self._interval
                    self._ref = now
            return
        if not self._probe_warm:  # the first batch after a switch wakes (or starts) the threads: not counted
            self._probe_warm = True
            return
        self._probe.append(per_example)
        ref = _median(self._recent.get(self._best, [])) if self._recent.get(self._best) else None
        done = len(self._probe) >= self.probe_len or (ref is not None and per_example > 1.5 * ref)
        if not done:
            return
        other = _median(self._probe)
        if ref is not None and other < 0.95 * ref:  # the other candidate wins: switch, probe back soon
            self._recent[threads] = list(self._probe)
            self._best = threads
            self._interval = self._base
            self._ref = other
        else:
            self._interval = min(64 * self._base, 2 * self._interval)
            self._ref = ref
        self._probe = []
        self._probe_warm = False
        self._since_probe = 0


def _median(v: list[float]) -> float:
    s = sorted(v)
    return s[len(s) // 2] if len(s) % 2 else 0.5 * (s[len(s) // 2 - 1] + s[len(s) // 2])
