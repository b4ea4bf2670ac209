"""The CPU kernel's instruction-set paths (generic, avx2, avx512): each one, forced in turn, bit for
bit against the pure-PyTorch reference — every one of the 2**24 inputs of the inverse CDF, and
specs whose sizes hit both row layouts, row tails, short rows, tied groups and several work items
per group — and the machinery around them: the path chosen by default and by MLVGM_CPU_PATH, the
work split over threads, concurrent callers, forked children, and no FMA in the built code.

A path the CPU cannot run is skipped with the reason (this project's machine has AVX2 only, so
the avx512 path runs only elsewhere; its 16-lane control flow is the generic path's, which runs
here, and its build is checked below)."""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
import threading

import pytest
import torch

from mlvgm_data import Keep, LatentGroup, LatentSpec, Perturb, Resample, ViewPolicy, ops, philox

pytestmark = pytest.mark.skipif(not ops.has_native("cpu"), reason="compiled op not built")

PATHS = ["generic", "avx2", "avx512"]


def supported() -> list[str]:
    return list(torch.ops.mlvgm_data._cpu_paths())


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> str:
    """Runs the test with the CPU kernel forced to one path; restores the one in use."""
    if request.param not in supported():
        pytest.skip(f"this CPU has no {request.param} path (it has {supported()})")
    before = torch.ops.mlvgm_data._cpu_path()
    torch.ops.mlvgm_data._cpu_path(request.param)
    yield request.param
    torch.ops.mlvgm_data._cpu_path(before)


def bits(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.int32)


# Sizes around the layouts' edges for 8 and 16 lanes: numel < 4 (empty quarters), every n % 4,
# rows of fewer blocks than lanes (lanes across samples), exactly one and two vectors of blocks,
# two-vector steps with a tail, and rows larger than a work item.
SIZES = [(1,), (2,), (3,), (5,), (7,), (20,), (29,), (32,), (37,), (61,), (64,), (127,), (130,), (515,),
         (3, 4, 5), (20, 4, 4), (2, 9, 9), (20, 16, 16)]


def case(seed: int) -> dict:
    rng = random.Random(seed)
    groups, rules = [], {}
    tie_shape = rng.choice(SIZES[:12])
    for i in range(rng.randint(1, 5)):
        if rng.random() < 0.3:
            groups.append(LatentGroup(f"g{i}", tie_shape, tie="t"))
        else:
            groups.append(LatentGroup(f"g{i}", rng.choice(SIZES)))
        rule = rng.choice([Keep(), Perturb(rng.uniform(0, 2), rng.uniform(-1, 1), rng.choice([None, 0.5, 2.0])),
                           Resample(rng.choice([None, 1.0, 3.0])), None])
        if rule is not None:
            rules[f"g{i}"] = rule
    spec = LatentSpec(groups)
    policy = ViewPolicy(rules, anchor_trunc=rng.choice([None, 0.9, 2.0]), include_anchor=rng.random() < 0.6)
    # Batches below and above the lane counts and the rows of one work item.
    batch = rng.choice([1, 3, 9, 17, 40, 130])
    kw = {}
    if rng.random() < 0.3:
        kw["sample_ids"] = torch.tensor([rng.randrange(2**32) for _ in range(batch)], dtype=torch.int64)
    elif rng.random() < 0.5:
        kw["sample_offset"] = rng.randrange(2**32 - batch)
    return dict(spec=spec, policy=policy, batch_size=batch, num_views=rng.randint(1, 3), seed=rng.randrange(2**32),
                step=rng.randrange(2**32), stream=rng.randrange(2**32), **kw)


@pytest.mark.exactness
@pytest.mark.parametrize("seed", range(16))
def test_resample_equals_reference_on_every_path(path: str, seed: int) -> None:
    c = case(seed)
    got = ops.resample(**c)
    want = ops.resample_reference(**c)
    for name in c["spec"].names:
        assert torch.equal(bits(got[name]), bits(want[name])), f"{path}: group {name} {c['spec'][name].shape}"


@pytest.mark.exactness
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 9, 17, 31, 64, 130, 600])
def test_uniform_equals_reference_on_every_path(path: str, n: int) -> None:
    for batch in (1, 19):
        kw = dict(domain=7, view=2, slot=99, sample_offset=5)
        got = ops.uniform(batch, n, seed=3, step=8, stream=1, **kw)
        want = ops.uniform_reference(batch, n, seed=3, step=8, stream=1, **kw)
        assert torch.equal(bits(got), bits(want))


def all_inputs(stride: int = 1) -> torch.Tensor:
    """Every top-24-bit pattern of a Philox word (the inverse CDF reads those bits only), with
    arbitrary low bits; as uint32 values in int64."""
    k = torch.arange(0, 1 << 24, stride, dtype=torch.int64)
    return (k << 8) | ((k * 2654435761) & 0xFF)


@pytest.fixture(scope="module")
def exhaustive_reference() -> tuple[torch.Tensor, torch.Tensor]:
    words = all_inputs()
    return words, philox.truncated_normal(words, 1.0)


@pytest.mark.slow
@pytest.mark.exactness
def test_every_input_of_the_inverse_cdf_equals_reference(path: str, exhaustive_reference) -> None:
    # All 2**24 inputs, including the ~0.3 % that take erfinv's tail branch, mixed into vectors
    # with central ones: the per-number operation sequence is the reference's on this path.
    words, want = exhaustive_reference
    got = torch.ops.mlvgm_data._normals_of_words(words.to(torch.int32), 1.0)
    wrong = (bits(got) != bits(want)).nonzero().flatten()
    assert wrong.numel() == 0, f"{path}: {wrong.numel()} inputs differ, first word {int(words[wrong[0]]):#x}"


