"""The package's shape, as docs/ARCHITECTURE.md draws it: no two modules import each other, modules
stay under 400 lines and functions under 60."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "segcli"


def _modules() -> dict[str, ast.Module]:
    trees = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        trees[name] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return trees


def _imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """segcli modules `name` imports anywhere (top level, in functions, under TYPE_CHECKING)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {module for module in found if module in known and module != name}


def test_no_two_modules_import_each_other():
    trees = _modules()
    known = set(trees)
    graph = {name: _imports(name, tree, known) for name, tree in trees.items()}
    packages = {name for name in known if (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()}
    mutual = sorted((a, b) for a, targets in graph.items() for b in targets
                    if a < b and a in graph.get(b, ()) and not ({a, b} & packages))
    assert mutual == []


def test_modules_and_functions_stay_small():
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 400:
            too_long.append(f"{path.name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                too_long.append(f"{path.name}:{node.lineno} {node.name}")
    assert too_long == []


def test_the_check_sees_a_mutual_import(tmp_path):
    """The import check itself: two modules that import each other are found."""
    a = ast.parse("from segcli.b import x\n")
    b = ast.parse("def f():\n    import segcli.a\n")
    known = {"segcli.a", "segcli.b"}
    assert _imports("segcli.a", a, known) == {"segcli.b"} and _imports("segcli.b", b, known) == {"segcli.a"}
