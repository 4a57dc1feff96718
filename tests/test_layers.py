"""The package's shape, as docs/ARCHITECTURE.md draws it: every import goes down the layers (LAYERS), no two
modules import each other, each name has one import path, library errors name no command-line flags, modules
stay under 400 lines and functions under 60."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "segcli"


@functools.lru_cache(maxsize=1)
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


# docs/ARCHITECTURE.md "Layers", bottom to top. A unit is a top-level module or a package of segcli
# ("segcli" is segcli/__init__.py). A module may import its own package, any unit of a layer below,
# and other units of its own layer as long as no units import each other round a cycle.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundations", ("segcli", "errors", "text", "atomic", "provenance", "inputs", "imageio", "device", "palettes",
                     "metrics", "output_names", "data", "datasets", "crf", "crf_meanfield", "crf_torch",
                     "permutohedral")),
    ("checkpoints and models", ("checkpoints", "models")),
    ("engine", ("engine", "loaded_model", "inference_options", "tiling", "memory_retry", "model_output",
                "execution_policy")),
    ("outputs", ("outputs",)),
    ("commands as libraries", ("api", "pipeline", "distributed", "serve", "raster", "evaluation", "benchmarking",
                               "training", "export", "upsampling", "report")),
    ("cli", ("cli", "__main__")),
)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _layer_of() -> dict[str, int]:
    return {unit: level for level, (_, units) in enumerate(LAYERS) for unit in units}


def _layer_problems(graph: dict[str, set[str]]) -> list[str]:
    """Import edges (module -> modules) that go up a layer, units no layer names, and cycles of units."""
    level = _layer_of()
    problems = sorted({f"{_unit(name)}: in no layer of LAYERS" for name in graph if _unit(name) not in level})
    units: dict[str, set[str]] = {}
    for name, targets in sorted(graph.items()):
        for target in sorted(targets):
            low, high = _unit(name), _unit(target)
            if low == high or low not in level or high not in level:
                continue
            units.setdefault(low, set()).add(high)
            if level[high] > level[low]:
                problems.append(f"{name} ({LAYERS[level[low]][0]}) imports {target} ({LAYERS[level[high]][0]})")
    problems.extend(f"units import each other round a cycle: {' -> '.join(cycle)}" for cycle in _cycles(units))
    return problems


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each unit that lies on one (depth-first search)."""
    found, done = [], set()

    def visit(unit: str, path: list[str]) -> None:
        if unit in path:
            cycle = path[path.index(unit):] + [unit]
            if not set(cycle) <= done:
                found.append(cycle)
                done.update(cycle)
            return
        for target in sorted(edges.get(unit, ())):
            visit(target, path + [unit])

    for unit in sorted(edges):
        visit(unit, [])
    return found


def _graph() -> dict[str, set[str]]:
    trees = _modules()
    known = set(trees)
    return {name: _imports(name, tree, known) for name, tree in trees.items()}


def test_every_import_goes_down_the_documented_layers():
    assert _layer_problems(_graph()) == []


def test_the_layers_are_the_documented_ones():
    """Every unit of the package sits in one layer, and docs/ARCHITECTURE.md draws the same layers."""
    units = [unit for _, members in LAYERS for unit in members]
    assert len(units) == len(set(units))
    assert {_unit(name) for name in _modules()} == set(units)
    drawing = (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8").split("## Modules")[0]
    assert [unit for unit in units if unit not in drawing] == []


def test_the_layer_check_sees_an_upward_import_and_a_cycle():
    assert _layer_problems({"segcli.inputs": {"segcli.outputs.png"}, "segcli.outputs.png": set()}) == [
        "segcli.inputs (foundations) imports segcli.outputs.png (outputs)"]
    assert _layer_problems({"segcli.export.a": {"segcli.training.b"}, "segcli.training.b": {"segcli.export.a"}}) == [
        "units import each other round a cycle: export -> training -> export"]
    assert _layer_problems({"segcli.new_module": set()}) == ["new_module: in no layer of LAYERS"]
    assert _layer_problems({"segcli.engine": {"segcli.checkpoints.record"}, "segcli.crf": {"segcli.errors"}}) == []


def _defined_names(tree: ast.Module) -> set[str]:
    """Names a module defines itself (functions, classes, assignments), not names it imports."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(name.id for target in targets for name in ast.walk(target) if isinstance(name, ast.Name))
        elif isinstance(node, (ast.If, ast.Try)):
            names.update(_defined_names(ast.Module(body=node.body + getattr(node, "orelse", []), type_ignores=[])))
    return names


def _borrowed_imports(path: Path, trees: dict[str, ast.Module]) -> list[str]:
    """`from segcli.X import name` in `path` where X only imports `name` from elsewhere (a second path to it)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in trees:
            defined = _defined_names(trees[node.module])
            found.extend(f"{path.name}:{node.lineno} {node.module}.{alias.name}" for alias in node.names
                         if alias.name not in defined and f"{node.module}.{alias.name}" not in trees)
    return found


def test_each_name_is_imported_from_the_module_that_defines_it():
    """One import path per function: no re-exports (a package's __init__ listing its modules' names, a
    module importing a name only to pass it on); callers import from the defining module."""
    trees = _modules()
    root = PACKAGE.parent
    files = [path for folder in ("segcli", "tests", "benchmarks", "training") for path in sorted((root / folder).rglob("*.py"))]
    assert [found for path in files for found in _borrowed_imports(path, trees)] == []


def test_no_module_keeps_an_unused_segcli_import_for_others():
    """`from segcli.x import name  # noqa: F401` kept only so that callers may import `name` from here."""
    kept = [f"{path.relative_to(PACKAGE)}:{number}" for path in sorted(PACKAGE.rglob("*.py"))
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if line.lstrip().startswith("from segcli") and "noqa: F401" in line]
    assert kept == []


def test_the_re_export_check_sees_a_re_export(tmp_path):
    trees = {"segcli.outputs": ast.parse("from segcli.atomic import atomic_write\nKINDS = ()\n"),
             "segcli.atomic": ast.parse("def atomic_write():\n    pass\n")}
    caller = tmp_path / "caller.py"
    caller.write_text("from segcli.outputs import KINDS, atomic_write\nfrom segcli.atomic import atomic_write\n")
    assert _borrowed_imports(caller, trees) == ["caller.py:1 segcli.outputs.atomic_write"]


_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")
_OTHER_PROGRAMS = re.compile(r"(pip install|`ray start)[^`'\"]*")  # their flags, not segcli's


def _messages(tree: ast.Module) -> list[ast.Call]:
    """The calls whose text a user reads: exceptions raised, warnings given (`warnings.warn(...)`) and warnings
    built (`SomeWarning(...)`, e.g. returned for a caller to give)."""
    calls = [node.exc for node in ast.walk(tree) if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)]
    calls += [node for node in ast.walk(tree) if isinstance(node, ast.Call) and (ast.unparse(node.func).endswith(
        "Warning") or ast.unparse(node.func) in ("warnings.warn", "warnings.warn_explicit", "warn"))]
    return calls


