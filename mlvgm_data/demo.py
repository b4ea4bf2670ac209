"""The main job: self-supervised learning on generated views, measured against real images.

``run_demo`` (what ``mlvgm-data demo`` and ``make demo`` run) takes a shipped generator —
``builtin:fashion`` (unconditional, trained on Fashion-MNIST without labels) or
``builtin:shapes`` — and its MI-recommended view policy, then trains the same small encoder
with the same objective, optimiser, augmentations, steps and batch on:

(a) ``generated``: views from the pipe, the MI-recommended policy, fresh latents every step
    (Continuous Sampling);
(b) ``real``: the real training images, shuffled every epoch;
(c) ``baseline_policy``: generated, σ = 0.2 added to every group (mi_ml_gen's "gaussian" views);
(d) ``augment_only``: generated, no latent change (views differ by the augmentation only);
(e) ``fixed_set``: generated with the recommended policy from a fixed set of anchors (as many as
    real training images), reused every epoch: an offline generated dataset;

and keeps (f) ``random``, a randomly initialised encoder, and (g) ``pixels``, the raw pixels.
Evaluation is the usual linear protocol: frozen features of the real train split, a linear
classifier (L-BFGS) tested on the real test split, plus k-NN accuracy (k = 20, cosine); mean ± sd
over seeds. Pictures: anchor/view grids of (a), (c), (d), the MI chart, and probe accuracy against
SSL steps for (a), (b), (e).

Why one file (over 450 lines): the runs, the data sources they train on, the evaluation and the
report are one experiment whose table is generated from :data:`RUNS` and :data:`LABELS` here;
the command line is in ``commands/demo.py``.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch

from . import ops
from ._io import write_text
from ._threads import torch_threads
from .augment import ViewAugment, fashion
from .generators import load_generator, recommended_policy
from .generators.base import decode_views
from .pipe import ViewPairPipe
from .producers import ThreadProducer
from .ssl import ConvEncoder, embed, knn_accuracy, linear_probe, make_method
from .step import ViewBatch
from .policy import Perturb, ViewPolicy
from .viz import save_view_grid

RUNS = ("generated", "real", "baseline_policy", "augment_only", "fixed_set", "random", "pixels")
TRAINED = RUNS[:5]
CURVES = ("generated", "real", "fixed_set")
BASELINE_SIGMA = 0.2
DATA = ("fashion-mnist", "shapes")
DEFAULT_GENERATOR = {"fashion-mnist": "builtin:fashion", "shapes": "builtin:shapes"}
LABELS = {
    "generated": "(a) generated views, MI-recommended policy, Continuous Sampling",
    "real": "(b) real images",
    "baseline_policy": f"(c) generated views, σ = {BASELINE_SIGMA} on every group",
    "augment_only": "(d) generated views, no latent change (augmentation only)",
    "fixed_set": "(e) generated, recommended policy, fixed anchor set reused every epoch",
    "random": "(f) random encoder (no training)",
    "pixels": "(g) raw pixels",
}
# Published and measured reference points on the Fashion-MNIST test set (REFERENCE.md).
FASHION_REFERENCES = (("human", "83.5"), ("logistic regression on the raw pixels (the dataset's benchmark)", "84.2"),
                      ("2-conv nets trained with labels", "87.6–93.4"))


@dataclass
class DemoConfig:
    """Every knob of the demo; the defaults are the README's run."""

    data: str = "fashion-mnist"
    generator: str | None = None  # default: builtin:fashion / builtin:shapes
    out: str = "demo_out"
    method: str = "simclr"
    seeds: int = 1
    steps: int = 200
    batch_size: int = 256
    width: int = 16
    lr: float = 1e-3
    temperature: float = 0.2
    real_train: int | None = None  # real images for SSL (b) and the fixed set (e); None: the whole split
    fixed_set: int | None = None  # anchors of (e); None: as many as real_train
    probe_train: int | None = None  # real train images for the probes; None: the whole split
    probe_test: int | None = None  # real test images for the probes; None: the whole split
    eval_every: int = 100  # steps between the curve evaluations of (a), (b), (e); 0: none
    curve_probe: int = 10_000  # train and test images of each curve evaluation
    knn_k: int = 20
    probe_iters: int = 200  # L-BFGS iterations of each linear probe
    mi_budget: float | None = None  # seconds: run the MI analysis afresh (None: the stored policy)
    prefetch: int = 2
    # torch's intra-op threads while training (the training step, the producer thread's decode,
    # the curve evaluations): float reductions split per thread, so results repeat only at a
    # fixed count. One leaves the second core of a 2-core machine to the producer.
    threads: int = 1
    # threads of the final evaluations (embedding, probes, k-NN), which run when no producer
    # does: both cores of a 2-core machine (the evaluations are half of a run's time).
    eval_threads: int = 2
    runs: tuple[str, ...] = RUNS  # a subset, e.g. ("generated", "fixed_set") for a longer comparison
    device: str = "cpu"
    progress: bool = True

    @classmethod
    def quick_config(cls, **overrides: Any) -> "DemoConfig":
        """The ``--quick`` sizes (a smoke run of a minute or two): not a measurement."""
        base = dict(steps=30, batch_size=64, real_train=4_000, probe_train=2_000, probe_test=1_000, eval_every=15,
                    curve_probe=1_000)
        base.update(overrides)
        return cls(**base)

    def check(self) -> None:
        """Raises ``ValueError`` naming the first bad field."""
        from ._checks import check_int, check_number

        if self.data not in DATA:
            raise ValueError(f"data must be one of {DATA}, got {self.data!r}")
        if isinstance(self.runs, str) or not self.runs or not set(self.runs) <= set(RUNS):
            raise ValueError(f"runs must be a non-empty subset of {RUNS}, got {self.runs!r}")
        for name, low in (("seeds", 1), ("steps", 1), ("batch_size", 2), ("width", 1), ("knn_k", 1), ("probe_iters", 1),
                          ("eval_every", 0), ("curve_probe", 10), ("prefetch", 0), ("threads", 1), ("eval_threads", 1)):
            check_int(getattr(self, name), name, low)
        for name in ("real_train", "fixed_set", "probe_train", "probe_test"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name, self.batch_size if name in ("real_train", "fixed_set") else 10)
        check_number(self.lr, "lr", 0.0, 1.0, strict_low=True)
        check_number(self.temperature, "temperature", 0.0, 10.0, strict_low=True)
        if self.mi_budget is not None:
            check_number(self.mi_budget, "mi_budget", 0.0, strict_low=True)


