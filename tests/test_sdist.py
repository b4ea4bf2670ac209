"""The package as a user gets it from its source distribution.

The sdist is built from this checkout. Its file list is checked against the files git tracks
(seconds; in plain ``pytest`` and ``make test``). The ``sdist`` tests install it non-editable (so
``_C`` is compiled from the sdist's own sources) into a fresh venv that holds only torch and the
build tools, and run it from another folder: the native op is loaded, the built-in generators load,
``mlvgm-data`` works and the sdist's own tests pass against the installed package. Minutes
(``make sdist-check``; plain ``pytest`` deselects them).

``MLVGM_SDIST_TORCH`` is the pip requirement for torch in the venv (default: this torch's
version; e.g. ``"torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"``).
"""

from __future__ import annotations

import email
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TORCH = os.environ.get("MLVGM_SDIST_TORCH", f"torch=={torch.__version__.split('+')[0]}")
# What a user's install and the sdist's own tests read: every tracked file under these folders, and these files.
NEEDED_DIRS = ("mlvgm_data/", "csrc/", "tests/", "examples/", "benchmarks/")
NEEDED_FILES = {"README.md", "LICENSE", "pyproject.toml", "setup.py"}


def run(cmd: list[str], cwd: Path, timeout: float, **env: str) -> str:
    # Nothing of this checkout on the path, and the native build not switched off.
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MLVGM_NO_NATIVE")}
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
                         env={**base, "PYTHONNOUSERSITE": "1", **env})
    assert out.returncode == 0, (f"{shlex.join(cmd)} failed ({out.returncode}):\n"
                                 f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    # The PEP 517 hook itself, as `python -m build --sdist --no-isolation` calls it.
    hook = f"from setuptools import build_meta; print(build_meta.build_sdist({str(dist)!r}))"
    name = run([sys.executable, "-c", hook], ROOT, 300).split()[-1]
    return dist / name


@pytest.fixture(scope="module")
def venv(sdist: Path, tmp_path_factory) -> Path:
    """A fresh venv with torch, the build tools and the sdist installed; returns its bin/."""
    env = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", str(env)], env, 120)
    pip = [str(env / "bin" / "python"), "-m", "pip", "install", "-q"]
    run(pip + shlex.split(TORCH) + ["setuptools>=77", "wheel", "ninja"], env, 600)
    # --no-build-isolation: _C is built against the torch it will run with.
    run(pip + ["--no-build-isolation", str(sdist)], env, 900, MAX_JOBS="1")
    return env / "bin"


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("elsewhere")  # no mlvgm_data to import by accident


def tracked_files() -> set[str]:
    """The files git tracks in this checkout that are on disk (a fresh clone's files)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the sdist's file list is checked against git's")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return {name for name in out.decode().split("\0") if name and (ROOT / name).is_file()}


def test_sdist_holds_every_tracked_file_a_user_install_needs(sdist: Path) -> None:
    with tarfile.open(sdist) as tar:
        top = sdist.name[: -len(".tar.gz")]
        names = {m.name[len(top) + 1:] for m in tar.getmembers() if m.isfile()}
        info = email.message_from_bytes(tar.extractfile(f"{top}/PKG-INFO").read())
    needed = {f for f in tracked_files() if f.startswith(NEEDED_DIRS) or f in NEEDED_FILES}
    assert {"csrc/philox.h", "csrc/resample_host.h", "csrc/cuda/resample.cu", "csrc/testing/include/cuda_runtime.h",
            "tests/conftest.py", "tests/helpers.py", "mlvgm_data/py.typed", "mlvgm_data/assets/shapes_hvae.pt",
            "examples/simclr_generated.py", "benchmarks/cuda_check.py"} | NEEDED_FILES <= needed
    assert needed <= names, f"tracked files missing from the sdist (see MANIFEST.in): {sorted(needed - names)}"
    assert not [n for n in names if n.endswith((".so", ".o", ".pyc"))]
    assert info["License-Expression"] == "Apache-2.0" and info["License-File"] == "LICENSE"
    assert info["Version"] == __import__("mlvgm_data").__version__


CHECK = """
import importlib.metadata, importlib.resources, json, sys
from pathlib import Path
import torch
import mlvgm_data
from mlvgm_data import Perturb, ViewPairPipe, ViewPolicy, load_generator, ops
from mlvgm_data.generators.registry import builtin_names
from mlvgm_data import _C

dist = importlib.metadata.distribution("mlvgm-data")
load_generator("builtin:shapes")  # the built-ins register when the model modules are imported
shapes = []
for name in builtin_names():
    g = load_generator(name)
    policy = ViewPolicy({grp.name: Perturb(0.5) for grp in g.latent_spec})
    with ViewPairPipe(g, policy, batch_size=2, prefetch=0, steps=1) as pipe:
        shapes.append(list(next(iter(pipe)).views[0].shape))
print(json.dumps({
    "file": mlvgm_data.__file__, "native": ops.has_native(), "builtins": builtin_names(), "shapes": shapes,
    "version": mlvgm_data.__version__, "dist_version": dist.version, "license": dist.metadata["License-Expression"],
    "license_file": any(f.name == "LICENSE" for f in dist.files),
    "py_typed": (importlib.resources.files("mlvgm_data") / "py.typed").is_file(),
    "debug_info": b".debug_info" in Path(_C.__file__).read_bytes(), "c_bytes": Path(_C.__file__).stat().st_size,
}))
"""


@pytest.mark.sdist
def test_installed_package_runs_from_another_folder(venv: Path, elsewhere: Path) -> None:
    got = json.loads(run([str(venv / "python"), "-c", CHECK], elsewhere, 300).splitlines()[-1])
    assert Path(got["file"]).is_relative_to(venv.parent), got["file"]  # the installed copy, not the checkout
    assert got["native"], "the compiled op did not load from the installed package"
    assert {"builtin:shapes", "builtin:shapes-stylegan"} <= set(got["builtins"])
    assert all(s[0] == 2 and len(s) == 4 for s in got["shapes"]), got["shapes"]
    assert got["version"] == got["dist_version"] and got["license"] == "Apache-2.0" and got["license_file"]
    assert got["py_typed"]
    assert not got["debug_info"], f"_C ships with debug info ({got['c_bytes']} bytes)"


@pytest.mark.sdist
def test_cli_of_the_installed_package(venv: Path, elsewhere: Path) -> None:
    import mlvgm_data

    assert run([str(venv / "mlvgm-data"), "--version"], elsewhere, 60).strip() == f"mlvgm-data {mlvgm_data.__version__}"
    out = run([str(venv / "mlvgm-data"), "views", "--anchors", "2", "--num-views", "3", "--out", "grid.png",
               "--json", "views.json"], elsewhere, 300)
    assert (elsewhere / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", out
    assert json.loads((elsewhere / "views.json").read_text())


@pytest.mark.sdist
def test_the_sdists_own_tests_pass_against_the_installed_package(sdist: Path, venv: Path, elsewhere: Path) -> None:
    unpacked = elsewhere / "unpacked"
    with tarfile.open(sdist) as tar:
        tar.extractall(unpacked, filter="data")
    tree = unpacked / sdist.name[: -len(".tar.gz")]
    run([str(venv / "python"), "-m", "pip", "install", "-q", "pytest", "scipy"], elsewhere, 300)
    # The pytest script, not `python -m pytest`: the unpacked source tree must not shadow the
    # installed package on sys.path (its tests/ has no __init__.py, so only tests/ is added).
    out = run([str(venv / "pytest"), "-q", "-p", "no:cacheprovider", "tests/test_ops.py", "tests/test_latents_views.py",
               "tests/test_adapters.py"], tree, 600)
    assert " passed" in out and "skipped" not in out, out[-2000:]  # a skip would mean no native op
