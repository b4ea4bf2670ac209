"""The developer script behind the README's Skip-VAE / VMI-VAE tables, on two tiny real runs."""

from __future__ import annotations

import json
import runpy
import statistics
import sys
from pathlib import Path

import pytest
import torch
from helpers import write_split

from mlvgm_data.apps.classifiers import fashion as fq
from mlvgm_data.apps.cli import main
from mlvgm_data.data import fashion_mnist as fm

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--channels", "8,8,8", "--blocks", "1,0,0", "--enc-channels", "4,4,8,8", "--groups", "z1:4:1,z2:2:4",
        "--kl-weights", "1,1", "--batch-size", "4", "--eval-images", "5", "--threads", "1", "--steps", "3",
        "--data", "fashion-mnist", "--probe"]


def compare(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["compare_runs.py", *argv])
    runpy.run_path(str(ROOT / "scripts" / "compare_runs.py"), run_name="__main__")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two seeds of a tiny HVAE on tiny Fashion-MNIST files (12 train, 5 test images), each with
    its MI report and encoder metrics: what the README's comparison runs write."""
    data = tmp_path_factory.mktemp("data")
    write_split(data, n=12, train=True, seed=1)
    write_split(data, n=5, train=False, seed=2)
    out = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(fm.ENV_VAR, str(data))
        mp.setattr(fm, "DEBIAN_PATH", data / "no-debian")
        fq._real_features.cache_clear()
        for seed in (0, 1):
            run = tmp_path_factory.mktemp(f"seed{seed}") / "run"
            assert main(["train", "--model", "hvae", *TINY, "--seed", str(seed), "--out", str(run)]) == 0
            assert main(["mi", str(run), "--samples", "128", "--steps", "3", "--no-progress", "--encoder-data",
                         "fashion-mnist", "--encoder-samples", "12", "--json", str(run / "mi.json")]) == 0
            out.append(run)
        fq._real_features.cache_clear()
    return out


def test_table_gives_mean_and_sd_over_the_runs_of_each_variant(runs, tmp_path, monkeypatch, capsys) -> None:
    capsys.readouterr()
    compare([f"both={runs[0]},{runs[1]}", f"one={runs[0]}", "--pixel-samples", "16", "--json",
             str(tmp_path / "cmp.json")], monkeypatch)
    text = capsys.readouterr().out
    assert torch.is_grad_enabled()  # the script leaves the process's autograd mode alone
    doc = json.loads((tmp_path / "cmp.json").read_text())
    elbos = [json.loads((r / "summary.json").read_text())["elbo"] for r in runs]
    row = next(line for line in text.splitlines() if line.startswith("| held-out ELBO"))
    assert row.split(" | ")[1:] == [f"{statistics.mean(elbos):.1f} ± {statistics.stdev(elbos):.1f}",
                                    f"{elbos[0]:.1f} |"]
    figures = doc["both"][str(runs[0])]
    enc = json.loads((runs[0] / "mi.json").read_text())["encoder"]
    assert figures["active/z1"] == enc["groups"]["z1"]["active"] and figures["iq/all"] == enc["total"]["mi"]
    assert figures["pixel/z1"] > 0 and figures["pixel/z2"] >= 0
    assert {"kl/z1", "kl/z2", "probe/all", "ba/z1", "ba/z2"} <= set(figures)
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert ("confidence" in figures) == ("quality" in summary)
    if "quality" in summary:
        assert figures["frechet"] == summary["quality"]["frechet_distance"] and "| samples: Fréchet" in text
    for label in ("KL z2", "I_q(x; z1)", "active units all", "linear probe on posterior means of z1",
                  "BA bound on I(z2; x)", "pixel MSE when z1 is resampled"):
        assert f"| {label}" in text


def test_a_run_without_its_mi_report_is_a_clear_error(runs, tmp_path, monkeypatch) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "summary.json").write_text((runs[0] / "summary.json").read_text())
    with pytest.raises(SystemExit, match="mi.json is missing"):
        compare([f"x={bare}"], monkeypatch)
    with pytest.raises(SystemExit):
        compare(["no-equals-sign"], monkeypatch)
