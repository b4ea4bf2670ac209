"""The examples run: DDP under torchrun with two CPU processes (gloo), and the SimCLR scripts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mlvgm_data.generators import save_generator
from mlvgm_data.models.hvae import build, make_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def untrained_generator(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """An untrained HVAE of the default architecture, saved, and a policy resampling its last group."""
    config = make_config()
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("gen") / "hvae"
    save_generator(build(config), path, "hvae", config)
    return str(path), json.dumps({"rules": {config["groups"][-1][0]: {"kind": "resample"}}})


@pytest.mark.parametrize("workers", [0, 2])
def test_ddp_example_under_torchrun(untrained_generator: tuple[str, str], tmp_path: Path, workers: int) -> None:
    """The example builds its pipe before init_process_group: ranks must still differ."""
    generator, policy = untrained_generator
    report = tmp_path / "ddp.json"
    # --standalone: torchrun picks a free local port (a fixed one collides with other jobs)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "examples" / "ddp_simclr.py"), "--generator", generator, "--policy", policy,
           "--batch-size", "16", "--steps", "3", "--workers", str(workers), "--report", str(report)]
    run = subprocess.run(cmd, timeout=300, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    summary = json.loads(report.read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 3
    assert summary["anchors"] == 2 * 3 * 16 == summary["unique_anchors"]  # ranks never share an anchor
    assert summary["weights_in_sync"]
    assert all(torch.isfinite(torch.tensor(summary["losses"])))


@pytest.mark.parametrize("script", ["simclr_real.py", "simclr_generated.py"])
def test_simclr_examples_run(script: str) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--steps", "2", "--batch-size", "8"],
                         check=True, timeout=300, capture_output=True, text=True).stdout
    losses = [float(line.rsplit(" ", 1)[1]) for line in out.splitlines() if line.startswith("step ")]
    assert len(losses) == 1 and torch.isfinite(torch.tensor(losses)).all()
