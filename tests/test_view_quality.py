"""The view-quality report (mlvgm_data.mi.view_quality): its figures on a generator whose behaviour
is known, the Pareto front and the recommendation on known points, the built-in judges, the
shipped reports, JSON and the bad inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from mlvgm_data import LatentGroup, LatentSpec
from mlvgm_data.generators import recommended_policy
from mlvgm_data.generators.base import MLVGM
from mlvgm_data.mi import (
    PolicyQuality,
    ViewQualityReport,
    default_policies,
    load_judge,
    recommend_policy,
    view_quality,
)
from mlvgm_data.mi.quality_report import (
    DEFAULT_MIN_CONSISTENCY,
    Interval,
    pareto_front,
    wilson,
)
from mlvgm_data.policy import Keep, Perturb, Resample, ViewPolicy

DOCS = Path(__file__).resolve().parent.parent / "docs"


class SplitGenerator(MLVGM):
    """1×8×8 images: the left half is white when the ``label`` group is positive, else black; the
    right half's four columns show the ``style`` group. A judge that reads the left half ignores
    style and sees its label flip whenever ``label`` changes sign."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_spec = LatentSpec([LatentGroup("label", (1,)), LatentGroup("style", (4,))])
        self.image_shape = (1, 8, 8)

    def _decode(self, latents, classes):
        n = latents["label"].shape[0]
        x = torch.zeros(n, 1, 8, 8)
        x[:, 0, :, :4] = (latents["label"][:, 0] > 0).float()[:, None, None]
        x[:, 0, :, 4:] = torch.sigmoid(2 * latents["style"])[:, None, :]
        return x


def left_half_judge(images: torch.Tensor) -> torch.Tensor:
    """Logits [N, 2]: class 1 when the left half is bright."""
    m = images[:, 0, :, :4].mean(dim=(1, 2)) - 0.5
    return torch.stack([-10 * m, 10 * m], dim=1)


