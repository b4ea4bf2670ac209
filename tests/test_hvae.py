"""The hierarchical VAE: protocol conformance, encoder protocol, skip connections, VMI term, training."""

from __future__ import annotations

import pytest
import torch

from mlvgm_data.generators import MLVGMProtocol, load_generator, save_generator
from mlvgm_data.models.hvae import HierarchicalVAE, gaussian_kl, make_config

TINY = {"channels": [16, 8, 8], "blocks": [1, 1, 0], "enc_channels": [4, 8, 8, 16],
        "groups": [["z1", 6, 1], ["z2", 3, 4], ["z3", 2, 8]]}


def tiny(**kw) -> HierarchicalVAE:
    torch.manual_seed(0)
    return HierarchicalVAE({**TINY, **kw})


def noise(model: HierarchicalVAE, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {grp.name: torch.randn(n, *grp.shape, generator=g) for grp in model.latent_spec}


def test_protocol_shapes_range_dtype_and_determinism():
    m = tiny().eval()
    assert isinstance(m, MLVGMProtocol)
    assert m.latent_spec.names == ("z1", "z2", "z3")
    assert [g.shape for g in m.latent_spec] == [(6,), (3, 4, 4), (2, 8, 8)]
    eps = noise(m, 5)
    with torch.no_grad():
        x = m.decode(eps)
        again = m.decode({k: v.clone() for k, v in eps.items()})
    assert x.shape == (5, 3, 32, 32) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    assert torch.equal(x, again)
    with torch.no_grad():
        other = m.decode(noise(m, 5, seed=1))
    assert not torch.allclose(x, other)


def test_64_pixel_variant():
    m = HierarchicalVAE({**TINY, "resolution": 64, "channels": [8, 8, 8, 4], "blocks": [1, 0, 0, 0],
                         "point_blocks": [0, 0, 0, 1], "enc_channels": [4, 4, 8, 8, 8]}).eval()
    with torch.no_grad():
        assert m.decode(noise(m, 2)).shape == (2, 3, 64, 64)


def test_several_vector_groups():
    m = tiny(groups=[["z1", 3, 1], ["z2", 5, 1], ["z3", 2, 4]]).eval()
    x = torch.rand(2, 3, 32, 32)
    post = m.encode(x)
    assert post["z2"][0].shape == (2, 5) and post["z3"][1].shape == (2, 2, 4, 4)
    with torch.no_grad():
        assert m.decode(noise(m, 2)).shape == (2, 3, 32, 32)
    assert set(m(x)["kl"]) == {"z1", "z2", "z3"}


def test_temperature_scales_the_noise():
    m = tiny().eval()
    eps = noise(m, 3)
    with torch.no_grad():
        m.temperature = 0.5
        a = m.decode(eps)
        m.temperature = 1.0
        b = m.decode({k: 0.5 * v for k, v in eps.items()})
    assert torch.allclose(a, b, atol=1e-6)


def test_bad_latents_raise_value_errors_naming_the_group():
    m = tiny().eval()
    eps = noise(m, 2)
    with pytest.raises(ValueError, match="missing groups.*z2"):
        m.decode({k: v for k, v in eps.items() if k != "z2"})
    with pytest.raises(ValueError, match="'z3'.*shape"):
        m.decode({**eps, "z3": torch.zeros(2, 2, 4, 4)})
    with pytest.raises(ValueError, match="'z1'.*floating"):
        m.decode({**eps, "z1": torch.zeros(2, 6, dtype=torch.int64)})
    bad = eps["z2"].clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="'z2'.*non-finite"):
        m.decode({**eps, "z2": bad})
    with pytest.raises(ValueError, match="leading shape"):
        m.decode({**eps, "z1": torch.zeros(3, 6)})
    with pytest.raises(ValueError, match="images must be"):
        m.encode(torch.zeros(2, 3, 16, 16))


