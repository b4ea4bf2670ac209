"""Adapters for users' generators, tested with tiny stand-ins that have the real call signatures."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import NVGenerator
from torch import nn

from mlvgm_data import Keep, LatentGroup, LatentSpec, Perturb, Resample, ViewPairPipe, ViewPolicy
from mlvgm_data.generators import (
    BigGANAdapter,
    CallableGenerator,
    HierarchicalAdapter,
    MLVGMProtocol,
    StyleGANAdapter,
)
from mlvgm_data.generators.adapters import NVAESampler, VDVAESampler, dmol_mean, split_layers, to_unit_range

# --- stand-ins (NVlabs' StyleGAN: helpers.NVGenerator) ---------------------------------------


class RosinalityGenerator(nn.Module):
    """rosinality stylegan2-pytorch Generator: size, style_dim, n_latent = 2·log2(size) − 2, and
    its forward signature; returns (img, latent)."""

    def __init__(self, size=16, style_dim=10) -> None:
        super().__init__()
        self.size, self.style_dim = size, style_dim
        self.n_latent = int(math.log2(size)) * 2 - 2
        self.style = nn.Sequential(nn.Linear(style_dim, style_dim), nn.LeakyReLU(0.2))
        self.weight = nn.Parameter(torch.randn(self.n_latent, style_dim, 3 * size * size) * 0.3)

    def forward(self, styles, return_latents=False, inject_index=None, truncation=1, truncation_latent=None,
                input_is_latent=False, noise=None, randomize_noise=True):
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        latent = styles[0] if styles[0].ndim == 3 else styles[0].unsqueeze(1).repeat(1, self.n_latent, 1)
        x = torch.einsum("nld,ldp->np", latent, self.weight)
        if randomize_noise:
            x = x + torch.randn_like(x) * 0.05
        return torch.tanh(x).view(-1, 3, self.size, self.size), None


class BigGANConfig:
    """pytorch-pretrained-BigGAN's BigGANConfig fields that the adapter reads."""

    def __init__(self, output_dim=8, z_dim=24, num_classes=5) -> None:
        self.output_dim, self.z_dim, self.num_classes = output_dim, z_dim, num_classes


class BigGANLike(nn.Module):
    """pytorch-pretrained-BigGAN's BigGAN: config, embeddings(one-hot) and forward(z, class_label,
    truncation) with its truncation assertion; records the z it was given."""

    def __init__(self, config=None) -> None:
        super().__init__()
        self.config = config = config or BigGANConfig()
        self.embeddings = nn.Linear(config.num_classes, config.z_dim, bias=False)
        self.fc = nn.Linear(2 * config.z_dim, 3 * config.output_dim ** 2)
        self.seen: list[tuple[torch.Tensor, float]] = []

    def forward(self, z, class_label, truncation):
        assert 0 < truncation <= 1
        assert class_label.dtype == z.dtype and class_label.dim() == 2
        self.seen.append((z.clone(), truncation))
        cond = torch.cat((z, self.embeddings(class_label)), dim=1)
        r = self.config.output_dim
        return torch.tanh(self.fc(cond)).view(-1, 3, r, r)


class HierGenerator(nn.Module):
    """BigGAN-PyTorch's Generator with hier=True: dim_z cut into num_slots slots of z_chunk_size;
    slot 0 feeds the first linear layer, slot i block i (with the shared class embedding y)."""

    def __init__(self, dim_z=120, num_blocks=5, res=8) -> None:
        super().__init__()
        self.num_slots = num_blocks + 1
        self.z_chunk_size = dim_z // self.num_slots
        self.dim_z, self.resolution = self.z_chunk_size * self.num_slots, res
        self.shared = nn.Embedding(1000, 4)
        self.linear = nn.Linear(self.z_chunk_size, 3 * res * res)
        self.blocks = nn.ModuleList(nn.Linear(4 + self.z_chunk_size, 3 * res * res) for _ in range(num_blocks))

    def forward(self, z, y):
        zs = torch.split(z, self.z_chunk_size, 1)
        h = self.linear(zs[0])
        for block, item in zip(self.blocks, zs[1:]):
            h = h + block(torch.cat([y, item], 1))
        return torch.tanh(h).view(-1, 3, self.resolution, self.resolution)


