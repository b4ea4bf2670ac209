"""Silent misuse turned into clear behaviour (issue: the public contract on the models users bring)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import mlvgm_data as m
from mlvgm_data.generators import CallableGenerator, StyleGANAdapter


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3 * 4 * 4)
        self.norm = nn.BatchNorm1d(3 * 4 * 4)

    def forward(self, latents: dict) -> torch.Tensor:
        return torch.sigmoid(self.norm(self.lin(latents["a"]))).view(-1, 3, 4, 4)


SPEC = m.LatentSpec([m.LatentGroup("a", (4,))])


def test_an_adapter_around_a_model_in_eval_mode_is_not_warned_about() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adapter = CallableGenerator(_Net().eval(), SPEC, image_shape=(3, 4, 4))
        assert not any(mod.training for mod in adapter.modules())
        m.ViewPairPipe(adapter, m.ViewPolicy({}), 2)


def test_an_adapter_around_a_model_in_train_mode_is_still_put_in_eval_mode_with_a_warning() -> None:
    adapter = CallableGenerator(_Net(), SPEC, image_shape=(3, 4, 4))
    with pytest.warns(UserWarning, match="eval mode"):
        m.ViewPairPipe(adapter, m.ViewPolicy({}), 2)
    assert not any(mod.training for mod in adapter.modules())


class _NVlabsLike(nn.Module):
    """The attributes StyleGANAdapter reads from an NVlabs generator."""

    z_dim, w_dim, num_ws, c_dim, img_resolution, img_channels = 4, 4, 4, 0, 4, 3

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.register_buffer("w_avg", torch.zeros(4))

    def mapping(self, z: torch.Tensor, c: object, truncation_psi: float = 1, truncation_cutoff: object = None):
        return self.lin(z)[:, None].expand(-1, self.num_ws, -1)

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        return ws.mean(1)[:, :3, None, None].expand(-1, 3, 4, 4)


def test_the_stylegan_adapter_takes_the_wrapped_models_mode() -> None:
    adapter = StyleGANAdapter(_NVlabsLike().eval())
    assert not any(mod.training for mod in adapter.modules())
    assert StyleGANAdapter(_NVlabsLike()).training
