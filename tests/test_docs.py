"""The README and the manual (``docs/**/*.md``) as an executable contract: every Python block runs,
every command line runs, every table is the one its report renders, every link and ``make`` line resolves.

Python blocks of a page run in order in one namespace, as a reader pasting them one after the other
would, in a fresh folder. A block may be preceded by ``<!-- docs-test: skip: REASON -->`` when it
cannot run here (a GPU, a real NVlabs pickle, a download); the page then has a block that runs the
same calls on a stand-in it builds in plain sight. There is no hidden setup: a block runs exactly as
the page shows it, at sizes shrunk by ``SMALL`` (fewer samples, steps and batches).

Command lines (``mlvgm-data …``, ``python scripts/…``, ``python benchmarks/…``,
``python -m mlvgm_data…``) run with small settings (``CLI_SMALL``) in one folder per page, every
path they write moved into it; ``make`` lines must name a Makefile target; ``pip``/``apt-get``
lines are left to the install tests (``tests/test_sdist.py``). Fashion-MNIST comes from tiny IDX
files the test writes (``MLVGM_DATA``), so neither the data nor the network is needed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import types
from pathlib import Path

import pytest
from helpers import tiny_generator, write_split

ROOT = Path(__file__).resolve().parent.parent


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TABLES = _load_script("docs_tables")
PAGES = TABLES.pages(ROOT)
BLOCK = re.compile(r"(?:<!-- docs-test: (?P<directive>.*?) -->\n)?```(?P<lang>[\w-]*)\n(?P<code>.*?)```", re.S)

SMALL = [  # (pattern, replacement): the same calls at sizes a test can afford
    (r"samples=2000\b", 'samples=128, mi={"steps": 3}'),  # view_quality: pairs per policy, InfoNCE critic steps
    (r"samples=\d[\d_]*", "samples=128"),
    (r"\bsteps=300\b", "steps=3"),
    (r"budget=\d+", "budget=None"),
    (r"batch_size=(256|128|64)\b", "batch_size=16"),
    (r"steps=20_000 // 128", "steps=2"),
    (r"steps=100\b", "steps=2"),
    (r"steps_per_epoch=\d+", "steps_per_epoch=2"),
    (r"GeneratedViews\(generator, policy, 20_000", "GeneratedViews(generator, policy, 64"),
]


def rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def blocks(page: Path, lang: str) -> list[tuple[str | None, str]]:
    return [(m["directive"], m["code"]) for m in BLOCK.finditer(page.read_text()) if m["lang"] == lang]


def shrink(code: str) -> str:
    for pattern, replacement in SMALL:
        code = re.sub(pattern, replacement, code)
    return code


def skipped(directive: str | None) -> bool:
    return bool(directive) and directive.startswith("skip:")


def file_name(directive: str | None) -> str | None:
    """``<!-- docs-test: file: NAME -->``: the block is the file NAME a reader saves beside them."""
    return directive[len("file:"):].strip() if directive and directive.startswith("file:") else None


def write_files(page: Path, folder: Path) -> None:
    for directive, code in blocks(page, "python"):
        if file_name(directive):
            (folder / file_name(directive)).write_text(code)


@pytest.fixture(scope="module")
def fashion_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny Fashion-MNIST IDX files under their real names (the pages' FashionMNIST() reads them)."""
    data = tmp_path_factory.mktemp("fashion")
    write_split(data, n=64, train=True)
    write_split(data, n=32, train=False, seed=1)
    return data


