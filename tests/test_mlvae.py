"""ML-VAE: product of Gaussians, protocol, encoder, grouped batches, training."""

from __future__ import annotations

import pytest
import torch

from mlvgm_data import Resample, ViewPolicy, ops
from mlvgm_data.apps.train.mlvae import FolderGroups, ShapesGroups
from mlvgm_data.apps.train.registry import train
from mlvgm_data.data import FACTOR_NAMES
from mlvgm_data.generators import MLVGMProtocol, load_generator, save_generator
from mlvgm_data.models.mlvae import MLVAE, check_config, kl_standard_normal, product_of_gaussians

TINY = {"resolution": 16, "content_dim": 4, "style_dim": 3, "width": 8}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**kw) -> MLVAE:
    torch.manual_seed(0)
    return MLVAE(**{**TINY, **kw}).eval()


def test_product_of_gaussians_is_the_closed_form():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(7, 3, generator=g, dtype=torch.float64)
    logvar = torch.randn(7, 3, generator=g, dtype=torch.float64)
    groups = torch.tensor([5, 2, 5, 9, 2, 5, 9])
    mu_g, logvar_g, index = product_of_gaussians(mu, logvar, groups)
    assert index.tolist() == [1, 0, 1, 2, 0, 1, 2]
    for row, gid in enumerate([2, 5, 9]):
        members = groups == gid
        prec = 1.0 / logvar[members].exp()
        torch.testing.assert_close(logvar_g[row], -torch.log(prec.sum(0)))
        torch.testing.assert_close(mu_g[row], (prec * mu[members]).sum(0) / prec.sum(0))
    # The product density is the product of the members' densities up to a constant in c.
    c = torch.randn(5, 3, generator=g, dtype=torch.float64)
    members = groups == 5
    prod = torch.distributions.Normal(mu[members][:, None], (0.5 * logvar[members][:, None]).exp()).log_prob(c).sum(0)
    ours = torch.distributions.Normal(mu_g[1], (0.5 * logvar_g[1]).exp()).log_prob(c)
    diff = prod - ours
    torch.testing.assert_close(diff, diff[:1].expand_as(diff))


def test_product_of_one_member_is_itself_and_evidence_accumulates():
    mu, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.2, -0.3]])
    m, lv, _ = product_of_gaussians(mu, logvar, torch.tensor([0]))
    torch.testing.assert_close(m, mu)
    torch.testing.assert_close(lv, logvar)
    m4, lv4, _ = product_of_gaussians(mu.repeat(4, 1), logvar.repeat(4, 1), torch.zeros(4, dtype=torch.int64))
    torch.testing.assert_close(m4, mu)
    torch.testing.assert_close(lv4, logvar - torch.log(torch.tensor(4.0)))


def test_product_of_gaussians_bad_inputs():
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        product_of_gaussians(torch.zeros(3), torch.zeros(3), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="groups must be integer ids of shape \\[2\\]"):
        product_of_gaussians(torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2))
    with pytest.raises(ValueError, match="groups must be integer ids"):
        product_of_gaussians(torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(3, dtype=torch.int64))


def test_kl_standard_normal():
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    expected = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl_standard_normal(mu, logvar), expected)


def test_protocol_shapes_range_dtype_and_determinism():
    m = tiny()
    assert isinstance(m, MLVGMProtocol)
    assert m.latent_spec.names == ("content", "style")
    assert m.latent_spec["content"].shape == (4,) and m.latent_spec["style"].shape == (3,)
    lat = {"content": torch.randn(5, 4), "style": torch.randn(5, 3)}
    with torch.no_grad():
        a, b = m.decode(lat), m.decode({k: v.clone() for k, v in lat.items()})
    assert a.shape == (5, 3, 16, 16) and a.dtype == torch.float32
    assert float(a.min()) >= 0 and float(a.max()) <= 1 and torch.equal(a, b)
    latents = {"content": torch.randn(1, 4), "style": torch.randn(1, 3)}
    assert tiny(resolution=32).decode(latents).shape == (1, 3, 32, 32)


def test_temperature_scales_the_latents():
    m, cold = tiny(), tiny(temperature=0.5)
    lat = {"content": torch.randn(2, 4), "style": torch.randn(2, 3)}
    with torch.no_grad():
        torch.testing.assert_close(cold.decode(lat), m.decode({k: v * 0.5 for k, v in lat.items()}))


def test_keep_content_resample_style_is_a_view_policy():
    m = tiny()
    views = ops.resample(m.latent_spec, ViewPolicy({"style": Resample()}), 3, 2, seed=0, step=0)
    assert torch.equal(views["content"][0], views["content"][1])
    assert not torch.equal(views["style"][0], views["style"][1])
    with torch.no_grad():
        images = m.decode({k: v.reshape(6, -1) for k, v in views.items()})
    assert images.shape == (6, 3, 16, 16)


def test_bad_latents_name_the_group():
    m = tiny()
    with pytest.raises(ValueError, match=r"missing groups \['style'\]"):
        m.decode({"content": torch.randn(2, 4)})
    with pytest.raises(ValueError, match="'content' must have shape"):
        m.decode({"content": torch.randn(2, 5), "style": torch.randn(2, 3)})
    with pytest.raises(ValueError, match="'style' has non-finite"):
        m.decode({"content": torch.randn(2, 4), "style": torch.full((2, 3), float("nan"))})