def test_bad_configs():
    with pytest.raises(ValueError, match="unknown hvae config"):
        make_config({"widht": 3})
    with pytest.raises(ValueError, match="resolution/2"):
        make_config({"channels": [8, 8]})
    with pytest.raises(ValueError, match="vector group"):
        make_config({"groups": [["z1", 4, 4]]})
    with pytest.raises(ValueError, match="not a decoder stage"):
        make_config({"groups": [["z1", 4, 1], ["z2", 4, 32]]})
    with pytest.raises(ValueError, match="vmi_groups names unknown group"):
        make_config({"vmi_groups": ["zz"]})


def test_encode_returns_noise_space_posteriors_whose_kl_is_the_models_kl():
    m = tiny().eval()
    x = torch.rand(4, 3, 32, 32)
    post = m.encode(x)
    assert list(post) == ["z1", "z2", "z3"]
    for g in m.latent_spec:
        mu, logvar = post[g.name]
        assert mu.shape == (4, *g.shape) and logvar.shape == (4, *g.shape)
    # The training pass with the posterior noise fixed at its mean reproduces the same KLs.
    torch.manual_seed(0)
    with torch.no_grad():
        kl_encode = {g: gaussian_kl(mu, lv) for g, (mu, lv) in post.items()}
        m.train()
        out = m(x)
    assert torch.allclose(kl_encode["z1"], out["kl"]["z1"], atol=1e-5)
    # Lower groups are conditioned on sampled (training) vs mean (encode) upper groups; both finite.
    assert all(torch.isfinite(v).all() for v in out["kl"].values())


def test_encode_matches_the_noise_that_reconstructs():
    m = tiny().eval()
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        means = {g: mu for g, (mu, _) in m.encode(x).items()}
        m.temperature = 1.0
        assert torch.allclose(m.decode(means), m.reconstruct(x), atol=1e-5)


def test_skip_connections_feed_every_group_into_every_later_block():
    m = tiny(skip=True).eval()
    seen: dict[str, list[str]] = {}
    hooks = []
    for bi, stage in enumerate(m.blocks):
        for block in stage:
            for name, skip in block.skips.items():
                hooks.append(skip.register_forward_hook(
                    lambda mod, inp, out, key=f"stage{bi}", g=name: seen.setdefault(key, []).append((g, inp[0]))))
    for name, skip in m.out_skip.items():
        hooks.append(skip.register_forward_hook(
            lambda mod, inp, out, g=name: seen.setdefault("out", []).append((g, inp[0]))))
    eps = noise(m, 2)
    with torch.no_grad():
        m.decode(eps)
    for h in hooks:
        h.remove()
    # stage0 (4²): z1, z2; stage1 (8²): z1, z2, z3; stage 2 has no blocks; the output gets all.
    assert [g for g, _ in seen["stage0"]] == ["z1", "z2"]
    assert [g for g, _ in seen["stage1"]] == ["z1", "z2", "z3"]
    assert [g for g, _ in seen["out"]] == ["z1", "z2", "z3"]
    # z1 enters as given (top group: z = t·ε).
    z1 = dict(seen["out"])["z1"]
    assert torch.allclose(z1, m.temperature * eps["z1"])
    # Without skip connections, no block sees the latents directly.
    plain = tiny(skip=False)
    assert all(len(block.skips) == 0 for stage in plain.blocks for block in stage) and len(plain.out_skip) == 0


def test_skip_connections_carry_gradient_from_the_output_to_z1():
    m = tiny(skip=True).eval()
    eps = noise(m, 2)
    eps["z1"].requires_grad_(True)
    m.decode(eps).sum().backward()
    grad_via_out = m.out_skip["z1"].proj.weight.grad
    assert grad_via_out is not None and grad_via_out.abs().sum() > 0


