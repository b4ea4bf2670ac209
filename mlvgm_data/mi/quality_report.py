"""The view-quality report: what each candidate policy's views keep and how much they change, the
Pareto front of the two, the recommendation on it, as a table, JSON and a chart.

"Keeps" is the judge's label consistency (the fraction of pairs whose view the judge gives the
anchor's class) when a judge was used, else the views' I(x0; x1); "changes" is the mean RMS pixel
difference anchor → view (``change="pixel"``) or the judge's feature change (``"feature"``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from .._checks import check_number
from .._io import atomic_writer, write_text
from ..policy import ViewPolicy
from .estimators import MIEstimate

FORMAT = "mlvgm-data/view-quality/1"
CHANGES = ("pixel", "feature")

DEFAULT_MIN_CONSISTENCY = 0.7
"""The judged recommendation's default floor: the views keep the judged class of at least 70 % of
their anchors. Measured on ``builtin:fashion`` with the shipped classifier
(docs/view_quality_fashion.json): even σ = 0.1 on every group (RMS change 0.04) flips 13 % of the
judged classes (the judge is unsure of many generated anchors), consistency then falls gently to
about 72 % while the coarse group is kept (RMS change up to 0.14), and collapses to chance (10 %)
once that group changes. 70 % sits below that plateau, so the rule takes the most change before
the collapse; a floor near the plateau's values (75–87 %) would make the choice hinge on the
sampling noise of neighbouring candidates (±2 points at 2,000 pairs)."""

CHOSEN_WITH_JUDGE = "labelled judge"
CHOSEN_LABEL_FREE = "label-free MI"


@dataclass(frozen=True)
class Interval:
    """A measured mean (or fraction) and its 95 % interval."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high}

    @classmethod
    def from_dict(cls, d: Mapping) -> Interval:
        return cls(float(d["value"]), float(d["low"]), float(d["high"]))


