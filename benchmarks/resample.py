"""Throughput of the fused resample op against the alternatives, side by side in one run.

Rows per (spec, batch): the native op (on the CPU path it picked, and on every other path this CPU
has); the native op with every anchor given (``anchors=``, as for real images: the anchors read
instead of drawn, the checks of their values included); torch's own sampler, ``normal_`` on a
tensor of the same number of floats (untruncated, one thread: the floor a user gets without us);
the eager PyTorch composition of the same math (torch's RNG, inverse-CDF truncation with
torch.erfinv, one op chain per group and view); the pure-PyTorch bit-exact reference (Philox in
int64 ops, the fallback when the extension is missing); the research code's way (scipy
``truncnorm.rvs`` per group on the CPU, then ``torch.from_numpy``); and a plain copy of a tensor
of the output's size (the memory-bandwidth ceiling).

The methods are timed in interleaved rounds (each round times every method once, in a rotating
order), so a ratio is taken between timings a few milliseconds apart; the tables give the median
and the spread (min–max) over rounds, in wall time and in CPU time (``time.process_time``, summed
over threads: steadier on a shared machine, and for a multi-threaded method it is the cores' work,
not the wait).

    python benchmarks/resample.py [--quick] [--threads 2] [--rounds 7] [--methods op,normal_,eager]
                                  [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from typing import Callable

import numpy as np
import torch
from scipy.stats import truncnorm

from mlvgm_data import LatentGroup, LatentSpec, Perturb, Resample, ViewPolicy, ops

# The goals of issue 18 (2 threads, B = 512): op >= 2x normal_, <= 2.5 ns per number, >= 5x eager.
GOALS = {"normal_": 2.0, "ns": 2.5, "eager torch": 5.0}


def _specs() -> dict[str, tuple[LatentSpec, ViewPolicy]]:
    big = LatentSpec([LatentGroup(f"c{i}", (20,)) for i in range(6)])
    style = LatentSpec([LatentGroup(f"w{i}", (512,), tie="z") for i in range(4)])
    nvae = LatentSpec([LatentGroup("s4", (20, 4, 4)), LatentGroup("s8", (20, 8, 8)), LatentGroup("s16", (20, 16, 16))])
    return {
        # BigBiGAN "chunks" views (REFERENCE.md): keep chunk 0, σ = 1 on chunks 1–5, anchors at ±2.
        "bigbigan 6x20": (big, ViewPolicy({f"c{i}": Perturb(1.0, trunc=1.0) for i in range(1, 6)}, anchor_trunc=2.0)),
        # StyleGAN2 style mixing: one tied z, σ per group 0.2/0.1/0.8/0.8, anchors at ±0.9.
        "stylegan 4x512 tied": (
            style,
            ViewPolicy({f"w{i}": Perturb(s, trunc=1.0) for i, s in enumerate([0.2, 0.1, 0.8, 0.8])}, anchor_trunc=0.9),
        ),
        "nvae 20x{4,8,16}^2": (nvae, ViewPolicy({"s4": Perturb(0.2, trunc=2.0), "s8": Resample(), "s16": Resample()})),
    }


def eager(
    spec: LatentSpec, policy: ViewPolicy, batch: int, views: int, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    """The same math composed from stock torch ops, one op chain per group and view."""

    def tnormal(shape: tuple[int, ...], trunc: float | None) -> torch.Tensor:
        c = 1.0 if trunc is None else math.erf(trunc / math.sqrt(2))  # truncation at ±t by inverse CDF
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


def research(
    spec: LatentSpec, policy: ViewPolicy, batch: int, views: int, rng: np.random.Generator
) -> dict[str, torch.Tensor]:
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
                eps = truncnorm.rvs(-tr, tr, loc=rule.mu, scale=max(rule.sigma, 1e-12), size=anchor.shape,
                                    random_state=rng)
                vs.append(anchor + eps.astype(np.float32))
            elif isinstance(rule, Resample):
                tr = rule.trunc or 10.0
                vs.append(truncnorm.rvs(-tr, tr, size=anchor.shape, random_state=rng).astype(np.float32))
            else:
                vs.append(anchor.copy())
        out[g.name] = torch.from_numpy(np.stack(vs))
    return out


def with_path(path: str, fn: Callable[[], object]) -> Callable[[], object]:
    """fn on the CPU kernel's `path`, then back to the path the op picked."""

    def call() -> object:
        before = torch.ops.mlvgm_data._cpu_path()
        torch.ops.mlvgm_data._cpu_path(path)
        try:
            return fn()
        finally:
            torch.ops.mlvgm_data._cpu_path(before)

    return call


