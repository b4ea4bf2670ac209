"""The benchmark scripts outside the package run and report what they say (tiny sizes)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

from helpers import write_split

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_real_anchors_benchmark_times_the_three_feeds_side_by_side(tmp_path, monkeypatch, capsys) -> None:
    write_split(tmp_path / "fm", n=40, train=True)
    monkeypatch.setenv("MLVGM_DATA", str(tmp_path / "fm"))
    out = tmp_path / "r.json"
    argv = ["--batch-size", "8", "--images", "40", "--rounds", "2", "--batches", "1", "--json", str(out)]
    monkeypatch.setattr(sys, "argv", ["real_anchors.py", *argv])
    runpy.run_path(str(BENCHMARKS / "real_anchors.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert "real / pipe = " in printed and "mixed / pipe = " in printed
    import json

    result = json.loads(out.read_text())
    assert set(result["pairs_per_s"]) == {"pipe", "real", "mixed"}
    assert all(v > 0 for v in result["pairs_per_s"].values())
    assert result["command"].endswith("--json " + str(out))