@pytest.fixture
def reader_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fashion_files: Path) -> Path:
    """A fresh folder, the tiny data, and a config folder of its own (a stored policy stays here)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLVGM_DATA", str(fashion_files))
    monkeypatch.setenv("MLVGM_CONFIG", str(tmp_path / "config"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.syspath_prepend(str(tmp_path))  # a page's module:factory file is importable, as from a shell there
    return tmp_path


# --- the pages themselves ---------------------------------------------------------------------------

def test_the_manual_has_its_pages_and_every_page_is_in_the_nav() -> None:
    nav = set(re.findall(r":\s*\"?([\w/.-]+\.md)\"?\s*$", (ROOT / "mkdocs.yml").read_text(), re.M))
    pages = {str(p.relative_to(ROOT / "docs")) for p in PAGES[1:]}
    assert pages == nav, f"in docs/ but not in the nav: {pages - nav}; in the nav but missing: {nav - pages}"
    assert len(pages) >= 20


def test_the_readme_is_a_landing_page_whose_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if not t.startswith(("http://", "https://"))]
    assert any(t.startswith("docs/") and t.endswith(".md") for t in local)
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_no_hidden_setup_and_every_skip_gives_its_reason() -> None:
    for page in PAGES:
        text = page.read_text()
        assert "readme-test:" not in text, f"{rel(page)}: the old readme-test directive"
        for directive in re.findall(r"^<!-- docs-test: (.*?) -->$", text, re.M):
            reason = directive.startswith("skip: ") and len(directive) > 20
            ok = reason or re.fullmatch(r"file: [\w.]+\.py", directive)
            assert ok, f"{rel(page)}: directive {directive!r}"
        python = blocks(page, "python")
        if any(skipped(d) for d, _ in python):  # a skipped block has a running one beside it
            assert any(not skipped(d) for d, _ in python), f"{rel(page)}: every Python block is skipped"


def test_every_table_is_the_one_its_report_renders() -> None:
    stale = [rel(p) for p in TABLES.stale(ROOT)]
    assert not stale, f"tables out of date in {stale}: run python scripts/docs_tables.py"


def test_an_unknown_table_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown table 'nope'"):
        TABLES.render("<!-- table: nope -->\n<!-- /table -->\n")


def test_a_changed_figure_makes_its_table_stale(tmp_path: Path) -> None:
    """The check can fail: a page whose table was edited by hand differs from the rendering."""
    (tmp_path / "docs").mkdir()
    for name in ("demo_fashion_report.json",):
        (tmp_path / "docs" / name).write_text((ROOT / "docs" / name).read_text())
    page = "<!-- table: demo-cs480 -->\n<!-- /table -->\n<!-- table: demo-headline -->\n<!-- /table -->\n"
    rendered = TABLES.render(page, tmp_path)
    assert "Not measured yet" in rendered and "83.5 ± 0.4" in rendered  # a missing report says which command
    (tmp_path / "README.md").write_text(rendered.replace("83.5 ± 0.4", "93.5 ± 0.4"))
    assert TABLES.stale(tmp_path) == [tmp_path / "README.md"]


def test_the_build_hook_drops_only_the_known_griffe_warning(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    hooks = _load_script("mkdocs_hooks")
    logger = logging.getLogger(hooks.GRIFFE_LOGGER)
    saved = list(logger.filters)
    try:
        hooks.on_startup(command="build", dirty=False)
        hooks.on_startup(command="build", dirty=False)  # idempotent: one filter
        assert sum(isinstance(f, hooks._DropKnown) for f in logger.filters) == 1
        with caplog.at_level(logging.WARNING, logger=hooks.GRIFFE_LOGGER):
            logger.warning("griffe: %s (use strings only)", hooks.KNOWN)
            logger.warning("griffe: Unsupported item in another.module.__all__: X (use strings only)")
        assert [r.getMessage() for r in caplog.records] == [
            "griffe: Unsupported item in another.module.__all__: X (use strings only)"]
    finally:
        logger.filters[:] = saved


PYTHON_PAGES = [p for p in PAGES if any(not skipped(d) for d, _ in blocks(p, "python"))]


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=rel)
def test_every_python_block_runs(page: Path, reader_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_files(page, reader_env)
    module = types.ModuleType("docs_page")  # a real module, as a reader's script is (dataclasses look it up)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for directive, code in blocks(page, "python"):
        if skipped(directive) or file_name(directive):
            continue
        try:
            exec(compile(shrink(code), rel(page), "exec"), namespace)  # noqa: S102 (the page's own code)
        except Exception as e:  # name the block that failed
            raise AssertionError(f"{rel(page)}: block failed: {type(e).__name__}: {e}\n{code}") from e


def test_make_lines_name_real_targets() -> None:
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    lines = [line for page in PAGES for line in command_lines(page) if line.startswith("make")]
    assert lines
    for line in lines:
        assert set(line.split()[1:]) <= targets, line


# --- command lines ----------------------------------------------------------------------------------

def command_lines(page: Path) -> list[str]:
    """Every command of a page's bash blocks (continuation lines joined, comments dropped)."""
    lines = []
    for directive, code in blocks(page, "bash"):
        if skipped(directive):
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
    "export": ["--samples", "8", "--batch-size", "4", "--shard-size", "4"],
}
SCRIPT_SMALL = {"fashion train": ["--epochs", "1"], "fashion score": ["--n", "40"],
                "compare_runs": ["--pixel-samples", "8"],
                "benchmarks/augment.py": ["--loop-repeats", "1", "--batch", "32", "--no-dali"]}
