"""Generators: the MLVGM protocol, adapters for users' models, and the loader/registry."""

from .adapters import BigGANAdapter, CallableGenerator, HierarchicalAdapter, NVAESampler, StyleGANAdapter, VDVAESampler
from .base import MLVGM, MLVGMProtocol, Views, checked_decode, decode_views, draw_classes
from .registry import (
    PolicySource,
    builtin_names,
    load_generator,
    policy_source,
    recommended_policy,
    register_builtin,
    register_family,
    save_generator,
)

__all__ = [
    "BigGANAdapter",
    "CallableGenerator",
    "HierarchicalAdapter",
    "NVAESampler",
    "VDVAESampler",
    "Views",
    "StyleGANAdapter",
    "MLVGM",
    "MLVGMProtocol",
    "builtin_names",
    "checked_decode",
    "decode_views",
    "draw_classes",
    "PolicySource",
    "load_generator",
    "policy_source",
    "recommended_policy",
    "register_builtin",
    "register_family",
    "save_generator",
]