def wilson(successes: int, n: int, z: float = 1.96) -> Interval:
    """A fraction with its Wilson score interval (sound near 0 and 1, unlike p ± z·se)."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(p, max(centre - half, 0.0), min(centre + half, 1.0))


def mean_interval(values: torch.Tensor, z: float = 1.96) -> Interval:
    """The mean of non-negative per-pair values with the normal interval mean ± z·sd/√n (n ≥ 128
    pairs here), cut at 0 (the mean cannot be negative)."""
    v = values.double().cpu()
    mean, se = float(v.mean()), float(v.std()) / math.sqrt(v.numel())
    return Interval(mean, max(mean - z * se, 0.0), mean + z * se)


@dataclass(frozen=True)
class PolicyQuality:
    """One candidate policy's measurements (``consistency``/``feature_change`` are ``None`` without
    a judge, ``image_mi`` without the MI estimate); ``origin`` says where the candidate came from."""

    policy: ViewPolicy
    origin: str
    pixel_change: Interval
    consistency: Interval | None = None
    feature_change: Interval | None = None
    image_mi: MIEstimate | None = None

    def to_dict(self) -> dict:
        def opt(x: Interval | MIEstimate | None) -> dict | None:
            return None if x is None else x.to_dict()

        return {"policy": self.policy.to_dict(), "origin": self.origin, "consistency": opt(self.consistency),
                "pixel_change": self.pixel_change.to_dict(), "feature_change": opt(self.feature_change),
                "image_mi": opt(self.image_mi)}

    @classmethod
    def from_dict(cls, d: Mapping) -> PolicyQuality:
        def opt(kind: type, x: Mapping | None):
            return None if x is None else kind.from_dict(x)

        return cls(ViewPolicy.from_dict(d["policy"]), str(d["origin"]), Interval.from_dict(d["pixel_change"]),
                   opt(Interval, d.get("consistency")), opt(Interval, d.get("feature_change")),
                   opt(MIEstimate, d.get("image_mi")))


class Recommendation(NamedTuple):
    """A recommended policy and how it was chosen: ``chosen_with`` is ``"labelled judge"`` (on the
    front, with labels) or ``"label-free MI"``; ``rule`` says the rule in words."""

    name: str
    policy: ViewPolicy
    chosen_with: str
    rule: str

    def to_dict(self) -> dict:
        return {"name": self.name, "policy": self.policy.to_dict(), "chosen_with": self.chosen_with,
                "rule": self.rule}


def pareto_front(points: Mapping[str, tuple[float, float]]) -> list[str]:
    """The names whose ``(keep, change)`` no other point beats: none keeps at least as much and
    changes at least as much, and one of them strictly more. Ordered by change, least first."""
    front = [n for n, (k, c) in points.items()
             if not any(k2 >= k and c2 >= c and (k2 > k or c2 > c) for m, (k2, c2) in points.items() if m != n)]
    return sorted(front, key=lambda n: (points[n][1], -points[n][0]))


def _fmt(x: Interval | MIEstimate | None, scale: float = 1.0, digits: int = 3) -> str:
    if x is None:
        return "–"
    return f"{scale * x.value:.{digits}f} [{scale * x.low:.{digits}f}, {scale * x.high:.{digits}f}]"


class ViewQualityReport:
    """What :func:`~mlvgm_data.mi.view_quality` measured: ``policies[name]`` → :class:`PolicyQuality`,
    ``settings`` (generator, judge, feature source, samples, …), ``mi_recommended`` (the name of the
    candidate that is the label-free MI recommendation, if any) and ``command`` (what made it)."""

    def __init__(self, policies: Mapping[str, PolicyQuality], settings: Mapping, mi_recommended: str | None = None,
                 command: str | None = None) -> None:
        if not policies:
            raise ValueError("a view-quality report needs at least one policy")
        self.policies = dict(policies)
        self.settings = dict(settings)
        self.mi_recommended = mi_recommended
        self.command = command

    @property
    def judged(self) -> bool:
        """Whether a judge measured consistency (else "keeps" is the views' I(x0; x1))."""
        return all(q.consistency is not None for q in self.policies.values())

    def _change(self, change: str | None) -> str:
        change = self.settings.get("change", "pixel") if change is None else change
        if change not in CHANGES:
            raise ValueError(f"change must be one of {list(CHANGES)}, got {change!r}")
        if change == "feature" and not self.judged:
            raise ValueError("change='feature' needs a judge (this report was made without one)")
        return change

    def points(self, change: str | None = None) -> dict[str, tuple[float, float]]:
        """``name → (keep, change)``: consistency (or I(x0; x1) without a judge) and the change."""
        change = self._change(change)
        out = {}
        for name, q in self.policies.items():
            keep = q.consistency if self.judged else q.image_mi
            if keep is None:
                raise ValueError("this report has neither a judge's consistency nor I(x0; x1) to rank policies by")
            out[name] = (keep.value, (q.pixel_change if change == "pixel" else q.feature_change).value)
        return out

    def front(self, change: str | None = None) -> list[str]:
        """The candidates on the Pareto front of keep vs change (:func:`pareto_front`)."""
        return pareto_front(self.points(change))

    def recommendation(self, min_consistency: float | None = None, change: str | None = None) -> Recommendation:
        """With a judge: the candidate that changes the views most (``change``) among those whose
        consistency is at least ``min_consistency`` (default: the report's setting, else
        :data:`DEFAULT_MIN_CONSISTENCY`), changes within the largest one's 95 % half-width counting
        as equal and the most consistent of those winning; it lies on the front by construction. If
        none reaches the floor, the most consistent one. Without a judge: the label-free MI
        recommendation (the MI report's policy when it is a candidate, else the candidate whose
        I(x0; x1) is nearest the middle of the measured range, the rule of
        ``MIReport.recommend_policy``).
        """
        change = self._change(change)
        if not self.judged:
            if min_consistency is not None:
                raise ValueError("min_consistency needs a judge: this report was made without one")
            return self._label_free()
        if min_consistency is None:
            min_consistency = self.settings.get("min_consistency")
        if min_consistency is None:
            min_consistency = DEFAULT_MIN_CONSISTENCY
        floor = check_number(min_consistency, "min_consistency", 0.0, 1.0)
        pts = self.points(change)
        kept = [n for n, (k, _) in pts.items() if k >= floor]
        if kept:
            top = max(kept, key=lambda n: (pts[n][1], pts[n][0]))
            interval = self.policies[top].pixel_change if change == "pixel" else self.policies[top].feature_change
            # Changes within the top one's 95 % half-width count as equal: among those the most
            # consistent wins (a change larger by sampling noise alone must not cost consistency).
            # Still on the front: whatever beats the choice is as near the top, so it was a contender.
            near = [n for n in kept if pts[n][1] >= pts[top][1] - (interval.high - interval.value)]
            name = max(near, key=lambda n: (pts[n][0], pts[n][1]))
            rule = (f"the most {change} change (within the 95 % interval of the largest) among the candidates whose "
                    f"views keep the judged class in ≥ {100 * floor:g} % of pairs, then the most consistent")
        else:
            name = max(pts, key=lambda n: (pts[n][0], pts[n][1]))
            rule = f"no candidate keeps the judged class in ≥ {100 * floor:g} % of pairs: the most consistent one"
        return Recommendation(name, self.policies[name].policy, CHOSEN_WITH_JUDGE, rule)

    def _label_free(self) -> Recommendation:
        if self.mi_recommended is not None:
            return Recommendation(self.mi_recommended, self.policies[self.mi_recommended].policy, CHOSEN_LABEL_FREE,
                                  "the MI report's recommendation (I(x0; x1) nearest the middle of its candidates')")
        values = {n: q.image_mi.value for n, q in self.policies.items() if q.image_mi is not None}
        if not values:
            raise ValueError("no label-free recommendation: no judge, no MI-recommended candidate and no I(x0; x1) "
                             "measured (mi=False)")
        target = 0.5 * (min(values.values()) + max(values.values()))
        name = min(values, key=lambda n: abs(values[n] - target))
        return Recommendation(name, self.policies[name].policy, CHOSEN_LABEL_FREE,
                              f"I(x0; x1) nearest {target:.2f} nats, the middle of the measured range")

    def recommend_policy(self, min_consistency: float | None = None, change: str | None = None) -> ViewPolicy:
        """The policy of :meth:`recommendation`."""
        return self.recommendation(min_consistency, change).policy

    # --- serialisation --------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """JSON-safe: the settings, every policy's figures, the front and the recommendation."""
        return {"format": FORMAT, "command": self.command, "settings": self.settings,
                "policies": {n: q.to_dict() for n, q in self.policies.items()},
                "order": list(self.policies),  # the candidates' order (a JSON writer may sort the keys)
                "mi_recommended": self.mi_recommended, "front": self.front(),
                "recommended": self.recommendation().to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping) -> ViewQualityReport:
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise ValueError(f"not a view-quality report (needs format {FORMAT!r})")
        try:
            policies = {n: PolicyQuality.from_dict(q) for n, q in d["policies"].items()}
            order = d.get("order")
            if order is not None:  # the chart's and the table's numbering: the candidates' order
                if sorted(order) != sorted(policies):
                    raise ValueError("malformed view-quality report: 'order' does not list its policies")
                policies = {n: policies[n] for n in order}
            return cls(policies, d["settings"], d.get("mi_recommended"), d.get("command"))
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"malformed view-quality report: {e!r}") from None

    def to_json(self, path: str | Path) -> Path:
        return write_text(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", "view-quality report")

    @classmethod
    def from_json(cls, path: str | Path) -> ViewQualityReport:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None

    # --- human output ---------------------------------------------------------------------------

    def to_markdown(self) -> str:
        """The table (one row per candidate, front and recommendation marked) and what it means."""
        s, front, best = self.settings, set(self.front()), self.recommendation()
        lines = ["| # | policy | origin | consistency [95% CI] | pixel change (RMS) | feature change | "
                 "I(x0; x1) nats | front |", "|---:|---|---|---|---|---|---|:---:|"]
        for i, (name, q) in enumerate(self.policies.items(), 1):
            mark = "**recommended**" if name == best.name else ("yes" if name in front else "")
            if name == self.mi_recommended:
                mark += " (MI)" if mark else "MI-recommended"
            mi = "–" if q.image_mi is None else _fmt(q.image_mi, digits=2) + (" ≥ceil" if q.image_mi.saturated else "")
            lines.append(f"| {i} | {name} | {q.origin} | {_fmt(q.consistency)} | {_fmt(q.pixel_change)} | "
                         f"{_fmt(q.feature_change)} | {mi} | {mark} |")
        lines += ["", f"Recommended ({best.chosen_with}): **{best.name}** — {best.rule}."]
        lines += ["", f"{s.get('samples')} anchor/view pairs per policy (the same anchors for every policy), seed "
                      f"{s.get('seed')}, generator {s.get('generator')}, judge {s.get('judge') or 'none'}"
                      f"{'' if not self.judged else ', features: ' + str(s.get('feature_source'))}; "
                      f"{s.get('elapsed_s', float('nan')):.0f} s."]
        lines += [f"- {note}" for note in s.get("notes", [])]
        return "\n".join(lines)

    def plot(self, path: str | Path, change: str | None = None) -> Path:
        """A PNG of keep (consistency, or I(x0; x1) without a judge) against change, with 95 %
        intervals, the Pareto front drawn and the recommended (★) and MI-recommended (◆) marked."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError("ViewQualityReport.plot needs matplotlib: pip install 'mlvgm-data[plot]' "
                              "(or pip install matplotlib)") from None
        change = self._change(change)
        names, pts, front, best = list(self.policies), self.points(change), self.front(change), self.recommendation()
        fig = Figure(figsize=(10, 5), dpi=120)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0.07, 0.11, 0.5, 0.8))
        for i, n in enumerate(names, 1):
            q = self.policies[n]
            keep = q.consistency if self.judged else q.image_mi
            move = q.pixel_change if change == "pixel" else q.feature_change
            scale = 100 if self.judged else 1
            # max(…, 0): a Wilson bound at p = 1 can round a hair below p
            ax.errorbar(move.value, scale * keep.value,
                        xerr=[[max(move.value - move.low, 0.0)], [max(move.high - move.value, 0.0)]],
                        yerr=[[scale * max(keep.value - keep.low, 0.0)], [scale * max(keep.high - keep.value, 0.0)]],
                        fmt="o", ms=5, color="#4c72b0" if n in front else "#999999", capsize=2, lw=0.8)
            ax.annotate(str(i), (move.value, scale * keep.value), textcoords="offset points", xytext=(4, 4), fontsize=8)
        scale = 100 if self.judged else 1
        ax.plot([pts[n][1] for n in front], [scale * pts[n][0] for n in front], "-", color="#4c72b0", lw=1.2,
                label="Pareto front")
        ax.plot(pts[best.name][1], scale * pts[best.name][0], "*", ms=16, color="#c44e52", zorder=5,
                label=f"recommended ({best.chosen_with})")
        if self.mi_recommended is not None:
            m = self.mi_recommended
            ax.plot(pts[m][1], scale * pts[m][0], "D", ms=9, mfc="none", mec="#dd8452", mew=1.5, zorder=4,
                    label="MI-recommended (label-free)")
        ax.set_xlabel("pixel change, RMS anchor → view" if change == "pixel" else
                      f"feature change under the judge, 1 − cos ({self.settings.get('feature_source')})")
        ax.set_ylabel("label consistency under the judge  [%]" if self.judged else "I(x0; x1)  [nats, InfoNCE]")
        ax.set_title(f"View quality: {self.settings.get('generator')}, judge {self.settings.get('judge') or 'none'}",
                     fontsize=10)
        ax.legend(fontsize=8, loc="lower left")
        ax.grid(alpha=0.3)
        legend = "\n".join(f"{i:>2}  {n[:70]}" for i, n in enumerate(names, 1))
        fig.text(0.6, 0.91, legend, va="top", ha="left", fontsize=7, family="monospace")
        with atomic_writer(path, "plot") as f:
            fig.savefig(f, format="png")
        return Path(path)
