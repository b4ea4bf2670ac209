"""Encoder-side metrics (KL, I_q(x; z), active units) on encoders with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from mlvgm_data.mi.encoder import encoder_metrics


def batches(n: int, shape: tuple[int, ...], batch: int = 250, seed: int = 0, with_labels: bool = False):
    g = torch.Generator().manual_seed(seed)
    data = torch.randn(n, *shape, generator=g)
    for i in range(0, n, batch):
        x = data[i:i + batch]
        yield (x, torch.zeros(x.shape[0])) if with_labels else x


class PriorEncoder:
    """q(z|x) = N(0, I) whatever x is: posterior collapse."""

    def encode(self, x):
        n = x.shape[0]
        return {"top": (torch.zeros(n, 4), torch.zeros(n, 4)),
                "map": (torch.zeros(n, 2, 2, 2), torch.zeros(n, 2, 2, 2))}


class SharpEncoder:
    """A nearly deterministic encoder: z = W x with variance e⁻¹²."""

    def __init__(self) -> None:
        self.w = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))

    def encode(self, x):
        mu = x @ self.w
        return {"z": (mu, torch.full_like(mu, -12.0))}


def test_posterior_equal_to_prior_has_no_information() -> None:
    r = encoder_metrics(PriorEncoder(), batches(1000, (8,)), progress=False)
    assert r.n == 1000
    for g in r.groups.values():
        assert g.kl == pytest.approx(0.0, abs=1e-12)
        assert g.mi == pytest.approx(0.0, abs=1e-9)
        assert g.active == 0
    assert (r.groups["top"].dims, r.groups["map"].dims) == (4, 8)
    assert r.total.dims == 12 and r.total.active == 0


def test_sharp_encoder_reads_the_ceiling_and_all_units_active() -> None:
    r = encoder_metrics(SharpEncoder(), batches(1000, (8,), with_labels=True), progress=False)
    g = r.groups["z"]
    assert g.active == 4
    assert g.mi == pytest.approx(r.mi_ceiling, abs=0.05) and r.mi_ceiling == pytest.approx(math.log(1000))
    assert g.kl > 20


def test_linear_gaussian_posterior_known_answer() -> None:
    # x ~ N(0, 1), q(z|x) = N(a x, s²): q(z) = N(0, a² + s²), I_q = ½ log(1 + a²/s²),
    # KL = ½ (a² E x² + s² − 1 − log s²).
    a, s = 1.0, 0.5

    def encode(x):
        return {"z": (a * x, torch.full_like(x, 2 * math.log(s)))}

    data = list(batches(2000, (1,), seed=2))
    r = encoder_metrics(encode, data, progress=False)
    ex2 = float(torch.cat(data).pow(2).mean())
    assert r.groups["z"].mi == pytest.approx(0.5 * math.log(1 + a * a / (s * s)), abs=0.05)
    assert r.groups["z"].kl == pytest.approx(0.5 * (a * a * ex2 + s * s - 1 - math.log(s * s)), rel=1e-6)
    assert r.groups["z"].active == 1


def test_max_samples_seed_and_outputs() -> None:
    r = encoder_metrics(SharpEncoder(), batches(3000, (8,)), max_samples=600, progress=False)
    assert r.n == 600
    again = encoder_metrics(SharpEncoder(), batches(3000, (8,)), max_samples=600, progress=False)
    assert r == again
    d = r.to_dict()
    assert d["groups"]["z"]["active"] == 4 and d["mi_ceiling"] == pytest.approx(math.log(600))
    md = r.to_markdown()
    assert "| z | 4 |" in md and "| all |" in md and "4 / 4" in md


def test_builtin_hierarchical_vae_follows_the_protocol() -> None:
    from mlvgm_data.models.hvae import HierarchicalVAE

    model = HierarchicalVAE().eval()
    g = torch.Generator().manual_seed(0)
    data = [torch.rand(16, *model.image_shape, generator=g) for _ in range(4)]
    r = encoder_metrics(model, data, progress=False)
    assert list(r.groups) == list(model.latent_spec.names)
    for name, m in r.groups.items():
        assert m.dims == model.latent_spec[name].numel
        assert math.isfinite(m.kl) and math.isfinite(m.mi) and 0 <= m.active <= m.dims
    assert r.n == 64


@pytest.mark.parametrize(
    "encode,data,match",
    [
        (lambda x: [x], [torch.zeros(4, 2)], "must return a non-empty dict"),
        (lambda x: {"z": (x, x[:, :1])}, [torch.zeros(4, 2)], "mu and logvar must be tensors of one shape"),
        (lambda x: {"z": x}, [torch.zeros(4, 2)], r"must be a \(mu, logvar\) pair"),
        (lambda x: {"z": (x[:2], x[:2])}, [torch.zeros(4, 2)], "leading batch dimension of 4"),
        (lambda x: {"z": (x * float("nan"), x)}, [torch.zeros(4, 2)], "non-finite"),
        (lambda x: {"z": (x, x)}, ["not a tensor"], "data must yield tensors"),
        (lambda x: {"z": (x, x)}, [torch.zeros(1, 2)], "at least 2"),
        (lambda x: {"z": (x, x)}, [], "at least 2"),
    ],
)
def test_bad_input(encode, data, match) -> None:
    with pytest.raises(ValueError, match=match):
        encoder_metrics(encode, data, progress=False)


def test_groups_must_stay_the_same_across_batches() -> None:
    calls = iter([{"a": (torch.zeros(2, 1), torch.zeros(2, 1))}, {"b": (torch.zeros(2, 1), torch.zeros(2, 1))}])
    with pytest.raises(ValueError, match="earlier batches gave"):
        encoder_metrics(lambda x: next(calls), [torch.zeros(2, 1), torch.zeros(2, 1)], progress=False)


def test_not_an_encoder() -> None:
    with pytest.raises(ValueError, match="encode"):
        encoder_metrics(object(), [torch.zeros(2, 1)], progress=False)
    with pytest.raises(ValueError, match="max_samples"):
        encoder_metrics(PriorEncoder(), [torch.zeros(2, 1)], max_samples=1, progress=False)
