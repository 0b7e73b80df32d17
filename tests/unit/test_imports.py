"""lib/cniroute's modules import one another without a cycle: an import anywhere in a module (a lazy one inside a
function too) is an edge, so a cycle cannot hide behind a deferred import."""
import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[2] / "lib"
PACKAGE = "cniroute"


def modules():
    """{qualified name: path} of every module of the package, packages by their __init__.py."""
    found = {}
    for path in sorted((LIB / PACKAGE).rglob("*.py")):
        parts = path.relative_to(LIB).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(name, path, known):
    """The package's modules that module `name` imports, anywhere in it."""
    is_package = path.name == "__init__.py"
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module
            targets.add(module)
            targets |= {f"{module}.{alias.name}" for alias in node.names}  # `from . import shim`: a module
    return {target for target in targets if target in known and target != name}


def cycle(graph):
    """One import cycle of `graph` ({module: {modules it imports}}) as [a, b, ..., a], or None."""
    done, path = set(), []

    def visit(module):
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        path.append(module)
        for target in sorted(graph[module]):
            found = visit(target)
            if found:
                return found
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module)
        if found:
            return found
    return None


def test_no_module_of_lib_takes_part_in_an_import_cycle():
    known = modules()
    graph = {name: imported(name, path, known) for name, path in known.items()}
    assert graph[f"{PACKAGE}.cli"] >= {f"{PACKAGE}.interpreter", f"{PACKAGE}.person"}  # the reader reads imports
    found = cycle(graph)
    assert found is None, " -> ".join(found)


def test_a_cycle_is_found():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None
