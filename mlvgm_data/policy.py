"""View policies: for each latent group, how a view's noise is made from the anchor's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Union

from ._checks import check_number
from .latents import LatentSpec

MAX_SCALE = 1e6
"""Largest |μ| and σ of a perturbation: latents are standard normal, and far larger values would
leave float32's range in the op."""


def _trunc(value: object, field: str) -> float | None:
    return None if value is None else check_number(value, field, 0.0, strict_low=True)


@dataclass(frozen=True)
class Keep:
    """The view uses the anchor's noise unchanged."""

    def to_dict(self) -> dict:
        return {"kind": "keep"}


@dataclass(frozen=True)
class Perturb:
    """The view adds ε ~ N(μ, σ²) truncated to [μ − trunc·σ, μ + trunc·σ] to the anchor."""

    sigma: float
    mu: float = 0.0
    trunc: float | None = None

    def __post_init__(self) -> None:
        # "+ 0.0" turns -0.0 into 0.0: rules that compare equal then give the same bits (the op
        # caches its kernel arguments by rule equality, and 0.0 == -0.0).
        object.__setattr__(self, "sigma", check_number(self.sigma, "Perturb.sigma", 0.0, MAX_SCALE) + 0.0)
        object.__setattr__(self, "mu", check_number(self.mu, "Perturb.mu", -MAX_SCALE, MAX_SCALE) + 0.0)
        object.__setattr__(self, "trunc", _trunc(self.trunc, "Perturb.trunc"))

    def to_dict(self) -> dict:
        return {"kind": "perturb", "sigma": self.sigma, "mu": self.mu, "trunc": self.trunc}


@dataclass(frozen=True)
class Resample:
    """The view draws fresh N(0, 1) noise for the group, truncated to ±trunc."""

    trunc: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "trunc", _trunc(self.trunc, "Resample.trunc"))

    def to_dict(self) -> dict:
        return {"kind": "resample", "trunc": self.trunc}


Rule = Union[Keep, Perturb, Resample]
_KINDS = {"keep": Keep, "perturb": Perturb, "resample": Resample}


def rule_from_dict(d: Mapping) -> Rule:
    if not isinstance(d, Mapping) or d.get("kind") not in _KINDS:
        raise ValueError(f"rule must be a dict with kind in {sorted(_KINDS)}, got {d!r}")
    args = {k: v for k, v in d.items() if k != "kind"}
    try:
        return _KINDS[d["kind"]](**args)
    except TypeError as e:
        raise ValueError(f"bad {d['kind']} rule {d!r}: {e}") from None


class ViewPolicy:
    """Maps latent groups to rules (``Keep``, ``Perturb``, ``Resample``); unnamed groups are kept.

    ``anchor_trunc`` truncates the anchor noise to ±anchor_trunc (the papers' truncation trick).
    With ``include_anchor`` (default, as in the paper) view 0 is the anchor itself and views
    1… apply the rules; without it every view applies the rules independently.
    """

    def __init__(
        self,
        rules: Mapping[str, Rule] | None = None,
        anchor_trunc: float | None = None,
        include_anchor: bool = True,
    ) -> None:
        if rules is not None and not isinstance(rules, Mapping):
            raise ValueError(f"ViewPolicy.rules must be a dict of group name -> Keep()/Perturb(...)/Resample(...), "
                             f"got {type(rules).__name__} {rules!r}")
        rules = dict(rules or {})
        for name, rule in rules.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"ViewPolicy.rules keys must be group names, got {name!r}")
            if not isinstance(rule, (Keep, Perturb, Resample)):
                raise ValueError(
                    f"ViewPolicy.rules[{name!r}] must be Keep(), Perturb(...) or Resample(...), "
                    f"got {rule!r}"
                )
        if not isinstance(include_anchor, bool):
            raise ValueError(f"ViewPolicy.include_anchor must be a bool, got {include_anchor!r}")
        self.rules: dict[str, Rule] = rules
        self.anchor_trunc = _trunc(anchor_trunc, "ViewPolicy.anchor_trunc")
        self.include_anchor = include_anchor

    def rule(self, name: str) -> Rule:
        return self.rules.get(name, Keep())

    def check(self, spec: LatentSpec) -> None:
        """Raises ``ValueError`` if the policy names groups the spec does not have."""
        unknown = [n for n in self.rules if n not in spec]
        if unknown:
            raise ValueError(
                f"ViewPolicy.rules name unknown groups {unknown}; the spec has {list(spec.names)}"
            )

    def keeps_everything(self) -> bool:
        """Whether no rule changes its group (every view's noise is the anchor's)."""
        return all(isinstance(r, Keep) or (isinstance(r, Perturb) and r.sigma == 0 and r.mu == 0)
                   for r in self.rules.values())

    @classmethod
    def uniform(cls, spec: LatentSpec, rule: Rule, **kwargs) -> "ViewPolicy":
        """The same rule for every group (e.g. the papers' σ = 0.2 everywhere baseline)."""
        return cls({g.name: rule for g in spec}, **kwargs)

    def to_dict(self) -> dict:
        return {
            "rules": {name: rule.to_dict() for name, rule in self.rules.items()},
            "anchor_trunc": self.anchor_trunc,
            "include_anchor": self.include_anchor,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "ViewPolicy":
        if not isinstance(d, Mapping):
            raise ValueError(f"ViewPolicy.from_dict expects a dict, got {type(d).__name__}")
        unknown = set(d) - {"rules", "anchor_trunc", "include_anchor"}
        if unknown:
            raise ValueError(f"ViewPolicy.from_dict: unknown fields {sorted(unknown)}")
        rules = d.get("rules", {})
        if not isinstance(rules, Mapping):
            raise ValueError("ViewPolicy.rules must be a dict")
        return cls(
            {name: rule_from_dict(r) for name, r in rules.items()},
            anchor_trunc=d.get("anchor_trunc"),
            include_anchor=d.get("include_anchor", True),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ViewPolicy) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return (
            f"ViewPolicy({self.rules!r}, anchor_trunc={self.anchor_trunc}, "
            f"include_anchor={self.include_anchor})"
        )
