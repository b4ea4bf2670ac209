"""Adapters: make a user's own pretrained generator an MLVGM without copying its code.

The user loads their model however its project says (an NVlabs pickle, a rosinality checkpoint,
a BigGAN package, an NVAE checkpoint) and hands us the module; we only call it, with the inputs
its own sampling code would give it. Every adapter is an :class:`~mlvgm_data.generators.base.MLVGM`,
so ``decode`` validates the latents and the images at the call. What a model says about itself
(``z_dim``, classes, image size, per-block z slots) is taken from it, and an argument that
contradicts it is refused.
"""

from .biggan import BigGANAdapter
from .callable import CallableGenerator
from .common import to_unit_range
from .hierarchical import HierarchicalAdapter, NVAESampler, VDVAESampler, dmol_mean
from .stylegan import StyleGANAdapter
from .wplus import WPlusGroups, split_layers

__all__ = ["BigGANAdapter", "CallableGenerator", "HierarchicalAdapter", "NVAESampler", "StyleGANAdapter",
           "VDVAESampler", "WPlusGroups", "dmol_mean", "split_layers", "to_unit_range"]