class BigBiGANLike(nn.Module):
    """pytorch-pretrained-gans' BigBiGAN GeneratorWrapper: forward(z), dim_z, big_gan."""

    def __init__(self) -> None:
        super().__init__()
        self.big_gan = HierGenerator()
        self.dim_z = self.big_gan.dim_z
        self.conditional = False

    def forward(self, z):
        classes = torch.zeros(z.shape[0], dtype=torch.int64, device=z.device)
        return self.big_gan(z, self.big_gan.shared(classes))


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


def nvae_normal_sample(mu, log_sigma, t, drawn):
    """NVAE's Normal(mu, log_sigma, temp).sample(): soft-clamped to ±5, sigma = exp(log_sigma) + 1e-2,
    times temp when temp != 1; z = eps·sigma + mu (the eps drawn is recorded)."""
    mu = mu.div(5.0).tanh().mul(5.0)
    sigma = torch.exp(log_sigma.div(5.0).tanh().mul(5.0)) + 1e-2
    if t != 1.0:
        sigma = sigma * t
    eps = torch.randn_like(mu)
    drawn.append(eps)
    return eps * sigma + mu


class NVAECell(nn.Module):
    """An NVAE decoder cell: cell_type 'combiner_dec' (forward(s, z)), 'normal_dec' or 'up_dec'."""

    def __init__(self, cell_type: str, ch: int) -> None:
        super().__init__()
        self.cell_type = cell_type
        self.conv = nn.Conv2d(ch, ch, 1)
        self.z_seen: list[torch.Tensor] = []

    def forward(self, s, z=None):
        if self.cell_type == "combiner_dec":
            self.z_seen.append(z)
            return s + self.conv(z)
        if self.cell_type == "up_dec":
            return nn.functional.interpolate(self.conv(s), scale_factor=2)
        return s + torch.tanh(self.conv(s))


class NVAEStandIn(nn.Module):
    """NVlabs NVAE AutoEncoder's sampling path (z0_size, prior_ftr0, dec_tower, dec_sampler,
    vanilla_vae, post_process, image_conditional, decoder_output) and its published
    sample(num_samples, t) loop, recording the eps it draws. Groups: [4, 2, 2], [4, 2, 2], [4, 4, 4]."""

    def __init__(self, ch=4) -> None:
        super().__init__()
        self.z0_size = [ch, 2, 2]
        self.prior_ftr0 = nn.Parameter(torch.rand(ch, 2, 2))
        self.dec_tower = nn.ModuleList(NVAECell(kind, ch) for kind in
                                       ("combiner_dec", "normal_dec", "combiner_dec", "up_dec", "combiner_dec"))
        self.dec_sampler = nn.ModuleList(nn.Conv2d(ch, 2 * ch, 1) for _ in range(2))
        self.vanilla_vae = False
        self.post_process = nn.ModuleList([NVAECell("up_dec", ch)])
        self.image_conditional = nn.Conv2d(ch, 3, 1)
        self.eps_drawn: list[torch.Tensor] = []

    def decoder_output(self, logits):
        return torch.distributions.Bernoulli(logits=logits)  # NVAE's output for binary images

    def sample(self, num_samples, t):
        z0_size = [num_samples] + self.z0_size
        z = nvae_normal_sample(torch.zeros(z0_size), torch.zeros(z0_size), t, self.eps_drawn)
        idx_dec = 0
        s = self.prior_ftr0.unsqueeze(0).expand(num_samples, -1, -1, -1)
        for cell in self.dec_tower:
            if cell.cell_type == "combiner_dec":
                if idx_dec > 0:
                    mu, log_sigma = torch.chunk(self.dec_sampler[idx_dec - 1](s), 2, dim=1)
                    z = nvae_normal_sample(mu, log_sigma, t, self.eps_drawn)
                s = cell(s, z)
                idx_dec += 1
            else:
                s = cell(s)
        for cell in self.post_process:
            s = cell(s)
        return self.image_conditional(s)


