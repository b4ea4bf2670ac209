"""The demo as named steps: :func:`prepare` (generator, data, policies, pictures), :func:`run_one`
(train one run with one seed and evaluate it), :func:`run_untrained` (the random encoder and the
raw pixels) and :func:`write_report`; :func:`run_demo` calls them in that order."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from ..._io import write_text
from ..._threads import torch_threads
from ...export import load_export, read_manifest
from ...generators import load_generator, recommended_policy
from ...generators.fingerprint import fingerprint
from ...policy import Perturb, ViewPolicy
from ..viz import save_real_view_grid, save_view_grid
from .config import BASELINE_SIGMA, CURVES, DEFAULT_GENERATOR, POLICY_RUN, REAL_ANCHORED, DemoConfig
from .context import SOURCES, DemoContext
from .report import markdown_report, markdown_table, plot_curves, summarise
from .sources import load_data
from .training import encoder_features, encoder_for, evaluate, train_encoder

Log = Callable[[str], None]
_UNTRAINED = {"pairs_per_s": None, "train_seconds": None, "final_loss": None}


def _policy(cfg: DemoConfig, name: str, generator: torch.nn.Module) -> tuple[ViewPolicy, Any]:
    """The recommended policy (stored with the generator, or measured afresh with ``mi_budget``)
    and the MI report for the chart (``None`` when none is stored)."""
    from ... import mi
    from ...generators.registry import stored_mi_report

    if cfg.mi_budget is not None:
        report = mi.analyze(generator, budget=cfg.mi_budget, seed=0, progress=cfg.progress)
        return report.recommend_policy(), report
    stored = stored_mi_report(name)
    return recommended_policy(name), (mi.MIReport.from_dict(stored) if stored is not None else None)


def _exported_fixed_set(cfg: DemoConfig, generator: torch.nn.Module, policy: ViewPolicy) -> torch.Tensor | None:
    """The fixed set's view pairs from ``cfg.fixed_set_shards`` (uint8), checked to be an export of
    this generator under the recommended policy with two views."""
    if cfg.fixed_set_shards is None:
        return None
    manifest = read_manifest(cfg.fixed_set_shards)
    if manifest["generator"] != fingerprint(generator) or manifest["policy"] != policy.to_dict():
        raise ValueError(f"fixed_set_shards {cfg.fixed_set_shards!r} is an export of another generator or policy "
                         "(the fixed set (e) is the demo generator's views under its recommended policy)")
    if manifest["num_views"] != 2:
        raise ValueError(f"fixed_set_shards {cfg.fixed_set_shards!r} holds {manifest['num_views']} views per sample; "
                         "the demo trains on pairs (export with --num-views 2)")
    views, _ = load_export(cfg.fixed_set_shards)
    return views


def prepare(cfg: DemoConfig, log: Log) -> DemoContext:
    """Step 1: the generator, its data, the view policies of the runs, the MI chart and view grids."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    name = cfg.generator or DEFAULT_GENERATOR[cfg.data]
    generator = load_generator(name, torch.device(cfg.device))
    data = load_data(cfg, generator.image_shape[-1])
    if generator.image_shape[0] != data.channels:
        raise ValueError(f"{name} makes {generator.image_shape[0]}-channel images but {cfg.data} has {data.channels}")
    spec = generator.latent_spec
    log(f"[1/4] {name} ({', '.join(spec.names)}) and its view policies")
    policy, report = _policy(cfg, name, generator)
    policies = {"generated": policy, "baseline_policy": ViewPolicy.uniform(spec, Perturb(BASELINE_SIGMA)),
                "augment_only": ViewPolicy({}), "real_anchored": policy, "real_view": policy, "mixed": policy,
                "recon_only": ViewPolicy({}), "crop_flip_recipe": policy,
                **{POLICY_RUN + name: ViewPolicy.from_dict(d) for name, d in cfg.policies.items()}}
    log(f"recommended policy: {json.dumps(policy.to_dict())}")
    ctx = DemoContext(cfg, name, generator, data, policies, report, out,
                      per_seed={k: [] for k in cfg.reported()},
                      curves={k: [] for k in CURVES if k in cfg.runs},
                      exported=_exported_fixed_set(cfg, generator, policy) if "fixed_set" in cfg.runs else None)
    if report is not None:
        write_text(out / "mi_report.json", json.dumps(report.to_dict(), indent=2) + "\n")
        try:
            ctx.pictures["mi_chart"] = str(report.plot(out / "mi.png"))
        except ImportError:
            log("matplotlib is not installed: no MI chart (pip install matplotlib)")
    for key in ("generated", "baseline_policy", "augment_only"):
        ctx.pictures[f"views_{key}"] = str(save_view_grid(generator, policies[key], out / f"views_{key}.png"))
    if any(k in cfg.runs for k in REAL_ANCHORED):
        ctx.pictures["views_real"] = str(save_real_view_grid(generator, policy, ctx.anchors, out / "views_real.png"))
    return ctx


