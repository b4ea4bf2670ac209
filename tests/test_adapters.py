"""Adapters for users' generators, tested with tiny stand-ins that have the real call signatures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mlvgm_data import LatentGroup, LatentSpec
from mlvgm_data.generators import (
    BigGANAdapter,
    CallableGenerator,
    HierarchicalAdapter,
    MLVGMProtocol,
    StyleGANAdapter,
)
from mlvgm_data.generators.adapters import split_layers, to_unit_range

# --- stand-ins -------------------------------------------------------------------------------


class NVMapping(nn.Module):
    """NVlabs MappingNetwork signature: (z, c, truncation_psi, truncation_cutoff, update_emas)."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, with_w_avg: bool = True) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.fc = nn.Linear(z_dim + c_dim, w_dim)
        if with_w_avg:
            self.register_buffer("w_avg", torch.linspace(-0.5, 0.5, w_dim))
        self.calls: list[dict] = []

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        self.calls.append({"n": z.shape[0], "truncation_psi": truncation_psi, "truncation_cutoff": truncation_cutoff})
        x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
        if self.c_dim:
            assert c.shape == (z.shape[0], self.c_dim)
            x = torch.cat([x, c], dim=1)
        ws = torch.tanh(self.fc(x)).unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cut = self.num_ws if truncation_cutoff is None else truncation_cutoff
            ws[:, :cut] = ws[:, :cut] * truncation_psi
        return ws


class NVSynthesis(nn.Module):
    """NVlabs SynthesisNetwork signature: (ws, noise_mode, force_fp32); every layer matters."""

    def __init__(self, w_dim: int, num_ws: int, res: int) -> None:
        super().__init__()
        self.res = res
        self.weight = nn.Parameter(torch.randn(num_ws, w_dim, 3 * res * res) * 0.3)
        self.register_buffer("const_noise", torch.randn(3 * res * res) * 0.05)

    def forward(self, ws, noise_mode="random", force_fp32=False):
        x = torch.einsum("nld,ldp->np", ws, self.weight)
        if noise_mode == "const":
            x = x + self.const_noise
        elif noise_mode == "random":
            x = x + torch.randn_like(x) * 0.05
        return torch.tanh(x).view(-1, 3, self.res, self.res)


class NVGenerator(nn.Module):
    def __init__(self, z_dim=12, c_dim=0, w_dim=16, num_ws=8, res=8, with_w_avg=True) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.img_resolution, self.img_channels = res, 3
        self.mapping = NVMapping(z_dim, c_dim, w_dim, num_ws, with_w_avg)
        self.synthesis = NVSynthesis(w_dim, num_ws, res)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, noise_mode="const"):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)


class RosinalityGenerator(nn.Module):
    """rosinality stylegan2-pytorch Generator.forward signature; returns (img, latent)."""

    def __init__(self, style_dim=10, n_latent=6, res=8) -> None:
        super().__init__()
        self.style_dim, self.n_latent, self.res = style_dim, n_latent, res
        self.style = nn.Sequential(nn.Linear(style_dim, style_dim), nn.LeakyReLU(0.2))
        self.weight = nn.Parameter(torch.randn(n_latent, style_dim, 3 * res * res) * 0.3)

    def forward(self, styles, return_latents=False, inject_index=None, truncation=1, truncation_latent=None,
                input_is_latent=False, noise=None, randomize_noise=True):
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        latent = styles[0] if styles[0].ndim == 3 else styles[0].unsqueeze(1).repeat(1, self.n_latent, 1)
        x = torch.einsum("nld,ldp->np", latent, self.weight)
        if randomize_noise:
            x = x + torch.randn_like(x) * 0.05
        return torch.tanh(x).view(-1, 3, self.res, self.res), None


class BigGANLike(nn.Module):
    """pytorch-pretrained-BigGAN signature: forward(z, class_label one-hot, truncation)."""

    def __init__(self, z_dim=24, num_classes=5, res=8) -> None:
        super().__init__()
        self.z_dim, self.res = z_dim, res
        self.fc = nn.Linear(z_dim + num_classes, 3 * res * res)
        self.truncations: list[float] = []

    def forward(self, z, class_label, truncation):
        assert class_label.dtype == z.dtype and class_label.dim() == 2
        self.truncations.append(truncation)
        return torch.tanh(self.fc(torch.cat([z * truncation, class_label], 1))).view(-1, 3, self.res, self.res)


