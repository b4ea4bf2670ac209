"""``ViewPairPipe``: positive view batches generated ahead of the training step.

Per step the pipe draws anchors and views for every latent group with one fused op, runs the
generator once on all ``num_views · batch_size`` latents, augments the views in one batched pass
and hands ``ViewBatch((x0, x1, …), target)`` to the training loop (:mod:`.step`). A producer runs
ahead by ``prefetch`` batches: a background thread on the CPU, a dedicated CUDA stream on the GPU
(:mod:`.producers`).

Randomness is counter-based: step ``s`` of rank ``r`` uses counter step ``s`` and sample ids
``r·B … r·B + B − 1``, so the global batch of a step is the same however it is split across
ranks, DataLoader workers split steps (worker w of W takes every W-th step) without changing
them, and resuming needs only the step numbers. Which steps come next is kept in shared memory
(:mod:`.progress`), so every copy of the pipe — DataLoader workers, persistent or not — continues
the same sequence: epochs never repeat and no step is lost.

The pipe is an ``IterableDataset`` with its own ``state_dict``/``load_state_dict`` (torchdata's
``Stateful`` protocol): ``StatefulDataLoader`` saves and restores it directly (O(1) resume). An
``IterDataPipe`` would be wrapped by ``DataLoader`` in a serialisation wrapper that hides the
state, and ``StatefulDataLoader`` would replay every consumed batch instead.
"""

from __future__ import annotations

import itertools
import os
import sys
import weakref
from typing import Any, Iterator, Mapping

import torch
from torch.utils.data import IterableDataset, get_worker_info

from ._checks import U32, check_int
from .anchors import check_prior_fraction, check_real_anchors
from .generators.base import (
    check_eval_mode,
    check_generator,
    generator_device,
    set_eval_mode,
)
from .generators.compiled import CompiledDecode
from .generators.fingerprint import fingerprint
from .pipe_state import PipeConfig, PipeState, RankResolver
from .policy import ViewPolicy
from .producers import CudaProducer, SyncProducer, ThreadProducer
from .progress import Plan, SharedProgress
from .step import Augment, RealAnchors, StepWork, ViewBatch


def resolve_augment(augment: Augment | str | None, generator: torch.nn.Module, batch_size: int,
                    num_views: int, seed: int, device: torch.device) -> Augment | None:
    """``None``, a callable ``aug(views, seed, step, stream, sample_offset)``, a preset name
    (``"simclr"``, ``"byol"``, ``"crop_flip"``) at the generator's resolution, or ``"dali"``
    (the SimCLR preset through a DALI pipeline)."""
    if augment is None or callable(augment):
        return augment
    if not isinstance(augment, str):
        raise ValueError(f"augment must be None, a callable or a preset name, got {type(augment).__name__}")
    size = image_size(generator)
    if augment == "dali" or augment.startswith("dali:"):
        from .augment.dali import DaliAugment

        preset_name = augment.partition(":")[2] or "simclr"
        return DaliAugment(preset_name, size, batch_size=batch_size, num_views=num_views, device=device.type, seed=seed)
    from .augment import preset

    return preset(augment, size)


def image_size(generator: torch.nn.Module) -> int:
    """The generator's image width (``image_shape[-1]``), for augmentation presets."""
    shape = getattr(generator, "image_shape", None)
    if shape is None:
        raise ValueError(
            f"{type(generator).__name__} has no image_shape; pass an augment object with an explicit size "
            "(e.g. mlvgm_data.augment.simclr(64)) instead of a preset name"
        )
    return int(shape[-1])


def _batched_again() -> bool:
    """Whether ``iter(pipe)`` is called by a DataLoader fetcher with automatic batching
    (``DataLoader(pipe)`` without ``batch_size=None``), which would collate the pipe's batches
    into batches of batches. The fetcher keeps its ``auto_collation`` flag on itself before it
    calls ``iter(dataset)`` (torch's and torchdata's StatefulDataLoader's share that fetcher)."""
    caller = sys._getframe(2)  # _batched_again ← ViewPairPipe.__iter__ ← the caller of iter()
    owner = caller.f_locals.get("self") if caller is not None else None
    return type(owner).__name__ == "_IterableDatasetFetcher" and bool(getattr(owner, "auto_collation", False))


