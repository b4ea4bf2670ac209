"""The CUDA kernels without a GPU: csrc/cuda/resample.cu itself, compiled as C++ against the host
emulation of the CUDA launch in csrc/testing/, bit for bit against the CPU kernel and the
pure-PyTorch reference.

This runs the CUDA-only part of the GPU path (the grid-stride loops, the first_thread prefix table,
the split launch above 64 groups, the tail of each row, the per-view output offsets, sample ids)
on the random specs of benchmarks/cuda_check.py. Each launch runs twice: on a grid capped at
3 blocks of 32 threads, so every grid-stride loop wraps many times, and on the launcher's own
grid; blocks and threads run in a random order. The output sits between guard zones and starts as
a sentinel, so a stray, missing or out-of-bounds store fails too.
"""

from __future__ import annotations

import ctypes
import math
import random

import pytest
import torch
from helpers import LAUNCHER_GRID, MAX_GROUPS_PER_LAUNCH, SMALL_GRID, assert_bits, guarded

from mlvgm_data import Keep, LatentGroup, LatentSpec, Perturb, Resample, ViewPolicy, ops


def counters(rng: random.Random, batch: int, mode: int) -> dict:
    """Counter sample ids: 0..B-1, an offset, or explicit ids anywhere in [0, 2**32)."""
    if mode == 0:
        return {}
    if mode == 1:
        return {"sample_offset": rng.randrange(2**32 - batch + 1)}
    return {"sample_ids": torch.tensor([rng.randrange(2**32) for _ in range(batch)], dtype=torch.int64)}


def random_case(rng: random.Random, num_groups: int) -> tuple[LatentSpec, ViewPolicy]:
    """benchmarks/cuda_check.py's specs (1-D groups up to 600, spatial up to 8x9x9, every rule
    kind), with tied groups at a useful rate (there only a 1-D group of exactly 7 is tied)."""
    def shape(kind: str) -> tuple[int, ...]:
        return (rng.randint(1, 600),) if kind == "vec" else (rng.randint(1, 8), rng.randint(1, 9), rng.randint(1, 9))

    groups, rules = [], {}
    tie_shape = shape(rng.choice(["vec", "spatial"]))
    for i in range(num_groups):
        kind = rng.choice(["vec", "spatial", "tied"])
        groups.append(LatentGroup(f"g{i}", tie_shape, tie="t") if kind == "tied" else LatentGroup(f"g{i}", shape(kind)))
        rule = rng.choice([Keep(), Perturb(rng.uniform(0, 2), rng.uniform(-1, 1), rng.choice([None, 1.0])),
                           Resample(rng.choice([None, 2.0])), None])  # None: not named, kept
        if rule is not None:
            rules[f"g{i}"] = rule
    policy = ViewPolicy(rules, anchor_trunc=rng.choice([None, 2.0]), include_anchor=rng.random() < 0.5)
    return LatentSpec(groups), policy


def resample_case(case: int) -> dict:
    rng = random.Random(case)
    # Every third case has more than 64 groups (a split launch); batch 1 comes up often.
    split = case % 3 == 0
    spec, policy = random_case(rng, rng.randint(MAX_GROUPS_PER_LAUNCH + 1, 70) if split else rng.randint(1, 6))
    batch = rng.choice([1, 3, 9]) if split else rng.choice([1, 3, 64, 257])  # sizes bounded by the reference's time
    return dict(spec=spec, policy=policy, batch_size=batch, num_views=rng.randint(1, 4), seed=rng.randrange(2**32),
                step=rng.randrange(2**32), stream=rng.randrange(2**32), **counters(rng, batch, rng.randrange(3)))


RESAMPLE_CASES = range(18)


