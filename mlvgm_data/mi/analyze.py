"""Per-group MI analysis of a generator and the measured view-policy recommendation.

For each latent group g (the paper's protocol, with held-out critics and intervals):

- I(z_g; x): images from fresh latents, a Barber–Agakov bound with H(z_g) in closed form
  (all groups share one conv trunk, one Gaussian head per group);
- I(x; x′): x′ decoded from the same latents with only g resampled, an InfoNCE bound with a
  shared conv critic. A low value means g changes the image a lot.

Candidate policies keep the groups that matter most to the image (resampling them lowers I(x; x′)
most: the paper's criterion) and perturb or resample the rest; each is measured (I(x0; x1) of its
views) and ``MIReport.recommend_policy`` picks the one nearest a target.
"""

from __future__ import annotations

import time
from typing import Sequence

import torch
from tqdm.auto import tqdm

from .._checks import check_int, check_number
from ..generators.base import decode_views, eval_mode, generator_device
from ..latents import LatentGroup, LatentSpec
from ..policy import Perturb, Resample, Rule, ViewPolicy
from .estimators import MIEstimate, ba_multi, infonce
from .report import Candidate, GroupMI, MIReport

_STREAM_ANCHORS = 0
_STREAM_UNTIED = 1
PERTURB_TRUNC = 2.0
"""Candidate perturbations are truncated at ±2σ (GenRep's setting)."""


class _Clock:
    """Splits an optional time budget evenly over the tasks still to run."""

    def __init__(self, budget: float | None, tasks: int) -> None:
        self.start = time.monotonic()
        self.budget = budget
        self.tasks = tasks

    def share(self) -> float | None:
        if self.budget is None:
            return None
        left = self.budget - (time.monotonic() - self.start)
        share = max(left, 0.0) / max(self.tasks, 1)
        self.tasks -= 1
        return max(share, 0.5)

    def add(self, n: int) -> None:
        self.tasks += n

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start


def generate(
    generator: object,
    spec: LatentSpec,
    policy: ViewPolicy,
    n: int,
    num_views: int,
    seed: int,
    stream: int,
    decode_batch: int,
    out_device: torch.device,
    views: Sequence[int] | None = None,
) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """Decodes ``n`` samples of the chosen ``views`` under ``policy`` (latents from
    ``decode_views``, one decode per chunk, in eval mode); returns the images per view
    (float32 on ``out_device``) and view 0's latents (on the CPU)."""
    views = list(range(num_views)) if views is None else list(views)
    images: list[list[torch.Tensor]] = [[] for _ in views]
    anchors: dict[str, list[torch.Tensor]] = {g.name: [] for g in spec}
    for step, start in enumerate(range(0, n, decode_batch)):
        size = min(decode_batch, n - start)
        with eval_mode(generator):  # a train-mode generator's batch norm would mix the samples
            made = decode_views(generator, policy, size, num_views, seed=seed, step=step, stream=stream, views=views,
                                spec=spec)
        for g in spec:
            anchors[g.name].append(made.latents[g.name][0].cpu().clone())
        for i in range(len(views)):
            images[i].append(made.images[i].to(out_device, torch.float32))
    return [torch.cat(chunks) for chunks in images], {k: torch.cat(v) for k, v in anchors.items()}


