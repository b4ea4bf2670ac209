"""Build of mlvgm_data._C: the C++ ops always, the CUDA kernels when a CUDA build is possible.

CUDA is built when torch sees a GPU and a CUDA toolkit is found, or when FORCE_CUDA=1
(torchvision's convention). A forced CUDA build that cannot succeed is an error, never a silent
CPU-only build. MLVGM_NO_NATIVE=1 skips the extension (the package then runs on the PyTorch
reference implementation).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent


def _extensions() -> tuple[list, dict]:
    if os.environ.get("MLVGM_NO_NATIVE") == "1":
        return [], {}
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    force = os.environ.get("FORCE_CUDA") == "1"
    with_cuda = force or (torch.cuda.is_available() and CUDA_HOME is not None)
    if force and (CUDA_HOME is None or torch.version.cuda is None):
        sys.exit(
            "FORCE_CUDA=1 but a CUDA build is impossible: "
            f"CUDA_HOME={CUDA_HOME!r}, torch.version.cuda={torch.version.cuda!r} "
            "(install a CUDA build of torch and the matching toolkit)"
        )
    sources = ["csrc/resample.cpp", "csrc/cpu/resample_kernel.cpp"]
    # -ffp-contract=off: no FMA contraction, so the CPU bits equal the GPU's and the reference's
    # (also inside the kernel's AVX2/AVX-512 target regions: tests/test_op_paths.py checks).
    # -fno-math-errno/-fno-trapping-math change no value; they let GCC if-convert and vectorise.
    # The C++ standard is left to torch's build helpers (C++17 up to torch 2.13, C++20 after).
    cxx = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math"]
    # A release build: -g0 overrides the -g of Python's own CFLAGS (debug info made 7.4 of the
    # 7.8 MB of _C; 0.47 MB without it).
    cxx.append("-g0")
    if with_cuda:
        ext = CUDAExtension(
            "mlvgm_data._C",
            sources + ["csrc/cuda/resample.cu", "csrc/cuda/resample_cuda.cpp"],
            include_dirs=[str(ROOT / "csrc")],
            define_macros=[("WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "--fmad=false"]},
        )
    else:
        ext = CppExtension(
            "mlvgm_data._C",
            sources,
            include_dirs=[str(ROOT / "csrc")],
            extra_compile_args=cxx,
        )
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
