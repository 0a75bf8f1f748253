"""glibc malloc settings for a sweep worker, so that its trials reuse memory instead of handing it back to the kernel.

A worker runs many trials in one process, and every training batch and evaluation chunk allocates and frees
numpy temporaries. With glibc's defaults a freed block above the (dynamic) mmap threshold is unmapped at once and
the top of the heap is trimmed when more than the trim threshold is free, so the next batch maps fresh pages,
which the kernel must fault in and zero. Two workers doing that at once contend on the (virtual) machine's
memory management. Measured on the 8-trial benchmark grid (``benchmarks/sweep_scaling.py``, 1 worker, busy
machine): 186,000 minor page faults and 1.66 s system time with the defaults, 97,000 and 0.42 s with these
settings (about 80,000 of the faults are the process's imports, paid either way).

:func:`tune_malloc` sets, through ``mallopt`` (glibc only; elsewhere it does nothing and returns ``{}``):

* ``M_MMAP_THRESHOLD`` = 32 MiB (glibc's maximum on 64-bit): blocks below it come from the heap and are reused;
* ``M_TRIM_THRESHOLD`` = 1 GiB: the heap is not shrunk after each batch (the worker keeps its peak heap);
* ``M_TOP_PAD`` = 64 MiB: the heap grows in large steps.

Values of ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_TOP_PAD_`` in the worker's
environment take precedence (the user's choice). Memory is not returned to the system while the worker lives:
its resident size stays at the largest trial's peak (heap part), which a worker that only trains does not mind.
"""
from __future__ import annotations

from toolchain.malloc_tuning import M_MMAP_THRESHOLD, M_TOP_PAD, M_TRIM_THRESHOLD, set_mallopt

MIB = 1 << 20
SETTINGS = ((M_MMAP_THRESHOLD, 32 * MIB), (M_TRIM_THRESHOLD, 1024 * MIB), (M_TOP_PAD, 64 * MIB))


def tune_malloc() -> dict[str, int]:
    """Apply the settings above to this process (glibc, toolchain.malloc_tuning); returns {environment variable
    name: bytes} of those set (a setting named in the environment is left to it; a value glibc refuses is left
    out)."""
    return set_mallopt(SETTINGS) or {}
