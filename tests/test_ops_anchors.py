"""Given anchors in the fused op (``ops.resample(..., anchors=)``): the CPU kernel, the CUDA kernel's
source (host-emulated, conftest.py's ``emulated``) and the pure-PyTorch reference agree bit for bit;
the policy applies around the given anchor with the prior call's own view noise; ties share one
given anchor; bad anchors are refused naming the argument."""

from __future__ import annotations

import ctypes
import itertools
import math
import random
import sys
from pathlib import Path

import pytest
import torch
from helpers import LAUNCHER_GRID, MAX_GROUPS_PER_LAUNCH, SMALL_GRID, assert_bits, guarded

from mlvgm_data import Keep, LatentGroup, LatentSpec, Perturb, Resample, ViewPolicy, ops
from mlvgm_data._op_anchors import given_anchors

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def flat(views: dict[str, torch.Tensor], spec: LatentSpec) -> torch.Tensor:
    return torch.cat([views[g].reshape(-1) for g in spec.names])


@pytest.fixture(scope="module")
def anchored(emulated: ctypes.CDLL) -> ctypes.CDLL:
    """The emulated library with the argument types of its given-anchors entry point."""
    P, I32, U32, U = ctypes.c_void_p, ctypes.c_int32, ctypes.c_uint32, ctypes.c_uint
    emulated.emulated_resample_anchored.argtypes = [P, P, P, ctypes.c_int, I32, I32, ctypes.c_int, U32, U32, U32,
                                                    ctypes.c_int64, P, P, P, U, U, ctypes.c_uint64]
    return emulated


def tiny_spec() -> tuple[LatentSpec, ViewPolicy]:
    """Every rule kind, an odd size, a spatial group and a tie of three."""
    spec = LatentSpec([LatentGroup("keep", (5,)), LatentGroup("pert", (3, 2, 3)), LatentGroup("res", (7,)),
                       *[LatentGroup(f"t{i}", (6,), tie="z") for i in range(3)]])
    policy = ViewPolicy({"keep": Keep(), "pert": Perturb(0.7, mu=0.25, trunc=1.5), "res": Resample(2.0),
                         "t0": Keep(), "t1": Perturb(0.3), "t2": Resample()}, anchor_trunc=1.0)
    return spec, policy


def random_anchors(rng: random.Random, spec: LatentSpec, batch: int) -> dict[str, torch.Tensor]:
    """A random part of the untied groups given; each tie not given, given by one of its groups, or
    given in full (equal copies)."""
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    out = {g.name: 3 * torch.randn((batch, *g.shape), generator=gen) for g in spec if not g.tie and rng.random() < 0.6}
    for tie in dict.fromkeys(g.tie for g in spec if g.tie):
        names = [g.name for g in spec if g.tie == tie]
        values = torch.randn((batch, *spec[names[0]].shape), generator=gen)
        mode = rng.choices(["none", "once", "full"], [1, 2, 2])[0]
        given = [] if mode == "none" else [rng.choice(names)] if mode == "once" else names
        out |= {n: values.clone() for n in given}
    return out


def random_case(case: int) -> dict:
    rng = random.Random(case)
    split = case == 0  # more than 64 groups: a split launch on the emulated GPU
    groups, rules = [], {}
    tie_shape = (rng.randint(1, 40),)
    for i in range(MAX_GROUPS_PER_LAUNCH + 3 if split else rng.randint(2, 7)):
        kind = rng.choice(["vec", "spatial", "tied"])
        shape = (rng.randint(1, 300),) if kind == "vec" else (rng.randint(1, 4), rng.randint(1, 5), rng.randint(1, 5))
        groups.append(LatentGroup(f"g{i}", tie_shape, tie="t") if kind == "tied" else LatentGroup(f"g{i}", shape))
        rules[f"g{i}"] = rng.choice([Keep(), Perturb(rng.uniform(0, 2), rng.uniform(-1, 1), rng.choice([None, 1.0])),
                                     Resample(rng.choice([None, 2.0]))])
    spec = LatentSpec(groups)
    policy = ViewPolicy(rules, anchor_trunc=rng.choice([None, 1.5]), include_anchor=case % 2 == 0)
    batch = rng.choice([1, 3, 9]) if split else rng.choice([1, 3, 64, 130])
    mode = case % 3
    kw = {} if mode == 0 else {"sample_offset": rng.randrange(2**32 - batch)} if mode == 1 else {
        "sample_ids": torch.tensor([rng.randrange(2**32) for _ in range(batch)], dtype=torch.int64)}
    return dict(spec=spec, policy=policy, batch=batch, views=rng.randint(1, 4), seed=rng.randrange(2**32),
                step=rng.randrange(2**32), stream=rng.randrange(2**32), kw=kw, anchors=random_anchors(rng, spec, batch))


