"""The trainers compute exactly what they computed when the shipped weights were made: a tiny run
of each (with a resume in the middle) gives pinned digests of every tensor it saves (the final
model, the checkpoints at steps 2 and 4), of its summary (wall times and paths left out), its
sample grids and its log. A refactor of the trainers must keep them; a change that means to
change the numbers updates them in the same commit, and says so.

Training arithmetic depends on the torch build and the CPU kernels it picks, so the digests are
pinned per (torch version, CPU capability); on another platform the test is skipped, and the
skip message prints that platform's digests to pin.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

from mlvgm_data.apps.train import loop
from mlvgm_data.apps.train.registry import train

COMMON = dict(threads=1, steps=4, checkpoint_every=2, seed=3, batch_size=4)
HVAE = dict(channels="8,8,8", blocks="1,0,0", point_blocks="0,0,1", enc_channels="4,4,8,8", groups="z1:4:1,z2:2:4",
            eval_images=8, kl_warmup=2, top_only_steps=1, vmi_weight=0.5, vmi_groups="z2")
RUNS: dict[str, dict[str, Any]] = {
    "hvae-shapes": dict(HVAE, model="hvae", data="shapes"),
    "hvae-fashion": dict(HVAE, model="hvae", data="fashion-mnist", probe=True),
    "stylegan-shapes": dict(model="stylegan", data="shapes", z_dim=8, w_dim=8, channel_base=64, channel_max=8,
                            layer_groups=2, r1_every=2, ema_images=8),
    "mlvae-shapes": dict(model="mlvae", data="shapes", content_dim=4, style_dim=4, width=8, group_size=2,
                         kl_warmup=2),
}
WALL_TIMES = {"seconds", "train_seconds"}

PLATFORM = f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}"
GOLDEN: dict[str, dict[str, dict[str, str]]] = {
    # Recorded with the trainers as they were before the shared skeleton (apps/train/loop.py).
    "torch 2.13.0+cpu, AVX2": {
        "hvae-fashion": {
            "full/checkpoint.pt": "02c3a23f6d496e82", "full/log.jsonl": "d37e6da4f5366711",
            "full/model.json": "1b478b5f0cda0fbe", "full/model.pt": "37405ff26d359111",
            "full/reconstructions.png": "26a5cc5fc5d8e15b", "full/samples.png": "b419c6da3add4913",
            "full/summary.json": "1c63dfb87f7f92b6", "resumed/checkpoint.pt": "02c3a23f6d496e82",
            "resumed/log.jsonl": "d37e6da4f5366711", "resumed/model.json": "1b478b5f0cda0fbe",
            "resumed/model.pt": "37405ff26d359111", "resumed/reconstructions.png": "26a5cc5fc5d8e15b",
            "resumed/samples.png": "b419c6da3add4913", "resumed/summary.json": "d47243d28ded8ec9",
            "step2.pt": "7b339e00caa1dbbf",
        },
        "hvae-shapes": {
            "full/checkpoint.pt": "bb90b8c274f2d317", "full/log.jsonl": "868dd89333835aa6",
            "full/model.json": "cbb2da92a81d7190", "full/model.pt": "76792421c4481901",
            "full/reconstructions.png": "ea682d33c6e9c83e", "full/samples.png": "bfb4d4deb0be3f22",
            "full/summary.json": "e1080238ab7cda49", "resumed/checkpoint.pt": "bb90b8c274f2d317",
            "resumed/log.jsonl": "868dd89333835aa6", "resumed/model.json": "cbb2da92a81d7190",
            "resumed/model.pt": "76792421c4481901", "resumed/reconstructions.png": "ea682d33c6e9c83e",
            "resumed/samples.png": "bfb4d4deb0be3f22", "resumed/summary.json": "414ac2b47847f3b5",
            "step2.pt": "9676df55c23b0205",
        },
        "mlvae-shapes": {
            "full/checkpoint.pt": "f61cf7913b891ab1", "full/model.json": "919b755f0585dea3",
            "full/model.pt": "0861fe365df74a08", "full/samples.png": "b41d30092b29e190",
            "full/summary.json": "15be6893cd3cae66", "resumed/checkpoint.pt": "f61cf7913b891ab1",
            "resumed/model.json": "d9e487a56665005c", "resumed/model.pt": "0861fe365df74a08",
            "resumed/samples.png": "b41d30092b29e190", "resumed/summary.json": "2cb6fe50b162ca9e",
            "step2.pt": "3ab87acd2c0fb911",
        },
        "stylegan-shapes": {
            "full/checkpoint.pt": "e7be3ec52fd81afb", "full/model.json": "7620270a40bcc970",
            "full/model.pt": "5e74fedaf574a404", "full/samples.png": "132712c006584db9",
            "full/summary.json": "e041c985471ff5cb", "resumed/checkpoint.pt": "e7be3ec52fd81afb",
            "resumed/model.json": "2f9e079889f56a04", "resumed/model.pt": "5e74fedaf574a404",
            "resumed/samples.png": "132712c006584db9", "resumed/summary.json": "660e1254c55b9c50",
            "step2.pt": "c163d333194c42ab",
        },
    },
}


def _flatten(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for k in sorted(obj, key=str):
            yield from _flatten(obj[k], f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _flatten(v, f"{prefix}/{i}")
    else:
        yield prefix, obj


def _masked(obj: Any, root: str) -> Any:
    if isinstance(obj, dict):
        return {k: _masked(v, root) for k, v in obj.items() if k not in WALL_TIMES and k != "weights_sha256"}
    if isinstance(obj, list):
        return [_masked(v, root) for v in obj]
    return obj.replace(root, "TMP") if isinstance(obj, str) else obj


def file_digest(path: Path, root: str) -> str:
    """The sha256 (16 hex digits) of what a run wrote to ``path``: every tensor and value of a
    ``.pt`` (dtype, shape and bytes), a ``.json`` without wall times, paths under ``root`` or the
    weights file's own checksum (the zip's bytes are not the numbers), other files' bytes."""
    h = hashlib.sha256()
    if path.suffix == ".pt":
        for key, v in _flatten(torch.load(path, weights_only=True)):
            if key.rsplit("/", 1)[-1] in WALL_TIMES:
                continue
            h.update(key.encode())
            if isinstance(v, torch.Tensor):
                h.update(f"{v.dtype}{tuple(v.shape)}".encode())
                h.update(v.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
            else:
                h.update(repr(v).encode())
    elif path.suffix == ".json":
        h.update(json.dumps(_masked(json.loads(path.read_text()), root), sort_keys=True).encode())
    else:
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def run_digests(options: dict[str, Any], tmp: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Trains 4 steps (checkpoints at 2 and 4), then resumes a copy of the step-2 checkpoint to
    step 4: the digest of each file of both runs and of the step-2 checkpoint."""
    save = loop.save_checkpoint

    def keep_step_2(path: Path, step: int, *args: Any, **kw: Any) -> Path:
        out = save(path, step, *args, **kw)
        if step == 2:
            shutil.copy(out, tmp / "step2.pt")
        return out

    options = dict(options)
    name = options.pop("model")
    with monkeypatch.context() as m:
        m.setattr(loop, "save_checkpoint", keep_step_2)
        train(name, out=str(tmp / "full"), **COMMON, **options)
    (tmp / "resumed").mkdir()
    shutil.copy(tmp / "step2.pt", tmp / "resumed" / "checkpoint.pt")
    train(name, out=str(tmp / "resumed"), resume=True, **COMMON, **options)
    found = {"step2.pt": file_digest(tmp / "step2.pt", str(tmp))}
    for run in ("full", "resumed"):
        found |= {f"{run}/{p.name}": file_digest(p, str(tmp)) for p in sorted((tmp / run).iterdir())}
    return found


@pytest.mark.slow  # ~40 s: each run ends with the shipped classifiers' scores on 2,000 samples
@pytest.mark.parametrize("run", sorted(RUNS))
def test_a_tiny_run_saves_the_pinned_numbers(run: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             request: pytest.FixtureRequest) -> None:
    if RUNS[run]["data"] == "fashion-mnist":
        request.getfixturevalue("fashion_files")
    found = run_digests(RUNS[run], tmp_path, monkeypatch)
    if PLATFORM not in GOLDEN:
        pytest.skip(f"no digests pinned for {PLATFORM}; {run} gives {json.dumps(found, indent=1)}")
    want = GOLDEN[PLATFORM][run]
    changed = {k: (want.get(k), v) for k, v in found.items() if want.get(k) != v}
    assert found == want, f"{run} changed (pinned, now): {changed}"


def test_the_digest_sees_a_changed_tensor_and_ignores_wall_times(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    torch.save({"extra": {"seconds": 1.0}, "w": torch.zeros(3)}, path)
    before = file_digest(path, str(tmp_path))
    torch.save({"extra": {"seconds": 2.0}, "w": torch.zeros(3)}, path)
    assert file_digest(path, str(tmp_path)) == before
    torch.save({"extra": {"seconds": 2.0}, "w": torch.tensor([0.0, 0.0, -0.0])}, path)
    assert file_digest(path, str(tmp_path)) != before
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"train_seconds": 3.0, "elbo": -1.5, "generator": [f"{tmp_path}/model.pt"]}))
    before = file_digest(summary, str(tmp_path))
    summary.write_text(json.dumps({"train_seconds": 9.0, "elbo": -1.5, "generator": [f"{tmp_path}/model.pt"]}))
    assert file_digest(summary, str(tmp_path)) == before
    summary.write_text(json.dumps({"train_seconds": 9.0, "elbo": -1.25, "generator": [f"{tmp_path}/model.pt"]}))
    assert file_digest(summary, str(tmp_path)) != before
