"""``ViewPairPipe``: positive view batches generated ahead of the training step.

Per step the pipe draws anchors and views for every latent group with one fused op, runs the
generator once on all ``num_views · batch_size`` latents, augments the views in one batched pass
and hands ``ViewBatch((x0, x1, …), target)`` to the training loop. A producer runs ahead by
``prefetch`` batches: a background thread on the CPU, a dedicated CUDA stream on the GPU. Both
cycle through the same ring of slots (:class:`SlotRing`).

Randomness is counter-based: step ``s`` of rank ``r`` uses counter step ``s`` and sample ids
``r·B … r·B + B − 1``, so the global batch of a step is the same however it is split across
ranks, DataLoader workers split steps (worker w takes steps w, w + W, …) without changing them,
and resuming needs only the step number.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import torch
from torch.utils.data import IterDataPipe, get_worker_info

from . import ops
from .generators.base import check_generator, checked_decode, draw_classes
from .views import ViewPolicy

Augment = Callable[..., torch.Tensor]
STATE_FORMAT = "mlvgm-data/pipe/1"


class ViewBatch(tuple):
    """``(views, target)`` — or ``(views, target, latents)`` with ``return_latents`` — so that
    ``(x0, x1), y = batch`` works as with an image dataset of view pairs.

    ``views`` is a tuple of ``[B, C, H, W]`` tensors, ``target`` ``[B]`` int64 (class labels of a
    class-conditional generator, else −1), ``latents`` the ``ops.resample`` dict
    ``{group: [V, B, *shape]}``.
    """

    def __new__(cls, views: tuple[torch.Tensor, ...], target: torch.Tensor,
                latents: dict[str, torch.Tensor] | None = None) -> "ViewBatch":
        return super().__new__(cls, (views, target) if latents is None else (views, target, latents))

    def __getnewargs__(self) -> tuple:
        return tuple(self)

    @property
    def views(self) -> tuple[torch.Tensor, ...]:
        return self[0]

    @property
    def target(self) -> torch.Tensor:
        return self[1]

    @property
    def latents(self) -> dict[str, torch.Tensor] | None:
        return self[2] if len(self) > 2 else None


def generator_device(generator: torch.nn.Module) -> torch.device:
    """The device of the generator's first parameter or buffer (CPU if it has none)."""
    for t in itertools.chain(generator.parameters(), generator.buffers()):
        return t.device
    return torch.device("cpu")


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
        from .dali import DaliAugment

        preset_name = augment.partition(":")[2] or "simclr"
        return DaliAugment(preset_name, size, batch_size=batch_size, num_views=num_views, device=device.type, seed=seed)
    from .augment import preset

    return preset(augment, size)


def image_size(generator: torch.nn.Module) -> int:
    shape = getattr(generator, "image_shape", None)
    if shape is None:
        raise ValueError(
            f"{type(generator).__name__} has no image_shape; pass an augment object with an explicit size "
            "(e.g. mlvgm_data.augment.simclr(64)) instead of a preset name"
        )
    return int(shape[-1])


