"""MkDocs hooks of the manual (``hooks:`` in mkdocs.yml).

One known warning is dropped, and only that one: ``mlvgm_data.augment.ops.__all__`` is built from
the op registry when the package is imported (``[..., *OPS]``: a new op needs no line there), which
griffe's static analysis cannot expand. The API pages document each op from its own module, so
nothing is missing from the site; every other warning still fails ``mkdocs build --strict``.
"""

from __future__ import annotations

import logging
from typing import Any

GRIFFE_LOGGER = "mkdocs.plugins.griffe"
KNOWN = "Unsupported item in mlvgm_data.augment.ops.__all__: OPS"


class _DropKnown(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return KNOWN not in record.getMessage()


def on_startup(command: str, dirty: bool, **kwargs: Any) -> None:
    logger = logging.getLogger(GRIFFE_LOGGER)
    if not any(isinstance(f, _DropKnown) for f in logger.filters):
        logger.addFilter(_DropKnown())
