"""Generated view sets written to WebDataset tar shards: the offline setting of GenRep and the
papers (a fixed dataset made once, augmented when it is read).

An export of ``samples`` anchors into a folder ``out``::

    out/mlvgm-export.json        the manifest: what the shards depend on (seed, Philox stream,
                                 policy, generator fingerprint, batch size, shard size, views, samples)
    out/shard-000000.tar         shard k: samples k·shard_size … (k+1)·shard_size − 1
    out/shard-000001.tar …

Sample ``g`` is the anchor at counter step ``g // batch_size`` and sample id ``g % batch_size``:
the views of ``ViewPairPipe(generator, policy, batch_size, seed=seed, augment=None)`` at that
step and batch index, made by the same step function (:func:`~mlvgm_data.generators.base.decode_views`).
Its keys are ``view0.png``, ``view1.png``, … (unaugmented, 8 bits per channel, rounded),
``cls`` (the target: the anchor's class, or −1 for an unconditional generator) and ``json``
(``index``, ``seed``, ``stream``, ``step``, ``sample_id``, ``policy`` and ``generator``, the
generator's fingerprint); the WebDataset key is the zero-padded index ``g``.

Resumable: each shard is written to a temporary name and renamed when complete (the atomic
writer of :mod:`mlvgm_data._io`), so a killed export leaves only complete shards; run again, it
writes the missing ones and never a sample twice. A folder holding another export (other seed,
policy, generator, sizes) is refused. Ranks split the shards (rank r of W writes shards r, r + W,
…), so what is written does not depend on the number of ranks: a 2-rank export equals a 1-rank
one file for file (the tar headers carry a fixed time), and a run may resume with another world size.
The shards are plain ustar files written here (members ``KEY.EXT`` in key order, as
``webdataset.TarWriter`` writes them): exporting needs no webdataset package, reading them does.

Reading back for training under DDP (each rank its own shards, each DataLoader worker its own
part of those)::

    import webdataset as wds
    from mlvgm_data.export import read_sample, shard_urls

    dataset = wds.WebDataset(shard_urls("out"), nodesplitter=wds.split_by_node, shardshuffle=False,
                             empty_check=False).map(read_sample)
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, num_workers=2)
    augment = mlvgm_data.augment.preset("simclr", 32)  # at the generator's resolution
    for step, ((x0, x1), target) in enumerate(loader):  # unaugmented views [64, C, H, W] in [0, 1]
        x0, x1 = augment(torch.stack([x0, x1]), seed, step, stream=rank)  # fresh views every epoch

``wds.split_by_node`` reads the rank from ``RANK``/``WORLD_SIZE`` (set by ``torchrun``) or
``torch.distributed``; export a number of shards divisible by world size × workers so that every
rank sees as many samples (DDP needs as many batches on every rank).
"""

from __future__ import annotations

import functools
import io
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from ._checks import U32, check_int
from ._io import atomic_writer, write_text
from .generators.base import check_generator, decode_views, generator_device, set_eval_mode
from .generators.fingerprint import fingerprint
from .policy import ViewPolicy
from .producers import ThreadProducer

MANIFEST = "mlvgm-export.json"
FORMAT = "mlvgm-data/export/1"
SHARD_NAME = "shard-{:06d}.tar"
_KEYS = ("format", "samples", "seed", "stream", "batch_size", "shard_size", "num_views", "policy", "generator")
_PNG_COLOUR = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type: grey, grey+alpha, RGB, RGBA
# A ustar member header with the fields every member shares: mode 0444, uid/gid 0, mtime 0 (so the
# same samples give the same bytes), a regular file; name, size and checksum are filled per member.
_TAR_HEADER = bytearray(512)
for _offset, _field in ((100, b"0000444\0"), (108, b"0000000\0"), (116, b"0000000\0"), (136, b"00000000000\0"),
                        (148, b" " * 8), (156, b"0"), (257, b"ustar\x0000")):
    _TAR_HEADER[_offset:_offset + len(_field)] = _field
_TAR_RECORD = 10240  # tar files end on a record boundary (20 blocks), as tar and Python's tarfile write them


@dataclass(frozen=True)
class ExportResult:
    """What one call of :func:`export_shards` did on its rank."""

    out: Path
    rank: int
    world_size: int
    written: tuple[Path, ...]  # the shards this call wrote
    skipped: tuple[Path, ...]  # this rank's shards already complete (written by an interrupted run)
    samples: int  # samples this call wrote

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "rank": self.rank, "world_size": self.world_size,
                "written": [p.name for p in self.written], "skipped": [p.name for p in self.skipped],
                "samples": self.samples}


def resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """This process's (rank, world size): the arguments, else ``torch.distributed``'s, else
    ``RANK``/``WORLD_SIZE`` from the environment (``torchrun`` sets them; no process group is
    needed to export), else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        known = torch.distributed.get_rank(), torch.distributed.get_world_size()
    elif "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        known = (check_int(int(os.environ["RANK"]), "$RANK", 0),
                 check_int(int(os.environ["WORLD_SIZE"]), "$WORLD_SIZE", 1))
    else:
        known = (0, 1)
    r = known[0] if rank is None else check_int(rank, "rank", 0)
    w = known[1] if world_size is None else check_int(world_size, "world_size", 1)
    if r >= w:
        raise ValueError(f"rank must be in [0, world_size={w}), got {r}")
    return r, w


def encode_png(images: np.ndarray, level: int = 0) -> list[bytes]:
    """PNG files of ``images`` (uint8 ``[N, H, W, C]``, C = 1, 2, 3 or 4), 8 bits per channel, no
    row filter, deflate at ``level``. Written here rather than by PIL: PIL's per-image overhead
    (~300 µs at 32²) would cost more than generating the image."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in _PNG_COLOUR:
        raise ValueError(f"images must be uint8 [N, H, W, C] with C in 1..4, got {images.dtype} {list(images.shape)}")
    n, h, w, c = images.shape
    rows = np.zeros((n, h, 1 + w * c), np.uint8)  # each row starts with its filter type, 0 (none)
    rows[:, :, 1:] = images.reshape(n, h, w * c)
    head = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, _PNG_COLOUR[c], 0, 0, 0))
    tail = _png_chunk(b"IEND", b"")
    return [head + _png_chunk(b"IDAT", zlib.compress(r.tobytes(), level)) + tail for r in rows]


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(tag)))


def _tar_member(name: bytes, data: bytes) -> tuple[bytes, bytes, bytes]:
    """A ustar member: header, data, zero padding to the 512-byte block. Written here rather than
    by ``webdataset.TarWriter``, whose per-member work in Python's ``tarfile`` (~40 µs) cost the
    export 18 % more CPU per sample than the pipe spends (measured at 32²; same bytes on disk)."""
    header = bytearray(_TAR_HEADER)  # names fit ustar's 100 bytes: a key of 10+ digits and ".view255.png" at most
    header[:len(name)] = name
    header[124:136] = b"%011o\0" % len(data)
    header[148:156] = b"%06o\0 " % sum(header)  # the checksum counts its own field as spaces
    return bytes(header), data, bytes(-len(data) % 512)


def _tar_end(f: Any) -> None:
    """The end of a tar: two zero blocks, then zeros to the record boundary."""
    f.write(bytes(1024 + (-(f.tell() + 1024) % _TAR_RECORD)))


