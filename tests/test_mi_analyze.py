"""Per-group analysis: a linear-Gaussian generator with analytic MI, a small conv generator with
an ignored and a zeroed-out group, the report's outputs and the measured recommendation."""

from __future__ import annotations

import builtins
import json
import math
from pathlib import Path

import pytest
import torch

from mlvgm_data import LatentGroup, LatentSpec, Perturb, Resample
from mlvgm_data.generators import MLVGM
from mlvgm_data.generators.registry import ASSETS
from mlvgm_data.mi import MIEstimate, MIReport, analyze

pytestmark = pytest.mark.usefixtures("one_thread")


class LinearGaussian(MLVGM):
    """x = Σ_g W_g z_g + s·ε as a [1, 4, 4] image; ε is fresh on every decode (own generator)."""

    def __init__(self, scales: dict[str, float], dims: int = 2, d: int = 16, noise: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.latent_spec = LatentSpec([LatentGroup(n, (dims,)) for n in scales])
        self.weights = {n: s * torch.linalg.qr(torch.randn(d, dims, generator=g))[0] for n, s in scales.items()}
        self.noise, self.d = noise, d
        self.eps = torch.Generator().manual_seed(seed + 1)
        self.image_shape = (1, 4, d // 4)

    def _decode(self, latents, classes):
        n = latents[self.latent_spec.names[0]].shape[0]
        x = sum(latents[k] @ w.T for k, w in self.weights.items())
        x = x + self.noise * torch.randn(n, self.d, generator=self.eps)
        return x.reshape(n, *self.image_shape)

    def truth(self, group: str) -> tuple[float, float]:
        """I(z_g; x) = ½ log det Σ_x − ½ log det Σ_{x|z_g}; I(x; x′) with g resampled from the
        joint Gaussian of (x, x′), whose cross-covariance is Σ_{h≠g} W_h W_hᵀ."""
        w = {k: v.double() for k, v in self.weights.items()}
        eye = torch.eye(self.d, dtype=torch.float64)
        cov = sum(v @ v.T for v in w.values()) + self.noise**2 * eye
        given = cov - w[group] @ w[group].T
        cross = given - self.noise**2 * eye
        joint = torch.cat([torch.cat([cov, cross], 1), torch.cat([cross, cov], 1)], 0)
        latent_mi = float(0.5 * (torch.logdet(cov) - torch.logdet(given)))
        image_mi = float(torch.logdet(cov) - 0.5 * torch.logdet(joint))
        return latent_mi, image_mi


class Blobs(MLVGM):
    """A 16² blob image: position and colour from two vector groups, a texture from a spatial
    group through a transposed conv; ``dead`` is ignored by the decoder."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_spec = LatentSpec([LatentGroup("pos", (2,)), LatentGroup("color", (3,)),
                                       LatentGroup("texture", (1, 4, 4)), LatentGroup("dead", (4,))])
        self.image_shape = (3, 16, 16)
        self.tex = torch.nn.ConvTranspose2d(1, 3, 4, stride=4)
        with torch.no_grad():
            self.tex.weight.copy_(0.3 * torch.randn(self.tex.weight.shape, generator=torch.Generator().manual_seed(0)))
            self.tex.bias.zero_()

    def _decode(self, latents, classes):
        grid = torch.linspace(-1, 1, 16)
        cy, cx = (0.6 * torch.tanh(latents["pos"])).unbind(1)
        d2 = (grid[None, :, None] - cy[:, None, None]) ** 2 + (grid[None, None, :] - cx[:, None, None]) ** 2
        blob = torch.exp(-d2 / 0.1)[:, None] * torch.sigmoid(1.5 * latents["color"])[:, :, None, None]
        return torch.sigmoid(4 * (blob - 0.25) + 0.3 * self.tex(latents["texture"]))


class ZeroGroup(MLVGM):
    """Wraps a generator and multiplies one group by 0 before decoding: the group has no effect."""

    def __init__(self, inner: MLVGM, group: str) -> None:
        super().__init__()
        self.inner, self.group = inner, group
        self.latent_spec = inner.latent_spec
        self.image_shape = inner.image_shape
        self.num_classes = getattr(inner, "num_classes", None)

    def _decode(self, latents, classes):
        latents = dict(latents)
        latents[self.group] = latents[self.group] * 0.0
        return self.inner.decode(latents, classes)


def near(e: MIEstimate, truth: float) -> bool:
    """The interval contains the truth or its nearer end is within 10 % (or 0.05 nats) of it."""
    gap = 0.0 if e.low <= truth <= e.high else min(abs(e.low - truth), abs(e.high - truth))
    return gap <= max(0.1 * abs(truth), 0.05)


@pytest.fixture(scope="module")
def blobs_report() -> MIReport:
    return analyze(Blobs(), samples=512, steps=60, sigmas=(), progress=False)


LINEAR = {"a": 2.0, "b": 1.0, "c": 0.5, "ignored": 0.0}


def test_linear_gaussian_generator_ranking_flags_and_latent_mi() -> None:
    model = LinearGaussian(LINEAR)
    report = analyze(model, samples=4096, steps=200, candidates=False, progress=False)
    assert report.ranking == ["a", "b", "c", "ignored"]
    assert report.impact == ["a", "b", "c", "ignored"]
    assert report.underused == ["ignored"]
    for name in model.latent_spec.names:
        latent, _ = model.truth(name)
        assert near(report.groups[name].latent_mi, latent), (name, latent, str(report.groups[name].latent_mi))
    assert sum(g.fraction for g in report.groups.values()) == pytest.approx(1.0)
    assert report.groups["ignored"].fraction == 0.0
    # The decoder adds fresh noise: its floor is 2·D·σ² = 32 per image pair.
    assert report.settings["pixel_noise_floor"] == pytest.approx(32.0, rel=0.05)


@pytest.mark.slow
def test_linear_gaussian_generator_known_answers() -> None:
    model = LinearGaussian(LINEAR)
    report = analyze(model, samples=8192, steps=300, candidates=False, progress=False)
    assert report.ranking == ["a", "b", "c", "ignored"]
    assert report.underused == ["ignored"]
    for name in model.latent_spec.names:
        latent, image = model.truth(name)
        g = report.groups[name]
        assert near(g.latent_mi, latent), (name, latent, str(g.latent_mi))
        assert near(g.image_mi, image), (name, image, str(g.image_mi))


def test_conv_generator_ignored_group_is_flagged(blobs_report: MIReport) -> None:
    r = blobs_report
    assert r.underused == ["dead"]
    assert r.ranking[-1] == "dead"
    for g in r.groups.values():
        for e in (g.latent_mi, g.image_mi):
            assert math.isfinite(e.value) and e.low <= e.value <= e.high
        assert g.image_mi.value <= g.image_mi.ceiling
    assert r.groups["texture"].dims == 16
    # Resampling the ignored group leaves every pixel where it was.
    assert r.groups["dead"].pixel_change == 0.0
    assert max(g.pixel_change for g in r.groups.values()) == 1.0
    assert r.settings["pixel_noise_floor"] == 0.0


def test_zeroed_group_is_flagged() -> None:
    report = analyze(ZeroGroup(Blobs(), "color"), samples=512, steps=60, candidates=False, progress=False)
    assert set(report.underused) == {"color", "dead"}


SHAPES = ASSETS / "shapes_hvae.pt"


@pytest.mark.slow
@pytest.mark.skipif(not SHAPES.exists(), reason="builtin:shapes asset not trained yet")
def test_builtin_shapes_within_budget_and_zeroed_group_flagged() -> None:
    from mlvgm_data import load_generator

    gen = load_generator("builtin:shapes")
    report = analyze(gen, samples=512, steps=60, budget=120.0, progress=False)
    assert report.settings["budget_s"] == 120.0
    for g in report.groups.values():
        assert math.isfinite(g.latent_mi.value) and math.isfinite(g.image_mi.value)
    assert report.recommend_policy().rules
    victim = report.ranking[0]
    zeroed = analyze(ZeroGroup(gen, victim), samples=512, steps=60, candidates=False, progress=False)
    assert victim in zeroed.underused


def test_recommendation_is_measured_and_follows_the_target(blobs_report: MIReport) -> None:
    r = blobs_report
    cands = r.measured_candidates()
    informative = [n for n in r.impact if n not in r.underused]
    # keep top-k (k = 1, 2), resample the rest (no perturbation sigmas in this fixture)
    assert len(cands) == len(informative) - 1
    for c in cands:
        assert c.kept == tuple(informative[: len(c.kept)]) and len(c.kept) >= 1
        assert isinstance(c.policy.rule("dead"), Resample)
        for g in c.kept:
            assert g not in c.policy.rules
    values = [c.mi.value for c in cands]
    assert r.recommend_policy(target=1e6) == cands[values.index(max(values))].policy
    assert r.recommend_policy(target=-1e6) == cands[values.index(min(values))].policy
    best, target = r.recommendation()
    assert target == pytest.approx(0.5 * (min(values) + max(values)))
    assert abs(best.mi.value - target) == min(abs(v - target) for v in values)
    with pytest.raises(ValueError, match="target must be a finite number"):
        r.recommend_policy(target=float("nan"))


def test_candidates_are_measured_on_demand() -> None:
    report = analyze(LinearGaussian({"a": 2.0, "b": 0.7}), samples=256, steps=20, candidates=False, progress=False)
    assert report.candidates is None
    policy = report.recommend_policy()
    assert isinstance(policy.rule("b"), (Perturb, Resample)) and "a" not in policy.rules
    assert len(report.candidates) == 3


def test_report_outputs(blobs_report: MIReport, tmp_path: Path) -> None:
    md = blobs_report.to_markdown()
    for name in ("pos", "color", "texture", "dead"):
        assert f"| {name} |" in md
    assert "at most 5 % of the largest" in md and "**chosen**" in md and "ceiling log B" in md

    path = blobs_report.to_json(tmp_path / "mi.json")
    doc = json.loads(path.read_text())
    assert doc["underused"] == ["dead"] and doc["recommended"]["policy"]["rules"]
    loaded = MIReport.from_json(path)
    assert loaded.ranking == blobs_report.ranking
    assert loaded.recommend_policy() == blobs_report.recommend_policy()
    assert loaded.groups["pos"].latent_mi == blobs_report.groups["pos"].latent_mi

    png = blobs_report.plot(tmp_path / "mi.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_report_without_candidates_or_matplotlib(blobs_report: MIReport, tmp_path: Path, monkeypatch) -> None:
    doc = blobs_report.to_dict()
    doc["candidates"] = None
    bare = MIReport.from_dict(doc)
    with pytest.raises(ValueError, match="no measured candidate policies"):
        bare.recommend_policy()
    with pytest.raises(ValueError, match="not an MI report"):
        MIReport.from_dict({"groups": {}})
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"pip install 'mlvgm-data\[plot\]'"):
        blobs_report.plot(tmp_path / "x.png")


def test_analysis_is_deterministic_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(99)
    state = torch.get_rng_state()
    runs = [analyze(LinearGaussian({"a": 1.0, "b": 0.5}, seed=3), samples=256, steps=20, progress=False)
            for _ in range(2)]
    for a, b in zip(*(r.groups.values() for r in runs)):
        assert ((a.latent_mi.value, a.image_mi.value, a.image_mi.low)
                == (b.latent_mi.value, b.image_mi.value, b.image_mi.low))
    assert [c.mi.value for c in runs[0].candidates] == [c.mi.value for c in runs[1].candidates]
    assert torch.equal(torch.get_rng_state(), state)


def test_budget_caps_the_critics_and_is_reported() -> None:
    report = analyze(Blobs(), samples=256, steps=100_000, budget=3.0, candidates=False, progress=False)
    assert report.settings["truncated"] is True
    assert all(g.latent_mi.steps < 100_000 and g.image_mi.truncated for g in report.groups.values())
    assert all(math.isfinite(g.image_mi.value) for g in report.groups.values())
    assert "budget 3 s, reached" in report.to_markdown()


def test_group_subset_and_truncated_anchors() -> None:
    report = analyze(Blobs(), groups=["pos", "dead"], samples=256, steps=20, anchor_trunc=1.5,
                     candidates=False, progress=False)
    assert list(report.groups) == ["pos", "dead"]
    assert "truncated to ±1.5" in report.groups["pos"].latent_mi.entropy_source


def test_tied_groups_are_analysed_per_copy() -> None:
    class Tied(MLVGM):
        latent_spec = LatentSpec([LatentGroup("w0", (2,), tie="z"), LatentGroup("w1", (2,), tie="z")])
        image_shape = (1, 2, 2)

        def _decode(self, latents, classes):
            return torch.cat([latents["w0"], 0.0 * latents["w1"]], 1).reshape(-1, 1, 2, 2)

    report = analyze(Tied(), samples=512, steps=60, candidates=False, progress=False)
    assert report.settings["tied_groups_sampled_independently"] is True
    assert report.underused == ["w1"]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"groups": ["nope"]}, "unknown latent group 'nope'"),
        ({"groups": ["pos", "pos"]}, "duplicates"),
        ({"groups": []}, "at least one latent group"),
        ({"samples": 100}, "samples must be an int >= 128"),
        ({"threshold": 1.5}, r"threshold must be in \(0.0, 1.0\]"),
        ({"anchor_trunc": -1.0}, "anchor_trunc"),
        ({"sigmas": (-0.1,)}, "Perturb.sigma"),
        ({"seed": -1}, "seed must be"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        analyze(Blobs(), progress=False, **kwargs)


def test_not_a_generator() -> None:
    with pytest.raises(ValueError, match="must be an MLVGM"):
        analyze(torch.nn.Linear(2, 2))


def test_decoder_returning_nan_is_reported() -> None:
    class Broken(Blobs):
        def _decode(self, latents, classes):
            return super()._decode(latents, classes) * float("nan")

    with pytest.raises(RuntimeError, match="non-finite"):
        analyze(Broken(), samples=128, steps=5, progress=False)


def test_blobs_fixture_uses_texture_and_ignores_dead() -> None:
    model = Blobs()
    lat = {g.name: torch.zeros(2, *g.shape) for g in model.latent_spec}
    base = model.decode(lat)
    assert not torch.allclose(base, model.decode(dict(lat, texture=torch.ones(2, 1, 4, 4))))
    assert torch.equal(base, model.decode(dict(lat, dead=torch.ones(2, 4))))