def time_rounds(
    cases: dict[str, Callable[[], object]], rounds: int, min_time: float
) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds per call of every case in each round; rounds interleave the cases in a
    rotating order, after one warm-up call each."""
    for fn in cases.values():
        fn()
    names = list(cases)
    out: dict[str, list[tuple[float, float]]] = {k: [] for k in names}
    for r in range(rounds):
        for k in names[r % len(names):] + names[: r % len(names)]:
            fn, n = cases[k], 0
            w0, c0 = time.perf_counter(), time.process_time()
            while True:
                fn()
                n += 1
                wall = time.perf_counter() - w0
                if wall >= min_time:
                    break
            out[k].append((wall / n, (time.process_time() - c0) / n))
    return out


def run(batches: list[int], rounds: int, min_time: float, methods: set[str] | None, views: int = 2) -> list[dict]:
    native = ops.has_native("cpu")
    active = torch.ops.mlvgm_data._cpu_path() if native else None
    others = [p for p in torch.ops.mlvgm_data._cpu_paths() if p != active] if native else []
    rows = []
    for name, (spec, policy) in _specs().items():
        for batch in batches:
            total = spec.numel * batch * views
            out = torch.empty(total)
            fill = torch.empty(total)
            src = torch.randn(total)
            gen = torch.Generator().manual_seed(0)
            rng = np.random.default_rng(0)
            step = iter(range(1 << 30))

            # Every anchor given: each untied group's and each tie's once (its first group).
            given = {g.name: torch.randn(batch, *g.shape, generator=gen) for i, g in enumerate(spec)
                     if spec.anchor_slots[i] == i}

            def op() -> object:
                return ops.resample(spec, policy, batch, views, 0, next(step), out=out)

            cases: dict[str, Callable[[], object]] = {}
            if native:
                cases[f"native op [{active}]"] = op
                cases[f"given anchors, native op [{active}]"] = lambda: ops.resample(
                    spec, policy, batch, views, 0, next(step), out=out, anchors=given)
            cases |= {
                "torch normal_": lambda: fill.normal_(generator=gen),
                "eager torch": lambda: eager(spec, policy, batch, views, gen),
                "reference (int64 Philox)": lambda: ops.resample_reference(spec, policy, batch, views, 0, next(step)),
                "scipy truncnorm (research)": lambda: research(spec, policy, batch, views, rng),
                "copy of output size": lambda: out.copy_(src),
            }
            for p in others:
                cases[f"native op [{p}]"] = with_path(p, op)
            if methods is not None:
                cases = {k: f for k, f in cases.items() if k == f"native op [{active}]" or any(m in k for m in methods)}
            timings = time_rounds(cases, rounds, min_time)
            base_name = f"native op [{active}]" if native else "reference (int64 Philox)"
            base = timings[base_name]
            for k, samples in timings.items():
                wall = [w for w, _ in samples]
                cpu = [c for _, c in samples]
                speed = [w / b[0] for (w, _), b in zip(samples, base)]  # op's speed-up, per round
                speed_cpu = [c / b[1] for (_, c), b in zip(samples, base)]
                rows.append({
                    "spec": name, "batch": batch, "views": views, "method": k, "baseline": k == base_name,
                    "floats": total,
                    "threads": torch.get_num_threads(), "rounds": rounds,
                    "ms": statistics.median(wall) * 1e3, "min_ms": min(wall) * 1e3, "max_ms": max(wall) * 1e3,
                    "cpu_ms": statistics.median(cpu) * 1e3,
                    "ns_per_number": statistics.median(wall) / total * 1e9,
                    "cpu_ns_per_number": statistics.median(cpu) / total * 1e9,
                    "op_speedup": statistics.median(speed), "op_speedup_min": min(speed), "op_speedup_max": max(speed),
                    "op_speedup_cpu": statistics.median(speed_cpu),
                    "op_speedup_cpu_min": min(speed_cpu), "op_speedup_cpu_max": max(speed_cpu),
                })
    return rows


def cpu_features() -> str:
    flags: set[str] = set()
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
                elif line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    known = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "amx_tile")
    isa = " ".join(f for f in known if f in flags)
    if ops.has_native("cpu"):
        forced = "; forced by MLVGM_CPU_PATH" if os.environ.get("MLVGM_CPU_PATH") else ""
        path = (f"op's CPU path {torch.ops.mlvgm_data._cpu_path()} "
                f"(this CPU has: {', '.join(torch.ops.mlvgm_data._cpu_paths())}{forced})")
    else:
        path = "op not built"
    return (f"CPU: {model}, {os.cpu_count()} logical cores; ISA flags: {isa or 'unknown'}; "
            f"torch's ATen capability {torch.backends.cpu.get_cpu_capability()}; {path}")


def markdown(rows: list[dict]) -> str:
    lines = ["| spec | B | method | ms wall (median, min–max) | ms CPU | ns / number (wall, CPU) "
             "| op is × faster: wall (min–max) | CPU (min–max) |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["baseline"]:
            ratio = "— | —"
        else:
            ratio = (f"{r['op_speedup']:.2f}× ({r['op_speedup_min']:.2f}–{r['op_speedup_max']:.2f}) | "
                     f"{r['op_speedup_cpu']:.2f}× ({r['op_speedup_cpu_min']:.2f}–{r['op_speedup_cpu_max']:.2f})")
        lines.append(f"| {r['spec']} | {r['batch']} | {r['method']} "
                     f"| {r['ms']:.3f} ({r['min_ms']:.3f}–{r['max_ms']:.3f}) "
                     f"| {r['cpu_ms']:.3f} | {r['ns_per_number']:.2f}, {r['cpu_ns_per_number']:.2f} | {ratio} |")
    return "\n".join(lines)


def goals(rows: list[dict]) -> str:
    """The issue's goals at the largest batch, from the wall-time medians."""
    batch = max(r["batch"] for r in rows)
    lines = [f"Goals at B = {batch} ({GOALS['normal_']}× normal_, ≤ {GOALS['ns']} ns per number, "
             f"{GOALS['eager torch']}× eager), wall-time medians:"]
    for spec in dict.fromkeys(r["spec"] for r in rows):
        by = {r["method"]: r for r in rows if r["spec"] == spec and r["batch"] == batch}
        op = next((r for r in by.values() if r["baseline"] and r["method"].startswith("native op")), None)
        if op is None:
            continue
        parts = [f"{op['ns_per_number']:.2f} ns/number {'met' if op['ns_per_number'] <= GOALS['ns'] else 'MISSED'}"]
        for method, goal in (("torch normal_", GOALS["normal_"]), ("eager torch", GOALS["eager torch"])):
            if method in by:
                s = by[method]["op_speedup"]
                parts.append(f"{s:.2f}× {method} {'met' if s >= goal else 'MISSED'}")
        lines.append(f"- {spec}: " + ", ".join(parts))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="B = 64 only, fewer and shorter rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per method (default 7, quick 3)")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (default 64,512; quick 64)")
    parser.add_argument("--methods", default=None,
                        help="comma-separated substrings of the methods to time besides the op, e.g. normal_,eager")
    parser.add_argument("--json", default=None, help="write the rows as JSON")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    batches, rounds, min_time = ([64], 3, 0.05) if args.quick else ([64, 512], 7, 0.2)
    if args.batches:
        batches = [int(b) for b in args.batches.split(",")]
    rounds = args.rounds or rounds
    methods = set(args.methods.split(",")) if args.methods else None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native={ops.has_native('cpu')}, "
          f"load average {load:.2f}")
    print(cpu_features() + "\n")
    rows = run(batches, rounds, min_time, methods)
    print(markdown(rows))
    print("\n" + goals(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_features(), "load_average": load, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