def emulated_run(dll: ctypes.CDLL, c: dict, grid: tuple[int, int], order_seed: int) -> torch.Tensor:
    spec, policy, batch, views = c["spec"], c["policy"], c["batch"], c["views"]
    layout = ops._layout_of(spec, policy, batch, views)
    meta, params = torch.tensor(layout.meta, dtype=torch.int64), torch.tensor(layout.params, dtype=torch.float64)
    # The launcher takes one buffer and each group's offset into it (the op passes the tensors).
    buf, out = guarded(spec.numel * batch * views)
    given = given_anchors(spec, c["anchors"], batch, out, True)
    tensors, index = (given.tensors, given.index) if given else ([], [-1] * len(spec))
    packed = torch.cat([t.reshape(-1) for t in tensors]) if tensors else torch.empty(0)
    starts = [0, *itertools.accumulate(t.numel() for t in tensors)]
    offsets = torch.tensor([starts[k] if k >= 0 else -1 for k in index])
    ids = c["kw"].get("sample_ids")
    err = dll.emulated_resample_anchored(
        meta.data_ptr(), params.data_ptr(), offsets.data_ptr(), len(spec), batch, views, int(policy.include_anchor),
        c["seed"], c["stream"], c["step"], c["kw"].get("sample_offset", 0), None if ids is None else ids.data_ptr(),
        packed.data_ptr(), out.data_ptr(), grid[0], grid[1], order_seed)
    assert err == 0, f"launch error {err}"
    assert dll.emulated_launches() == math.ceil(len(spec) / MAX_GROUPS_PER_LAUNCH)
    return buf


def test_random_cases_cover_every_feature() -> None:
    seen: set[str] = set()
    for case in range(12):
        c = random_case(case)
        spec, anchors = c["spec"], c["anchors"]
        seen |= {type(c["policy"].rule(g)).__name__ + (" given" if g in anchors else "") for g in anchors}
        seen |= {"partial"} if 0 < len(anchors) < len(spec) else set()
        tied = [g.name for g in spec if g.tie]
        given_tied = [g for g in tied if g in anchors]
        seen |= {"tie given once"} if len(given_tied) == 1 and len(tied) > 1 else set()
        seen |= {"tie given in full"} if len(given_tied) == len(tied) > 1 else set()
        seen |= {"split launch"} if len(spec) > MAX_GROUPS_PER_LAUNCH else set()
        seen |= {f"include_anchor={c['policy'].include_anchor}", *[k for k in c["kw"]]}
    assert seen >= {"Keep given", "Perturb given", "Resample given", "partial", "tie given once", "tie given in full",
                    "split launch", "include_anchor=True", "include_anchor=False", "sample_offset", "sample_ids"}


@pytest.mark.exactness
@pytest.mark.parametrize("case", range(12))
def test_cpu_equals_reference_equals_emulated_cuda(anchored: ctypes.CDLL, case: int) -> None:
    c = random_case(case)
    spec, policy, batch, views = c["spec"], c["policy"], c["batch"], c["views"]
    args = (spec, policy, batch, views, c["seed"], c["step"])
    ref = flat(ops.resample_reference(*args, stream=c["stream"], anchors=c["anchors"], **c["kw"]), spec)
    cpu = torch.empty(spec.numel * batch * views)
    ops.resample(*args, stream=c["stream"], out=cpu, anchors=c["anchors"], **c["kw"])
    assert torch.equal(bits(cpu), bits(ref))
    if ops.has_native("cpu"):  # and on every other instruction-set path of the CPU kernel this CPU has
        active = torch.ops.mlvgm_data._cpu_path()
        try:
            for path in torch.ops.mlvgm_data._cpu_paths():
                torch.ops.mlvgm_data._cpu_path(path)
                got = flat(ops.resample(*args, stream=c["stream"], anchors=c["anchors"], **c["kw"]), spec)
                assert torch.equal(bits(got), bits(ref)), path
        finally:
            torch.ops.mlvgm_data._cpu_path(active)
    for grid in (SMALL_GRID, LAUNCHER_GRID):
        assert_bits(emulated_run(anchored, c, grid, case), cpu, f"given anchors on {grid[0] or 'the launcher'} blocks")


