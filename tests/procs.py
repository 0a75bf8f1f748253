"""The process table from /proc (no psutil), for tests that check that no child process outlives its command."""
from __future__ import annotations

import os


def proc_table() -> list[tuple[int, int, int, str]]:
    """(pid, ppid, session id, state) of every process, from /proc/<pid>/stat."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out.append((int(d), int(fields[1]), int(fields[3]), fields[0]))
    return out
