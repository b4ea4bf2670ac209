"""The fused resample op and the uniform op: exact bits against the reference, statistics,
counter semantics and argument validation."""

from __future__ import annotations

import math
import random
import subprocess
import sys

import pytest
import torch
from scipy import stats

from mlvgm_data import Keep, LatentGroup, LatentSpec, Perturb, Resample, ViewPolicy, ops, philox

native = pytest.mark.skipif(not ops.has_native("cpu"), reason="compiled op not built")


def random_case(rng: random.Random) -> tuple[LatentSpec, ViewPolicy]:
    groups, rules = [], {}
    tie_shape = (rng.randint(1, 9),)
    for i in range(rng.randint(1, 5)):
        kind = rng.choice(["vec", "spatial", "tied"])
        if kind == "vec":
            g = LatentGroup(f"g{i}", (rng.randint(1, 37),))
        elif kind == "spatial":
            g = LatentGroup(f"g{i}", (rng.randint(1, 4), rng.randint(1, 5), rng.randint(1, 5)))
        else:
            g = LatentGroup(f"g{i}", tie_shape, tie="t")
        groups.append(g)
        rule = rng.choice(
            [Keep(), Perturb(rng.uniform(0, 2), rng.uniform(-1, 1), rng.choice([None, 0.5, 2.0])),
             Resample(rng.choice([None, 1.0, 3.0])), None]
        )
        if rule is not None:
            rules[g.name] = rule
    policy = ViewPolicy(rules, anchor_trunc=rng.choice([None, 0.9, 2.0]), include_anchor=rng.random() < 0.7)
    return LatentSpec(groups), policy


@pytest.mark.exactness
def test_philox_known_answers() -> None:
    # Random123's kat_vectors for philox4x32_10.
    cases = [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ]
    for counter, key, expected in cases:
        words = philox.philox4x32_10([torch.tensor(c) for c in counter], key)
        assert tuple(int(w) for w in words) == expected


@pytest.mark.exactness
@native
@pytest.mark.parametrize("case", range(40))
def test_native_equals_reference_bit_for_bit(case: int) -> None:
    rng = random.Random(case)
    spec, policy = random_case(rng)
    batch, views = rng.choice([1, 2, 7, 33]), rng.randint(1, 4)
    seed, step, stream = rng.randrange(2**32), rng.randrange(2**32), rng.randrange(2**32)
    got = ops.resample(spec, policy, batch, views, seed, step, stream=stream)
    want = ops.resample_reference(spec, policy, batch, views, seed, step, stream=stream)
    for name in spec.names:
        assert got[name].shape == (views, batch, *spec[name].shape)
        assert got[name].dtype == torch.float32
        # Same IEEE operations in the same order: the normals match exactly, not just to 1e-6.
        assert torch.equal(got[name], want[name]), name


@pytest.mark.exactness
@native
@pytest.mark.parametrize("n", [1, 3, 4, 5, 17, 64])
def test_native_uniform_equals_reference(n: int) -> None:
    kw = dict(domain=5, view=3, slot=1234, sample_offset=10)
    got = ops.uniform(6, n, seed=99, step=7, stream=3, **kw)
    want = ops.uniform_reference(6, n, seed=99, step=7, stream=3, **kw)
    assert torch.equal(got, want)
    assert float(got.min()) > 0.0 and float(got.max()) < 1.0


@pytest.mark.exactness
def test_tail_values_match_reference() -> None:
    # |z| > 2.9 takes erfinv's tail branch (and a square root): check it on many draws.
    spec = LatentSpec([LatentGroup("a", (4096,))])
    got = ops.resample(spec, ViewPolicy(), 8, 1, 0, 1)["a"]
    want = ops.resample_reference(spec, ViewPolicy(), 8, 1, 0, 1)["a"]
    assert float(got.abs().max()) > 3.5
    assert torch.equal(got, want)


def test_resampled_groups_are_standard_normal() -> None:
    spec = LatentSpec([LatentGroup("a", (100,)), LatentGroup("b", (10, 5, 2))])
    z = ops.resample(spec, ViewPolicy({"a": Resample(), "b": Resample()}), 1000, 2, seed=3, step=0)
    for name in ("a", "b"):
        for x in (z[name][0].flatten(), z[name][1].flatten()):  # anchors and fresh views
            x = x.double()
            assert x.numel() == 100_000
            assert abs(float(x.mean())) < 0.015  # 4.7 standard errors
            assert abs(float(x.var()) - 1.0) < 0.02
            assert stats.kstest(x.numpy(), "norm").pvalue > 1e-3


