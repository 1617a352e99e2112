"""The grading copy of the package: what a submission may import while it is graded.

Student code never sees the package the grader runs. It sees a copy in which every
implementation of what a notebook's exercises ask for has been removed AT SOURCE LEVEL: each
``def`` of a stripped name (`exercises.py`), in every module, becomes a stub that raises, and so
do the private helpers that only those functions used (or whose name says they compute a
gradient). Because the text itself is gone, nothing brings an implementation back: not
``importlib.reload``, not ``spec_from_file_location`` on the copy's files, not copying the copy,
not ``inspect.getsource``. The grader's sandbox hides the real package (and PyTorch), so the copy
is the only ``minichinchilla`` a submission can reach.

The copy also leaves out the grader itself (grading, sandbox, release, ...) and keeps of
``assignments.checks`` only what a notebook's given cells use to build data, so the visible
checks' reference computations cannot be called for answers either.
"""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

from ..atomic import write_text_atomically

STUB_MESSAGE = ("removed from the grading copy: {name} is (or computes) what this assignment asks "
                "you to write; write your own")

# assignments modules the sandboxed worker needs; the rest of the grader stays out of the copy
ASSIGNMENTS_KEPT = ("__init__.py", "checks.py", "exercises.py", "nbtools.py", "wire.py", "worker.py")
# from checks.py: data builders the given cells call (everything else there becomes a stub)
CHECKS_KEPT = ("runs_table", "_rng", "_passed")
_KEEP_DECORATORS = ("property", "staticmethod", "classmethod")
# automatic differentiation would compute any gradient for the student
BLOCKED_IMPORTS = ("torch", "functorch", "torchgen", "jax", "jaxlib", "tensorflow", "autograd",
                   "tinygrad", "micrograd", "mxnet", "minitorch")
BLOCKED_MESSAGE = "{name} is not available while assignments are graded"


def package_dir():
    """The directory of the package the grader runs (installed, editable or on PYTHONPATH)."""
    import minichinchilla

    return Path(minichinchilla.__file__).resolve().parent


