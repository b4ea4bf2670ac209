"""Shared fixtures, the global-state guard and the ``needs_cuda`` marker."""

from __future__ import annotations

import ctypes
import random
import shutil
import subprocess
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from helpers import CSRC, CXX, MAX_GROUPS_PER_LAUNCH, write_split


def _saved_globals() -> Iterator[None]:
    """Puts back what a test (or a fixture) may change in the process: torch's intra-op thread
    count, the global RNGs of torch, ``random`` and NumPy, and grad mode. Without it one test's
    ``set_num_threads`` or ``manual_seed`` decides the numbers of the tests after it.

    torch's inter-op thread count is not guarded: it can be set only once, before any inter-op
    work, so a test that changed it could not be undone here (no test sets it)."""
    threads, grad = torch.get_num_threads(), torch.is_grad_enabled()
    torch_rng, py_rng, np_rng = torch.get_rng_state(), random.getstate(), np.random.get_state()
    yield
    torch.set_num_threads(threads)
    torch.set_grad_enabled(grad)
    torch.set_rng_state(torch_rng)
    random.setstate(py_rng)
    np.random.set_state(np_rng)


@pytest.fixture(autouse=True)
def guard_globals() -> Iterator[None]:
    """Every test starts from, and leaves, the globals the test before it found."""
    yield from _saved_globals()


@pytest.fixture(autouse=True, scope="module")
def guard_module_globals() -> Iterator[None]:
    """The same around each module, so that a module-scoped fixture's changes end with its module
    (autouse fixtures are set up before the other fixtures of their scope)."""
    yield from _saved_globals()


@pytest.fixture(scope="module")
def one_thread():
    """Critic training is deterministic for a fixed thread count; one thread also keeps these
    tests from oversubscribing a small shared runner. The caller's setting is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.needs_cuda`` tests are skipped, saying why, on a machine without a GPU; an
    exactness test must sit in a module that says ``mark.exactness`` (``make test`` reruns only those
    modules under every CPU path)."""
    for item in items:
        if item.get_closest_marker("exactness") is not None and "mark.exactness" not in item.path.read_text():
            raise pytest.UsageError(f"{item.nodeid} is marked exactness but its module never says 'mark.exactness': "
                                    "make test's CPU-path reruns (Makefile EXACT_FILES) would miss it")
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA: torch.cuda.is_available() is False on this machine")
    for item in items:
        if item.get_closest_marker("needs_cuda") is not None:
            item.add_marker(skip)


@pytest.fixture
def fashion_files(tmp_path, monkeypatch):
    """Tiny Fashion-MNIST train (9 images) and test (5 images) splits, found through $MLVGM_DATA
    (the trainer's and the classifier's tests; the classifier's cached real features are
    cleared around each test, since they belong to the files)."""
    from mlvgm_data.apps.classifiers import fashion as fq
    from mlvgm_data.data import fashion_mnist as fm

    write_split(tmp_path / "data", n=9, train=True, seed=1)
    write_split(tmp_path / "data", n=5, train=False, seed=2)
    monkeypatch.setenv(fm.ENV_VAR, str(tmp_path / "data"))
    monkeypatch.setattr(fm, "DEBIAN_PATH", tmp_path / "no-debian")
    fq._real_features.cache_clear()
    yield tmp_path / "data"
    fq._real_features.cache_clear()


@pytest.fixture(scope="session")
def emulated(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    """csrc/cuda/resample.cu and the C entry points of csrc/testing/ built into one shared library
    (about 2 s, once per session): the CUDA kernels run on the host (tests/test_cuda_*.py).

    Baseline x86-64 code without FMA contraction, like the CPU kernel: the bits cannot depend on
    the machine."""
    if shutil.which(CXX) is None:
        pytest.skip(f"no C++ compiler ({CXX})")
    lib = tmp_path_factory.mktemp("cuda_emulation") / "libemulated_cuda.so"
    cmd = [CXX, "-std=c++17", "-O2", "-ffp-contract=off", "-fPIC", "-shared",
           f"-I{CSRC}", f"-I{CSRC / 'testing' / 'include'}", "-o", str(lib),
           str(CSRC / "testing" / "emulated_cuda_capi.cpp"), "-x", "c++", str(CSRC / "cuda" / "resample.cu")]
    built = subprocess.run(cmd, capture_output=True, text=True)
    if built.returncode != 0:
        pytest.fail(f"{' '.join(cmd)}\n{built.stderr}")
    dll = ctypes.CDLL(str(lib))
    assert dll.emulated_max_groups_per_launch() == MAX_GROUPS_PER_LAUNCH
    P, I32, U32, I64, U = ctypes.c_void_p, ctypes.c_int32, ctypes.c_uint32, ctypes.c_int64, ctypes.c_uint
    dll.emulated_resample.argtypes = [P, P, ctypes.c_int, I32, I32, ctypes.c_int, U32, U32, U32, I64, P, P, U, U,
                                      ctypes.c_uint64]
    dll.emulated_uniform.argtypes = [I64, I32, U32, U32, U32, U32, U32, U32, I64, P, P, U, U, ctypes.c_uint64]
    return dll
