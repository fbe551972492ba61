"""Atomic output: a failure while writing leaves neither a partial file nor a temp file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from caloforge.atomic import atomic_path, write_json, write_text
from caloforge.errors import UserError


def test_write_json_round_trip_and_permissions(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_json(target, {"a": 1, "b": [1.5, 2]})
    assert json.loads(target.read_text()) == {"a": 1, "b": [1.5, 2]}
    # same permissions as a normally created file (mkstemp alone would give 0600)
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_exception_leaves_previous_content_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half-written")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_missing_directory_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        write_text(tmp_path / "nope" / "x.txt", "x")


def test_parent_that_is_a_file_is_a_user_error_and_leaves_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "regular"
    blocker.write_text("not a directory")
    with pytest.raises(UserError, match=r"regular/x\.txt: .*regular is not a directory"):
        write_text(blocker / "x.txt", "x")
    assert blocker.read_text() == "not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["regular"]


def test_directory_as_target_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "out.json").mkdir()
    with pytest.raises(UserError, match=r"out\.json: is a directory"):
        write_json(tmp_path / "out.json", {"a": 1})
    assert (tmp_path / "out.json").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_temp_file_creation_failure_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # as root, os.access says every directory is writable: the OSError of mkstemp must still
    # become one clear line naming the file
    import tempfile

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(UserError, match=r"x\.txt: cannot write \(Permission denied\)"):
        write_text(tmp_path / "x.txt", "x")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- stale temporaries
def _dead_pid() -> int:
    """A pid no process has: a child that has already exited and been reaped."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temp_files_of_dead_writers_are_removed_by_the_next_write(tmp_path: Path) -> None:
    import socket

    host = socket.gethostname()
    target = tmp_path / "out.h5"
    dead = tmp_path / f".out.h5.{host}-{_dead_pid()}.abc123.h5.tmp"      # kill -9 of a writer
    alive = tmp_path / f".out.h5.{host}-{os.getpid()}.def456.h5.tmp"     # a writer still running
    other_host = tmp_path / f".out.h5.elsewhere-{_dead_pid()}.x1.h5.tmp"  # shared FS: not ours
    other_file = tmp_path / f".other.h5.{host}-{_dead_pid()}.x2.h5.tmp"   # another output's
    for p in (dead, alive, other_host, other_file):
        p.write_bytes(b"x" * 100)
    with atomic_path(target, suffix=".h5") as tmp:
        assert tmp.name.startswith(f".out.h5.{host}-{os.getpid()}.")  # the owner is in the name
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert not dead.exists()
    assert alive.exists() and other_host.exists() and other_file.exists()