def test_resample_cases_cover_every_feature() -> None:
    seen: set[str] = set()
    for case in RESAMPLE_CASES:
        c = resample_case(case)
        spec, policy = c["spec"], c["policy"]
        seen |= {type(policy.rule(g.name)).__name__ for g in spec}
        seen |= {"tied" for g in spec if g.tie} | {"spatial" for g in spec if len(g.shape) == 3}
        seen |= {"odd size" for g in spec if g.numel % 4} | {"size 4k" for g in spec if g.numel % 4 == 0}
        seen |= {"split launch"} if len(spec) > MAX_GROUPS_PER_LAUNCH else set()
        seen |= {"batch 1"} if c["batch_size"] == 1 else set()
        seen |= {"sample_ids" if "sample_ids" in c else "sample_offset" if "sample_offset" in c else "ids 0..B-1"}
        seen |= {f"include_anchor={policy.include_anchor}", f"anchor_trunc={policy.anchor_trunc}"}
    assert seen >= {"Keep", "Perturb", "Resample", "tied", "spatial", "odd size", "size 4k", "split launch",
                    "batch 1", "sample_ids", "sample_offset", "ids 0..B-1", "include_anchor=True",
                    "include_anchor=False", "anchor_trunc=None", "anchor_trunc=2.0"}


@pytest.mark.parametrize("case", RESAMPLE_CASES)
def test_emulated_cuda_resample_equals_cpu_and_reference(emulated: ctypes.CDLL, case: int) -> None:
    c = resample_case(case)
    spec, policy, batch, views = c["spec"], c["policy"], c["batch_size"], c["num_views"]
    kw = {k: c[k] for k in ("sample_offset", "sample_ids") if k in c}
    cpu = torch.empty(spec.numel * batch * views)
    ops.resample(spec, policy, batch, views, c["seed"], c["step"], stream=c["stream"], out=cpu, **kw)
    ref = ops.resample_reference(spec, policy, batch, views, c["seed"], c["step"], stream=c["stream"], **kw)
    assert torch.equal(cpu.view(torch.int32), torch.cat([ref[g].reshape(-1) for g in spec.names]).view(torch.int32))
    layout = ops._layout_of(spec, policy, batch, views)
    meta_t, params_t = torch.tensor(layout.meta, dtype=torch.int64), torch.tensor(layout.params, dtype=torch.float64)
    ids = kw.get("sample_ids")
    for blocks, threads in (SMALL_GRID, LAUNCHER_GRID):
        buf, out = guarded(cpu.numel())
        err = emulated.emulated_resample(
            meta_t.data_ptr(), params_t.data_ptr(), len(spec), batch, views, int(policy.include_anchor), c["seed"],
            c["stream"], c["step"], kw.get("sample_offset", 0), None if ids is None else ids.data_ptr(),
            out.data_ptr(), blocks, threads, case)
        assert err == 0, f"launch error {err}"
        assert emulated.emulated_launches() == math.ceil(len(spec) / MAX_GROUPS_PER_LAUNCH)
        assert_bits(buf, cpu, f"resample on {blocks or 'the launcher'} blocks x {threads or 256} threads")


@pytest.mark.parametrize("case", range(12))
def test_emulated_cuda_uniform_equals_cpu_and_reference(emulated: ctypes.CDLL, case: int) -> None:
    rng = random.Random(1000 + case)
    batch, n = rng.choice([1, 3, 64, 257]), rng.choice([1, 2, 3, 4, 5, 7, 17, 64, 255, 600])
    kw = dict(domain=rng.randrange(16), view=rng.randrange(256), slot=rng.randrange(1 << 20),
              **counters(rng, batch, case % 3))
    seed, step, stream = rng.randrange(2**32), rng.randrange(2**32), rng.randrange(2**32)
    cpu = ops.uniform(batch, n, seed, step, stream=stream, **kw)
    ref = ops.uniform_reference(batch, n, seed, step, stream=stream, **kw)
    assert torch.equal(cpu.view(torch.int32), ref.view(torch.int32))
    ids = kw.get("sample_ids")
    for blocks, threads in (SMALL_GRID, LAUNCHER_GRID):
        buf, out = guarded(batch * n)
        err = emulated.emulated_uniform(
            batch, n, seed, stream, step, kw["domain"], kw["view"], kw["slot"], kw.get("sample_offset", 0),
            None if ids is None else ids.data_ptr(), out.data_ptr(), blocks, threads, case)
        assert err == 0, f"launch error {err}"
        assert emulated.emulated_launches() == 1
        assert_bits(buf, cpu, f"uniform on {blocks or 'the launcher'} blocks x {threads or 256} threads")