@dataclass
class RunResult:
    """One run's figures, averaged over seeds (the lists hold every seed's)."""

    probe_accuracy: float
    probe_sd: float | None
    knn_accuracy: float | None
    pairs_per_s: float | None
    train_seconds: float | None
    final_loss: float | None
    seeds: dict[str, list[float]] = field(default_factory=dict)
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, probe accuracy), mean over seeds


# --- data -------------------------------------------------------------------------------------

@dataclass
class DemoData:
    """The real images of one dataset: SSL training images, probe splits, the augmentation."""

    name: str
    train_images: torch.Tensor  # [N, C, 32, 32] in [0, 1]
    probe_train: tuple[torch.Tensor, torch.Tensor]  # images, labels
    probe_test: tuple[torch.Tensor, torch.Tensor]
    augment: ViewAugment
    num_classes: int

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])


def load_data(cfg: DemoConfig, size: int) -> DemoData:
    """Fashion-MNIST (train split for SSL and the probe's training set, test split for the probe's
    test), padded to the generator's size; or procedural Shapes (disjoint index ranges)."""
    if cfg.data == "fashion-mnist":
        from .data import fashion_mnist_tensors

        train_x, train_y = fashion_mnist_tensors(True, pad_to=size)
        test_x, test_y = fashion_mnist_tensors(False, pad_to=size)
        n_ssl = cfg.real_train or len(train_x)
        ptr, pte = cfg.probe_train or len(train_x), cfg.probe_test or len(test_x)
        return DemoData(cfg.data, train_x[:n_ssl], (train_x[:ptr], train_y[:ptr]), (test_x[:pte], test_y[:pte]),
                        fashion(size), 10)
    from .augment import simclr
    from .data.shapes import Shapes, num_classes

    n_ssl = cfg.real_train or 20_000
    ptr, pte = cfg.probe_train or 5_000, cfg.probe_test or 2_000
    shapes = Shapes(n_ssl + ptr + pte, resolution=size, seed=0)
    images, labels, _ = shapes.render(torch.arange(n_ssl + ptr + pte))
    return DemoData(cfg.data, images[:n_ssl], (images[n_ssl:n_ssl + ptr], labels[n_ssl:n_ssl + ptr]),
                    (images[n_ssl + ptr:], labels[n_ssl + ptr:]), simclr(size), num_classes)


