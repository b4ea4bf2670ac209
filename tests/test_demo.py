"""The demo end to end at tiny sizes: artifacts written, JSON complete, accuracies in [0, 1]."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mlvgm_data.demo import RUNS, DemoConfig, run_demo
from mlvgm_data.generators import save_generator
from mlvgm_data.models.hvae import build, make_config


def test_demo_smoke(tmp_path: Path) -> None:
    config = make_config()
    torch.manual_seed(0)
    generator = tmp_path / "hvae"
    save_generator(build(config), generator, "hvae", config)
    cfg = DemoConfig.quick_config(generator=str(generator), out=str(tmp_path / "out"), steps=3, batch_size=16,
                                  seeds=2, real_train=64, probe_train=120, probe_test=60, mi_samples=128,
                                  mi_steps=3, mi_budget=None, width=8, progress=False)
    doc = run_demo(cfg, log=lambda _: None)
    out = tmp_path / "out"
    for name in ("demo_report.json", "demo_report.md", "mi.png", "mi_report.json", "views_recommended.png",
                 "views_baseline.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "demo_report.json").read_text())
    assert set(saved["runs"]) == set(RUNS)
    for name, run in saved["runs"].items():
        assert 0.0 <= run["probe_accuracy"] <= 1.0
        assert len(run["probe_accuracy_seeds"]) == 2
        assert abs(run["probe_accuracy"] - sum(run["probe_accuracy_seeds"]) / 2) < 1e-9
        assert (run["pairs_per_s"] is None) == (name == "random")
    assert saved["policy"]["rules"] and saved["config"]["steps"] == 3
    assert doc["runs"]["real"]["probe_accuracy"] == saved["runs"]["real"]["probe_accuracy"]