class BigBiGANLike(nn.Module):
    """BigBiGAN port: forward(z) with z of 120 = 6 x 20; dim_z attribute."""

    def __init__(self, res=8) -> None:
        super().__init__()
        self.dim_z, self.res = 120, res
        self.fc = nn.Linear(120, 3 * res * res)

    def forward(self, z):
        return torch.tanh(self.fc(z)).view(-1, 3, self.res, self.res)


class NVAELike(nn.Module):
    """A top-down sampler: z0 = t·eps0; z_k = mu(h) + sigma(h)·t·eps_k at growing scales."""

    def __init__(self, ch=4) -> None:
        super().__init__()
        self.prior = nn.ModuleList([nn.Conv2d(ch, 2 * ch, 1), nn.Conv2d(ch, 2 * ch, 1)])
        self.out = nn.Conv2d(ch, 3, 1)

    def sample_given_eps(self, eps_list, t):
        h = eps_list[0] * t
        for eps, prior in zip(eps_list[1:], self.prior):
            h = nn.functional.interpolate(h, size=eps.shape[-2:])
            mu, log_sigma = prior(h).chunk(2, dim=1)
            h = h + mu + log_sigma.exp() * t * eps
        return torch.sigmoid(self.out(nn.functional.interpolate(h, scale_factor=2)))