@pytest.mark.exactness
@pytest.mark.parametrize("trunc", [0.5, 2.0, 4.0])
def test_truncated_inputs_equal_reference(path: str, trunc: float) -> None:
    words = all_inputs(stride=61)
    c = philox.erf_c(trunc)
    got = torch.ops.mlvgm_data._normals_of_words(words.to(torch.int32), c)
    assert torch.equal(bits(got), bits(philox.truncated_normal(words, c)))
    assert float(got.abs().max()) <= trunc


def big_case() -> dict:
    # Enough floats that the work is split over every thread, in items that do not divide B.
    spec = LatentSpec([LatentGroup("a", (515,)), LatentGroup("b", (20,)), LatentGroup("w0", (64,), tie="z"),
                       LatentGroup("w1", (64,), tie="z")])
    policy = ViewPolicy({"a": Resample(), "b": Perturb(0.5, trunc=2.0), "w1": Perturb(0.3)}, anchor_trunc=2.0)
    return dict(spec=spec, policy=policy, batch_size=301, num_views=3, seed=5, step=6, stream=7)


def test_threads_and_work_split_change_no_bit(path: str) -> None:
    c = big_case()
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(ops.resample(**c))
    finally:
        torch.set_num_threads(threads)
    # A subset of the samples (other items, other rows per vector) has the same rows.
    ids = [300, 0, 17, 150, 151]
    subset = ops.resample(**(c | dict(batch_size=len(ids), sample_ids=ids)))
    for name in c["spec"].names:
        for r in results[1:]:
            assert torch.equal(bits(r[name]), bits(results[0][name])), name
        assert torch.equal(bits(subset[name]), bits(results[0][name][:, ids])), name


def test_concurrent_callers_get_their_own_numbers() -> None:
    # Calls from several Python threads share the helper threads; each still gets all its items.
    c = big_case()
    want = {s: ops.resample(**(c | dict(seed=s)))["a"].clone() for s in range(4)}
    errors: list[str] = []

    def call(s: int) -> None:
        for _ in range(5):
            if not torch.equal(ops.resample(**(c | dict(seed=s)))["a"], want[s]):
                errors.append(f"seed {s}")

    threads = [threading.Thread(target=call, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_forked_child_runs_the_op() -> None:
    # DataLoader workers fork after the parent used the op: the child has none of the parent's
    # helper threads and must neither wait for them nor reuse their state.
    c = big_case()
    torch.set_num_threads(2)  # conftest's guard restores the count
    want = hashlib.sha256(ops.resample(**c)["a"].numpy().tobytes()).hexdigest()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery, exit without cleanup
        try:
            got = hashlib.sha256(ops.resample(**c)["a"].numpy().tobytes()).hexdigest()
            os.write(write, got.encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    got = os.read(read, 100).decode()
    os.close(read)
    assert status == 0 and got == want


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ | env)


def test_default_path_is_the_best_the_cpu_has() -> None:
    out = run_python("import mlvgm_data.ops, torch; m = torch.ops.mlvgm_data; print(m._cpu_path(), *m._cpu_paths())",
                     MLVGM_CPU_PATH="")
    assert out.returncode == 0, out.stderr
    active, *paths = out.stdout.split()
    assert active == paths[0] and paths[-1] == "generic"


@pytest.mark.parametrize("name", PATHS)
def test_environment_variable_forces_a_path(name: str) -> None:
    code = ("import torch, mlvgm_data\nfrom mlvgm_data import ops\n"
            "spec = mlvgm_data.LatentSpec([mlvgm_data.LatentGroup('a', (37,))])\n"
            "z = ops.resample(spec, mlvgm_data.ViewPolicy(), 9, 2, 1, 2)['a']\n"
            "assert torch.equal(z, ops.resample_reference(spec, mlvgm_data.ViewPolicy(), 9, 2, 1, 2)['a'])\n"
            "print(torch.ops.mlvgm_data._cpu_path())\n")
    out = run_python(code, MLVGM_CPU_PATH=name)
    if name in supported():
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == name
    else:  # a clear error, not an illegal instruction
        assert out.returncode != 0
        assert f"MLVGM_CPU_PATH={name}: this CPU (or build) has no {name} path" in out.stderr


def test_unknown_path_is_an_error() -> None:
    out = run_python("import torch, mlvgm_data\nfrom mlvgm_data import ops\n"
                     "ops.uniform(2, 3, 0, 0)", MLVGM_CPU_PATH="sse9")
    assert out.returncode != 0 and "MLVGM_CPU_PATH must be generic, avx2 or avx512, got 'sse9'" in out.stderr
    with pytest.raises(RuntimeError, match="cpu_path must be generic, avx2 or avx512"):
        torch.ops.mlvgm_data._cpu_path("fast")


def extension_disassembly() -> str:
    from mlvgm_data import _C

    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("no objdump")
    return subprocess.run([objdump, "-d", "--no-show-raw-insn", _C.__file__], capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.uname().machine != "x86_64", reason="x86-64 Linux build")
def test_built_code_has_no_fma_and_has_every_path() -> None:
    # A fused multiply-add rounds once where the reference rounds twice: with -ffp-contract=off
    # missing, GCC fuses the AVX-512 path's _mm512_mul_ps + _mm512_add_ps (and would fuse the
    # others' products on an FMA target). The AVX-512 path cannot run here, so this is also the
    # check that it is compiled in: its kernels use zmm registers.
    asm = extension_disassembly()
    fused = re.findall(r"^\s*[0-9a-f]+:\s+(v?fn?m(?:add|sub)\w*)", asm, re.MULTILINE)
    assert not fused, f"FMA instructions in the extension: {sorted(set(fused))}"
    assert "%zmm" in asm and "%ymm" in asm
