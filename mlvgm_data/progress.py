"""The pipe's progress, shared by every copy of the pipe in a process tree.

``DataLoader`` workers are copies of the pipe (forked, or pickled for ``spawn``), made afresh
each epoch unless the workers are persistent, and a copy's counters die with it. So the pipe
keeps its progress in a small shared-memory table that every copy sees: one row per *shard*
(the main process is shard 0 of 1; DataLoader worker w of W is shard w of W). A row is a
*plan* — epoch start E, base step b, number of shards W: shard w makes steps b + w, b + w + W, …
up to the epoch's end — and the number of steps the shard has handed out.

When an iteration starts, its shards derive the next plan from the rows of the previous one, so
nothing is repeated and nothing is skipped: a finished epoch moves E on by ``steps``; an
unfinished one with the same number of shards continues each shard where it stopped; with
another number of shards the remaining steps are split anew after the last step handed out.
Shards of one iteration (DataLoader workers started together) compute the same plan from the
same rows, or adopt it from a row already written under the same iteration tag. Rows carry a
checksum, so a read that races a write is retried, never misread.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import torch

MAX_SHARDS = 1024
_FIELDS = 8  # a Row's seven fields and a checksum
_MASK63 = (1 << 63) - 1


@dataclass(frozen=True)
class Plan:
    """Which steps shard ``shard`` of ``num_shards`` makes: ``base + shard + k·num_shards`` for k
    from ``delivered`` on, below ``epoch_start + steps`` (no end for an endless pipe)."""

    epoch_start: int
    base: int
    num_shards: int
    shard: int
    delivered: int

    def first_step(self) -> int:
        return self.base + self.shard + self.delivered * self.num_shards

    def share(self, steps: int | None) -> float:
        """How many steps this shard makes in the epoch (inf for an endless pipe)."""
        if steps is None:
            return float("inf")
        return len(range(self.base + self.shard, self.epoch_start + steps, self.num_shards))


class Row(NamedTuple):
    """A shard's row: the plan it follows (written under ``generation``, by ``rank``, in the
    iteration tagged ``tag``) and the steps it has handed out. An all-zero row is unused."""

    generation: int
    epoch_start: int
    base: int
    num_shards: int
    delivered: int
    rank: int
    tag: int

    def plan(self, shard: int) -> Plan:
        return Plan(self.epoch_start, self.base, self.num_shards, shard, self.delivered)

    def same_plan(self, epoch_start: int, base: int, num_shards: int) -> bool:
        return (self.epoch_start, self.base, self.num_shards) == (epoch_start, base, num_shards)


class Snapshot(NamedTuple):
    """The newest plan (as seen by shard 0), the steps each of its shards handed out, all rows."""

    generation: int
    plan: Plan | None
    delivered: list[int]
    rows: list[Row]


def _checksum(values: list[int]) -> int:
    h = 0x9E3779B97F4A7C15
    for v in values:  # splitmix64-style mixing of each field
        h = (h ^ (v & ((1 << 64) - 1))) * 0xBF58476D1CE4E5B9 & ((1 << 64) - 1)
        h ^= h >> 31
    return h & _MASK63


class SharedProgress:
    """The shared table of shard rows (``MAX_SHARDS`` rows, 64 KB of shared memory)."""

    def __init__(self) -> None:
        self.table = torch.zeros(MAX_SHARDS, _FIELDS, dtype=torch.int64).share_memory_()

    # --- rows ----------------------------------------------------------------------------------

    def _rows(self) -> list[Row]:
        """A consistent snapshot: rows whose checksum fails (a write in progress) are re-read."""
        for _ in range(1000):
            rows = self.table.tolist()
            if all(r[7] == _checksum(r[:7]) or not any(r) for r in rows):
                return [Row(*r[:7]) for r in rows]
            time.sleep(0.001)
        raise RuntimeError("the pipe's shared progress table is corrupt (rows never became consistent)")

    def _write(self, shard: int, row: Row) -> None:
        values = list(row)
        self.table[shard] = torch.tensor(values + [_checksum(values)], dtype=torch.int64)

    def record(self, shard: int, delivered: int) -> None:
        """Shard ``shard`` has handed out ``delivered`` steps of its current plan."""
        self._write(shard, Row(*self.table[shard].tolist()[:7])._replace(delivered=delivered))

    # --- plans ---------------------------------------------------------------------------------

    def newest(self, rank: int) -> Snapshot:
        """The newest plan; ``rank`` must be the rank that wrote it (−1 marks a plan set by hand)."""
        rows = self._rows()
        generation = max((r.generation for r in rows), default=0)
        if generation == 0:
            return Snapshot(0, None, [], rows)
        current = [(i, r) for i, r in enumerate(rows) if r.generation == generation]
        others = sorted({r.rank for _, r in current} - {rank, -1})
        if others:
            raise RuntimeError(
                f"this pipe's progress was last advanced by rank {others[0]}, and this process is rank {rank}: "
                "a pipe object iterated by several ranks (shipped to them, or iterated before "
                "torch.distributed was initialised); construct the pipe in each process or pass rank="
            )
        first = current[0][1]
        plan = Plan(first.epoch_start, first.base, first.num_shards, 0, 0)
        delivered = [0] * plan.num_shards
        for i, r in current:
            if i < plan.num_shards:
                delivered[i] = r.delivered
        return Snapshot(generation, plan, delivered, rows)

    def start(self, shard: int, num_shards: int, rank: int, tag: int, steps: int | None,
              restored: Plan | None = None) -> Plan:
        """The plan of shard ``shard`` of ``num_shards`` for a new iteration tagged ``tag``, written to
        its row: adopted from a shard of the same iteration, else derived from the newest plan
        (or ``restored``, a plan loaded from a state dict)."""
        if not 0 <= shard < num_shards <= MAX_SHARDS:
            raise ValueError(f"at most {MAX_SHARDS} DataLoader workers per pipe, got {num_shards}")
        generation, previous, delivered, rows = self.newest(rank)
        adopted = [r for r in rows if generation and r.generation == generation and r.tag == tag]
        if adopted:  # another shard of this iteration has chosen the plan already
            new_generation, e, b, w = generation, adopted[0].epoch_start, adopted[0].base, adopted[0].num_shards
        else:
            new_generation = generation + 1
            if restored is not None:
                e, b, w = restored.epoch_start, restored.base, restored.num_shards
            else:
                e, b, w = _next_plan(previous, delivered, num_shards, steps)
        if w != num_shards:
            raise RuntimeError(f"the shards of one iteration disagree on the number of workers ({w} vs {num_shards})")
        if restored is not None and (restored.epoch_start, restored.base, restored.num_shards) != (e, b, w):
            raise ValueError("the DataLoader workers were restored from states of different checkpoints")
        own = rows[shard]  # this shard's row from the previous iteration (not rewritten yet)
        if restored is not None:
            start = restored.delivered
        elif own.generation == new_generation - 1 and own.same_plan(e, b, w):
            start = own.delivered  # the plan goes on: this shard continues where it stopped
        else:
            start = 0
        plan = Plan(e, b, w, shard, start)
        self._write(shard, Row(new_generation, e, b, w, start, rank, tag))
        return plan

    def set(self, plan: Plan) -> None:
        """Makes ``plan`` the newest (``set_epoch``, ``load_state_dict`` in the main process)."""
        generation = max((r.generation for r in self._rows()), default=0)
        self._write(plan.shard, Row(generation + 1, plan.epoch_start, plan.base, plan.num_shards, plan.delivered,
                                    -1, 0))


def _next_plan(previous: Plan | None, delivered: list[int], num_shards: int,
               steps: int | None) -> tuple[int, int, int]:
    """(epoch start, base, shards) after ``previous`` whose shards handed out ``delivered``."""
    if previous is None:
        return 0, 0, num_shards
    e, b, w_old = previous.epoch_start, previous.base, previous.num_shards
    shares = [Plan(e, b, w_old, w, 0).share(steps) for w in range(w_old)]
    if steps is not None and all(d >= s for d, s in zip(delivered, shares)):
        return e + steps, e + steps, num_shards  # the epoch is complete: the next one begins
    if num_shards == w_old:
        return e, b, w_old  # the same sharding: every shard continues
    # Another number of shards: split what is left after the last step handed out. Steps that
    # were made ahead by some shards but not by others are skipped rather than repeated.
    offsets = [w + (d - 1) * w_old for w, d in enumerate(delivered) if d > 0]
    after = max(offsets) + 1 if offsets else 0
    holes = after - sum(delivered)
    if holes > 0:
        warnings.warn(f"mlvgm-data: {holes} step(s) of an unfinished epoch were skipped (their DataLoader workers "
                      "had run ahead unevenly); nothing is repeated", RuntimeWarning, stacklevel=4)
    base = b + after
    if steps is not None and base >= e + steps:
        return e + steps, e + steps, num_shards
    return e, base, num_shards


class SharedEpoch:
    """An epoch number every copy of a map-style dataset sees (persistent DataLoader workers
    included), so that ``set_epoch`` in the main process reaches them."""

    def __init__(self) -> None:
        self._value = torch.zeros(1, dtype=torch.int64).share_memory_()

    def get(self) -> int:
        return int(self._value[0])

    def set(self, epoch: int) -> None:
        self._value[0] = epoch
