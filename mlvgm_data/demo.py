"""The main job: self-supervised learning on generated views against real views.

``run_demo`` (what ``mlvgm-data demo`` and ``make demo`` run) uses the shipped generator:

1. measures each latent group's information with the MI utility and takes its recommended view
   policy; writes the MI chart and grids of anchor/view sets under that policy and under the
   paper-style baseline (a small σ on every group);
2. trains the same small encoder with the same objective for the same number of steps on
   (a) Continuous-Sampling generated views (recommended policy + SimCLR augmentations),
   (b) real Shapes images with the SimCLR augmentations, (c) generated views under the baseline
   policy, and keeps (d) a randomly initialised encoder;
3. fits linear probes on frozen features of held-out real Shapes images: shape class accuracy
   (the headline), hue and scale R²;
4. writes ``demo_report.json`` / ``demo_report.md`` and prints the table.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch

from . import mi
from .augment import ViewAugment, simclr
from .data.shapes import Shapes
from .data.shapes import num_classes as shapes_num_classes
from .generators import load_generator
from .pipe import ViewPairPipe
from .producers import ThreadProducer
from .step import ViewBatch
from .ssl import ConvEncoder, embed, linear_probe, make_method, ridge_r2
from .views import Perturb, ViewPolicy
from .viz import save_view_grid

RUNS = ("generated", "real", "baseline_policy", "random")
BASELINE_SIGMA = 0.2


@dataclass
class DemoConfig:
    """Every knob of the demo; the defaults are the README's run (one seed, ≤ 10 min on 2 cores)."""

    generator: str = "builtin:shapes"
    out: str = "demo_out"
    method: str = "simclr"
    seeds: int = 1
    steps: int = 400
    batch_size: int = 128
    width: int = 16
    lr: float = 2e-3
    temperature: float = 0.2
    real_train: int = 20_000
    probe_train: int = 5_000
    probe_test: int = 2_000
    mi_samples: int = 2048
    mi_steps: int = 200
    mi_budget: float | None = 120.0
    prefetch: int = 2
    device: str = "cpu"
    progress: bool = True
    quick: bool = False

    @classmethod
    def quick_config(cls, **overrides: Any) -> "DemoConfig":
        """The ``--quick`` sizes (≤ 2 min on 2 cores): a smoke run, not a measurement."""
        base = dict(steps=40, batch_size=64, width=16, real_train=2_000, probe_train=1_000, probe_test=500,
                    mi_samples=512, mi_steps=40, mi_budget=30.0, quick=True)
        base.update(overrides)
        return cls(**base)


@dataclass
class RunResult:
    probe_accuracy: float
    hue_r2: float
    scale_r2: float
    pairs_per_s: float | None
    train_seconds: float | None
    final_loss: float | None
    seeds: dict[str, list[float]] = field(default_factory=dict)


# --- data sources --------------------------------------------------------------------------

class RealViews:
    """SimCLR views of a fixed set of real Shapes images, shuffled every epoch, made ahead by the
    same thread producer the pipe uses (so the comparison with generated views is fair)."""

    def __init__(self, images: torch.Tensor, augment: ViewAugment, batch_size: int, seed: int, steps: int,
                 prefetch: int) -> None:
        self.images, self.augment, self.batch_size = images, augment, batch_size
        self.seed, self.steps, self.prefetch = seed, steps, prefetch
        self.per_epoch = len(images) // batch_size

    def _work(self, step: int) -> ViewBatch:
        epoch, k = divmod(step, self.per_epoch)
        order = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        idx = order[k * self.batch_size:(k + 1) * self.batch_size]
        x = self.images[idx].unsqueeze(0).expand(2, -1, -1, -1, -1)
        views = self.augment(x, self.seed, step, stream=1, sample_offset=0)
        return ViewBatch(tuple(views.unbind(0)), torch.full((len(idx),), -1))

    def __iter__(self) -> Iterator[ViewBatch]:
        producer = ThreadProducer(self._work, iter(range(self.steps)), self.prefetch)
        try:
            while True:
                try:
                    yield producer.get()
                except StopIteration:
                    return
        finally:
            producer.close()


# --- training and evaluation ------------------------------------------------------------------