def _flags_in_messages(path: Path, tree: ast.Module) -> list[str]:
    """Command-line flags in the text of exceptions and warnings outside cli/. A flag belongs in `hint=`, which
    the CLI edge adds; click's exceptions are the command line's own, `Refused` is the server's HTTP answer."""
    constants = {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                 and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
                 for target in node.targets if isinstance(target, ast.Name)}  # e.g. a module's TRAIN_HINT
    found = []
    for call in _messages(tree):
        name = ast.unparse(call.func)
        if name.startswith("click.") or name == "Refused":
            continue
        hints = {id(sub) for keyword in ast.walk(call) if isinstance(keyword, ast.keyword) and keyword.arg == "hint"
                 for sub in ast.walk(keyword.value)}  # a warning built inside warnings.warn(...) has its own
        for sub in ast.walk(call):
            if id(sub) in hints:
                continue
            text = sub.value if isinstance(sub, ast.Constant) else constants.get(getattr(sub, "id", None))
            if isinstance(text, str):
                found.extend(f"{path.name}:{sub.lineno} {flag}" for flag in _FLAG.findall(_OTHER_PROGRAMS.sub("", text)))
    return list(dict.fromkeys(found))  # a warning built inside warnings.warn(...) is seen twice


def test_library_errors_name_no_command_line_flags():
    """Python callers read library terms ("above the limit (max_pixels)"), in errors and warnings alike;
    `--max-pixels` goes in the hint."""
    files = [path for path in sorted(PACKAGE.rglob("*.py")) if "cli" not in path.relative_to(PACKAGE).parts]
    assert [found for path in files for found in _flags_in_messages(path, ast.parse(path.read_text("utf-8")))] == []


def test_the_flag_check_sees_a_flag_outside_the_hint():
    tree = ast.parse('raise InputImageError(f"{path} is too large; raise it with --max-pixels")\n'
                     'raise InputImageError(f"{path} is too large (max_pixels)", hint="raise it with --max-pixels")\n'
                     'raise click.UsageError("--tile needs a number")\n'
                     'raise MissingDependencyError("pip install --force-reinstall segcli")\n'
                     'HINT = "pass --decoders DIR"\n'
                     'raise CheckpointError(f"no decoder; {HINT}")\n'
                     'raise CheckpointError("no decoder", hint=HINT)\n')
    assert _flags_in_messages(Path("imageio.py"), tree) == ["imageio.py:1 --max-pixels", "imageio.py:6 --decoders"]


def test_the_flag_check_sees_a_flag_in_a_warning():
    tree = ast.parse('warnings.warn(f"{name} was trained on shapes; pass --weights FILE", SyntheticScenesWarning)\n'
                     'return SyntheticScenesWarning(f"{name} was trained on shapes; pass --weights FILE")\n'
                     'return SyntheticScenesWarning(f"{name} was trained on shapes", hint="pass --weights FILE")\n'
                     'warnings.warn(SegcliWarning("no photographs", hint="pass --weights FILE"))\n')
    assert _flags_in_messages(Path("resolve.py"), tree) == ["resolve.py:1 --weights", "resolve.py:2 --weights"]
