"""File writes: atomic, never through a symlink, never outside the output folder, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlvgm_data._io import atomic_writer, check_output_path, write_bytes, write_text


def test_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_text(target, "one")
    write_text(target, "two")
    assert target.read_text() == "two" and os.listdir(tmp_path) == ["a.json"]
    assert oct(target.stat().st_mode & 0o777) != "0o600"  # not mkstemp's private mode


def test_a_failure_while_writing_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as f:
            f.write(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.pt"]


def test_a_kill_during_the_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    write_bytes(target, b"old")
    code = (f"import os, sys\nfrom mlvgm_data._io import atomic_writer\n"
            f"with atomic_writer({str(target)!r}) as f:\n    f.write(b'new' * 1000)\n    f.flush()\n"
            f"    os.kill(os.getpid(), 9)\n")
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    assert target.read_bytes() == b"old"
    [left] = [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # the dead writer's temporary file
    write_bytes(target, b"next")  # the next write removes it
    assert target.read_bytes() == b"next" and os.listdir(tmp_path) == ["model.pt"], left


def test_concurrent_writers_keep_each_others_temporary_file(tmp_path: Path) -> None:
    # Two ranks writing the same manifest at once (torchrun): the second must not take the first's
    # live temporary file for a dead writer's and remove it under it.
    target = tmp_path / "manifest.json"
    code = (f"import sys\nfrom mlvgm_data._io import atomic_writer\n"
            f"with atomic_writer({str(target)!r}, mode='w') as f:\n    f.write('first')\n"
            f"    print('open', flush=True)\n    sys.stdin.readline()\n")
    first = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline() == "open\n"
        write_text(target, "second")
        assert len([p for p in os.listdir(tmp_path) if p.endswith(".tmp")]) == 1
    finally:
        first.communicate("\n", timeout=60)
    assert first.returncode == 0 and target.read_text() == "first" and os.listdir(tmp_path) == ["manifest.json"]


def test_symlinks_and_escapes_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").symlink_to(outside)
    with pytest.raises(ValueError, match="symlink"):
        write_text(out / "summary.json", "x", "summary", root=out)
    assert outside.read_text() == "keep"
    (out / "sub").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(ValueError, match="leaves the output folder"):
        write_text(out / "sub" / "x.json", "x", "summary", root=out)


@pytest.mark.parametrize("make, match", [
    (lambda p: p / "missing" / "x.json", "does not exist"),
    (lambda p: p, "is a folder"),
])
def test_bad_targets_name_the_argument(tmp_path: Path, make, match: str) -> None:
    with pytest.raises(ValueError, match=f"--json .*{match}"):
        check_output_path(make(tmp_path), "--json")