class VDVAEBlock(nn.Module):
    """openai VDVAE's DecBlock: base, mixin, zdim, widths, prior (-> pm, pv, xpp), z_fn, resnet, and
    its published sample_uncond / forward_uncond(xs, t, lvs)."""

    def __init__(self, H, res, mixin, drawn) -> None:
        super().__init__()
        self.base, self.mixin, self.H, self.zdim = res, mixin, H, H.zdim
        self.widths = defaultdict(lambda: H.width)
        self.prior = nn.Conv2d(H.width, 2 * H.zdim + H.width, 1)
        self.z_proj = nn.Conv2d(H.zdim, H.width, 1)
        self.resnet = nn.Conv2d(H.width, H.width, 1)
        self.z_fn = lambda x: self.z_proj(x)
        self.drawn = drawn

    def sample_uncond(self, x, t=None, lvs=None):
        feats = self.prior(x)
        pm, pv, xpp = feats[:, :self.zdim, ...], feats[:, self.zdim:self.zdim * 2, ...], feats[:, self.zdim * 2:, ...]
        x = x + xpp
        if lvs is not None:
            z = lvs
        else:
            if t is not None:
                pv = pv + torch.ones_like(pv) * np.log(t)
            eps = torch.empty_like(pm).normal_(0.0, 1.0)  # draw_gaussian_diag_samples
            self.drawn.append(eps)
            z = torch.exp(pv) * eps + pm
        return z, x

    def forward_uncond(self, xs, t=None, lvs=None):
        try:
            x = xs[self.base]
        except KeyError:
            ref = next(iter(xs.values()))
            x = torch.zeros(dtype=ref.dtype, size=(ref.shape[0], self.widths[self.base], self.base, self.base),
                            device=ref.device)
        if self.mixin is not None:
            x = x + nn.functional.interpolate(xs[self.mixin][:, :x.shape[1], ...], scale_factor=self.base // self.mixin)
        z, x = self.sample_uncond(x, t, lvs=lvs)
        x = x + self.z_fn(z)
        x = self.resnet(x)
        xs[self.base] = x
        return xs


class DmolNetLike(nn.Module):
    """VDVAE's DmolNet: forward(px_z) -> NHWC mixture parameters; sample(px_z) -> uint8 NHWC numpy."""

    def __init__(self, H) -> None:
        super().__init__()
        self.H = H
        self.out_conv = nn.Conv2d(H.width, H.num_mixtures * 10, 1)

    def forward(self, px_z):
        return self.out_conv(px_z).permute(0, 2, 3, 1)

    def sample(self, px_z):
        im = dmol_mean(self.forward(px_z), self.H.num_mixtures).permute(0, 2, 3, 1) * 2 - 1
        im = im + torch.empty_like(im).uniform_(-0.05, 0.05)
        return np.minimum(np.maximum(0.0, ((im + 1.0) * 127.5).detach().cpu().numpy()), 255.0).astype(np.uint8)


class VDVAELike(nn.Module):
    """openai VDVAE's VAE (encoder, decoder) with the Decoder's published forward_uncond and
    forward_manual_latents; blocks "1x1,2m1,2x1,4m2", biases up to 2² (the 4² block starts at 0)."""

    def __init__(self) -> None:
        super().__init__()
        H = SimpleNamespace(width=4, zdim=2, image_size=4, image_channels=3, num_mixtures=2)
        self.encoder = nn.Conv2d(3, H.width, 1)
        self.decoder = dec = nn.Module()
        dec.H, dec.eps_drawn = H, []
        dec.dec_blocks = nn.ModuleList(VDVAEBlock(H, res, mixin, dec.eps_drawn)
                                       for res, mixin in ((1, None), (2, 1), (2, None), (4, 2)))
        dec.bias_xs = nn.ParameterList(nn.Parameter(torch.randn(1, H.width, r, r) * 0.3) for r in (1, 2))
        dec.out_net = DmolNetLike(H)
        dec.gain, dec.bias = nn.Parameter(torch.ones(1, H.width, 1, 1)), nn.Parameter(torch.zeros(1, H.width, 1, 1))
        dec.final_fn = lambda x: x * dec.gain + dec.bias

    def forward_uncond(self, n, t=None):  # Decoder.forward_uncond
        dec = self.decoder
        xs = {bias.shape[2]: bias.repeat(n, 1, 1, 1) for bias in dec.bias_xs}
        for block in dec.dec_blocks:
            xs = block.forward_uncond(xs, t)
        return dec.final_fn(xs[dec.H.image_size])

    def forward_manual_latents(self, n, latents, t=None):  # Decoder.forward_manual_latents
        dec = self.decoder
        xs = {bias.shape[2]: bias.repeat(n, 1, 1, 1) for bias in dec.bias_xs}
        for block, lvs in zip(dec.dec_blocks, latents):
            xs = block.forward_uncond(xs, t, lvs=lvs)
        return dec.final_fn(xs[dec.H.image_size])


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


def test_split_layers_takes_the_readmes_layer_lists():
    readme = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11, 12, 13]]
    assert split_layers(14, readme) == [(0, 4), (4, 8), (8, 14)]
    assert split_layers(4, [[0, 1], [2, 3]]) == [(0, 2), (2, 4)]  # pairs that are layer lists, not ranges
    assert split_layers(4, [[0, 1], [1, 4]]) == [(0, 1), (1, 4)]  # pairs that are ranges
    assert split_layers(5, [[4], [3, 2, 1], [0]]) == [(4, 5), (1, 4), (0, 1)]
    gen = StyleGANAdapter(NVGenerator(num_ws=14), layer_groups=readme)
    assert gen.layer_ranges == [(0, 4), (4, 8), (8, 14)] and gen.latent_spec.names == ("w0", "w1", "w2")


