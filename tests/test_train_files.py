"""What a trainer writes stays in its run folder: links planted there are refused, not followed;
the final model and checkpoints are written atomically."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlvgm_data.apps.train.registry import train

TINY = dict(data="shapes", steps=2, batch_size=4, resolution=32, checkpoint_every=1)


@pytest.mark.parametrize("name", ["log.jsonl", "checkpoint.pt", "samples.png", "model.pt", "summary.json"])
def test_a_symlink_planted_in_the_run_folder_is_refused(tmp_path: Path, name: str) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    out = tmp_path / "run"
    out.mkdir()
    (out / name).symlink_to(outside)
    with pytest.raises(ValueError, match="symlink"):
        train("hvae", out=str(out), **TINY)
    assert outside.read_text() == "keep"


def test_a_kill_during_the_final_save_keeps_the_previous_model(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train("hvae", out=str(out), **TINY)
    before = (out / "model.pt").read_bytes()
    # Kill the process while it writes model.pt again: the old file must survive whole.
    code = f"""
import os, torch
from mlvgm_data import _io
real = torch.save
def dying_save(obj, f, *a, **k):
    real(obj, f, *a, **k)
    where = os.readlink(f"/proc/self/fd/{{f.fileno()}}") if hasattr(f, "fileno") else str(f)
    if ".model.pt." in where:  # the temporary file of the final model
        os.kill(os.getpid(), 9)
torch.save = dying_save
from mlvgm_data.apps.train.registry import train
train("hvae", out={str(out)!r}, data="shapes", steps=3, batch_size=4, resolution=32, checkpoint_every=1)
"""
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    assert (out / "model.pt").read_bytes() == before
    train("hvae", out=str(out), **TINY)  # the next save removes the dead writer's temporary file
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