class StepWork:
    """What one step computes, as a pure function of the step number: latents with the fused
    op, one generator forward over all views, the augmentation, the targets."""

    def __init__(self, generator: torch.nn.Module, policy: ViewPolicy, batch_size: int, num_views: int, seed: int,
                 sample_offset: int, augment: Augment | None, device: torch.device,
                 return_latents: bool = False, autocast: torch.dtype | None = None, stream: int = 0) -> None:
        self.generator = generator
        self.spec = generator.latent_spec
        self.policy = policy
        self.batch_size = batch_size
        self.num_views = num_views
        self.seed = seed
        self.sample_offset = sample_offset
        self.augment = augment
        self.device = device
        self.return_latents = return_latents
        self.autocast = autocast
        self.stream = stream

    def __call__(self, step: int, latent_out: torch.Tensor | None = None) -> ViewBatch:
        b, v = self.batch_size, self.num_views
        latents = ops.resample(self.spec, self.policy, b, v, self.seed, step, self.device, self.stream,
                               sample_offset=self.sample_offset, out=latent_out)
        flat = {name: z.reshape(v * b, *z.shape[2:]) for name, z in latents.items()}
        # One class per anchor, shared by its views (class-conditional generators only).
        classes = draw_classes(self.generator, b, self.seed, step, self.device, self.stream,
                               sample_offset=self.sample_offset)
        autocast = (torch.autocast(self.device.type, dtype=self.autocast) if self.autocast is not None
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            images = checked_decode(self.generator, flat, None if classes is None else classes.repeat(v))
        with torch.no_grad():
            # Leaves inference mode: the views must be ordinary tensors a training step can save.
            images = images.float().reshape(v, b, *images.shape[1:])
            out = (self.augment(images, self.seed, step, self.stream, self.sample_offset)
                   if self.augment is not None else images.clone())
        target = classes if classes is not None else torch.full((b,), -1, dtype=torch.int64, device=self.device)
        return ViewBatch(tuple(out.unbind(0)), target, latents if self.return_latents else None)


# --- the slot ring shared by both producers --------------------------------------------------

FREE, FILLING, READY, HELD = "free", "filling", "ready", "held"


class SlotRing:
    """Bookkeeping of K output slots cycled in step order: FREE → FILLING → READY → HELD → FREE.

    The producer fills slots in order; the consumer takes them in the same order and holds one
    until it asks for the next. No synchronisation here: the CPU producer guards the ring with a
    condition variable, the CUDA producer with events (device-side) in one host thread.
    """

    def __init__(self, num_slots: int) -> None:
        if num_slots < 1:
            raise ValueError(f"a ring needs at least one slot, got {num_slots}")
        self.states = [FREE] * num_slots
        self.filled = 0  # slots ever handed to the producer
        self.taken = 0  # slots ever handed to the consumer
        self.held: int | None = None

    def __len__(self) -> int:
        return len(self.states)

    def can_fill(self) -> bool:
        return self.states[self.filled % len(self)] == FREE

    def begin_fill(self) -> int:
        i = self.filled % len(self)
        if self.states[i] != FREE:
            raise RuntimeError(f"slot {i} is {self.states[i]}, not free")
        self.states[i] = FILLING
        self.filled += 1
        return i

    def end_fill(self, i: int) -> None:
        self._move(i, FILLING, READY)

    def has_ready(self) -> bool:
        return self.states[self.taken % len(self)] == READY

    def take(self) -> int:
        i = self.taken % len(self)
        self._move(i, READY, HELD)
        self.taken += 1
        self.held = i
        return i

    def release(self) -> int | None:
        """Frees the slot the consumer holds (if any); returns its index."""
        i, self.held = self.held, None
        if i is not None:
            self._move(i, HELD, FREE)
        return i

    def _move(self, i: int, old: str, new: str) -> None:
        if self.states[i] != old:
            raise RuntimeError(f"slot {i} is {self.states[i]}, expected {old}")
        self.states[i] = new


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class SyncProducer:
    """``prefetch=0``: each batch is made in the consumer's thread when it is asked for."""

    def __init__(self, work: Callable[[int], ViewBatch], steps: Iterator[int]) -> None:
        self._work, self._steps = work, steps

    def get(self) -> ViewBatch:
        return self._work(next(self._steps))

    def close(self) -> None:
        pass


class ThreadProducer:
    """A background thread that runs ``work(step)`` up to ``prefetch`` batches ahead.

    Errors raised by the work (including bad generator output) are re-raised in the consumer's
    ``get()`` with their original traceback. The thread holds no reference to the pipe or its
    iterator, so dropping the iterator (``break``, garbage collection) closes it.
    """

    POLL_S = 0.05  # lets a blocked wait notice close() and KeyboardInterrupt promptly

    def __init__(self, work: Callable[[int], ViewBatch], steps: Iterator[int], prefetch: int) -> None:
        self.ring = SlotRing(prefetch + 1)
        self._items: list[ViewBatch | None] = [None] * len(self.ring)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._end: _Failure | None | bool = False  # False: running; None: steps exhausted
        self._thread = threading.Thread(target=self._run, args=(work, steps), name="mlvgm-data-producer", daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[int], ViewBatch], steps: Iterator[int]) -> None:
        end: _Failure | None = None
        try:
            for step in steps:
                with self._cond:
                    while not self.ring.can_fill():
                        if self._stop.is_set():
                            return
                        self._cond.wait(self.POLL_S)
                    i = self.ring.begin_fill()
                if self._stop.is_set():
                    return
                batch = work(step)
                with self._cond:
                    self._items[i] = batch
                    self.ring.end_fill(i)
                    self._cond.notify_all()
        except BaseException as e:  # handed to the consumer, which re-raises it
            end = _Failure(e)
        with self._cond:
            self._end = end
            self._cond.notify_all()

    def get(self) -> ViewBatch:
        with self._cond:
            released = self.ring.release()
            if released is not None:
                self._items[released] = None
                self._cond.notify_all()
            while not self.ring.has_ready():
                if self._end is None:
                    raise StopIteration
                if isinstance(self._end, _Failure):
                    raise self._end.error
                if not self._thread.is_alive() and self._end is False:
                    raise RuntimeError("the producer thread stopped unexpectedly")
                self._cond.wait(self.POLL_S)
            i = self.ring.take()
            batch = self._items[i]
            assert batch is not None
            return batch

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join()


