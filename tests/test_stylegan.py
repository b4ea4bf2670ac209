"""The built-in StyleGAN-like generator: protocol, W+ layer groups, training steps, trainer."""

from __future__ import annotations

import json

import pytest
import torch

from mlvgm_data.apps.train.registry import train
from mlvgm_data.apps.train.stylegan import Discriminator, classwise_std, discriminator_step, generator_step, update_ema
from mlvgm_data.generators import MLVGMProtocol, StyleGANAdapter, load_generator, save_generator
from mlvgm_data.models.stylegan import StyleGANGenerator, check_config

TINY = {"resolution": 16, "z_dim": 8, "w_dim": 8, "mapping_layers": 2, "channel_base": 64, "channel_max": 16}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**kw) -> StyleGANGenerator:
    torch.manual_seed(0)
    return StyleGANGenerator(**{**TINY, **kw}).eval()


def anchors(model: StyleGANGenerator, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    z = torch.randn(n, 8, generator=torch.Generator().manual_seed(seed))
    return {name: z.clone() for name in model.latent_spec.names}


def test_protocol_shapes_range_dtype_and_determinism():
    m = tiny()
    assert isinstance(m, MLVGMProtocol) and isinstance(m, StyleGANAdapter)
    assert m.latent_spec.names == ("w0", "w1", "w2", "w3")
    assert all(g.shape == (8,) and g.tie == "z" for g in m.latent_spec)
    assert m.generator.num_ws == 6 and m.layer_ranges == [(0, 2), (2, 4), (4, 5), (5, 6)]
    lat = anchors(m, 5)
    lat["w3"] = lat["w3"] + 1.0
    with torch.no_grad():
        a, b = m.decode(lat), m.decode({k: v.clone() for k, v in lat.items()})
    assert a.shape == (5, 3, 16, 16) and a.dtype == torch.float32
    assert float(a.min()) >= 0 and float(a.max()) <= 1 and torch.equal(a, b)


def test_decode_is_the_adapter_over_the_network():
    m = tiny()
    lat = anchors(m, 3)
    net = m.generator
    with torch.no_grad():
        expected = ((net.synthesis(net.mapping(lat["w0"]), noise_mode="const") + 1) / 2).clamp(0, 1)
        torch.testing.assert_close(m.decode(lat), expected)
        moved = dict(lat, w1=lat["w1"] + 1.0)
        changed = (m.w_plus(moved) - m.w_plus(lat)).abs().amax(dim=(0, 2)) > 0
    assert changed.tolist() == [False, False, True, True, False, False]


def test_every_w_plus_layer_reaches_the_image():
    m = tiny()
    ws = m.generator.mapping(torch.randn(2, 8)).detach().clone().requires_grad_(True)
    m.generator.synthesis(ws).sum().backward()
    assert bool((ws.grad.abs().sum(dim=(0, 2)) > 0).all())


def test_64_pixels_and_truncation():
    m = tiny(resolution=32, truncation_psi=0.5)
    assert m.generator.num_ws == 8 and m.image_shape == (3, 32, 32)
    m.generator.mapping.w_avg.fill_(0.3)
    ws = m.w_plus(anchors(m, 2))
    full = tiny(resolution=32).w_plus(anchors(m, 2))
    torch.testing.assert_close(ws, 0.3 + 0.5 * (full - 0.3))


@pytest.mark.parametrize(
    "config, message",
    [({"resolution": 24}, "power of two"), ({"resolution": 4}, "power of two"), ({"z_dim": 0}, "z_dim"),
     ({"colour": 1}, "unknown stylegan config keys"), ({"layer_groups": 7}, "between 1 and num_ws"),
     ({"c_dim": 1}, "c_dim must be 0"), ({"c_dim": -2}, "c_dim must be 0"), ({"c_dim": True}, "c_dim must be 0")],
)
def test_bad_configs(config, message):
    with pytest.raises(ValueError, match=message):
        StyleGANGenerator(**{**TINY, **config})


def test_bad_latents_name_the_group():
    m = tiny()
    lat = anchors(m, 2)
    with pytest.raises(ValueError, match=r"missing groups \['w2'\]"):
        m.decode({k: v for k, v in lat.items() if k != "w2"})
    with pytest.raises(ValueError, match="'w0' must have shape"):
        m.decode(dict(lat, w0=torch.zeros(2, 9)))
    with pytest.raises(ValueError, match="'w1' has non-finite"):
        m.decode(dict(lat, w1=torch.full((2, 8), float("inf"))))


def test_class_conditional_generator():
    m = tiny(c_dim=3)
    assert m.num_classes == 3 and m.generator.c_dim == 3
    lat = anchors(m, 4)
    with torch.no_grad():
        a = m.decode(lat, torch.tensor([0, 1, 2, 0]))
        b = m.decode({k: v.clone() for k, v in lat.items()}, torch.tensor([0, 1, 2, 0]))
        other = m.decode(lat, torch.tensor([1, 2, 0, 0]))
        w = m.generator.mapping.w(lat["w0"], torch.eye(3)[[0, 1, 2, 0]])
        embed = m.generator.mapping.embed(torch.eye(3)[[0, 1, 2, 0]])
    assert torch.equal(a, b)
    # the class changes the images of the samples whose class changed, and only those
    changed = (a - other).abs().amax(dim=(1, 2, 3)) > 1e-4
    assert changed.tolist() == [True, True, True, False]
    torch.testing.assert_close(m.w_plus(lat, torch.tensor([0, 1, 2, 0]))[:, 0], w)
    assert embed.shape == (4, 8)
    with pytest.raises(ValueError, match="class-conditional"):
        m.decode(lat)
    with pytest.raises(ValueError, match=r"classes must lie in \[0, 3\)"):
        m.decode(lat, torch.tensor([0, 1, 3, 0]))
    with pytest.raises(ValueError, match=r"one-hot \[4, 3\], got \[4, 2\]"):
        m.generator.mapping(lat["w0"], torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"one-hot \[4, 3\], got None"):
        m.generator.mapping(lat["w0"])


def test_projection_discriminator_scores_per_class():
    torch.manual_seed(0)
    D = Discriminator(16, 64, 16, c_dim=3)
    img = torch.rand(2, 3, 16, 16)
    feats = []
    D.out.register_forward_hook(lambda mod, inp, out: feats.append(out))
    c0, c1 = torch.eye(3)[[0, 0]], torch.eye(3)[[1, 1]]
    a, b = D(img, c0), D(img, c1)
    assert a.shape == (2,) and not torch.allclose(a, b)
    # the logit is the projection <out(features), cmap(c)> / sqrt(cmap_dim)
    torch.testing.assert_close(a, (feats[0] * D.cmap(c0)).sum(dim=1) / D.cmap_dim ** 0.5)
    with pytest.raises(ValueError, match=r"class-conditional: c must be one-hot \[2, 3\], got None"):
        D(img)
    assert Discriminator(16, 64, 16)(img).shape == (2,)


def test_save_load_round_trip(tmp_path):
    m = tiny(layer_groups=[[0, 1], [1, 6]])
    m.generator.mapping.w_avg.normal_()
    save_generator(m, tmp_path / "sg", "stylegan", m.config)
    loaded = load_generator(tmp_path / "sg")
    lat = {"w0": torch.randn(3, 8), "w1": torch.randn(3, 8)}
    with torch.no_grad():
        assert torch.equal(m.decode(lat), loaded.decode(lat))
    assert loaded.latent_spec == m.latent_spec and not loaded.training


@pytest.mark.parametrize("c_dim", [0, 3])
def test_discriminator_and_generator_steps_reduce_their_losses(c_dim):
    torch.manual_seed(0)
    G = StyleGANGenerator(**TINY, c_dim=c_dim).generator
    D = Discriminator(16, 64, 16, c_dim=c_dim)
    real = torch.rand(8, 3, 16, 16) * 2 - 1
    real_c = torch.eye(3)[torch.arange(8) % 3] if c_dim else None
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.0, 0.99))
    d = [discriminator_step(G, D, real, opt_d, 0.1, 4, s, 0.9, real_c)["d_loss"] for s in range(15)]
    assert sum(d[-3:]) / 3 < sum(d[:3]) / 3 - 0.1
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.0, 0.99))
    g = [generator_step(G, D, 8, opt_g, 0.9)["g_loss"] for _ in range(15)]
    assert sum(g[-3:]) / 3 < sum(g[:3]) / 3 - 0.1


