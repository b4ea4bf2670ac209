"""The mlvgm-data CLI: every subcommand has --help; views writes its grid and JSON; errors are clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mlvgm_data.apps.cli import COMMANDS, main
from mlvgm_data.generators import save_generator
from mlvgm_data.models.hvae import build, make_config


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert f"mlvgm-data {command}" in out and "--json" in out


@pytest.fixture(scope="module")
def generator_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    config = make_config()
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("gen") / "hvae"
    save_generator(build(config), path, "hvae", config)
    return str(path)


def test_views_command_writes_grid_and_json(generator_path: str, tmp_path: Path) -> None:
    out, report = tmp_path / "grid.png", tmp_path / "views.json"
    assert main(["views", generator_path, "--policy", "sigma=0.5", "--anchors", "3", "--num-views", "4",
                 "--out", str(out), "--json", str(report)]) == 0
    doc = json.loads(report.read_text())
    from PIL import Image

    width, height = Image.open(out).size
    assert width > height > 0 and doc["grid"] == str(out)
    assert set(doc["latent_distance"]) == {g[0] for g in make_config()["groups"]}
    assert all(d > 0 for d in doc["latent_distance"].values()) and doc["pixel_rms"] > 0


def test_cli_reports_bad_input_cleanly(generator_path: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["views", generator_path, "--policy", "{not json", "--out", str(tmp_path / "g.png")]) == 2
    assert "--policy" in capsys.readouterr().err
    assert main(["views", "builtin:nope"]) == 2
    assert "unknown built-in generator" in capsys.readouterr().err
    assert main(["views", generator_path]) == 2  # an untrained generator stores no recommended policy
    assert "recommended policy" in capsys.readouterr().err


def test_failures_are_one_line_before_any_work(generator_path: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    grid = tmp_path / "g.png"
    cases = [
        (["--json", str(tmp_path / "missing" / "x.json")], "--json"),
        (["--device", "bogus"], "is not a device"),
        (["--device", "cuda"], "CUDA is not available" if not torch.cuda.is_available() else None),
    ]
    for extra, match in cases:
        if match is None:
            continue
        code = main(["views", generator_path, "--policy", "sigma=0.5", "--out", str(grid), *extra])
        err = capsys.readouterr().err
        assert code == 2 and match in err and err.count("\n") == 1 and "Traceback" not in err
        assert not grid.exists()  # refused before the work


def test_debug_shows_the_traceback_and_version_prints(generator_path: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    assert main(["views", generator_path, "--debug", "--device", "bogus"]) == 2
    assert "Traceback" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and "mlvgm-data 0." in capsys.readouterr().out


@pytest.mark.parametrize("extra, match", [
    (["--policy", "recomended"], "is not 'recommended', 'sigma=S'"),
    (["--policy", "sigma=abc"], "sigma=S needs a number S, got 'abc'"),
    (["--anchors", "0"], "--anchors must be in"),
    (["--num-views", "0"], "--num-views must be in"),
])
def test_views_arguments_are_named(generator_path: str, tmp_path: Path, extra: list[str], match: str,
                                   capsys: pytest.CaptureFixture) -> None:
    assert main(["views", generator_path, "--out", str(tmp_path / "g.png"), *extra]) == 2
    assert match in capsys.readouterr().err
