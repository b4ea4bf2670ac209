"""What the benchmarks generate with: the shipped generators and fresh ones of a chosen width,
and their decode cost."""

from __future__ import annotations

import torch
from torch import nn

from ... import ops
from ...generators import load_generator, recommended_policy
from ...generators.base import checked_decode, draw_classes
from ...policy import Perturb, ViewPolicy


def fresh_hvae(resolution: int, channel_scale: float = 1.0, base: dict | None = None) -> nn.Module:
    """A freshly initialised hierarchical VAE (speed does not depend on the weights): ``base``
    (a config, default the trainer's defaults at ``resolution``) with its decoder widths scaled."""
    from ...models.hvae import DEFAULT_CONFIG, HierarchicalVAE, make_config
    from ..train.hvae import RESOLUTION_DEFAULTS

    if base is None:
        if resolution not in RESOLUTION_DEFAULTS:
            raise ValueError(f"no default hvae config at {resolution}²; choose from {sorted(RESOLUTION_DEFAULTS)}")
        base = make_config({"resolution": resolution, **RESOLUTION_DEFAULTS[resolution]})
    cfg = {k: v for k, v in base.items() if k in DEFAULT_CONFIG and not k.startswith("vmi_")}
    cfg["channels"] = [max(1, round(c * channel_scale)) for c in base["channels"]]
    torch.manual_seed(0)
    return HierarchicalVAE(make_config(cfg)).eval()


def bench_generator(name: str, resolution: int) -> tuple[nn.Module, ViewPolicy, str]:
    """``(generator, policy, note)``: the saved generator ``name`` with its recommended policy
    (σ = 0.5 on every group if it stores none). ``"untrained"`` (or a built-in whose weights are
    not there) is a fresh HVAE of the shipped architecture at ``resolution``: decoding costs the
    same whatever the weights (the note says so)."""
    if name == "untrained":
        gen = fresh_hvae(resolution)
        note = f"{resolution}²: an untrained HVAE of the shipped architecture"
        return gen, ViewPolicy.uniform(gen.latent_spec, Perturb(0.5)), note
    try:
        gen = load_generator(name)
    except FileNotFoundError:
        if not name.startswith("builtin:"):
            raise
        gen = fresh_hvae(resolution)
        return gen, ViewPolicy.uniform(gen.latent_spec, Perturb(0.5)), f"{name} not shipped yet: fresh HVAE stand-in"
    try:
        policy = recommended_policy(name)
    except ValueError:
        policy = ViewPolicy.uniform(gen.latent_spec, Perturb(0.5))
    if gen.image_shape[-1] != resolution:
        raise ValueError(f"{name} makes {gen.image_shape[-1]}² images, expected {resolution}²")
    return gen, policy, ""


def decode_cost(generator: nn.Module) -> tuple[float, int]:
    """``(FLOPs, parameters)`` of decoding one image: FLOPs from ``torch.utils.flop_counter``
    (convolutions and matmuls), parameters of the modules the decode runs (an encoder is not
    counted) plus those held directly by the generator."""
    from torch.utils.flop_counter import FlopCounterMode

    used: set[nn.Module] = set()
    hooks = [m.register_forward_hook(lambda m, i, o: used.add(m)) for m in generator.modules()]
    latents = ops.resample(generator.latent_spec, ViewPolicy({}), 1, 1, 0, 0)
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            checked_decode(generator, {k: v[0] for k, v in latents.items()}, draw_classes(generator, 1, 0, 0))
    finally:
        for h in hooks:
            h.remove()
    params = {id(p): p.numel() for m in used | {generator} for p in m.parameters(recurse=m is not generator)}
    return float(counter.get_total_flops()), sum(params.values())


# --- the research code's synchronous step --------------------------------------------------------


def decodes_channels_last(generator: nn.Module) -> bool:
    """Whether ``generator.decode`` already returns a channels_last tensor."""
    latents = ops.resample(generator.latent_spec, ViewPolicy({}), 2, 1, 0, 0)
    with torch.inference_mode():
        out = checked_decode(generator, {k: v[0] for k, v in latents.items()}, draw_classes(generator, 2, 0, 0))
    return out.shape[1] > 1 and out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