class FeatureJudge(nn.Module):
    """The same judge as a module that exposes features (the left and right halves' means)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, 0, :, :4].mean(dim=(1, 2)), x[:, 0, :, 4:].mean(dim=(1, 2))], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.features(x)[:, 0] - 0.5
        return torch.stack([-self.scale * m, self.scale * m], dim=1)


POLICIES = {"keep": ViewPolicy({}), "style": ViewPolicy({"style": Resample()}),
            "label": ViewPolicy({"label": Resample()}), "label σ=0.1": ViewPolicy({"label": Perturb(0.1)})}


@pytest.fixture(scope="module")
def report() -> ViewQualityReport:
    return view_quality(SplitGenerator(), POLICIES, left_half_judge, samples=512, mi=False, progress=False)


def test_figures_on_a_generator_with_known_behaviour(report) -> None:
    d = report.to_dict()["policies"]
    # Style is invisible to the judge: every label kept, pixels moved, the judge's output unchanged.
    assert d["style"]["consistency"]["value"] == 1.0
    assert d["style"]["pixel_change"]["value"] > 0.1
    assert d["style"]["feature_change"]["value"] == pytest.approx(0.0, abs=1e-9)
    # A resampled label group keeps its sign half the time: consistency at chance (2 classes).
    c = d["label"]["consistency"]
    assert 0.4 < c["value"] < 0.6 and c["low"] < c["value"] < c["high"]
    assert d["label"]["feature_change"]["value"] == pytest.approx(2 * (1 - c["value"]), abs=1e-6)  # cos = −1 per flip
    # Keeping everything changes nothing.
    assert d["keep"]["consistency"]["value"] == 1.0 and d["keep"]["pixel_change"]["value"] == 0.0
    # A small perturbation flips only labels near zero: between the two.
    assert 0.85 < d["label σ=0.1"]["consistency"]["value"] < 1.0
    assert d["style"]["image_mi"] is None and report.settings["mi"] is None
    assert report.settings["feature_source"].startswith("logits")


def test_each_view_is_paired_with_its_own_anchor(report) -> None:
    # "label" keeps style: its pixel change is the flipped left halves alone (RMS √½ per flipped
    # pair), which holds only if every view is compared with the anchor it was made from.
    flips = 1 - report.policies["label"].consistency.value
    assert report.policies["label"].pixel_change.value == pytest.approx(math.sqrt(0.5) * flips, rel=1e-6)


def test_recommendation_is_the_group_the_judge_ignores(report) -> None:
    best = report.recommendation()
    assert best.name == "style" and best.chosen_with == "labelled judge"
    front = report.front()
    assert "style" in front and "keep" not in front and "label σ=0.1" not in front  # both beaten by style
    assert report.recommend_policy() == POLICIES["style"]


def test_features_from_the_judge_and_mi() -> None:
    rep = view_quality(SplitGenerator(), {"style": POLICIES["style"], "label": POLICIES["label"]}, FeatureJudge(),
                       samples=128, mi={"steps": 3}, progress=False)
    assert rep.settings["feature_source"] == "judge.features"
    # Under the judge's features (left mean, right mean) style does change the features.
    assert rep.policies["style"].feature_change.value > 0
    mi = rep.to_dict()["policies"]["label"]["image_mi"]
    assert {"value", "low", "high"} <= set(mi) and mi["ceiling"] == pytest.approx(math.log(mi["n_eval"]))


def test_without_a_judge() -> None:
    rep = view_quality(SplitGenerator(), POLICIES, samples=128, mi={"steps": 3}, progress=False)
    d = rep.to_dict()
    assert all(p["consistency"] is None and p["feature_change"] is None for p in d["policies"].values())
    assert any("No judge" in note for note in d["settings"]["notes"])
    assert d["recommended"]["chosen_with"] == "label-free MI"
    values = {n: p["image_mi"]["value"] for n, p in d["policies"].items()}
    target = 0.5 * (min(values.values()) + max(values.values()))
    assert d["recommended"]["name"] == min(values, key=lambda n: abs(values[n] - target))
    with pytest.raises(ValueError, match="min_consistency"):
        rep.recommendation(0.5)


def _known(points: dict[str, tuple[float, float]]) -> ViewQualityReport:
    return ViewQualityReport({n: PolicyQuality(ViewPolicy({"g": Perturb(0.1 * i)}), "given", Interval(c, c, c),
                                               Interval(k, k, k), Interval(c, c, c))
                              for i, (n, (k, c)) in enumerate(points.items())}, {"change": "pixel"})


def test_front_and_recommendation_on_known_points() -> None:
    pts = {"a": (1.0, 0.0), "b": (0.9, 0.1), "c": (0.8, 0.05), "d": (0.7, 0.3), "e": (0.2, 0.5), "f": (0.7, 0.2)}
    assert pareto_front(pts) == ["a", "b", "d", "e"]  # c is beaten by b, f by d
    rep = _known(pts)
    assert rep.recommendation().name == "d"  # the most change at ≥ 70 %
    assert DEFAULT_MIN_CONSISTENCY == 0.7
    assert rep.recommendation(0.85).name == "b"
    assert rep.recommendation(0.0).name == "e"
    fallback = rep.recommendation(1.0)
    assert fallback.name == "a"
    lowest = _known({"x": (0.3, 0.1), "y": (0.5, 0.0)}).recommendation(0.9)
    assert lowest.name == "y" and "no candidate" in lowest.rule
    for floor in (0.0, 0.5, 0.7, 0.85, 0.95):
        assert rep.recommendation(floor).name in rep.front()
    with pytest.raises(ValueError, match="min_consistency"):
        rep.recommendation(1.5)


def test_a_change_larger_by_noise_alone_does_not_cost_consistency() -> None:
    def cand(keep: float, change: float, half: float) -> PolicyQuality:
        return PolicyQuality(ViewPolicy({}), "given", Interval(change, change - half, change + half),
                             Interval(keep, keep, keep))

    rep = ViewQualityReport({"noisy top": cand(0.73, 0.2207, 0.002), "as good": cand(0.75, 0.2205, 0.002),
                             "less change": cand(0.80, 0.2150, 0.002), "low": cand(0.50, 0.30, 0.002)}, {})
    assert rep.recommendation().name == "as good" and "as good" in rep.front()
    # With a tighter interval the larger change is real and wins.
    rep.policies["noisy top"] = cand(0.73, 0.2207, 0.0001)
    assert rep.recommendation().name == "noisy top"


def test_the_recommendation_is_always_on_the_front() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        n = int(torch.randint(1, 12, (), generator=gen))
        keep, change, half = (torch.rand(3, n, generator=gen) * torch.tensor([[1.0], [0.4], [0.05]])).tolist()
        keep = [round(k, 2) for k in keep]  # ties in consistency happen with counted pairs
        rep = ViewQualityReport({f"c{i}": PolicyQuality(ViewPolicy({}), "given",
                                                        Interval(change[i], change[i] - half[i], change[i] + half[i]),
                                                        Interval(keep[i], keep[i], keep[i])) for i in range(n)}, {})
        for floor in (0.0, 0.3, 0.7, 0.95):
            assert rep.recommendation(floor).name in rep.front()


def test_wilson_interval() -> None:
    w = wilson(50, 100)
    assert w.value == 0.5 and w.low == pytest.approx(0.4038, abs=1e-4) and w.high == pytest.approx(0.5962, abs=1e-4)
    assert wilson(10, 10).high == 1.0 and wilson(10, 10).low < 1.0


def test_json_round_trip_markdown_and_plot(report, tmp_path) -> None:
    path = report.to_json(tmp_path / "vq.json")
    back = ViewQualityReport.from_json(path)
    assert back.to_dict() == report.to_dict() == json.loads(path.read_text())
    md = report.to_markdown()
    assert "| 2 | style | given | 1.000 [" in md and "Recommended (labelled judge): **style**" in md
    pytest.importorskip("matplotlib")
    png = report.plot(tmp_path / "vq.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="view-quality report"):
        ViewQualityReport.from_dict({"format": "other"})


def test_the_candidates_order_survives_a_json_writer_that_sorts_keys(report) -> None:
    # The CLI's --json sorts keys: the table's numbers must still be the chart's (the candidates' order).
    names = list(report.policies)
    assert names != sorted(names)
    back = ViewQualityReport.from_dict(json.loads(json.dumps(report.to_dict(), sort_keys=True)))
    assert list(back.policies) == names and back.to_markdown() == report.to_markdown()
    doc = report.to_dict()
    with pytest.raises(ValueError, match="'order' does not list its policies"):
        ViewQualityReport.from_dict({**doc, "order": names[:-1]})


def test_plot_without_matplotlib(report, tmp_path, monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match="needs matplotlib"):
        report.plot(tmp_path / "x.png")


def test_builtin_judges() -> None:
    fashion = load_judge("builtin:fashion-classifier")
    assert callable(getattr(fashion, "features", None)) and not fashion.training
    from mlvgm_data.generators.registry import ASSETS

    shapes = load_judge(ASSETS / "shapes_classifier")  # a saved classifier's stem
    assert type(shapes).__name__ == "ShapesClassifier"
    with pytest.raises(ValueError, match="judge 'builtin:nope'.*available"):
        load_judge("builtin:nope")
    with pytest.raises(ValueError, match="judge .*nope/stem"):
        load_judge("/nope/stem")


@pytest.mark.parametrize("generator, judge", [("builtin:fashion", "builtin:fashion-classifier"),
                                              ("builtin:shapes", "builtin:shapes-classifier")])
def test_builtins_recommend_on_their_own_front(generator, judge, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MLVGM_CONFIG", str(tmp_path))  # no user policy file decides the candidates
    rep = view_quality(generator, judge=judge, samples=128, mi=False, progress=False)
    assert len(rep.policies) >= 10
    assert rep.recommendation().name in rep.front()
    assert rep.mi_recommended is not None
    assert rep.policies[rep.mi_recommended].policy == recommended_policy(generator)
    assert rep.settings["conditional"] == (generator == "builtin:shapes")


@pytest.mark.parametrize("name", ["fashion", "shapes"])
def test_shipped_reports(name) -> None:
    rep = ViewQualityReport.from_json(DOCS / f"view_quality_{name}.json")
    doc = json.loads((DOCS / f"view_quality_{name}.json").read_text())
    assert len(rep.policies) >= 10 and rep.settings["samples"] >= 2000
    assert doc["recommended"]["name"] in rep.front() and doc["recommended"] == rep.recommendation().to_dict()
    assert doc["command"] and (DOCS / f"view_quality_{name}.png").is_file()


def test_default_policies_and_label_free_recommendation(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MLVGM_CONFIG", str(tmp_path))
    from mlvgm_data import load_generator

    gen = load_generator("builtin:fashion")
    cands = default_policies(gen, name="builtin:fashion")
    assert "uniform σ=0.2" in cands and "resample every group" in cands and len(cands) >= 10
    assert cands["GenRep: σ=0.2 truncated at 2σ, every group"] == ViewPolicy.uniform(gen.latent_spec,
                                                                                      Perturb(0.2, trunc=2.0))
    chunk = next(p for n, p in cands.items() if n.startswith("mi_ml_gen"))
    assert chunk.rule("z1") == Keep() and chunk.rule("z3") == Perturb(1.0, trunc=2.0)
    assert recommended_policy("builtin:fashion") in cands.values()
    free = recommend_policy("builtin:fashion")
    assert free.chosen_with == "label-free MI" and free.policy == recommended_policy("builtin:fashion")


def test_recommend_policy_with_a_judge() -> None:
    best = recommend_policy(SplitGenerator(), left_half_judge, policies=POLICIES, samples=128, mi=False,
                            progress=False)
    assert best.name == "style" and best.chosen_with == "labelled judge"


# --- bad input ----------------------------------------------------------------------------------

def _vq(**kw):
    args = {"policies": POLICIES, "judge": left_half_judge, "samples": 128, "mi": False, "progress": False}
    return view_quality(SplitGenerator(), **{**args, **kw})


@pytest.mark.parametrize("judge, match", [
    (lambda x: left_half_judge(x)[:, 0], r"judge must return logits of shape \[N, classes\]"),
    (lambda x: left_half_judge(x)[:, :1], r"judge must return logits .* 2 or more classes"),
    (lambda x: left_half_judge(x)[:-1], r"judge must return logits of shape \[N, classes\] for N = 128"),
    (lambda x: left_half_judge(x).tolist(), r"judge must return logits .* got list"),
    (lambda x: left_half_judge(x) * float("nan"), r"judge returned logits that are not finite"),
])
def test_judge_output_not_n_by_classes(judge, match) -> None:
    with pytest.raises(ValueError, match=match):
        _vq(judge=judge)


def test_judge_on_another_device() -> None:
    with pytest.raises(ValueError, match=r"judge's weights are on meta.*cpu"):
        _vq(judge=FeatureJudge().to("meta"))
    with pytest.raises(ValueError, match=r"judge returned its logits on meta"):
        _vq(judge=lambda x: left_half_judge(x).to("meta"))


def test_bad_inputs_named() -> None:
    with pytest.raises(ValueError, match="policies must hold at least one"):
        _vq(policies={})
    with pytest.raises(ValueError, match="policies must hold at least one"):
        _vq(policies=[])
    with pytest.raises(ValueError, match=r"policies\['x'\] names unknown groups \['nope'\]"):
        _vq(policies={"x": ViewPolicy({"nope": Resample()})})
    with pytest.raises(ValueError, match=r"policies\['p0'\] must be a ViewPolicy"):
        _vq(policies=[{"label": Resample()}])
    with pytest.raises(ValueError, match="samples must be an int >= 128"):
        _vq(samples=64)
    with pytest.raises(ValueError, match="judge 'builtin:nope' is not a built-in judge"):
        _vq(judge="builtin:nope")
    with pytest.raises(ValueError, match="judge must be an nn.Module, a callable"):
        _vq(judge=3)
    with pytest.raises(ValueError, match="change must be one of"):
        _vq(judge=None, change="feature")
    with pytest.raises(ValueError, match="mi must be True, False or a dict"):
        _vq(mi={"stepz": 3})
    with pytest.raises(ValueError, match=r"feature_fn must return features of shape \[N, D\]"):
        _vq(feature_fn=lambda x: x[:, 0, 0, 0])
    with pytest.raises(ValueError, match="mi_report measures groups"):
        view_quality(SplitGenerator(), judge=left_half_judge, samples=128, mi=False, progress=False,
                     mi_report=json.loads((Path(__file__).resolve().parent.parent
                                           / "mlvgm_data/assets/fashion_hvae.mi.json").read_text()))


# --- the command line ---------------------------------------------------------------------------

def split_generator() -> SplitGenerator:
    """``module:factory`` for the command line (``test_view_quality:split_generator``)."""
    return SplitGenerator().eval()


def feature_judge() -> FeatureJudge:
    return FeatureJudge().eval()


def test_cli_judge_report(tmp_path, capsys) -> None:
    from mlvgm_data.apps.cli import main

    out_json, out_png = tmp_path / "vq.json", tmp_path / "vq.png"
    code = main(["mi", "test_view_quality:split_generator", "--judge", "test_view_quality:feature_judge",
                 "--samples", "128", "--steps", "3", "--min-consistency", "0.9", "--no-progress",
                 "--json", str(out_json), "--plot", str(out_png)])
    assert code == 0
    text = capsys.readouterr().out
    # Without an MI report the groups rank in latent_spec order: keep label, change style.
    assert "| keep label; resample: style | MI ranking | 1.000 [" in text
    assert "Recommended policy (labelled judge" in text
    doc = json.loads(out_json.read_text())
    rep = ViewQualityReport.from_dict(doc)
    assert doc["recommended"]["name"] == "keep label; resample: style"
    assert doc["recommended"] == rep.recommendation().to_dict()
    assert doc["settings"]["min_consistency"] == 0.9
    assert doc["settings"]["judge"] == "test_view_quality:feature_judge"
    assert doc["command"] == ("mlvgm-data mi test_view_quality:split_generator --judge test_view_quality:feature_judge "
                              f"--samples 128 --steps 3 --seed 0 --min-consistency 0.9 --plot {out_png} "
                              f"--json {out_json}")
    assert doc["plot"] == str(out_png) and out_png.read_bytes()[:4] == b"\x89PNG"
    assert all(p["image_mi"]["steps"] <= 3 for p in doc["policies"].values())


def test_cli_saved_classifier_as_judge(tmp_path, capsys) -> None:
    from mlvgm_data.apps.cli import main
    from mlvgm_data.generators.registry import ASSETS

    out_json = tmp_path / "vq.json"
    code = main(["mi", "builtin:fashion", "--judge", str(ASSETS / "fashion_classifier.pt"), "--samples", "128",
                 "--steps", "2", "--no-progress", "--json", str(out_json)])
    assert code == 0
    settings = json.loads(out_json.read_text())["settings"]
    assert settings["feature_source"] == "judge.features" and settings["classes"] == 10
    assert settings["samples"] == 128 and settings["mi"]["steps"] == 2


@pytest.mark.parametrize("argv, match", [
    (["--judge", "builtin:nope"], "judge 'builtin:nope' is not a built-in judge"),
    (["--judge", "builtin:fashion-classifier", "--save-policy"], "--save-policy do"),
    (["--judge", "builtin:fashion-classifier", "--min-consistency", "2"], "--min-consistency must be in"),
    (["--min-consistency", "0.5"], "--min-consistency need"),
    (["--change", "feature"], "--change need"),
])
def test_cli_bad_judge_arguments(argv, match, capsys) -> None:
    from mlvgm_data.apps.cli import main

    assert main(["mi", "builtin:fashion", "--samples", "128", "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlvgm-data mi: error: ") and match in err and err.count("\n") == 1


class HeadJudge(FeatureJudge):
    """A judge whose ``head`` maps its features to its logits; counts its forward calls."""

    def __init__(self, honest: bool = True) -> None:
        super().__init__()
        self.honest, self.forwards = honest, 0

    def head(self, f: torch.Tensor) -> torch.Tensor:
        m = f[:, 0] - 0.5 if self.honest else f[:, 1]
        return torch.stack([-self.scale * m, self.scale * m], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        return super().forward(x)


@pytest.mark.parametrize("honest", [True, False])
def test_judge_runs_once_when_its_head_gives_the_logits(honest) -> None:
    from mlvgm_data.mi.judges import Judge

    judge = HeadJudge(honest)
    x = SplitGenerator().decode({"label": torch.randn(40, 1), "style": torch.randn(40, 4)})
    logits, feats = Judge(judge, torch.device("cpu"))(x, 10)
    assert torch.allclose(logits, FeatureJudge()(x)) and torch.equal(feats, judge.features(x))
    # An honest head is checked on the first chunk, then trusted; another head is never used.
    assert judge.forwards == (1 if honest else 4)
