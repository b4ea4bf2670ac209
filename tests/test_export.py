"""Export to WebDataset shards: the round trip against the pipe, resume after an exception and after
a kill, ranks (in-process and under torchrun), reading back under DDP, and every bad input."""

from __future__ import annotations

import copy
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

import mlvgm_data.export as export_module
from mlvgm_data import ViewPairPipe, load_generator
from mlvgm_data.apps.cli import main
from mlvgm_data.augment import preset
from mlvgm_data.export import MANIFEST, encode_png, export_shards, read_sample, resolve_rank, shard_urls
from mlvgm_data.generators import recommended_policy
from mlvgm_data.generators.fingerprint import fingerprint
from mlvgm_data.policy import Perturb, ViewPolicy

ROOT = Path(__file__).resolve().parent.parent
# 10 samples, 3 per counter step, 4 per shard: shards [0-3] [4-7] [8-9], and shard 1 starts mid-step
SIZES = dict(samples=10, batch_size=3, shard_size=4)
SHARDS = ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]


@pytest.fixture(scope="module")
def shapes() -> tuple[torch.nn.Module, ViewPolicy]:
    return load_generator("builtin:shapes"), recommended_policy("builtin:shapes")


@pytest.fixture(scope="module")
def reference(shapes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted one-rank export (the folder every other export is compared with)."""
    out = tmp_path_factory.mktemp("reference")
    export_shards(*shapes, out=out, seed=5, **SIZES)
    return out


@pytest.fixture(autouse=True)
def _no_torchrun_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)


def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.tar"))}


def test_round_trip_gives_the_pipes_views_at_the_recorded_step(shapes, reference: Path) -> None:
    gen, policy = shapes
    with ViewPairPipe(gen, policy, 3, seed=5, augment=None, prefetch=0) as pipe:
        it = iter(pipe)
        batches = [next(it) for _ in range(4)]
    assert [Path(u).name for u in shard_urls(reference)] == SHARDS
    with tarfile.open(reference / SHARDS[0]) as tar:  # a strict reader: checksums, sizes, end blocks
        members = tar.getmembers()
    assert [m.name for m in members[:5]] == ["0000000000.cls", "0000000000.json", "0000000000.view0.png",
                                             "0000000000.view1.png", "0000000001.cls"]
    assert len(members) == 16 and all(m.isfile() and m.mode == 0o444 and m.mtime == 0 for m in members)
    assert (reference / SHARDS[0]).stat().st_size % 10240 == 0
    seen = []
    for sample in wds.WebDataset(shard_urls(reference), shardshuffle=False):
        assert set(sample) - {"__key__", "__url__", "__local_path__"} == {"view0.png", "view1.png", "cls", "json"}
        info = json.loads(sample["json"])
        g = int(sample["__key__"])
        assert info == {"index": g, "seed": 5, "stream": 0, "step": g // 3, "sample_id": g % 3,
                        "policy": policy.to_dict(), "generator": fingerprint(gen)}
        views, target = read_sample(sample)
        batch = batches[info["step"]]
        assert target == int(batch.target[info["sample_id"]]) and 0 <= target < gen.num_classes
        for view, expected in zip(views, batch.views, strict=True):
            assert view.shape == (3, 32, 32) and view.dtype == torch.float32
            torch.testing.assert_close(view, expected[info["sample_id"]], atol=1 / 255 + 1e-6, rtol=0)
        seen.append(g)
    assert seen == list(range(10))


def test_grey_unconditional_generator_and_more_views(tmp_path: Path) -> None:
    gen = load_generator("builtin:fashion")
    policy = ViewPolicy.uniform(gen.latent_spec, Perturb(0.5))
    export_shards(gen, policy, 4, tmp_path, batch_size=4, shard_size=8, num_views=3, seed=1)
    with ViewPairPipe(gen, policy, 4, seed=1, num_views=3, augment=None, prefetch=0) as pipe:
        batch = next(iter(pipe))
    samples = list(wds.WebDataset(shard_urls(tmp_path), shardshuffle=False).map(read_sample))
    assert len(samples) == 4
    for b, (views, target) in enumerate(samples):
        assert target == -1 and len(views) == 3 and views[2].shape == (1, 32, 32)
        for view, expected in zip(views, batch.views, strict=True):
            torch.testing.assert_close(view, expected[b], atol=1 / 255 + 1e-6, rtol=0)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_encode_png_is_lossless_for_pil(channels: int) -> None:
    images = np.random.default_rng(channels).integers(0, 256, (3, 5, 7, channels), dtype=np.uint8)
    for level in (0, 9):
        for png, image in zip(encode_png(images, level), images, strict=True):
            with Image.open(io.BytesIO(png)) as decoded:
                back = np.asarray(decoded)
            assert np.array_equal(back.reshape(image.shape), image)
    with pytest.raises(ValueError, match="images must be uint8"):
        encode_png(images.astype(np.float32))
    with pytest.raises(ValueError, match="images must be uint8"):
        encode_png(np.zeros((1, 2, 2, 5), np.uint8))


def test_exception_mid_shard_then_resume_writes_each_sample_once(shapes, reference: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    real, calls = export_module.decode_views, []

    def failing(*args, **kwargs):
        calls.append(kwargs["step"])
        if len(calls) == 4:  # shard 1's second chunk: its first is already in the temporary file
            raise RuntimeError("injected")
        return real(*args, **kwargs)

    monkeypatch.setattr(export_module, "decode_views", failing)
    with pytest.raises(RuntimeError, match="injected"):
        export_shards(*shapes, out=tmp_path, seed=5, **SIZES)
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST, SHARDS[0]]  # no partial shard left
    first = (tmp_path / SHARDS[0]).stat()
    with pytest.raises(ValueError, match="incomplete"):
        shard_urls(tmp_path)
    monkeypatch.setattr(export_module, "decode_views", real)
    result = export_shards(*shapes, out=tmp_path, seed=5, **SIZES)
    assert [p.name for p in result.skipped] == SHARDS[:1] and [p.name for p in result.written] == SHARDS[1:]
    assert result.samples == 6
    again = (tmp_path / SHARDS[0]).stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)  # not written again
    assert shard_bytes(tmp_path) == shard_bytes(reference)
    assert export_shards(*shapes, out=tmp_path, seed=5, **SIZES).written == ()  # complete: nothing to do


KILLER = """
import os, signal, sys
import mlvgm_data.export as e
real, calls = e._write_chunk, []
def killer(*args, **kwargs):
    calls.append(1)
    if len(calls) == 4:  # shard 0 is complete, shard 1's first chunk is in its temporary file
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
e._write_chunk = killer
from mlvgm_data.augment import preset
from mlvgm_data.apps.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_killed_export_continues_from_the_last_complete_shard(reference: Path, tmp_path: Path) -> None:
    args = ["export", "builtin:shapes", "--samples", "10", "--out", str(tmp_path), "--seed", "5", "--batch-size",
            "3", "--shard-size", "4"]
    run = subprocess.run([sys.executable, "-c", KILLER, *args], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == -9, run.stderr[-2000:]
    names = sorted(p.name for p in tmp_path.iterdir())  # shard 1 killed half-written, under its temporary name
    assert names[1:] == [MANIFEST, SHARDS[0]]
    assert names[0].startswith(".shard-000001.tar.") and names[0].endswith(".tmp")
    assert main([*args, "--json", str(tmp_path.parent / "resume.json")]) == 0
    doc = json.loads((tmp_path.parent / "resume.json").read_text())
    assert doc["written"] == SHARDS[1:] and doc["skipped"] == SHARDS[:1] and doc["samples"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST, *SHARDS]  # the killed run's temp file is gone
    assert shard_bytes(tmp_path) == shard_bytes(reference)


def test_two_ranks_split_the_shards_and_equal_one_rank(shapes, reference: Path, tmp_path: Path) -> None:
    r1 = export_shards(*shapes, out=tmp_path, seed=5, rank=1, world_size=2, **SIZES)
    assert [p.name for p in r1.written] == SHARDS[1:2] and (r1.rank, r1.world_size) == (1, 2)
    r0 = export_shards(*shapes, out=tmp_path, seed=5, rank=0, world_size=2, **SIZES)
    assert [p.name for p in r0.written] == [SHARDS[0], SHARDS[2]] and r0.samples + r1.samples == 10
    assert shard_bytes(tmp_path) == shard_bytes(reference)


@pytest.mark.slow  # two torch processes started by torchrun: ~15 s on 2 cores
def test_torchrun_ranks_write_their_own_shards(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "mlvgm_data.apps.cli", "export", "builtin:shapes", "--samples", "10", "--out", str(out), "--seed", "5",
           "--batch-size", "3", "--shard-size", "4", "--json", "-"]
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "rank 0 of 2 wrote 2 shard(s)" in run.stdout and "rank 1 of 2 wrote 1 shard(s)" in run.stdout
    assert shard_bytes(out) == shard_bytes(reference)


def test_ddp_read_splits_shards_by_node(reference: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))  # what torchrun sets, and what wds.split_by_node reads
        monkeypatch.setenv("WORLD_SIZE", "2")
        dataset = wds.WebDataset(shard_urls(reference), nodesplitter=wds.split_by_node, shardshuffle=False,
                                 empty_check=False)
        keys.append([int(s["__key__"]) for s in dataset])
        loader = torch.utils.data.DataLoader(dataset.map(read_sample), batch_size=2)
        (x0, x1), target = next(iter(loader))
        assert x0.shape == x1.shape == (2, 3, 32, 32) and target.dtype == torch.int64
        a0, a1 = preset("simclr", 32)(torch.stack([x0, x1]), 0, 0, stream=rank)  # the module docs' training loop
        assert a0.shape == x0.shape and not torch.equal(a0, x0)
    assert keys == [[0, 1, 2, 3, 8, 9], [4, 5, 6, 7]]


def test_resolve_rank_reads_torchrun_env_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_rank(None, None) == (0, 1)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert resolve_rank(None, None) == (1, 3)
    assert resolve_rank(0, 1) == (0, 1)
    with pytest.raises(ValueError, match="rank must be in"):
        resolve_rank(3, None)
    monkeypatch.setenv("RANK", "-1")
    with pytest.raises(ValueError, match=r"\$RANK"):
        resolve_rank(None, None)


def other_generator(gen: torch.nn.Module) -> torch.nn.Module:
    changed = copy.deepcopy(gen)
    with torch.no_grad():
        next(changed.parameters()).add_(0.01)
    return changed


@pytest.mark.parametrize("change, match", [
    (dict(seed=6), "holds another export, made with seed=5"),
    (dict(policy=ViewPolicy({})), "made with policy="),
    (dict(generator="other"), "another generator"),
    (dict(shard_size=5), "shard_size=4"),
    (dict(samples=12), "samples=10"),
    (dict(num_views=3), "num_views=2"),
])
def test_an_export_into_another_exports_folder_is_refused(shapes, reference: Path, tmp_path: Path,
                                                          change: dict, match: str) -> None:
    out = tmp_path / "copy"
    out.mkdir()
    for name in (MANIFEST, *SHARDS):
        (out / name).write_bytes((reference / name).read_bytes())
    gen, policy = shapes
    kwargs = dict(generator=gen, policy=policy, out=out, seed=5, **SIZES)
    kwargs.update(change)
    if change.get("generator") == "other":
        kwargs["generator"] = other_generator(gen)
    before = shard_bytes(out)
    with pytest.raises(ValueError, match=match):
        export_shards(**kwargs)
    assert shard_bytes(out) == before


@pytest.mark.parametrize("kwargs, match", [
    (dict(samples=0), "samples must be an int >= 1"),
    (dict(shard_size=0), "shard_size must be an int >= 1, got 0"),
    (dict(batch_size=0), "batch_size must be in"),
    (dict(num_views=0), "num_views must be in"),
    (dict(png_level=10), "png_level must be in"),
    (dict(seed=-1), "seed must be in"),
    (dict(rank=2, world_size=2), "rank must be in"),
    (dict(policy={"rules": {}}), "policy must be a ViewPolicy"),
    (dict(policy=ViewPolicy({"nope": Perturb(1.0)})), "nope"),
])
def test_bad_arguments_are_named(shapes, tmp_path: Path, kwargs: dict, match: str) -> None:
    gen, policy = shapes
    call = dict(generator=gen, policy=policy, samples=4, out=tmp_path / "out")
    call.update(kwargs)
    with pytest.raises(ValueError, match=match):
        export_shards(**call)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_bad_folders_are_refused(shapes, tmp_path: Path) -> None:
    gen, policy = shapes
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(ValueError, match="out .* is a file, not a folder"):
        export_shards(gen, policy, 4, file)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data-000000.tar").write_bytes(b"")
    with pytest.raises(ValueError, match=f"holds tar files .* but no {MANIFEST}"):
        export_shards(gen, policy, 4, foreign)
    (foreign / MANIFEST).write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not an mlvgm-data export manifest"):
        export_shards(gen, policy, 4, foreign)
    with pytest.raises(ValueError, match="holds no export"):
        shard_urls(tmp_path)
    with pytest.raises(ValueError, match="no viewK.png or cls"):
        read_sample({"__key__": "x", "jpg": b""})


def test_five_channel_generator_is_refused(shapes, tmp_path: Path) -> None:
    gen = copy.deepcopy(shapes[0])
    gen.image_shape = (5, 32, 32)
    with pytest.raises(ValueError, match="5-channel images; PNG holds 1 to 4"):
        export_shards(gen, shapes[1], 4, tmp_path / "out")


def test_export_needs_no_webdataset(shapes, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shards are plain ustar files written here: only reading them uses the package."""
    monkeypatch.setitem(sys.modules, "webdataset", None)
    export_shards(*shapes, out=tmp_path, seed=5, **SIZES)
    assert shard_bytes(tmp_path) == shard_bytes(reference)


@pytest.mark.parametrize("extra, match", [
    (["--samples", "0"], "--samples must be an int >= 1"),
    (["--samples", "4", "--shard-size", "0"], "--shard-size must be an int >= 1, got 0"),
    (["--samples", "4", "--batch-size", "0"], "--batch-size"),
    (["--samples", "4", "--policy", "whatever"], "--policy 'whatever' is not"),
    (["--samples", "4", "--out", "FILE"], "--out .* is a file"),
])
def test_cli_bad_inputs_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str],
                                     match: str) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    extra = [str(file) if a == "FILE" else a for a in extra]
    args = ["export", "builtin:shapes", "--out", str(tmp_path / "out"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mlvgm-data export: error:")
    assert re.search(match, err), err
