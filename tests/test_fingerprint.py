"""The weight fingerprint (``generators/fingerprint.py``) on every kind of tensor a real model holds
(the zoo in tests/zoo.py): equal for equal weights in a fresh copy whatever their memory layout,
different when any covered tensor changes by one value, blind to what it does not cover."""

from __future__ import annotations

import pytest
import torch
import zoo
from torch import nn

from mlvgm_data import Perturb, ViewPairPipe, ViewPolicy
from mlvgm_data.generators.fingerprint import fingerprint, state_digest, tensor_bytes

NAMES = sorted(zoo.FACTORIES)
WITH_STATE = [n for n in NAMES if zoo.FACTORIES[n]().state_dict()]


def latents(n: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return {"a": torch.randn(n, 4, generator=g), "b": torch.randn(n, 2, 2, 2, generator=g)}


def nudge(t: torch.Tensor) -> None:
    """Changes the first element of ``t`` in place by the least step its dtype has."""
    idx = (0,) * t.dim()
    with torch.no_grad():
        if t.is_floating_point():
            t[idx] = torch.nextafter(t[idx], t[idx] + 1)
        else:
            t[idx] = t[idx] + 1


def perturbed(name: str) -> nn.Module:
    """A zoo generator whose every covered tensor differs from the seeded build's."""
    m = zoo.FACTORIES[name]()
    for t in m.state_dict(keep_vars=True).values():
        nudge(t)
    return m


@pytest.mark.parametrize("name", NAMES)
def test_a_fresh_build_has_the_same_fingerprint(name: str) -> None:
    assert fingerprint(zoo.FACTORIES[name]()) == fingerprint(zoo.FACTORIES[name]())


@pytest.mark.parametrize("name", WITH_STATE)
def test_weights_reloaded_into_a_fresh_copy_have_the_same_fingerprint(name: str) -> None:
    trained = perturbed(name)
    copy = zoo.FACTORIES[name]()
    assert fingerprint(copy) != fingerprint(trained)
    copy.load_state_dict(trained.state_dict())
    assert fingerprint(copy) == fingerprint(trained)
    assert state_digest(copy.state_dict()) == state_digest(trained.state_dict())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_the_memory_layout_does_not_change_the_fingerprint(name: str, layout: torch.memory_format) -> None:
    m = zoo.FACTORIES[name]()
    before = fingerprint(m)
    m.to(memory_format=layout)
    assert fingerprint(m) == before


def test_channels_last_and_contiguous_weights_digest_alike() -> None:
    m = zoo.channels_last()
    assert m.mix.weight.is_contiguous(memory_format=torch.channels_last) and not m.smooth.weight.is_contiguous()
    contiguous = {k: v.contiguous() for k, v in m.state_dict().items()}
    assert state_digest(m.state_dict()) == state_digest(contiguous)


@pytest.mark.parametrize("name", WITH_STATE)
def test_one_value_changed_in_any_covered_tensor_changes_the_fingerprint(name: str) -> None:
    reference = fingerprint(zoo.FACTORIES[name]())
    for key in zoo.FACTORIES[name]().state_dict():
        m = zoo.FACTORIES[name]()
        nudge(m.state_dict(keep_vars=True)[key])
        assert fingerprint(m) != reference, f"{name}: a change in {key} was not seen"
        assert state_digest(m.state_dict()) != state_digest(zoo.FACTORIES[name]().state_dict()), key


def test_the_covered_tensors_include_every_awkward_kind() -> None:
    """What 'any covered tensor' above ran over: the kinds issue 25 names are all in a state dict."""
    keys = {n: set(zoo.FACTORIES[n]().state_dict()) for n in WITH_STATE}
    assert {"parametrizations.weight.original0", "parametrizations.weight.original1"} <= {
        k.removeprefix("mix.") for k in keys["weight_norm"]}
    assert {"lin.parametrizations.weight.0._u", "lin.parametrizations.weight.0._v"} <= keys["spectral_norm"]
    assert {"first.weight", "second.weight"} <= keys["tied"]
    assert {"bias", "gain"} <= keys["zero_dim"] and "magnitude_ema" in keys["magnitude_ema"]
    assert "calls" in keys["eval_drift"] and "ramp" not in keys["non_persistent"]
    assert zoo.bf16().lin.weight.dtype == torch.bfloat16 and zoo.fp16().lin.weight.dtype == torch.float16
    assert not zoo.strided().weight.is_contiguous()


def test_a_non_persistent_buffer_is_not_covered() -> None:
    m = zoo.non_persistent()
    before = fingerprint(m)
    m.ramp.add_(1.0)
    assert fingerprint(m) == before


@pytest.mark.parametrize("name", ["magnitude_ema", "spectral_norm", "weight_norm", "non_persistent"])
def test_decoding_in_eval_mode_leaves_the_fingerprint(name: str) -> None:
    m = zoo.FACTORIES[name]()
    before = fingerprint(m)
    m.decode(latents())
    assert fingerprint(m) == before


@pytest.mark.parametrize("name", ["magnitude_ema", "spectral_norm"])
def test_a_buffer_updated_in_train_mode_is_covered(name: str) -> None:
    m = zoo.FACTORIES[name]()
    before = fingerprint(m)
    m.train()
    m.decode(latents())
    assert fingerprint(m) != before


def test_a_buffer_that_drifts_in_eval_mode_is_covered_but_the_pipe_keeps_its_first_fingerprint() -> None:
    m = zoo.eval_drift()
    before = fingerprint(m)
    policy = ViewPolicy.uniform(m.latent_spec, Perturb(0.5))
    pipe = ViewPairPipe(m, policy, batch_size=2, prefetch=0, steps=4)
    taken = [b for _, b in zip(range(2), pipe)]
    assert len(taken) == 2 and int(m.calls) == 2 and fingerprint(m) != before
    state = pipe.state_dict()
    assert state["generator"] == before
    resumed = ViewPairPipe(zoo.eval_drift(), policy, batch_size=2, prefetch=0, steps=4)
    resumed.load_state_dict(state)  # the same freshly loaded weights: not "another generator"


def test_tied_weights_are_digested_with_the_tie() -> None:
    tied = zoo.tied()
    untied = zoo.tied()
    untied.second.weight = nn.Parameter(untied.first.weight.detach().clone())
    assert torch.equal(untied.second.weight, tied.second.weight)
    assert fingerprint(untied) != fingerprint(tied)


def test_two_parameter_free_generators_differ_by_their_config() -> None:
    assert fingerprint(zoo.ParameterFree(1.5)) == fingerprint(zoo.ParameterFree(1.5))
    assert fingerprint(zoo.ParameterFree(1.5)) != fingerprint(zoo.ParameterFree(2.0))


def test_the_dtype_and_shape_are_part_of_a_digest() -> None:
    w = torch.arange(6, dtype=torch.float32).view(2, 3)
    digest = state_digest({"w": w})
    assert digest != state_digest({"w": w.view(3, 2)})
    assert digest != state_digest({"w": w.view(torch.int32)})
    assert digest != state_digest({"v": w})
    assert state_digest({"w": w, "b": w[0]}) == state_digest({"b": w[0].clone(), "w": w.clone()})


@pytest.mark.parametrize("make", [
    lambda: torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last),
    lambda: torch.randn(4, 6).t(),
    lambda: torch.randn(8)[::2],
    lambda: torch.randn(3, 1, 1, 1).to(memory_format=torch.channels_last),
], ids=["channels_last", "transposed", "step2", "size1_channels_last"])
def test_tensor_bytes_are_the_row_major_bytes_whatever_the_strides(make) -> None:
    t = make()
    assert tensor_bytes(t) == t.contiguous().numpy().tobytes()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64, torch.int64, torch.bool])