@dataclass
class _CudaSlot:
    ready: Any  # torch.cuda.Event recorded on the producer stream after the slot is written
    free: Any  # torch.cuda.Event recorded on the consumer stream when the consumer lets go
    latents: torch.Tensor
    views: torch.Tensor | None = None
    target: torch.Tensor | None = None
    latent_views: dict[str, torch.Tensor] = field(default_factory=dict)


class CudaProducer:
    """Runs the work on a dedicated CUDA stream into a ring of preallocated slots.

    Everything is enqueued from the consumer's thread; the host never waits for the device in
    the steady state. Ordering is by events only (no ``record_stream``): the producer stream
    waits for a slot's ``free`` event before overwriting it, the consumer stream waits for its
    ``ready`` event before reading it. A batch's tensors belong to the ring: they are overwritten
    once ``num_slots − 1`` further batches have been requested (clone what you keep).
    Non-finite generator output is detected on the device and reported a few steps later.
    """

    def __init__(self, work: StepWork, steps: Iterator[int], num_slots: int, stream: "torch.cuda.Stream") -> None:
        self.work = work
        self.steps = steps
        self.stream = stream
        self.device = work.device
        self.ring = SlotRing(num_slots)
        total = work.spec.numel * work.batch_size * work.num_views
        # Each slot's latent buffer is written in place by the fused op (ops.resample(out=...)).
        self.slots = [
            _CudaSlot(torch.cuda.Event(), torch.cuda.Event(),
                      torch.empty(total, dtype=torch.float32, device=self.device))
            for _ in range(num_slots)
        ]
        for slot in self.slots:
            # Sync point: an initial `free` record on the consumer stream makes the producer's
            # first wait on every slot well defined.
            slot.free.record(torch.cuda.current_stream(self.device))
        self.exhausted = False
        self.pending: list[tuple[Any, torch.Tensor, int]] = []  # (event, pinned flag, step)

    def _fill(self, i: int, step: int) -> None:
        slot = self.slots[i]
        with torch.cuda.stream(self.stream):
            # Sync point: do not overwrite the slot before the consumer's reads of it finished.
            self.stream.wait_event(slot.free)
            batch = self.work(step, latent_out=slot.latents)
            views = torch.stack(batch.views)
            if slot.views is None:
                slot.views = torch.empty_like(views)
                slot.target = torch.empty_like(batch.target)
            slot.views.copy_(views)
            slot.target.copy_(batch.target)
            slot.latent_views = batch.latents or {}
            bad = torch.logical_not(torch.isfinite(slot.views).all()).reshape(1)
            flag = torch.empty(1, dtype=torch.bool, pin_memory=True)
            flag.copy_(bad, non_blocking=True)
            # Sync point: the consumer waits on `ready` before reading the slot.
            slot.ready.record(self.stream)
            done = torch.cuda.Event()
            done.record(self.stream)
            self.pending.append((done, flag, step))

    def _check(self, block: bool = False) -> None:
        # Polls (never waits, unless closing) for the device-side finiteness flags.
        while self.pending and (block or self.pending[0][0].query()):
            done, flag, step = self.pending.pop(0)
            if block:
                done.synchronize()
            if bool(flag.item()):
                raise RuntimeError(f"{type(self.work.generator).__name__}.decode returned non-finite values at step {step}")

    def get(self) -> ViewBatch:
        consumer = torch.cuda.current_stream(self.device)
        held = self.ring.release()
        if held is not None:
            # Sync point: everything the consumer enqueued so far may read the held slot.
            self.slots[held].free.record(consumer)
        self._check()
        while not self.exhausted and self.ring.can_fill():
            try:
                step = next(self.steps)
            except StopIteration:
                self.exhausted = True
                break
            i = self.ring.begin_fill()
            self._fill(i, step)
            self.ring.end_fill(i)
        if not self.ring.has_ready():
            self._check(block=True)
            raise StopIteration
        slot = self.slots[self.ring.take()]
        # Sync point: the consumer stream reads the slot only after the producer wrote it.
        consumer.wait_event(slot.ready)
        assert slot.views is not None and slot.target is not None
        return ViewBatch(tuple(slot.views.unbind(0)), slot.target, slot.latent_views or None)

    def close(self) -> None:
        # Sync point: later allocations from the producer stream's pool must come after the
        # consumer's last reads of the slot buffers that are about to be freed.
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        self._check(block=True)