def epoch_order(n: int, seed: int, epoch: int, stream: int) -> torch.Tensor:
    """A permutation of ``range(n)`` from the counter streams (the same on every machine)."""
    keys = ops.uniform(n, 1, seed, epoch, stream=stream, domain=ops.DOMAIN_DATA)[:, 0]
    return torch.argsort(keys, stable=True)


class _Batches:
    """Batches made ahead by the pipe's own thread producer (so every source pays the same)."""

    def __init__(self, steps: int, prefetch: int) -> None:
        self.steps, self.prefetch = steps, prefetch

    def work(self, step: int) -> ViewBatch:
        raise NotImplementedError

    def __iter__(self) -> Iterator[ViewBatch]:
        producer = ThreadProducer(self.work, iter(range(self.steps)), self.prefetch)
        try:
            while True:
                try:
                    yield producer.get()
                except StopIteration:
                    return
        finally:
            producer.close()


class RealViews(_Batches):
    """Augmented views of the real training images, reshuffled every epoch."""

    STREAM = 1

    def __init__(self, images: torch.Tensor, augment: ViewAugment, batch_size: int, seed: int, steps: int,
                 prefetch: int) -> None:
        super().__init__(steps, prefetch)
        self.images, self.augment, self.batch_size, self.seed = images, augment, batch_size, seed
        self.per_epoch = len(images) // batch_size

    def work(self, step: int) -> ViewBatch:
        epoch, k = divmod(step, self.per_epoch)
        idx = epoch_order(len(self.images), self.seed, epoch, self.STREAM)[k * self.batch_size:(k + 1) * self.batch_size]
        views = self.augment(self.images[idx].unsqueeze(0).expand(2, -1, -1, -1, -1), self.seed, step,
                             stream=self.STREAM, sample_ids=idx)
        return ViewBatch(tuple(views.unbind(0)), torch.full((len(idx),), -1))


class FixedSetViews(_Batches):
    """An offline generated dataset: ``size`` fixed anchors with fixed views (the latents of item
    i are the same every time), reshuffled every epoch; only the pixel augmentation is fresh."""

    STREAM = 2

    def __init__(self, generator: torch.nn.Module, policy: ViewPolicy, size: int, augment: ViewAugment,
                 batch_size: int, seed: int, steps: int, prefetch: int) -> None:
        super().__init__(steps, prefetch)
        self.generator, self.policy, self.size, self.augment = generator, policy, size, augment
        self.batch_size, self.seed = batch_size, seed
        self.per_epoch = size // batch_size

    def work(self, step: int) -> ViewBatch:
        epoch, k = divmod(step, self.per_epoch)
        idx = epoch_order(self.size, self.seed, epoch, self.STREAM)[k * self.batch_size:(k + 1) * self.batch_size]
        # Counter step 0 for every draw: item i is one fixed anchor and its fixed views.
        images = decode_views(self.generator, self.policy, len(idx), 2, seed=self.seed, step=0, stream=self.STREAM,
                              sample_ids=idx).images
        views = self.augment(images, self.seed, step, stream=self.STREAM, sample_ids=idx)
        return ViewBatch(tuple(views.unbind(0)), torch.full((len(idx),), -1))


# --- training and evaluation ------------------------------------------------------------------