def test_truncated_normal_distribution() -> None:
    spec = LatentSpec([LatentGroup("a", (1000,))])
    x = ops.resample(spec, ViewPolicy(anchor_trunc=1.5), 100, 1, seed=1, step=0)["a"].double().flatten()
    assert float(x.abs().max()) <= 1.5
    assert stats.kstest(x.numpy(), stats.truncnorm(-1.5, 1.5).cdf).pvalue > 1e-3


def test_perturbation_moments_and_truncation() -> None:
    spec = LatentSpec([LatentGroup("a", (500,))])
    mu, sigma, trunc = 0.3, 0.5, 2.0
    z = ops.resample(spec, ViewPolicy({"a": Perturb(sigma, mu, trunc)}), 200, 3, seed=5, step=2)["a"]
    eps = (z[1:] - z[0]).double().flatten()
    dist = stats.truncnorm(-trunc, trunc, loc=mu, scale=sigma)
    assert abs(float(eps.mean()) - mu) < 0.005
    assert abs(float(eps.std()) - dist.std()) < 0.005
    assert float((eps - mu).abs().max()) <= trunc * sigma + 1e-5
    assert stats.kstest(eps.numpy(), dist.cdf).pvalue > 1e-3


def test_kept_groups_equal_anchor_and_views_differ() -> None:
    spec = LatentSpec([LatentGroup("keep", (7,)), LatentGroup("re", (7,)), LatentGroup("p", (3, 2, 2))])
    policy = ViewPolicy({"re": Resample(), "p": Perturb(0.1)})
    z = ops.resample(spec, policy, 9, 4, seed=0, step=0)
    for v in range(4):
        assert torch.equal(z["keep"][v], z["keep"][0])
    for v in range(1, 4):
        assert not torch.equal(z["re"][v], z["re"][0])
        assert not torch.equal(z["p"][v], z["p"][0])
        assert not torch.equal(z["re"][v], z["re"][v % 3 + 1])


def test_include_anchor_false_applies_rules_to_every_view() -> None:
    spec = LatentSpec([LatentGroup("a", (50,))])
    with_anchor = ops.resample(spec, ViewPolicy({"a": Perturb(1.0)}), 4, 2, seed=0, step=0)["a"]
    without = ops.resample(spec, ViewPolicy({"a": Perturb(1.0)}, include_anchor=False), 4, 2, seed=0, step=0)["a"]
    # Same anchor and the same view-1 noise; view 0 is perturbed too when the anchor is not a view.
    assert torch.equal(with_anchor[1], without[1])
    assert not torch.equal(without[0], with_anchor[0])
    anchor = with_anchor[0]
    assert float((without[0] - anchor).abs().mean()) > 0.3


def test_tied_groups_share_anchor_with_independent_views() -> None:
    spec = LatentSpec([LatentGroup(f"w{i}", (16,), tie="z") for i in range(3)] + [LatentGroup("other", (16,))])
    policy = ViewPolicy({"w0": Perturb(0.5), "w1": Perturb(0.5), "w2": Keep()})
    z = ops.resample(spec, policy, 5, 2, seed=1, step=1)
    assert torch.equal(z["w0"][0], z["w1"][0]) and torch.equal(z["w0"][0], z["w2"][0])
    assert not torch.equal(z["other"][0], z["w0"][0])
    assert not torch.equal(z["w0"][1], z["w1"][1])  # each group gets its own view noise
    assert torch.equal(z["w2"][1], z["w0"][0])


@pytest.mark.exactness
def test_same_counter_same_numbers_and_thread_independence() -> None:
    spec, policy = random_case(random.Random(7))
    a = ops.resample(spec, policy, 64, 3, seed=11, step=5)
    torch.set_num_threads(1)  # conftest's guard restores the count
    b = ops.resample(spec, policy, 64, 3, seed=11, step=5)
    for name in spec.names:
        assert torch.equal(a[name], b[name])


def shared_values(a: torch.Tensor, b: torch.Tensor) -> int:
    return len(set(a.flatten().tolist()) & set(b.flatten().tolist()))