def train_encoder(batches: Iterable[ViewBatch], cfg: DemoConfig, seed: int, desc: str) -> tuple[torch.nn.Module, dict]:
    """Trains ``ConvEncoder`` with ``cfg.method`` on ``cfg.steps`` batches; returns it and stats."""
    from tqdm import tqdm

    device = torch.device(cfg.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_method(cfg.method, ConvEncoder(cfg.width), cfg.temperature).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train()
    losses: list[float] = []
    bar = tqdm(total=cfg.steps, desc=desc, disable=not cfg.progress, unit="step", leave=False)
    t0 = time.perf_counter()
    pairs = 0
    for step, batch in enumerate(batches):
        if step == cfg.steps:
            break
        x0, x1 = (v.to(device, non_blocking=True) for v in batch.views[:2])
        loss = model.loss(x0, x1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if hasattr(model, "update_target"):
            model.update_target()
        losses.append(loss.item())
        pairs += len(x0)
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    seconds = time.perf_counter() - t0
    bar.close()
    if len(losses) != cfg.steps:
        raise RuntimeError(f"{desc}: the data source ended after {len(losses)} of {cfg.steps} steps")
    final = statistics.fmean(losses[-max(1, cfg.steps // 10):])
    return model.encoder, {"pairs_per_s": pairs / seconds, "train_seconds": seconds, "final_loss": final}


@dataclass
class ProbeData:
    train_images: torch.Tensor
    train_factors: torch.Tensor
    test_images: torch.Tensor
    test_factors: torch.Tensor


def probe_data(cfg: DemoConfig, offset: int) -> ProbeData:
    """Held-out real Shapes (indices after the SSL training set) for the linear probes."""
    shapes = Shapes(offset + cfg.probe_train + cfg.probe_test, resolution=32, seed=0)
    train_idx = torch.arange(offset, offset + cfg.probe_train)
    test_idx = torch.arange(offset + cfg.probe_train, offset + cfg.probe_train + cfg.probe_test)
    xtr, _, ftr = shapes.render(train_idx)
    xte, _, fte = shapes.render(test_idx)
    return ProbeData(xtr, ftr, xte, fte)


def evaluate(encoder: torch.nn.Module, data: ProbeData, device: torch.device) -> dict[str, float]:
    """Shape-class accuracy of a linear probe, and R² of hue (as cos/sin) and scale."""
    encoder = encoder.to(device)
    ftr = embed(encoder, data.train_images.to(device)).cpu()
    fte = embed(encoder, data.test_images.to(device)).cpu()
    cls_tr, cls_te = data.train_factors[:, 0].long(), data.test_factors[:, 0].long()
    acc = linear_probe(ftr, cls_tr, fte, cls_te).accuracy

    def circle(h: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.cos(2 * math.pi * h), torch.sin(2 * math.pi * h)], dim=1)

    hue = ridge_r2(ftr, circle(data.train_factors[:, 1]), fte, circle(data.test_factors[:, 1]))
    scale = ridge_r2(ftr, data.train_factors[:, 2], fte, data.test_factors[:, 2])
    return {"probe_accuracy": acc, "hue_r2": hue, "scale_r2": scale}


# --- the demo --------------------------------------------------------------------------------

def _summarise(per_seed: list[dict[str, Any]]) -> RunResult:
    def mean(key: str) -> float | None:
        values = [r[key] for r in per_seed if r.get(key) is not None]
        return statistics.fmean(values) if values else None

    seeds = {k: [r[k] for r in per_seed] for k in ("probe_accuracy", "hue_r2", "scale_r2")}
    return RunResult(mean("probe_accuracy"), mean("hue_r2"), mean("scale_r2"), mean("pairs_per_s"),
                     mean("train_seconds"), mean("final_loss"), seeds)


def markdown_table(runs: dict[str, RunResult], steps: int, seeds: int) -> str:
    def spread(values: list[float]) -> str:
        if len(values) < 2:
            return ""
        return f" ± {statistics.stdev(values) * 100:.1f}"

    names = {"generated": "(a) generated views, MI-recommended policy", "real": "(b) real images",
             "baseline_policy": f"(c) generated views, σ = {BASELINE_SIGMA} on every group",
             "random": "(d) random encoder (no training)"}
    lines = [f"| run ({steps} steps, {seeds} seed{'s' if seeds > 1 else ''}) | shape accuracy % | hue R² | scale R² | "
             "training pairs/s |", "|---|---:|---:|---:|---:|"]
    for key in RUNS:
        r = runs[key]
        pps = "—" if r.pairs_per_s is None else f"{r.pairs_per_s:,.0f}"
        lines.append(f"| {names[key]} | {r.probe_accuracy * 100:.1f}{spread(r.seeds['probe_accuracy'])} | "
                     f"{r.hue_r2:.2f} | {r.scale_r2:.2f} | {pps} |")
    return "\n".join(lines)


def run_demo(cfg: DemoConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs the whole demo; returns the JSON report (also written under ``cfg.out``)."""
    if cfg.seeds < 1 or cfg.steps < 1 or cfg.batch_size < 2:
        raise ValueError("seeds and steps must be >= 1 and batch_size >= 2")
    started = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device)
    generator = load_generator(cfg.generator, device)
    spec = generator.latent_spec
    size = generator.image_shape[-1]

    log(f"[1/4] MI analysis of {cfg.generator} ({', '.join(spec.names)})")
    report = mi.analyze(generator, samples=cfg.mi_samples, steps=cfg.mi_steps, budget=cfg.mi_budget, seed=0,
                        progress=cfg.progress)
    policy = report.recommend_policy()
    baseline = ViewPolicy.uniform(spec, Perturb(BASELINE_SIGMA))
    report.to_json(out / "mi_report.json")
    chart = report.plot(out / "mi.png")
    log(report.to_markdown())
    log(f"recommended policy: {json.dumps(policy.to_dict())}")

    log("[2/4] view grids")
    grids = {"recommended": str(save_view_grid(generator, policy, out / "views_recommended.png")),
             "baseline_policy": str(save_view_grid(generator, baseline, out / "views_baseline.png"))}

    log("[3/4] SSL training runs")
    augment = simclr(size)
    real_images = Shapes(cfg.real_train, resolution=size, seed=0).render(torch.arange(cfg.real_train))[0]
    probes = probe_data(cfg, offset=cfg.real_train)
    per_seed: dict[str, list[dict[str, Any]]] = {k: [] for k in RUNS}
    for seed in range(cfg.seeds):
        sources = {
            "generated": ViewPairPipe(generator, policy, cfg.batch_size, seed=seed, augment=augment,
                                      steps=cfg.steps, prefetch=cfg.prefetch),
            "real": RealViews(real_images, augment, cfg.batch_size, seed, cfg.steps, cfg.prefetch),
            "baseline_policy": ViewPairPipe(generator, baseline, cfg.batch_size, seed=seed, augment=augment,
                                            steps=cfg.steps, prefetch=cfg.prefetch),
        }
        for name, source in sources.items():
            encoder, stats = train_encoder(source, cfg, seed, f"{name} seed {seed}")
            result = evaluate(encoder, probes, device) | stats
            per_seed[name].append(result)
            log(f"  {name:16s} seed {seed}: accuracy {result['probe_accuracy'] * 100:.1f} %, "
                f"{stats['pairs_per_s']:.0f} pairs/s")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random_encoder = ConvEncoder(cfg.width)
        per_seed["random"].append(evaluate(random_encoder, probes, device)
                                  | {"pairs_per_s": None, "train_seconds": None, "final_loss": None})

    log("[4/4] report")
    runs = {k: _summarise(v) for k, v in per_seed.items()}
    table = markdown_table(runs, cfg.steps, cfg.seeds)
    doc = {
        "runs": {k: asdict(r) | {"probe_accuracy_seeds": r.seeds["probe_accuracy"]} for k, r in runs.items()},
        "policy": policy.to_dict(),
        "baseline_policy": baseline.to_dict(),
        "mi": json.loads((out / "mi_report.json").read_text()),
        "pictures": {"mi_chart": str(chart), **grids},
        "config": asdict(cfg),
        "seconds": time.perf_counter() - started,
    }
    (out / "demo_report.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    (out / "demo_report.md").write_text(
        f"# mlvgm-data demo\n\nGenerator `{cfg.generator}`, method `{cfg.method}`, {cfg.steps} steps of "
        f"batch {cfg.batch_size}, linear probe on {cfg.probe_train} / {cfg.probe_test} held-out real Shapes "
        f"(chance {100 / shapes_num_classes:.1f} %).\n\n{table}\n\nRecommended policy: `{json.dumps(policy.to_dict())}`\n\n"
        f"## MI analysis\n\n{report.to_markdown()}\n\n![MI chart](mi.png)\n\n"
        "## Views (rows: anchors; column 0: the anchor)\n\nRecommended policy:\n\n![views](views_recommended.png)\n\n"
        f"Baseline σ = {BASELINE_SIGMA}:\n\n![views](views_baseline.png)\n"
    )
    log(table)
    log(f"wrote {out / 'demo_report.json'}, {out / 'demo_report.md'} and pictures in {out} "
        f"({doc['seconds']:.0f} s)")
    return doc
