"""The augmentation ops, one per file (kornia's and torchvision v2's layout): each a frozen dataclass
that samples its per-sample parameters from its own counter slot and applies them as a pure
batched function (see :mod:`.base`).

Adding an op is one new file here with its ``@register``-ed class, and its import line below
(the registration line: importing the file registers the op by name for
:func:`~mlvgm_data.augment.ops.op_from_dict`, and exports it here and from :mod:`mlvgm_data.augment`).
"""

# One line per op below; `import X as X` marks a re-export (the names reach __all__ through OPS).
from .base import OPS, SLOT_STRIDE, Draw, Op, op_from_dict, register
from .blur import GaussianBlur as GaussianBlur
from .crop import RandomResizedCrop as RandomResizedCrop
from .erasing import RandomErasing as RandomErasing
from .flip import RandomHorizontalFlip as RandomHorizontalFlip
from .grayscale import RandomGrayscale as RandomGrayscale
from .jitter import ColorJitter as ColorJitter
from .normalize import Normalize as Normalize
from .solarize import RandomSolarize as RandomSolarize

__all__ = ["OPS", "SLOT_STRIDE", "Draw", "Op", "op_from_dict", "register", *OPS]
