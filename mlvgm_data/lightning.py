"""Lightning: :class:`ViewPairDataModule`, whose position in the view stream survives Lightning's
checkpoints, under DDP too (``pip install "mlvgm-data[lightning]"``).

Batch ``b`` of Lightning's epoch ``e`` is the pipe's step ``e · steps_per_epoch + b`` on every rank
(rank ``r`` draws that step's sample ids ``r·B … r·B + B − 1``): the stream is a function of the
training loop's own counters, which Lightning restores from every checkpoint.

Why not the obvious ``StatefulDataLoader(pipe, batch_size=None, num_workers=2)``? Measured under
``Trainer(strategy="ddp")`` with 2 CPU ranks × 2 workers, 8 anchors per step, 6 steps per epoch,
2 epochs:

* Lightning writes a checkpoint from rank 0 only, and every rank loads that file: rank 1 was handed
  rank 0's loader state, which the pipe refuses ("saved by rank 0 of 2") — resuming from a
  mid-epoch checkpoint (``ModelCheckpoint(every_n_train_steps=4)``) crashed.
* Lightning loads a loader's state only when it restarts mid-epoch by its own accounting. A run
  stopped by ``max_steps=4`` writes its default checkpoint in ``on_train_epoch_end``, so Lightning
  resumes at the next epoch without loading the state: the loader started a fresh pipe at step 0,
  and the second epoch trained on steps 0–5 again (80 anchors per rank, 32 of them repeats, where
  the uninterrupted run had 96 distinct). A checkpoint written at an epoch's end takes that path too.
* Neither Lightning's fetcher nor the workers running ahead lost a batch: the fetcher prefetches
  only from loaders without a length (the pipe has one), and the loader's state counts the batches
  it yielded, not the ones its workers made. On one process the same wrapper resumed a mid-epoch
  checkpoint exactly (12 of 12 batches).

So :class:`ViewPairLoader` places the pipe when an iteration starts — at its first ``next``, after
Lightning has settled its counters for a resumed run — at Lightning's (epoch, batch), whatever
checkpoint it came from. Its own ``state_dict`` (the step of the next batch, and the pipe's state
there) is what lets Lightning treat it as resumable; it is checked against the pipe on loading (a
checkpoint of another seed, policy, generator, batch or world size is refused), and it is the
position in loops without a Trainer (Fabric, plain PyTorch). Under DDP every rank consumes the same
number of batches, so the rank-0 copy in the checkpoint holds every rank's step.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Mapping

import torch
from torch.utils.data import DataLoader

try:
    from lightning.pytorch import LightningDataModule
except ImportError as error:  # the optional extra
    raise ImportError("mlvgm_data.lightning needs Lightning: pip install 'mlvgm-data[lightning]'") from error

from ._checks import U32, check_int
from .pipe import ViewBatch, ViewPairPipe
from .policy import ViewPolicy

__all__ = ["ViewPairDataModule", "ViewPairLoader"]

LOADER_FORMAT = "mlvgm-data/lightning-loader/1"
Clock = Callable[[], "tuple[int, int] | None"]


def _same(batch: ViewBatch) -> ViewBatch:
    """The collate function: the pipe's batches are whole (DataLoader's default would turn a
    ``ViewBatch`` into lists)."""
    return batch


class ViewPairLoader(DataLoader):
    """A ``DataLoader`` of a finite :class:`~mlvgm_data.ViewPairPipe`'s batches (``ViewBatch``
    unchanged) whose ``state_dict`` is the pipe step of the next batch.

    Args:
        pipe: the pipe, with ``steps`` (its epoch length) set.
        num_workers: DataLoader worker processes (persistent), each making every ``num_workers``-th step.
        clock: ``() -> (epoch, batch) | None``, asked when an iteration starts: where the training
            loop stands (:class:`ViewPairDataModule` passes its Trainer's counters). ``None`` (or a
            clock returning ``None``): an iteration continues after the last batch handed out (or
            the loaded state), a finished epoch going on to the next, as the pipe itself does. A
            clock's position wins over a loaded state (under Lightning both are the same step).

    One iteration at a time: a new ``iter`` restarts from the position.
    """

    def __init__(self, pipe: ViewPairPipe, num_workers: int = 0, clock: Clock | None = None) -> None:
        if not isinstance(pipe, ViewPairPipe):
            raise TypeError(f"pipe must be a ViewPairPipe, got {type(pipe).__name__}")
        if pipe.steps is None:
            raise ValueError("pipe must have steps=N (the epoch length): an endless pipe has no epochs to resume in")
        workers = check_int(num_workers, "num_workers", 0)
        super().__init__(pipe, batch_size=None, num_workers=workers, collate_fn=_same,
                         persistent_workers=workers > 0)
        self.pipe = pipe
        self._clock = clock
        self._next_step = 0  # the pipe step of the next batch
        self._loaded: dict[str, Any] | None = None  # a loaded state, until an iteration starts from it
        self._start: dict[str, Any] | None = None  # the pipe's state where the current iteration started
        self._yielded = 0  # batches handed out since then

    def __iter__(self) -> Iterator[ViewBatch]:  # type: ignore[override]
        return _PlacedIterator(self)

    def _begin(self) -> Iterator[ViewBatch]:
        """Places the pipe at the next batch's step and starts the DataLoader's iteration."""
        steps = self.pipe.steps
        if self._loaded is not None and self._loaded["pipe"]["world_size"] != self.pipe.world_size:
            # checked here as the pipe does: a plain DDP script may load before init_process_group
            raise ValueError(f"the loaded state was saved with world_size={self._loaded['pipe']['world_size']}, "
                             f"but this run has world_size={self.pipe.world_size}")
        position = self._clock() if self._clock is not None else None
        if position is not None:  # the Trainer's counters, which agree with a state Lightning loaded
            epoch, batch = position
            step = check_int(epoch, "epoch", 0) * steps + check_int(batch, "batch", 0, steps + 1)
        else:
            step = self._loaded["step"] if self._loaded is not None else self._next_step
        self._loaded = None
        self._start, self._next_step, self._yielded = self._place(step), step, 0
        return super().__iter__()

    def _place(self, step: int) -> dict[str, Any]:
        """Makes ``step`` the pipe's next step; returns the pipe's state there."""
        self.pipe.seek(step)
        return self.pipe.state_dict()  # one shard: the next step is base + delivered

    def _advance(self) -> None:
        self._yielded += 1
        self._next_step += 1

    def state_dict(self) -> dict[str, Any]:
        """``{"format", "step", "pipe"}``: the pipe step of the next batch and the pipe's state there
        (``pipe.load_state_dict`` of it continues a bare pipe at that step)."""
        if self._loaded is not None:
            return dict(self._loaded)
        if self._start is None:  # nothing iterated yet: the pipe is not in use, placing it is harmless
            return {"format": LOADER_FORMAT, "step": self._next_step, "pipe": self._place(self._next_step)}
        pipe_state = dict(self._start)
        pipe_state["delivered"] += self._yielded
        return {"format": LOADER_FORMAT, "step": self._next_step, "pipe": pipe_state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continues after the batches ``state`` counts. The pipe checks that it is its own state
        (``ValueError`` naming the field otherwise); its rank is taken as this process's, since every
        DDP rank is at the same step and a checkpoint holds rank 0's copy."""
        if not isinstance(state, Mapping) or state.get("format") != LOADER_FORMAT:
            got = state.get("format") if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"not a ViewPairLoader state: format {got!r}, expected {LOADER_FORMAT!r}")
        if not isinstance(state.get("pipe"), Mapping):
            raise ValueError("the loader state has no 'pipe' state")
        step = check_int(state.get("step"), "state['step']", 0, U32)
        pipe_state = {**state["pipe"], "rank": self.pipe.rank}
        self.pipe.load_state_dict(pipe_state)
        self._loaded = {"format": LOADER_FORMAT, "step": step, "pipe": pipe_state}
        self._start = None


