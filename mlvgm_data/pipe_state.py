"""The pipe's rank and resume state as small typed records.

:class:`RankResolver` is the one place a pipe's (rank, world size) comes from: explicit
arguments, else ``torch.distributed`` when iteration starts, else what the pipe saw when it was
pickled into a DataLoader worker (a spawned worker has no process group), else (0, 1).

:class:`PipeState` is a resume state: the configuration it depends on (:class:`PipeConfig`),
the rank that saved it and its position (a :class:`~mlvgm_data.progress.Plan`). It reads and
writes the flat dict format ``mlvgm-data/pipe/2`` (what ``StatefulDataLoader`` and Lightning
store) and checks itself, naming the field, against the pipe that loads it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

import torch

from ._checks import U32, check_int
from .progress import MAX_SHARDS, Plan

STATE_FORMAT = "mlvgm-data/pipe/2"


class RankWorld(NamedTuple):
    rank: int
    world_size: int


def dist_rank_world() -> RankWorld | None:
    """torch.distributed's (rank, world size), or ``None`` without a process group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return RankWorld(torch.distributed.get_rank(), torch.distributed.get_world_size())
    return None


@dataclass
class RankResolver:
    """Resolves a pipe's rank when it is needed (see the module docs); ``batch_size`` bounds the
    world size (sample ids ``rank·B … rank·B + B − 1`` are 32-bit)."""

    batch_size: int
    rank: int | None = None
    world_size: int | None = None
    baked: RankWorld | None = None  # torch.distributed's, when the pipe was pickled for workers

    def __post_init__(self) -> None:
        self.rank = None if self.rank is None else check_int(self.rank, "rank", 0)
        self.world_size = None if self.world_size is None else check_int(self.world_size, "world_size", 1)
        if self.explicit:
            self.check(RankWorld(self.rank, self.world_size))

    @property
    def explicit(self) -> bool:
        """Whether both were given (then nothing else is consulted)."""
        return self.rank is not None and self.world_size is not None

    def check(self, rw: RankWorld) -> RankWorld:
        if not 0 <= rw.rank < rw.world_size:
            raise ValueError(f"rank must be in [0, world_size={rw.world_size}), got {rw.rank}")
        if rw.world_size * self.batch_size > U32:
            raise ValueError("world_size * batch_size must be <= 2**32 (sample ids are 32-bit)")
        return rw

    def resolve(self) -> RankWorld:
        known = dist_rank_world() or self.baked or RankWorld(0, 1)
        return self.check(RankWorld(known.rank if self.rank is None else self.rank,
                                    known.world_size if self.world_size is None else self.world_size))

    def settled(self) -> RankWorld | None:
        """The rank if nothing can change it any more (explicit, or a process group exists)."""
        return self.resolve() if self.explicit or dist_rank_world() is not None else None

    def for_workers(self) -> RankResolver:
        """A copy to pickle into DataLoader workers: it carries this process's rank."""
        return dataclasses.replace(self, baked=dist_rank_world() or self.baked)

    def describe(self) -> str:
        return "auto" if self.rank is None else f"{self.rank}/{self.world_size or 'auto'}"


@dataclass(frozen=True, kw_only=True)
class PipeConfig:
    """What a pipe's stream depends on: a state saved under another config would not continue it."""

    seed: int
    stream: int
    batch_size: int
    num_views: int
    steps: int | None
    policy: dict
    generator: str  # the generator's fingerprint
    anchors: dict | None = None  # real anchors: the dataset's length and fingerprint, real_view, prior_fraction

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check(self, saved: Mapping[str, Any]) -> None:
        """Refuses ``saved`` (a state's fields) unless it has this config, naming the first field."""
        for key, mine in self.to_dict().items():
            if saved[key] != mine:
                what = {"generator": "another generator (or other weights)",
                        "anchors": f"other real anchors ({saved[key]!r})"}.get(key, f"{key}={saved[key]!r}")
                raise ValueError(f"the state was saved with {what}, but this pipe has {key}={mine!r}: "
                                 "resuming would not continue the same stream")


_CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(PipeConfig))
_RANK_KEYS = RankWorld._fields
_POSITION_KEYS = ("epoch_start", "base", "num_shards", "shard", "delivered")


@dataclass(frozen=True)
class PipeState:
    """A resume state: the config it was saved under, the saving rank and its position."""

    config: PipeConfig
    rank: RankWorld
    position: Plan

    def to_dict(self) -> dict[str, Any]:
        p = self.position
        return {"format": STATE_FORMAT, **self.config.to_dict(), **self.rank._asdict(),
                "epoch_start": p.epoch_start, "base": p.base, "num_shards": p.num_shards, "shard": p.shard,
                "delivered": p.delivered}

    @classmethod
    def read(cls, state: object, config: PipeConfig) -> PipeState:
        """The state in ``state`` (a dict of the format above), checked against ``config`` (the
        loading pipe's): ``ValueError`` naming the field for another pipe's or a malformed state."""
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            got = state.get("format") if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"not a ViewPairPipe state: format {got!r}, expected {STATE_FORMAT!r}")
        state = {"anchors": None, **state}  # states saved before real anchors existed have none
        for key in _CONFIG_KEYS + _RANK_KEYS + _POSITION_KEYS:
            if key not in state:
                raise ValueError(f"the pipe state has no {key!r} field")
        config.check(state)
        rank = check_int(state["rank"], "state['rank']", 0)
        world = check_int(state["world_size"], "state['world_size']", 1)
        if rank >= world:
            raise ValueError(f"state['rank'] must be < state['world_size'], got {rank} of {world}")
        return cls(config, RankWorld(rank, world), _read_position(state, config.steps))


def _read_position(state: Mapping[str, Any], steps: int | None) -> Plan:
    e = check_int(state["epoch_start"], "state['epoch_start']", 0, U32)
    w = check_int(state["num_shards"], "state['num_shards']", 1, MAX_SHARDS + 1)
    shard = check_int(state["shard"], "state['shard']", 0, w)
    if steps is not None and e % steps:
        raise ValueError(f"state['epoch_start'] must be a multiple of steps={steps}, got {e}")
    end = U32 if steps is None else e + steps
    b = check_int(state["base"], "state['base']", e, end + 1)
    share = Plan(e, b, w, shard, 0).share(steps)
    delivered = check_int(state["delivered"], "state['delivered']", 0)
    if delivered > share:
        raise ValueError(f"state['delivered'] is {delivered}, more than the {share} steps of this shard's epoch")
    return Plan(e, b, w, shard, delivered)