def test_different_step_stream_or_seed_share_no_stream() -> None:
    spec = LatentSpec([LatentGroup("a", (1000,))])
    policy = ViewPolicy({"a": Resample()})

    def draw(**kw) -> torch.Tensor:
        args = dict(seed=0, step=0, stream=0) | kw
        return ops.resample(spec, policy, 50, 2, args["seed"], args["step"], stream=args["stream"])["a"]

    base = draw()
    n = base.numel()
    # Values are drawn from 2**24 levels: unrelated streams share about n**2 / 2**24 values by
    # chance (~600 here); an overlapping stream would share about n.
    chance = n * n / 2**24
    for other in (draw(step=1), draw(stream=1), draw(seed=1)):
        assert shared_values(base, other) < 3 * chance
        assert int((base == other).sum()) <= 2


@pytest.mark.exactness
def test_sample_ids_make_rows_independent_of_batch_composition() -> None:
    spec, policy = random_case(random.Random(3))
    full = ops.resample(spec, policy, 10, 2, seed=4, step=9)
    picked = ops.resample(spec, policy, 3, 2, seed=4, step=9, sample_ids=[7, 2, 9])
    shifted = ops.resample(spec, policy, 4, 2, seed=4, step=9, sample_offset=6)
    for name in spec.names:
        assert torch.equal(picked[name], full[name][:, [7, 2, 9]])
        assert torch.equal(shifted[name], full[name][:, 6:10])


def test_output_is_one_flat_group_major_buffer() -> None:
    spec = LatentSpec([LatentGroup("a", (3,)), LatentGroup("b", (2, 2))])
    out = torch.empty(spec.numel * 5 * 2)
    z = ops.resample(spec, ViewPolicy({"b": Resample()}), 5, 2, seed=0, step=0, out=out)
    assert z["a"].data_ptr() == out.data_ptr()
    assert z["b"].data_ptr() == out.data_ptr() + 4 * 3 * 5 * 2
    assert z["a"].is_contiguous() and z["b"].is_contiguous()



def test_out_may_be_a_block_inside_a_larger_buffer() -> None:
    spec = LatentSpec([LatentGroup("a", (3,)), LatentGroup("b", (2, 2))])
    policy = ViewPolicy({"b": Perturb(0.5)})
    big = torch.full((spec.numel * 4 * 2 + 17,), -1.0)
    z = ops.resample(spec, policy, 4, 2, seed=3, step=1, out=big[10 : 10 + spec.numel * 4 * 2])
    ref = ops.resample_reference(spec, policy, 4, 2, seed=3, step=1)
    for name in spec.names:
        assert torch.equal(z[name], ref[name])
    assert z["a"].data_ptr() == big[10:].data_ptr()
    assert (big[:10] == -1).all() and (big[10 + spec.numel * 8 :] == -1).all()


def test_a_policy_edited_in_place_takes_effect_on_the_next_call() -> None:
    # The op caches its kernel arguments per (spec, rules, ...): an edit must not hit a stale entry.
    spec = LatentSpec([LatentGroup("a", (5,)), LatentGroup("b", (7,))])
    policy = ViewPolicy({"a": Perturb(0.1)})
    first = ops.resample(spec, policy, 3, 2, seed=1, step=0)
    policy.rules["b"] = Resample()
    policy.rules["a"] = Perturb(0.7, trunc=1.0)
    second = ops.resample(spec, policy, 3, 2, seed=1, step=0)
    ref = ops.resample_reference(spec, policy, 3, 2, seed=1, step=0)
    for name in spec.names:
        assert torch.equal(second[name], ref[name])
    assert not torch.equal(first["b"][1], second["b"][1]) and not torch.equal(first["a"][1], second["a"][1])


def test_negative_zero_perturbation_is_zero() -> None:
    # 0.0 == -0.0, so the two rules share a cached layout; they must also share the bits.
    assert math.copysign(1.0, Perturb(-0.0, mu=-0.0).mu) == 1.0
    assert math.copysign(1.0, Perturb(-0.0).sigma) == 1.0
    spec = LatentSpec([LatentGroup("a", (9,))])
    for rule in (Perturb(-0.0, mu=-0.0), Perturb(0.0)):
        z = ops.resample(spec, ViewPolicy({"a": rule}), 4, 2, seed=5, step=2)
        ref = ops.resample_reference(spec, ViewPolicy({"a": rule}), 4, 2, seed=5, step=2)
        assert torch.equal(z["a"].view(torch.int32), ref["a"].view(torch.int32))

