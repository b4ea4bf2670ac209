"""The wrong inputs users were seen to pass, each answered at the call with an error that names the
argument (or accepted, for NumPy integers): a table of cases, one line each."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from helpers import TinyGenerator

from mlvgm_data import GeneratedViews, LatentGroup, LatentSpec, Perturb, ViewPairPipe, ViewPolicy, ops

SPEC = LatentSpec([LatentGroup("a", (4,)), LatentGroup("b", (2, 3, 3))])
POLICY = ViewPolicy({"top": Perturb(0.3)})


def resample(**kw):
    args = dict(spec=SPEC, policy=ViewPolicy({}), batch_size=2, num_views=2, seed=0, step=0)
    args.update(kw)
    return ops.resample(**args)


def pipe(**kw):
    args = dict(generator=TinyGenerator(), policy=POLICY, batch_size=4)
    args.update(kw)
    return ViewPairPipe(**args)


def dataset():
    return GeneratedViews(TinyGenerator(), POLICY, length=4)


CASES: list[tuple[str, Callable[[], object], type, str]] = [
    # accepted silently before
    ("Perturb(3e38)", lambda: Perturb(3e38), ValueError, "Perturb.sigma"),
    ("Perturb(mu=-1e9)", lambda: Perturb(1.0, mu=-1e9), ValueError, "Perturb.mu"),
    ("LatentGroup of 2**31", lambda: LatentGroup("x", (2**31,)), ValueError, "'x' has 2,147,483,648 values"),
    ("prefetch=10**9", lambda: pipe(prefetch=10**9), ValueError, "prefetch"),
    ("policy=None (pipe)", lambda: pipe(policy=None), ValueError, "policy must be a ViewPolicy"),
    ("policy=None (dataset)", lambda: GeneratedViews(TinyGenerator(), None, 4), ValueError, "policy must be"),
    ("ds[1.5]", lambda: dataset()[1.5], TypeError, "indices must be integers"),
    ("ds['3']", lambda: dataset()["3"], TypeError, "indices must be integers"),
    ("out requiring grad", lambda: resample(out=torch.zeros(2 * 2 * 22, requires_grad=True)), ValueError,
     "out must not require grad"),
    ("out on another device", lambda: resample(out=torch.zeros(2 * 2 * 22), device="meta"), ValueError,
     "device is on the meta device"),
    ("out on the meta device", lambda: resample(out=torch.zeros(2 * 2 * 22, device="meta")), ValueError,
     "out is on the meta device"),
    ("device='meta'", lambda: resample(device="meta"), ValueError, "device is on the meta device"),
    ("float sample_ids", lambda: resample(sample_ids=[0.5, 1.0]), ValueError, "sample_ids must be integers"),
    ("bool sample_ids", lambda: resample(sample_ids=torch.tensor([True, False])), ValueError,
     "sample_ids must be integers"),
    # unclear before
    ("device 'bogus'", lambda: resample(device="bogus"), ValueError, "device 'bogus' is not a device"),
    ("device 3.5", lambda: resample(device=3.5), ValueError, "device must be a torch.device"),
    ("ViewPolicy('abc')", lambda: ViewPolicy("abc"), ValueError, "ViewPolicy.rules must be a dict"),
    ("decode(tensor)", lambda: TinyGenerator().decode(torch.zeros(2, 8)), ValueError, "latents must be a dict"),
    ("sigma='abc'", lambda: Perturb("abc"), ValueError, "Perturb.sigma must be a finite number"),
    ("seed=-1", lambda: resample(seed=-1), ValueError, "seed must be in"),
    ("batch_size=2.0", lambda: resample(batch_size=2.0), ValueError, "batch_size must be an int"),
    ("sample_ids of strings", lambda: resample(sample_ids=["a", "b"]), ValueError, "sample_ids must be"),
    ("num_views=0 (pipe)", lambda: pipe(num_views=0), ValueError, "num_views"),
    ("steps=0 (pipe)", lambda: pipe(steps=0), ValueError, "steps"),
    ("set_epoch(-1)", lambda: pipe(steps=2).set_epoch(-1), ValueError, "epoch"),
    ("with_index='yes'", lambda: GeneratedViews(TinyGenerator(), POLICY, 4, with_index="yes"), ValueError,
     "with_index"),
]


@pytest.mark.parametrize("label, call, error, match", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_naming_it(label: str, call, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_named() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        resample(device="cuda")


def test_numpy_integers_are_integers() -> None:
    got = resample(seed=np.int64(3), step=np.uint32(1), batch_size=np.int32(2))
    want = resample(seed=3, step=1)
    assert all(torch.equal(got[k], want[k]) for k in got)
    assert LatentGroup("x", (np.int64(2), 3)).shape == (2, 3)
    ds = dataset()
    assert torch.equal(ds[np.int64(2)][0][0], ds[2][0][0])
    assert pipe(seed=np.int64(4), batch_size=np.int16(4)).seed == 4


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width × height`` (a decompression bomb's first bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))


def test_an_image_folder_refuses_huge_and_broken_files_naming_them(tmp_path: Path) -> None:
    from mlvgm_data.data import FolderImages

    _png_header_only(tmp_path / "bomb.png", 8000, 8000)  # above our cap, below PIL's own
    with pytest.raises(ValueError, match="bomb.png is 8000x8000 pixels"):
        FolderImages(tmp_path)[0]
    _png_header_only(tmp_path / "bomb.png", 30000, 30000)  # PIL refuses it while opening
    with pytest.raises(ValueError, match="cannot read image .*bomb.png: .*decompression bomb"):
        FolderImages(tmp_path)[0]
    (tmp_path / "bomb.png").unlink()
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(ValueError, match="cannot read image .*broken.jpg"):
        FolderImages(tmp_path)[0]


def _config_file(tmp_path: Path, family: str, config: object) -> Path:
    import json

    path = tmp_path / "gen.json"
    path.write_text(json.dumps({"format": "mlvgm-data/1", "family": family, "config": config}))
    return path


@pytest.mark.parametrize("family, config, match", [
    ("hvae", {"resolution": "32"}, "'resolution' must be a power of two"),
    ("hvae", {"groups": [["z1", 32]]}, "'groups' must be a list of"),
    ("hvae", {"temperature": float("nan")}, "'temperature' must be a finite number"),
    ("hvae", {"sigma": float("inf")}, "'sigma' must be a finite number"),
    ("hvae", {"channels": [48, 32, 1048576]}, "'channels' must be a non-empty list of ints in \\[1, 1024\\]"),
    ("hvae", {"channels": [1024, 1024, 1024], "blocks": [16, 16, 16], "point_blocks": [16, 16, 16]},
     "more than the 200,000,000"),
    ("hvae", [1, 2], "'config' must be an object"),
    ("stylegan", {"truncation_psi": float("nan")}, "truncation_psi must be a number in"),
    ("stylegan", {"no_such_key": 1}, "unknown stylegan config keys"),
    ("nope", {}, "unknown generator family 'nope'"),
])
def test_generator_configs_are_checked_before_anything_is_built(tmp_path: Path, family: str, config: object,
                                                                 match: str) -> None:
    from mlvgm_data import load_generator

    with pytest.raises(ValueError, match=match):
        load_generator(_config_file(tmp_path, family, config))


def test_a_deeply_nested_config_is_refused(tmp_path: Path) -> None:
    from mlvgm_data import load_generator

    (tmp_path / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        load_generator(tmp_path / "deep.json")


BOMB_SCRIPT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))
from mlvgm_data import load_generator
from mlvgm_data.data import FolderImages
for call in (lambda: load_generator(sys.argv[1]), lambda: FolderImages(sys.argv[2])[0]):
    try:
        call()
    except ValueError as e:
        print("refused:", str(e)[:160])
    else:
        print("accepted")
"""


def test_resource_bombs_are_refused_under_a_memory_limit(tmp_path: Path) -> None:
    # The 4.8 GB config and the 30000² PNG are refused before allocating: under a 2.5 GB address
    # space on top of what torch's import takes, a regression dies with MemoryError instead.
    import subprocess
    import sys

    config = _config_file(tmp_path, "hvae", {"channels": [48, 32, 1048576]})
    folder = tmp_path / "png"
    folder.mkdir()
    _png_header_only(folder / "huge.png", 30_000, 30_000)
    probe = subprocess.run([sys.executable, "-c", "import resource, torch, mlvgm_data; "
                            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
                           capture_output=True, text=True, check=True)
    limit = int(probe.stdout) * 1024 * 4 + 2_500_000_000  # import's footprint ×4 (virtual > resident) + 2.5 GB
    run = subprocess.run([sys.executable, "-c", BOMB_SCRIPT.replace("CAP", str(limit)), str(config), str(folder)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("refused:") for line in lines), run.stdout
    assert "channels" in lines[0] and "huge.png" in lines[1]
