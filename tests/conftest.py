"""Shared fixtures."""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import pytest
import torch

from helpers import CSRC, CXX, MAX_GROUPS_PER_LAUNCH


@pytest.fixture(scope="module")
def one_thread():
    """Critic training is deterministic for a fixed thread count; one thread also keeps these
    tests from oversubscribing a small shared runner. The caller's setting is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