@pytest.mark.exactness
@pytest.mark.parametrize("include_anchor", [True, False])
def test_the_policy_applies_around_the_given_anchor(include_anchor: bool) -> None:
    spec, policy = tiny_spec()
    policy = ViewPolicy(policy.rules, anchor_trunc=1.0, include_anchor=include_anchor)
    batch, views, kw = 4, 4, dict(stream=3, sample_offset=100)
    gen = torch.Generator().manual_seed(0)
    given = {g.name: 4 * torch.randn((batch, *g.shape), generator=gen) for g in spec if g.name != "t2"}
    given["t1"] = given["t0"].clone()  # the same values for two groups of the tie
    zero = {k: torch.zeros_like(v) for k, v in given.items()}
    got = ops.resample(spec, policy, batch, views, 5, 6, anchors=given, **kw)
    prior = ops.resample(spec, policy, batch, views, 5, 6, **kw)
    eps = ops.resample(spec, policy, batch, views, 5, 6, anchors=zero, **kw)  # 0 + ε = ε: the noise itself
    prior_anchor = ops.resample(spec, ViewPolicy(policy.rules, anchor_trunc=1.0), batch, 1, 5, 6, **kw)
    first = 1 if include_anchor else 0
    for name in spec.names:
        a = given["t0" if name.startswith("t") else name]
        rule = policy.rule(name)
        if include_anchor:
            assert torch.equal(bits(got[name][0]), bits(a)), name  # view 0 is the given anchor, untruncated
        for v in range(first, views):
            if isinstance(rule, Keep):
                assert torch.equal(bits(got[name][v]), bits(a)), name
            elif isinstance(rule, Resample):
                assert torch.equal(bits(got[name][v]), bits(prior[name][v])), name  # the same fresh draws
            else:  # Perturb: anchor + ε, with the ε the prior call adds to its own anchor
                assert torch.equal(bits(got[name][v]), bits(a + eps[name][v])), name
                assert torch.equal(bits(prior[name][v]), bits(prior_anchor[name][0] + eps[name][v])), name
    assert float(given["keep"].abs().max()) > 1.0  # the anchor_trunc of 1.0 did not apply to it


@pytest.mark.exactness
def test_groups_not_given_are_the_prior_ones() -> None:
    spec, policy = tiny_spec()
    prior = ops.resample(spec, policy, 5, 3, 1, 2, sample_ids=[9, 8, 7, 2**32 - 1, 0])
    got = ops.resample(spec, policy, 5, 3, 1, 2, sample_ids=[9, 8, 7, 2**32 - 1, 0],
                       anchors={"pert": torch.ones(5, 3, 2, 3)})
    for name in ("keep", "res", "t0", "t1", "t2"):
        assert torch.equal(bits(got[name]), bits(prior[name])), name
    assert not torch.equal(got["pert"], prior["pert"])


@pytest.mark.exactness
def test_a_tie_given_once_is_given_to_all_its_groups() -> None:
    spec, policy = tiny_spec()
    a = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    once = ops.resample(spec, policy, 3, 2, 1, 2, anchors={"t2": a})
    full = ops.resample(spec, policy, 3, 2, 1, 2, anchors={"t0": a.clone(), "t1": a.clone(), "t2": a})
    for name in spec.names:
        assert torch.equal(bits(once[name]), bits(full[name])), name
    for name in ("t0", "t1", "t2"):
        assert torch.equal(bits(once[name][0]), bits(a)), name
    ref = ops.resample_reference(spec, policy, 3, 2, 1, 2, anchors={"t1": a})
    assert torch.equal(bits(flat(once, spec)), bits(flat(ref, spec)))


