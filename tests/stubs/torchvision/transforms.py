"""``torchvision.transforms`` as far as an import needs it (see the package's docstring)."""


def __getattr__(name: str):
    raise AttributeError(f"torchvision.transforms.{name}: tests/stubs/torchvision is an import stand-in")