@pytest.mark.parametrize(
    "groups, message",
    [([[0, 1, 3], [2]], r"layer list \[0, 1, 3\] must hold consecutive layers"),
     ([[0, 1, 2], [2, 3]], r"covered twice \[2\]"), ([[0, 1, 2]], r"uncovered \[3\]"),
     ([[0, 1, 2, 3], []], "empty layer list"), ([[0, 1, 2, 3, 4]], "names layers outside 0 … 3")],
)
def test_split_layers_bad_layer_lists(groups, message):
    with pytest.raises(ValueError, match=message):
        split_layers(4, groups)


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


def test_stylegan_rosinality_takes_image_shape_from_size_so_augment_presets_work():
    g = RosinalityGenerator(size=16)
    gen = StyleGANAdapter(g, api="rosinality").eval()
    assert gen.image_shape == (3, 16, 16)
    policy = ViewPolicy({"w0": Keep(), "w1": Perturb(0.5), "w2": Resample()})
    with ViewPairPipe(gen, policy, batch_size=2, augment="simclr", prefetch=0, steps=1) as pipe:
        (x0, x1), _ = next(iter(pipe))
    assert x0.shape == x1.shape == (2, 3, 16, 16)


def test_stylegan_image_shape_argument_and_contradictions():
    G = NVGenerator()
    del G.img_resolution, G.img_channels
    assert StyleGANAdapter(G).image_shape is None
    assert StyleGANAdapter(G, image_shape=(3, 8, 8)).image_shape == (3, 8, 8)
    with pytest.raises(ValueError,
                       match=r"image_shape=\(3, 16, 16\) contradicts the model's img_channels/img_resolution"):
        StyleGANAdapter(NVGenerator(), image_shape=(3, 16, 16))
    with pytest.raises(ValueError, match=r"contradicts the model's size"):
        StyleGANAdapter(RosinalityGenerator(size=16), api="rosinality", image_shape=(3, 8, 8))
    with pytest.raises(ValueError, match="image_shape must be"):
        StyleGANAdapter(G, image_shape=(8, 8))


@pytest.mark.parametrize("make", [
    lambda: StyleGANAdapter(NVGenerator()),
    lambda: BigGANAdapter(BigBiGANLike()),
    lambda: HierarchicalAdapter(NVAESampler(NVAEStandIn().eval())),
    lambda: CallableGenerator(lambda lat: lat["a"].view(-1, 1, 1, 2), LatentSpec([LatentGroup("a", (2,))])),
])
def test_decode_given_a_tensor_says_to_pass_the_dict(make):
    gen = make()
    flat = torch.zeros(2, gen.latent_spec.numel)
    with pytest.raises(ValueError, match=r"decode takes a dict \{group: tensor \[N, \*shape\]\} with groups .*"
                                         r"got Tensor; for one flat tensor .*latent_spec\.split\(z\)"):
        gen.decode(flat)
    assert gen.decode(gen.latent_spec.split(flat)).shape[0] == 2  # what the message says works


