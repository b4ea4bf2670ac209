"""Built-in trainable MLVGMs (the registry finds their builders by name: ``generators.registry.FAMILIES``)."""