def latents_for(spec: LatentSpec, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {grp.name: torch.randn(n, *grp.shape, generator=g) for grp in spec}


def tied_latents(spec: LatentSpec, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    z = torch.randn(n, *spec.groups[0].shape, generator=torch.Generator().manual_seed(seed))
    return {grp.name: z.clone() for grp in spec}


def assert_protocol(gen, latents, classes=None, shape=None):
    assert isinstance(gen, MLVGMProtocol)
    n = next(iter(latents.values())).shape[0]
    with torch.no_grad():
        a = gen.decode(latents, classes)
        b = gen.decode({k: v.clone() for k, v in latents.items()}, classes)
    assert a.dim() == 4 and a.shape[0] == n
    if shape is not None:
        assert tuple(a.shape[1:]) == shape
    assert a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b)
    return a


# --- StyleGAN (NVlabs) -------------------------------------------------------------------------


def test_split_layers_default_and_uneven():
    assert split_layers(16, 4) == [(0, 4), (4, 8), (8, 12), (12, 16)]
    assert split_layers(14, 4) == [(0, 4), (4, 8), (8, 11), (11, 14)]
    assert split_layers(8, [(2, 8), (0, 2)]) == [(2, 8), (0, 2)]


@pytest.mark.parametrize(
    "groups, message",
    [(0, "between 1 and num_ws"), (9, "between 1 and num_ws"), ([(0, 3), (4, 8)], r"uncovered \[3\]"),
     ([(0, 5), (4, 8)], r"covered twice \[4\]"), ([(0, 9)], "stop <= num_ws"), ("abc", "list of"), ([], "empty")],
)
def test_split_layers_bad(groups, message):
    with pytest.raises(ValueError, match=message):
        split_layers(8, groups)


def test_stylegan_protocol_and_spec():
    torch.manual_seed(0)
    G = NVGenerator()
    gen = StyleGANAdapter(G).eval()
    spec = gen.latent_spec
    assert spec.names == ("w0", "w1", "w2", "w3")
    assert all(g.shape == (12,) and g.tie == "z" for g in spec)
    assert gen.layer_ranges == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert gen.image_shape == (3, 8, 8) and gen.num_classes is None
    assert_protocol(gen, latents_for(spec, 5), shape=(3, 8, 8))


def test_stylegan_anchor_equals_plain_generator_and_one_mapping_call():
    torch.manual_seed(0)
    G = NVGenerator()
    gen = StyleGANAdapter(G)
    lat = tied_latents(gen.latent_spec, 4)
    G.mapping.calls.clear()
    out = gen.decode(lat)
    assert [c["n"] for c in G.mapping.calls] == [16]  # all 4 groups in one batched call
    z = lat["w0"]
    expected = ((G(z, torch.zeros(4, 0)) + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(out, expected)


def test_stylegan_style_mixing_takes_each_groups_layers_from_its_own_z():
    torch.manual_seed(0)
    G = NVGenerator()
    gen = StyleGANAdapter(G)
    lat = tied_latents(gen.latent_spec, 3)
    base = gen.w_plus(lat)
    moved = dict(lat, w2=lat["w2"] + 0.7)
    mixed = gen.w_plus(moved)
    changed = (mixed - base).abs().amax(dim=(0, 2)) > 1e-6
    assert changed.tolist() == [False, False, False, False, True, True, False, False]
    own = G.mapping(moved["w2"], torch.zeros(3, 0))
    torch.testing.assert_close(mixed[:, 4:6], own[:, 4:6])
    assert not torch.equal(gen.decode(moved), gen.decode(lat))


def test_stylegan_custom_ranges_and_names():
    G = NVGenerator()
    gen = StyleGANAdapter(G, layer_groups=[(0, 1), (1, 8)], group_names=["coarse", "fine"])
    assert gen.latent_spec.names == ("coarse", "fine")
    lat = tied_latents(gen.latent_spec, 2)
    base = gen.w_plus(lat)
    mixed = gen.w_plus(dict(lat, coarse=-lat["coarse"]))
    changed = (mixed - base).abs().amax(dim=(0, 2)) > 1e-6
    assert changed.tolist() == [True] + [False] * 7
    with pytest.raises(ValueError, match="group names"):
        StyleGANAdapter(G, layer_groups=2, group_names=["a"])


def test_stylegan_truncation_around_w_avg():
    torch.manual_seed(0)
    G = NVGenerator()
    lat = tied_latents(StyleGANAdapter(G).latent_spec, 3)
    full = StyleGANAdapter(G).w_plus(lat)
    w_avg = G.mapping.w_avg
    zero = StyleGANAdapter(G, truncation_psi=0.0).w_plus(lat)
    torch.testing.assert_close(zero, w_avg.expand_as(zero))
    half = StyleGANAdapter(G, truncation_psi=0.5, truncation_cutoff=2).w_plus(lat)
    torch.testing.assert_close(half[:, :2], w_avg + 0.5 * (full[:, :2] - w_avg))
    torch.testing.assert_close(half[:, 2:], full[:, 2:])
    own = torch.zeros(16)
    given = StyleGANAdapter(G, truncation_psi=0.0, w_avg=own).w_plus(lat)
    torch.testing.assert_close(given, torch.zeros_like(given))


def test_stylegan_truncation_falls_back_to_mapping_argument():
    G = NVGenerator(with_w_avg=False)
    gen = StyleGANAdapter(G, truncation_psi=0.5, truncation_cutoff=3)
    lat = tied_latents(gen.latent_spec, 2)
    G.mapping.calls.clear()
    ws = gen.w_plus(lat)
    assert G.mapping.calls[-1]["truncation_psi"] == 0.5 and G.mapping.calls[-1]["truncation_cutoff"] == 3
    torch.testing.assert_close(ws, G.mapping(lat["w0"], None, truncation_psi=0.5, truncation_cutoff=3))


def test_stylegan_noise_mode_passthrough():
    G = NVGenerator()
    lat = latents_for(StyleGANAdapter(G).latent_spec, 2)
    rand = StyleGANAdapter(G, noise_mode="random")
    torch.manual_seed(1)
    a = rand.decode(lat)
    torch.manual_seed(2)
    assert not torch.equal(a, rand.decode(lat))
    none = StyleGANAdapter(G, noise_mode="none")
    assert torch.equal(none.decode(lat), none.decode(lat))
    assert not torch.equal(none.decode(lat), StyleGANAdapter(G).decode(lat))


def test_stylegan_class_conditional():
    torch.manual_seed(0)
    G = NVGenerator(c_dim=3)
    gen = StyleGANAdapter(G)
    assert gen.num_classes == 3
    lat = latents_for(gen.latent_spec, 4)
    a = assert_protocol(gen, lat, classes=torch.tensor([0, 1, 2, 0]))
    b = gen.decode(lat, torch.tensor([1, 1, 1, 1]))
    assert not torch.equal(a, b)
    with pytest.raises(ValueError, match="class-conditional"):
        gen.decode(lat)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        gen.decode(lat, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="int64"):
        gen.decode(lat, torch.tensor([0.0, 1, 2, 0]))
    with pytest.raises(ValueError, match="not class-conditional"):
        StyleGANAdapter(NVGenerator()).decode(latents_for(gen.latent_spec, 4), torch.zeros(4, dtype=torch.int64))


def test_stylegan_registers_generator_once():
    G = NVGenerator()
    gen = StyleGANAdapter(G)
    keys = list(gen.state_dict())
    assert sorted(keys) == sorted(f"generator.{k}" for k in G.state_dict())
    gen.to(torch.float64)
    assert G.synthesis.weight.dtype == torch.float64


def test_stylegan_rosinality():
    torch.manual_seed(0)
    g = RosinalityGenerator()
    gen = StyleGANAdapter(g, layer_groups=3, api="rosinality")
    assert gen.latent_spec.names == ("w0", "w1", "w2") and gen.latent_spec.groups[0].shape == (10,)
    lat = tied_latents(gen.latent_spec, 3)
    out = assert_protocol(gen, lat)
    expected = ((g([lat["w0"]], randomize_noise=False)[0] + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(out, expected)
    changed = (gen.w_plus(dict(lat, w1=lat["w1"] + 1)) - gen.w_plus(lat)).abs().amax(dim=(0, 2)) > 1e-6
    assert changed.tolist() == [False, False, True, True, False, False]
    w_avg = torch.full((1, 10), 0.25)
    zero = StyleGANAdapter(g, 3, api="rosinality", truncation_psi=0.0, w_avg=w_avg).w_plus(lat)
    torch.testing.assert_close(zero, torch.full_like(zero, 0.25))


def test_stylegan_bad_construction():
    with pytest.raises(ValueError, match="'mapping'"):
        StyleGANAdapter(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="'style'"):
        StyleGANAdapter(nn.Linear(2, 2), api="rosinality")
    with pytest.raises(ValueError, match="needs w_avg"):
        StyleGANAdapter(RosinalityGenerator(), api="rosinality", truncation_psi=0.7)
    with pytest.raises(ValueError, match="noise_mode='none'"):
        StyleGANAdapter(RosinalityGenerator(), api="rosinality", noise_mode="none")
    with pytest.raises(ValueError, match="api"):
        StyleGANAdapter(NVGenerator(), api="tf")
    with pytest.raises(ValueError, match="noise_mode"):
        StyleGANAdapter(NVGenerator(), noise_mode="fixed")
    with pytest.raises(ValueError, match="output_range"):
        StyleGANAdapter(NVGenerator(), output_range=(1, -1))
    with pytest.raises(ValueError, match="truncation_psi"):
        StyleGANAdapter(NVGenerator(), truncation_psi="0.7")
    with pytest.raises(ValueError, match="truncation_cutoff"):
        StyleGANAdapter(NVGenerator(), truncation_cutoff=0)
    with pytest.raises(ValueError, match="torch.nn.Module"):
        StyleGANAdapter(lambda z: z)


def test_stylegan_bad_latents():
    gen = StyleGANAdapter(NVGenerator())
    lat = latents_for(gen.latent_spec, 2)
    with pytest.raises(ValueError, match=r"missing groups \['w3'\]"):
        gen.decode({k: v for k, v in lat.items() if k != "w3"})
    with pytest.raises(ValueError, match="'w1' must have shape"):
        gen.decode(dict(lat, w1=torch.zeros(2, 11)))
    with pytest.raises(ValueError, match="'w0' must be floating point"):
        gen.decode(dict(lat, w0=torch.zeros(2, 12, dtype=torch.int64)))
    bad = lat["w2"].clone()
    bad[1, 3] = float("nan")
    with pytest.raises(ValueError, match="'w2' has non-finite"):
        gen.decode(dict(lat, w2=bad))
    with pytest.raises(ValueError, match="unknown groups"):
        gen.decode(dict(lat, extra=torch.zeros(2, 12)))


def test_stylegan_bad_wrapped_outputs():
    G = NVGenerator()
    gen = StyleGANAdapter(G)
    lat = latents_for(gen.latent_spec, 2)
    G.mapping.forward = lambda z, c, **kw: torch.zeros(z.shape[0], 5, 16)
    with pytest.raises(RuntimeError, match=r"mapping returned \[8, 5, 16\], expected \[8, 8, w_dim\]"):
        gen.decode(lat)
    G = NVGenerator()
    gen = StyleGANAdapter(G)
    G.synthesis.forward = lambda ws, **kw: torch.full((ws.shape[0], 3, 8, 8), float("nan"))
    with pytest.raises(RuntimeError, match="non-finite"):
        gen.decode(lat)
    G.synthesis.forward = lambda ws, **kw: torch.zeros(ws.shape[0], 3, 4, 4)
    with pytest.raises(RuntimeError, match=r"images \[3, 4, 4\], its image_shape is \[3, 8, 8\]"):
        gen.decode(lat)
    G.synthesis.forward = lambda ws, **kw: torch.zeros(ws.shape[0], 3, 8, 8, dtype=torch.int64)
    with pytest.raises(RuntimeError, match="synthesis returned torch.int64"):
        gen.decode(lat)


# --- BigGAN / BigBiGAN -------------------------------------------------------------------------


def test_biggan_chunks_classes_truncation():
    torch.manual_seed(0)
    G = BigGANLike()
    gen = BigGANAdapter(G, chunks=3, num_classes=5, truncation=0.4, image_shape=(3, 8, 8))
    assert gen.latent_spec.names == ("c0", "c1", "c2")
    assert all(g.shape == (8,) and g.tie is None for g in gen.latent_spec)
    lat = latents_for(gen.latent_spec, 4)
    cls = torch.tensor([0, 4, 2, 2])
    out = assert_protocol(gen, lat, classes=cls, shape=(3, 8, 8))
    assert G.truncations[-1] == 0.4
    z = torch.cat([lat["c0"], lat["c1"], lat["c2"]], 1)
    expected = ((G(z, nn.functional.one_hot(cls, 5).float(), 0.4) + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="class-conditional"):
        gen.decode(lat)


def test_bigbigan_default_six_chunks_of_twenty():
    torch.manual_seed(0)
    G = BigBiGANLike()
    gen = BigGANAdapter(G)
    assert gen.latent_spec.names == tuple(f"c{i}" for i in range(6))
    assert all(g.shape == (20,) for g in gen.latent_spec)
    lat = latents_for(gen.latent_spec, 3)
    out = assert_protocol(gen, lat)
    moved = gen.decode(dict(lat, c5=lat["c5"] + 1))
    assert not torch.equal(out, moved)
    assert list(gen.state_dict()) == ["model.fc.weight", "model.fc.bias"]


def test_biggan_named_chunks_and_index_classes():
    seen = {}

    def fn(z, y):
        seen["y"] = y
        return torch.zeros(z.shape[0], 1, 2, 2)

    gen = BigGANAdapter(fn, chunks={"coarse": 4, "fine": 6}, num_classes=3, class_input="index")
    assert gen.latent_spec.names == ("coarse", "fine")
    out = gen.decode(latents_for(gen.latent_spec, 2), torch.tensor([2, 0]))
    assert out.shape == (2, 1, 2, 2) and torch.equal(out, torch.full_like(out, 0.5))
    assert seen["y"].dtype == torch.int64 and seen["y"].tolist() == [2, 0]


@pytest.mark.parametrize(
    "kwargs, message",
    [({"chunks": 7}, "cannot be split into 7"), ({"chunks": [20, 20]}, "sum to 40, but z_dim is 120"),
     ({"chunks": [20, 0, 100]}, "chunk 'c1' size"), ({"chunks": "six"}, "chunks must be"),
     ({"class_input": "label"}, "class_input"), ({"truncation": "0.5"}, "truncation"),
     ({"image_shape": (3, 8)}, "image_shape"), ({"num_classes": 0}, "num_classes")],
)
def test_biggan_bad_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BigGANAdapter(BigBiGANLike(), **kwargs)


def test_biggan_needs_z_dim_for_a_count_and_a_callable():
    with pytest.raises(ValueError, match="needs z_dim"):
        BigGANAdapter(lambda z: z, chunks=6)
    with pytest.raises(ValueError, match="generator must be callable"):
        BigGANAdapter(3, chunks=[2])


def test_biggan_bad_outputs():
    gen = BigGANAdapter(lambda z: z.view(-1, 1, 2, 3), chunks=[6])
    assert gen.decode(latents_for(gen.latent_spec, 2)).shape == (2, 1, 2, 3)
    gen = BigGANAdapter(lambda z: z, chunks=[6])
    with pytest.raises(RuntimeError, match=r"shape \[2, 6\], expected \[2, C, H, W\]"):
        gen.decode(latents_for(gen.latent_spec, 2))
    gen = BigGANAdapter(lambda z: (z, z), chunks=[6])
    with pytest.raises(RuntimeError, match="returned tuple"):
        gen.decode(latents_for(gen.latent_spec, 2))


# --- NVAE-style --------------------------------------------------------------------------------


def test_hierarchical_adapter_bound_method():
    torch.manual_seed(0)
    model = NVAELike()
    gen = HierarchicalAdapter(model.sample_given_eps, shapes=[(4, 2, 2), (4, 4, 4), (4, 8, 8)], temperature=0.7)
    assert gen.latent_spec.names == ("z0", "z1", "z2")
    lat = latents_for(gen.latent_spec, 3)
    out = assert_protocol(gen, lat, shape=(3, 16, 16))
    expected = model.sample_given_eps([lat["z0"], lat["z1"], lat["z2"]], 0.7)
    torch.testing.assert_close(out, expected)
    hot = HierarchicalAdapter(model.sample_given_eps, shapes=[(4, 2, 2), (4, 4, 4), (4, 8, 8)], temperature=1.0)
    assert not torch.equal(out, hot.decode(lat))
    assert sorted(gen.state_dict()) == sorted(f"model.{k}" for k in model.state_dict())
    moved = gen.decode(dict(lat, z2=lat["z2"] + 1))
    assert not torch.equal(out, moved)


def test_hierarchical_adapter_names_range_and_errors():
    gen = HierarchicalAdapter(lambda eps, t: eps[0] * t, shapes=[(3, 2, 2)], names=["top"], output_range=(-1, 1))
    lat = {"top": torch.tensor([[[[1.0, -1.0], [0.0, 3.0]]] * 3])}
    out = gen.decode(lat)
    assert out[0, 0].tolist() == [[1.0, 0.0], [0.5, 1.0]]
    with pytest.raises(ValueError, match="names"):
        HierarchicalAdapter(lambda eps, t: eps[0], shapes=[(1, 2, 2)], names=["a", "b"])
    with pytest.raises(ValueError, match="temperature"):
        HierarchicalAdapter(lambda eps, t: eps[0], shapes=[(1, 2, 2)], temperature=0)
    with pytest.raises(ValueError, match="at least one"):
        HierarchicalAdapter(lambda eps, t: eps[0], shapes=[])
    with pytest.raises(ValueError, match="sampler must be callable"):
        HierarchicalAdapter(None, shapes=[(1, 2, 2)])
    with pytest.raises(ValueError, match="'top' must have shape"):
        gen.decode({"top": torch.zeros(1, 3, 4, 4)})
    bad = HierarchicalAdapter(lambda eps, t: eps[0][:, :, :1], shapes=[(3, 2, 2)], image_shape=(3, 2, 2))
    with pytest.raises(RuntimeError, match=r"images \[3, 1, 2\], its image_shape is \[3, 2, 2\]"):
        bad.decode({"z0": torch.zeros(1, 3, 2, 2)})


# --- any callable ------------------------------------------------------------------------------


def test_callable_generator():
    spec = LatentSpec([LatentGroup("a", (2,)), LatentGroup("b", (1, 2, 2))])

    def fn(latents):
        return torch.sigmoid(latents["b"] + latents["a"].sum(1).view(-1, 1, 1, 1))

    gen = CallableGenerator(fn, spec, image_shape=(1, 2, 2))
    lat = latents_for(spec, 4)
    torch.testing.assert_close(assert_protocol(gen, lat, shape=(1, 2, 2)), fn(lat))
    cond = CallableGenerator(lambda lat, c: lat["b"] * 0 + c.view(-1, 1, 1, 1).float() / 2, spec, num_classes=3)
    assert cond.decode(lat, torch.tensor([0, 1, 2, 2]))[:, 0, 0, 0].tolist() == [0.0, 0.5, 1.0, 1.0]
    with pytest.raises(ValueError, match="class-conditional"):
        cond.decode(lat)
    with pytest.raises(ValueError, match="spec must be a LatentSpec"):
        CallableGenerator(fn, {"a": (2,)})
    nan = CallableGenerator(lambda lat: lat["b"] * float("nan"), spec)
    with pytest.raises(RuntimeError, match="non-finite"):
        nan.decode(lat)


class Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(2.0))

    def forward(self, latents):
        return latents["z"] * self.gain


def test_callable_generator_module_is_registered():
    net = Scale()
    gen = CallableGenerator(net, LatentSpec([LatentGroup("z", (1, 2, 2))]))
    assert list(gen.state_dict()) == ["model.gain"]
    assert gen.decode({"z": torch.full((1, 1, 2, 2), 0.25)}).max() == 0.5
    assert gen.decode({"z": torch.full((1, 1, 2, 2), 2.0)}).max() == 1.0


def test_to_unit_range():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, float("nan")])
    y = to_unit_range(x, (-1.0, 1.0))
    assert y[:4].tolist() == [0.0, 0.0, 0.5, 1.0] and torch.isnan(y[4])
    assert to_unit_range(torch.tensor([0.0, 255.0]), (0.0, 255.0)).tolist() == [0.0, 1.0]