def test_a_tie_given_different_values_is_refused_unless_unchecked() -> None:
    spec, policy = tiny_spec()
    a, b = torch.zeros(2, 6), torch.ones(2, 6)
    with pytest.raises(ValueError, match=r"anchors\['t0'\] and anchors\['t2'\] differ.*tie 'z'"):
        ops.resample(spec, policy, 2, 2, 1, 2, anchors={"t2": b, "t0": a})
    with pytest.raises(ValueError, match="differ"):
        ops.resample_reference(spec, policy, 2, 2, 1, 2, anchors={"t2": b, "t0": a})
    neg = torch.zeros(2, 6).neg()  # -0.0 == 0.0 as numbers, not as anchors (bits)
    with pytest.raises(ValueError, match="differ"):
        ops.resample(spec, policy, 2, 2, 1, 2, anchors={"t0": a, "t1": neg})
    # Unchecked, the first given group in spec order (t0) is the tie's anchor.
    got = ops.resample(spec, policy, 2, 2, 1, 2, anchors={"t2": b, "t0": a}, check_anchors=False)
    assert all(torch.equal(got[n][0], a) for n in ("t0", "t1", "t2"))


@pytest.mark.exactness
def test_anchors_in_any_layout_and_aliasing_the_output() -> None:
    spec, policy = tiny_spec()
    batch, views = 3, 3
    out = torch.empty(spec.numel * batch * views)
    first = ops.resample(spec, policy, batch, views, 1, 2, out=out)
    want = {n: first[n][1].clone() for n in ("pert", "res")}
    expect = ops.resample(spec, policy, batch, views, 1, 3, anchors=want)
    # The anchors are views into out itself, which the call overwrites.
    got = ops.resample(spec, policy, batch, views, 1, 3, out=out, anchors={n: first[n][1] for n in want})
    assert torch.equal(bits(flat(got, spec)), bits(flat(expect, spec)))
    strided = {"res": torch.empty(7, batch).t().copy_(want["res"]), "pert": want["pert"].clone().requires_grad_()}
    assert not strided["res"].is_contiguous()
    got = ops.resample(spec, policy, batch, views, 1, 3, anchors=strided)
    assert torch.equal(bits(flat(got, spec)), bits(flat(expect, spec)))
    assert not any(t.requires_grad for t in got.values())
    assert torch.equal(flat(ops.resample(spec, policy, batch, views, 1, 3, anchors={}), spec),
                       flat(ops.resample(spec, policy, batch, views, 1, 3), spec))


@pytest.mark.exactness
def test_without_the_compiled_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """resample's fallback (the extension missing) takes the same anchors to the same bits."""
    c = random_case(4)
    args = (c["spec"], c["policy"], c["batch"], c["views"], c["seed"], c["step"])
    native = flat(ops.resample(*args, stream=c["stream"], anchors=c["anchors"], **c["kw"]), c["spec"])
    monkeypatch.setattr(ops, "_NATIVE", False)
    assert not ops.has_native("cpu")
    fallback = flat(ops.resample(*args, stream=c["stream"], anchors=c["anchors"], **c["kw"]), c["spec"])
    assert torch.equal(bits(native), bits(fallback))


BAD = [
    (lambda a: [a], r"anchors must be a dict"),
    (lambda a: {"nope": a}, r"anchors has unknown groups \['nope'\]"),
    (lambda a: {"keep": a.tolist()}, r"anchors\['keep'\] must be a tensor"),
    (lambda a: {"keep": a.double()}, r"anchors\['keep'\] must be float32.*float64"),
    (lambda a: {"keep": a.to(torch.int32)}, r"anchors\['keep'\] must be float32.*int32"),
    (lambda a: {"keep": a[0]}, r"anchors\['keep'\] must have shape \[batch_size, \*shape\] = \[4, 5\], got \[5\]"),
    (lambda a: {"keep": a[:, :4]}, r"anchors\['keep'\] must have shape .* got \[4, 4\]"),
    (lambda a: {"keep": a[:3]}, r"anchors\['keep'\] holds 3 anchors but batch_size=4"),
    (lambda a: {"keep": a.to("meta")}, r"anchors\['keep'\] is on meta but the op writes on cpu"),
    (lambda a: {"keep": a.index_fill(0, torch.tensor([2]), float("nan"))}, r"anchors\['keep'\] has non-finite"),
    (lambda a: {"keep": a.index_fill(1, torch.tensor([0]), float("-inf"))}, r"anchors\['keep'\] has non-finite"),
]


