"""The CUDA launcher's anchor sets, on the host emulation (conftest.py's ``emulated``): tied groups
are gathered into one set whose threads draw the anchor once, wherever the ties sit in the spec,
and a set cut by the 64-group launch boundary draws the same anchors again in the next launch.
(The random specs there always place the tied set before the boundary.)"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import LAUNCHER_GRID, MAX_GROUPS_PER_LAUNCH, SMALL_GRID, assert_bits, guarded

from mlvgm_data import Keep, LatentGroup, LatentSpec, Perturb, Resample, ViewPolicy, ops


def straddling_spec() -> tuple[LatentSpec, ViewPolicy]:
    # 58 untied groups, then a tie whose 10 groups are interleaved with untied ones: the launcher
    # orders the set's groups at launch positions 58..67, across the boundary at 64.
    groups = [LatentGroup(f"u{i}", (1 + i % 7,)) for i in range(58)]
    for i in range(13):
        groups.append(LatentGroup(f"t{i}", (2, 3, 3), tie="z") if i < 6 or i % 2 == 0 else LatentGroup(f"v{i}", (5,)))
    rules = {g.name: [Keep(), Perturb(0.5, 0.1, 1.0), Resample(2.0)][i % 3] for i, g in enumerate(groups)}
    return LatentSpec(groups), ViewPolicy(rules, anchor_trunc=2.0)


@pytest.mark.parametrize("include_anchor", [True, False])
def test_tied_set_across_the_launch_boundary(emulated, include_anchor: bool) -> None:
    spec, policy = straddling_spec()
    policy = ViewPolicy(policy.rules, anchor_trunc=2.0, include_anchor=include_anchor)
    tied = [i for i, g in enumerate(spec) if g.tie]
    assert len(tied) == 10 and tied[0] == 58 and tied[-1] > MAX_GROUPS_PER_LAUNCH and len(spec) > MAX_GROUPS_PER_LAUNCH
    batch, views, seed, step, stream = 5, 3, 11, 12, 13
    cpu = torch.empty(spec.numel * batch * views)
    ops.resample(spec, policy, batch, views, seed, step, stream=stream, out=cpu, sample_offset=40)
    ref = ops.resample_reference(spec, policy, batch, views, seed, step, stream=stream, sample_offset=40)
    assert torch.equal(cpu, torch.cat([ref[g].reshape(-1) for g in spec.names]))
    layout = ops._layout_of(spec, policy, batch, views)
    meta_t, params_t = torch.tensor(layout.meta, dtype=torch.int64), torch.tensor(layout.params, dtype=torch.float64)
    for blocks, threads in (SMALL_GRID, LAUNCHER_GRID):
        buf, out = guarded(cpu.numel())
        err = emulated.emulated_resample(meta_t.data_ptr(), params_t.data_ptr(), len(spec), batch, views,
                                         int(include_anchor), seed, stream, step, 40, None, out.data_ptr(),
                                         blocks, threads, 7)
        assert err == 0
        assert emulated.emulated_launches() == math.ceil(len(spec) / MAX_GROUPS_PER_LAUNCH)
        assert_bits(buf, cpu, f"straddling set on {blocks or 'the launcher'} blocks")
