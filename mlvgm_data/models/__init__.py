"""Built-in trainable MLVGMs. Importing this package registers their families and assets."""

from . import hvae, mlvae, recognize, stylegan  # noqa: F401
