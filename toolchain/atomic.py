"""Atomic file writes and output-path checks.

Every file snnc writes goes through :func:`atomic_path`: the data is written to a temporary file in the target
folder (``.snnc-tmp-<pid>-<name>.<random>.tmp``, made by ``tempfile.mkstemp``), fsynced, then moved over the
target with ``os.replace``. A failure or interrupt (any exception, KeyboardInterrupt included) removes the temporary
file and leaves the previous target intact, never a truncated one. A process killed outright (SIGKILL, power loss)
cannot clean up: :func:`clean_stale_temps` removes such leftovers of dead processes (a resumed run calls it on its
output folder).

:func:`check_output_path` lets a command refuse an unusable ``--out`` (a folder where a file is expected, a file
where a folder is expected, a parent that is a file, a folder it cannot write) before doing any work; the same
checks raise :class:`~toolchain.errors.OutputError` from :func:`atomic_path`; :func:`ensure_output_folder` creates an
output folder the same way (instead of a bare ``mkdir``).
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator, Literal

from toolchain.errors import OutputError

TEMP_PREFIX = ".snnc-tmp-"
_TEMP_RE = re.compile(r"^\.snnc-tmp-(\d+)-.*\.tmp$")
_LEGACY_TEMP_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # ".<name>.<mkstemp random>.tmp" of snnc < this version


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def clean_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove temporary files that killed snnc processes left in ``folder`` (not recursive); return them.

    Removed: ``.snnc-tmp-<pid>-*.tmp`` whose process no longer runs, and ``.<name>.<8 chars>.tmp`` files of earlier
    snnc versions (which carried no pid). Temporary files of live processes (this one included) are kept. A missing
    folder is not an error (nothing to clean)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.iterdir():
        m = _TEMP_RE.match(p.name)
        if m:
            pid = int(m.group(1))
            if pid == os.getpid() or _pid_alive(pid):
                continue
        elif not _LEGACY_TEMP_RE.match(p.name):
            continue
        if p.is_file() and not p.is_symlink():
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:  # removed concurrently
                pass
            except OSError as exc:
                raise OutputError(f"cannot remove the stale temporary file {p} ({exc.strerror}); fix: delete it "
                                  f"by hand or make {folder} writable") from None
    return removed


def _first_existing(path: Path) -> Path:
    p = path
    while not p.exists() and not p.is_symlink() and p != p.parent:
        p = p.parent
    return p


def check_output_path(path: str | os.PathLike, kind: Literal["file", "folder"] = "file", flag: str | None = None
                      ) -> Path:
    """Refuse an output path that cannot be written, before any work; return it as a Path.

    kind "file": ``path`` must not be a folder; "folder": ``path`` must not be a file. For both, the nearest
    existing ancestor must be a folder this process can write (missing folders are created later). Raises
    OutputError naming the path (and ``flag``, the option it came from) and the fix. (Root passes every permission
    check here; a read-only file system is then caught by :func:`atomic_path` when it creates the temporary file.)"""
    if kind not in ("file", "folder"):
        raise ValueError(f"kind must be 'file' or 'folder', got {kind!r}")
    path = Path(path)
    what = f"{flag} {path}" if flag else f"output {path}"
    if str(path) == "":
        raise OutputError("the output path is empty; fix: pass a file or folder name")
    if path.exists():
        if kind == "file" and path.is_dir():
            raise OutputError(f"{what} is a folder, expected a file; fix: pass the path of a file (e.g. "
                              f"{path / '<name>'}) or remove the folder")
        if kind == "folder" and not path.is_dir():
            raise OutputError(f"{what} is an existing file, expected a folder; fix: pass a folder path "
                              f"(e.g. {path.with_suffix('')}-out) or remove the file")
    anc = _first_existing(path if kind == "folder" and path.is_dir() else path.parent)
    if not anc.is_dir():
        raise OutputError(f"cannot write {what}: {anc} is a file, not a folder; fix: choose an output path whose "
                          f"parent folders are folders")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {what}: folder {anc} is not writable; fix: choose a writable folder "
                          f"(--out) or change its permissions")
    return path


def ensure_output_folder(path: str | os.PathLike) -> Path:
    """Create the output folder ``path`` (and its parents) if needed, after :func:`check_output_path`; any OSError
    (a read-only file system, root included) becomes OutputError naming the path and the fix."""
    path = check_output_path(path, "folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {path} ({exc.strerror or exc}); fix: choose a "
                          f"writable folder (--out)") from None
    return path


def _os_error(path: Path, exc: OSError) -> OutputError:
    return OutputError(f"cannot write {path} ({exc.strerror or exc}); fix: choose a writable output path (--out) "
                       f"on a file system with free space")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path`` atomically.

    On any exception (KeyboardInterrupt included) the temporary file is removed and ``path`` is untouched.
    An unusable ``path`` raises OutputError (see :func:`check_output_path`)."""
    path = check_output_path(path, "file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-{path.name}.", suffix=".tmp",
                                   dir=path.parent)
    except OSError as exc:
        raise _os_error(path, exc) from None
    tmp_path = Path(tmp)
    try:
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
        yield tmp_path
        try:
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp_path, path)
        except OSError as exc:
            raise _os_error(path, exc) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        try:
            tmp.write_bytes(data)
        except OSError as exc:
            raise _os_error(Path(path), exc) from None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
