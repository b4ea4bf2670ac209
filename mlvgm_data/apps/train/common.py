"""Training infrastructure shared by the built-in models (``mlvgm-data train --model NAME``).

A model module describes its trainer in a module-level ``TRAINER`` (:data:`TRAINER_MODULES`
lists the built-in ones; ``register_trainer`` adds others at run time)::

    TRAINER = Trainer("hvae", add_arguments, train_fn, help="...", defaults={"steps": 20000})

- ``add_arguments(parser)`` declares the model's own options with ``parser.add_argument`` (the
  usual argparse keywords; give every option a ``default``). Two trainers may declare the same
  option (same flags and type): the CLI shows it once and each trainer gets its own default.
- ``defaults`` overrides the common options' defaults for this model (see ``COMMON_DEFAULTS``).
- ``train_fn(opts) -> dict`` trains and returns a JSON-safe summary. ``opts`` is an
  ``argparse.Namespace`` with the common options (``data``, ``out``, ``steps``, ``batch_size``,
  ``lr``, ``seed``, ``resolution``, ``resume``, ``checkpoint_every``, ``export``) and the model's
  own, all resolved to values.

Building blocks for ``train_fn``:

- ``image_source(data, resolution, seed, channels=3)``: ``"shapes"``, ``"fashion-mnist"`` or a
  folder of images → an :class:`ImageSource`; ``batches(source, batch_size, start_step)`` yields
  the ``[B, C, R, R]`` batch of each step, a pure function of (data, seed, step), so a resumed run
  sees exactly the batches it would have seen. ``real_images(data, resolution, train)`` gives a
  labelled data set's real images for evaluation.
- ``add_conditional_argument(parser)`` / ``class_count(opts, source)``: the shared
  ``--conditional`` option and the number of classes a run conditions on (0: unconditional).
- ``grid_classes(num_classes, rows)``: the size and classes of a trainer's sample grid (one
  row per class for a class-conditional model).
- ``seeded(seed)``: a context that seeds torch's global RNG for the run and restores the
  caller's RNG afterwards.
- ``save_checkpoint(path, step, modules, optimizers, extra)`` / ``load_checkpoint(path, modules,
  optimizers) -> (step, extra)``: state dicts + step + torch RNG state, read back with
  ``torch.load(weights_only=True)``; ``checkpoint_path(opts)`` is ``OUT/checkpoint.pt``;
  ``resume(opts, modules, optimizers)`` loads it when ``--resume`` is set and it exists.
- ``progress(opts, start_step, desc)``: the tqdm bar of a run.
- ``save_image_grid(images, path, nrow)``: a PNG of ``[N, 3, H, W]`` images in [0, 1].
- ``save_outputs(model, opts, family, config, summary)``: the final generator as
  ``OUT/model.{pt,json}`` (``save_generator``), and also at ``--export PATH`` when given; writes
  ``OUT/summary.json``.

``train(name, **options)`` runs a registered trainer from Python with the CLI's defaults.

Why one file (over 450 lines): the data sources, batching, checkpoint/resume and the trainer
registry are what every trainer imports together, and they share the options namespace (resume
compares the options, the output paths and progress bars read them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..._checks import check_int, check_number
from ..._io import check_output_path, save_torch, write_text
from ...data.fashion_mnist import SIZE as FASHION_SIZE
from ...data.fashion_mnist import FashionMNIST
from ...data.folder import FolderImages
from ...data.shapes import SHAPE_NAMES, Shapes
from ...generators.registry import file_sha256, load_state, save_generator
from ..viz import save_image_grid  # noqa: F401  (re-exported for the trainers)

COMMON_DEFAULTS: dict[str, Any] = {
    "data": "shapes",
    "out": None,
    "steps": 2000,
    "batch_size": 64,
    "lr": 1e-3,
    "seed": 0,
    "resolution": 32,
    "resume": False,
    "checkpoint_every": 1000,
    "export": None,
    "threads": None,
}


# --- data --------------------------------------------------------------------------------------

class ImageSource:
    """Training images addressed by an integer index: ``batch(indices) -> [N, C, R, R]`` in [0, 1].

    ``length`` is ``None`` for an unbounded procedural source; ``num_classes`` is set for a
    labelled one, which also gives ``labelled_batch(indices) -> (images, classes)``;
    ``conditional_default``: whether a trainer conditions on those labels unless told otherwise.
    ``channels`` is 3 (RGB) or 1 (grey).
    """

    name: str
    resolution: int
    seed: int
    length: int | None
    num_classes: int | None = None
    conditional_default: bool = False
    channels: int = 3

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def labelled_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise ValueError(f"{self.name} has no class labels (class-conditional training needs shapes or fashion-mnist)")


class ShapesSource(ImageSource):
    """Fresh procedural Shapes for every step (item ``k`` of ``Shapes(2**32, R, seed)``)."""

    def __init__(self, resolution: int, seed: int) -> None:
        self.name, self.resolution, self.seed, self.length = "shapes", resolution, seed, None
        self.dataset = Shapes(1 << 32, resolution, seed)
        self.num_classes = len(SHAPE_NAMES)
        self.conditional_default = True

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        return self.dataset.render(indices % (1 << 32))[0]

    def labelled_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images, classes, _ = self.dataset.render(indices % (1 << 32))
        return images, classes


class FolderSource(ImageSource):
    """A folder of images, decoded once into memory (uint8 at the model resolution) when it fits
    in ``cache_bytes``, else read from disk per batch."""

    def __init__(self, root: str | Path, resolution: int, seed: int, cache_bytes: int = 2 << 30) -> None:
        self.dataset = FolderImages(root, resolution)
        self.name, self.resolution, self.seed = str(root), resolution, seed
        self.length = len(self.dataset)
        self.cache: torch.Tensor | None = None
        if self.length * 3 * resolution * resolution <= cache_bytes:
            from tqdm import tqdm

            self.cache = torch.stack(
                [self.dataset.load_uint8(i) for i in tqdm(range(self.length), desc="load images", unit="img")]
            )

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        if self.cache is not None:
            return self.cache[indices].float().div_(255.0)
        return self.dataset.load(indices)


class FashionSource(ImageSource):
    """The Fashion-MNIST train split (60,000 grey images, labelled; see
    :class:`~mlvgm_data.data.FashionMNIST`), at 28² or zero-padded to ``resolution`` (32 for the
    generators, whose stages double from 4²). Unconditional by default: its labels are used only
    when a trainer is asked to (``--conditional``)."""

    def __init__(self, resolution: int, seed: int, channels: int = 1, train: bool = True) -> None:
        if resolution not in (FASHION_SIZE, 32):
            raise ValueError(f"fashion-mnist images are {FASHION_SIZE}²: use --resolution 32 (zero-padded) "
                             f"or {FASHION_SIZE}, not {resolution}")
        self.dataset = FashionMNIST(train=train, pad_to=None if resolution == FASHION_SIZE else resolution)
        self.name, self.resolution, self.seed = "fashion-mnist", resolution, seed
        self.length = len(self.dataset)
        self.num_classes = len(self.dataset.classes)
        self.channels = channels

    def labelled_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.dataset.batch(indices)
        return (images.expand(-1, self.channels, -1, -1).contiguous() if self.channels != 1 else images), labels

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        return self.labelled_batch(indices)[0]


DATA_CHOICES = "'shapes', 'fashion-mnist' or a folder of images"


def save_width_model(model: nn.Module, stem: str | Path, meta: dict) -> None:
    """Writes what :func:`load_width_model` reads: ``STEM.pt`` and ``STEM.json`` (``meta`` with
    the weights' sha256, which loading verifies)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights = stem.with_suffix(".pt")
    save_torch({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights, "classifier")
    meta = {**meta, "weights_sha256": file_sha256(weights)}
    write_text(stem.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True) + "\n", "classifier config")


def image_source(data: str, resolution: int, seed: int, channels: int | None = 3) -> ImageSource:
    """``"shapes"`` → procedural Shapes; ``"fashion-mnist"`` → the Fashion-MNIST train split;
    anything else is a path to a folder of images. ``channels``: 3 gives RGB batches (grey data
    repeated to three channels), ``None`` the data's own channels (1 for Fashion-MNIST)."""
    if channels not in (None, 3):
        raise ValueError(f"channels must be 3 or None (the data's own), got {channels!r}")
    if data == "shapes":
        return ShapesSource(resolution, seed)
    if data == "fashion-mnist":
        return FashionSource(resolution, seed, channels=channels or 1)
    path = Path(data)
    if not path.is_dir():
        raise ValueError(f"--data must be {DATA_CHOICES}; {data!r} is none of them")
    return FolderSource(path, resolution, seed)


def real_images(data: str, resolution: int, train: bool = False, n: int | None = None,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Real images of ``data`` for evaluation → ``(images [N, C, R, R], labels [N] or None)``:
    Fashion-MNIST's test split (``train=False``) or train split, the first ``n``; held-out
    procedural Shapes (seed ``seed + 1``, never a training seed of the same run); or the first
    ``n`` images of a folder (no labels)."""
    if data == "shapes":
        count = 2000 if n is None else n
        images, classes, _ = Shapes(count, resolution, (seed + 1) % (1 << 32)).render(range(count))
        return images, classes
    if data == "fashion-mnist":
        ds = FashionSource(resolution, seed, train=train).dataset
        count = len(ds) if n is None else min(n, len(ds))
        return ds.batch(range(count))
    source = image_source(data, resolution, seed)
    count = source.length if n is None else min(n, source.length or n)
    return source.batch(torch.arange(count)), None


def add_conditional_argument(parser: Any) -> None:
    """Declares ``--conditional`` / ``--no-conditional`` (the same option for every trainer)."""
    parser.add_argument("--conditional", action=argparse.BooleanOptionalAction, default=None,
                        help="class-conditional model (on the data's classes); default: on for --data shapes, "
                             "off for fashion-mnist (an unconditional model, labels unused) and for an image "
                             "folder (which has no labels)")


def class_count(opts: argparse.Namespace, source: ImageSource) -> int:
    """The number of classes the model conditions on: ``source.num_classes`` when ``--conditional``
    is on (or unset and ``source.conditional_default``), else 0; a ValueError for ``--conditional``
    on unlabelled data."""
    conditional = source.conditional_default if opts.conditional is None else opts.conditional
    if conditional and not source.num_classes:
        raise ValueError(f"--conditional needs labelled data (shapes, fashion-mnist); {opts.data!r} has no class labels")
    return int(source.num_classes) if conditional else 0


def grid_classes(num_classes: int | None, rows: int) -> tuple[int, torch.Tensor | None]:
    """The size and classes of a sample grid ``rows`` wide: ``rows × rows`` samples, or for a
    class-conditional model one row per class (``classes`` ``[n]``, else None)."""
    if not num_classes:
        return rows * rows, None
    n = rows * num_classes
    return n, torch.arange(n) // rows


def _permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (1 << 63))
    return torch.randperm(n, generator=g)


def step_indices(source: ImageSource, batch_size: int, step: int) -> torch.Tensor:
    """The item indices of ``step``'s batch: consecutive items of an unbounded source, or
    consecutive entries of a fresh permutation per epoch for a finite one."""
    k = step * batch_size + torch.arange(batch_size, dtype=torch.int64)
    if source.length is None:
        return k
    epochs, pos = k // source.length, k % source.length
    out = torch.empty_like(k)
    for e in epochs.unique().tolist():
        sel = epochs == e
        out[sel] = _permutation(source.length, source.seed, e)[pos[sel]]
    return out


def batches(source: ImageSource, batch_size: int, start_step: int = 0,
            labelled: bool = False) -> Iterator[torch.Tensor] | Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless ``[B, C, R, R]`` batches from ``start_step`` on (a pure function of the step);
    ``labelled``: ``(images, classes)`` pairs from ``source.labelled_batch``."""
    fetch = source.labelled_batch if labelled else source.batch
    step = start_step
    while True:
        yield fetch(step_indices(source, batch_size, step))
        step += 1


# --- randomness and checkpoints ------------------------------------------------------------------

@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seeds torch's global RNG inside the block; the caller's RNG state is restored after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def save_checkpoint(
    path: str | Path, step: int, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
    extra: dict | None = None,
) -> Path:
    """Writes modules' and optimizers' state dicts, ``step``, torch's RNG state and ``extra``
    (tensors, numbers, strings, lists, dicts) atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "modules": {k: m.state_dict() for k, m in modules.items()},
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "rng": torch.get_rng_state(),
        "extra": extra or {},
    }
    return save_torch(state, path, "checkpoint", root=path.parent)


def load_checkpoint(
    path: str | Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer]
) -> tuple[int, dict]:
    """Restores what :func:`save_checkpoint` wrote (weights-only load); returns ``(step, extra)``."""
    state = load_state(Path(path))
    for key in ("step", "modules", "optimizers", "rng"):
        if key not in state:
            raise ValueError(f"{path} is not a training checkpoint (no {key!r})")
    for k, m in modules.items():
        if k not in state["modules"]:
            raise ValueError(f"{path} has no state for module {k!r}")
        try:
            m.load_state_dict(state["modules"][k])
        except RuntimeError as e:
            raise ValueError(f"{path}: module {k!r} does not match the checkpoint (other options?): {e}") from None
    for k, o in optimizers.items():
        if k not in state["optimizers"]:
            raise ValueError(f"{path} has no state for optimizer {k!r}")
        o.load_state_dict(state["optimizers"][k])
    torch.set_rng_state(state["rng"])
    return int(state["step"]), state.get("extra", {})


def out_dir(opts: argparse.Namespace) -> Path:
    return Path(opts.out)


def checkpoint_path(opts: argparse.Namespace) -> Path:
    return out_dir(opts) / "checkpoint.pt"


def resume(opts: argparse.Namespace, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer]) -> tuple[int, dict]:
    """With ``--resume`` and an existing ``OUT/checkpoint.pt``: loads it → ``(step, extra)``;
    otherwise ``(0, {})``."""
    path = checkpoint_path(opts)
    if opts.resume and path.exists():
        return load_checkpoint(path, modules, optimizers)
    return 0, {}


def progress(opts: argparse.Namespace, start_step: int, desc: str):
    """The run's tqdm bar (``opts.steps`` total, starting at ``start_step``)."""
    from tqdm import tqdm

    return tqdm(total=opts.steps, initial=start_step, desc=desc, unit="step", dynamic_ncols=True)


def save_outputs(model: nn.Module, opts: argparse.Namespace, family: str, config: dict, summary: dict) -> dict:
    """Saves the final generator (``OUT/model`` and ``--export``) and ``OUT/summary.json``;
    returns ``summary`` with the written paths added."""
    out = out_dir(opts)
    extra = {"training": {k: v for k, v in summary.items() if _json_safe(v)}}
    paths = [str(save_generator(model, out / "model", family, config, extra))]
    if opts.export:
        paths.append(str(save_generator(model, opts.export, family, config, extra)))
    summary = dict(summary, generator=paths)
    write_text(out / "summary.json", json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n", "summary",
               root=out)
    return summary


def _json_safe(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return not (isinstance(v, float) and not math.isfinite(v))


# --- the trainer registry ------------------------------------------------------------------------

class _Recorder:
    """Collects ``add_argument`` calls so option sets of several trainers can be merged."""

    def __init__(self) -> None:
        self.options: list[tuple[tuple[str, ...], dict]] = []

    def add_argument(self, *flags: str, **kwargs: Any) -> None:
        if "default" not in kwargs and kwargs.get("action") not in ("store_true", "store_false"):
            raise ValueError(f"trainer option {flags} needs a default")
        self.options.append((flags, kwargs))


@dataclass
class Trainer:
    name: str
    add_arguments: Callable[[Any], None]
    train_fn: Callable[[argparse.Namespace], dict]
    help: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.defaults) - set(COMMON_DEFAULTS))
        if unknown:
            raise ValueError(f"trainer {self.name!r}: defaults for unknown common options {unknown}")

    def options(self) -> list[tuple[tuple[str, ...], dict]]:
        rec = _Recorder()
        self.add_arguments(rec)
        return rec.options

    def option_defaults(self) -> dict[str, Any]:
        """Every option's default for this model: common ones (with overrides) + its own."""
        out = dict(COMMON_DEFAULTS)
        out.update(self.defaults)
        for flags, kw in self.options():
            out[_dest(flags, kw)] = kw.get("default", kw.get("action") == "store_false")
        return out


TRAINER_MODULES = {"hvae": "mlvgm_data.apps.train.hvae", "stylegan": "mlvgm_data.apps.train.stylegan",
                   "mlvae": "mlvgm_data.apps.train.mlvae"}
"""The built-in trainers: each module's ``TRAINER``, imported when the trainers are listed."""
_TRAINERS: dict[str, Trainer] = {}


def register_trainer(
    name: str, add_arguments: Callable[[Any], None], train_fn: Callable[[argparse.Namespace], dict],
    help: str = "", defaults: dict[str, Any] | None = None,
) -> None:
    """Makes ``mlvgm-data train --model name`` run ``train_fn`` (see the module docstring)."""
    _TRAINERS[name] = Trainer(name, add_arguments, train_fn, help, dict(defaults or {}))


def trainers() -> dict[str, Trainer]:
    """The built-in trainers and those registered at run time."""
    import importlib

    builtin = {name: importlib.import_module(module).TRAINER for name, module in TRAINER_MODULES.items()}
    return {**builtin, **_TRAINERS}


def _dest(flags: tuple[str, ...], kw: dict) -> str:
    if "dest" in kw:
        return kw["dest"]
    long = [f for f in flags if f.startswith("--")]
    return (long[0] if long else flags[0]).lstrip("-").replace("-", "_")


def get_trainer(name: str) -> Trainer:
    found = trainers()
    if name not in found:
        raise ValueError(f"unknown model {name!r}; available: {sorted(found)}")
    return found[name]


def resolve_options(name: str, given: dict[str, Any]) -> argparse.Namespace:
    """The ``opts`` of a run: ``given`` over the trainer's defaults; unknown keys are an error."""
    trainer = get_trainer(name)
    opts = trainer.option_defaults()
    unknown = sorted(set(given) - set(opts))
    if unknown:
        raise ValueError(f"unknown options for --model {name}: {unknown}; known: {sorted(opts)}")
    opts.update(given)
    if opts["out"] is None:
        opts["out"] = str(Path("runs") / f"{name}-{Path(str(opts['data'])).name}-{opts['resolution']}")
    for key in ("steps", "batch_size", "resolution", "checkpoint_every"):
        opts[key] = check_int(opts[key], key, 1)
    opts["seed"] = check_int(opts["seed"], "seed", 0, 1 << 32)
    opts["lr"] = check_number(opts["lr"], "lr", 0.0, 10.0, strict_low=True)
    if opts["threads"] is not None:
        opts["threads"] = check_int(opts["threads"], "threads", 1, 1025)
    for key in ("out", "export"):
        if opts[key] is not None:
            target = Path(opts[key])
            if target.exists() and not target.is_dir() and key == "out":
                raise ValueError(f"out {str(target)!r} is a file, not a run folder")
            if key == "export":
                target.parent.mkdir(parents=True, exist_ok=True)
                check_output_path(target.with_name(target.name + ".pt"), "--export")
    return argparse.Namespace(model=name, **opts)


def train(name: str, **options: Any) -> dict:
    """Runs the trainer ``name`` with ``options`` (the CLI's option names, underscores) → summary."""
    opts = resolve_options(name, options)
    threads = opts.threads
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return get_trainer(name).train_fn(opts)
    finally:
        torch.set_num_threads(previous)
