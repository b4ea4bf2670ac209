"""The applications built on the library: the command line (``cli``, ``commands``), the
trainers of the shipped models (``train``), the demo, the loader benchmark (``bench``), the SSL
methods and evaluation probes (``ssl``), the shipped classifiers' training and the scores they
give (``classifiers``) and the image grids (``viz``).

They live apart from the core (everything else in ``mlvgm_data``) as torchvision keeps its
training scripts in ``references/`` and lightly its benchmarks outside its package: the core
never imports them — not statically, not through ``importlib``, registry strings or a package
``__getattr__`` (``tests/test_structure.py`` checks all four) — so a user who streams views
pays for none of their dependencies, and an application can change without touching the
contract. They ship inside the package because ``mlvgm-data`` runs them.
"""
