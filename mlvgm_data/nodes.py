"""``torchdata.nodes`` integration: a source node over a :class:`ViewPairPipe`.

``torchdata.nodes.Loader(ViewPairNode(pipe))`` checkpoints with ``loader.state_dict()`` and
resumes exactly with ``loader.load_state_dict(...)``. torchdata >= 0.11 is an optional extra.
"""

from __future__ import annotations

from typing import Any, Iterator

try:
    from torchdata.nodes import BaseNode
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("mlvgm_data.nodes needs torchdata >= 0.11: pip install 'torchdata>=0.11'") from e

from .pipe import ViewBatch, ViewPairPipe


class ViewPairNode(BaseNode[ViewBatch]):
    """A source node yielding the pipe's batches; its state is the pipe's ``state_dict()``."""

    PIPE_KEY = "pipe"

    def __init__(self, pipe: ViewPairPipe) -> None:
        super().__init__()
        if not isinstance(pipe, ViewPairPipe):
            raise ValueError(f"ViewPairNode wraps a ViewPairPipe, got {type(pipe).__name__}")
        self.pipe = pipe
        self._it: Iterator[ViewBatch] | None = None

    def reset(self, initial_state: dict[str, Any] | None = None) -> None:
        super().reset(initial_state)
        if self._it is not None:
            self._it.close()  # stops the previous epoch's producer
        if initial_state is not None:
            self.pipe.load_state_dict(initial_state[self.PIPE_KEY])
        self._it = iter(self.pipe)

    def next(self) -> ViewBatch:
        assert self._it is not None
        return next(self._it)

    def get_state(self) -> dict[str, Any]:
        return {self.PIPE_KEY: self.pipe.state_dict()}