class PipeIterator:
    """One iteration of a :class:`ViewPairPipe` in one process (or DataLoader worker): hands out
    the producer's batches and records each in the pipe's shared progress."""

    def __init__(self, producer: SyncProducer | ThreadProducer | CudaProducer, progress: SharedProgress,
                 plan: Plan) -> None:
        self._producer = producer
        self._progress = progress
        self._plan = plan
        self._delivered = plan.delivered
        self._closed: str | None = None

    def __iter__(self) -> "PipeIterator":
        return self

    def __next__(self) -> ViewBatch:
        if self._closed is not None:
            if self._closed == "superseded":
                raise RuntimeError("this iterator of the pipe was closed because a newer iter(pipe) started in "
                                   "this process (two iterators would hand out the same steps)")
            raise StopIteration
        try:
            batch = self._producer.get()
        except KeyboardInterrupt:  # reaches the caller at once: a stuck step is not waited for
            self.close(timeout=0.0)
            raise
        except BaseException:  # exhausted or failed: the producer has stopped already
            self.close()
            raise
        self._delivered += 1
        self._progress.record(self._plan.shard, self._delivered)
        return batch

    def close(self, reason: str = "closed", timeout: float | None = None) -> None:
        """Stops the producer, waiting at most ``timeout`` seconds for a step in progress (default:
        :attr:`~mlvgm_data.producers.ThreadProducer.JOIN_S`, one second)."""
        if self._closed is None:
            self._closed = reason
            self._producer.close(timeout)

    def __del__(self) -> None:
        # Never wait here: a wait inside garbage collection cannot be interrupted (Python ignores
        # exceptions raised in __del__, Ctrl-C included). The producer stops at its next step.
        if getattr(self, "_closed", "closed") is None:
            self.close(timeout=0.0)


