"""mlvgm_data.lightning under a real Lightning Trainer: DDP with 2 CPU ranks × 2 workers (every anchor
once; a run stopped mid-epoch resumes byte-identically), the loader's own state in plain loops, the
bad inputs, and the Lightning and Fabric examples at a tiny size."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import lightning_ddp_run as run  # the DDP script's constants and digests
import pytest
import torch
from helpers import PointwiseGenerator
from lightning.fabric.plugins.precision import DoublePrecision
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch.utils.data._utils.collate import default_convert

from mlvgm_data import Resample, ViewBatch, ViewPairPipe, ViewPolicy
from mlvgm_data.lightning import ViewPairDataModule, ViewPairLoader

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
POLICY = ViewPolicy({"map": Resample()})


# --- DDP: 2 ranks × 2 workers × 2 epochs, stopped and resumed ------------------------------------

@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """The four fits of tests/lightning_ddp_run.py: {name: [rank 0's record, rank 1's]}."""
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])}
    proc = subprocess.run([sys.executable, str(HERE / "lightning_ddp_run.py"), str(out)], env=env, timeout=500,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {name: [json.loads((out / f"{name}.rank{r}.json").read_text()) for r in (0, 1)]
            for name in ("stopped", "full", "resumed_mid", "resumed_end")}


def expected_anchors(rank: int) -> list[list[str]]:
    """Rank ``rank``'s anchors per step from a bare pipe: what the DataModule must hand that rank."""
    pipe = ViewPairPipe(PointwiseGenerator(), POLICY, run.BATCH, seed=run.SEED, steps=run.STEPS_PER_EPOCH,
                        rank=rank, world_size=2, return_latents=True, prefetch=0)
    return [run.anchor_digests(batch.latents) for _ in range(run.EPOCHS) for batch in pipe]


def test_ddp_every_anchor_once_across_ranks_and_workers(ddp: dict[str, list[dict]]) -> None:
    seen = []
    for rank, record in enumerate(ddp["full"]):
        steps = record["steps"]
        assert [(s["epoch"], s["batch_idx"]) for s in steps] == [(e, b) for e in range(run.EPOCHS)
                                                                 for b in range(run.STEPS_PER_EPOCH)]
        assert {s["type"] for s in steps} == {"ViewBatch"}  # the pipe's batches, unchanged
        assert [s["anchors"] for s in steps] == expected_anchors(rank)  # step by step, no loss
        seen += [a for s in steps for a in s["anchors"]]
    assert len(seen) == 2 * run.EPOCHS * run.STEPS_PER_EPOCH * run.BATCH == len(set(seen))  # no duplicate


def test_ddp_resume_from_a_mid_epoch_checkpoint_is_byte_identical(ddp: dict[str, list[dict]]) -> None:
    for rank in (0, 1):
        full, stopped, resumed = (ddp[name][rank] for name in ("full", "stopped", "resumed_mid"))
        assert stopped["global_step"] == run.STOP
        batches = [s["batch"] for s in stopped["steps"] + resumed["steps"]]
        assert batches == [s["batch"] for s in full["steps"]]  # no repeat, no gap, same bytes
        assert [(s["epoch"], s["batch_idx"]) for s in resumed["steps"]][0] == (0, run.STOP)
        assert resumed["weights"] == full["weights"]  # and the training continued exactly


def test_ddp_resume_from_an_epoch_end_checkpoint_takes_the_next_epoch(ddp: dict[str, list[dict]]) -> None:
    """max_steps stops mid-epoch but the default checkpoint is written in on_train_epoch_end, and
    Lightning resumes at the next epoch: that epoch's data, never the first's again."""
    for rank in (0, 1):
        full, stopped, resumed = (ddp[name][rank] for name in ("full", "stopped", "resumed_end"))
        assert [(s["epoch"], s["batch_idx"]) for s in resumed["steps"]] == [(1, b) for b in range(run.STEPS_PER_EPOCH)]
        assert [s["batch"] for s in resumed["steps"]] == [s["batch"] for s in full["steps"][run.STEPS_PER_EPOCH:]]
    anchors = [a for name in ("stopped", "resumed_end") for r in (0, 1) for s in ddp[name][r]["steps"]
               for a in s["anchors"]]
    assert len(anchors) == len(set(anchors))


