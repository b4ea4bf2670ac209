"""An import stand-in for torchvision, for tests/real_models.py only (see there): lucidrains'
stylegan2-pytorch imports torchvision at module import for its data loading and image saving,
which its ``Generator`` never uses, and no torchvision can be installed next to this torch.
It provides the names that import touches and refuses any other use loudly."""

from . import transforms  # noqa: F401  (``from torchvision import transforms``)


def __getattr__(name: str):
    raise AttributeError(f"torchvision.{name}: tests/stubs/torchvision is an import stand-in, not torchvision")
