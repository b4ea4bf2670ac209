"""The producers that run a pipe's steps ahead of the consumer: synchronous, a background thread
(CPU) and a dedicated CUDA stream (GPU), all cycling through the same ring of slots.

The thread producer is a daemon thread that holds no reference to the pipe, so dropping an
iterator stops it. ``close()`` returns within :data:`ThreadProducer.JOIN_S`: a producer stuck
inside a slow or hung ``decode`` is abandoned (it stops at its next step boundary; the process can
exit meanwhile). At interpreter exit every live thread producer is stopped first, so that no
producer thread is inside torch when Python finalizes (a daemon thread that wakes up after
finalization aborts the process).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from .step import StepWork, ViewBatch

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

    def close(self, timeout: float | None = None) -> None:
        pass


class ForkGate:
    """Holds ``os.fork()`` while a producer thread is inside a step or still ending.

    A DataLoader forks its workers from the main thread while a pipe's producer thread may be inside
    torch (an MKL matrix product holding its allocator's lock) or ending (MKL frees the thread's
    buffers under that lock after the thread's Python code has returned, even after ``join()``); the
    child inherits the held lock and its first matrix product spins forever (measured: 14 of 200
    forks timed against an ending thread hung, 0 of 200 once the fork waited for the thread to be
    gone). So each step runs inside the gate, an ending producer thread is waited for until the
    kernel no longer lists it, and a fork waits (at most :attr:`WAIT_S`, then warns) and lets no new
    step start until it is done.
    """

    WAIT_S = 5.0
    POLL_S = 0.001  # a thread's end is not signalled: its task entry is polled for

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(before=self._before_fork, after_in_parent=self._after_fork,
                                after_in_child=self._reset)

    def _reset(self) -> None:  # in a child: the parent's producer threads do not exist there
        self._cond = threading.Condition()
        self._inside: set[int] = set()
        self._ending: set[int] = set()  # native ids of producer threads past their last step
        self._forking = False

    def __enter__(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._forking)
            self._inside.add(threading.get_ident())

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._inside.discard(threading.get_ident())
            self._cond.notify_all()

    def ending(self) -> None:
        """Called by a producer thread as its last Python code: a fork waits until it is gone."""
        with self._cond:
            self._ending.add(threading.get_native_id())

    def _settled(self, me: int) -> bool:
        if not os.path.isdir("/proc/self/task"):  # no way to see a thread's end here: steps only
            self._ending.clear()
        self._ending = {tid for tid in self._ending if os.path.exists(f"/proc/self/task/{tid}")}
        return self._inside <= {me} and not self._ending

    def _before_fork(self) -> None:
        me = threading.get_ident()  # a step that forks (a decode starting a process) must not wait for itself
        with self._cond:
            self._forking = True
            deadline = time.monotonic() + self.WAIT_S
            while not self._settled(me):
                if time.monotonic() > deadline:
                    warnings.warn(f"mlvgm-data: forking while a producer thread has been inside a step (or ending) for "
                                  f"over {self.WAIT_S:.0f} s (a stuck decode?); the child may hang in torch",
                                  RuntimeWarning, stacklevel=2)
                    return
                self._cond.wait(self.POLL_S)

    def _after_fork(self) -> None:
        with self._cond:
            self._forking = False
            self._cond.notify_all()


FORK_GATE = ForkGate()

_LIVE: "weakref.WeakSet[ThreadProducer]" = weakref.WeakSet()


@atexit.register
def _stop_live_producers() -> None:
    # atexit runs while daemon threads still live: let each producer finish its current step.
    for producer in list(_LIVE):
        producer.close(timeout=ThreadProducer.EXIT_JOIN_S)


class ThreadProducer:
    """A background thread that runs ``work(step)`` up to ``prefetch`` batches ahead.

    Errors raised by the work (including bad generator output) are re-raised in the consumer's
    ``get()`` with their original traceback. The thread holds no reference to the pipe or its
    iterator, so dropping the iterator (``break``, garbage collection) closes it.
    """

    POLL_S = 0.05  # lets a blocked wait notice close() and KeyboardInterrupt promptly
    JOIN_S = 1.0  # close() waits this long for the current step, then abandons the thread
    EXIT_JOIN_S = 5.0  # at interpreter exit the current step may finish (a thread still in torch then can abort)

    def __init__(self, work: Callable[[int], ViewBatch], steps: Iterator[int], prefetch: int) -> None:
        self.ring = SlotRing(prefetch + 1)
        self._items: list[ViewBatch | None] = [None] * len(self.ring)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._end: _Failure | None | bool = False  # False: running; None: steps exhausted
        self._thread = threading.Thread(target=self._run, args=(work, steps), name="mlvgm-data-producer", daemon=True)
        self._thread.start()
        _LIVE.add(self)

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
                with FORK_GATE:
                    batch = work(step)
                with self._cond:
                    self._items[i] = batch
                    self.ring.end_fill(i)
                    self._cond.notify_all()
        except BaseException as e:  # handed to the consumer, which re-raises it
            end = _Failure(e)
        finally:
            FORK_GATE.ending()
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

    def close(self, timeout: float | None = None) -> None:
        """Stops the thread; waits at most ``timeout`` seconds (default :attr:`JOIN_S`) for it."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is threading.current_thread():
            _LIVE.discard(self)
            return
        wait = self.JOIN_S if timeout is None else timeout
        self._thread.join(wait)
        if not self._thread.is_alive():
            _LIVE.discard(self)  # an abandoned thread stays listed: interpreter exit waits for it
        elif wait > 0:  # a caller that asked not to wait knows the step goes on
            warnings.warn("mlvgm-data: the producer thread is still inside a step (a slow or stuck decode); "
                          "it was abandoned and stops when the step ends", RuntimeWarning, stacklevel=2)


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

    def __init__(self, work: StepWork, steps: Iterator[int], num_slots: int, cuda_stream: "torch.cuda.Stream") -> None:
        self.work = work
        self.steps = steps
        self.cuda_stream = cuda_stream
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
        with torch.cuda.stream(self.cuda_stream):
            # Sync point: do not overwrite the slot before the consumer's reads of it finished.
            self.cuda_stream.wait_event(slot.free)
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
            slot.ready.record(self.cuda_stream)
            done = torch.cuda.Event()
            done.record(self.cuda_stream)
            self.pending.append((done, flag, step))

    def _check(self, block: bool = False) -> None:
        # Polls (never waits, unless closing) for the device-side finiteness flags.
        while self.pending and (block or self.pending[0][0].query()):
            done, flag, step = self.pending.pop(0)
            if block:
                done.synchronize()
            if bool(flag.item()):
                raise RuntimeError(f"{type(self.work.generator).__name__}.decode returned non-finite values "
                                   f"at step {step}")

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

    def close(self, timeout: float | None = None) -> None:
        # Sync point: later allocations from the producer stream's pool must come after the
        # consumer's last reads of the slot buffers that are about to be freed.
        self.cuda_stream.wait_stream(torch.cuda.current_stream(self.device))
        self._check(block=True)