# --- the loader in plain loops ------------------------------------------------------------------

def make_pipe(**kw: object) -> ViewPairPipe:
    options = {"seed": 3, "steps": 3, "return_latents": True, "prefetch": 0, **kw}
    return ViewPairPipe(PointwiseGenerator(), POLICY, 2, **options)


def stream(epochs: int) -> list[torch.Tensor]:
    """The latents of ``epochs`` epochs of one bare pipe, uninterrupted."""
    pipe = make_pipe()
    return latents_of([batch for _ in range(epochs) for batch in pipe])


def latents_of(batches: list[ViewBatch]) -> list[torch.Tensor]:
    return [b.latents["top"] for b in batches]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_state_resumes_a_plain_loop_mid_epoch(workers: int) -> None:
    reference = stream(3)  # 3 epochs of 3 steps
    loader = ViewPairLoader(make_pipe(), num_workers=workers)
    taken = []
    for epoch in range(2):
        for i, batch in enumerate(loader):
            assert isinstance(batch, ViewBatch)
            taken.append(batch)
            if epoch == 1 and i == 0:
                break  # stopped after the first batch of the second epoch
    state = loader.state_dict()
    assert state["step"] == 4
    resumed = ViewPairLoader(make_pipe(), num_workers=workers)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state
    rest = [b for _ in range(2) for b in resumed]  # the rest of epoch 1, then epoch 2
    assert same(latents_of(taken + rest), reference)
    # the pipe's part alone continues a bare pipe at the same step
    bare = make_pipe()
    bare.load_state_dict(state["pipe"])
    assert same(latents_of(list(bare)), reference[4:6])


def test_loader_follows_its_clock() -> None:
    """With a clock (the DataModule's Trainer counters), an iteration starts at (epoch, batch)."""
    reference = stream(4)
    position = [(2, 1)]
    loader = ViewPairLoader(make_pipe(), clock=lambda: position[0])
    assert same(latents_of(list(loader)), reference[7:9])
    position[0] = None  # no Trainer fitting: continue after the last batch, into the next epoch
    assert same(latents_of(list(loader)), reference[9:12])
    assert loader.state_dict()["step"] == 12


def test_a_rank_loads_rank_0s_state() -> None:
    """A Lightning or Fabric checkpoint holds rank 0's loader state; every rank is at its step."""
    rank0 = ViewPairLoader(make_pipe(rank=0, world_size=2))
    next(iter(rank0))
    rank1 = ViewPairLoader(make_pipe(rank=1, world_size=2))
    rank1.load_state_dict(rank0.state_dict())
    want = [b for b in make_pipe(rank=1, world_size=2)][1:]
    assert same(latents_of(list(rank1)), latents_of(want))


def test_loader_refuses_a_state_of_another_stream() -> None:
    state = ViewPairLoader(make_pipe()).state_dict()
    with pytest.raises(ValueError, match="seed"):
        ViewPairLoader(make_pipe(seed=4)).load_state_dict(state)
    with pytest.raises(ValueError, match="world_size"):
        ViewPairLoader(make_pipe(rank=0, world_size=2)).load_state_dict(state)
    two_ranks = ViewPairLoader(make_pipe(rank=0, world_size=2)).state_dict()
    single = ViewPairLoader(make_pipe())  # no process group: its world size is known when it iterates
    single.load_state_dict(two_ranks)
    with pytest.raises(ValueError, match="world_size=2, but this run has world_size=1"):
        next(iter(single))
    with pytest.raises(ValueError, match="format"):
        ViewPairLoader(make_pipe()).load_state_dict(state["pipe"])  # the pipe's state, not the loader's
    with pytest.raises(ValueError, match="'pipe'"):
        ViewPairLoader(make_pipe()).load_state_dict({k: v for k, v in state.items() if k != "pipe"})
    with pytest.raises(ValueError, match="step"):
        ViewPairLoader(make_pipe()).load_state_dict({**state, "step": -1})