@pytest.mark.exactness
def test_fallback_matches_native(monkeypatch: pytest.MonkeyPatch) -> None:
    spec, policy = random_case(random.Random(11))
    native_out = ops.resample(spec, policy, 5, 2, seed=1, step=2)
    monkeypatch.setattr(ops, "_NATIVE", False)
    assert not ops.has_native()
    fallback = ops.resample(spec, policy, 5, 2, seed=1, step=2)
    for name in spec.names:
        assert torch.equal(native_out[name], fallback[name])
    assert torch.equal(ops.uniform(3, 5, 1, 2), ops.uniform_reference(3, 5, 1, 2))


def test_missing_extension_warns_once_and_works() -> None:
    code = (
        "import sys, warnings\n"
        "sys.modules['mlvgm_data._C'] = None\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import mlvgm_data\n"
        "    from mlvgm_data import ops\n"
        "    import importlib\n"
        "msgs = [str(x.message) for x in w if 'compiled op' in str(x.message)]\n"
        "assert len(msgs) == 1, msgs\n"
        "assert not ops.has_native()\n"
        "spec = mlvgm_data.LatentSpec([mlvgm_data.LatentGroup('a', (3,))])\n"
        "z = ops.resample(spec, mlvgm_data.ViewPolicy(), 2, 2, 0, 0)\n"
        "assert z['a'].shape == (2, 2, 3)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(num_views=0), "num_views"),
        (dict(num_views=256), "num_views"),
        (dict(seed=-1), "seed"),
        (dict(seed=2**32), "seed"),
        (dict(step=2**32), "step"),
        (dict(stream=-3), "stream"),
        (dict(batch_size=2.0), "batch_size"),
        (dict(sample_offset=2**32), "sample_offset"),
        (dict(sample_ids=[0, 1, 2]), "sample_ids"),
        (dict(sample_ids=[-1, 0]), "sample_ids"),
        (dict(out=torch.empty(3)), "out"),
        (dict(policy=ViewPolicy({"nope": Keep()})), "unknown groups"),
        (dict(spec="a"), "spec"),
    ],
)
def test_resample_bad_input(kwargs: dict, match: str) -> None:
    args = dict(spec=LatentSpec([LatentGroup("a", (3,))]), policy=ViewPolicy(), batch_size=2, num_views=2, seed=0,
                step=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ops.resample(**args)
    if "out" not in kwargs:
        with pytest.raises(ValueError, match=match):
            ops.resample_reference(**args)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(domain=16), "domain"), (dict(view=256), "view"), (dict(slot=2**20), "slot"), (dict(n=-1), "n"),
     (dict(seed=2**32), "seed")],
)
def test_uniform_bad_input(kwargs: dict, match: str) -> None:
    args = dict(batch_size=2, n=3, seed=0, step=0) | kwargs
    with pytest.raises(ValueError, match=match):
        ops.uniform(**args)


@native
def test_native_op_checks_its_own_arguments() -> None:
    # Direct callers of torch.ops get a clear error rather than memory corruption.
    out = torch.empty(10)
    with pytest.raises(RuntimeError, match="elements"):
        torch.ops.mlvgm_data.resample_(out, None, [3, 0, 0, 0, 0], [0.0, 0.0, 1.0, 1.0], 2, 2, True, 0, 0, 0, 0)
    with pytest.raises(RuntimeError, match="share an anchor slot"):
        torch.ops.mlvgm_data.resample_(torch.empty(20), None, [3, 0, 0, 0, 0, 2, 0, 1, 0, 12], [0.0, 0.0, 1.0, 1.0] * 2,
                                       2, 2, True, 0, 0, 0, 0)
    with pytest.raises(RuntimeError, match="rule kind"):
        torch.ops.mlvgm_data.resample_(torch.empty(12), None, [3, 0, 0, 7, 0], [0.0, 0.0, 1.0, 1.0],
                                       2, 2, True, 0, 0, 0, 0)


def test_erf_truncation_constant() -> None:
    # Truncation at ±t scales the signed uniform by erf(t / √2), the mass inside ±t.
    assert philox.erf_c(None) == 1.0
    assert math.isclose(philox.erf_c(1.0), stats.norm.cdf(1) - stats.norm.cdf(-1), rel_tol=1e-12)