OUTPUT_PREFIXES = ("mlvgm_data/assets/", "docs/", "runs/", "~/")


def _retarget(word: str, tmp: Path) -> str:
    """A path the command writes goes under ``tmp`` (inputs named there by earlier lines too)."""
    for prefix in OUTPUT_PREFIXES:
        if word.startswith(prefix):
            return str(tmp / word[len(prefix):])  # runs/x/model -> tmp/x/model
    if re.fullmatch(r"[\w.-]+\.(json|png)", word):
        return str(tmp / word)
    return word


def _cli(words: list[str], tmp: Path) -> list[str]:
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
            return args + ["--steps", "2", "--batch-size", "8"]
    for flag, default in (("demo", str(tmp / "demo")), ("views", str(tmp / "views.png"))):
        if command == flag and "--out" not in args:
            args += ["--out", default]
    return args + CLI_SMALL.get(command, [])


def _command(line: str, tmp: Path) -> tuple[list[str], dict]:
    env = dict(os.environ, MLVGM_CONFIG=str(tmp / "config"), MPLBACKEND="Agg", PYTHONPATH=str(tmp))
    words = shlex.split(line)
    while "=" in words[0]:
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    words = [_retarget(w, tmp) for w in words]
    if words[0] == "mlvgm-data":
        return _cli(words, tmp), env
    args = [sys.executable, *[str(ROOT / w) if w.startswith(("scripts/", "benchmarks/")) else w for w in words[1:]]]
    joined = " ".join(words)
    for key, extra in SCRIPT_SMALL.items():
        if all(part in joined for part in key.split()):
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


COMMAND_PAGES = [p for p in PAGES if any(_runnable(line) for line in command_lines(p))]


@pytest.mark.slow
@pytest.mark.parametrize("page", COMMAND_PAGES, ids=rel)
def test_every_command_line_runs(page: Path, tmp_path: Path, fashion_files: Path) -> None:
    """In page order in one folder (a line may read what an earlier one wrote), at small sizes."""
    write_files(page, tmp_path)
    grey = tiny_generator(tmp_path, 1)  # the "GENERATOR" placeholder of the Fashion-MNIST lines
    for line in [line for line in command_lines(page) if _runnable(line)]:
        if "--resume" in line:
            continue  # resuming is tested on its own (tests/test_train_cli.py); here it has no run to resume
        args, env = _command(line.replace("GENERATOR", grey), tmp_path)
        env["MLVGM_DATA"] = str(fashion_files)
        run = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, f"{rel(page)}: line failed: {line}\n{run.stderr[-3000:]}"
