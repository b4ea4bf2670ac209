"""The view-quality report: for each candidate view policy, how much its views change and how often
they keep what a judge the user trusts sees (InfoMin's "reduce shared information, keep task
information"; GenView's semantic consistency vs diversity).

Per policy, over ``samples`` anchor/view pairs made by ``decode_views`` (the same seed and sample ids
for every policy, so every policy is measured on the very same anchors):

- label consistency: the fraction of pairs whose view the judge gives the anchor's class (argmax
  of its logits), with a Wilson interval;
- pixel change: the mean RMS pixel difference anchor → view;
- feature change: the mean 1 − cos of the judge's features of anchor and view (its ``features``
  method, a ``feature_fn``, or its logits — the report says which);
- I(x0; x1): the InfoNCE bound on the image pairs, as ``analyze`` measures its candidates (raw, with
  its ceiling log B).

The default candidates (:func:`default_policies`) are the MI ranking's keep/perturb/resample
policies, each group resampled alone, the uniform baseline σ ∈ {0.1, 0.2, 0.3}, the papers' recipes
(GenRep; mi_ml_gen's latent chunks), every group resampled, and the label-free MI recommendation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .._checks import check_int, check_number
from ..generators.base import check_generator, draw_classes, generator_device
from ..generators.registry import load_generator, policy_source, stored_mi_report
from ..latents import LatentSpec
from ..policy import Keep, Perturb, Resample, ViewPolicy
from .analyze import PERTURB_TRUNC, candidate_policies, generate
from .estimators import MIEstimate, infonce
from .judges import Judge
from .quality_report import (
    CHANGES,
    CHOSEN_LABEL_FREE,
    PolicyQuality,
    Recommendation,
    ViewQualityReport,
    mean_interval,
    wilson,
)
from .report import MIReport

MIN_SAMPLES = 128
"""Fewest pairs per policy: the InfoNCE critic needs train, validation and held-out splits."""
MI_SIGMAS = (0.5, 1.0)
"""The σ grid of the MI ranking's candidates (``analyze``'s default)."""
BASELINE_SIGMAS = (0.1, 0.2, 0.3)
"""The uniform baseline: the same Perturb(σ) on every group."""
GENREP = Perturb(0.2, trunc=2.0)
"""GenRep's Gaussian views: σ = 0.2 on every latent, truncated at 2σ."""
MI_ML_GEN = Perturb(1.0, trunc=PERTURB_TRUNC)
"""mi_ml_gen's latent-chunk views: the first (coarsest) group kept, the others perturbed with this."""
MI_DEFAULTS = {"steps": 200, "batch_size": 128, "width": 16, "image_res": 16, "eval_batch": 1024}
"""InfoNCE settings of the I(x0; x1) estimates (``mi=`` overrides them; ``analyze`` uses 300 steps)."""
_STREAM = 0  # analyze's anchor stream: the same seed gives the MI report's anchors


def _mi_inputs(name: str | None, mi_report: object) -> tuple[MIReport | None, ViewPolicy | None, str]:
    """The MI report that ranks the groups, the label-free recommended policy and where they came from."""
    source = "mi_report argument"
    if mi_report is None and name is not None:
        mi_report, source = stored_mi_report(name), f"stored MI report of {name}"
    if isinstance(mi_report, (str, Path)):
        mi_report, source = MIReport.from_json(mi_report), f"MI report {mi_report}"
    elif isinstance(mi_report, Mapping):
        mi_report = MIReport.from_dict(mi_report)
    elif mi_report is not None and not isinstance(mi_report, MIReport):
        raise ValueError(f"mi_report must be an MIReport, its dict or JSON path, got {type(mi_report).__name__}")
    policy = None
    if mi_report is not None and mi_report.candidates:
        policy = mi_report.recommendation()[0].policy
    elif name is not None:
        try:
            policy = policy_source(name).policy
        except (ValueError, FileNotFoundError):  # nothing stored for this generator
            policy = None
    return mi_report, policy, (source if mi_report is not None else "none: groups in latent_spec order")


def _ranked(spec: LatentSpec, report: MIReport | None) -> tuple[list[str], list[str]]:
    """(informative groups, content first; under-used groups) from the MI report, else spec order."""
    if report is None:
        return list(spec.names), []
    unknown = [g for g in report.groups if g not in spec]
    if unknown:
        raise ValueError(f"mi_report measures groups {unknown} that the generator does not have ({list(spec.names)})")
    underused = report.underused
    return [g for g in report.impact if g not in underused], underused