# --- the pipe --------------------------------------------------------------------------------

def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _positive_int(value: object, field: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{field} must be an int >= {low}, got {value!r}")
    return value


class ViewPairPipe(IterDataPipe):
    """An iterable DataPipe of ``ViewBatch((x0, x1, …), target)`` generated from ``generator``.

    Args:
        generator: an MLVGM (``latent_spec``, ``decode``), e.g. ``load_generator("builtin:shapes")``.
        policy: the ``ViewPolicy`` that turns anchors into views.
        batch_size: anchors per step on this rank.
        seed: the key of every random draw (latents, augmentation, classes).
        device: where to generate (default: the generator's device); CUDA uses the stream producer.
        augment: ``None``, a preset name (``"simclr"``, ``"byol"``, ``"crop_flip"``, ``"dali"``)
            or a callable ``aug(views[V,B,C,H,W], seed, step, stream, sample_offset)``.
        num_views: views per anchor (view 0 is the anchor if ``policy.include_anchor``).
        prefetch: batches made ahead of the consumer (0: synchronous, in the consumer's thread).
        rank, world_size: this process's share (default: from ``torch.distributed`` when
            initialised); rank r draws sample ids r·B … r·B + B − 1 of each step.
        steps: steps per epoch (``None``: endless). Each new epoch continues the step counter,
            so epochs never repeat; with DataLoader workers call ``set_epoch`` as for a sampler.
        return_latents: also return the latents of each batch.
        autocast: run the generator under ``torch.autocast`` with this dtype (e.g. bfloat16).
        stream: the Philox stream id; pipes with different streams share no numbers.
    """

    def __init__(self, generator: torch.nn.Module, policy: ViewPolicy, batch_size: int, seed: int = 0,
                 device: torch.device | str | None = None, augment: Augment | str | None = None, num_views: int = 2,
                 prefetch: int = 2, rank: int | None = None, world_size: int | None = None, steps: int | None = None,
                 return_latents: bool = False, autocast: torch.dtype | None = None, stream: int = 0) -> None:
        super().__init__()
        check_generator(generator, policy)
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.num_views = _positive_int(num_views, "num_views")
        if self.num_views > 255:
            raise ValueError(f"num_views must be <= 255, got {num_views}")
        self.prefetch = _positive_int(prefetch, "prefetch", low=0)
        ops._int_in(seed, "seed", 0, 1 << 32)
        ops._int_in(stream, "stream", 0, 1 << 32)
        self.seed, self.stream = seed, stream
        if steps is not None:
            _positive_int(steps, "steps")
        self.steps = steps
        default_rank, default_world = _dist_rank_world()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        _positive_int(self.world_size, "world_size")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in [0, world_size={self.world_size}), got {self.rank!r}")
        if self.world_size * self.batch_size > 1 << 32:
            raise ValueError("world_size * batch_size must be <= 2**32 (sample ids are 32-bit)")
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
        self.augment = resolve_augment(augment, generator, self.batch_size, self.num_views, seed, self.device)
        self.return_latents = return_latents
        self.autocast = autocast
        self._epoch_start = 0
        self._delivered = 0  # batches this process (or worker) handed out in the current epoch
        self._cuda_stream: Any = None

    # --- iteration ----------------------------------------------------------------------

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError("an endless ViewPairPipe (steps=None) has no length")
        return self.steps

    def work(self) -> StepWork:
        """The per-step computation (also what the benchmarks time without a producer)."""
        return StepWork(self.generator, self.policy, self.batch_size, self.num_views, self.seed,
                        self.rank * self.batch_size, self.augment, self.device, self.return_latents,
                        self.autocast, self.stream)

    def _share(self, worker: int, num_workers: int) -> float:
        if self.steps is None:
            return float("inf")
        return len(range(worker, self.steps, num_workers))

    def _steps(self, worker: int, num_workers: int) -> Iterator[int]:
        first = self._epoch_start + worker + self._delivered * num_workers
        end = None if self.steps is None else self._epoch_start + self.steps
        it = itertools.count(first, num_workers)
        return it if end is None else iter(range(first, end, num_workers))

    def _producer(self, steps: Iterator[int]) -> SyncProducer | ThreadProducer | CudaProducer:
        work = self.work()
        if self.device.type == "cuda":
            if self._cuda_stream is None:
                self._cuda_stream = torch.cuda.Stream(self.device)  # one dedicated stream per pipe
            return CudaProducer(work, steps, max(self.prefetch, 1) + 1, self._cuda_stream)
        if self.prefetch == 0:
            return SyncProducer(work, steps)
        return ThreadProducer(work, steps, self.prefetch)

    def __iter__(self) -> Iterator[ViewBatch]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if self._delivered >= self._share(worker, num_workers):
            # The previous epoch was consumed to the end: continue the step counter.
            self._epoch_start += self.steps
            self._delivered = 0
        producer = self._producer(self._steps(worker, num_workers))
        try:
            while True:
                try:
                    batch = producer.get()
                except StopIteration:
                    return
                self._delivered += 1
                yield batch
        finally:
            producer.close()

    def set_epoch(self, epoch: int) -> None:
        """Starts epoch ``epoch`` (steps ``epoch·steps …``), as ``DistributedSampler.set_epoch``."""
        if self.steps is None:
            raise ValueError("set_epoch needs a finite pipe (steps=N)")
        self._epoch_start = _positive_int(epoch, "epoch", low=0) * self.steps
        self._delivered = 0

    # --- exact resume ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What the consumer has received (not what the producer ran ahead to): O(1)."""
        return {"format": STATE_FORMAT, "epoch_start": self._epoch_start, "delivered": self._delivered,
                "seed": self.seed, "batch_size": self.batch_size, "num_views": self.num_views,
                "stream": self.stream, "steps": self.steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continues exactly after the last batch counted in ``state`` (no replay)."""
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a ViewPairPipe state (format {STATE_FORMAT!r} expected)")
        for key in ("seed", "batch_size", "num_views", "stream", "steps"):
            if state.get(key) != getattr(self, key):
                raise ValueError(f"state was saved with {key}={state.get(key)!r} but this pipe has "
                                 f"{key}={getattr(self, key)!r}; resuming would not continue the same stream")
        self._epoch_start = _positive_int(state["epoch_start"], "epoch_start", low=0)
        self._delivered = _positive_int(state["delivered"], "delivered", low=0)

    def __repr__(self) -> str:
        return (f"ViewPairPipe({type(self.generator).__name__}, batch_size={self.batch_size}, "
                f"num_views={self.num_views}, seed={self.seed}, device={self.device}, steps={self.steps}, "
                f"rank={self.rank}/{self.world_size})")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state["_cuda_stream"] = None  # streams do not cross process boundaries
        return state