def _sq_change(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean squared pixel difference per image between paired images."""
    return float((a - b).flatten(1).pow(2).sum(1).mean())


def _rule_name(rule: Rule) -> str:
    if isinstance(rule, Perturb):
        return f"perturb σ={rule.sigma:g}"
    return "resample" if isinstance(rule, Resample) else "keep"


def candidate_policies(
    informative: Sequence[str],
    underused: Sequence[str],
    anchor_trunc: float | None,
    sigmas: Sequence[float],
) -> list[tuple[ViewPolicy, tuple[str, ...], str]]:
    """Policies that keep the first k of the ``informative`` groups (ordered content first; k ≥ 1
    when there are two or more) and apply one rule (Perturb(σ) for each σ, or Resample) to the
    other informative groups; under-used groups are resampled (they barely change the image)."""
    rules: list[Rule] = [Perturb(s, trunc=PERTURB_TRUNC) for s in sigmas] + [Resample(anchor_trunc)]
    ks = range(1, len(informative)) if len(informative) > 1 else range(0, 1)
    out = []
    for k in ks:
        kept, changed = tuple(informative[:k]), list(informative[k:])
        for rule in rules:
            policy_rules = {g: rule for g in changed}
            policy_rules.update({g: Resample(anchor_trunc) for g in underused})
            parts = [f"keep {', '.join(kept)}" if kept else "keep nothing",
                     f"{_rule_name(rule)}: {', '.join(changed)}"]
            if underused:
                parts.append(f"resample (under-used): {', '.join(underused)}")
            out.append((ViewPolicy(policy_rules, anchor_trunc=anchor_trunc), kept, "; ".join(parts)))
    return out


def analyze(
    generator: object,
    groups: Sequence[str] | None = None,
    *,
    samples: int = 2048,
    steps: int = 300,
    batch_size: int = 128,
    seed: int = 0,
    budget: float | None = None,
    anchor_trunc: float | None = None,
    threshold: float = 0.05,
    candidates: bool = True,
    sigmas: Sequence[float] = (0.5, 1.0),
    eval_batch: int = 1024,
    width: int = 16,
    image_res: int = 16,
    decode_batch: int = 256,
    device: torch.device | str | None = None,
    name: str | None = None,
    progress: bool = True,
) -> MIReport:
    """Measures each latent group's information in a generator's images.

    ``generator``: an MLVGM (``latent_spec`` + ``decode``). ``groups``: the groups to analyse
    (default all; the others are kept fixed). ``samples`` paired samples per estimate (two
    thirds train the critic, a third is held out), ``steps`` critic steps, ``budget`` an optional
    cap in seconds for the whole analysis (split over the estimates; reaching it makes the numbers
    depend on machine speed, which the report says). ``anchor_trunc`` truncates the latents as in
    the truncation trick (H(z_g) then uses the truncated normal). A group is under-used when its I(z_g; x) is below
    ``threshold`` × the largest and resampling it moves the pixels by at most ``threshold`` × the
    largest group's move (above the decoder's own noise floor). With ``candidates`` the policies of
    :func:`candidate_policies` are measured now (``sigmas`` for the perturbations), otherwise when
    ``recommend_policy`` first needs them. Critics (``width`` channels, images pooled to at most
    ``image_res`` pixels a side) train on ``device`` (default: the generator's).
    """
    names = _checked_groups(generator, groups)
    check_int(samples, "samples", 128)
    check_int(steps, "steps", 1)
    check_int(decode_batch, "decode_batch", 1)
    seed = check_int(seed, "seed", 0, 2**32 - 1000)
    threshold = check_number(threshold, "threshold", 0.0, 1.0, strict_low=True)
    ViewPolicy({}, anchor_trunc=anchor_trunc)  # validates anchor_trunc
    sigmas = tuple(Perturb(float(s)).sigma for s in sigmas)
    dev = generator_device(generator) if device is None else torch.device(device)
    settings = {
        "generator": name or type(generator).__name__, "groups": names, "samples": samples, "steps": steps,
        "batch_size": batch_size, "seed": seed, "anchor_trunc": anchor_trunc, "sigmas": list(sigmas),
        "eval_batch": eval_batch, "critic_width": width, "critic_image_res": image_res, "device": str(dev),
        "budget_s": budget,
    }
    critic = dict(steps=steps, batch_size=batch_size, width=width, image_res=image_res, device=dev, progress=progress)
    run = _Analysis(generator, names, settings, critic, decode_batch, eval_batch, budget, progress)
    report = _measure(run, names, threshold)
    if candidates and run.informative:
        report.measured_candidates()
    run.on_demand = True  # candidates asked for later get a budget of their own
    return report


def _checked_groups(generator: object, groups: Sequence[str] | None) -> list[str]:
    spec = getattr(generator, "latent_spec", None)
    if not isinstance(spec, LatentSpec) or not callable(getattr(generator, "decode", None)):
        raise ValueError("generator must be an MLVGM: a latent_spec (LatentSpec) and a decode(latents) method")
    names = list(spec.names) if groups is None else list(groups)
    if not names:
        raise ValueError("groups must name at least one latent group")
    for g in names:
        spec.index(g)
    if len(set(names)) != len(names):
        raise ValueError(f"groups has duplicates: {names}")
    return names


def _measure(run: _Analysis, names: list[str], threshold: float) -> MIReport:
    """The per-group estimates, the noise floor and the under-use rule, as a report."""
    bar = tqdm(total=2 + len(names), desc="MI analysis", disable=not run.progress)
    latent = run.latent_mi()
    bar.update(1)
    image, change = {}, {}
    for g in names:
        image[g], change[g] = run.image_mi(g)
        bar.update(1)
    floor = run.noise_floor()
    bar.update(1)
    bar.close()
    dims = {g: run.spec[g].numel for g in names}
    groups_mi, underused, informative = _underuse(dims, latent, image, change, floor, threshold)
    run.informative = informative
    report = MIReport(groups_mi, float(threshold), run.settings, measure=lambda: run.candidates(informative, underused))
    report.settings["elapsed_s"] = run.clock.elapsed
    return report


def _underuse(dims: dict[str, int], latent: dict[str, MIEstimate], image: dict[str, MIEstimate],
              change: dict[str, float], floor: float, threshold: float
              ) -> tuple[dict[str, GroupMI], list[str], list[str]]:
    """The per-group rows, the under-used groups and the informative ones (content first)."""
    names = list(dims)
    excess = {g: max(change[g] - floor, 0.0) for g in names}
    top_change = max(excess.values())
    top = max(max(e.value for e in latent.values()), 0.0)
    total = sum(max(e.value, 0.0) for e in latent.values())
    # Under-used needs two signs to agree: the image reveals little of g (BA), and resampling g
    # barely moves the pixels. The second guards against a Gaussian q(z_g|x) that misses a
    # multimodal posterior (a latent symmetry) and so under-reads a group that matters.
    rows = {
        g: GroupMI(g, dims[g], latent[g], image[g], max(latent[g].value, 0.0) / total if total > 0 else 0.0,
                   latent[g].value <= threshold * top and excess[g] <= threshold * top_change,
                   excess[g] / top_change if top_change > 0 else 0.0)
        for g in names
    }
    underused = [g for g in names if rows[g].underused]
    # Content first: the groups whose resampling changes the image most (lowest I(x; x′)).
    informative = [g for g in sorted(names, key=lambda n: (image[n].value, -excess[n])) if g not in underused]
    return rows, underused, informative


class _Analysis:
    """The state one analysis shares between its steps: the anchors and their images, the time
    budget, the settings that end up in the report."""

    def __init__(self, generator: object, names: list[str], settings: dict, critic: dict, decode_batch: int,
                 eval_batch: int, budget: float | None, progress: bool) -> None:
        self.generator, self.spec, self.names = generator, generator.latent_spec, names
        self.settings = settings | {"truncated": False}
        self.critic, self.decode_batch, self.eval_batch = critic, decode_batch, eval_batch
        self.budget, self.progress = budget, progress
        self.samples, self.seed = settings["samples"], settings["seed"]
        self.anchor_trunc = settings["anchor_trunc"]
        self.clock = _Clock(budget, 1 + len(names))
        self.on_demand = False
        self.informative: list[str] = []  # groups the under-use rule keeps (set by _measure)
        # One set of anchors serves every estimate: I(z_g; x), and x0 of every I(x0; x1).
        self.keep_all = ViewPolicy({}, anchor_trunc=self.anchor_trunc)
        (self.x0,), self.anchors = self._generate(self.keep_all, self.samples, 1)

    def _generate(self, policy: ViewPolicy, n: int, num_views: int, spec: LatentSpec | None = None,
                  stream: int = _STREAM_ANCHORS, views: Sequence[int] | None = None):
        return generate(self.generator, spec or self.spec, policy, n, num_views, self.seed, stream,
                        self.decode_batch, self.critic["device"], views=views)

    def _note(self, estimate: MIEstimate) -> MIEstimate:
        self.settings["truncated"] |= estimate.truncated
        return estimate

    def latent_mi(self) -> dict[str, MIEstimate]:
        """I(z_g; x) of every group: one Barber–Agakov critic with a head per group."""
        untied = any(g.tie is not None for g in self.spec)
        self.settings["tied_groups_sampled_independently"] = untied
        if untied:
            # Tied groups share their anchor; I(z_g; x) asks about each group's own copy, so those
            # latents are drawn independently per group.
            free = LatentSpec([LatentGroup(g.name, g.shape) for g in self.spec])
            (x_lat,), z_lat = self._generate(self.keep_all, self.samples, 1, spec=free, stream=_STREAM_UNTIED)
        else:
            x_lat, z_lat = self.x0, self.anchors
        y_dist: object = "normal" if self.anchor_trunc is None else ("truncnormal", self.anchor_trunc)
        latent = ba_multi(x_lat, {g: z_lat[g] for g in self.names}, {g: y_dist for g in self.names}, seed=self.seed,
                          budget=self.clock.share(), desc="I(z; x) [ba]", **self.critic)
        for e in latent.values():
            self._note(e)
        self.settings["entropy_source"] = next(iter(latent.values())).entropy_source
        return latent

    def views_mi(self, policy: ViewPolicy, desc: str) -> tuple[MIEstimate, float]:
        """InfoNCE I(x0; x1) between the anchors and their views under ``policy``, and the pixel
        change. Every critic splits the anchors the same way (one seed): no critic trains on an
        anchor that another estimate holds out."""
        (x1,), _ = self._generate(policy, self.samples, 2, views=[1])
        est = infonce(self.x0, x1, shared=True, eval_batch=self.eval_batch, seed=self.seed, budget=self.clock.share(),
                      desc=desc, **self.critic)
        return self._note(est), _sq_change(self.x0, x1)

    def image_mi(self, g: str) -> tuple[MIEstimate, float]:
        """I(x; x′) with only g resampled, and the pixel change it makes."""
        return self.views_mi(ViewPolicy({g: Resample(self.anchor_trunc)}, anchor_trunc=self.anchor_trunc),
                             f"I(x; x') {g} resampled [infonce]")

    def noise_floor(self) -> float:
        """The decoder's own pixel noise: the same latents decoded twice. A decoder that repeats
        its first chunk bit for bit is taken as deterministic without decoding the rest."""
        first = min(self.samples, self.decode_batch)
        (again,), _ = self._generate(self.keep_all, first, 1)
        if not torch.equal(again, self.x0[:first]):
            (again,), _ = self._generate(self.keep_all, self.samples, 1)
        floor = _sq_change(self.x0[: again.shape[0]], again)
        self.settings["pixel_noise_floor"] = floor
        return floor

    def candidates(self, informative: list[str], underused: list[str]) -> list[Candidate]:
        """Measures :func:`candidate_policies` (the report calls this when it needs them)."""
        if not informative:
            raise ValueError("every analysed group is under-used: no group carries information to keep or change")
        policies = candidate_policies(informative, underused, self.anchor_trunc, self.settings["sigmas"])
        if self.on_demand:
            self.clock = _Clock(self.budget, 0)
        self.clock.add(len(policies))
        out = []
        for j, (policy, kept, desc) in enumerate(tqdm(policies, desc="candidate policies", disable=not self.progress)):
            mi, _ = self.views_mi(policy, f"I(x0; x1) candidate {j + 1} [infonce]")
            out.append(Candidate(policy, mi, kept, desc))
        self.settings["candidates_elapsed_s" if self.on_demand else "elapsed_s"] = self.clock.elapsed
        return out
