"""Throughput of the fused resample op against the alternatives, side by side in one run.

Rows per (spec, batch): the native op; the eager PyTorch composition of the same math (torch's
RNG, inverse-CDF truncation with torch.erfinv, one op per group and view); the pure-PyTorch
bit-exact reference (Philox in int64 ops, the fallback when the extension is missing); the
research code's way (scipy ``truncnorm.rvs`` per group on the CPU, then ``torch.from_numpy``);
and a plain copy of a tensor of the output's size (the memory-bandwidth ceiling).

    python benchmarks/resample.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from typing import Callable

import numpy as np
import torch
from scipy.stats import truncnorm

from mlvgm_data import LatentGroup, LatentSpec, Perturb, Resample, ViewPolicy, ops

SPECS: dict[str, tuple[LatentSpec, ViewPolicy]] = {}


def _specs() -> dict[str, tuple[LatentSpec, ViewPolicy]]:
    big = LatentSpec([LatentGroup(f"c{i}", (20,)) for i in range(6)])
    style = LatentSpec([LatentGroup(f"w{i}", (512,), tie="z") for i in range(4)])
    nvae = LatentSpec([LatentGroup("s4", (20, 4, 4)), LatentGroup("s8", (20, 8, 8)), LatentGroup("s16", (20, 16, 16))])
    return {
        # BigBiGAN "chunks" views (REFERENCE.md): keep chunk 0, σ = 1 on chunks 1–5, anchors at ±2.
        "bigbigan 6x20": (big, ViewPolicy({f"c{i}": Perturb(1.0, trunc=1.0) for i in range(1, 6)}, anchor_trunc=2.0)),
        # StyleGAN2 style mixing: one tied z, σ per group 0.2/0.1/0.8/0.8, anchors at ±0.9.
        "stylegan 4x512 tied": (style, ViewPolicy({f"w{i}": Perturb(s, trunc=1.0) for i, s in enumerate([0.2, 0.1, 0.8, 0.8])},
                                                  anchor_trunc=0.9)),
        "nvae 20x{4,8,16}^2": (nvae, ViewPolicy({"s4": Perturb(0.2, trunc=2.0), "s8": Resample(), "s16": Resample()})),
    }


def eager(spec: LatentSpec, policy: ViewPolicy, batch: int, views: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The same math composed from stock torch ops, one op chain per group and view."""

    def tnormal(shape: tuple[int, ...], trunc: float | None) -> torch.Tensor:
        c = ops._erf_c(trunc)
        u = torch.rand(shape, generator=gen) * 2 - 1
        return math.sqrt(2) * torch.erfinv(u * c)

    out = {}
    for g in spec:
        anchor = tnormal((batch, *g.shape), policy.anchor_trunc)
        rule = policy.rule(g.name)
        vs = [anchor]
        for _ in range(1, views):
            if isinstance(rule, Perturb):
                vs.append(anchor + (rule.mu + rule.sigma * tnormal(anchor.shape, rule.trunc)))
            elif isinstance(rule, Resample):
                vs.append(tnormal(anchor.shape, rule.trunc))
            else:
                vs.append(anchor.clone())
        out[g.name] = torch.stack(vs)
    return out


def research(spec: LatentSpec, policy: ViewPolicy, batch: int, views: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """mi_ml_gen's way: scipy truncnorm.rvs per group on the CPU, then torch.from_numpy."""
    t = policy.anchor_trunc or 10.0
    out = {}
    for g in spec:
        anchor = truncnorm.rvs(-t, t, size=(batch, *g.shape), random_state=rng).astype(np.float32)
        rule = policy.rule(g.name)
        vs = [anchor]
        for _ in range(1, views):
            if isinstance(rule, Perturb):
                tr = rule.trunc or 10.0
                eps = truncnorm.rvs(-tr, tr, loc=rule.mu, scale=max(rule.sigma, 1e-12), size=anchor.shape, random_state=rng)
                vs.append(anchor + eps.astype(np.float32))
            elif isinstance(rule, Resample):
                tr = rule.trunc or 10.0
                vs.append(truncnorm.rvs(-tr, tr, size=anchor.shape, random_state=rng).astype(np.float32))
            else:
                vs.append(anchor.copy())
        out[g.name] = torch.from_numpy(np.stack(vs))
    return out


def timeit(fn: Callable[[], object], repeats: int, min_time: float) -> tuple[float, float, float]:
    """Median, min and max seconds per call over `repeats` timed rounds (after one warm-up)."""
    fn()
    samples = []
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            el = time.perf_counter() - t0
            if el >= min_time:
                break
        samples.append(el / n)
    return statistics.median(samples), min(samples), max(samples)


def run(batches: list[int], repeats: int, min_time: float, views: int = 2) -> list[dict]:
    rows = []
    for name, (spec, policy) in _specs().items():
        for batch in batches:
            total = spec.numel * batch * views
            out = torch.empty(total)
            src = torch.randn(total)
            gen = torch.Generator().manual_seed(0)
            rng = np.random.default_rng(0)
            step = iter(range(1 << 30))
            cases = {
                "native op": lambda: ops.resample(spec, policy, batch, views, 0, next(step), out=out),
                "eager torch": lambda: eager(spec, policy, batch, views, gen),
                "reference (int64 Philox)": lambda: ops.resample_reference(spec, policy, batch, views, 0, next(step)),
                "scipy truncnorm (research)": lambda: research(spec, policy, batch, views, rng),
                "copy of output size": lambda: out.copy_(src),
            }
            if not ops.has_native("cpu"):
                del cases["native op"]
            timings = {k: timeit(f, repeats, min_time) for k, f in cases.items()}
            base = timings.get("native op", timings["reference (int64 Philox)"])[0]
            for k, (med, lo, hi) in timings.items():
                rows.append({"spec": name, "batch": batch, "views": views, "method": k, "ms": med * 1e3,
                             "min_ms": lo * 1e3, "max_ms": hi * 1e3, "floats": total,
                             "native_speedup": med / base, "threads": torch.get_num_threads()})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| spec | B | method | ms (median) | min–max | native is × faster |", "|---|---:|---|---:|---:|---:|"]
    for r in rows:
        ratio = "—" if r["method"] == "native op" else (
            f"{r['native_speedup']:.1f}×" if r["method"] != "copy of output size" else f"native at {r['native_speedup']:.1%} of copy speed")
        lines.append(f"| {r['spec']} | {r['batch']} | {r['method']} | {r['ms']:.3f} | {r['min_ms']:.3f}–{r['max_ms']:.3f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one batch size, fewer repetitions")
    parser.add_argument("--json", default=None, help="write the rows as JSON")
    args = parser.parse_args()
    batches, repeats, min_time = ([64], 3, 0.05) if args.quick else ([64, 512], 5, 0.2)
    rows = run(batches, repeats, min_time)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native={ops.has_native('cpu')}\n")
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
