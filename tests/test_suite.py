"""The test suite's own rules: the tiers plain ``pytest`` and ``-m`` select, the ``needs_cuda``
marker, the guard that puts global state back after every test and module, and test modules that
share helpers through helpers.py / conftest.py instead of importing each other."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]

TIERS = """
import pytest

def test_quick(): pass

@pytest.mark.slow
def test_slow(): pass

@pytest.mark.sdist
def test_sdist(): pass

@pytest.mark.exactness
def test_exact(): pass

@pytest.mark.slow
@pytest.mark.exactness
def test_slow_exact(): pass

@pytest.mark.needs_cuda
def test_gpu(): pass
"""

# test_a leaks every guarded global (from a module fixture and from the test itself); test_b,
# collected before test_a runs, finds them all as they were at collection.
LEAK = """
import random
import numpy as np
import pytest
import torch

@pytest.fixture(scope="module")
def leaky_module():
    torch.set_num_threads(1)

def test_a(leaky_module):
    assert torch.get_num_threads() == 1
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    torch.set_grad_enabled(False)
"""
CHECK = """
import random
import numpy as np
import torch

BEFORE = (torch.get_num_threads(), torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())

def test_b():
    assert torch.get_num_threads() == BEFORE[0]
    assert torch.equal(torch.get_rng_state(), BEFORE[1])
    assert random.getstate() == BEFORE[2]
    assert (np.random.get_state()[1] == BEFORE[3]).all()
    assert torch.is_grad_enabled()
"""


def _suite(pytester: pytest.Pytester, files: dict[str, str], conftest: bool = True) -> None:
    """This repository's pytest configuration (and conftest.py) around ``files`` in tests/."""
    pytester.makefile(".toml", pyproject=(ROOT / "pyproject.toml").read_text())
    tests = pytester.mkdir("tests")
    if conftest:
        (tests / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    for name, text in files.items():
        (tests / f"{name}.py").write_text(text)


def _selected(pytester: pytest.Pytester, *args: str) -> set[str]:
    out = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-q", *args).outlines
    return {line.split("::")[-1] for line in out if "::" in line}


def test_plain_pytest_deselects_slow_and_sdist_and_m_selects_each_tier(pytester: pytest.Pytester) -> None:
    _suite(pytester, {"test_tiers": TIERS})
    assert _selected(pytester) == {"test_quick", "test_exact", "test_gpu"}
    assert _selected(pytester, "-m", "slow") == {"test_slow", "test_slow_exact"}
    assert _selected(pytester, "-m", "exactness") == {"test_exact", "test_slow_exact"}
    assert _selected(pytester, "-m", "sdist") == {"test_sdist"}
    assert len(_selected(pytester, "-m", "")) == 6


def test_an_unregistered_marker_is_an_error(pytester: pytest.Pytester) -> None:
    _suite(pytester, {"test_typo": "import pytest\n\n@pytest.mark.need_cuda\ndef test_x(): pass\n"})
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert result.ret != 0 and "'need_cuda' not found in `markers`" in result.stdout.str()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: needs_cuda tests run")
def test_needs_cuda_skips_saying_why(pytester: pytest.Pytester) -> None:
    _suite(pytester, {"test_tiers": TIERS})
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rs", "-k", "gpu")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*needs CUDA: torch.cuda.is_available() is False*"])


def test_the_guard_restores_threads_rngs_and_grad_mode(pytester: pytest.Pytester) -> None:
    torch.set_num_threads(2)  # test_a sets 1 (this test's own guard puts the count back)
    _suite(pytester, {"test_a": LEAK, "test_b": CHECK})
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)
    # Without conftest.py's guard the same two modules fail: the check can tell.
    pytester.runpytest_inprocess("-p", "no:cacheprovider", "--noconftest").assert_outcomes(passed=1, failed=1)


def test_test_modules_do_not_import_each_other() -> None:
    importing = re.compile(r"^\s*(from|import)\s+test_\w+", re.M)
    offenders = [p.name for p in sorted((ROOT / "tests").glob("*.py")) if importing.search(p.read_text())]
    assert not offenders, f"shared helpers belong in tests/helpers.py or tests/conftest.py: {offenders}"