def _manifest(generator: torch.nn.Module, policy: ViewPolicy, samples: int, seed: int, stream: int, batch_size: int,
              shard_size: int, num_views: int) -> dict[str, Any]:
    return {"format": FORMAT, "samples": samples, "seed": seed, "stream": stream, "batch_size": batch_size,
            "shard_size": shard_size, "num_views": num_views, "policy": policy.to_dict(),
            "generator": fingerprint(generator), "num_shards": -(-samples // shard_size),
            "shard_name": SHARD_NAME}


def _read_manifest(out: Path, what: str) -> dict[str, Any] | None:
    path = out / MANIFEST
    if not path.is_file():
        return None
    try:
        found = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{what} {str(out)!r}: unreadable {MANIFEST} ({e})") from None
    if not isinstance(found, dict) or found.get("format") != FORMAT:
        raise ValueError(f"{what} {str(out)!r}: {MANIFEST} is not an mlvgm-data export manifest ({FORMAT})")
    return found


def _claim_folder(out: Path, manifest: dict[str, Any]) -> None:
    """Makes ``out`` this export's folder, or refuses one that holds another export's shards."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {str(out)!r} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    found = _read_manifest(out, "out")
    if found is None:
        tars = sorted(p.name for p in out.glob("*.tar"))
        if tars:
            raise ValueError(f"out {str(out)!r} holds tar files ({tars[0]}, …) but no {MANIFEST}: not an export "
                             "this one can continue; use an empty folder")
        # Every rank writes the same bytes (atomically), so ranks need not wait for each other.
        write_text(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n", "out manifest", root=out)
        return
    for key in _KEYS:
        if found.get(key) != manifest[key]:
            what = "another generator (or other weights)" if key == "generator" else f"{key}={found.get(key)!r}"
            mine = "" if key == "generator" else f" but this one has {key}={manifest[key]!r}"
            raise ValueError(f"out {str(out)!r} holds another export, made with {what}{mine}: continuing it would "
                             "mix two datasets; use another folder")


def _chunks(start: int, stop: int, batch_size: int) -> Iterator[tuple[int, int, int, int]]:
    """(step, first sample id, count, first index) covering samples ``start … stop − 1``, one
    counter step at a time."""
    g = start
    while g < stop:
        step, first = divmod(g, batch_size)
        count = min(batch_size - first, stop - g)
        yield step, first, count, g
        g += count


def _write_chunk(f: Any, images: torch.Tensor, target: torch.Tensor, chunk: tuple[int, int, int, int],
                 meta: dict[str, Any], level: int) -> None:
    """Appends the samples of one decoded chunk (``images`` uint8 ``[V, n, H, W, C]``) to the tar ``f``:
    per sample ``KEY.cls``, ``KEY.json``, ``KEY.view0.png``, … (WebDataset's order: sorted)."""
    step, first, n, start = chunk
    v = images.shape[0]
    target = target.tolist()
    pngs = encode_png(images.reshape(v * n, *images.shape[2:]).numpy(), level)
    parts: list[bytes] = []
    for b in range(n):
        key = b"%010d" % (start + b)
        info = {"index": start + b, **meta, "step": step, "sample_id": first + b}
        parts += _tar_member(key + b".cls", b"%d" % target[b])
        parts += _tar_member(key + b".json", json.dumps(info, sort_keys=True).encode())
        for i in range(v):
            parts += _tar_member(key + b".view%d.png" % i, pngs[i * n + b])
    f.write(b"".join(parts))


def _decode_chunk(generator: torch.nn.Module, policy: ViewPolicy, manifest: dict[str, Any], device: torch.device,
                  chunk: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The views of one chunk ``(step, first id, count, first index)``, rounded to uint8
    ``[V, n, H, W, C]``, and their targets: what the producer thread makes ahead of the writer."""
    step, first, count, _ = chunk
    made = decode_views(generator, policy, count, manifest["num_views"], seed=manifest["seed"], step=step,
                        device=device, stream=manifest["stream"], sample_offset=first)
    images = made.images.mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 1, 3, 4, 2).cpu()
    return images, (made.classes.cpu() if made.classes is not None else torch.full((count,), -1))


def _write_shards(out: Path, generator: torch.nn.Module, policy: ViewPolicy, manifest: dict[str, Any],
                  shards: list[int], level: int, bar: Any) -> None:
    """Writes ``shards``, each atomically. As in the pipe, a producer thread decodes the chunks
    (one step's part of a shard each) ahead of this thread, which encodes and writes them."""
    size, total, batch = manifest["shard_size"], manifest["samples"], manifest["batch_size"]
    plan = {k: list(_chunks(k * size, min((k + 1) * size, total), batch)) for k in shards}
    chunks = [c for k in shards for c in plan[k]]
    meta = {key: manifest[key] for key in ("seed", "stream", "policy", "generator")}
    work = functools.partial(_decode_chunk, generator, policy, manifest, generator_device(generator))
    producer = ThreadProducer(lambda i: work(chunks[i]), iter(range(len(chunks))), prefetch=2)
    try:
        for k in shards:
            with atomic_writer(out / SHARD_NAME.format(k), "out shard", root=out) as f:
                for chunk in plan[k]:
                    images, target = producer.get()
                    _write_chunk(f, images, target, chunk, meta, level)
                _tar_end(f)
            bar.update(1)
    finally:
        producer.close()


def export_shards(generator: torch.nn.Module, policy: ViewPolicy, samples: int, out: str | Path, *, seed: int = 0,
                  batch_size: int = 256, shard_size: int = 10240, num_views: int = 2, stream: int = 0,
                  rank: int | None = None, world_size: int | None = None, png_level: int = 0,
                  progress: bool = False) -> ExportResult:
    """Writes ``samples`` anchors with their ``num_views`` views to WebDataset shards in ``out``
    (see the module docs for the layout and the sample keys), resuming an interrupted export.

    ``batch_size`` fixes the counter step and sample id of each sample (as the pipe's batch does)
    and bounds the batch decoded at once; ``shard_size`` is the samples per shard. Rank r of
    ``world_size`` (default: :func:`resolve_rank`) writes shards r, r + W, …; ``png_level`` is the
    deflate level of the PNGs, 0–9: 0 (stored, the default) is the fastest; 1 halves the files at
    32², and its deflate costs ~85 µs per image on a 2-core CPU, ~13 % more CPU per pair than the
    pipe spends (``benchmarks/export.py`` measures both against the pipe). Raises ``ValueError``
    naming the argument for a bad size, ``out`` that is a file or holds another export.
    """
    check_generator(generator, policy)
    samples = check_int(samples, "samples", 1)
    batch_size = check_int(batch_size, "batch_size", 1, U32)
    shard_size = check_int(shard_size, "shard_size", 1)
    num_views = check_int(num_views, "num_views", 1, 256)
    seed, stream = check_int(seed, "seed", 0, U32), check_int(stream, "stream", 0, U32)
    level = check_int(png_level, "png_level", 0, 10)
    if (samples - 1) // batch_size >= U32:
        raise ValueError(f"samples={samples} at batch_size={batch_size} needs more than 2**32 counter steps")
    channels = (getattr(generator, "image_shape", None) or (None,))[0]
    if channels is not None and channels not in _PNG_COLOUR:
        raise ValueError(f"the generator makes {channels}-channel images; PNG holds 1 to 4 channels")
    r, w = resolve_rank(rank, world_size)
    out = Path(out)
    set_eval_mode(generator, "export_shards")
    manifest = _manifest(generator, policy, samples, seed, stream, batch_size, shard_size, num_views)
    _claim_folder(out, manifest)
    mine = range(r, manifest["num_shards"], w)
    done = [k for k in mine if (out / SHARD_NAME.format(k)).is_file()]  # complete: shards appear by the final rename
    todo = [k for k in mine if k not in done]
    with tqdm(total=len(mine), initial=len(done), desc=f"export rank {r}", unit="shard", disable=not progress) as bar:
        _write_shards(out, generator, policy, manifest, todo, level, bar)
    written, skipped = [out / SHARD_NAME.format(k) for k in todo], [out / SHARD_NAME.format(k) for k in done]
    count = sum(min((k + 1) * shard_size, samples) - k * shard_size for k in todo)
    return ExportResult(out, r, w, tuple(written), tuple(skipped), count)


def shard_urls(out: str | Path) -> list[str]:
    """The paths of an export's shards in order (for ``webdataset.WebDataset``); ``ValueError``
    if ``out`` holds no export or the export is incomplete (run it again to finish it)."""
    folder = Path(out)
    manifest = _read_manifest(folder, "out")
    if manifest is None:
        raise ValueError(f"out {str(folder)!r} holds no export ({MANIFEST} not found)")
    paths = [folder / manifest["shard_name"].format(k) for k in range(manifest["num_shards"])]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise ValueError(f"out {str(folder)!r}: the export is incomplete ({len(missing)} of {len(paths)} shards "
                         f"missing, e.g. {missing[0]}); run the export again to finish it")
    return [str(p) for p in paths]


def read_sample(sample: Mapping[str, Any]) -> tuple[tuple[torch.Tensor, ...], int]:
    """``((v0, v1, …), target)`` from a raw WebDataset sample of an export (its ``viewK.png``
    bytes and ``cls``): views float32 ``[C, H, W]`` in [0, 1], as the pipe's unaugmented views
    to within the PNG's rounding (1/510)."""
    from PIL import Image

    names = sorted((k for k in sample if k.startswith("view") and k.endswith(".png") and k[4:-4].isdigit()),
                   key=lambda k: int(k[4:-4]))
    if not names or "cls" not in sample:
        raise ValueError(f"sample {sample.get('__key__')!r} has no viewK.png or cls entries: not from an export")
    views = []
    for name in names:
        with Image.open(io.BytesIO(sample[name])) as image:
            array = np.asarray(image)
        t = torch.from_numpy(array.copy())
        views.append((t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)).float().div_(255))
    return tuple(views), int(sample["cls"])


def read_manifest(out: str | Path) -> dict[str, Any]:
    """The manifest of the export in ``out`` (seed, stream, policy, generator fingerprint, sizes)."""
    manifest = _read_manifest(Path(out), "out")
    if manifest is None:
        raise ValueError(f"out {str(out)!r} holds no export ({MANIFEST} not found)")
    return manifest


def load_export(out: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole export in memory, read with the standard library (no webdataset): its views as
    uint8 ``[N, V, C, H, W]`` (sample g at row g) and its targets ``[N]``; for a fixed generated
    dataset small enough to hold (60,000 grey 32² pairs are 123 MB)."""
    import tarfile

    views: list[torch.Tensor] = []
    targets: list[int] = []
    for url in shard_urls(out):
        samples: dict[str, dict[str, Any]] = {}
        with tarfile.open(url) as tar:
            for member in tar:
                key, _, ext = member.name.partition(".")
                data = tar.extractfile(member)
                samples.setdefault(key, {"__key__": key})[ext] = data.read() if data is not None else b""
        for key in sorted(samples):
            sample_views, target = read_sample(samples[key])
            views.append(torch.stack(sample_views).mul_(255).round_().to(torch.uint8))
            targets.append(target)
    return torch.stack(views), torch.tensor(targets, dtype=torch.int64)