@pytest.mark.parametrize("fn", [ops.resample, ops.resample_reference])
@pytest.mark.parametrize("make, message", BAD)
def test_bad_anchors_are_refused_naming_the_argument(fn, make, message: str) -> None:
    spec, policy = tiny_spec()
    with pytest.raises(ValueError, match=message):
        fn(spec, policy, 4, 2, 1, 2, anchors=make(torch.zeros(4, 5)))


def test_huge_finite_anchors_are_accepted() -> None:
    """Finite values whose sum overflows float32 are not mistaken for non-finite ones."""
    spec, policy = tiny_spec()
    huge = torch.full((4, 5), 3e38)
    assert not math.isfinite(float(huge.sum()))
    got = ops.resample(spec, policy, 4, 2, 1, 2, anchors={"keep": huge})
    assert torch.equal(got["keep"][0], huge) and torch.equal(got["keep"][1], huge)


def test_check_anchors_must_be_a_bool() -> None:
    spec, policy = tiny_spec()
    with pytest.raises(ValueError, match="check_anchors must be True or False"):
        ops.resample(spec, policy, 4, 2, 1, 2, anchors={"keep": torch.zeros(4, 5)}, check_anchors="no")


def test_the_kernel_refuses_inconsistent_anchor_arguments() -> None:
    """The schema's own checks, for a caller of torch.ops.mlvgm_data.resample_ (not through ops)."""
    if not ops.has_native("cpu"):
        pytest.skip("the compiled op is not built")
    spec, policy = tiny_spec()
    layout = ops._layout_of(spec, policy, 2, 2)
    out = torch.empty(spec.numel * 2 * 2)
    tie, keep = torch.zeros(2, 6), torch.zeros(2, 5)
    call = lambda a, index: torch.ops.mlvgm_data.resample_(  # noqa: E731
        out, None, layout.meta, layout.params, 2, 2, True, 1, 2, 3, 0, a, index)
    call([keep, tie], [0, -1, -1, 1, 1, 1])  # consistent
    for a, index, message in [
        ([tie], [0, -1], "one int per group"),
        ([tie], [-1, -1, -1, 0, 1, 0], "anchor_index 1 is outside the 1 anchors"),
        ([tie], [-1, -1, -1, -2, 0, 0], "anchor_index -2 is outside"),
        ([tie, tie.clone()], [-1, -1, -1, 0, 1, 0], "share an anchor slot"),
        ([tie], [0, -1, -1, -1, -1, -1], "has 12 elements, group 0 needs batch_size x 5"),
        ([tie.double()], [-1, -1, -1, 0, 0, 0], "contiguous float32"),
        ([torch.zeros(6, 2).t()], [-1, -1, -1, 0, 0, 0], "contiguous float32"),
        ([out[:12]], [-1, -1, -1, 0, 0, 0], "must not overlap out"),
    ]:
        with pytest.raises(RuntimeError, match=message):
            call(a, index)


@pytest.mark.exactness
def test_cuda_check_anchored_path_on_the_cpu() -> None:
    """benchmarks/cuda_check.py's given-anchors check, run on the CPU against the reference (on a GPU
    machine it compares the CUDA op with the CPU op)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import cuda_check
    finally:
        sys.path.remove(str(BENCHMARKS))
    exact, detail = cuda_check.check_anchored(2, "cpu", against=ops.resample_reference)
    assert exact, detail
    rng, given = random.Random(3), 0
    for _ in range(5):  # its anchors pass the op's checks (ties given once or with equal values)
        spec, _ = cuda_check.random_case(rng)
        anchors = cuda_check.random_anchors(rng, spec, 5, "cpu")
        given += given_anchors(spec, anchors, 5, torch.empty(0), True) is not None
    assert given >= 3