def test_bad_arguments_are_refused_at_the_call() -> None:
    gen = PointwiseGenerator()
    with pytest.raises(ValueError, match="steps_per_epoch"):
        ViewPairDataModule(gen, POLICY, 2, 0)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        ViewPairDataModule(gen, POLICY, 2, 2.5)
    with pytest.raises(ValueError, match="num_workers"):
        ViewPairDataModule(gen, POLICY, 2, 3, num_workers=-1)
    with pytest.raises(ValueError, match="batch_size"):
        ViewPairDataModule(gen, POLICY, 0, 3)
    with pytest.raises(ValueError, match="steps"):
        ViewPairDataModule(gen, POLICY, 2, 3, steps=5)
    with pytest.raises(TypeError, match="pipe"):
        ViewPairLoader([1, 2, 3])
    with pytest.raises(ValueError, match="pipe must have steps"):
        ViewPairLoader(make_pipe(steps=None))


def test_without_lightning_the_import_says_which_extra() -> None:
    code = "import sys; sys.modules['lightning'] = None; import mlvgm_data.lightning"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "pip install 'mlvgm-data[lightning]'" in proc.stderr


def test_datamodule_builds_one_loader_per_process() -> None:
    data = ViewPairDataModule(PointwiseGenerator(), POLICY, 2, 3, augment=None, num_workers=0, prefetch=0)
    loader = data.train_dataloader()
    assert data.train_dataloader() is loader and loader.pipe.steps == 3 and len(loader) == 3
    (x0, x1), target = next(iter(loader))
    assert x0.shape == x1.shape == (2, 3, 8, 8) and target.shape == (2,)
    data._loader_pid = -1  # as in a forked or spawned rank: a pipe of its own, not the parent's copy
    assert data.train_dataloader() is not loader


def test_view_batch_stays_whole_through_lightning_and_torch() -> None:
    """Lightning and Fabric move (and cast, for "64-true" precision) batches field by field, as
    torch's default_convert and pin_memory do: a ViewBatch comes out a ViewBatch."""
    batch = next(iter(make_pipe()))
    moved = move_data_to_device(batch, torch.device("cpu"))
    assert isinstance(moved, ViewBatch) and moved.latents.keys() == batch.latents.keys()
    assert torch.equal(moved.views[1], batch.views[1]) and torch.equal(moved.target, batch.target)
    cast = DoublePrecision().convert_input(batch)
    assert isinstance(cast, ViewBatch) and cast.views[0].dtype == torch.float64 and cast.target.dtype == torch.int64
    plain = ViewBatch(batch.views, batch.target)
    assert isinstance(default_convert(plain), ViewBatch) and plain._asdict().keys() == {"views", "target"}


# --- the examples -------------------------------------------------------------------------------

def run_example(script: str, args: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(sys, "argv", [script, *args])
    runpy.run_path(str(ROOT / "examples" / script), run_name="__main__")
    return capsys.readouterr().out


def test_lightning_example_trains_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = ["--batch-size", "4", "--steps-per-epoch", "2", "--width", "4", "--out", str(tmp_path)]
    out = run_example("lightning_simclr.py", [*tiny, "--epochs", "1"], capsys, monkeypatch)
    assert "trained 2 steps, 1 epochs" in out
    out = run_example("lightning_simclr.py", [*tiny, "--epochs", "2", "--resume",
                                              str(tmp_path / "checkpoints" / "last.ckpt")], capsys, monkeypatch)
    assert "trained 4 steps, 2 epochs" in out


def test_fabric_example_resumes_mid_epoch_exactly(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = ["--batch-size", "4", "--steps-per-epoch", "3", "--epochs", "2", "--width", "4", "--out", str(tmp_path)]
    full = run_example("fabric_simclr.py", tiny, capsys, monkeypatch).splitlines()
    assert len(full) == 6 and full[3].startswith("step 4 epoch 1 ")
    stopped = run_example("fabric_simclr.py", [*tiny, "--stop-after", "2"], capsys, monkeypatch).splitlines()
    resumed = run_example("fabric_simclr.py", [*tiny, "--resume", str(tmp_path / "checkpoint.pt")], capsys,
                          monkeypatch).splitlines()
    assert stopped + resumed == full  # the losses to 10 decimals: the same batches, the same weights