def test_encode_pools_content_over_groups():
    m = tiny()
    x = torch.rand(6, 3, 16, 16)
    with torch.no_grad():
        single = m.encode(x)
        pooled = m.encode(x, groups=torch.tensor([0, 0, 1, 1, 1, 2]))
    assert set(single) == {"content", "style"}
    assert single["content"][0].shape == (6, 4) and single["style"][1].shape == (6, 3)
    for k in range(2):
        torch.testing.assert_close(pooled["style"][k], single["style"][k])
    mu_g, lv_g, _ = product_of_gaussians(*single["content"], torch.tensor([0, 0, 1, 1, 1, 2]))
    torch.testing.assert_close(pooled["content"][0][2], mu_g[1])
    torch.testing.assert_close(pooled["content"][1][4], lv_g[1])
    torch.testing.assert_close(pooled["content"][0][5], single["content"][0][5])
    with pytest.raises(ValueError, match=r"images must be \[N, 3, 16, 16\]"):
        m.encode(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="floating point"):
        m.encode(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))


@pytest.mark.parametrize(
    "config, message",
    [({"resolution": 12}, "power of two"), ({"content_dim": 0}, "content_dim"), ({"depth": 3}, "unknown mlvae"),
     ({"temperature": 0}, "temperature"), ({"temperature": "1"}, "temperature")],
)
def test_bad_configs(config, message):
    with pytest.raises(ValueError, match=message):
        check_config({**TINY, **config})


def test_a_few_training_steps_reduce_the_loss():
    m = tiny().train()
    x, groups = ShapesGroups(16, 0, ["class"]).batch(0, 8, 4)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    torch.manual_seed(0)
    losses = []
    for _ in range(30):
        loss = m.loss(x, groups, sigma=0.1)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_save_load_round_trip(tmp_path):
    m = tiny()
    save_generator(m, tmp_path / "ml", "mlvae", m.config)
    loaded = load_generator(tmp_path / "ml")
    lat = {"content": torch.randn(3, 4), "style": torch.randn(3, 3)}
    with torch.no_grad():
        assert torch.equal(m.decode(lat), loaded.decode(lat))
    assert loaded.latent_spec == m.latent_spec and not loaded.training


def test_shapes_groups_share_only_the_chosen_factors():
    f, groups = ShapesGroups(16, 0, ["class", "hue"]).factors(3, 4, 5)
    assert groups.tolist() == [g for g in range(4) for _ in range(5)]
    per_group = f.view(4, 5, len(FACTOR_NAMES))
    for name in FACTOR_NAMES:
        col = per_group[:, :, FACTOR_NAMES.index(name)]
        same = bool((col == col[:, :1]).all())
        assert same == (name in ("class", "hue")), name
    images, g2 = ShapesGroups(16, 0, ["class"]).batch(3, 4, 5)
    assert images.shape == (20, 3, 16, 16) and torch.equal(g2, groups)
    with pytest.raises(ValueError, match="--group-factors"):
        ShapesGroups(16, 0, ["colour"])


def _write_folder(root, folders: dict[str, tuple[int, int, int]], count: int):
    from PIL import Image

    for name, rgb in folders.items():
        d = root / name if name else root
        d.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.new("RGB", (20, 24), rgb).save(d / f"{i}.png")


def test_folder_groups_come_from_one_subfolder(tmp_path):
    _write_folder(tmp_path, {"red": (255, 0, 0), "blue": (0, 0, 255), "few": (0, 255, 0)}, 4)
    (tmp_path / "few" / "3.png").unlink()
    data = FolderGroups(str(tmp_path), 16, 0, group_size=4)
    assert len(data.members) == 2
    images, groups = data.batch(0, 6, 4)
    assert images.shape == (24, 3, 16, 16)
    colour = images.mean(dim=(2, 3)).argmax(dim=1).view(6, 4)
    assert bool((colour == colour[:, :1]).all()) and set(colour[:, 0].tolist()) <= {0, 2}
    assert torch.equal(images, data.batch(0, 6, 4)[0])


def test_folder_without_subfolders_is_rejected(tmp_path):
    _write_folder(tmp_path, {"": (10, 10, 10)}, 5)
    with pytest.raises(ValueError, match="sub-folder"):
        FolderGroups(str(tmp_path), 16, 0, group_size=2)


TRAIN = {"resolution": 16, "content_dim": 4, "style_dim": 3, "width": 8, "batch_size": 8, "group_size": 4,
         "threads": 1, "kl_warmup": 2}


def test_trainer_runs_saves_and_resumes_exactly(tmp_path):
    train("mlvae", steps=4, out=str(tmp_path / "a"), **TRAIN)
    train("mlvae", steps=2, out=str(tmp_path / "b"), **TRAIN)
    summary = train("mlvae", steps=4, out=str(tmp_path / "b"), resume=True, **TRAIN)
    assert summary["steps"] == 4 and summary["group_factors"] == "class"
    assert (tmp_path / "a" / "samples.png").exists()
    a, b = load_generator(tmp_path / "a" / "model"), load_generator(tmp_path / "b" / "model")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    with pytest.raises(ValueError, match="other options"):
        train("mlvae", steps=5, out=str(tmp_path / "b"), resume=True, **dict(TRAIN, kl_warmup=3))


def test_trainer_on_a_folder(tmp_path):
    _write_folder(tmp_path / "imgs", {"a": (200, 30, 30), "b": (30, 30, 200)}, 4)
    summary = train("mlvae", steps=2, out=str(tmp_path / "run"), data=str(tmp_path / "imgs"), **TRAIN)
    assert summary["steps"] == 2 and "group_factors" not in summary


def test_trainer_bad_options(tmp_path):
    with pytest.raises(ValueError, match="multiple of --group-size"):
        train("mlvae", steps=1, out=str(tmp_path), **dict(TRAIN, batch_size=6))
    with pytest.raises(ValueError, match="--group-factors"):
        train("mlvae", steps=1, out=str(tmp_path), group_factors="class,size", **TRAIN)
