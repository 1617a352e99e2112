"""The package's shape: no import cycles, and no module replacing another module's attributes.

Both are read from the source (AST), so they hold for code paths no other test runs.
"""
import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "minichinchilla"
PACKAGE = PACKAGE_DIR.name


def _modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute name a (possibly relative) ``from X import`` refers to."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if _is_package(module) else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _type_checking_only(node, parents) -> bool:
    p = parents.get(node)
    while p is not None:
        if isinstance(p, ast.If) and "TYPE_CHECKING" in ast.unparse(p.test):
            return True
        p = parents.get(p)
    return False


def _imports(module: str) -> set[str]:
    """Package modules that `module` imports, at the top or inside functions (a lazy import
    inside a function still makes a cycle: it only moves the failure to run time)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    # A module importing from a package that contains it (``from .. import __all__`` in
    # functional/fast) runs inside that package's own initialisation, which Python always
    # starts first: not counted as a cycle here (the parts test below still sees every part).
    return {m for m in found if m in MODULES and m != module and not module.startswith(m + ".")}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_package_modules():
    graph = {m: _imports(m) for m in MODULES}
    assert graph["minichinchilla.train"], "the import scan found nothing: it is broken"
    cycles = _cycles(graph)
    assert not cycles, "import cycles (each line: modules that import each other):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


def _component(module: str) -> str:
    """``minichinchilla.finetune.tasks`` -> ``minichinchilla.finetune``: a subpackage or a
    top-level module, the unit a reader thinks of as one part of the package."""
    return ".".join(module.split(".")[:2])


def test_no_import_cycles_among_package_parts():
    """Also between parts: ``train`` using ``finetune`` while ``finetune`` uses ``train`` is a
    cycle of the design even when no single module imports itself back."""
    graph = {}
    for module in MODULES:
        part = _component(module)
        graph.setdefault(part, set()).update(
            _component(m) for m in _imports(module) if _component(m) != part)
    cycles = _cycles(graph)
    assert not cycles, "parts of the package that import each other:\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


# ---- no monkeypatching ------------------------------------------------------------------------
def _imported_names(tree) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names)
    return names


def _attribute_patches(source: str) -> list[str]:
    """Lines that set an attribute on an imported name (a module, a class, a function):
    ``module.name = ...``, ``Class.method = ...``, ``setattr(module, ...)``, ``del module.x``."""
    tree = ast.parse(source)
    imported = _imported_names(tree)

    def root(node):
        while isinstance(node, ast.Attribute):
            node = node.value
        return node.id if isinstance(node, ast.Name) else None

    hits = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        flat = [e for t in targets for e in (t.elts if isinstance(t, (ast.Tuple, ast.List)) else [t])]
        for t in flat:  # `os.environ["X"] = ...` sets an item, not an attribute: not a patch
            if isinstance(t, ast.Attribute) and root(t) in imported:
                hits.append(f"line {node.lineno}: {ast.unparse(t)}")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("setattr", "delattr") and node.args and root(node.args[0]) in imported):
            hits.append(f"line {node.lineno}: {ast.unparse(node)}")
    return sorted(hits, key=lambda h: int(h.split()[1].rstrip(":")))


def test_patch_finder_finds_patches():
    source = ("import os\nfrom . import train as pretrain\nfrom .x import Cls\n"
              "pretrain.split_documents = spy\nsetattr(os, 'sep', '/')\nCls.method = f\n"
              "class A:\n    def f(self):\n        self.x = 1\n")
    assert [h.split(":")[0] for h in _attribute_patches(source)] == ["line 4", "line 5", "line 6"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_replaces_attributes_of_another(module):
    hits = _attribute_patches(MODULES[module].read_text(encoding="utf-8"))
    assert not hits, f"{module} assigns attributes of an imported module or class:\n" + "\n".join(hits)



WRITE_MODES = set("wx")  # "a" (an append-only log, flushed per line) is fine


def _direct_whole_file_writes(path: Path) -> list[str]:
    """Calls in `path` that write or copy a whole file without minichinchilla/atomic.py."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
        owner = getattr(f.value, "id", "") if isinstance(f, ast.Attribute) else ""
        args = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        modes = args[1:] + [k.value.value for k in node.keywords
                            if k.arg == "mode" and isinstance(k.value, ast.Constant)]
        if name == "open" and args and args[0].startswith("/proc/"):
            continue  # a kernel control file, not a file the package owns
        if (name in ("write_text", "write_bytes")
                or (name == "open" and any(set(m) & WRITE_MODES for m in modes))
                or (owner == "shutil" and name in ("copy", "copy2", "copyfile"))
                or (owner == "nbformat" and name == "write")):
            found.append(f"line {node.lineno}: {ast.unparse(node)[:70]}")
    return found


def test_direct_write_finder_finds_direct_writes(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("from pathlib import Path\nimport shutil\nPath('x').write_text('a')\n"
                      "open('y', 'w')\nopen('log', 'a')\nopen('z', mode='wb')\nshutil.copy2('a', 'b')\n"
                      "open('/proc/self/clear_refs', 'w')\n")
    found = [hit.split(": ", 1)[1] for hit in _direct_whole_file_writes(sample)]
    assert found == ["Path('x').write_text('a')", "open('y', 'w')", "open('z', mode='wb')",
                     "shutil.copy2('a', 'b')"]


def test_every_whole_file_goes_through_the_one_atomic_writer():
    """Issue 11: one writer for whole files (minichinchilla/atomic.py: temp file, fsync, rename),
    so a crash or Ctrl-C never leaves half a checkpoint, grades.csv, book page or student copy."""
    offenders = [f"{path.relative_to(PACKAGE_DIR)}: {hit}"
                 for path in sorted(PACKAGE_DIR.rglob("*.py")) if path.name != "atomic.py"
                 for hit in _direct_whole_file_writes(path)]
    assert not offenders, offenders
