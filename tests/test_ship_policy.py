"""The developer command that ships a measured policy with a built-in generator."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "ship_policy.py"), *args], capture_output=True,
                          text=True, cwd=ROOT)


def test_ship_policy_writes_the_asset_config_and_report(tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    assets.mkdir()
    shutil.copy(ROOT / "mlvgm_data" / "assets" / "shapes_hvae.json", assets)
    config = assets / "shapes_hvae.json"
    policy = {"rules": {"z1": {"kind": "perturb", "sigma": 0.7, "mu": 0.0, "trunc": None}}, "anchor_trunc": None,
              "include_anchor": True}
    doc = {"format": "mlvgm-data/policy/1", "generator": "builtin:shapes", "policy": policy,
           "source": {"command": "test"}, "mi": {"format": "x"}}
    (tmp_path / "p.json").write_text(json.dumps(doc))
    done = run("shapes", str(tmp_path / "p.json"), "--assets", str(assets))
    assert done.returncode == 0, done.stderr
    shipped = json.loads(config.read_text())
    assert shipped["policy"] == policy and shipped["policy_source"] == {"command": "test"}
    assert json.loads((assets / "shapes_hvae.mi.json").read_text()) == {"format": "x"}


@pytest.mark.parametrize("generator, match", [("builtin:shapes-stylegan", "measured for"), (None, "policy file")])
def test_ship_policy_refuses_a_policy_of_another_generator(tmp_path: Path, generator, match: str) -> None:
    doc = {"format": "mlvgm-data/policy/1", "generator": generator, "policy": {}, "source": {}}
    if generator is None:
        doc = {"something": "else"}
    (tmp_path / "p.json").write_text(json.dumps(doc))
    done = run("shapes", str(tmp_path / "p.json"), "--assets", str(tmp_path))
    assert done.returncode != 0 and match in done.stderr
