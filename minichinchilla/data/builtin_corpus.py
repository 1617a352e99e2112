"""A built-in English corpus that needs no network and no file we did not write.

Every Python installation ships two large bodies of English prose:

1. **The interactive help topics** — ``pydoc_data.topics.topics``, a dict from topic name
   (``"for"``, ``"exceptions"``, ...) to the text ``help("for")`` prints: about 0.5 MB
   of language-reference prose. One document per topic, ``source="pydoc:<topic>"``.
2. **Standard-library docstrings** — the docstrings of modules, classes and functions in
   the ``.py`` files under ``sysconfig.get_paths()["stdlib"]``, read with `ast` (we parse,
   never import, so no module's side effects run): about 1.8 MB. One document per
   docstring, ``source="stdlib:<module>"``, ``package`` = the top-level package
   (``"json"`` for ``json.decoder``), ``name`` = the documented object (``"JSONDecoder.decode"``).
   Tests (``test``/``tests`` folders, ``test_*.py``), ``idlelib``, ``site-packages`` and
   ``lib2to3`` fixtures are skipped.

**Determinism.** Files are visited in sorted order and docstrings in source order, so the
same Python version always gives the same documents. The text is a property of the
*interpreter*: it is identical for a given Python minor version (3.11, 3.12, ...) up to the
rare docstring edited in a patch release, so the cache key holds the full version.

**Cache.** Building takes a few seconds (parsing ~600 files); the result is stored as JSON
in ``$MINICHINCHILLA_CACHE`` (default ``~/.cache/minichinchilla``), written atomically
(temporary file + `os.replace`) so a crash or a parallel run never leaves half a file.
"""
from __future__ import annotations

import ast
import json
import os
import sys
import sysconfig
from dataclasses import asdict
from pathlib import Path

from ..atomic import write_text_atomically

from minichinchilla.data.documents import Document

CORPUS_FORMAT_VERSION = 1  # bump when the extraction rules change, so old caches are ignored
MIN_DOCSTRING_CHARS = 20  # "Return self." is not prose worth learning from
_SKIP_DIRS = {"test", "tests", "idlelib", "site-packages", "dist-packages", "__pycache__",
              "lib2to3", "turtledemo"}


def cache_dir() -> Path:
    """The folder for cached corpora: ``$MINICHINCHILLA_CACHE`` or ``~/.cache/minichinchilla``."""
    env = os.environ.get("MINICHINCHILLA_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "minichinchilla"


def _cache_path() -> Path:
    version = ".".join(str(v) for v in sys.version_info[:3])
    return cache_dir() / f"builtin-corpus-py{version}-v{CORPUS_FORMAT_VERSION}.json"


def pydoc_topic_documents() -> list[Document]:
    """One document per interactive help topic (``help("for")``), sorted by topic name."""
    from pydoc_data.topics import topics

    return [Document(text=topics[name], source=f"pydoc:{name}") for name in sorted(topics)]


def _stdlib_files(stdlib: Path) -> list[tuple[str, Path]]:
    """(dotted module name, path) of every stdlib source file we read, sorted by module name."""
    found = []
    for path in stdlib.rglob("*.py"):
        rel = path.relative_to(stdlib)
        if any(part in _SKIP_DIRS for part in rel.parts[:-1]) or rel.name.startswith("test_"):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if not parts or any(not p.isidentifier() for p in parts):  # e.g. "lib-dynload"
            continue
        found.append((".".join(parts), path))
    return sorted(found)


def _docstrings(tree: ast.Module) -> list[tuple[str, str]]:
    """(qualified name, docstring) for the module and every class/function, in source order."""
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                doc = ast.get_docstring(child, clean=True)  # clean=True removes indentation
                if doc:
                    found.append((name, doc))
                visit(child, name + ".")
            elif isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)):
                visit(child, prefix)  # defs inside `if` blocks, try/except fallbacks, ...
            # expressions never contain a def, so we do not descend into them (3x faster)

    module_doc = ast.get_docstring(tree, clean=True)
    if module_doc:
        found.append(("", module_doc))
    visit(tree, "")
    return found


def stdlib_docstring_documents() -> list[Document]:
    """One document per docstring of at least `MIN_DOCSTRING_CHARS` characters, in sorted
    module order and source order within a module."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    documents = []
    for module, path in _stdlib_files(stdlib):
        try:  # ast.parse on bytes honours a file's "# -*- coding: ... -*-" line
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError):  # fixtures written in Python 2, stray NULs, ...
            continue
        package = module.split(".")[0]
        for name, doc in _docstrings(tree):
            if len(doc) >= MIN_DOCSTRING_CHARS:
                documents.append(Document(doc, f"stdlib:{module}", package, name))
    return documents


def build_builtin_documents() -> list[Document]:
    """Build the corpus from scratch (no cache): pydoc topics first, then stdlib docstrings."""
    return pydoc_topic_documents() + stdlib_docstring_documents()


def load_builtin_documents(use_cache: bool = True) -> list[Document]:
    """The built-in corpus (pydoc topics + stdlib docstrings), from the cache when possible.

    Inputs:
        use_cache: read/write the JSON cache in `cache_dir()`; False always rebuilds.
    Returns:
        a list of `Document` (raw text: run `clean_documents` before training).
    """
    path = _cache_path()
    if use_cache and path.exists():
        try:
            return [Document(**d) for d in json.loads(path.read_text(encoding="utf-8"))]
        except (ValueError, TypeError, OSError):
            pass  # a damaged cache is rebuilt below
    documents = build_builtin_documents()
    if use_cache:
        try:
            write_text_atomically(path, json.dumps([asdict(d) for d in documents], ensure_ascii=False))
        except OSError:
            pass  # a read-only home directory must not stop anyone from training
    return documents
