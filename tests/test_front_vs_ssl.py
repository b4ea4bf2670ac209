"""scripts/front_vs_ssl.py: demo runs matched to view-quality candidates by policy, rank correlations."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "front_vs_ssl.py"


@pytest.fixture(scope="module")
def script() -> dict:
    return runpy.run_path(str(SCRIPT))


def _policy(sigma: float) -> dict:
    return {"anchor_trunc": None, "include_anchor": True,
            "rules": {"z": {"kind": "perturb", "sigma": sigma, "mu": 0.0, "trunc": None}}}


def test_runs_are_matched_by_policy_and_correlated(script, tmp_path: Path) -> None:
    report = {"front": ["s1", "s3"], "policies": {
        f"s{i}": {"policy": _policy(i / 10), "consistency": {"value": 1 - i / 10}, "pixel_change": i / 100}
        for i in range(1, 5)}}
    runs = {f"policy:s{i}": {"probe_accuracy": 0.8 + i / 100, "few_label_accuracy": None, "probe_accuracy_seeds": [0]}
            for i in range(1, 4)}
    runs["real_anchored"] = {"probe_accuracy": 0.5, "probe_accuracy_seeds": [0]}
    demo = {"policies": {**{k: _policy(int(k[-1]) / 10) for k in runs if k.startswith("policy:")},
                         "real_anchored": _policy(0.4)}, "runs": runs}
    (tmp_path / "demo.json").write_text(json.dumps(demo))
    (tmp_path / "vq.json").write_text(json.dumps(report))
    result = script["main"](["--demo", str(tmp_path / "demo.json"), "--view-quality", str(tmp_path / "vq.json"),
                             "--out", str(tmp_path / "out")])
    assert [p["candidate"] for p in result["points"]] == ["s1", "s2", "s3"]  # real-anchored views left out
    assert result["spearman"]["probe_accuracy vs pixel_change"] == pytest.approx(1.0)
    assert result["spearman"]["probe_accuracy vs consistency"] == pytest.approx(-1.0)
    assert result["spearman"]["few_label_accuracy vs consistency"] is None
    assert (tmp_path / "out.png").stat().st_size > 0 and json.loads((tmp_path / "out.json").read_text())["points"]
    # s4 below the floor (consistency 0.6 < 0.7) and at the worst accuracy: the correlation above the
    # floor leaves it out; a candidate trained by two demos counts once, with its run of more seeds
    runs = {"policy:s4": {"probe_accuracy": 0.5, "probe_accuracy_seeds": [0]},
            "policy:s1": {"probe_accuracy": 0.9, "probe_sd": 0.01, "probe_accuracy_seeds": [0, 1, 2]}}
    (tmp_path / "more.json").write_text(json.dumps({"policies": {"policy:s4": _policy(0.4), "policy:s1": _policy(0.1)},
                                                     "runs": runs}))
    result = script["main"](["--demo", str(tmp_path / "demo.json"), "--demo", str(tmp_path / "more.json"),
                             "--view-quality", str(tmp_path / "vq.json"), "--out", str(tmp_path / "out")])
    assert [(p["candidate"], p["seeds"]) for p in result["points"]] == [("s1", 3), ("s2", 1), ("s3", 1), ("s4", 1)]
    assert result["floor"] == 0.7 and result["spearman"]["probe_accuracy vs consistency"] == pytest.approx(0.8)
    assert result["spearman_above_floor"]["probe_accuracy vs consistency"] == pytest.approx(0.5)


def test_spearman_handles_ties_and_too_few_points(script) -> None:
    assert script["spearman"]([1, 2], [3, 4]) is None
    assert script["spearman"]([1, 1, 1], [1, 2, 3]) is None
    assert script["spearman"]([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)
