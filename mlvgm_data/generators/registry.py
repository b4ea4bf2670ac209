"""Saving and loading generators: weights via ``torch.load(weights_only=True)`` + a JSON config.

A saved generator is two files with one stem: ``NAME.pt`` (a plain state dict of tensors) and
``NAME.json`` (``{"format": "mlvgm-data/1", "family": ..., "config": {...}}``). The family names
a builder registered with :func:`register_family`; nothing in either file is ever executed.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from .._checks import check_device
from .._io import save_torch, write_text

if TYPE_CHECKING:
    from ..policy import ViewPolicy

FORMAT = "mlvgm-data/1"
ASSETS = Path(__file__).resolve().parent.parent / "assets"

FAMILIES: dict[str, str] = {
    "hvae": "mlvgm_data.models.hvae:build",
    "stylegan": "mlvgm_data.models.stylegan:build",
    "mlvae": "mlvgm_data.models.mlvae:build",
}
"""The built-in families: ``family -> "module:builder"``, imported only when a config names it
(so the library core never imports the model code it does not use)."""
BUILTINS: dict[str, str] = {"shapes": "shapes_hvae", "shapes-stylegan": "shapes_stylegan", "fashion": "fashion_hvae"}
"""``builtin:NAME -> assets/STEM.{pt,json}``."""

_FAMILIES: dict[str, Callable[[dict], nn.Module]] = {}  # families registered at run time (users')
_BUILTINS: dict[str, str] = {}


def register_family(name: str, builder: Callable[[dict], nn.Module]) -> None:
    """Registers ``builder(config) -> module`` for checkpoints whose JSON names ``family=name``."""
    _FAMILIES[name] = builder


def register_builtin(name: str, stem: str) -> None:
    """Makes ``"builtin:name"`` load ``assets/stem.{pt,json}``."""
    _BUILTINS[name] = stem


def builtin_names() -> list[str]:
    return sorted(f"builtin:{n}" for n in {**BUILTINS, **_BUILTINS})


def families() -> list[str]:
    return sorted({**FAMILIES, **_FAMILIES})


def _builder(family: str) -> Callable[[dict], nn.Module] | None:
    if family in _FAMILIES:
        return _FAMILIES[family]
    if family in FAMILIES:
        module, attr = FAMILIES[family].split(":")
        return getattr(importlib.import_module(module), attr)
    return None


def generator_files(name_or_path: str | Path) -> tuple[Path, Path]:
    """The (weights, config) files of ``builtin:NAME`` or a saved generator's path."""
    s = str(name_or_path)
    if s.startswith("builtin:"):
        name = s[len("builtin:"):]
        stems = {**BUILTINS, **_BUILTINS}
        if name not in stems:
            raise ValueError(f"unknown built-in generator {s!r}; available: {builtin_names()}")
        stem = ASSETS / stems[name]
        return stem.with_suffix(".pt"), stem.with_suffix(".json")
    p = Path(s)
    if p.is_dir():
        return p / "model.pt", p / "model.json"
    if p.suffix in (".pt", ".json"):
        return p.with_suffix(".pt"), p.with_suffix(".json")
    return p.with_name(p.name + ".pt"), p.with_name(p.name + ".json")


def read_config(path: Path) -> dict:
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"generator config {path} not found (a saved generator is NAME.pt + NAME.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"generator config {path} is not valid JSON: {e}") from None
    except RecursionError:
        raise ValueError(f"generator config {path} is nested too deeply to be a generator config") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT or "family" not in cfg:
        raise ValueError(f"{path} is not a {FORMAT} generator config (needs 'format' and 'family')")
    return cfg


def load_state(path: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with errors that say what went wrong."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"weights file {path} not found") from None
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path} holds objects other than tensors and was refused (weights_only=True; "
            f"nothing was executed): {str(e).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not a readable torch checkpoint (corrupt or truncated): {e}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} must hold a dict of tensors, got {type(state).__name__}")
    return state


def load_generator(name_or_path: str | Path, device: torch.device | str | None = None) -> nn.Module:
    """Loads ``"builtin:NAME"`` or a saved generator (``PATH.pt`` + ``PATH.json``), in eval mode."""
    device = torch.device("cpu") if device is None else check_device(device)
    weights, config_path = generator_files(name_or_path)
    cfg = read_config(config_path)
    family = cfg["family"]
    builder = _builder(family) if isinstance(family, str) else None
    if builder is None:
        raise ValueError(f"{config_path}: unknown generator family {family!r}; known: {families()}")
    model = _build_checked(builder, cfg.get("config", {}), family, config_path)
    state = load_state(weights)
    try:
        model.load_state_dict(state.get("model", state))
    except RuntimeError as e:
        raise ValueError(f"{weights} does not match its config {config_path}: {e}") from None
    return model.to(device).eval()


