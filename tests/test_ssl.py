"""SSL objectives and the linear probes used by the demo."""

from __future__ import annotations

import math

import pytest
import torch

from mlvgm_data.apps.ssl import BYOL, ConvEncoder, SimCLR, SimSiam, embed, linear_probe, make_method, nt_xent, ridge_r2


def test_nt_xent_known_values() -> None:
    b = 4
    z = torch.eye(8)[:b] * 10
    # Perfect pairs far from all negatives: the loss goes to 0 as the temperature shrinks.
    assert float(nt_xent(z, z.clone(), temperature=0.05)) < 1e-6
    # All embeddings identical: every one of the 2B-1 candidates is equally likely.
    same = torch.ones(b, 3)
    assert math.isclose(float(nt_xent(same, same, 0.5)), math.log(2 * b - 1), rel_tol=1e-5)
    with pytest.raises(ValueError, match="two \\[B, D\\]"):
        nt_xent(torch.ones(3, 2), torch.ones(4, 2))
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(same, same, 0.0)


@pytest.mark.parametrize("name", ["simclr", "simsiam", "byol"])
def test_methods_train(name: str) -> None:
    torch.manual_seed(0)
    model = make_method(name, ConvEncoder(width=8))
    assert isinstance(model, {"simclr": SimCLR, "simsiam": SimSiam, "byol": BYOL}[name])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.rand(16, 3, 16, 16)
    noise = lambda: (x + 0.05 * torch.randn_like(x)).clamp(0, 1)  # noqa: E731
    losses = []
    for _ in range(15):
        loss = model.loss(noise(), noise())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if isinstance(model, BYOL):
            model.update_target()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) < sum(losses[:3])
    with pytest.raises(ValueError, match="unknown method"):
        make_method("moco", ConvEncoder(8))


def test_byol_target_follows_online_by_ema() -> None:
    model = BYOL(ConvEncoder(width=4), momentum=0.5)
    online = next(model.encoder.parameters())
    target = next(model.target_encoder.parameters())
    with torch.no_grad():
        online.add_(1.0)
    before = target.clone()
    model.update_target()
    assert torch.allclose(target, 0.5 * before + 0.5 * online)


def test_linear_probe_on_separable_features() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 6, generator=g) * 5
    y = torch.arange(400) % 4
    x = centres[y] + 0.3 * torch.randn(400, 6, generator=g)
    result = linear_probe(x[:300], y[:300], x[300:], y[300:])
    assert result.accuracy == 1.0 and result.train_accuracy == 1.0
    chance = linear_probe(torch.randn(300, 6, generator=g), y[:300], torch.randn(100, 6, generator=g), y[300:])
    assert chance.accuracy < 0.5
    with pytest.raises(ValueError, match="same number of rows"):
        linear_probe(x[:10], y[:9], x[:5], y[:5])
    with pytest.raises(ValueError, match="finite"):
        linear_probe(x[:10] * float("nan"), y[:10], x[:5], y[:5])


def test_ridge_r2_recovers_a_linear_target() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 5, generator=g)
    w = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0])
    y = x @ w + 0.01 * torch.randn(500, generator=g)
    assert ridge_r2(x[:400], y[:400], x[400:], y[400:], alpha=1e-3) > 0.999
    two = torch.stack([y, -y], 1)
    assert ridge_r2(x[:400], two[:400], x[400:], two[400:], alpha=1e-3) > 0.999
    assert ridge_r2(x[:400], torch.randn(400, generator=g), x[400:], torch.randn(100, generator=g)) < 0.1


def test_embed_restores_training_mode() -> None:
    enc = ConvEncoder(width=4).train()
    feats = embed(enc, torch.rand(10, 3, 8, 8), batch_size=4)
    assert feats.shape == (10, enc.dim) and enc.training