# --- BigGAN / BigBiGAN -------------------------------------------------------------------------


def test_biggan_feeds_truncation_times_z_with_truncation():
    # pytorch-pretrained-BigGAN samples z = truncation · truncnorm(−2, 2) and passes truncation too.
    torch.manual_seed(0)
    G = BigGANLike()
    gen = BigGANAdapter(G, chunks=3, truncation=0.4)
    assert gen.num_classes == 5 and gen.image_shape == (3, 8, 8)  # from G.config
    assert gen.latent_spec.names == ("c0", "c1", "c2")
    assert all(g.shape == (8,) and g.tie is None for g in gen.latent_spec)
    lat = latents_for(gen.latent_spec, 4)
    cls = torch.tensor([0, 4, 2, 2])
    out = assert_protocol(gen, lat, classes=cls, shape=(3, 8, 8))
    z = torch.cat([lat["c0"], lat["c1"], lat["c2"]], 1)
    seen_z, seen_t = G.seen[-1]
    assert seen_t == 0.4 and torch.equal(seen_z, z * 0.4)
    expected = ((G(0.4 * z, nn.functional.one_hot(cls, 5).float(), 0.4) + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="class-conditional"):
        gen.decode(lat)


def test_biggan_inputs_in_the_pipe_are_truncation_times_truncnorm_2():
    G = BigGANLike()
    gen = BigGANAdapter(G, chunks=3, truncation=0.5).eval()
    with ViewPairPipe(gen, ViewPolicy({"c2": Perturb(0.3, trunc=1.0)}, anchor_trunc=2.0), batch_size=64,
                      prefetch=0, steps=1) as pipe:
        next(iter(pipe))
    z = G.seen[-1][0]
    assert z.shape == (128, 24) and float(z[:, :16].abs().max()) <= 0.5 * 2.0  # kept chunks: within ±t·2
    assert 0.5 * 0.7 < float(z[:64].std()) < 0.5 * 1.0  # truncnorm(−2, 2) has sd 0.88, scaled by t


@pytest.mark.parametrize(
    "kwargs, message",
    [({"z_dim": 120, "truncation": 0.4}, r"z_dim=120 contradicts the model's config.z_dim \(24\)"),
     ({"num_classes": 1000, "truncation": 0.4}, r"num_classes=1000 contradicts the model's config.num_classes \(5\)"),
     ({"image_shape": (3, 16, 16), "truncation": 0.4},
      r"image_shape=\(3, 16, 16\) contradicts the model's config.output_dim"),
     ({"truncation": 0.0}, r"truncation must be a number in \(0, 1\]"), ({"truncation": 1.5}, "truncation"),
     ({}, r"takes \(z, class_label, truncation\), but this adapter would call it as \(z, classes\)")],
)
def test_biggan_refuses_what_contradicts_the_model(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BigGANAdapter(BigGANLike(), chunks=3, **kwargs)


def test_biggan_agreeing_arguments_are_accepted():
    gen = BigGANAdapter(BigGANLike(), chunks=[4, 20], z_dim=24, num_classes=5, image_shape=(3, 8, 8), truncation=1)
    assert [g.shape for g in gen.latent_spec] == [(4,), (20,)]


def test_bigbigan_default_one_chunk_per_slot():
    torch.manual_seed(0)
    G = BigBiGANLike()
    gen = BigGANAdapter(G)
    assert gen.latent_spec.names == tuple(f"c{i}" for i in range(6))
    assert all(g.shape == (20,) for g in gen.latent_spec) and gen.image_shape == (3, 8, 8)
    assert gen.num_classes is None and gen.truncation is None
    lat = latents_for(gen.latent_spec, 3)
    out = assert_protocol(gen, lat, shape=(3, 8, 8))
    torch.testing.assert_close(out, ((G(torch.cat(list(lat.values()), 1)) + 1) / 2).clamp(0, 1))
    assert not torch.equal(out, gen.decode(dict(lat, c5=lat["c5"] + 1)))
    assert sorted(gen.state_dict()) == sorted(f"model.{k}" for k in G.state_dict())


def test_bigbigan_chunks_must_hold_whole_slots():
    G = BigBiGANLike()
    assert [g.shape for g in BigGANAdapter(G, chunks=[20, 40, 60]).latent_spec] == [(20,), (40,), (60,)]
    assert len(BigGANAdapter(G, chunks=3).latent_spec) == 3  # 3 x 40: two slots each
    with pytest.raises(ValueError, match=r"chunk 'c1' is z\[20:50\], which straddles the generator's per-block z "
                                         r"slots \(6 slots of 20"):
        BigGANAdapter(G, chunks=[20, 30, 70])
    with pytest.raises(ValueError, match=r"chunk 'c0' is z\[0:30\]"):
        BigGANAdapter(G, chunks=4)
    with pytest.raises(ValueError, match=r"z_dim=100 contradicts the model's dim_z \(120\)"):
        BigGANAdapter(G, z_dim=100, chunks=[20] * 5)
    # Without slots to go by (a plain callable) any split is taken.
    assert len(BigGANAdapter(lambda z: z.view(-1, 3, 4, 10), chunks=[30, 30, 60]).latent_spec) == 3


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
    with pytest.raises(ValueError, match=r"takes \(z, y\), but this adapter would call it as \(z\)"):
        BigGANAdapter(fn, chunks=[10])
    with pytest.raises(ValueError, match=r"takes \(z\), but this adapter would call it as \(z, classes, truncation\)"):
        BigGANAdapter(lambda z: z, chunks=[4], num_classes=3, truncation=0.5)


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
        BigGANAdapter(lambda z: z)
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


def test_nvae_sampler_reruns_nvaes_sample_loop_with_given_eps():
    torch.manual_seed(0)
    model = NVAEStandIn().eval()
    sampler = NVAESampler(model)
    assert sampler.latent_shapes == [(4, 2, 2), (4, 2, 2), (4, 4, 4)] and sampler.image_shape == (3, 8, 8)
    with torch.no_grad():
        model.eps_drawn.clear()
        logits = model.sample(3, 0.7)  # NVAE's own sampling: z0 = 1.01·t·eps0, z_k = mu + sigma·t·eps_k
        eps = list(model.eps_drawn)
        torch.testing.assert_close(sampler(eps, 0.7), torch.sigmoid(logits))
        gen = HierarchicalAdapter(sampler, temperature=0.7)
        assert gen.latent_spec.names == ("z0", "z1", "z2") and gen.image_shape == (3, 8, 8)
        out = assert_protocol(gen, dict(zip(gen.latent_spec.names, eps)), shape=(3, 8, 8))
    torch.testing.assert_close(out, torch.sigmoid(logits))
    assert sorted(gen.state_dict()) == sorted(f"model.model.{k}" for k in model.state_dict())


def test_hierarchical_keep_keeps_a_groups_eps_not_its_value():
    torch.manual_seed(0)
    model = NVAEStandIn().eval()
    gen = HierarchicalAdapter(NVAESampler(model))
    lat = latents_for(gen.latent_spec, 2)
    combiners = [c for c in model.dec_tower if c.cell_type == "combiner_dec"]
    values = []
    for z0 in (lat["z0"], lat["z0"] + 1):  # only the top group's eps changes; z1, z2 keep theirs
        for c in combiners:
            c.z_seen.clear()
        gen.decode(dict(lat, z0=z0))
        values.append([c.z_seen[-1] for c in combiners])
    assert not torch.equal(values[0][0], values[1][0])
    assert not torch.equal(values[0][1], values[1][1])  # kept eps, moved value (conditional prior)
    torch.testing.assert_close(values[0][0], 1.01 * lat["z0"])  # z0 = 1.01·t·eps0 at t = 1


def test_nvae_sampler_output_modes_and_errors():
    model = NVAEStandIn().eval()
    gen = HierarchicalAdapter(NVAESampler(model, output="sample"))
    out = gen.decode(latents_for(gen.latent_spec, 4))
    assert set(out.unique().tolist()) <= {0.0, 1.0}  # Bernoulli samples
    with pytest.raises(ValueError, match="output must be 'mean' or 'sample'"):
        NVAESampler(model, output="mode")
    with pytest.raises(ValueError, match="an NVAE AutoEncoder needs attribute 'z0_size'"):
        NVAESampler(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="needs 3 ε tensors"):
        NVAESampler(model)([torch.zeros(1, 4, 2, 2)], 1.0)
    with pytest.raises(ValueError, match="contradict the sampler's latent_shapes"):
        HierarchicalAdapter(NVAESampler(model), shapes=[(4, 2, 2)])
    with pytest.raises(ValueError, match="contradicts the model's sampler's image_shape"):
        HierarchicalAdapter(NVAESampler(model), image_shape=(3, 4, 4))


def test_vdvae_sampler_reruns_forward_uncond_with_given_eps():
    torch.manual_seed(0)
    vae = VDVAELike().eval()
    sampler = VDVAESampler(vae)
    assert sampler.latent_shapes == [(2, 1, 1), (2, 2, 2), (2, 2, 2), (2, 4, 4)] and sampler.image_shape == (3, 4, 4)
    dec = vae.decoder
    with torch.no_grad():
        dec.eps_drawn.clear()
        px_z = vae.forward_uncond(3, t=0.8)  # VDVAE's own sampling at temperature 0.8
        eps = list(dec.eps_drawn)
        out = sampler(eps, 0.8)
        torch.testing.assert_close(out, dmol_mean(dec.out_net(px_z), 2))
        # the z values it drew, given to VDVAE's forward_manual_latents, make the same images
        zs: list[torch.Tensor] = []
        hooks = [b.z_proj.register_forward_hook(lambda m, args, _: zs.append(args[0])) for b in dec.dec_blocks]
        sampler(eps, 0.8)
        for h in hooks:
            h.remove()
        torch.testing.assert_close(out, dmol_mean(dec.out_net(vae.forward_manual_latents(3, zs[:4])), 2))
        gen = HierarchicalAdapter(sampler, temperature=0.8)
        assert gen.latent_spec.names == ("z0", "z1", "z2", "z3") and gen.image_shape == (3, 4, 4)
        torch.testing.assert_close(assert_protocol(gen, dict(zip(gen.latent_spec.names, eps)), shape=(3, 4, 4)), out)
    assert sorted(gen.state_dict()) == sorted(f"model.decoder.{k}" for k in dec.state_dict())


def test_vdvae_sampler_sample_mode_and_errors():
    vae = VDVAELike().eval()
    gen = HierarchicalAdapter(VDVAESampler(vae, output="sample"))
    out = gen.decode(latents_for(gen.latent_spec, 2))
    assert out.shape == (2, 3, 4, 4) and torch.equal(out, torch.round(out * 255) / 255)  # uint8 pixels
    with pytest.raises(ValueError, match="a VDVAE Decoder needs attribute 'dec_blocks'"):
        VDVAESampler(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="output must be"):
        VDVAESampler(vae, output="best")
    with pytest.raises(ValueError, match="needs 4 ε tensors"):
        VDVAESampler(vae)([torch.zeros(1, 2, 1, 1)], 1.0)


def test_dmol_mean_closed_form():
    # one component: x0 = m0, x1 = m1 + tanh(c)·x0, x2 = m2, clamped to [-1, 1], then to [0, 1]
    params = torch.zeros(1, 1, 1, 10)
    rest = params[..., 1:].view(3, 3)  # per channel: mean, log-scale, coefficient
    rest[:, 0] = torch.tensor([0.5, -0.5, 3.0])
    rest[0, 2] = math.atanh(0.5)
    torch.testing.assert_close(dmol_mean(params, 1).flatten(), torch.tensor([0.75, 0.375, 1.0]))
    two = torch.zeros(1, 1, 1, 20)  # two components with equal weights: the means averaged
    two[..., 2:].view(3, 6)[0, :2] = torch.tensor([0.2, 0.6])
    assert math.isclose(float(dmol_mean(two, 2)[0, 0]), (0.4 + 1) / 2, rel_tol=1e-6)


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
