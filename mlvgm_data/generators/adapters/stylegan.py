"""The StyleGAN adapter: NVlabs StyleGAN2-ADA / StyleGAN3 and rosinality stylegan2-pytorch."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from ..._checks import check_int
from .common import (
    Adapter,
    agree,
    check_image_shape,
    check_mapping,
    check_range,
    class_input,
    follow_mode,
    model_int,
    to_unit_range,
)
from .wplus import WPlusGroups


class _RosinalityParts(nn.Module):
    """NVlabs-style ``mapping`` / ``synthesis`` calls on a rosinality ``Generator``."""

    def __init__(self, g: nn.Module) -> None:
        super().__init__()
        for attr in ("style", "n_latent", "style_dim"):
            if not hasattr(g, attr):
                raise ValueError(f"a rosinality generator needs attribute {attr!r}; {type(g).__name__} has none")
        self.g = g
        self.z_dim = self.w_dim = int(g.style_dim)
        self.num_ws = int(g.n_latent)
        self.c_dim = 0
        # rosinality's Generator(size, …) draws RGB images of size × size.
        size, _ = model_int(g, ["size"])
        self.img_resolution = size
        self.img_channels = 3 if size else None

    def mapping(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return self.g.style(z).unsqueeze(1).expand(-1, self.num_ws, -1)

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        out = self.g([ws], input_is_latent=True, randomize_noise=noise_mode == "random")
        return out[0] if isinstance(out, (tuple, list)) else out


class StyleGANAdapter(Adapter):
    """Wraps a StyleGAN generator; its latent groups are tied layer groups of W+ (style mixing).

    ``generator`` follows the NVlabs API (``api="nvlabs"``, StyleGAN2-ADA / StyleGAN3):
    attributes ``z_dim, c_dim, num_ws``, ``mapping(z, c, truncation_psi=…, truncation_cutoff=…)
    -> [N, num_ws, w_dim]`` (with a ``w_avg`` buffer) and ``synthesis(ws, noise_mode=…)``; or
    the rosinality API (``api="rosinality"``: ``style``, ``n_latent``, ``style_dim``, ``size``,
    ``g([ws], input_is_latent=True, randomize_noise=…)``; pass ``w_avg=g.mean_latent(4096)``
    for truncation).

    ``layer_groups``: ``k`` contiguous groups of near-equal size (default 4, as in the MI paper),
    a list of ``(start, stop)`` ranges or a list of layer lists (``[[0, 1, 2, 3], [4, …], …]``),
    covering every layer once (see :func:`split_layers`); ``group_names`` names them
    (default ``w0, w1, …``). All groups are ``(z_dim,)`` tied to one anchor ``z``; decode maps all
    groups' z in one mapping call and builds W+ from each group's own w.

    ``truncation_psi`` ψ < 1 pulls w toward ``w_avg`` (the mapping's buffer, or the ``w_avg``
    given) on the layers below ``truncation_cutoff``; without any ``w_avg`` the mapping's own
    ``truncation_psi`` argument is used. ``output_range`` is the synthesis range, mapped to
    [0, 1] and clamped; ``noise_mode`` and ``synthesis_kwargs`` go to ``synthesis``. A
    class-conditional generator (``c_dim > 0``) needs ``classes`` at decode. ``image_shape``
    ``(C, H, W)`` comes from the generator (NVlabs ``img_channels``/``img_resolution``,
    rosinality ``size``); give it for a generator that has neither (the pipe's augmentation
    presets need it). ``encoder`` (images in ``output_range`` → z ``[N, z_dim]``, one z for the
    tied groups, or a dict per group) makes :meth:`invert` give real anchors; the groups live in
    z space, so a W/W+ inversion encoder (pSp, e4e) does not fit them.
    """

    def __init__(
        self,
        generator: nn.Module,
        layer_groups: int | Sequence[Sequence[int]] = 4,
        group_names: Sequence[str] | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        w_avg: torch.Tensor | None = None,
        noise_mode: str = "const",
        output_range: Sequence[float] | None = (-1.0, 1.0),
        api: str = "nvlabs",
        synthesis_kwargs: Mapping[str, Any] | None = None,
        image_shape: Sequence[int] | None = None,
        encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self._hold_encoder(encoder)
        if api not in ("nvlabs", "rosinality"):
            raise ValueError(f"api must be 'nvlabs' or 'rosinality', got {api!r}")
        if not isinstance(generator, nn.Module):
            raise ValueError(f"generator must be a torch.nn.Module, got {type(generator).__name__}")
        if api == "nvlabs":
            for attr in ("mapping", "synthesis", "z_dim", "num_ws"):
                if not hasattr(generator, attr):
                    raise ValueError(
                        f"an NVlabs-style generator needs attribute {attr!r}; {type(generator).__name__} "
                        "has none (for a rosinality generator pass api='rosinality')"
                    )
            self.generator = generator
        else:
            self.generator = _RosinalityParts(generator)
        if noise_mode not in ("const", "random", "none"):
            raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
        if api == "rosinality" and noise_mode == "none":
            raise ValueError("rosinality generators have no noise_mode='none'; use 'const' or 'random'")
        if isinstance(truncation_psi, bool) or not isinstance(truncation_psi, (int, float)):
            raise ValueError(f"truncation_psi must be a number, got {truncation_psi!r}")
        if truncation_cutoff is not None:
            check_int(truncation_cutoff, "truncation_cutoff", 1)
        g = self.generator
        self.groups = WPlusGroups(int(g.num_ws), int(g.z_dim), layer_groups, group_names)
        self.latent_spec = self.groups.spec
        self.num_classes = int(getattr(g, "c_dim", 0) or 0) or None
        self.truncation_psi = float(truncation_psi)
        self.truncation_cutoff = truncation_cutoff
        if w_avg is not None:
            if not isinstance(w_avg, torch.Tensor):
                raise ValueError(f"w_avg must be a tensor [w_dim], got {type(w_avg).__name__}")
            self.register_buffer("w_avg", w_avg.detach().reshape(-1).clone())
        elif api == "rosinality" and self.truncation_psi != 1.0:
            raise ValueError("truncation with api='rosinality' needs w_avg (e.g. w_avg=g.mean_latent(4096))")
        self.noise_mode = noise_mode
        self.output_range = check_range(output_range)
        self.synthesis_kwargs = dict(synthesis_kwargs or {})
        res, _ = model_int(g, ["img_resolution"])
        ch, _ = model_int(g, ["img_channels"])
        own = (ch, res, res) if res and ch else None
        source = "size (3 × size × size)" if api == "rosinality" else "img_channels/img_resolution"
        self.image_shape = agree("image_shape", check_image_shape(image_shape), own, source)
        follow_mode(self, generator)

    @property
    def layer_ranges(self) -> list[tuple[int, int]]:
        """The ``[start, stop)`` W+ layers each group owns, in group order."""
        return list(self.groups.ranges)

    def _current_w_avg(self) -> torch.Tensor | None:
        own = self._buffers.get("w_avg")
        return own if own is not None else getattr(self.generator.mapping, "w_avg", None)

    def w_plus(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None = None) -> torch.Tensor:
        """The mixed (and truncated) W+ ``[N, num_ws, w_dim]`` that ``decode`` synthesises."""
        check_mapping(self, latents)
        lead = self.latent_spec.check(latents, check_finite=False)
        if len(lead) != 1:
            raise ValueError(f"latents must have one batch dimension, got leading shape {list(lead)}")
        return self._w_plus(latents, classes, lead[0])

    def _w_plus(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None, n: int) -> torch.Tensor:
        z = self.groups.stack(latents)
        c = class_input(classes, self.num_classes, "onehot", z, type(self).__name__)
        c = z.new_zeros(n, 0) if c is None else c
        c = c.repeat(len(self.groups.ranges), 1)
        w_avg = self._current_w_avg()
        kwargs: dict[str, Any] = {}
        if self.truncation_psi != 1.0 and w_avg is None:
            kwargs = {"truncation_psi": self.truncation_psi, "truncation_cutoff": self.truncation_cutoff}
        mapped = self.generator.mapping(z, c, **kwargs)
        ws = self.groups.assemble(mapped, n, f"{type(self.generator).__name__}.mapping")
        if self.truncation_psi != 1.0 and w_avg is not None:
            cut = self.groups.num_ws if self.truncation_cutoff is None else self.truncation_cutoff
            w_avg = w_avg.to(ws.dtype)
            ws = torch.cat([w_avg + self.truncation_psi * (ws[:, :cut] - w_avg), ws[:, cut:]], dim=1)
        return ws

    def _noise_of(self, out: Any) -> dict[str, torch.Tensor]:
        # A z-space encoder: one z [N, z_dim] for every (tied) group, or a dict of them.
        if isinstance(out, Mapping):
            return dict(out)
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the encoder must return z [N, z_dim] (z space, not W or W+), got {got}")
        return {name: out.float() for name in self.latent_spec.names}

    def _decode(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None) -> torch.Tensor:
        n = next(iter(latents.values())).shape[0]
        ws = self._w_plus(latents, classes, n)
        img = self.generator.synthesis(ws, noise_mode=self.noise_mode, **self.synthesis_kwargs)
        return to_unit_range(img, self.output_range, f"{type(self.generator).__name__}.synthesis")
