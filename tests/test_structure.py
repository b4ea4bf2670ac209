"""The house rules, checked: no import circle, no arrow from the library core to the apps, no
module importing another module's private names, no library file over 600 lines, and none over 450 without the reason in its docstring."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mlvgm_data"
APPS = {"apps", "models", "bench", "commands", "cli"}
MAX_LINES = 600
EXPLAINED_LINES = 450  # above this a module's docstring says "Why one file" (and why)


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[tuple[str, str]]]:
    """module -> {(imported module, imported name or '')} for imports of this package."""
    edges: dict[str, set[tuple[str, str]]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                if not target.startswith("mlvgm_data"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub.endswith("._C"):  # the compiled extension
                        continue
                    edges[module].add((sub, "") if sub in modules else (target, alias.name))
            elif isinstance(node, ast.Import):
                edges[module] |= {(a.name, "") for a in node.names if a.name in modules}
    return edges


def _layer(module: str) -> str:
    parts = module.split(".")
    return "app" if len(parts) > 1 and parts[1] in APPS else "core"


def test_the_core_never_imports_an_app() -> None:
    edges = _imports(_modules())
    bad = sorted((a, b) for a, targets in edges.items() for b, _ in targets if _layer(a) == "core" and _layer(b) == "app")
    assert not bad


def test_no_import_circle() -> None:
    edges = {m: {t for t, _ in ts} for m, ts in _imports(_modules()).items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])


def test_no_module_imports_another_modules_private_names() -> None:
    bad = sorted((m, t, name) for m, ts in _imports(_modules()).items() for t, name in ts
                 if name.startswith("_") and not name.startswith("__") and t != m)
    assert not bad


def test_library_files_stay_small() -> None:
    big = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big
    unexplained = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                   if len(p.read_text().splitlines()) > EXPLAINED_LINES
                   and "Why one file" not in (ast.get_docstring(ast.parse(p.read_text())) or "")]
    assert not unexplained
