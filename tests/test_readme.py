"""The README as an executable contract: every Python block runs, every command line runs.

Python blocks run in order in one namespace, as a reader pasting them one after the other would.
A block preceded by ``<!-- readme-test: ... -->`` gets a directive:

* ``setup: CODE`` runs hidden code first (a stand-in for what a reader has: ``G`` = their
  StyleGAN, ``model`` = their trained generator, ``views`` = a batch of views);
* ``skip: REASON`` skips a block that cannot run here (needs a GPU), or a bash block whose
  commands another block runs already at other options (the reason says which).

Sizes shrink for the test (``SMALL``: fewer samples, steps and seconds; the code is otherwise the
README's). Command lines (``mlvgm-data …``, ``python scripts/…``, ``python benchmarks/…``,
``python -m mlvgm_data…``) run with small settings, and every path they write to is moved into a
temporary folder; ``make`` lines must name a Makefile target; ``pip``/``apt-get`` lines are left
to the install tests.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import tiny_generator, write_split

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
    monkeypatch.syspath_prepend(str(ROOT / "tests"))  # setup directives import tests/helpers.py
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
    """Every command of the README's bash blocks (continuation lines joined, comments dropped)."""
    lines = []
    for directive, code in blocks("bash"):
        if directive and directive.startswith("skip:"):
            continue
        for line in code.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(" ".join(line.split()))
    return lines


CLI_SMALL = {  # options appended to each command (later options win in argparse)
    "train": ["--steps", "2", "--batch-size", "8", "--eval-images", "16"],
    # --force: a shrunk run may store its policy although the shipped one had a larger budget
    "mi": ["--samples", "128", "--steps", "2", "--budget", "20", "--encoder-samples", "32", "--no-progress", "--force"],
    "demo": ["--quick", "--steps", "2", "--seeds", "1", "--no-progress"],
    "bench": ["--quick", "--rows", "pipe,pil"],
    "views": ["--anchors", "2", "--num-views", "2"],
}
SCRIPT_SMALL = {"fashion_classifier train": ["--epochs", "1"], "fashion_classifier score": ["--n", "40"]}
OUTPUT_PREFIXES = ("mlvgm_data/assets/", "docs/", "runs/", "~/")


def _retarget(word: str, tmp: Path) -> str:
    """A path the command writes goes under ``tmp`` (inputs named there by earlier lines too)."""
    if word.startswith(OUTPUT_PREFIXES) or re.fullmatch(r"[\w.-]+\.(json|png)", word):
        return str(tmp / Path(word.replace("~/", "")).name)
    return word


def _command(line: str, tmp: Path) -> tuple[list[str], dict]:
    env = dict(os.environ, MLVGM_CONFIG=str(tmp / "config"))
    words = shlex.split(line)
    while "=" in words[0]:
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    words = [_retarget(w, tmp) for w in words]
    if words[0] == "mlvgm-data":
        command = words[1]
        args = [str(Path(sys.executable).parent / "mlvgm-data"), *words[1:]]
        if command == "train":
            data = args[args.index("--data") + 1] if "--data" in args else "shapes"
            if data not in ("shapes", "fashion-mnist"):  # a user's folder of images
                from mlvgm_data.data import export_jpeg

                export_jpeg(tmp / "images", 16, 32)
                args[args.index("--data") + 1] = str(tmp / "images")
            if "--out" not in args:
                args += ["--out", str(tmp / "run")]
            if "--model" in args and args[args.index("--model") + 1] != "hvae":
                args += ["--steps", "2", "--batch-size", "8"]
                return args, env
        for flag, default in (("demo", str(tmp / "demo")), ("views", str(tmp / "views.png"))):
            if command == flag and "--out" not in args:
                args += ["--out", default]
        return args + CLI_SMALL.get(command, []), env
    args = [sys.executable, *[str(ROOT / w) if w.startswith(("scripts/", "benchmarks/")) else w for w in words[1:]]]
    script = " ".join(words[1:3]).replace("-m mlvgm_data.models.", "").replace(".py", "")
    for key, extra in SCRIPT_SMALL.items():
        if script.endswith(key) or key in " ".join(words):
            args += extra
    if "ship_policy.py" in line:
        import shutil

        shutil.copytree(ROOT / "mlvgm_data" / "assets", tmp / "assets", dirs_exist_ok=True)
        args += ["--assets", str(tmp / "assets")]
    if "make_docs_images.py" in line and "--out" not in words:
        args += ["--out", str(tmp / "samples.png")]
    return args, env


def _runnable(line: str) -> bool:
    return bool(re.match(r"^(\w+=\S+ )*(mlvgm-data|python (scripts|benchmarks)/|python -m mlvgm_data)", line))


@pytest.mark.slow
def test_every_command_line_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In README order in one folder (a line may read what an earlier one wrote), at small sizes,
    on tiny Fashion-MNIST files the test writes (so the real data is not needed)."""
    data = tmp_path / "fashion"
    write_split(data, n=64, train=True)
    write_split(data, n=32, train=False, seed=1)
    monkeypatch.setenv("MLVGM_DATA", str(data))
    grey = tiny_generator(tmp_path, 1)  # the "GENERATOR" placeholder of the Fashion-MNIST lines
    lines = [line for line in command_lines() if _runnable(line)]
    assert len(lines) >= 8
    for line in lines:
        if "--resume" in line:
            continue  # resuming is tested on its own (tests/test_train_cli.py); here it has no run to resume
        args, env = _command(line.replace("GENERATOR", grey), tmp_path)
        run = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, f"README line failed: {line}\n{run.stderr[-3000:]}"


def test_make_lines_name_real_targets() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    for line in command_lines():
        if line.startswith("make"):
            assert set(line.split()[1:]) <= targets, line