def encoder_for(cfg: DemoConfig, channels: int, seed: int) -> ConvEncoder:
    """The encoder every run starts from (the same initial weights for a seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ConvEncoder(cfg.width, in_channels=channels)


def train_encoder(batches: Iterable[ViewBatch], cfg: DemoConfig, seed: int, channels: int, desc: str,
                  evaluate_at: Callable[[int, torch.nn.Module], None] | None = None) -> tuple[torch.nn.Module, dict]:
    """Trains ``ConvEncoder`` with ``cfg.method`` on ``cfg.steps`` batches; ``evaluate_at(step,
    encoder)`` runs every ``cfg.eval_every`` steps. Returns the encoder and its training stats."""
    from tqdm import tqdm

    device = torch.device(cfg.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_method(cfg.method, encoder_for(cfg, channels, seed), cfg.temperature).to(device)
    # channels_last: oneDNN's faster convolution layout on CPUs (1.8x per step here)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train()
    losses: list[float] = []
    bar = tqdm(total=cfg.steps, desc=desc, disable=not cfg.progress, unit="step", leave=False)
    train_seconds, pairs = 0.0, 0
    it = iter(batches)
    try:
        t0 = time.perf_counter()
        for step, batch in enumerate(it, start=1):
            x0, x1 = (v.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                      for v in batch.views[:2])
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
            if evaluate_at is not None and cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
                train_seconds += time.perf_counter() - t0
                evaluate_at(step, model.encoder)
                model.train()
                t0 = time.perf_counter()
            if step == cfg.steps:
                break
        train_seconds += time.perf_counter() - t0
    finally:
        # Stop the source's producer before the caller evaluates on more threads: a decode
        # running then would run on that thread count (and give other bits).
        close = getattr(it, "close", None)
        if close is not None:
            close()
    bar.close()
    if len(losses) != cfg.steps:
        raise RuntimeError(f"{desc}: the data source ended after {len(losses)} of {cfg.steps} steps")
    final = statistics.fmean(losses[-max(1, cfg.steps // 10):])
    return model.encoder, {"pairs_per_s": pairs / train_seconds, "train_seconds": train_seconds, "final_loss": final}


def evaluate(features: Callable[[torch.Tensor], torch.Tensor], data: DemoData, cfg: DemoConfig, threads: int,
             probe: tuple[int, int] | None = None, dtype: torch.dtype = torch.float64) -> dict[str, float]:
    """Linear-probe and k-NN accuracy of ``features`` (a frozen map of images to vectors) on
    ``threads`` torch threads: fitted on the real probe train images, tested on the real probe
    test images (the first ``probe`` ``(train, test)`` of each when given)."""
    (xtr, ytr), (xte, yte) = data.probe_train, data.probe_test
    if probe is not None:
        xtr, ytr, xte, yte = xtr[:probe[0]], ytr[:probe[0]], xte[:probe[1]], yte[:probe[1]]
    with torch_threads(threads):
        ftr, fte = features(xtr), features(xte)
        return {"probe_accuracy": linear_probe(ftr, ytr, fte, yte, max_iter=cfg.probe_iters, dtype=dtype).accuracy,
                "knn_accuracy": knn_accuracy(ftr, ytr, fte, yte, k=min(cfg.knn_k, len(ftr)))}


def _encoder_features(encoder: torch.nn.Module, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    encoder = encoder.to(device, memory_format=torch.channels_last)
    return lambda images: embed(encoder, images.to(device).contiguous(memory_format=torch.channels_last)).cpu()


# --- the demo --------------------------------------------------------------------------------

def _summarise(per_seed: list[dict[str, Any]], curves: list[list[tuple[int, float]]]) -> RunResult:
    def mean(key: str) -> float | None:
        values = [r[key] for r in per_seed if r.get(key) is not None]
        return statistics.fmean(values) if values else None

    accs = [r["probe_accuracy"] for r in per_seed]
    curve = [(step, statistics.fmean(c[i][1] for c in curves)) for i, (step, _) in enumerate(curves[0])] if curves else []
    return RunResult(mean("probe_accuracy"), statistics.stdev(accs) if len(accs) > 1 else None,
                     mean("knn_accuracy"), mean("pairs_per_s"), mean("train_seconds"), mean("final_loss"),
                     {"probe_accuracy": accs, "knn_accuracy": [r["knn_accuracy"] for r in per_seed]}, curve)


def markdown_table(runs: dict[str, RunResult], cfg: DemoConfig) -> str:
    """The README's table: probe and k-NN accuracy (mean ± sd over seeds) and training speed."""
    def pct(value: float | None, sd: float | None = None) -> str:
        if value is None:
            return "—"
        return f"{value * 100:.1f}" + ("" if sd is None else f" ± {sd * 100:.1f}")

    seeds = f"{cfg.seeds} seed{'s' if cfg.seeds > 1 else ''}"
    lines = [f"| run ({cfg.method}, {cfg.steps} steps of {cfg.batch_size}, {seeds}) | linear probe % | "
             f"{cfg.knn_k}-NN % | training pairs/s |", "|---|---:|---:|---:|"]
    for key in [k for k in RUNS if k in runs]:
        r = runs[key]
        knn_sd = statistics.stdev(r.seeds["knn_accuracy"]) if len(r.seeds["knn_accuracy"]) > 1 else None
        pps = "—" if r.pairs_per_s is None else f"{r.pairs_per_s:,.0f}"
        lines.append(f"| {LABELS[key]} | {pct(r.probe_accuracy, r.probe_sd)} | {pct(r.knn_accuracy, knn_sd)} | {pps} |")
    if cfg.data == "fashion-mnist":
        for name, value in FASHION_REFERENCES:
            lines.append(f"| *reference: {name}* | *{value}* | | |")
    return "\n".join(lines)