def test_auxiliary_class_losses_train_the_class_head_and_the_generator():
    torch.manual_seed(0)
    G = StyleGANGenerator(**TINY, c_dim=3).generator
    D = Discriminator(16, 64, 16, c_dim=3)
    # reals whose class is visible: a bright channel per class
    labels = torch.arange(12) % 3
    real = torch.full((12, 3, 16, 16), -0.8)
    real[torch.arange(12), labels] = 0.8
    real_c = torch.eye(3)[labels]
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.0, 0.99))
    d = [discriminator_step(G, D, real, opt_d, 0.0, 4, s, 0.0, real_c, ac_weight=1.0)["d_class"] for s in range(40)]
    assert d[-1] < 0.6 * d[0]
    logits, cls = D(real, real_c, class_logits=True)
    assert logits.shape == (12,) and cls.shape == (12, 3)
    torch.testing.assert_close(logits, D(real, real_c))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.0, 0.99))
    g = [generator_step(G, D, 12, opt_g, 0.0, ac_weight=1.0)["g_class"] for _ in range(30)]
    assert sum(g[-5:]) / 5 < 0.6 * sum(g[:5]) / 5
    assert "g_class" not in generator_step(G, D, 4, opt_g, 0.0) and "d_class" not in discriminator_step(
        G, D, real, opt_d, 0.0, 4, 1, 0.0, real_c)
    with pytest.raises(ValueError, match="class_logits needs a class-conditional discriminator"):
        Discriminator(16, 64, 16)(real, class_logits=True)