def _candidates(spec: LatentSpec, report: MIReport | None, mi_policy: ViewPolicy | None
                ) -> list[tuple[str, ViewPolicy, str]]:
    informative, underused = _ranked(spec, report)
    trunc = None if report is None else report.settings.get("anchor_trunc")  # the report's candidates used it
    out = [(desc, policy, "MI ranking") for policy, _, desc in candidate_policies(informative, underused, trunc,
                                                                                    MI_SIGMAS)]
    out += [(f"resample {g} only", ViewPolicy({g: Resample()}), "per group") for g in informative + underused]
    out += [(f"uniform σ={s:g}", ViewPolicy.uniform(spec, Perturb(s)), "uniform baseline") for s in BASELINE_SIGMAS]
    out.append(("GenRep: σ=0.2 truncated at 2σ, every group", ViewPolicy.uniform(spec, GENREP), "paper recipe"))
    first = spec.names[0]
    out.append((f"mi_ml_gen chunks: keep {first}, perturb σ=1 (trunc 2σ) the rest",
                ViewPolicy({g: (Keep() if g == first else MI_ML_GEN) for g in spec.names}), "paper recipe"))
    out.append(("resample every group", ViewPolicy.uniform(spec, Resample()), "reference"))
    if mi_policy is not None:
        out.append(("MI-recommended", mi_policy, "MI recommendation"))
    unique: list[tuple[str, ViewPolicy, str]] = []
    for name, policy, origin in out:  # a later duplicate (equal rules) is dropped
        if not any(policy == p for _, p, _ in unique):
            unique.append((name, policy, origin))
    return unique


def default_policies(generator: object, mi_report: object = None, name: str | None = None) -> dict[str, ViewPolicy]:
    """The default candidates of :func:`view_quality` (name → policy): the keep-the-first-k /
    perturb (σ ∈ {0.5, 1}) / resample policies around the MI report's ranking, each group
    resampled alone, uniform σ ∈ {0.1, 0.2, 0.3}, GenRep's σ = 0.2 truncated at 2σ, mi_ml_gen's
    chunk recipe, every group resampled, and the MI-recommended policy. ``mi_report`` (an
    ``MIReport``, its dict or JSON path) ranks the groups; by default the stored report of the
    generator ``name`` (``builtin:NAME`` or a path), else the groups in ``latent_spec`` order."""
    check_generator(generator)
    report, mi_policy, _ = _mi_inputs(name, mi_report)
    return {n: p for n, p, _ in _candidates(generator.latent_spec, report, mi_policy)}


def _checked_policies(policies: object, spec: LatentSpec) -> list[tuple[str, ViewPolicy, str]]:
    if isinstance(policies, Mapping):
        items = [(str(k), v) for k, v in policies.items()]
    elif isinstance(policies, (list, tuple)):
        items = [(f"p{i}", v) for i, v in enumerate(policies)]
    else:
        raise ValueError(f"policies must be a dict name -> ViewPolicy, a list of ViewPolicy or None, "
                         f"got {type(policies).__name__}")
    if not items:
        raise ValueError("policies must hold at least one candidate ViewPolicy, got an empty collection")
    for name, policy in items:
        if not isinstance(policy, ViewPolicy):
            raise ValueError(f"policies[{name!r}] must be a ViewPolicy, got {type(policy).__name__}")
        unknown = [g for g in policy.rules if g not in spec]
        if unknown:
            raise ValueError(f"policies[{name!r}] names unknown groups {unknown}; the generator has {list(spec.names)}")
    return [(n, p, "given") for n, p in items]


def _checked_choice(change: object, min_consistency: object, judged: bool) -> float | None:
    """``change`` and ``min_consistency`` (checked; both of the judged kind need a judge)."""
    if change not in CHANGES or (change == "feature" and not judged):
        raise ValueError(f"change must be one of {list(CHANGES)} ('feature' needs a judge), got {change!r}")
    if min_consistency is None:
        return None
    if not judged:
        raise ValueError("min_consistency needs a judge (without one the label-free MI rule decides)")
    return check_number(min_consistency, "min_consistency", 0.0, 1.0)


def _checked_mi(mi: object) -> dict | None:
    if mi is False or mi is None:
        return None
    if mi is True:
        return dict(MI_DEFAULTS)
    if not isinstance(mi, Mapping) or set(mi) - set(MI_DEFAULTS):
        raise ValueError(f"mi must be True, False or a dict with keys from {sorted(MI_DEFAULTS)}, got {mi!r}")
    return {**MI_DEFAULTS, **mi}