class _PlacedIterator(Iterator[ViewBatch]):
    """The loader's iteration, started at the first ``next``: Lightning calls ``iter`` before it has
    settled a resumed run's counters, and workers would start making steps at once."""

    def __init__(self, loader: ViewPairLoader) -> None:
        self._loader = loader
        self._batches: Iterator[ViewBatch] | None = None

    def __next__(self) -> ViewBatch:
        if self._batches is None:
            self._batches = self._loader._begin()
        batch = next(self._batches)
        self._loader._advance()
        return batch


class ViewPairDataModule(LightningDataModule):
    """A ``LightningDataModule`` of positive view pairs: ``train_dataloader()`` yields the pipe's
    ``ViewBatch((x0, x1), target)``, ``steps_per_epoch`` per epoch, on every rank its own share of
    each step (each anchor once over ranks and workers), and resumes exactly from any checkpoint.

    Args:
        generator, policy, batch_size, seed, augment: as :class:`~mlvgm_data.ViewPairPipe`
            (``batch_size`` anchors per step and rank).
        steps_per_epoch: batches per epoch (the pipe's ``steps``).
        num_workers: DataLoader workers per rank (for CPU generators).
        **pipe_options: the pipe's other arguments (``num_views``, ``prefetch``, ``return_latents``, …).
    """

    def __init__(self, generator: torch.nn.Module, policy: ViewPolicy, batch_size: int, steps_per_epoch: int, *,
                 seed: int = 0, augment: Any = "simclr", num_workers: int = 0, **pipe_options: Any) -> None:
        super().__init__()
        self.steps_per_epoch = check_int(steps_per_epoch, "steps_per_epoch", 1, U32)
        self.num_workers = check_int(num_workers, "num_workers", 0)
        if "steps" in pipe_options:
            raise ValueError("pipe_options must not set steps: steps_per_epoch is the pipe's steps")
        self._pipe_args = (generator, policy, batch_size)
        self._pipe_options = {"seed": seed, "augment": augment, "steps": self.steps_per_epoch, **pipe_options}
        ViewPairPipe(*self._pipe_args, **self._pipe_options)  # checks every argument now, at the call
        self._loader: ViewPairLoader | None = None
        self._loader_pid = 0

    def train_dataloader(self) -> ViewPairLoader:
        """This process's loader (the same object on every call in one process). Each process builds
        its own pipe: copies of a pipe share its progress, and the ranks of ``ddp_spawn`` (pickled)
        or ``ddp_notebook`` (forked) must not share one."""
        if self._loader is None or self._loader_pid != os.getpid():
            pipe = ViewPairPipe(*self._pipe_args, **self._pipe_options)
            self._loader = ViewPairLoader(pipe, self.num_workers, clock=self._loop_position)
            self._loader_pid = os.getpid()
        return self._loader

    def _loop_position(self) -> tuple[int, int] | None:
        """(epoch, batches completed in it) of the Trainer fitting with this module, else ``None``."""
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return None
        return trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.completed
