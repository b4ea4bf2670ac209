"""LatentGroup / LatentSpec / ViewPolicy: layout, round trips and validation errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mlvgm_data import Keep, LatentGroup, LatentSpec, Perturb, Resample, ViewPolicy


@pytest.fixture
def spec() -> LatentSpec:
    return LatentSpec([LatentGroup("top", (20,)), LatentGroup("map", (16, 8, 8)), LatentGroup("w0", 5, tie="z"),
                       LatentGroup("w1", (5,), tie="z")])


def test_spec_layout(spec: LatentSpec) -> None:
    assert spec.numel == 20 + 1024 + 5 + 5
    assert spec.offsets == (0, 20, 1044, 1049)
    assert spec.names == ("top", "map", "w0", "w1")
    assert spec["map"].numel == 1024 and spec["w0"].shape == (5,)
    assert spec.anchor_slots == (0, 1, 2, 2)
    assert "map" in spec and "nope" not in spec and len(spec) == 4
    assert LatentSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_split_join_round_trip(spec: LatentSpec) -> None:
    flat = torch.randn(3, 2, spec.numel)
    parts = spec.split(flat)
    assert parts["map"].shape == (3, 2, 16, 8, 8)
    assert torch.equal(parts["top"], flat[..., :20])
    assert torch.equal(spec.join(parts), flat)


def test_split_rejects_wrong_width(spec: LatentSpec) -> None:
    with pytest.raises(ValueError, match=str(spec.numel)):
        spec.split(torch.zeros(2, spec.numel + 1))


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: LatentSpec([]), "must not be empty"),
        (lambda: LatentSpec([LatentGroup("a", (2,)), LatentGroup("a", (3,))]), "duplicate names"),
        (lambda: LatentGroup("", (2,)), "LatentGroup.name"),
        (lambda: LatentGroup("bad name", (2,)), "LatentGroup.name"),
        (lambda: LatentGroup("a", (0,)), "LatentGroup.shape"),
        (lambda: LatentGroup("a", (2, -1)), "LatentGroup.shape"),
        (lambda: LatentGroup("a", ()), "LatentGroup.shape"),
        (lambda: LatentGroup("a", (2.5,)), "LatentGroup.shape"),
        (lambda: LatentSpec([LatentGroup("a", (2,), tie="t"), LatentGroup("b", (3,), tie="t")]),
         "tied groups must share"),
        (lambda: LatentSpec(["a"]), "LatentGroup objects"),
        (lambda: LatentSpec.from_dict({"groups": [{"name": "a"}]}), "malformed"),
    ],
)
def test_spec_validation(build, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_check_reports_the_group(spec: LatentSpec) -> None:
    good = {g.name: torch.zeros(4, *g.shape) for g in spec}
    assert spec.check(good) == (4,)
    with pytest.raises(ValueError, match=r"missing groups \['map'\]"):
        spec.check({k: v for k, v in good.items() if k != "map"})
    with pytest.raises(ValueError, match="unknown groups"):
        spec.check(good | {"extra": torch.zeros(4, 1)})
    with pytest.raises(ValueError, match="'top' must have shape"):
        spec.check(good | {"top": torch.zeros(4, 19)})
    with pytest.raises(ValueError, match="'top' must be floating"):
        spec.check(good | {"top": torch.zeros(4, 20, dtype=torch.int64)})
    with pytest.raises(ValueError, match="'map' has leading shape"):
        spec.check(good | {"map": torch.zeros(3, 16, 8, 8)})
    bad = torch.zeros(4, 20)
    bad[1, 3] = math.nan
    with pytest.raises(ValueError, match="'top' has non-finite"):
        spec.check(good | {"top": bad})
    with pytest.raises(ValueError, match="dict of tensors"):
        spec.check([1, 2])


def test_policy_round_trip_and_defaults() -> None:
    policy = ViewPolicy({"a": Perturb(0.2, mu=0.1, trunc=2), "b": Resample(1.5), "c": Keep()}, anchor_trunc=0.9,
                        include_anchor=False)
    d = json.loads(json.dumps(policy.to_dict()))
    assert ViewPolicy.from_dict(d) == policy
    assert policy.rule("zzz") == Keep()
    assert policy.rule("a") == Perturb(0.2, 0.1, 2.0)
    spec = LatentSpec([LatentGroup("a", (1,)), LatentGroup("b", (1,))])
    uniform = ViewPolicy.uniform(spec, Perturb(0.2))
    assert uniform.rules == {"a": Perturb(0.2), "b": Perturb(0.2)}


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: Perturb(-0.1), "Perturb.sigma"),
        (lambda: Perturb(float("nan")), "Perturb.sigma"),
        (lambda: Perturb(0.1, mu=float("inf")), "Perturb.mu"),
        (lambda: Perturb(0.1, trunc=0), "Perturb.trunc"),
        (lambda: Perturb("1"), "Perturb.sigma"),
        (lambda: Resample(trunc=-1), "Resample.trunc"),
        (lambda: ViewPolicy(anchor_trunc=float("nan")), "ViewPolicy.anchor_trunc"),
        (lambda: ViewPolicy({"a": 0.2}), r"ViewPolicy.rules\['a'\]"),
        (lambda: ViewPolicy(include_anchor=1), "include_anchor"),
        (lambda: ViewPolicy.from_dict({"rules": {"a": {"kind": "jitter"}}}), "kind"),
        (lambda: ViewPolicy.from_dict({"rules": {"a": {"kind": "perturb"}}}), "bad perturb rule"),
        (lambda: ViewPolicy.from_dict({"rulez": {}}), "unknown fields"),
        (lambda: ViewPolicy.from_dict([]), "expects a dict"),
    ],
)
def test_policy_validation(build, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_policy_check_against_spec() -> None:
    spec = LatentSpec([LatentGroup("a", (1,))])
    ViewPolicy({"a": Resample()}).check(spec)
    with pytest.raises(ValueError, match=r"unknown groups \['b'\]"):
        ViewPolicy({"b": Resample()}).check(spec)