def make_grading_copy(dest, names, source=None):
    """Copy the package into `dest`/minichinchilla with every def of `names` stubbed out.

    Returns the directory to put on the student's PYTHONPATH (`dest`). `names` holds plain names
    (every module-level def or assignment of that name) and ``Class.attr`` (that member of every
    class of that name). Raises RuntimeError if a rewritten module does not compile.
    """
    source = Path(source) if source else package_dir()
    dest = Path(dest)
    target = dest / "minichinchilla"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(
        "__pycache__", "*.pyc", "*.so", "*.egg-info", ".*"))
    assignments = target / "assignments"
    if assignments.is_dir():
        for p in assignments.iterdir():
            if p.name not in ASSIGNMENTS_KEPT:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    modules = {p: p.read_text(encoding="utf-8") for p in sorted(target.rglob("*.py"))}
    trees = {p: ast.parse(src, str(p)) for p, src in modules.items()}
    plan = _removal_plan(trees, names)
    checks = assignments / "checks.py"
    if checks in trees:  # the visible checks' reference computations are answers too
        for node in _module_defs(trees[checks]):
            if node.name not in CHECKS_KEPT:
                plan[checks].add((node.lineno, node.name))
    for path, removals in plan.items():
        if removals:
            new = _rewrite(modules[path], trees[path], removals)
            compile(new, str(path), "exec")  # a broken copy must fail here, not in a notebook
            write_text_atomically(path, new)
    for name in BLOCKED_IMPORTS:  # first on sys.path: `import torch` fails inside the sandbox
        write_text_atomically(dest / f"{name}.py", f"raise ImportError({BLOCKED_MESSAGE.format(name=name)!r})\n")
        (dest / f"{name}.py").chmod(0o644)
    for p in [target, *target.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    dest.chmod(0o755)
    return dest


def _module_defs(tree):
    return [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _class_members(tree):
    for cls in tree.body:
        if isinstance(cls, ast.ClassDef):
            for n in cls.body:
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield cls.name, n


def _used_names(node):
    """Names a function body reads (globals it calls, attributes it looks up)."""
    used = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            used.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            used.add(sub.attr)
    return used


def _removal_plan(trees, names):
    """{path: {(lineno, name)}}: the defs to stub, the stripped names plus their private helpers."""
    plain = {n for n in names if "." not in n}
    members = {tuple(n.split(".", 1)) for n in names if "." in n}
    plan = {p: set() for p in trees}
    removed_bodies = []
    for path, tree in trees.items():
        for node in _module_defs(tree):
            if node.name in plain:
                plan[path].add((node.lineno, node.name))
                removed_bodies.append(node)
        for stmt in tree.body:  # aliases: `softmax_backward = _fast_softmax_backward`
            if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                hit = [t.id for t in targets if isinstance(t, ast.Name) and t.id in plain]
                if hit:
                    plan[path].add((stmt.lineno, hit[0]))
                    if stmt.value is not None:
                        removed_bodies.append(stmt.value)
        for cls_name, node in _class_members(tree):
            if (cls_name, node.name) in members:
                plan[path].add((node.lineno, f"{cls_name}.{node.name}"))
                removed_bodies.append(node)
    # private helpers: removed when only removed code uses them, or when they compute a gradient
    private = {}
    for path, tree in trees.items():
        for node in _module_defs(tree):
            if node.name.startswith("_") and not node.name.startswith("__"):
                private.setdefault(node.name, []).append((path, node))
    changed = True
    while changed:
        changed = False
        removed_ids = {id(n) for n in removed_bodies}
        used_by_removed = set().union(*(_used_names(n) for n in removed_bodies)) if removed_bodies else set()
        used_by_kept = set()
        for tree in trees.values():
            for stmt in tree.body:
                if id(stmt) in removed_ids or isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    continue
                if isinstance(stmt, ast.ClassDef):
                    for n in stmt.body:
                        if id(n) not in removed_ids:
                            used_by_kept |= _used_names(n)
                    continue
                used_by_kept |= _used_names(stmt)
        for name, defs in private.items():
            if name not in used_by_removed:
                continue
            gradient_helper = "backward" in name or "grad" in name
            if not gradient_helper and name in used_by_kept:
                continue
            for path, node in defs:
                if (node.lineno, name) not in plan[path]:
                    plan[path].add((node.lineno, name))
                    removed_bodies.append(node)
                    changed = True
    return plan


def _rewrite(source, tree, removals):
    """`source` with each removed def (or assignment) replaced by a raising stub."""
    lines = source.split("\n")
    by_line = dict(removals)
    nodes = []
    for stmt in tree.body:
        if stmt.lineno in by_line:
            nodes.append((stmt, by_line[stmt.lineno]))
        if isinstance(stmt, ast.ClassDef):
            nodes += [(n, by_line[n.lineno]) for n in stmt.body
                      if n.lineno in by_line and isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for node, qualname in sorted(nodes, key=lambda t: -t[0].lineno):
        decorators = getattr(node, "decorator_list", [])
        first = min([node.lineno] + [d.lineno for d in decorators]) - 1
        last = node.end_lineno
        indent = " " * node.col_offset
        message = STUB_MESSAGE.format(name=qualname)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            kept = [f"{indent}@{d.id}" for d in decorators
                    if isinstance(d, ast.Name) and d.id in _KEEP_DECORATORS]
            stub = kept + [f"{indent}def {node.name}(*args, **kwargs):",
                           f"{indent}    raise RuntimeError({message!r})"]
        else:  # an assignment of a stripped name
            stub = [f"{indent}def {qualname}(*args, **kwargs):",
                    f"{indent}    raise RuntimeError({message!r})"]
        lines[first:last] = stub
    return "\n".join(lines)


__all__ = ["make_grading_copy", "package_dir", "STUB_MESSAGE"]
