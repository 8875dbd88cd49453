"""The package's layering: no module imports a module of a higher layer, and no two modules import each other
through any chain, counting the imports inside functions (which hide cycles from Python until they run)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "dlx"

# Lowest first. A module may import its own layer's modules and those of the layers below it; the layers on
# one line are independent of each other. Launchers (parallel.launch, parallel.rendezvous) start training, so
# they sit above it; the collectives the loop uses (parallel.world) sit below it.
LAYERS = [
    ["dlx", "dlx.errors"],
    ["dlx.ui"],
    ["dlx.config"],
    ["dlx.store"],
    ["dlx.data", "dlx.models"],
    ["dlx.parallel.world"],
    ["dlx.train"],
    ["dlx.inspect"],
    ["dlx.results"],
    ["dlx.parallel.launch", "dlx.parallel.rendezvous"],
    ["dlx.sweep"],
    ["dlx.cli"],
    ["dlx.__main__"],
]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """{module: the dlx modules it imports}, from every import statement anywhere in its file."""
    modules = {module_name(path, root): path for path in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from dlx.cli import train` imports the module dlx.cli.train when there is one
                imported |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules
                             else node.module for alias in node.names}
        graph[name] = {module for module in imported if module in modules and module != name}
    return graph


def layer_of(module: str) -> int:
    """The index of the most specific layer entry that names `module` or a package above it."""
    best, length = None, -1
    for index, entries in enumerate(LAYERS):
        for entry in entries:
            if (module == entry or module.startswith(entry + ".")) and len(entry) > length:
                best, length = index, len(entry)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def entry_of(module: str) -> str:
    return max((e for entries in LAYERS for e in entries if module == e or module.startswith(e + ".")), key=len)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """'a -> b' for every import of a higher layer, or of another entry of the same layer."""
    found = []
    for module, imported in sorted(graph.items()):
        for other in sorted(imported):
            if module == "dlx" or other in ("dlx",):
                continue
            if layer_of(other) > layer_of(module) or (layer_of(other) == layer_of(module)
                                                      and entry_of(other) != entry_of(module)):
                found.append(f"{module} -> {other}")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph.get(module, ()):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_every_module_has_a_layer() -> None:
    for module in import_graph(PACKAGE):
        layer_of(module)


def test_no_module_imports_a_higher_layer() -> None:
    assert upward_imports(import_graph(PACKAGE)) == []


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(import_graph(PACKAGE)) == []


@pytest.mark.parametrize("upward", ["from dlx.cli import main", "    from dlx.sweep.job import train_job"])
def test_an_upward_import_is_caught_even_inside_a_function(tmp_path: Path, upward: str) -> None:
    # The checks above would pass on a graph they cannot see: run them on a copy with one upward import added.
    import shutil

    copy = tmp_path / "dlx"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "conf"))
    store = copy / "store" / "files.py"
    body = f"\n\ndef helper() -> None:\n{upward}\n" if upward.startswith(" ") else f"\n{upward}\n"
    store.write_text(store.read_text(encoding="utf-8") + body, encoding="utf-8")
    graph = import_graph(copy)
    assert any(line.startswith("dlx.store.files -> ") for line in upward_imports(graph))


def test_a_cycle_is_caught() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