class ViewPairPipe(IterableDataset):
    """An iterable data pipe of ``ViewBatch((x0, x1, …), target)`` generated from ``generator``.

    Args:
        generator: an MLVGM (``latent_spec``, ``decode``), e.g. ``load_generator("builtin:shapes")``;
            the pipe puts it in eval mode (with a warning if it was not) and refuses to iterate
            if it is switched back to train mode.
        policy: the ``ViewPolicy`` that turns anchors into views.
        batch_size: anchors per step on this rank.
        seed: the key of every random draw (latents, augmentation, classes).
        device: where to generate (default: the generator's device); CUDA uses the stream producer.
        augment: ``None``, a preset name (``"simclr"``, ``"byol"``, ``"crop_flip"``, ``"dali"``)
            or a callable ``aug(views[V,B,C,H,W], seed, step, stream, sample_offset)``.
        num_views: views per anchor (view 0 is the anchor if ``policy.include_anchor``).
        prefetch: batches made ahead of the consumer (0: synchronous, in the consumer's thread).
        rank, world_size: this process's share of each step's global batch; by default read from
            ``torch.distributed`` when iteration starts (so the pipe may be built before
            ``init_process_group``); rank r draws sample ids r·B … r·B + B − 1.
        steps: steps per epoch (``None``: endless). Each epoch continues the step counter, under
            DataLoader workers too, without calls; ``set_epoch(e)`` jumps to epoch e.
        return_latents: also return the latents of each batch.
        autocast: run the generator under ``torch.autocast`` with this dtype (e.g. bfloat16).
        stream: the Philox stream id; pipes with different streams share no numbers.
        compile: decode with ``torch.compile`` (:class:`~mlvgm_data.generators.compiled.CompiledDecode`):
            compiled on the first step in each process that iterates; images equal eager
            decoding's to float tolerance, not bit for bit. Off by default (measured gain 1.29×
            on ``builtin:shapes`` at 32² on a CPU, after about 40 s of compilation).

    ``close()`` (or ``with ViewPairPipe(...) as pipe:``) stops every open iterator in this process.
    """

    def __init__(self, generator: torch.nn.Module, policy: ViewPolicy, batch_size: int, seed: int = 0,
                 device: torch.device | str | None = None, augment: Augment | str | None = None, num_views: int = 2,
                 prefetch: int = 2, rank: int | None = None, world_size: int | None = None, steps: int | None = None,
                 return_latents: bool = False, autocast: torch.dtype | None = None, stream: int = 0,
                 compile: bool = False, anchors: Any = None, real_view: bool = False,
                 prior_fraction: float = 0.0) -> None:
        super().__init__()
        check_generator(generator, policy)
        set_eval_mode(generator, "ViewPairPipe")
        self.batch_size = check_int(batch_size, "batch_size", 1, U32)
        self.num_views = check_int(num_views, "num_views", 1, 256)
        self.prefetch = check_int(prefetch, "prefetch", 0, 65)
        self.seed = check_int(seed, "seed", 0, U32)
        self.stream = check_int(stream, "stream", 0, U32)
        self.steps = None if steps is None else check_int(steps, "steps", 1, U32)
        self._ranks = RankResolver(self.batch_size, rank, world_size)
        gen_device = generator_device(generator)
        self.device = gen_device if device is None else torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        if self.device != gen_device and any(True for _ in generator.parameters()):
            raise ValueError(f"the generator is on {gen_device} but the pipe's device is {self.device}; "
                             f"move it first: generator.to({str(self.device)!r})")
        if autocast is not None and autocast not in (torch.bfloat16, torch.float16):
            raise ValueError(f"autocast must be torch.bfloat16, torch.float16 or None, got {autocast!r}")
        self.generator = generator
        self.policy = policy
        self.augment = resolve_augment(augment, generator, self.batch_size, self.num_views, self.seed, self.device)
        self.return_latents = return_latents
        self.autocast = autocast
        if not isinstance(compile, bool):
            raise TypeError(f"compile must be True or False, got {compile!r}")
        self.compile = compile
        self.anchors, self.real_view, self.prior_fraction, self._anchor_source = check_real_anchors(
            generator, policy, anchors, real_view, prior_fraction)
        self._prior_per_rank = check_prior_fraction(self.prior_fraction, self.batch_size)[1]
        self._compiled: CompiledDecode | None = None  # built lazily in the process that iterates
        self._progress = SharedProgress()
        self._restored: PipeState | None = None  # a loaded state, applied when this process iterates
        self._restored_by: int | None = None  # the DataLoader worker that loaded it (None: the main process)
        self._fingerprint: str | None = None
        self._iterators: weakref.WeakSet[PipeIterator] = weakref.WeakSet()
        self._cuda_stream: Any = None
        self._iterations = 0  # iterations started in this process (tags a persistent worker's epochs)

    # --- rank ---------------------------------------------------------------------------------

    @property
    def rank(self) -> int:
        """This process's rank, resolved now (see ``rank`` in the class docs)."""
        return self._ranks.resolve().rank

    @property
    def world_size(self) -> int:
        """The world size, resolved now."""
        return self._ranks.resolve().world_size

    # --- iteration ----------------------------------------------------------------------------

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError("an endless ViewPairPipe (steps=None) has no length")
        return self.steps

    def work(self) -> StepWork:
        """The per-step computation of this rank (also what the benchmarks time without a producer)."""
        rank, world = self._ranks.resolve()
        if self.compile and self._compiled is None:
            self._compiled = CompiledDecode(self.generator)
        real = None
        if self._anchor_source is not None:
            per_rank = self.batch_size - self._prior_per_rank
            self._anchor_source.check_batch(per_rank * world)
            real = RealAnchors(source=self._anchor_source, inverter=self.generator, per_rank=per_rank, rank=rank,
                               world_size=world, seed=self.seed, philox_stream=self.stream, real_view=self.real_view)
        return StepWork(generator=self._compiled if self.compile else self.generator, policy=self.policy,
                        batch_size=self.batch_size, num_views=self.num_views, seed=self.seed,
                        sample_offset=rank * self.batch_size, augment=self.augment, device=self.device,
                        return_latents=self.return_latents, autocast=self.autocast, philox_stream=self.stream,
                        real=real)

    def _producer(self, work: StepWork, steps: Iterator[int]) -> SyncProducer | ThreadProducer | CudaProducer:
        if self.device.type == "cuda":
            if self._cuda_stream is None:
                self._cuda_stream = torch.cuda.Stream(self.device)  # one dedicated stream per pipe
            return CudaProducer(work, steps, max(self.prefetch, 1) + 1, self._cuda_stream)
        if self.prefetch == 0:
            return SyncProducer(work, steps)
        return ThreadProducer(work, steps, self.prefetch)

    def __iter__(self) -> PipeIterator:
        if _batched_again():
            raise ValueError("DataLoader(pipe) batches the pipe's batches again (views would be [1, B, C, H, W]): "
                             "the pipe makes whole batches, so pass batch_size=None, e.g. "
                             "DataLoader(pipe, batch_size=None, num_workers=2)")
        check_eval_mode(self.generator, "ViewPairPipe")
        rw = self._ranks.resolve()
        restored, restored_by, self._restored, self._restored_by = self._restored, self._restored_by, None, None
        if restored is not None and restored.rank != rw:
            raise ValueError(f"the loaded state was saved by rank {restored.rank.rank} of {restored.rank.world_size}, "
                             f"but this pipe is rank {rw.rank} of {rw.world_size}")
        self._config()  # the generator's fingerprint, taken before this pipe's first decode
        info = get_worker_info()
        self._iterations += 1
        if info is None:
            shard, num_shards, tag = 0, 1, int.from_bytes(os.urandom(7), "big") + 1
        else:
            # Workers of one DataLoader iteration share its base seed (seed − id) and start in step.
            shard, num_shards = info.id, info.num_workers
            tag = hash((info.seed - info.id, self._iterations)) & ((1 << 62) - 1) | 1
        for old in list(self._iterators):
            old.close("superseded")
        # A worker takes up the shard position it loaded; the main process set its own in load_state_dict.
        own = restored is not None and info is not None and restored_by == info.id
        plan = self._progress.start(shard, num_shards, rw.rank, tag, self.steps, restored.position if own else None)
        first = plan.first_step()
        steps: Iterator[int] = (itertools.count(first, num_shards) if self.steps is None
                                else iter(range(first, plan.epoch_start + self.steps, num_shards)))
        it = PipeIterator(self._producer(self.work(), steps), self._progress, plan)
        self._iterators.add(it)
        return it

    def set_epoch(self, epoch: int) -> None:
        """Jumps to epoch ``epoch`` (steps ``epoch·steps …``), as ``DistributedSampler.set_epoch``;
        call it between epochs. Without calls every epoch continues after the previous one."""
        if self.steps is None:
            raise ValueError("set_epoch needs a finite pipe (steps=N)")
        start = check_int(epoch, "epoch", 0) * self.steps
        if start + self.steps > U32:
            raise ValueError(f"epoch {epoch} is past the counter's last step (2**32 steps)")
        self._progress.set(Plan(start, start, 1, 0, 0))

    def close(self) -> None:
        """Stops every open iterator of this pipe in this process (their producers included)."""
        for it in list(self._iterators):
            it.close()

    def __enter__(self) -> "ViewPairPipe":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- exact resume -------------------------------------------------------------------------

    def _config(self) -> PipeConfig:
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.generator)
        anchors = None if self._anchor_source is None else {**self._anchor_source.describe(),
                                                             "real_view": self.real_view,
                                                             "prior_fraction": self.prior_fraction}
        return PipeConfig(seed=self.seed, stream=self.stream, batch_size=self.batch_size, num_views=self.num_views,
                          steps=self.steps, policy=self.policy.to_dict(), generator=self._fingerprint, anchors=anchors)

    def _position(self, rank: int) -> Plan:
        """Where this process stands: its own shard in a DataLoader worker, else the newest plan."""
        info = get_worker_info()
        snapshot = self._progress.newest(rank)
        if info is not None:
            row = snapshot.rows[info.id]
            return row.plan(info.id) if row.generation else Plan(0, 0, 1, 0, 0)
        plan = snapshot.plan
        if plan is None:
            return Plan(0, 0, 1, 0, 0)
        if plan.num_shards == 1:
            return Plan(plan.epoch_start, plan.base, 1, 0, snapshot.delivered[0])
        shares = [Plan(plan.epoch_start, plan.base, plan.num_shards, w, 0).share(self.steps)
                  for w in range(plan.num_shards)]
        if self.steps is not None and all(d >= s for d, s in zip(snapshot.delivered, shares)):
            nxt = plan.epoch_start + self.steps
            return Plan(nxt, nxt, 1, 0, 0)
        raise RuntimeError(
            "the pipe is being iterated by DataLoader workers, which run ahead of what the training loop has "
            "received: its own state would count batches you never saw. Checkpoint the loader instead "
            "(torchdata's StatefulDataLoader(...).state_dict() saves each worker's pipe state), or call "
            "pipe.state_dict() at an epoch's end"
        )

    def state_dict(self) -> dict[str, Any]:
        """What the consumer has received (not what the producer ran ahead to), and what it depends
        on (seed, policy, generator, batch, views, rank, world size, steps): O(1)."""
        rw = self._ranks.resolve()
        return PipeState(self._config(), rw, self._position(rw.rank)).to_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continues exactly after the last batch counted in ``state`` (no replay). Refuses, with a
        ``ValueError`` naming the field, a state of another pipe or a malformed one."""
        loaded = PipeState.read(state, self._config())
        for key, mine in (("rank", self._ranks.rank), ("world_size", self._ranks.world_size)):
            if mine is not None and getattr(loaded.rank, key) != mine:
                raise ValueError(f"the state was saved by {key}={getattr(loaded.rank, key)}, but this pipe has "
                                 f"{key}={mine}")
        mine = self._ranks.settled()
        if mine is not None and mine != loaded.rank:
            raise ValueError(f"the state was saved by rank {loaded.rank.rank} of {loaded.rank.world_size}, but "
                             f"this pipe is rank {mine.rank} of {mine.world_size}")
        info = get_worker_info()
        if info is None:
            if loaded.position.num_shards != 1:
                raise ValueError(f"state['num_shards'] is {loaded.position.num_shards}: a DataLoader worker's state; "
                                 "load the loader's state (StatefulDataLoader.load_state_dict) rather than the pipe's")
            self._progress.set(loaded.position)
        # The rank is checked when iteration resolves it; a worker takes up its shard there too.
        self._restored, self._restored_by = loaded, None if info is None else info.id

    def seek(self, step: int) -> None:
        """Makes ``step`` the next step this process's iteration hands out (``set_epoch`` to the
        step's epoch, then the steps before it counted as received); call it between iterations."""
        step = check_int(step, "step", 0, U32)
        if self.steps is None:
            self._progress.set(Plan(0, step, 1, 0, 0))
            return
        start = step - step % self.steps
        self._progress.set(Plan(start, start, 1, 0, step - start))

    def __repr__(self) -> str:
        rank = self._ranks.describe()
        return (f"ViewPairPipe({type(self.generator).__name__}, batch_size={self.batch_size}, "
                f"num_views={self.num_views}, seed={self.seed}, device={self.device}, steps={self.steps}, "
                f"rank={rank})")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cuda_stream"] = None  # streams do not cross process boundaries
        state["_compiled"] = None  # compiled code does not pickle: a worker compiles its own
        state["_iterators"] = None  # iterators (and their threads) stay in their process
        # A spawned DataLoader worker has no process group: it takes the rank this process has now.
        state["_ranks"] = self._ranks.for_workers()
        state["_fingerprint"] = self._config().generator  # taken once, before any worker decodes
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._iterators = weakref.WeakSet()
