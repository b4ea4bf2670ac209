"""An import stand-in for ``aim`` (an experiment tracker), for tests/real_models.py only: lucidrains'
stylegan2-pytorch imports it at module import for its Trainer's logging, which its ``Generator``
never uses; the real package brings a database and a web server. Any use is refused loudly."""


def __getattr__(name: str):
    raise AttributeError(f"aim.{name}: tests/stubs/aim is an import stand-in, not aim")
