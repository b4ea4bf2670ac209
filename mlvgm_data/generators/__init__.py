"""Generators: the MLVGM protocol, adapters for users' models, and the loader/registry."""

from .base import MLVGM, MLVGMProtocol, checked_decode
from .registry import builtin_names, load_generator, register_builtin, register_family, save_generator

__all__ = [
    "MLVGM",
    "MLVGMProtocol",
    "builtin_names",
    "checked_decode",
    "load_generator",
    "register_builtin",
    "register_family",
    "save_generator",
]