class _Pairs:
    """Decodes anchor/view pairs: the anchors once per anchor truncation (view 0 of every policy
    that includes the anchor is the same image), the judge's verdict on them once too."""

    def __init__(self, generator: object, samples: int, seed: int, batch_size: int, judge: object,
                 feature_fn: Callable | None) -> None:
        self.generator, self.samples, self.seed, self.batch_size = generator, samples, seed, batch_size
        self.device = generator_device(generator) if isinstance(generator, torch.nn.Module) else torch.device("cpu")
        self.judge = None if judge is None else Judge(judge, self.device, feature_fn)
        self._anchors: dict[float | None, tuple] = {}

    def _views(self, policy: ViewPolicy, views: Sequence[int]) -> list[torch.Tensor]:
        return generate(self.generator, self.generator.latent_spec, policy, self.samples, 2, self.seed, _STREAM,
                        self.batch_size, self.device, views=views)[0]

    def _judged(self, x: torch.Tensor) -> tuple:
        if self.judge is None:
            return (x,)
        logits, feats = self.judge(x, self.batch_size)
        return x, logits.argmax(1), feats

    def anchors(self, anchor_trunc: float | None) -> tuple:
        if anchor_trunc not in self._anchors:
            (x0,) = self._views(ViewPolicy({}, anchor_trunc=anchor_trunc), [0])
            self._anchors[anchor_trunc] = self._judged(x0)
        return self._anchors[anchor_trunc]

    def pair(self, policy: ViewPolicy) -> tuple[tuple, tuple]:
        """(anchor side, view side), each ``(images,)`` or ``(images, judged class, features)``."""
        if not policy.include_anchor:  # no anchor among the views: pair views 0 and 1
            x0, x1 = self._views(policy, [0, 1])
            return self._judged(x0), self._judged(x1)
        return self.anchors(policy.anchor_trunc), self._judged(self._views(policy, [1])[0])

    def class_agreement(self) -> float | None:
        """For a class-conditional generator: how often the judge gives an anchor the class the
        generator was asked for."""
        if not getattr(self.generator, "num_classes", None) or self.judge is None:
            return None
        asked = torch.cat([draw_classes(self.generator, min(self.batch_size, self.samples - start), self.seed, step,
                                        self.device, _STREAM)
                           for step, start in enumerate(range(0, self.samples, self.batch_size))])
        return float((self.anchors(None)[1] == asked).double().mean())


def _measure(pairs: _Pairs, policy: ViewPolicy, origin: str, mi: dict | None, seed: int, desc: str) -> PolicyQuality:
    a, v = pairs.pair(policy)
    rms = (a[0] - v[0]).flatten(1).pow(2).mean(1).sqrt()
    consistency = feature_change = None
    if pairs.judge is not None:
        consistency = wilson(int((a[1] == v[1]).sum()), a[1].numel())
        cos = torch.nn.functional.cosine_similarity(a[2].double(), v[2].double(), dim=1, eps=1e-12)
        feature_change = mean_interval(1.0 - cos)
    image_mi: MIEstimate | None = None
    if mi is not None:
        image_mi = infonce(a[0], v[0], shared=True, seed=seed, device=pairs.device, progress=False, desc=desc, **mi)
    return PolicyQuality(policy, origin, mean_interval(rms), consistency, feature_change, image_mi)


def view_quality(
    generator: object,
    policies: Mapping[str, ViewPolicy] | Sequence[ViewPolicy] | None = None,
    judge: object = None,
    *,
    samples: int = 2000,
    seed: int = 0,
    batch_size: int = 250,
    mi: bool | Mapping = True,
    mi_report: object = None,
    feature_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    change: str = "pixel",
    min_consistency: float | None = None,
    name: str | None = None,
    command: str | None = None,
    progress: bool = True,
) -> ViewQualityReport:
    """Measures what each candidate view policy's views keep and how much they change.

    ``generator``: an MLVGM, or its name (``builtin:NAME`` or a saved generator's path).
    ``policies``: a dict name → ``ViewPolicy``, a list (named ``p0``, ``p1``, …) or ``None`` for
    :func:`default_policies`. ``judge``: an ``nn.Module`` or callable ``images [N, C, H, W] in
    [0, 1] → logits [N, K]`` on the generator's device, or a name for :func:`load_judge`
    (``"builtin:fashion-classifier"``, ``"builtin:shapes-classifier"``, a saved classifier's
    stem, ``module:factory``); without one, consistency and feature change are ``None``.
    ``feature_fn`` overrides the judge's features. ``samples`` anchor/view pairs per policy
    (≥ 128), decoded and judged ``batch_size`` at a time; ``mi`` True (InfoNCE with
    :data:`MI_DEFAULTS`), a dict overriding them, or False (no I(x0; x1)). ``mi_report`` ranks the
    groups for the default candidates (default: the generator's stored report). ``change``
    (``"pixel"`` or ``"feature"``) is the change axis of the front and the recommendation,
    ``min_consistency`` the floor of the judged recommendation (default
    :data:`~mlvgm_data.mi.quality_report.DEFAULT_MIN_CONSISTENCY`).
    ``name`` names an in-memory generator in the report (and finds its stored MI report);
    ``command`` is recorded as what made the report.
    """
    if isinstance(generator, (str, Path)):
        name = name or str(generator)
        generator = load_generator(generator)
    check_generator(generator)
    spec = generator.latent_spec
    samples = check_int(samples, "samples", MIN_SAMPLES)
    seed = check_int(seed, "seed", 0, 2**32 - 1000)
    batch_size = check_int(batch_size, "batch_size", 1)
    mi_opts = _checked_mi(mi)
    min_consistency = _checked_choice(change, min_consistency, judge is not None)
    report, mi_policy, ranking = _mi_inputs(name, mi_report)
    cands = _candidates(spec, report, mi_policy) if policies is None else _checked_policies(policies, spec)
    start = time.monotonic()
    pairs = _Pairs(generator, samples, seed, batch_size, judge, feature_fn)
    measured = {}
    for cand_name, policy, origin in tqdm(cands, desc="view quality", disable=not progress):
        measured[cand_name] = _measure(pairs, policy, origin, mi_opts, seed, f"I(x0; x1) {cand_name}")
    mi_name = next((n for n, p, _ in cands if mi_policy is not None and p == mi_policy), None)
    settings = _settings(generator, name, judge, pairs, samples, seed, batch_size, mi_opts, change, ranking)
    settings["elapsed_s"] = time.monotonic() - start
    settings["min_consistency"] = min_consistency
    return ViewQualityReport(measured, settings, mi_name, command)


