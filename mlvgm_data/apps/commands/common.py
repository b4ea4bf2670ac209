"""What the subcommands share: the GENERATOR argument (``builtin:NAME``, a saved generator's path,
or ``module:factory``, a user's own model) and the ``--policy`` forms."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

from ...generators import load_generator, recommended_policy
from ...generators.base import check_generator
from ...generators.registry import call_factory, is_factory_name
from ...policy import Perturb, ViewPolicy

GENERATOR_HELP = ("builtin:NAME, a saved generator's PATH, or module:factory (a zero-argument callable returning "
                  "the generator, imported from the current folder or the installed packages)")


def _call_factory(arg: str) -> object:
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, "")  # as `python -m` and uvicorn do: the user's module lives in the current folder
    return call_factory(arg, "generator", "the generator")


def open_generator(arg: str, device: torch.device | str | None = None) -> nn.Module:
    """The generator a GENERATOR argument names (see :data:`GENERATOR_HELP`), in eval mode on
    ``device`` (a factory's model stays where the factory put it unless ``device`` is given)."""
    if not is_factory_name(arg):
        return load_generator(arg, device)
    generator = _call_factory(arg)
    try:
        check_generator(generator)
    except ValueError as e:
        raise ValueError(f"generator {arg!r} returned {type(generator).__name__}: {e}") from None
    if isinstance(generator, nn.Module):
        if device is not None:
            generator = generator.to(device)
        generator.eval()  # views are made in eval mode, as load_generator returns its models
    return generator


POLICY_FORMS = "'recommended', 'sigma=S', a JSON policy or a JSON file"


def parse_policy(text: str, generator_name: str, generator: nn.Module) -> ViewPolicy:
    """``--policy``: one of :data:`POLICY_FORMS`."""
    if text == "recommended":
        return recommended_policy(generator_name)
    if text.startswith("sigma="):
        try:
            sigma = float(text[6:])
        except ValueError:
            raise ValueError(f"--policy sigma=S needs a number S, got {text[6:]!r}") from None
        return ViewPolicy.uniform(generator.latent_spec, Perturb(sigma))
    path = Path(text)
    if path.is_file():
        source = path.read_text()
    elif text.lstrip().startswith("{"):
        source = text
    else:
        raise ValueError(f"--policy {text!r} is not {POLICY_FORMS} (no such file)")
    try:
        return ViewPolicy.from_dict(json.loads(source))
    except json.JSONDecodeError as e:
        raise ValueError(f"--policy is not valid JSON: {e}") from None
    except RecursionError:
        raise ValueError("--policy is nested too deeply") from None
