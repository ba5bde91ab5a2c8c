"""The shape of src/dopplerdiff, read from the AST: imports point one way, functions and files stay short.

Every import counts, also one inside a function: a lazy import still is a dependency, and hiding one in a
function is how a cycle is usually dodged. A top-level module (``generate.py``, ``workflow.py``) is a package
of its own in the package graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
ROOT_PKG = "dopplerdiff"
MAX_FUNCTION_LINES = 60  # body lines, docstring excluded
MAX_FILE_LINES = 400

# Functions allowed over MAX_FUNCTION_LINES for now; remove an entry once its function is short.
LONG_FUNCTION_ALLOWLIST: set[str] = set()

# The rules of docs/architecture.md: (importing package, imported package) pairs that must not occur.
FORBIDDEN = [
    ("evaluate", "train"),
    ("train", "evaluate"),
    ("synthetic", "evaluate"),
]
CLI_IMPORTERS = {"cli", "__main__"}  # the only packages that may import cli
PROJECT_TESTS = {"test_architecture.py", "test_docs.py"}  # the only test files at the top of tests/


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(src: Path = SRC) -> dict[str, Path]:
    """{module name: file} of every module of the package under ``src``."""
    return {module_name(p, src): p for p in sorted((src / ROOT_PKG).rglob("*.py"))}


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module named by ``from <base> import ...`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    keep = len(parts) - node.level + (1 if is_package else 0)
    return ".".join(parts[:keep] + ([node.module] if node.module else []))


def imported_modules(module: str, path: Path, modules: set[str]) -> set[str]:
    """Project modules that ``module`` imports anywhere in it: ``from x import y`` is module ``x.y`` when that
    is a module, else ``x``; ``import x.y`` is ``x.y``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, path.name == "__init__.py", node)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {name for name in found if name in modules and name != module}


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    files = source_files(src)
    return {m: imported_modules(m, p, set(files)) for m, p in files.items()}


def package_of(module: str) -> str:
    """``dopplerdiff.evaluate.report`` -> ``evaluate``; a top-level module (``generate``) is its own node."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_graph(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, deps in modules.items():
        src = package_of(module)
        graph.setdefault(src, set()).update(package_of(d) for d in deps if package_of(d) != src)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted; [] if acyclic."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def body_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from ``def`` to the function's end, its docstring excluded."""
    n = fn.end_lineno - fn.lineno + 1
    if ast.get_docstring(fn) is not None:
        n -= fn.body[0].end_lineno - fn.body[0].lineno + 1
    return n


def long_functions(src: Path = SRC, limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """{module.qualified.name: lines} of every function longer than ``limit``."""
    out = {}
    for module, path in source_files(src).items():
        def walk(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                name = prefix
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    name = f"{prefix}.{child.name}"
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) and body_lines(child) > limit:
                    out[name] = body_lines(child)
                walk(child, name)

        walk(ast.parse(path.read_text(encoding="utf-8")), module)
    return out


# -- the project ------------------------------------------------------------------------------------------
def test_no_import_cycle_between_files():
    assert find_cycles(import_graph()) == []


def test_no_import_cycle_between_packages():
    assert find_cycles(package_graph(import_graph())) == []


@pytest.mark.parametrize(("importer", "imported"), FORBIDDEN, ids=lambda p: p)
def test_layering(importer, imported):
    graph = package_graph(import_graph())
    assert imported not in graph.get(importer, set()), f"{importer} imports {imported}"


def test_only_the_cli_imports_the_cli():
    graph = package_graph(import_graph())
    assert sorted(p for p, deps in graph.items() if "cli" in deps and p not in CLI_IMPORTERS) == []


def test_pipeline_components_import_no_pipeline():
    """The loading module stays below both pipeline classes (the auto-loader sits above them)."""
    deps = import_graph()["dopplerdiff.pipelines.components"]
    assert sorted(d for d in deps if d.startswith("dopplerdiff.pipelines")) == []


def test_functions_are_short():
    long = {name: n for name, n in long_functions().items() if name not in LONG_FUNCTION_ALLOWLIST}
    assert long == {}, f"functions over {MAX_FUNCTION_LINES} lines (docstring excluded)"


def test_allowlist_is_current():
    """An allowlisted function that became short (or moved) must leave the list."""
    assert sorted(LONG_FUNCTION_ALLOWLIST - set(long_functions())) == []


def test_files_are_short():
    long = {m: n for m, p in source_files().items()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES}
    assert long == {}, f"files over {MAX_FILE_LINES} lines"


# -- the checks themselves ----------------------------------------------------------------------------------
def test_tests_mirror_the_packages():
    """tests/<package>/ for each package of src/dopplerdiff (and bench/, examples/ for the scripts there);
    basenames stay unique, as pytest's default import mode (no __init__.py) needs."""
    packages = {p.name for p in (SRC / ROOT_PKG).iterdir() if (p / "__init__.py").is_file()} | {"bench",
                                                                                                  "examples"}
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and p.name[0] not in "._"}
    assert sorted(folders - packages) == []
    assert sorted({p.name for p in TESTS.glob("test_*.py")} - PROJECT_TESTS) == []
    names = [p.name for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / ROOT_PKG / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def test_file_cycle_is_found_through_from_imports(tmp_path):
    src = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from dopplerdiff import b\n",
        "b.py": "from dopplerdiff.c import thing\n",
        "c.py": "try:\n    from .a import x\nexcept ImportError:\n    pass\n",
        "d.py": "import dopplerdiff.a\n",
    })
    assert find_cycles(import_graph(src)) == [["dopplerdiff.a", "dopplerdiff.b", "dopplerdiff.c"]]
    assert import_graph(src)["dopplerdiff.d"] == {"dopplerdiff.a"}


def test_import_inside_a_function_is_a_dependency(tmp_path):
    src = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from dopplerdiff.b import load\n",
        "b.py": "def load():\n    from dopplerdiff.a import cls\n    return cls\n",
    })
    assert find_cycles(import_graph(src)) == [["dopplerdiff.a", "dopplerdiff.b"]]


def test_package_cycle_is_found_without_a_file_cycle(tmp_path):
    src = _package(tmp_path, {
        "__init__.py": "",
        "evaluate/__init__.py": "",
        "evaluate/physics.py": "",
        "evaluate/run.py": "import dopplerdiff.synthetic.filtering\n",
        "synthetic/__init__.py": "",
        "synthetic/filtering.py": "from ..evaluate.physics import stats\n",
        "generate.py": "from dopplerdiff.synthetic import filtering\n",
    })
    graph = import_graph(src)
    assert find_cycles(graph) == []
    packages = package_graph(graph)
    assert find_cycles(packages) == [["evaluate", "synthetic"]]
    assert packages["generate"] == {"synthetic"}


def test_long_function_is_measured_without_its_docstring(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(59))
    src = _package(tmp_path, {
        "__init__.py": "",
        "m.py": f'def short():\n    """Doc\n    string."""\n{body}\n\n'
                f"class C:\n    def long(self):\n{body.replace('    ', '        ')}\n        return 0\n",
    })
    assert long_functions(src) == {"dopplerdiff.m.C.long": 61}
