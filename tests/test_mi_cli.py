"""``mlvgm-data mi``: table, chart, JSON, recommended policy, --save-policy, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mlvgm_data import LatentGroup, LatentSpec, ViewPolicy
from mlvgm_data.apps.cli import build_parser, main
from mlvgm_data.generators import MLVGM, recommended_policy
from mlvgm_data.generators.registry import register_family, save_generator

pytestmark = pytest.mark.usefixtures("one_thread")


class Stripes(MLVGM):
    """An 8×8 image: ``freq`` sets stripe phases, ``tint`` the colour, ``unused`` nothing."""

    def __init__(self, config: dict | None = None) -> None:
        super().__init__()
        self.latent_spec = LatentSpec(
            [LatentGroup("freq", (2,)), LatentGroup("tint", (3,)), LatentGroup("unused", (2,))]
        )
        self.image_shape = (3, 8, 8)
        self.scale = torch.nn.Parameter(torch.ones(1))

    def _decode(self, latents, classes):
        grid = torch.linspace(0, 3.14, 8)
        a, b = latents["freq"].unbind(1)
        pattern = torch.sin(grid[None, :, None] * (1 + a[:, None, None]) + grid[None, None, :] * b[:, None, None])
        return torch.sigmoid(self.scale * pattern[:, None] * torch.tanh(latents["tint"])[:, :, None, None])

    def encode(self, x):
        """A crude encoder following the protocol: posterior means from channel means."""
        zeros = torch.zeros(x.shape[0], 2)
        tint = 4 * (x.mean((2, 3)) - 0.5)
        return {"freq": (zeros, zeros), "tint": (tint, torch.full_like(tint, -2.0)), "unused": (zeros, zeros)}


class PlainStripes(Stripes):
    encode = None  # a generator without an encoder


register_family("mi-test-stripes", Stripes)
register_family("mi-test-plain-stripes", PlainStripes)


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "stripes"
    save_generator(Stripes(), path, "mi-test-stripes", {})
    return path


def test_mi_command_prints_table_writes_chart_json_and_policy(saved: Path, tmp_path: Path, capsys) -> None:
    out_json, out_png = tmp_path / "out.json", tmp_path / "mi.png"
    code = main(["mi", str(saved), "--samples", "256", "--steps", "30", "--plot", str(out_png),
                 "--json", str(out_json), "--no-progress", "--save-policy"])
    assert code == 0
    text = capsys.readouterr().out
    assert "| freq |" in text and "| unused |" in text and "Recommended policy" in text
    doc = json.loads(out_json.read_text())
    assert doc["underused"] == ["unused"]
    assert set(doc["groups"]) == {"freq", "tint", "unused"}
    policy = ViewPolicy.from_dict(doc["recommended"]["policy"])
    assert policy == recommended_policy(saved)  # read from the policy file beside the generator
    stored = json.loads(saved.with_name("stripes.policy.json").read_text())
    assert stored["source"]["command"].startswith(f"mlvgm-data mi {saved} --samples 256")
    assert stored["mi"]["groups"].keys() == {"freq", "tint", "unused"}
    assert "policy" not in json.loads(saved.with_suffix(".json").read_text())  # the generator's own file is untouched
    assert out_png.read_bytes()[:4] == b"\x89PNG"
    assert doc["plot"] == str(out_png)


def test_mi_command_groups_and_target(saved: Path, capsys) -> None:
    assert main(["mi", str(saved), "--groups", "freq,tint", "--samples", "128", "--steps", "10",
                 "--target", "0", "--no-progress", "--json", "-"]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out[out.index("{\n  \"candidates\""):])
    assert doc["settings"]["groups"] == ["freq", "tint"]
    values = [c["mi"]["value"] for c in doc["candidates"]]
    assert doc["recommended"]["mi"]["value"] == min(values, key=abs)


def test_mi_command_encoder_metrics(saved: Path, capsys) -> None:
    assert main(["mi", str(saved), "--samples", "128", "--steps", "5", "--no-progress", "--encoder-data", "shapes",
                 "--encoder-samples", "300", "--json", "-"]) == 0
    out = capsys.readouterr().out
    assert "Encoder metrics on 300 images (shapes)" in out
    doc = json.loads(out[out.index("{\n  \"candidates\""):])
    enc = doc["encoder"]
    assert enc["n"] == 300 and enc["data"] == "shapes"
    assert abs(enc["groups"]["freq"]["mi"]) < 1e-12 and enc["groups"]["freq"]["active"] == 0
    assert enc["groups"]["tint"]["mi"] > 0.5 and enc["groups"]["tint"]["active"] == 3


def test_save_policy_on_a_builtin_never_writes_into_the_package(tmp_path: Path, monkeypatch, capsys) -> None:
    import hashlib

    import mlvgm_data
    from mlvgm_data.generators.registry import stored_mi_report, user_policy_path

    def package_digest() -> str:
        root = Path(mlvgm_data.__file__).parent
        h = hashlib.sha256()
        for f in sorted(root.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(f.read_bytes())
        return h.hexdigest()

    monkeypatch.setenv("MLVGM_CONFIG", str(tmp_path / "config"))
    shipped = recommended_policy("builtin:shapes")
    before = package_digest()
    assert main(["mi", "builtin:shapes", "--samples", "128", "--steps", "2", "--budget", "30", "--no-progress",
                 "--groups", "z1,z3", "--save-policy", "--force"]) == 0
    assert package_digest() == before
    path = user_policy_path("builtin:shapes")
    assert path == tmp_path / "config" / "policies" / "shapes.json" and path.is_file()
    with pytest.warns(UserWarning, match="comes from your file"):
        assert recommended_policy("builtin:shapes") == ViewPolicy.from_dict(json.loads(path.read_text())["policy"])
    assert stored_mi_report("builtin:shapes")["settings"]["groups"] == ["z1", "z3"]
    path.unlink()
    assert recommended_policy("builtin:shapes") == shipped


def test_outputs_and_matplotlib_are_checked_before_the_analysis(saved: Path, tmp_path: Path, monkeypatch,
                                                                capsys) -> None:
    import sys

    for extra, match in [(["--plot", str(tmp_path / "missing" / "mi.png")], "--plot"),
                         (["--save-policy", str(tmp_path / "nowhere" / "p.json")], "--save-policy"),
                         (["--budget", "-1"], "--budget"), (["--steps", "0"], "--steps")]:
        assert main(["mi", str(saved), "--no-progress", *extra]) == 2
        captured = capsys.readouterr()
        assert match in captured.err and "| freq |" not in captured.out
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["mi", str(saved), "--no-progress", "--plot", str(tmp_path / "mi.png")]) == 2
    assert "pip install matplotlib" in capsys.readouterr().err


def test_mi_command_errors(saved: Path, capsys) -> None:
    assert main(["mi", str(saved), "--groups", "nope", "--no-progress"]) == 2
    assert "unknown latent group 'nope'" in capsys.readouterr().err
    assert main(["mi", str(saved.parent / "missing"), "--no-progress"]) == 2
    assert main(["mi", str(saved), "--samples", "10", "--no-progress"]) == 2
    assert "samples must be" in capsys.readouterr().err
    assert main(["mi", str(saved), "--samples", "128", "--steps", "2", "--no-progress",
                 "--encoder-data", str(saved.parent / "no-images-here")]) == 2
    err = capsys.readouterr()
    assert "image folder" in err.err and "| freq |" not in err.out  # checked before the analysis runs
    plain = saved.parent / "plain"
    save_generator(PlainStripes(), plain, "mi-test-plain-stripes", {})
    assert main(["mi", str(plain), "--encoder-data", "shapes", "--no-progress"]) == 2
    assert "has no encode(x)" in capsys.readouterr().err


def test_mi_help_lists_the_options() -> None:
    help_text = build_parser()._subparsers._group_actions[0].choices["mi"].format_help()
    for flag in ("--groups", "--budget", "--json", "--plot", "--device", "--target", "--save-policy"):
        assert flag in help_text
