"""Atomic writes: the old file survives a failed write; new files get the usual permissions."""
import os

import pytest

from toolchain.atomic import atomic_path, atomic_write_text


def test_failed_write_keeps_previous_file(tmp_path):
    target = tmp_path / "report.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left behind


def test_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


# ---- temp names, interrupts, kills, stale temps, unusable output paths ---------------------------------------------

import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

from toolchain.atomic import (TEMP_PREFIX, atomic_write_bytes, check_output_path, clean_stale_temps,  # noqa: E402
                              ensure_output_folder)
from toolchain.errors import OutputError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_temp_file_is_recognisable_and_removed_on_keyboard_interrupt(tmp_path):
    target = tmp_path / "model.onnx"
    atomic_write_text(target, "old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(f"{TEMP_PREFIX}{os.getpid()}-model.onnx.")
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_killed_writer_leaves_a_temp_that_clean_stale_temps_removes(tmp_path):
    """SIGKILL mid-write cannot be cleaned by the writer: the earlier file survives, the temp is removed later."""
    target = tmp_path / "checkpoint.pt"
    atomic_write_text(target, "epoch 1")
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from toolchain.atomic import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            print("writing", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        live = [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]
        assert len(live) == 1 and live[0].stat().st_size == 0
        assert clean_stale_temps(tmp_path) == []  # the writer still runs: its temp is kept
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert live[0].exists() and target.read_text() == "epoch 1"
    assert clean_stale_temps(tmp_path) == live
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_clean_stale_temps_keeps_live_and_unrelated_files(tmp_path):
    dead = tmp_path / f"{TEMP_PREFIX}{_dead_pid()}-metrics.json.k2j4h5g6.tmp"
    legacy = tmp_path / ".model.onnx.ab_d12x9.tmp"  # name of earlier snnc versions (no pid)
    mine = tmp_path / f"{TEMP_PREFIX}{os.getpid()}-report.json.qwertyui.tmp"
    other_live = tmp_path / f"{TEMP_PREFIX}1-report.json.asdfghjk.tmp"  # pid 1 always runs
    keep = [tmp_path / "model.onnx", tmp_path / "notes.tmp", tmp_path / ".hidden"]
    for p in (dead, legacy, mine, other_live, *keep):
        p.write_bytes(b"")
    assert sorted(clean_stale_temps(tmp_path)) == sorted([dead, legacy])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (mine, other_live, *keep))
    assert clean_stale_temps(tmp_path / "missing") == []


def test_check_output_path_refuses_unusable_paths(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    afile = tmp_path / "a.txt"
    afile.write_text("x")
    assert check_output_path(folder / "new" / "c.npz") == folder / "new" / "c.npz"
    assert check_output_path(afile) == afile  # an existing file is replaced
    assert check_output_path(folder, "folder") == folder
    with pytest.raises(OutputError, match=r"is a folder, expected a file"):
        check_output_path(folder, "file")
    with pytest.raises(OutputError, match=r"is an existing file, expected a folder"):
        check_output_path(afile, "folder")
    with pytest.raises(OutputError, match=r"a.txt is a file, not a folder"):
        check_output_path(afile / "sub" / "c.npz")
    with pytest.raises(OutputError, match="is a folder"):
        atomic_write_text(folder, "x")  # no IsADirectoryError traceback
    with pytest.raises(OutputError, match="is a file, not a folder"):
        atomic_write_bytes(afile / "x.bin", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "runs"] and not list(folder.iterdir())


def test_read_only_folder(tmp_path):
    """Non-root: os.access refuses a 0o555 folder up front. Root bypasses permissions, so there a folder where
    file creation fails anyway (sysfs) checks that the write itself raises OutputError, not a traceback."""
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            with pytest.raises(OutputError, match="not writable"):
                check_output_path(ro / "c.npz")
            with pytest.raises(OutputError, match="not writable"):
                atomic_write_text(ro / "c.npz", "x")
        finally:
            ro.chmod(0o755)
        return
    target = Path("/sys/snnc-test-output.json")
    if not Path("/sys").is_dir():
        pytest.skip("no /sys to stand in for a read-only folder when running as root")
    with pytest.raises(OutputError, match="cannot write /sys/snnc-test-output.json"):
        atomic_write_text(target, "x")
    assert not target.exists()


def test_ensure_output_folder(tmp_path):
    made = ensure_output_folder(tmp_path / "a" / "b")
    assert made.is_dir() and ensure_output_folder(made) == made
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is an existing file, expected a folder"):
        ensure_output_folder(tmp_path / "f")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        ensure_output_folder(tmp_path / "f" / "sub")
    if os.geteuid() == 0 and Path("/sys").is_dir():  # root: permissions pass, the file system still refuses
        with pytest.raises(OutputError, match="cannot create the output folder /sys/snnc-test-dir"):
            ensure_output_folder("/sys/snnc-test-dir")
