"""Generators: the MLVGM protocol, adapters for users' models, and the loader/registry."""

from .adapters import BigGANAdapter, CallableGenerator, HierarchicalAdapter, StyleGANAdapter
from .base import MLVGM, MLVGMProtocol, checked_decode, draw_classes
from .registry import (
    builtin_names,
    load_generator,
    recommended_policy,
    register_builtin,
    register_family,
    save_generator,
)

__all__ = [
    "BigGANAdapter",
    "CallableGenerator",
    "HierarchicalAdapter",
    "StyleGANAdapter",
    "MLVGM",
    "MLVGMProtocol",
    "builtin_names",
    "checked_decode",
    "draw_classes",
    "load_generator",
    "recommended_policy",
    "register_builtin",
    "register_family",
    "save_generator",
]
