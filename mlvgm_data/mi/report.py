"""The per-group MI report: a table, JSON, a chart, and the measured policy recommendation."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .._io import write_text
from ..policy import ViewPolicy
from .estimators import MIEstimate

FORMAT = "mlvgm-data/mi-report/1"


@dataclass(frozen=True)
class GroupMI:
    """One latent group's measurements.

    ``latent_mi`` = I(z_g; x) (how much of the group the image reveals), ``image_mi`` =
    I(x; x′) with only g resampled (what an image keeps when g changes: low when g matters),
    ``fraction`` = the group's share of the summed I(z_g; x) (negative values count as 0);
    ``pixel_change`` = the mean squared pixel change when g alone is resampled (above the
    decoder's noise floor), relative to the group that changes the image most.
    """

    name: str
    dims: int
    latent_mi: MIEstimate
    image_mi: MIEstimate
    fraction: float
    underused: bool
    pixel_change: float

    def to_dict(self) -> dict:
        return {
            "name": self.name, "dims": self.dims, "latent_mi": self.latent_mi.to_dict(),
            "image_mi": self.image_mi.to_dict(), "fraction": self.fraction, "underused": self.underused,
            "pixel_change": self.pixel_change,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "GroupMI":
        return cls(d["name"], int(d["dims"]), MIEstimate.from_dict(d["latent_mi"]),
                   MIEstimate.from_dict(d["image_mi"]), float(d["fraction"]), bool(d["underused"]),
                   float(d["pixel_change"]))


@dataclass(frozen=True)
class Candidate:
    """A view policy and the measured I(x0; x1) of the views it makes."""

    policy: ViewPolicy
    mi: MIEstimate
    kept: tuple[str, ...]
    description: str

    def to_dict(self) -> dict:
        return {"policy": self.policy.to_dict(), "mi": self.mi.to_dict(), "kept": list(self.kept),
                "description": self.description}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Candidate":
        return cls(ViewPolicy.from_dict(d["policy"]), MIEstimate.from_dict(d["mi"]), tuple(d["kept"]),
                   str(d["description"]))


def _fmt(e: MIEstimate) -> str:
    s = f"{e.value:.2f} [{e.low:.2f}, {e.high:.2f}]"
    return s + " ≥ceil" if e.saturated else s


class MIReport:
    """What ``analyze`` measured for each latent group of a generator.

    ``groups[name]`` → :class:`GroupMI`; ``underused`` lists groups whose I(z_g; x) and pixel
    change are both at most ``threshold`` × the largest group's; ``ranking`` orders groups by I(z_g; x), ``impact`` by
    how much resampling them changes the image. ``recommend_policy(target)`` picks among measured
    candidate policies (keep the high-impact groups, change the rest) the one whose views'
    I(x0; x1) is nearest ``target``.
    """

    def __init__(
        self,
        groups: Mapping[str, GroupMI],
        threshold: float,
        settings: Mapping,
        candidates: Sequence[Candidate] | None = None,
        measure: Callable[[], list[Candidate]] | None = None,
    ) -> None:
        self.groups = dict(groups)
        self.threshold = threshold
        self.settings = dict(settings)
        self.candidates = None if candidates is None else list(candidates)
        self._measure = measure

    @property
    def underused(self) -> list[str]:
        return [name for name, g in self.groups.items() if g.underused]

    @property
    def ranking(self) -> list[str]:
        """Group names by I(z_g; x), most informative first."""
        return sorted(self.groups, key=lambda n: -self.groups[n].latent_mi.value)

    @property
    def impact(self) -> list[str]:
        """Group names by I(x; x′ with g resampled), lowest first (ties by pixel change): the
        groups whose resampling changes the image most (the paper's criterion; the candidates
        keep these)."""
        return sorted(self.groups, key=lambda n: (self.groups[n].image_mi.value, -self.groups[n].pixel_change))

    # --- the recommendation ---------------------------------------------------------------------

    def measured_candidates(self) -> list[Candidate]:
        """The candidate policies with their measured I(x0; x1) (measured now if ``analyze`` ran
        with ``candidates=False``; that needs the generator the report was made from)."""
        if self.candidates is None:
            if self._measure is None:
                raise ValueError(
                    "this report holds no measured candidate policies and no generator to measure them "
                    "(it was loaded from JSON written with candidates=False); rerun analyze()"
                )
            self.candidates = self._measure()
        return self.candidates

    def default_target(self) -> float:
        """The middle of the measured candidates' I(x0; x1) range, in nats."""
        values = [c.mi.value for c in self.measured_candidates()]
        return 0.5 * (min(values) + max(values))

    def recommendation(self, target: float | None = None) -> tuple[Candidate, float]:
        """The candidate whose measured I(x0; x1) is nearest ``target`` (default
        :meth:`default_target`), and the target used."""
        cands = self.measured_candidates()
        if target is None:
            target = self.default_target()
        elif isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target):
            raise ValueError(f"target must be a finite number of nats, got {target!r}")
        best = min(cands, key=lambda c: (abs(c.mi.value - target), -len(c.kept)))
        return best, float(target)

    def recommend_policy(self, target: float | None = None) -> ViewPolicy:
        """A policy that keeps the high-information groups and changes the rest so that the views'
        measured I(x0; x1) lands nearest ``target`` nats (default: mid-range of the candidates)."""
        return self.recommendation(target)[0].policy

    # --- serialisation --------------------------------------------------------------------------

    def to_dict(self) -> dict:
        d = {
            "format": FORMAT,
            "groups": {n: g.to_dict() for n, g in self.groups.items()},
            "ranking": self.ranking,
            "underused": self.underused,
            "threshold": self.threshold,
            "settings": self.settings,
            "candidates": None if self.candidates is None else [c.to_dict() for c in self.candidates],
        }
        if self.candidates:
            best, target = self.recommendation()
            d["recommended"] = {"target": target, "policy": best.policy.to_dict(), "mi": best.mi.to_dict(),
                                "description": best.description, "chosen_with": "label-free MI"}
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "MIReport":
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise ValueError(f"not an MI report (needs format {FORMAT!r})")
        try:
            groups = {n: GroupMI.from_dict(g) for n, g in d["groups"].items()}
            cands = d.get("candidates")
            return cls(groups, float(d["threshold"]), d.get("settings", {}),
                       None if cands is None else [Candidate.from_dict(c) for c in cands])
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed MI report: {e}") from None

    def to_json(self, path: str | Path) -> Path:
        return write_text(path, json.dumps(self.to_dict(), indent=2) + "\n", "MI report")

    @classmethod
    def from_json(cls, path: str | Path) -> "MIReport":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None

    # --- human output ---------------------------------------------------------------------------

    def to_markdown(self) -> str:
        s = self.settings
        lines = [
            "| group | dims | I(z_g; x) nats [95% CI] | share | I(x; x′), g resampled [95% CI] | pixel change "
            "| under-used |",
            "|---|---:|---|---:|---|---:|:---:|",
        ]
        for name in self.ranking:
            g = self.groups[name]
            lines.append(f"| {name} | {g.dims} | {_fmt(g.latent_mi)} | {100 * g.fraction:.1f} % | "
                         f"{_fmt(g.image_mi)} | {100 * g.pixel_change:.0f} % | {'yes' if g.underused else ''} |")
        ceiling = next(iter(self.groups.values())).image_mi.ceiling
        lines += [
            "",
            f"I(z_g; x): Barber–Agakov lower bound, H(z_g) {s.get('entropy_source', 'closed form')}; "
            f"I(x; x′): InfoNCE lower bound (raw, ceiling log B = {ceiling:.2f} nats; ≥ceil = within "
            f"1 nat of it, the true value may be higher). Held-out evaluation, 95 % bootstrap intervals.",
            f"Pixel change: mean squared change when only g is resampled, relative to the largest. "
            f"Under-used: I(z_g; x) and pixel change both at most {100 * self.threshold:g} % of the largest group's"
            + (f" → {', '.join(self.underused)}." if self.underused else " → none."),
            f"{s.get('samples')} samples per estimate, {s.get('steps')} critic steps, seed {s.get('seed')}, "
            f"{s.get('elapsed_s', float('nan')):.0f} s"
            + (f" (budget {s['budget_s']:g} s{', reached: some critics stopped early' if s.get('truncated') else ''})"
               if s.get("budget_s") else "") + ".",
        ]
        if self.candidates:
            best, target = self.recommendation()
            lines += ["", "| candidate policy | I(x0; x1) nats [95% CI] | |", "|---|---|:---:|"]
            for c in self.candidates:
                lines.append(f"| {c.description} | {_fmt(c.mi)} | {'**chosen**' if c is best else ''} |")
            lines += ["", f"Recommended (views' I(x0; x1) nearest the target {target:.2f} nats, the middle of "
                          f"the measured range): {best.description}."]
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """A bar chart (PNG) of I(z_g; x) and I(x; x′) per group with 95 % intervals, and the
        relative pixel change."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError(
                "MIReport.plot needs matplotlib: pip install 'mlvgm-data[plot]' (or pip install matplotlib)"
            ) from None
        names = self.ranking
        fig = Figure(figsize=(5 + 1.3 * len(names), 3.6), dpi=120)
        FigureCanvasAgg(fig)
        grid = fig.add_gridspec(1, 3, width_ratios=[2, 2, 1.3])
        panels = (("latent_mi", "I(z_g; x)  [nats]", "how much of g the image reveals", "#4c72b0"),
                  ("image_mi", "I(x; x′), g resampled  [nats]", "what survives resampling g", "#dd8452"))
        for i, (field, ylabel, title, color) in enumerate(panels):
            ax = fig.add_subplot(grid[0, i])
            est = [getattr(self.groups[n], field) for n in names]
            vals = [e.value for e in est]
            err = [[max(e.value - e.low, 0.0) for e in est], [max(e.high - e.value, 0.0) for e in est]]
            colors = ["#bbbbbb" if self.groups[n].underused else color for n in names]
            ax.bar(range(len(names)), vals, yerr=err, color=colors, capsize=4)
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=30 if len(names) > 4 else 0)
            ax.set_ylabel(ylabel)
            ax.set_title(title, fontsize=9)
            ax.axhline(0, color="black", lw=0.6)
            if i == 0 and self.underused:
                ax.text(0.98, 0.95, "grey: under-used", transform=ax.transAxes, ha="right", va="top", fontsize=8)
            if i == 1 and est and est[0].ceiling is not None:
                ax.axhline(est[0].ceiling, color="grey", ls="--", lw=0.8)
                ax.text(len(names) - 0.5, est[0].ceiling, "log B", va="bottom", ha="right", fontsize=8, color="grey")
        ax = fig.add_subplot(grid[0, 2])
        ax.bar(range(len(names)), [100 * self.groups[n].pixel_change for n in names],
               color=["#bbbbbb" if self.groups[n].underused else "#55a868" for n in names])
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30 if len(names) > 2 else 0)
        ax.set_ylabel("pixel change  [% of largest]")
        ax.set_title("pixels moved by resampling g", fontsize=9)
        fig.suptitle(f"Per-group MI: {self.settings.get('generator', 'generator')}", fontsize=10)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path)
        return path
