"""The BigGAN / BigBiGAN adapter: z in chunks (one per block slot when the model says its slots)."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

from ..._checks import check_int
from ...latents import LatentGroup, LatentSpec
from .common import WrapsCallable, agree, check_image_shape, check_range, class_input, model_int, to_unit_range


def _chunk_layout(chunks: int | Sequence[int] | Mapping[str, int], z_dim: int | None) -> list[tuple[str, int]]:
    if isinstance(chunks, str):
        raise ValueError(f"chunks must be an int, a list of sizes or a dict name → size, got {chunks!r}")
    if isinstance(chunks, Mapping):
        layout = [(str(k), v) for k, v in chunks.items()]
    elif isinstance(chunks, int) and not isinstance(chunks, bool):
        if z_dim is None:
            raise ValueError("chunks given as a count needs z_dim (or a generator with z_dim / dim_z)")
        if chunks <= 0 or z_dim % chunks:
            raise ValueError(f"z_dim={z_dim} cannot be split into {chunks} equal chunks; "
                             "pass chunks as a list of sizes")
        layout = [(f"c{i}", z_dim // chunks) for i in range(chunks)]
    else:
        try:
            layout = [(f"c{i}", v) for i, v in enumerate(chunks)]
        except TypeError:
            raise ValueError(f"chunks must be an int, a list of sizes or a dict name → size, got {chunks!r}") from None
    if not layout:
        raise ValueError("chunks must not be empty")
    for name, size in layout:
        check_int(size, f"chunk {name!r} size", 1)
    total = sum(s for _, s in layout)
    if z_dim is not None and total != z_dim:
        raise ValueError(f"chunk sizes {[s for _, s in layout]} sum to {total}, but z_dim is {z_dim}")
    return layout


def _z_slots(model: Any) -> tuple[int, int] | None:
    """``(num_slots, z_chunk_size)`` of a hierarchical-z BigGAN-PyTorch generator — z is split into
    ``num_slots`` slots of ``z_chunk_size``: slot 0 feeds the first linear layer, slot i block i's
    conditional batch norm — directly or under ``big_gan`` (the BigBiGAN port's wrapper)."""
    for obj in (model, getattr(model, "big_gan", None)):
        slots, _ = model_int(obj, ["num_slots"])
        size, _ = model_int(obj, ["z_chunk_size"])
        if slots and size and slots > 1:
            return slots, size
    return None


def _check_slots(layout: list[tuple[str, int]], slots: tuple[int, int]) -> None:
    num_slots, size = slots
    start = 0
    for name, n in layout:
        stop = start + n
        if start % size or stop % size:
            raise ValueError(
                f"chunk {name!r} is z[{start}:{stop}], which straddles the generator's per-block z slots "
                f"({num_slots} slots of {size}: slot 0 feeds the first layer, slot i block i): a chunk must "
                f"hold whole slots, i.e. start and stop at multiples of {size}"
            )
        start = stop


class BigGANAdapter(WrapsCallable):
    """Wraps a BigGAN / BigBiGAN-style generator that takes one z split into named chunks.

    The wrapped module is called positionally as ``generator(z, [class_input], [truncation])``:
    ``z`` is the chunks concatenated in order; the class input is included when the generator is
    class-conditional (``class_input="onehot"`` floats ``[N, num_classes]`` or ``"index"`` int64
    ``[N]``); ``truncation`` is included when not ``None``. The call is checked against the
    generator's signature when the adapter is built.

    * **pytorch-pretrained-BigGAN** (``BigGAN.forward(z, class_label, truncation)``): its samples are
      ``z = truncation · truncnorm(−2, 2)`` (``truncated_noise_sample``) passed together with
      ``truncation``. So with ``truncation`` set the adapter feeds ``truncation · z``; use a policy
      with ``anchor_trunc=2.0`` for the truncated normal. ``z_dim``, ``num_classes`` and the image
      shape come from its ``config`` (``z_dim``, ``num_classes``, ``output_dim``).
    * **BigGAN-PyTorch generators with hierarchical z** and the **BigBiGAN port** of
      pytorch-pretrained-gans (``G(z)``, ``dim_z = 120``): they say how z is cut into per-block
      slots (``num_slots``, ``z_chunk_size``, on the module or its ``big_gan``); the default is one
      chunk per slot (BigBiGAN: 6 × 20), and a chunk that straddles two slots is refused.

    ``chunks``: ``None`` (one per slot when the generator has slots, else 6 equal chunks — the MI
    paper's BigBiGAN layout), a count of equal chunks, a list of sizes, or a dict name → size
    (names default ``c0, c1, …``). ``z_dim``, ``num_classes`` and ``image_shape`` default to what
    the generator says (attributes ``z_dim``/``dim_z``, ``config.*``, ``resolution``); a value
    that contradicts it is refused. ``truncation`` must lie in (0, 1]. ``output_range`` is mapped
    to [0, 1] and clamped. ``encoder`` (e.g. BigBiGAN's encoder ``E(x) -> z``, images in
    ``output_range``) makes :meth:`invert` give real anchors: its z (the whole ``[N, z_dim]``, in
    the generator's input space) is divided by ``truncation`` when set and split into the chunks.
    """

    def __init__(
        self,
        generator: Callable[..., torch.Tensor],
        chunks: int | Sequence[int] | Mapping[str, int] | None = None,
        z_dim: int | None = None,
        num_classes: int | None = None,
        class_input: str = "onehot",
        truncation: float | None = None,
        output_range: Sequence[float] | None = (-1.0, 1.0),
        image_shape: Sequence[int] | None = None,
        encoder: Callable[..., torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self._hold(generator, "generator")
        self._hold_encoder(encoder)
        model = getattr(self, "model", generator)
        own_z, z_source = model_int(model, ["z_dim", "dim_z", "config.z_dim", "big_gan.dim_z"])
        z_dim = agree("z_dim", None if z_dim is None else check_int(z_dim, "z_dim", 1), own_z, z_source)
        slots = _z_slots(model)
        if slots is not None:
            z_dim = agree("z_dim", z_dim, slots[0] * slots[1], "num_slots × z_chunk_size")
        layout = _chunk_layout((slots[0] if slots else 6) if chunks is None else chunks, z_dim)
        if slots is not None:
            _check_slots(layout, slots)
        self.latent_spec = LatentSpec([LatentGroup(n, (s,)) for n, s in layout])
        if class_input not in ("onehot", "index"):
            raise ValueError(f"class_input must be 'onehot' or 'index', got {class_input!r}")
        own_classes, _ = model_int(model, ["config.num_classes"])
        given = None if num_classes is None else check_int(num_classes, "num_classes", 1)
        self.num_classes = agree("num_classes", given, own_classes, "config.num_classes")
        self.class_input = class_input
        if truncation is not None and (isinstance(truncation, bool) or not isinstance(truncation, (int, float))
                                       or not 0 < truncation <= 1):
            raise ValueError(f"truncation must be a number in (0, 1] or None, got {truncation!r}")
        self.truncation = None if truncation is None else float(truncation)
        self.output_range = check_range(output_range)
        res, res_source = model_int(model, ["config.output_dim", "resolution", "big_gan.resolution"])
        self.image_shape = agree("image_shape", check_image_shape(image_shape), (3, res, res) if res else None,
                                  f"{res_source} (3 × {res} × {res} images)")
        passed = (["z"] + (["classes"] if self.num_classes else [])
                  + (["truncation"] if self.truncation is not None else []))
        self._check_call(passed, "set num_classes= for a class input and truncation= for a truncation argument "
                                 "(pytorch-pretrained-BigGAN takes (z, class_label, truncation))")

    def _noise_of(self, out: Any) -> dict[str, torch.Tensor]:
        if isinstance(out, Mapping):
            return dict(out)
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != self.latent_spec.numel:
            got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the encoder must return z [N, {self.latent_spec.numel}], got {got}")
        z = out.float() / self.truncation if self.truncation is not None else out.float()
        return self.latent_spec.split(z)

    def _decode(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None) -> torch.Tensor:
        z = self.latent_spec.join(latents)
        if self.truncation is not None:
            z = z * self.truncation  # pytorch-pretrained-BigGAN's z = truncation · truncnorm(−2, 2)
        args: list[Any] = [z]
        c = class_input(classes, self.num_classes, self.class_input, z, type(self).__name__)
        if c is not None:
            args.append(c)
        if self.truncation is not None:
            args.append(self.truncation)
        return to_unit_range(self._run(*args), self.output_range, "the wrapped generator")