def _policy(cfg: DemoConfig, name: str, generator: torch.nn.Module) -> tuple[ViewPolicy, Any]:
    """The recommended policy (stored with the generator, or measured afresh with ``mi_budget``)
    and the MI report for the chart (``None`` when none is stored)."""
    from . import mi
    from .generators.registry import stored_mi_report

    if cfg.mi_budget is not None:
        report = mi.analyze(generator, budget=cfg.mi_budget, seed=0, progress=cfg.progress)
        return report.recommend_policy(), report
    stored = stored_mi_report(name)
    return recommended_policy(name), (mi.MIReport.from_dict(stored) if stored is not None else None)


def run_demo(cfg: DemoConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs the whole demo on ``cfg.threads`` torch threads (restored after); returns the JSON
    report (also written under ``cfg.out``). The same config and seed on the same machine give
    the same report, whatever ``OMP_NUM_THREADS`` says."""
    cfg.check()
    with torch_threads(cfg.threads):
        return _run_demo(cfg, log)


def _run_demo(cfg: DemoConfig, log: Callable[[str], None]) -> dict[str, Any]:
    started = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device)
    name = cfg.generator or DEFAULT_GENERATOR[cfg.data]
    generator = load_generator(name, device)
    size = generator.image_shape[-1]
    data = load_data(cfg, size)
    if generator.image_shape[0] != data.channels:
        raise ValueError(f"{name} makes {generator.image_shape[0]}-channel images but {cfg.data} has {data.channels}")
    spec = generator.latent_spec

    log(f"[1/4] {name} ({', '.join(spec.names)}) and its view policies")
    policy, report = _policy(cfg, name, generator)
    policies = {"generated": policy, "baseline_policy": ViewPolicy.uniform(spec, Perturb(BASELINE_SIGMA)),
                "augment_only": ViewPolicy({})}
    log(f"recommended policy: {json.dumps(policy.to_dict())}")
    pictures: dict[str, str] = {}
    if report is not None:
        write_text(out / "mi_report.json", json.dumps(report.to_dict(), indent=2) + "\n")
        try:
            pictures["mi_chart"] = str(report.plot(out / "mi.png"))
        except ImportError:
            log("matplotlib is not installed: no MI chart (pip install matplotlib)")
    for key, p in policies.items():
        pictures[f"views_{key}"] = str(save_view_grid(generator, p, out / f"views_{key}.png"))

    log(f"[2/4] SSL runs: {cfg.steps} steps of {cfg.batch_size} pairs, {cfg.seeds} seed(s)")
    fixed_size = cfg.fixed_set or len(data.train_images)
    per_seed: dict[str, list[dict[str, Any]]] = {k: [] for k in RUNS if k in cfg.runs}
    curves: dict[str, list[list[tuple[int, float]]]] = {k: [] for k in CURVES if k in cfg.runs}
    curve_probe = (min(cfg.curve_probe, len(data.probe_train[0])), min(cfg.curve_probe, len(data.probe_test[0])))
    for seed in range(cfg.seeds):
        sources: dict[str, Callable[[], Iterable[ViewBatch]]] = {
            key: (lambda p=p: ViewPairPipe(generator, p, cfg.batch_size, seed=seed, augment=data.augment,
                                           steps=cfg.steps, prefetch=cfg.prefetch))
            for key, p in policies.items()
        }
        sources["real"] = lambda: RealViews(data.train_images, data.augment, cfg.batch_size, seed, cfg.steps,
                                            cfg.prefetch)
        sources["fixed_set"] = lambda: FixedSetViews(generator, policy, fixed_size, data.augment, cfg.batch_size,
                                                     seed, cfg.steps, cfg.prefetch)
        for key in [k for k in TRAINED if k in cfg.runs]:
            curve: list[tuple[int, float]] = []

            def at(step: int, encoder: torch.nn.Module, curve=curve) -> None:
                # cfg.threads: the source's producer is running (it decodes on this count)
                acc = evaluate(_encoder_features(encoder, device), data, cfg, cfg.threads, curve_probe)["probe_accuracy"]
                curve.append((step, acc))

            encoder, stats = train_encoder(sources[key](), cfg, seed, data.channels, f"{key} seed {seed}",
                                           at if key in CURVES else None)
            result = evaluate(_encoder_features(encoder, device), data, cfg, cfg.eval_threads) | stats
            per_seed[key].append(result)
            if key in CURVES:
                curves[key].append(curve)
            log(f"  {key:16s} seed {seed}: probe {result['probe_accuracy'] * 100:.1f} %, "
                f"{cfg.knn_k}-NN {result['knn_accuracy'] * 100:.1f} %, {stats['pairs_per_s']:.0f} pairs/s")
        if "random" in cfg.runs:
            random_result = evaluate(_encoder_features(encoder_for(cfg, data.channels, seed), device), data, cfg,
                                     cfg.eval_threads)
            per_seed["random"].append(random_result | {"pairs_per_s": None, "train_seconds": None, "final_loss": None})

    if "pixels" in cfg.runs:
        log("[3/4] raw pixels")
        # The pixels that vary in the probe's training images (the generator-size padding is
        # constant), in float32: a 1,024-d probe on 60,000 images costs minutes in float64.
        varying = data.probe_train[0].flatten(1).std(0) > 0
        pixels = evaluate(lambda images: images.flatten(1)[:, varying], data, cfg, cfg.eval_threads, dtype=torch.float32)
        per_seed["pixels"] = [pixels | {"pairs_per_s": None, "train_seconds": None, "final_loss": None}]

    log("[4/4] report")
    runs = {k: _summarise(v, curves.get(k, [])) for k, v in per_seed.items()}
    table = markdown_table(runs, cfg)
    if cfg.eval_every:
        curve_path = _plot_curves(runs, out / "curves.png", cfg, curve_probe)
        if curve_path is not None:
            pictures["curves"] = str(curve_path)
    doc = {
        "data": cfg.data,
        "generator": name,
        "runs": {k: asdict(r) | {"probe_accuracy_seeds": r.seeds["probe_accuracy"]} for k, r in runs.items()},
        "policy": policy.to_dict(),
        "policies": {k: p.to_dict() for k, p in policies.items()},
        "fixed_set_size": fixed_size,
        "pictures": pictures,
        "config": asdict(cfg),
        "seconds": time.perf_counter() - started,
    }
    write_text(out / "demo_report.json", json.dumps(doc, indent=2, default=str) + "\n")
    write_text(out / "demo_report.md", _markdown_report(doc, table, cfg, report, data))
    log(table)
    log(f"wrote {out / 'demo_report.json'}, {out / 'demo_report.md'} and pictures in {out} ({doc['seconds']:.0f} s)")
    return doc


def _markdown_report(doc: dict, table: str, cfg: DemoConfig, report: Any, data: DemoData) -> str:
    probe = f"{len(data.probe_train[0]):,} real train / {len(data.probe_test[0]):,} real test images"
    parts = [f"# mlvgm-data demo\n\nGenerator `{doc['generator']}` on {cfg.data}; every run trains the same encoder "
             f"with {cfg.method} for {cfg.steps} steps of {cfg.batch_size} pairs; linear probe and {cfg.knn_k}-NN on "
             f"frozen features of {probe} (chance {100 / data.num_classes:.1f} %). The fixed set (e) has "
             f"{doc['fixed_set_size']:,} anchors.\n\n{table}\n\nRecommended policy: `{json.dumps(doc['policy'])}`\n"]
    if report is not None:
        parts.append(f"\n## MI analysis\n\n{report.to_markdown()}\n\n![MI chart](mi.png)\n")
    parts.append("\n## Views (rows: anchors; column 0: the anchor)\n")
    for key in ("generated", "baseline_policy", "augment_only"):
        parts.append(f"\n{LABELS[key]}:\n\n![views](views_{key}.png)\n")
    if "curves" in doc["pictures"]:
        parts.append("\n## Probe accuracy during training\n\n![curves](curves.png)\n")
    return "".join(parts)


def _plot_curves(runs: dict[str, RunResult], path: Path, cfg: DemoConfig, probe: tuple[int, int]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in [k for k in CURVES if k in runs]:
        if runs[key].curve:
            steps, accs = zip(*runs[key].curve)
            ax.plot(steps, [a * 100 for a in accs], marker="o", label=LABELS[key])
    for key, style in [(k, s) for k, s in (("random", ":"), ("pixels", "--")) if k in runs]:
        ax.axhline(runs[key].probe_accuracy * 100, color="grey", linestyle=style, label=f"{LABELS[key]} (full probe)")
    ax.set_xlabel("SSL steps")
    ax.set_ylabel(f"linear probe accuracy % ({probe[0]:,} / {probe[1]:,} images)")
    ax.set_title(f"{cfg.data}: {cfg.method}, batch {cfg.batch_size}, mean of {cfg.seeds} seed(s)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    from ._io import atomic_writer

    with atomic_writer(path, "curve plot") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    return path
