"""The house rules, checked: no import circle, no arrow from the library core to the applications
(``mlvgm_data.apps``) — static imports, ``importlib.import_module`` calls, module names in strings
(registries such as ``"mlvgm_data.models.hvae:build"``) and lazy ``__getattr__`` imports alike —
no module importing another module's private names, no library file over 600 lines, none over 450
without the reason in its docstring, and no core function over 60 lines.

The checks read the sources with :mod:`ast` (nothing is imported), so each is also run on a small
planted package to show that it fails when the rule is broken.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mlvgm_data"
APPS = "apps"  # mlvgm_data.apps: the command line, trainers, demo, bench, SSL and evaluation
MAX_LINES = 600
EXPLAINED_LINES = 450  # above this a module's docstring says "Why one file" (and why)
MAX_CORE_FUNCTION = 60
_NAMED = re.compile(r"^(?P<module>[A-Za-z_]\w*(\.[A-Za-z_]\w*)+)(:\w+)?$")


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_import_module(call: ast.Call) -> bool:
    f = call.func
    return (isinstance(f, ast.Attribute) and f.attr == "import_module") or (
        isinstance(f, ast.Name) and f.id == "import_module")


def _dynamic_targets(tree: ast.Module, package: str, top: str, modules: dict[str, Path]) -> set[str]:
    """Modules reached without an import statement: named in a string (``"pkg.mod"`` or
    ``"pkg.mod:attr"``: registries and ``import_module("pkg.mod")``), or imported relatively by
    name (``import_module(f".{name}", __name__)``, a package's lazy ``__getattr__``): then every
    name in the module's literal collections that is a submodule counts."""
    found: set[str] = set()
    relative = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = _NAMED.match(node.value)
            if m and m["module"].split(".")[0] == top:
                found.add(m["module"])
        elif isinstance(node, ast.Call) and _is_import_module(node) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.JoinedStr) or (isinstance(arg, ast.Constant) and str(arg.value).startswith(".")):
                relative = True
    if relative:
        names = {e.value for node in ast.walk(tree) if isinstance(node, (ast.Set, ast.List, ast.Tuple, ast.Dict))
                 for e in (node.keys if isinstance(node, ast.Dict) else node.elts)
                 if isinstance(e, ast.Constant) and isinstance(e.value, str)}
        found |= {f"{package}.{n}" for n in names if f"{package}.{n}" in modules}
    return {t for t in found if t in modules or any(m.startswith(t + ".") for m in modules)}


def _imports(root: Path) -> dict[str, set[tuple[str, str]]]:
    """module -> {(imported module, imported name or '')} for imports of the package, static and dynamic."""
    modules = _modules(root)
    top = root.name
    edges: dict[str, set[tuple[str, str]]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                if not target.startswith(top):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub.endswith("._C"):  # the compiled extension
                        continue
                    edges[module].add((sub, "") if sub in modules else (target, alias.name))
            elif isinstance(node, ast.Import):
                edges[module] |= {(a.name, "") for a in node.names if a.name in modules}
        edges[module] |= {(t, "") for t in _dynamic_targets(tree, package, top, modules)}
    return edges


def _is_app(module: str) -> bool:
    parts = module.split(".")
    return len(parts) > 1 and parts[1] == APPS


def core_to_app(root: Path) -> list[tuple[str, str]]:
    return sorted((a, b) for a, targets in _imports(root).items() for b, _ in targets
                  if not _is_app(a) and _is_app(b))


def import_circles(root: Path) -> list[str]:
    edges = {m: {t for t, _ in ts if t != m} for m, ts in _imports(root).items()}
    state: dict[str, int] = {}
    circles: list[str] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                circles.append(" -> ".join(path[path.index(t):] + [t]))
            elif t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    return circles


def private_imports(root: Path) -> list[tuple[str, str, str]]:
    return sorted((m, t, name) for m, ts in _imports(root).items() for t, name in ts
                  if name.startswith("_") and not name.startswith("__") and t != m)


def long_core_functions(root: Path) -> list[str]:
    out = []
    for module, path in _modules(root).items():
        if _is_app(module):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_CORE_FUNCTION:
                    out.append(f"{module}.{node.name}: {length} lines")
    return out


# --- the rules on the package ------------------------------------------------------------------

def test_the_core_never_imports_an_app() -> None:
    assert not core_to_app(PACKAGE)


def test_no_import_circle() -> None:
    assert not import_circles(PACKAGE)


def test_no_module_imports_another_modules_private_names() -> None:
    assert not private_imports(PACKAGE)


def test_no_core_function_is_over_60_lines() -> None:
    assert not long_core_functions(PACKAGE)


def test_library_files_stay_small() -> None:
    big = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big
    unexplained = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                   if len(p.read_text().splitlines()) > EXPLAINED_LINES
                   and "Why one file" not in (ast.get_docstring(ast.parse(p.read_text())) or "")]
    assert not unexplained


# --- the checks catch what they are for ----------------------------------------------------------

PLANTED = {
    "core/__init__.py": "",
    "core/static.py": "from ..apps import demo\n",
    "core/dynamic.py": "import importlib\nMOD = importlib.import_module('pkg.apps.demo')\n",
    "core/registry.py": "FAMILIES = {'x': 'pkg.apps.train:build'}\n",
    "__init__.py": ("import importlib\n_LAZY = {'apps', 'core'}\n\n"
                    "def __getattr__(name):\n    return importlib.import_module(f'.{name}', __name__)\n"),
    "apps/__init__.py": "",
    "apps/demo.py": "from ..core import static\n",
    "apps/train.py": "def build(c):\n    return c\n",
    "core/cycle_a.py": "from . import cycle_b\n",
    "core/cycle_b.py": "from . import cycle_a\n",
    "core/private.py": "from .static import _hidden\n",
    "core/long.py": "def f():\n" + "    x = 1\n" * 61,
}


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    for name, text in PLANTED.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_checks_find_planted_breaches(planted: Path) -> None:
    assert core_to_app(planted) == [("pkg", "pkg.apps"), ("pkg.core.dynamic", "pkg.apps.demo"),
                                    ("pkg.core.registry", "pkg.apps.train"), ("pkg.core.static", "pkg.apps.demo")]
    assert any("pkg.core.cycle_a" in c and "pkg.core.cycle_b" in c for c in import_circles(planted))
    assert private_imports(planted) == [("pkg.core.private", "pkg.core.static", "_hidden")]
    assert long_core_functions(planted) == ["pkg.core.long.f: 62 lines"]