POLICY_FORMAT = "mlvgm-data/policy/1"


def user_policy_path(name_or_path: str | Path) -> Path:
    """Where ``mlvgm-data mi --save-policy`` stores a measured policy and where
    :func:`recommended_policy` looks first: ``PATH.policy.json`` beside a saved generator, and for
    ``builtin:NAME`` ``$MLVGM_CONFIG/policies/NAME.json`` (default ``$XDG_CONFIG_HOME/mlvgm-data``,
    i.e. ``~/.config/mlvgm-data``) — never inside the installed package."""
    s = str(name_or_path)
    if s.startswith("builtin:"):
        generator_files(s)  # an unknown built-in is an error here too
        xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        base = Path(os.environ.get("MLVGM_CONFIG") or xdg / "mlvgm-data")
        return base / "policies" / f"{s[len('builtin:'):]}.json"
    _, config_path = generator_files(s)
    return config_path.with_name(config_path.stem + ".policy.json")


def read_policy_file(path: Path) -> dict:
    """A policy file written by ``--save-policy``: ``{"format", "generator", "policy", "source"}``."""
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"policy file {path} is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != POLICY_FORMAT or not isinstance(doc.get("policy"), dict):
        raise ValueError(f"{path} is not a {POLICY_FORMAT} policy file")
    return doc


MAX_PARAMETERS = 200_000_000
"""Largest generator a config may describe (800 MB of float32), checked before anything is allocated."""


def _build_checked(builder: Callable[[dict], nn.Module], config: object, family: str, config_path: Path) -> nn.Module:
    """Builds the model of a config (a user file): first on the meta device, which allocates nothing,
    to refuse a bad or huge config with a clear error; then for real."""
    if not isinstance(config, dict):
        raise ValueError(f"{config_path}: 'config' must be an object, got {type(config).__name__}")
    try:
        with torch.device("meta"):
            probe = builder(config)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
        raise ValueError(f"{config_path}: bad {family} config: {e}") from None
    size = sum(t.numel() for t in itertools.chain(probe.parameters(), probe.buffers()))
    if size > MAX_PARAMETERS:
        raise ValueError(f"{config_path}: the {family} config describes {size:,} parameters, more than the "
                         f"{MAX_PARAMETERS:,} a generator may have here")
    return builder(config)


def recommended_policy(name_or_path: str | Path) -> "ViewPolicy":
    """The view policy measured for a generator: the one ``mlvgm-data mi GENERATOR --save-policy``
    stored in :func:`user_policy_path` if there is one, else the one shipped in its config."""
    from ..policy import ViewPolicy

    user = user_policy_path(name_or_path)
    if user.is_file():
        return ViewPolicy.from_dict(read_policy_file(user)["policy"])
    _, config_path = generator_files(name_or_path)
    cfg = read_config(config_path)
    if "policy" not in cfg:
        raise ValueError(f"{config_path} stores no recommended policy; run `mlvgm-data mi {name_or_path} "
                         "--save-policy` to measure one")
    return ViewPolicy.from_dict(cfg["policy"])


def stored_mi_report(name_or_path: str | Path) -> dict | None:
    """The MI report (``MIReport.to_dict``) that goes with :func:`recommended_policy`: from the
    user's policy file, else shipped beside the generator's config (``STEM.mi.json``); ``None``
    when there is none."""
    user = user_policy_path(name_or_path)
    if user.is_file():
        return read_policy_file(user).get("mi")
    _, config_path = generator_files(name_or_path)
    shipped = config_path.with_name(config_path.stem + ".mi.json")
    if not shipped.is_file():
        return None
    try:
        return json.loads(shipped.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"MI report {shipped} is not valid JSON: {e}") from None


def save_generator(model: nn.Module, path: str | Path, family: str, config: dict, extra: dict | None = None) -> Path:
    """Writes ``path.pt`` (state dict) and ``path.json`` (family + config + ``extra``)."""
    weights, config_path = generator_files(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_torch({"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, weights, "generator weights")
    doc = {"format": FORMAT, "family": family, "config": config}
    if extra:
        doc.update(extra)
    write_text(config_path, json.dumps(doc, indent=2, sort_keys=True) + "\n", "generator config")
    return weights
