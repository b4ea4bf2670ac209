"""Digests of a generator's weights: the pipe's *generator fingerprint* (a resume state made with
one generator is refused by another) and the checksum a saved generator's config records.

What the fingerprint covers, and why:

- the generator's type, latent spec, ``num_classes`` and ``image_shape``;
- every parameter and every persistent buffer, by name, dtype, shape and bytes (in row-major
  order whatever the memory layout: a channels_last or otherwise strided tensor digests as its
  contiguous copy would; 0-d tensors, bf16/fp16, bool and complex tensors included). Parametrized
  weights (``torch.nn.utils.parametrize``: ``weight_norm``, ``spectral_norm``, orthogonal) are
  covered through what the module stores — the originals and the power-iteration ``u``/``v``
  buffers — not through the weight they compute. A tensor shared under several names (tied
  weights) is digested once and the tie itself is part of the digest;
- non-persistent buffers are **not** covered: they are not part of a checkpoint (the module
  rebuilds them from its config, or they are caches), so a fresh process could not reproduce them;
- a generator with no parameters and no buffers has nothing to tell two of the same type apart
  but its configuration: its ``repr`` and its public scalar attributes (numbers, strings, tuples
  of them) are digested too, and a wrapped callable's qualified name.

Buffers a model updates while it runs (batch-norm statistics, StyleGAN3's ``magnitude_ema``,
spectral norm's ``u``/``v``) change only in train mode, and the pipe decodes in eval mode. The
pipe still takes its fingerprint *before its first decode* (when iteration or a state load first
needs it, or when it is pickled into DataLoader workers) and keeps it: a buffer that drifts even
in eval mode cannot turn a valid state into "another generator's", because the resumed process
takes its fingerprint from the same freshly loaded weights.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Mapping

import torch
from torch import nn


def tensor_bytes(t: torch.Tensor, name: str = "tensor") -> bytes:
    """The bytes of ``t`` in row-major order on the CPU, for any dtype, layout and stride."""
    if t.is_meta or isinstance(t, nn.parameter.UninitializedTensorMixin):
        raise ValueError(f"{name} is not materialised (meta device or a lazy module's uninitialised "
                         "parameter): run the model once or load its weights before using it as a generator")
    t = t.detach()
    if t.layout != torch.strided:
        t = t.to_dense()
    if t.is_quantized:
        t = t.int_repr()
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    # reshape(-1) after contiguous(): a size-1 dimension can leave a "contiguous" tensor with a last
    # stride other than 1 (a channels_last 1x1 convolution), which a byte view refuses.
    flat = t.cpu().contiguous().reshape(-1)
    if flat.numel() == 0:
        return b""
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    return flat.view(torch.uint8).numpy().tobytes()


def _digest_tensors(h: Any, named: Iterable[tuple[str, torch.Tensor]]) -> None:
    seen: dict[tuple[int, int, tuple[int, ...], tuple[int, ...], torch.dtype], str] = {}
    for name, t in named:
        if t.is_meta or isinstance(t, nn.parameter.UninitializedTensorMixin):
            tensor_bytes(t, name)  # raises: nothing to digest
        if t.layout != torch.strided:
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(tensor_bytes(t, name))
            continue
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if key in seen:
            h.update(f"{name}=tie:{seen[key]}".encode())  # a tied weight: the tie, not the bytes again
            continue
        seen[key] = name
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(tensor_bytes(t, name))


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names, dtypes, shapes and bytes (a saved generator's checksum)."""
    h = hashlib.sha256()
    _digest_tensors(h, sorted(state.items()))
    return h.hexdigest()


def _scalar_config(generator: object) -> list[tuple[str, Any]]:
    def plain(v: Any) -> bool:
        if isinstance(v, (tuple, list)):
            return all(plain(x) for x in v)
        return v is None or isinstance(v, (bool, int, float, str))

    attrs = sorted((k, v) for k, v in vars(generator).items()
                   if not k.startswith("_") and k != "training" and plain(v))
    fn = getattr(generator, "_call", None)
    if fn is not None:
        attrs.append(("callable", f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__name__)}"))
    return attrs


def fingerprint(generator: object) -> str:
    """A digest of what makes the generator's samples (see the module docs for what it covers);
    ``ValueError`` for a generator whose weights are not materialised."""
    h = hashlib.sha256()
    h.update(f"{type(generator).__module__}.{type(generator).__qualname__}".encode())
    h.update(repr(generator.latent_spec.to_dict()).encode())
    h.update(repr((getattr(generator, "num_classes", None), getattr(generator, "image_shape", None))).encode())
    if not isinstance(generator, nn.Module):
        h.update(repr(_scalar_config(generator)).encode())
        return h.hexdigest()[:32]
    persistent = list(generator.state_dict(keep_vars=True).items())
    _digest_tensors(h, persistent)
    if not persistent:
        h.update(repr(generator).encode())
        h.update(repr(_scalar_config(generator)).encode())
    return h.hexdigest()[:32]