def test_r1_penalty_is_applied_on_its_steps_only():
    torch.manual_seed(0)
    G, D = StyleGANGenerator(**TINY).generator, Discriminator(16, 64, 16)
    opt = torch.optim.Adam(D.parameters())
    real = torch.rand(4, 3, 16, 16)
    assert "r1" in discriminator_step(G, D, real, opt, 0.1, 4, 8, 0.0)
    assert "r1" not in discriminator_step(G, D, real, opt, 0.1, 4, 9, 0.0)
    assert "r1" not in discriminator_step(G, D, real, opt, 0.0, 4, 8, 0.0)


def test_update_ema():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = a.weight.detach().clone()
    update_ema(a, b, 0.75)
    torch.testing.assert_close(a.weight, 0.75 * before + 0.25 * b.weight)


def test_check_config_defaults():
    cfg = check_config({})
    assert cfg["resolution"] == 32 and cfg["layer_groups"] == 4


TRAIN = {"resolution": 16, "z_dim": 8, "w_dim": 8, "channel_base": 64, "channel_max": 16, "batch_size": 4,
         "threads": 1, "r1_every": 2}


def test_trainer_runs_saves_and_resumes_exactly(tmp_path):
    straight = train("stylegan", steps=4, out=str(tmp_path / "a"), **TRAIN)
    train("stylegan", steps=2, out=str(tmp_path / "b"), **TRAIN)
    resumed = train("stylegan", steps=4, out=str(tmp_path / "b"), resume=True, **TRAIN)
    assert straight["steps"] == resumed["steps"] == 4
    for name in ("model.pt", "model.json", "summary.json", "samples.png", "checkpoint.pt"):
        assert (tmp_path / "a" / name).exists()
    a, b = load_generator(tmp_path / "a" / "model"), load_generator(tmp_path / "b" / "model")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    assert json.loads((tmp_path / "a" / "model.json").read_text())["family"] == "stylegan"
    with pytest.raises(ValueError, match="other options"):
        train("stylegan", steps=5, out=str(tmp_path / "b"), resume=True, **dict(TRAIN, r1_gamma=1.0))


def test_trainer_is_class_conditional_on_shapes_by_default(tmp_path):
    cond = train("stylegan", steps=1, out=str(tmp_path / "c"), **TRAIN)
    uncond = train("stylegan", steps=1, out=str(tmp_path / "u"), conditional=False, **TRAIN)
    assert cond["num_classes"] == 6 and uncond["num_classes"] == 0
    assert load_generator(tmp_path / "c" / "model").num_classes == 6
    assert load_generator(tmp_path / "u" / "model").num_classes is None
    from PIL import Image

    # the sample grid of a class-conditional run: one row of 8 per class
    assert Image.open(tmp_path / "c" / "samples.png").size[1] < Image.open(tmp_path / "u" / "samples.png").size[1]


def test_trainer_bad_options(tmp_path):
    with pytest.raises(ValueError, match="--mixing-prob"):
        train("stylegan", steps=1, out=str(tmp_path), mixing_prob=1.5, **TRAIN)
    with pytest.raises(ValueError, match="--ac-weight"):
        train("stylegan", steps=1, out=str(tmp_path), ac_weight=-1.0, **TRAIN)
    with pytest.raises(ValueError, match="--data"):
        train("stylegan", steps=1, out=str(tmp_path), data=str(tmp_path / "nowhere"), **TRAIN)
    from mlvgm_data.data import export_jpeg

    export_jpeg(tmp_path / "imgs", 4, resolution=16)
    with pytest.raises(ValueError, match="--conditional needs labelled data"):
        train("stylegan", steps=1, out=str(tmp_path / "f"), data=str(tmp_path / "imgs"), conditional=True,
                     **TRAIN)


def test_classwise_std_matches_a_per_class_loop():
    torch.manual_seed(0)
    x = torch.randn(7, 3, 2, 2)
    classes = torch.tensor([0, 2, 0, 1, 2, 0, 3])
    expected = torch.stack([x[classes == k].var(dim=0, unbiased=False).add(1e-8).sqrt().mean() for k in classes])
    torch.testing.assert_close(classwise_std(x, torch.eye(4)[classes]), expected)
    # a class seen once has (near) zero spread; copies of one image have none either
    assert float(classwise_std(x, torch.eye(4)[classes])[6]) == pytest.approx(1e-4)
    same = x[:1].expand(4, -1, -1, -1)
    assert torch.allclose(classwise_std(same, torch.eye(2)[[0, 0, 1, 1]]), torch.full((4,), 1e-4))
