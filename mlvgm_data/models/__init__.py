"""Built-in trainable MLVGMs. Importing this package registers their families and assets."""

from . import hvae, recognize, stylegan  # noqa: F401