def test_vmi_term_only_for_chosen_groups():
    m = tiny(vmi_weight=1.0, vmi_groups=["z2"])
    torch.manual_seed(1)
    terms = m.vmi_terms(4)
    assert list(terms) == ["z2"]
    assert list(m.aux.heads) == ["z2"]
    # The term is the Gaussian NLL of the true noise under q_aux: finite, and its gradient
    # reaches the decoder and the aux head of the chosen group.
    m.zero_grad()
    terms["z2"].backward()
    assert m.aux.heads["z2"][1].weight.grad.abs().sum() > 0
    assert m.to_rgb.weight.grad.abs().sum() > 0
    # The objective without the term has no aux parameters at all.
    plain = tiny()
    assert plain.aux is None and plain.vmi_terms(4) == {}
    other = tiny(vmi_weight=1.0, vmi_groups=["z1", "z3"])
    torch.manual_seed(1)
    assert sorted(other.vmi_terms(4)) == ["z1", "z3"]


def test_vmi_term_changes_gradients_of_the_training_objective():
    x = torch.rand(4, 3, 32, 32)

    def grads(model, with_vmi):
        model.zero_grad()
        torch.manual_seed(3)
        out = model(x)
        loss = out["nll"].mean() + sum(v.mean() for v in out["kl"].values())
        if with_vmi:
            loss = loss + model.vmi_weight * sum(model.vmi_terms(4).values())
        loss.backward()
        return model.to_rgb.weight.grad.clone()

    m = tiny(vmi_weight=5.0, vmi_groups=["z1"])
    assert not torch.allclose(grads(m, False), grads(m, True))


def test_a_few_training_steps_reduce_the_loss():
    from mlvgm_data.data import Shapes

    m = tiny()
    x = Shapes(16).render(range(16))[0]
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    torch.manual_seed(0)
    losses = []
    for _ in range(30):
        out = m(x)
        loss = out["nll"].mean() + sum(v.mean() for v in out["kl"].values())
        opt.zero_grad()
        (loss / 3072).backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 100


def test_save_load_round_trip(tmp_path):
    m = tiny().eval()
    save_generator(m, tmp_path / "hv", "hvae", m.config)
    loaded = load_generator(tmp_path / "hv")
    eps = noise(m, 3)
    with torch.no_grad():
        assert torch.equal(m.decode(eps), loaded.decode(eps))
    assert loaded.latent_spec == m.latent_spec and not loaded.training


def test_class_conditional_model():
    from mlvgm_data.data import Shapes

    m = tiny(num_classes=6).eval()
    assert m.num_classes == 6
    eps = noise(m, 4)
    with pytest.raises(ValueError, match="class-conditional"):
        m.decode(eps)
    with torch.no_grad():
        a = m.decode(eps, torch.tensor([0, 1, 2, 3]))
        b = m.decode(eps, torch.tensor([0, 1, 2, 4]))
    # the class code reaches the decoder: only the changed sample differs
    assert torch.equal(a[:3], b[:3]) and not torch.equal(a[3], b[3])
    x, classes, _ = Shapes(8).render(range(8))
    with torch.no_grad():
        given = m.encode(x, classes)
        predicted = m.encode(x)  # the encoder's class head stands in for the labels
    assert set(given) == {"z1", "z2", "z3"} and set(predicted) == set(given)
    out = m.train()(x, classes=classes)
    assert out["class_nll"].shape == (8,)
    with pytest.raises(ValueError, match="training needs classes"):
        m(x)
    with pytest.raises(ValueError, match="int64 tensor of shape"):
        m.encode(x, classes.float())
    with pytest.raises(ValueError, match="not class-conditional"):
        tiny().encode(x, classes)
    with pytest.raises(ValueError, match="num_classes"):
        tiny(num_classes=1)


def test_class_head_is_a_separate_classifier_that_trains_alone():
    from mlvgm_data.data import Shapes

    m = tiny(num_classes=6)
    x, classes, _ = Shapes(12).render(range(12))
    m(x, classes=classes)["class_nll"].mean().backward()
    # q(class | x) must not shape the VAE: its loss reaches only the head
    assert all(p.grad is not None for p in m.class_head.parameters())
    assert all(p.grad is None for n, p in m.named_parameters() if not n.startswith("class_head."))
    opt = torch.optim.Adam(m.class_head.parameters(), lr=1e-2)
    for _ in range(60):
        loss = m(x, classes=classes)["class_nll"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert torch.equal(m.class_head(x).argmax(1), classes)  # memorises 12 images