def _settings(generator: object, name: str | None, judge: object, pairs: _Pairs, samples: int, seed: int,
              batch_size: int, mi: dict | None, change: str, ranking: str) -> dict:
    gen_name = name or type(generator).__name__
    notes = []
    if pairs.judge is None:
        notes.append("No judge: consistency and feature change are not measured (null); policies are ranked by "
                     "I(x0; x1) and the recommendation is the label-free MI rule.")
    elif pairs.judge.feature_source.startswith("logits"):
        notes.append("Feature change is 1 − cos of the judge's logits: the judge exposes no features.")
    agreement = pairs.class_agreement()
    if getattr(generator, "num_classes", None):
        notes.append(f"{gen_name} is class-conditional: every view shares its anchor's class input, so consistency "
                     "measures whether the judge still sees the class the generator was given (even views with every "
                     "group resampled, two samples of one class, keep it often), not whether a class-free view keeps "
                     "it" + ("" if agreement is None else
                                                   f"; the judge gives {100 * agreement:.1f} % of anchors that class")
                     + ".")
    if mi is not None:
        notes.append(f"I(x0; x1): InfoNCE lower bound on image pairs (raw; ceiling log B, B ≤ {mi['eval_batch']}; "
                     f"held out, 95 % bootstrap interval), {mi['steps']} critic steps.")
    notes.append("Consistency: Wilson 95 % interval; pixel and feature change: mean ± 1.96 s/√n.")
    return {"generator": gen_name, "judge": None if judge is None else pairs.judge.name,
            "feature_source": None if pairs.judge is None else pairs.judge.feature_source,
            "classes": None if pairs.judge is None else pairs.judge.classes, "samples": samples, "seed": seed,
            "batch_size": batch_size, "mi": mi, "change": change, "ranking": ranking,
            "conditional": bool(getattr(generator, "num_classes", None)), "class_agreement": agreement,
            "device": str(pairs.device), "threads": torch.get_num_threads(), "notes": notes}


def recommend_policy(generator: object, judge: object = None, *, min_consistency: float | None = None,
                     mi_report: object = None, name: str | None = None, **options) -> Recommendation:
    """The recommended view policy and how it was chosen (``chosen_with``). With a ``judge``:
    :func:`view_quality` over the default candidates (or ``policies=``), then the most change at
    ``min_consistency`` on the front (:meth:`ViewQualityReport.recommendation`); without one, the
    label-free MI rule: the MI report's recommendation (``mi_report``, or the generator's stored
    one) without measuring anything when there is one, else :func:`view_quality` without a judge."""
    if judge is None:
        if min_consistency is not None:
            raise ValueError("min_consistency needs a judge (without one the label-free MI rule decides)")
        gen_name = name or (str(generator) if isinstance(generator, (str, Path)) else None)
        report, policy, source = _mi_inputs(gen_name, mi_report)
        if policy is not None and "policies" not in options:
            where = source if report is not None and report.candidates else f"the policy stored for {gen_name}"
            return Recommendation("MI-recommended", policy, CHOSEN_LABEL_FREE, f"the MI recommendation ({where})")
    report = view_quality(generator, options.pop("policies", None), judge, mi_report=mi_report, name=name, **options)
    return report.recommendation(min_consistency)
