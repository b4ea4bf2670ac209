"""Saving and loading generators: weights via ``torch.load(weights_only=True)`` + a JSON config.

A saved generator is two files with one stem: ``NAME.pt`` (a plain state dict of tensors) and
``NAME.json`` (``{"format": "mlvgm-data/1", "family": ..., "config": {...}, "weights_sha256": ...}``).
The family names a builder registered with :func:`register_family`; nothing in either file is
ever executed. Loading verifies the weights' sha256 when the config records it (every generator
saved by :func:`save_generator` and every shipped one does) and refuses non-finite weights.

A generator is named ``builtin:NAME``, by a saved generator's path, or — for a user's own model
in the command line — ``module:factory`` (:func:`is_factory_name`); a factory's measured policy
lives in the user's config folder like a built-in's.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

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
        raise FileNotFoundError(
            f"generator config {path} not found (a saved generator is NAME.pt + NAME.json)"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"generator config {path} is not valid JSON: {e}") from None
    except RecursionError:
        raise ValueError(f"generator config {path} is nested too deeply to be a generator config") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT or "family" not in cfg:
        raise ValueError(f"{path} is not a {FORMAT} generator config (needs 'format' and 'family')")
    return cfg


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes (what a saved generator's config records of its weights)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_finite_state(state: dict[str, Any], path: Path) -> None:
    """Refuses weights with NaN or infinite values (a diverged run's checkpoint decodes garbage)."""
    for name, t in state.items():
        if isinstance(t, dict):
            check_finite_state(t, path)
        elif isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{path}: weight {name!r} holds NaN or infinite values (a diverged or corrupted "
                             "checkpoint); refusing to load it")


def load_state(path: Path, sha256: str | None = None) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with errors that say what went wrong; with ``sha256``, the
    file's checksum is verified first."""
    if sha256 is not None:
        try:
            actual = file_sha256(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"weights file {path} not found") from None
        if actual != sha256:
            raise ValueError(f"weights file {path} does not match the sha256 its config records ({sha256[:12]}…, "
                             f"the file has {actual[:12]}…): it was changed or corrupted after it was saved")
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
    checksum = cfg.get("weights_sha256")
    if checksum is not None and not (isinstance(checksum, str) and re.fullmatch(r"[0-9a-f]{64}", checksum)):
        raise ValueError(f"{config_path}: 'weights_sha256' must be 64 lowercase hex digits, got {checksum!r}")
    state = load_state(weights, checksum)
    check_finite_state(state, weights)
    try:
        model.load_state_dict(state.get("model", state))
    except RuntimeError as e:
        raise ValueError(f"{weights} does not match its config {config_path}: {e}") from None
    return model.to(device).eval()


POLICY_FORMAT = "mlvgm-data/policy/1"
_FACTORY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def is_factory_name(name: str | Path) -> bool:
    """Whether ``name`` is a ``module:factory`` (a zero-argument callable returning a generator)
    rather than ``builtin:NAME`` or a saved generator's path (an existing file wins)."""
    s = str(name)
    if s.startswith("builtin:") or not _FACTORY.match(s):
        return False
    weights, config = generator_files(s)
    return not (weights.exists() or config.exists() or Path(s).exists())


def call_factory(spec: str, what: str, returns: str) -> object:
    """Imports ``module`` of a ``module:factory`` spec and calls its zero-argument ``factory``;
    ``what`` names the argument in the errors (``"generator"``, ``"judge"``) and ``returns`` what
    the factory should return."""
    module_name, _, attr = spec.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ValueError(f"{what} {spec!r}: cannot import module {module_name!r} ({e})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{what} {spec!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{what} {spec!r}: {attr} is not callable (module:factory names a zero-argument "
                         f"function that returns {returns})")
    return obj()


def _config_home() -> Path:
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return Path(os.environ.get("MLVGM_CONFIG") or xdg / "mlvgm-data")


def user_policy_path(name_or_path: str | Path) -> Path:
    """Where ``mlvgm-data mi --save-policy`` stores a measured policy and where
    :func:`recommended_policy` looks first: ``PATH.policy.json`` beside a saved generator, and for
    ``builtin:NAME`` ``$MLVGM_CONFIG/policies/NAME.json`` (default ``$XDG_CONFIG_HOME/mlvgm-data``,
    i.e. ``~/.config/mlvgm-data``), for ``module:factory`` ``…/policies/module__factory.json`` —
    never inside the installed package."""
    s = str(name_or_path)
    if s.startswith("builtin:"):
        generator_files(s)  # an unknown built-in is an error here too
        return _config_home() / "policies" / f"{s[len('builtin:'):]}.json"
    if is_factory_name(s):
        return _config_home() / "policies" / (s.replace(":", "__") + ".json")
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


class PolicySource(NamedTuple):
    """Where :func:`recommended_policy` found a generator's policy: ``kind`` is ``"user"`` (a file
    ``mlvgm-data mi --save-policy`` wrote) or ``"shipped"`` (the generator's own config);
    ``command`` is the ``mlvgm-data mi`` command that measured it, with its budget (``samples``
    paired samples, ``steps`` critic steps) when known; ``overrides`` the config whose own policy
    a user file shadows."""

    policy: "ViewPolicy"
    kind: str
    path: Path
    command: str | None
    samples: int | None
    steps: int | None
    overrides: Path | None = None


def measured_budget(source: object) -> tuple[str | None, int | None, int | None]:
    """``(command, samples, steps)`` of a policy's ``source`` record (numbers parsed from the
    command when the record predates them); ``None`` where unknown."""
    if not isinstance(source, dict):
        return None, None, None
    command = source.get("command") if isinstance(source.get("command"), str) else None
    found = []
    for key in ("samples", "steps"):
        value = source.get(key)
        if not isinstance(value, int) and command is not None:
            match = re.search(rf"--{key} (\d+)", command)
            value = int(match.group(1)) if match else None
        found.append(value if isinstance(value, int) else None)
    return command, found[0], found[1]


def _check_name(name_or_path: object, who: str) -> None:
    if not isinstance(name_or_path, (str, Path)):
        raise TypeError(
            f"{who} takes a generator's name (builtin:NAME, a saved generator's path or module:factory), got "
            f"{type(name_or_path).__name__}. For a model in memory, measure a policy: "
            "mlvgm_data.mi.analyze(generator).recommend_policy(), or `mlvgm-data mi module:factory --save-policy`")


def policy_source(name_or_path: str | Path) -> PolicySource:
    """The policy :func:`recommended_policy` returns and where it comes from."""
    from ..policy import ViewPolicy

    _check_name(name_or_path, "policy_source")
    user = user_policy_path(name_or_path)
    factory = is_factory_name(name_or_path)
    if factory and not user.is_file():
        raise ValueError(f"no policy is stored for {name_or_path} (looked in {user}): measure one with "
                         f"`mlvgm-data mi {name_or_path} --save-policy`")
    _, config_path = generator_files(name_or_path)
    cfg = {} if factory else read_config(config_path)
    if user.is_file():
        doc = read_policy_file(user)
        return PolicySource(ViewPolicy.from_dict(doc["policy"]), "user", user, *measured_budget(doc.get("source")),
                            overrides=config_path if "policy" in cfg else None)
    if "policy" not in cfg:
        raise ValueError(f"{config_path} stores no recommended policy; run `mlvgm-data mi {name_or_path} "
                         "--save-policy` to measure one")
    return PolicySource(ViewPolicy.from_dict(cfg["policy"]), "shipped", config_path,
                        *measured_budget(cfg.get("policy_source")))


_ANNOUNCED: set[Path] = set()


def recommended_policy(name_or_path: str | Path) -> "ViewPolicy":
    """The view policy measured for a generator: the one ``mlvgm-data mi GENERATOR --save-policy``
    stored in :func:`user_policy_path` if there is one — announced once per file with its path
    and budget, since it overrides what the generator ships — else the one shipped in its config.
    :func:`policy_source` says which."""
    _check_name(name_or_path, "recommended_policy")
    source = policy_source(name_or_path)
    if source.overrides is not None and source.path not in _ANNOUNCED:
        _ANNOUNCED.add(source.path)
        budget = (f"{source.samples} samples, {source.steps} critic steps" if source.samples and source.steps
                  else "an unknown budget")
        warnings.warn(f"mlvgm-data: the recommended policy of {name_or_path} comes from your file {source.path} "
                      f"(measured with {budget}), not from {source.overrides.name}; delete that file to use the "
                      "generator's own", UserWarning, stacklevel=2)
    return source.policy


def stored_mi_report(name_or_path: str | Path) -> dict | None:
    """The MI report (``MIReport.to_dict``) that goes with :func:`recommended_policy`: from the
    user's policy file, else shipped beside the generator's config (``STEM.mi.json``); ``None``
    when there is none."""
    user = user_policy_path(name_or_path)
    if user.is_file():
        return read_policy_file(user).get("mi")
    if is_factory_name(name_or_path):
        return None
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
    doc = {"format": FORMAT, "family": family, "config": config, "weights_sha256": file_sha256(weights)}
    if extra:
        doc.update(extra)
    write_text(config_path, json.dumps(doc, indent=2, sort_keys=True) + "\n", "generator config")
    return weights