def test_tensor_bytes_of_every_dtype(dtype: torch.dtype) -> None:
    t = (torch.arange(5) % 2).to(dtype)
    expected = bytes([0, 1, 0, 1, 0]) if dtype == torch.bool else t.view(torch.uint8).numpy().tobytes()
    assert tensor_bytes(t) == expected
    assert len(tensor_bytes(t)) == 5 * t.element_size()
    assert tensor_bytes(t.reshape(1, 5)[0, 2]) == tensor_bytes(t[2:3])  # a 0-d tensor: its one element
    assert tensor_bytes(torch.empty(0, 3, dtype=dtype)) == b""


def test_tensor_bytes_of_a_bool_tensor_tell_true_from_false() -> None:
    assert tensor_bytes(torch.tensor([True, False])) != tensor_bytes(torch.tensor([False, True]))


def test_tensor_bytes_refuses_a_tensor_without_values_naming_it() -> None:
    with pytest.raises(ValueError, match="layer.w is not materialised"):
        tensor_bytes(torch.empty(3, device="meta"), "layer.w")
    with pytest.raises(ValueError, match="not materialised"):
        tensor_bytes(nn.parameter.UninitializedParameter())


@pytest.mark.parametrize("factory", [zoo.meta, zoo.lazy], ids=["meta", "lazy"])
def test_meta_and_lazy_generators_are_refused_naming_the_parameter(factory) -> None:
    g = factory()
    with pytest.raises(ValueError, match=r"lin\.weight is not materialised \(meta device or a lazy module"):
        fingerprint(g)
    with pytest.raises(ValueError, match="not materialised"):  # at the pipe's construction or its first use
        pipe = ViewPairPipe(g, ViewPolicy.uniform(g.latent_spec, Perturb(0.5)), batch_size=2, prefetch=0)
        iter(pipe)