def run_one(ctx: DemoContext, key: str, seed: int, log: Log) -> None:
    """Step 2: trains run ``key`` with ``seed`` on its source, evaluates it, records the result."""
    cfg, device = ctx.cfg, torch.device(ctx.cfg.device)
    curve: list[tuple[int, float]] = []

    def at(step: int, encoder: torch.nn.Module) -> None:
        # cfg.threads: the source's producer is running (it decodes on this count)
        features = encoder_features(encoder, device)
        curve.append((step, evaluate(features, ctx.data, cfg, cfg.threads, ctx.curve_probe)["probe_accuracy"]))

    source = SOURCES[POLICY_RUN if key.startswith(POLICY_RUN) else key]
    encoder, stats = train_encoder(source(ctx, key, seed), cfg, seed, ctx.data.channels, f"{key} seed {seed}",
                                   at if key in CURVES else None)
    result = evaluate(encoder_features(encoder, device), ctx.data, cfg, cfg.eval_threads) | stats
    ctx.per_seed[key].append(result)
    if key in CURVES:
        ctx.curves[key].append(curve)
    log(f"  {key:16s} seed {seed}: probe {result['probe_accuracy'] * 100:.1f} %, "
        f"{cfg.knn_k}-NN {result['knn_accuracy'] * 100:.1f} %, {stats['pairs_per_s']:.0f} pairs/s")


def run_untrained(ctx: DemoContext, seed: int) -> None:
    """Step 2 (no training): the random encoder of ``seed``."""
    cfg = ctx.cfg
    features = encoder_features(encoder_for(cfg, ctx.data.channels, seed), torch.device(cfg.device))
    ctx.per_seed["random"].append(evaluate(features, ctx.data, cfg, cfg.eval_threads) | _UNTRAINED)


def run_pixels(ctx: DemoContext, log: Log) -> None:
    """Step 3: the raw pixels, once (they have no seed)."""
    log("[3/4] raw pixels")
    data = ctx.data
    # The pixels that vary in the probe's training images (the generator-size padding is
    # constant), in float32: a 1,024-d probe on 60,000 images costs minutes in float64.
    varying = data.probe_train[0].flatten(1).std(0) > 0
    pixels = evaluate(lambda images: images.flatten(1)[:, varying], data, ctx.cfg, ctx.cfg.eval_threads,
                      dtype=torch.float32)
    ctx.per_seed["pixels"] = [pixels | _UNTRAINED]


def write_report(ctx: DemoContext, started: float, log: Log) -> dict[str, Any]:
    """Step 4: ``demo_report.json`` and ``.md``, the curves; returns the JSON report."""
    cfg, out = ctx.cfg, ctx.out
    log("[4/4] report")
    runs = {k: summarise(v, ctx.curves.get(k, [])) for k, v in ctx.per_seed.items()}
    table = markdown_table(runs, cfg)
    if cfg.eval_every:
        curve_path = plot_curves(runs, out / "curves.png", cfg, ctx.curve_probe)
        if curve_path is not None:
            ctx.pictures["curves"] = str(curve_path)
    doc = {
        "data": cfg.data,
        "generator": ctx.name,
        "runs": {k: asdict(r) | {"probe_accuracy_seeds": r.seeds["probe_accuracy"]} for k, r in runs.items()},
        "policy": ctx.policies["generated"].to_dict(),
        "policies": {k: p.to_dict() for k, p in ctx.policies.items()},
        "fixed_set_size": ctx.fixed_size,
        "pictures": ctx.pictures,
        "config": asdict(cfg),
        "seconds": time.perf_counter() - started,
    }
    write_text(out / "demo_report.json", json.dumps(doc, indent=2, default=str) + "\n")
    write_text(out / "demo_report.md", markdown_report(doc, table, cfg, ctx.report, ctx.data))
    log(table)
    log(f"wrote {out / 'demo_report.json'}, {out / 'demo_report.md'} and pictures in {out} ({doc['seconds']:.0f} s)")
    return doc


def run_demo(cfg: DemoConfig, log: Log = print) -> dict[str, Any]:
    """Runs the whole demo on ``cfg.threads`` torch threads (restored after); returns the JSON
    report (also written under ``cfg.out``). The same config and seed on the same machine give
    the same report, whatever ``OMP_NUM_THREADS`` says."""
    cfg.check()
    started = time.perf_counter()
    with torch_threads(cfg.threads):
        ctx = prepare(cfg, log)
        log(f"[2/4] SSL runs: {cfg.steps} steps of {cfg.batch_size} pairs, {cfg.seeds} seed(s)")
        for seed in range(cfg.seeds):
            for key in cfg.trained():
                run_one(ctx, key, seed, log)
            if "random" in cfg.runs:
                run_untrained(ctx, seed)
        if "pixels" in cfg.runs:
            run_pixels(ctx, log)
        return write_report(ctx, started, log)
