"""Build and serve the course as one static, offline book.

    python -m minichinchilla.book build [--out DIR] [--clean] [--jobs N]
    python -m minichinchilla.book serve [--port 8000] [--out DIR]

(or ``python -m minichinchilla book build`` through the package dispatcher).

The repository layout stays as it is (``chapters/``, ``notebooks/``). ``build`` ASSEMBLES
the book's sources in a build folder (``_build/book-src/`` by default) and runs Sphinx on
that copy, with the extensions Jupyter Book 1 uses (MyST-NB + sphinx-book-theme):

* reading order: the intro page (``book/intro.md``), then chapters 00..12 each followed by
  its notebook, then the RELEASED student assignments (never the instructor versions in
  ``notebooks/assignments/``), then the package source;
* the assembled tree mirrors the repository, so ``../notebooks/03-attention.ipynb`` from a
  chapter works unchanged; links to repository files that are not pages
  (``../minichinchilla/functional/attention.py``) are rewritten to generated source pages;
  a link to a file that does not exist stops the build;
* notebooks are published with their committed outputs (never executed here);
* MathJax is a local copy (PyPI ``django-static-mathjax`` = MathJax 3, or Debian's
  ``libjs-mathjax`` = MathJax 2) served from the site's ``_static/``; no asset comes from a
  CDN, and the build fails if a page would load anything from another host;
* every Sphinx warning fails the build unless it is in ``TOLERATED_WARNINGS``.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import html.parser
import importlib.util
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import copy_file_atomically, write_bytes_atomically, write_text_atomically
from .cli import run_command
from .course import student_notebook

PACKAGE_DIR = Path(__file__).resolve().parent

# Sphinx warnings that do not mean something broke: (regex on the warning text, why).
# Anything else (missing file, broken cross-reference, notebook without a title, unknown
# directive, bad math block, …) fails the build.
TOLERATED_WARNINGS: list[tuple[str, str]] = [
    (r"\[myst\.header\]", "heading levels that skip a level are a style issue, not a break"),
    (r"Could not lex literal_block", "a code cell Pygments cannot highlight still renders"),
    (r"\[misc\.highlighting_failure\]", "a code cell Pygments cannot highlight still renders"),
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"}
DOC_SUFFIXES = {".md", ".ipynb"}
CHAPTERS_CAPTION = "Chapters and notebooks"
ASSIGNMENTS_CAPTION = "Assignments"
SOURCE_CAPTION = "Package source"
ASSIGNMENTS_DIR = "notebooks/assignments"  # instructor versions: never copied as they are
SOURCE_PACKAGE = "minichinchilla"  # its modules get source pages under "Package source"
_NUM = re.compile(r"^(\d+)")
SOURCE_FOLDERS = {"chapters", "notebooks", "book", SOURCE_PACKAGE}  # what a build reads


class BookError(RuntimeError):
    """The book cannot be built as the sources stand (message says what to fix)."""


# ----------------------------------------------------------------------------- helpers


def default_root() -> Path:
    """The repository root: the checkout this module lives in, else the current folder."""
    for cand in (PACKAGE_DIR.parent, Path.cwd()):
        if (cand / "book" / "conf.py").is_file():
            return cand
    return PACKAGE_DIR.parent


def _sort_key(name: str):
    m = _NUM.match(name)
    return (0, int(m.group(1)), name) if m else (1, 0, name)


MANIFEST = ".book-manifest.json"


class OwnedFolder:
    """A folder the build writes into, and the list of the files it wrote there.

    The build deletes a file only if it wrote it: the list (``.book-manifest.json`` in the
    folder) is the proof. A folder that exists, is not empty and has no list was not made by
    the build, and is refused before anything is written or deleted (`check`). A file someone
    put into a build folder later is not on the list, so it is never deleted either.
    """

    def __init__(self, path: Path, flag: str):
        self.path = Path(path)
        self.flag = flag  # names the option it came from, in error messages
        self.files: set[str] = set()  # posix paths relative to the folder
        self.foreign: set[str] = set()  # files found here that the build did not write

    def _manifest(self) -> set[str] | None:
        try:
            data = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        files = data.get("files") if isinstance(data, dict) else None
        return {f for f in files if isinstance(f, str)} if isinstance(files, list) else None

    def _present(self) -> set[str]:
        found = set()
        for dirpath, _, filenames in os.walk(self.path):
            for fn in filenames:
                found.add((Path(dirpath) / fn).relative_to(self.path).as_posix())
        found.discard(MANIFEST)
        return found

    def check(self) -> None:
        """ValueError (naming the flag) unless the folder is absent, empty or the build's own."""
        p = self.path
        if p.is_symlink() or (p.exists() and not p.is_dir()):
            raise ValueError(f"{self.flag}: {p} exists and is not a folder")
        if p.is_dir() and any(p.iterdir()) and self._manifest() is None:
            raise ValueError(f"{self.flag}: {p} is not empty and was not made by 'book build' "
                             f"(it has no {MANIFEST}); refusing to write into it or delete "
                             "anything there: choose a new or empty folder")

    def open(self) -> None:
        self.check()
        self.path.mkdir(parents=True, exist_ok=True)
        self.files = self._manifest() or set()
        present = self._present()
        self.files &= present  # forget files that are gone
        self.foreign = present - self.files
        self.seal()

    def owns(self, rel: str) -> bool:
        return rel in self.files or rel not in self.foreign

    def remove(self, rel: str) -> None:
        """Delete one file the build wrote (and folders that leaves empty); others stay."""
        if rel not in self.files:
            return
        (self.path / rel).unlink(missing_ok=True)
        self.files.discard(rel)
        parent = (self.path / rel).parent
        while parent != self.path and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent

    def clear(self) -> None:
        for rel in sorted(self.files):
            self.remove(rel)
        self.seal()

    def seal(self) -> None:
        """Record what the build wrote: everything here now except the files it found."""
        if not self.path.is_dir():
            return
        self.files = self._present() - self.foreign
        write_text_atomically(self.path / MANIFEST, json.dumps(
            {"written_by": "python -m minichinchilla book build", "files": sorted(self.files)},
            indent=0) + "\n")


class _Tree:
    """Files to write into the assembled source folder; unchanged files are left untouched
    (so Sphinx's incremental build works) and files of the build no longer wanted are
    removed (never a file the build did not write: `OwnedFolder`)."""

    def __init__(self, folder: OwnedFolder):
        self.folder = folder
        self.base = folder.path
        self.keep: set[str] = set()

    def _writable(self, rel: str) -> bool:
        if self.folder.owns(rel):
            return True
        raise BookError(f"{self.base / rel} was not written by the build; move it away")

    def write(self, rel: str, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        dest = self.base / rel
        self.keep.add(rel)
        if dest.is_file() and dest.read_bytes() == data:
            return
        self._writable(rel)
        write_bytes_atomically(dest, data)

    def copy(self, rel: str, src: Path) -> None:
        dest = self.base / rel
        self.keep.add(rel)
        if dest.is_file():
            s, d = src.stat(), dest.stat()
            if s.st_size == d.st_size and int(s.st_mtime) == int(d.st_mtime):
                return
        self._writable(rel)
        copy_file_atomically(src, dest)

    def copytree(self, rel: str, src: Path, skip=()) -> None:
        for dirpath, dirnames, filenames in os.walk(src, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if d not in skip)
            for fn in sorted(filenames):
                p = Path(dirpath) / fn
                self.copy(posixpath.join(rel, p.relative_to(src).as_posix()), p.resolve())

    def prune(self) -> None:
        self.folder.seal()
        for rel in sorted(self.folder.files - self.keep):
            self.folder.remove(rel)
        self.folder.seal()


# ----------------------------------------------------------------------------- the plan


@dataclass
class Doc:
    """One page of the book."""

    src: str  # path inside the assembled tree (posix), e.g. "chapters/03-attention.md"
    origin: str  # repository path it stands for (links are resolved from here)
    read_from: Path | None  # file to read (None: generated text in `text`)
    kind: str  # chapter | notebook | assignment | page | source | listing | index
    text: str | None = None
    orphan: bool = False


@dataclass
class Plan:
    root: Path
    docs: dict[str, Doc] = field(default_factory=dict)  # origin repo path -> Doc
    assets: dict[str, Path] = field(default_factory=dict)  # tree path -> file
    html_assets: set[str] = field(default_factory=set)  # also copied into the site as they are
    chapters_toc: list[str] = field(default_factory=list)  # tree paths in reading order
    assignments_toc: list[str] = field(default_factory=list)
    assignments_note: str = ""
    notices: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, doc: Doc) -> Doc:
        self.docs[doc.origin] = doc
        return doc


def _release_assignments(root: Path, dest: Path, plan: Plan) -> Path | None:
    """HOOK: the student versions of notebooks/assignments/, made by the release command.

    Runs ``python -m minichinchilla.assignments release DEST`` and returns DEST, or returns
    None (with a notice) when there is nothing to release or the command is not there yet.
    The instructor notebooks themselves are never published.
    """
    instructor = root / ASSIGNMENTS_DIR
    if not instructor.is_dir() or not any(instructor.rglob("*.ipynb")):
        return None
    pkg = root / "minichinchilla" / "assignments"
    if (pkg / "__main__.py").is_file():
        cmd = ["-m", "minichinchilla.assignments", "release", str(dest)]
    elif (pkg / "cli.py").is_file() and "def main" in _read(pkg / "__init__.py"):
        cmd = ["-c", "import sys, minichinchilla.assignments as a; "
                     f"sys.exit(a.main(['release', {str(dest)!r}]))"]
    else:
        plan.notices.append(
            "assignments: `python -m minichinchilla.assignments release` is not available yet; "
            "the book shows a placeholder instead of the assignments")
        plan.assignments_note = (
            "The assignments are published here as student versions (without solutions) once "
            "the release command `python -m minichinchilla.assignments release` is in place.")
        return None
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, *cmd], cwd=root, env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise BookError(
            "releasing the assignments failed (python -m minichinchilla.assignments release "
            f"{dest}):\n{proc.stdout}{proc.stderr}"
        )
    return dest


def _source_page(rel: str, path: Path, orphan: bool) -> str:
    text = path.read_text(encoding="utf-8")
    ticks = max([len(m) for m in re.findall(r"`+", text)] + [2]) + 1
    fence = "`" * ticks
    lang = {".py": "python", ".sh": "bash", ".toml": "toml", ".cfg": "ini", ".json": "json",
            ".yml": "yaml", ".yaml": "yaml", ".md": "markdown", ".txt": "text"}.get(
        path.suffix, "text")
    head = "---\norphan: true\n---\n\n" if orphan else ""
    return (f"{head}# `{rel}`\n\n{fence}{{code-block}} {lang}\n:linenos:\n\n"
            f"{text.rstrip()}\n{fence}\n")


def _listing_page(rel: str, entries: list[tuple[str, str]], toctree: bool, orphan: bool) -> str:
    """A page for a folder: a list of its files (entries: (label, tree-relative link))."""
    head = "---\norphan: true\n---\n\n" if orphan else ""
    title = f"`{rel}/`" if rel != SOURCE_PACKAGE else "Package source"
    lines = [f"{head}# {title}\n"]
    if rel == SOURCE_PACKAGE:
        lines.append("The source of the `minichinchilla` package, one page per module.\n")
    if toctree:
        lines.append("```{toctree}\n:maxdepth: 1\n")
        lines += [link.rsplit(".", 1)[0] if link.endswith(".md") else link
                  for _, link in entries]
        lines.append("```\n")
    else:
        lines += [f"- [{label}]({link})" for label, link in entries]
    return "\n".join(lines) + "\n"


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def _is_text(path: Path) -> bool:
    if path.stat().st_size > 2_000_000:
        return False
    try:
        path.read_text(encoding="utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _plan(root: Path, release_dir: Path) -> Plan:
    """Decide every page of the book and its place in the table of contents."""
    plan = Plan(root=root)
    chapters = sorted((p for p in (root / "chapters").glob("*.md") if p.is_file()),
                      key=lambda p: _sort_key(p.name))
    notebooks = sorted((p for p in (root / "notebooks").glob("*.ipynb") if p.is_file()),
                       key=lambda p: _sort_key(p.name))
    # reading order: by number, each chapter followed by its notebook(s); unnumbered last
    order: list[tuple[tuple, int, Path, str]] = []
    for p in chapters:
        order.append((_sort_key(p.name)[:2], 0, p, "chapter"))
    for p in notebooks:
        order.append((_sort_key(p.name)[:2], 1, p, "notebook"))
    order.sort(key=lambda t: (t[0], t[1], t[2].name))
    for _, _, p, kind in order:
        rel = p.relative_to(root).as_posix()
        plan.add(Doc(src=rel, origin=rel, read_from=p, kind=kind))
        plan.chapters_toc.append(rel)
    # chapters' own folders (figures, data) travel with them
    for folder in ("chapters", "notebooks"):
        base = root / folder
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if (not p.is_file() or rel.startswith(ASSIGNMENTS_DIR + "/")
                    or ".ipynb_checkpoints" in p.parts or "__pycache__" in p.parts
                    or p.suffix in DOC_SUFFIXES):
                continue
            plan.assets[rel] = p
    # released assignments, placed where the instructor versions live in the repository
    released = _release_assignments(root, release_dir, plan)
    if released is not None:
        for p in sorted(released.rglob("*"), key=lambda q: _sort_key(q.name)):
            if not p.is_file() or ".ipynb_checkpoints" in p.parts:
                continue
            rel = posixpath.join(ASSIGNMENTS_DIR, p.relative_to(released).as_posix())
            if p.suffix in DOC_SUFFIXES:
                plan.add(Doc(src=rel, origin=rel, read_from=p, kind="assignment"))
                plan.assignments_toc.append(rel)
            else:
                plan.assets[rel] = p
    elif plan.assignments_note:
        rel = ASSIGNMENTS_DIR + "/index.md"
        plan.add(Doc(src=rel, origin=rel, read_from=None, kind="page",
                     text=f"# Assignments\n\n{plan.assignments_note}\n"))
        plan.assignments_toc.append(rel)
    # package source: every module gets a page, reachable from "Package source"
    pkg = root / SOURCE_PACKAGE
    if pkg.is_dir():
        _add_folder(plan, SOURCE_PACKAGE, orphan=False)
    return plan


def _add_folder(plan: Plan, rel: str, orphan: bool) -> Doc:
    """A listing page for a repository folder (and source pages for its text files)."""
    origin = rel.rstrip("/")
    if origin in plan.docs:
        return plan.docs[origin]
    base = plan.root / origin
    entries: list[tuple[str, str]] = []
    doc = plan.add(Doc(src=origin + "/index.md", origin=origin, read_from=None,
                       kind="listing", orphan=orphan))
    in_package = origin == SOURCE_PACKAGE or origin.startswith(SOURCE_PACKAGE + "/")
    for p in sorted(base.iterdir(), key=lambda q: (q.is_dir(), q.name)):
        if p.name.startswith(".") or p.name == "__pycache__" or p.name.endswith(".egg-info"):
            continue
        prel = p.relative_to(plan.root).as_posix()
        if p.is_dir():
            if in_package and not any(p.rglob("*.py")):
                continue
            sub = _add_folder(plan, prel, orphan)
            entries.append((p.name + "/", posixpath.relpath(sub.src, origin)))
        elif p.is_file() and (not in_package or p.suffix == ".py") and _is_text(p):
            target = _target_for(plan, prel, orphan=orphan)
            entries.append((p.name, posixpath.relpath(target, origin)))
    doc.text = _listing_page(origin, entries, toctree=not orphan, orphan=orphan)
    return doc


def _target_for(plan: Plan, rel: str, orphan: bool = True) -> str:
    """Tree path that a link to repository path `rel` (an existing file) should point to."""
    if rel in plan.docs:
        return plan.docs[rel].src
    path = plan.root / rel
    if path.is_dir():
        return _add_folder(plan, rel, orphan=orphan).src
    if path.suffix.lower() in IMAGE_SUFFIXES:
        plan.assets[rel] = path
        return rel
    if path.suffix == ".md" and not rel.startswith(SOURCE_PACKAGE + "/"):
        return plan.add(Doc(src=rel, origin=rel, read_from=path, kind="page", orphan=True)).src
    if _is_text(path):
        doc = plan.add(Doc(src=rel + ".md", origin=rel, read_from=None, kind="source",
                           orphan=orphan))
        doc.text = _source_page(rel, path, orphan)
        return doc.src
    plan.assets[rel] = path  # anything else: a download link to the file itself
    return rel


# ----------------------------------------------------------------------------- links


def _md_parser():
    from markdown_it.renderer import RendererHTML
    from myst_parser.config.main import MdParserConfig
    from myst_parser.parsers.mdit import create_md_parser

    cfg = MdParserConfig(enable_extensions={"dollarmath", "amsmath", "colon_fence", "deflist"})
    return create_md_parser(cfg, RendererHTML)


_HTML_URL = re.compile(r"""\b(?:src|href)\s*=\s*(["'])(.*?)\1""", re.I)


def _links(md, text: str) -> list[tuple[str, str]]:
    """(kind, url) for every link, image and raw-HTML src/href in a Markdown text."""
    env: dict = {}
    tokens = md.parse(text, env)
    out: list[tuple[str, str]] = []

    def walk(ts):
        for t in ts:
            if t.type == "link_open":
                out.append(("link", str(t.attrs.get("href", ""))))
            elif t.type == "image":
                out.append(("image", str(t.attrs.get("src", ""))))
            elif t.type in ("html_inline", "html_block"):
                out.extend(("html", m.group(2)) for m in _HTML_URL.finditer(t.content))
            if t.children:
                walk(t.children)

    walk(tokens)
    out += [("link", ref["href"]) for ref in env.get("references", {}).values()]
    return out


def _is_local(url: str) -> bool:
    u = urllib.parse.urlsplit(url)
    return not (u.scheme or u.netloc or url.startswith("#") or url == "")


def _rewrite(text: str, old: str, new: str) -> str:
    for pre in ("](", "](<", "]: ", "]: <", 'src="', "src='", 'href="', "href='"):
        # the URL must end there (a link to a folder is a prefix of links into it)
        pat = re.escape(pre + old) + r"""(?=[\s)>"']|$)"""
        text = re.sub(pat, lambda m: pre + new, text, flags=re.M)
    return text


def _process_links(plan: Plan, doc: Doc, text: str, md, where: str) -> str:
    """Check every local link in `text` and rewrite those whose target moved.
    Problems are collected in plan.errors (all of them are reported together)."""
    rewrites: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    for kind, url in _links(md, text):
        if not _is_local(url) or (kind, url) in seen:
            continue
        seen.add((kind, url))
        at = text.find(url)
        n = text.count("\n", 0, at) + 1
        line = where if at < 0 else (f"{where[:-1]}, line {n})" if where.endswith(")")
                                     else f"{where}:{n}")
        try:
            rewrites[url] = _resolve_link(plan, doc, kind, url, line)
        except BookError as e:
            plan.errors.append(str(e))
    for url, new in rewrites.items():
        if new != url:
            text = _rewrite(text, url, new)
    return text


def _resolve_link(plan: Plan, doc: Doc, kind: str, url: str, where: str) -> str:
    """The URL a local link must have in the assembled tree (BookError: it is broken)."""
    parts = urllib.parse.urlsplit(url)
    path = urllib.parse.unquote(parts.path)
    if path.startswith("/"):
        raise BookError(f"{where}: absolute link {url!r}; use a path relative to the file")
    rel = posixpath.normpath(posixpath.join(posixpath.dirname(doc.origin), path))
    if rel == ".." or rel.startswith("../"):
        raise BookError(f"{where}: link {url!r} points outside the repository")
    if rel.startswith(ASSIGNMENTS_DIR + "/") or rel == ASSIGNMENTS_DIR:
        if rel in plan.docs:
            target = plan.docs[rel].src
        elif rel in plan.assets:
            target = rel
        elif (ASSIGNMENTS_DIR + "/index.md") in plan.docs and (plan.root / rel).exists():
            target = ASSIGNMENTS_DIR + "/index.md"  # not released yet: the placeholder
        else:
            raise BookError(f"{where}: link {url!r} points at an assignment that is not in "
                            "the released (student) set; only released assignments are published")
    elif not (plan.root / rel).exists() and rel not in plan.docs:
        raise BookError(f"{where}: broken link {url!r} (no file {rel} in the repository)")
    else:
        target = _target_for(plan, rel)
        if kind == "html" and target == rel and rel in plan.assets:
            plan.html_assets.add(rel)
    if kind == "html" and target.endswith(".md"):
        raise BookError(f"{where}: raw-HTML link {url!r} to a page; use Markdown [text](link)")
    frag = parts.fragment
    if target.endswith(".md") and target != rel and re.fullmatch(r"L\d+(-L?\d+)?", frag):
        frag = ""  # GitHub-style line anchors: the source page shows line numbers instead
    new = posixpath.relpath(target, posixpath.dirname(doc.src) or ".")
    return urllib.parse.quote(new, safe="/._-~+") + (f"#{frag}" if frag else "")


def _notebook_title(nb: dict) -> bool:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            src = "".join(cell.get("source", []))
            return bool(re.search(r"^#\s+\S", src, re.M))
    return False


def _render_doc(plan: Plan, doc: Doc, md) -> str | bytes:
    if doc.read_from is None:
        return doc.text or ""
    if doc.read_from.suffix == ".ipynb":
        try:
            nb = json.loads(doc.read_from.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise BookError(f"{doc.origin}: not a valid notebook ({e})") from e
        if not _notebook_title(nb):
            raise BookError(f"{doc.origin}: the notebook has no title (its first Markdown "
                            "cell must start with a '# Title' heading)")
        if doc.kind == "notebook":  # the reader's version: "write it yourself" solutions hidden
            nb = student_notebook(nb, doc.origin)
        for i, cell in enumerate(nb.get("cells", [])):
            if cell.get("cell_type") == "code":
                _describe_plots(cell, nb, i)
            if cell.get("cell_type") != "markdown":
                continue
            src = cell.get("source", "")
            src = "".join(src) if isinstance(src, list) else src
            new = _process_links(plan, doc, src, md, f"{doc.origin} (cell {i})")
            if new != src:
                cell["source"] = new
        return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    text = _process_links(plan, doc, doc.read_from.read_text(encoding="utf-8"), md, doc.origin)
    if doc.kind == "chapter":
        text = _with_notebook_link(plan, doc, text)
    if doc.orphan:  # reached by links only (README.md, say): not in the table of contents
        if text.startswith("---\n"):
            text = "---\norphan: true\n" + text[4:]
        else:
            text = "---\norphan: true\n---\n\n" + text
    return text


def _is_plot(output: dict) -> bool:
    return any(k.startswith("image/") for k in output.get("data", {}))


def _plot_description(cell: dict, nb: dict, index: int) -> str:
    """What a plot cell draws, from its source: title and axis labels, else its first comment,
    else the heading of the section it sits in."""
    src = cell.get("source", "")
    src = "".join(src) if isinstance(src, list) else src
    lit = r"""f?(["'])((?:(?!\1).)+)\1"""

    def strings(*names: str) -> list[str]:
        found = []
        for name in names:
            for m in re.finditer(rf"\b(?:set_)?{name}\s*[(=]\s*{lit}", src):
                text = re.sub(r"\{[^{}]*\}", "…", m.group(2)).strip()
                if text and text not in found:
                    found.append(text)
        return found

    titles, xs, ys = strings("suptitle", "title"), strings("xlabel"), strings("ylabel")
    curves = strings("label")  # legend entries: what the lines are
    if ys and xs:
        what = "; ".join(f"{y} against {xs[min(i, len(xs) - 1)]}" for i, y in enumerate(ys))
        return (f"Plot of {what}" + (f" ({', '.join(titles)})" if titles else "")
                + (f": {', '.join(curves)}" if curves else ""))
    if titles:
        return "Plot: " + "; ".join(titles)
    comment = re.search(r"^\s*#\s*(?!NBVAL)(.{8,})$", src, re.M)
    if comment:
        return "Plot: " + comment.group(1).strip()
    for c in reversed(nb.get("cells", [])[:index]):
        text = c.get("source", "")
        text = "".join(text) if isinstance(text, list) else text
        headings = re.findall(r"^#+\s+(.+)$", text, re.M) if c.get("cell_type") == "markdown" else []
        if headings:  # the last heading above the plot is the section it belongs to
            return f"Plot for the section \u201c{re.sub(r'[`*_$]', '', headings[-1]).strip()}\u201d"
    return "Plot"


def _describe_plots(cell: dict, nb: dict, index: int) -> None:
    """Give a plot output alt text that says what it shows (else Sphinx uses the image's file
    name, a hash). The cell's own ``mystnb.image.alt`` metadata wins; without it the
    description comes from the cell's source (`_plot_description`)."""
    if not any(_is_plot(o) for o in cell.get("outputs", [])):
        return
    image = cell.setdefault("metadata", {}).setdefault("mystnb", {}).setdefault("image", {})
    if not str(image.get("alt", "")).strip():
        image["alt"] = _plot_description(cell, nb, index)


def _with_notebook_link(plan: Plan, doc: Doc, text: str) -> str:
    """A chapter page opens with a pointer to its notebook (the published, solution-free
    version) and how to run a copy of it."""
    m = _NUM.match(posixpath.basename(doc.src))
    notebooks = [d for d in plan.docs.values() if d.kind == "notebook" and m
                 and _NUM.match(posixpath.basename(d.src))
                 and int(_NUM.match(posixpath.basename(d.src)).group(1)) == int(m.group(1))]
    heading = re.search(r"^#\s+.+$", text, re.M)
    if not notebooks or not heading:
        return text
    links = ", ".join(
        f"[{posixpath.basename(d.src)}]({posixpath.relpath(d.src, posixpath.dirname(doc.src))})"
        for d in notebooks)
    note = (f"\n\n:::{{note}}\nThis chapter's notebook: {links}. To run it yourself, make your own "
            "copy of the course notebooks (with the exercises' solutions hidden) and open it: "
            "`python -m minichinchilla course init my-course`, then "
            "`jupyter lab my-course/notebooks`.\n:::\n")
    return text[:heading.end()] + note + text[heading.end():]


def _doc_title(doc: Doc) -> str:
    """The first level-1 heading of a page, as plain text ("" if none)."""
    if doc.read_from is None:
        text = doc.text or ""
    elif doc.read_from.suffix == ".ipynb":
        nb = json.loads(doc.read_from.read_text(encoding="utf-8"))
        text = "\n".join("".join(c.get("source", [])) for c in nb.get("cells", [])
                         if c.get("cell_type") == "markdown")
    else:
        text = doc.read_from.read_text(encoding="utf-8")
    in_fence = False
    for line in text.splitlines():
        if re.match(r"^\s*(```|~~~)", line):
            in_fence = not in_fence
        elif not in_fence and (m := re.match(r"^#\s+(.+?)\s*#*\s*$", line)):
            return re.sub(r"[`*_$<>]", "", m.group(1)).strip()
    return ""


def _toc_label(plan: Plan, tree_path: str) -> str | None:
    """Sidebar label for a notebook: "Notebook 03" right under its chapter (whose title says
    what both are about), the same for every chapter; a notebook with no chapter of its
    number adds its own title."""
    doc = next(d for d in plan.docs.values() if d.src == tree_path)
    if doc.origin == SOURCE_PACKAGE:  # under the caption "Package source": not the same words
        return "One page per module"
    if doc.kind != "notebook":
        return None
    m = _NUM.match(posixpath.basename(tree_path))
    if not m:
        return None
    title = _doc_title(doc)
    chapter = next((d for d in plan.docs.values() if d.kind == "chapter"
                    and _NUM.match(posixpath.basename(d.src))
                    and int(_NUM.match(posixpath.basename(d.src)).group(1)) == int(m.group(1))),
                   None)
    if chapter is None:  # a notebook without a chapter: its own title says what it is
        rest = re.sub(r"^\d+\s*[·.:\-–—]?\s*", "", title)
        return f"Notebook {m.group(1)}" + (f" · {rest}" if rest else "")
    return f"Notebook {m.group(1)}"


def _index_page(root: Path, plan: Plan) -> str:
    intro = (root / "book" / "intro.md").read_text(encoding="utf-8").rstrip() + "\n\n"

    def toctree(caption: str, entries: list[str]) -> str:
        if not entries:
            return ""
        lines = []
        for e in entries:
            name = e.rsplit(".", 1)[0]
            label = _toc_label(plan, e)
            lines.append(f"{label} <{name}>" if label else name)
        names = "\n".join(lines)
        return f"```{{toctree}}\n:caption: {caption}\n:maxdepth: 1\n\n{names}\n```\n\n"

    source = [SOURCE_PACKAGE + "/index.md"] if SOURCE_PACKAGE in plan.docs else []
    if not plan.chapters_toc:
        intro += "*No chapters have been written yet.*\n\n"
    return (intro + toctree(CHAPTERS_CAPTION, plan.chapters_toc)
            + toctree(ASSIGNMENTS_CAPTION, plan.assignments_toc)
            + toctree(SOURCE_CAPTION, source))


# ----------------------------------------------------------------------------- MathJax


def find_mathjax() -> tuple[Path, int]:
    """A local MathJax: (folder to copy, major version). MathJax 3 from PyPI's
    django-static-mathjax is preferred; Debian's libjs-mathjax (MathJax 2) also works."""
    spec = importlib.util.find_spec("mathjax")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            es5 = Path(loc) / "static" / "mathjax" / "es5"
            if (es5 / "tex-mml-chtml.js").is_file():
                return es5, 3
    debian = Path("/usr/share/javascript/mathjax")
    if (debian / "MathJax.js").is_file():
        return debian, 2
    raise BookError(
        "no local MathJax found: pip install -r requirements-docs.txt "
        "(django-static-mathjax ships MathJax 3) or apt-get install -y libjs-mathjax")


def _install_mathjax(tree: _Tree) -> dict:
    src, version = find_mathjax()
    if version == 3:
        # the combined component and what it loads on demand (fonts, TeX extensions, the
        # menu's accessibility parts); not the other combined builds
        tree.copy("_static/mathjax/tex-mml-chtml.js", src / "tex-mml-chtml.js")
        for sub in ("input", "output", "ui", "a11y", "sre", "adaptors"):
            if (src / sub).is_dir():
                tree.copytree(f"_static/mathjax/{sub}", src / sub, skip=("svg",))
        path = "mathjax/tex-mml-chtml.js"
    else:
        tree.copytree("_static/mathjax", src, skip=("unpacked", "test", "docs"))
        path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML"  # HTML-CSS output: Debian ships its fonts
    return {"mathjax_path": path, "mathjax_version": version, "mathjax_from": str(src)}


# ----------------------------------------------------------------------------- assembly


def assemble(root: Path, src: Path | OwnedFolder, release_dir: Path | None = None) -> Plan:
    """Write the book's sources into `src` (a build folder) and return the plan.

    The released assignments go to `release_dir` (default: a temporary folder)."""
    root = Path(root).resolve()
    if not (root / "book" / "conf.py").is_file():
        raise ValueError(f"--root {root}: no book/conf.py there: is it the repository root?")
    folder = src if isinstance(src, OwnedFolder) else OwnedFolder(Path(src), "--out")
    if release_dir is None:
        with tempfile.TemporaryDirectory(prefix="book-assignments-") as tmp:
            return assemble(root, folder, Path(tmp))
    folder.open()
    try:
        return _assemble(root, folder, release_dir)
    finally:
        folder.seal()


def _assemble(root: Path, folder: OwnedFolder, release_dir: Path) -> Plan:
    plan = _plan(root, release_dir)
    src = folder.path
    tree = _Tree(folder)
    md = _md_parser()
    done: set[str] = set()
    while True:  # pages found through links may add pages: repeat until nothing is new
        todo = [d for o, d in plan.docs.items() if o not in done and d.kind != "listing"]
        if not todo:
            break
        for doc in todo:
            done.add(doc.origin)
            try:
                tree.write(doc.src, _render_doc(plan, doc, md))
            except BookError as e:
                plan.errors.append(str(e))
    if plan.errors:
        raise BookError("\n".join(plan.errors))
    for doc in plan.docs.values():  # listings last: their entries are known by now
        if doc.kind == "listing":
            tree.write(doc.src, doc.text or "")
    for rel, path in plan.assets.items():
        tree.copy(rel, path)
    tree.write("index.md", _index_page(root, plan))
    tree.write("conf.py", (root / "book" / "conf.py").read_bytes())
    static = root / "book" / "static"
    if static.is_dir():
        tree.copytree("_static", static)
    settings = _install_mathjax(tree)
    tree.write("_book_settings.json", json.dumps(settings, indent=1) + "\n")
    tree.prune()
    return plan


# ----------------------------------------------------------------------------- build


@dataclass
class BuildResult:
    out: Path
    seconds: float
    warnings: list[str]
    tolerated: list[str]
    notices: list[str]
    pages: list[str]  # site paths of the chapters, notebooks and assignments, reading order


_WARN_START = re.compile(r"(WARNING|ERROR|CRITICAL|SEVERE):")


def _parse_warnings(text: str) -> list[str]:
    items: list[str] = []
    for line in text.splitlines():
        if _WARN_START.search(line) or not items:
            if line.strip():
                items.append(line)
        elif line.strip():
            items[-1] += "\n" + line
    return items


class _Refs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.loads: list[str] = []  # resources the browser fetches
        self.links: list[str] = []  # <a href>

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "video", "audio") and a.get("src"):
            self.loads.append(a["src"])
        elif tag == "link" and a.get("href"):
            rel = (a.get("rel") or "").lower()
            if any(r in rel for r in ("stylesheet", "preload", "icon", "prefetch", "modulepreload")):
                self.loads.append(a["href"])
            else:
                self.links.append(a["href"])
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])


_SPLIT = re.compile(r"\\begin\{split\}(.*?)\\end\{split\}", re.S)


def tag_in_split(rel: str, html_text: str) -> list[str]:
    """Equations MathJax 3 refuses: a \\tag inside \\begin{split} (shows a red error)."""
    return [f"{rel}: \\tag inside \\begin{{split}}: {m.group(1).strip()[:60]}…"
            for m in _SPLIT.finditer(html_text) if "\\tag" in m.group(1)]


def check_site(out: Path) -> list[str]:
    """Problems in the built site: a resource from another host, a local link or resource
    that is not there, a CSS url() to another host, or an equation MathJax cannot typeset
    because Sphinx put its \\tag inside a split environment."""
    problems: list[str] = []
    out = Path(out)
    for page in sorted(out.rglob("*.html")):
        rel = page.relative_to(out).as_posix()
        if rel.startswith("_static/") or rel.startswith("_sources/"):
            continue
        p = _Refs()
        p.feed(page.read_text(encoding="utf-8", errors="replace"))
        for url in p.loads:
            u = urllib.parse.urlsplit(url)
            if u.scheme in ("http", "https") or url.startswith("//"):
                problems.append(f"{rel}: loads {url} from another host")
        for url in p.loads + p.links:
            u = urllib.parse.urlsplit(url)
            if u.scheme or u.netloc or not u.path:
                continue
            target = (page.parent / urllib.parse.unquote(u.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{rel}: link to missing {url}")
        problems += tag_in_split(rel, page.read_text(encoding="utf-8", errors="replace"))
    for css in sorted(out.rglob("*.css")):
        for m in re.finditer(r"""(?:@import\s+|url\()\s*["']?((?:https?:)?//[^"')\s]+)""",
                             css.read_text(encoding="utf-8", errors="replace")):
            problems.append(f"{css.relative_to(out).as_posix()}: loads {m.group(1)}")
    return problems


def _prune_site(site: OwnedFolder, src: Path) -> None:
    """Remove pages of documents that are gone (Sphinx leaves them behind), if it wrote them."""
    keep = {"genindex", "search", "py-modindex"}
    for rel in sorted(site.files):
        if not rel.endswith(".html"):
            continue
        if rel.split("/", 1)[0] in ("_static", "_sources", "_images", "_downloads"):
            continue
        doc = rel[:-5]
        if doc in keep or (src / (doc + ".md")).is_file() or (src / (doc + ".ipynb")).is_file():
            continue
        site.remove(rel)


def check_port(port: int) -> int:
    if not 0 <= port <= 65535:
        raise ValueError(f"--port {port}: a TCP port is 0..65535 (0: any free port)")
    return port


def default_out(root: Path) -> Path:
    """Where `book build` writes the site: inside the repository, in git-ignored _build/."""
    return Path(root) / "_build" / "book"


def work_folders(out: Path, src: Path | None = None) -> dict[str, Path]:
    """Every folder a build into `out` writes: the site and, beside it, the assembled
    sources, Sphinx's cache and MyST-NB's images (it puts them in ``jupyter_execute`` next to
    the site, before Sphinx copies them in)."""
    out = Path(out)
    return {"site": out, "src": Path(src or out.parent / (out.name + "-src")).absolute(),
            "doctrees": out.parent / (out.name + "-doctrees"),
            "outputs": out.parent / "jupyter_execute"}


def build_folders(root: Path | None = None, out: Path | None = None,
                  src: Path | None = None, jobs: int = 1) -> tuple[Path, dict[str, OwnedFolder]]:
    """Check every argument of a build before anything is touched (ValueError naming the
    flag): the root, the jobs, and that each folder the build writes (the site, and beside it
    its assembled sources, Sphinx's cache and MyST-NB's images) is absent, empty or the
    build's own."""
    root = Path(root or default_root()).resolve()
    if not root.is_dir():
        raise ValueError(f"--root {root}: no such folder")
    if not (root / "book" / "conf.py").is_file():
        raise ValueError(f"--root {root}: no book/conf.py there: is it the repository root?")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs {jobs}: expected a whole number >= 1")
    out = Path(out or default_out(root)).absolute()
    if out.resolve() == root or out.resolve() in root.parents:
        raise ValueError(f"--out {out}: the site cannot be the repository or a folder above it")
    inside = out.resolve().relative_to(root).parts if root in out.resolve().parents else ()
    if inside and inside[0] in SOURCE_FOLDERS:  # the next build would publish the site itself
        raise ValueError(f"--out {out}: inside the book's sources ({inside[0]}/); "
                         "use a folder outside them, e.g. the default _build/book")
    paths = work_folders(out, src)
    folders = {"site": OwnedFolder(out, "--out"),
               "src": OwnedFolder(paths["src"], f"--out (its sources folder {paths['src'].name})"),
               "doctrees": OwnedFolder(paths["doctrees"],
                                       f"--out (its cache folder {paths['doctrees'].name})"),
               "outputs": OwnedFolder(paths["outputs"],
                                      "--out (MyST-NB's image folder jupyter_execute beside it)")}
    for f in folders.values():
        f.check()
    return root, folders


def build(root: Path | None = None, out: Path | None = None, src: Path | None = None,
          jobs: int = 1, clean: bool = False, verbose: bool = True) -> BuildResult:
    """Assemble and build the book; raise BookError on anything that broke, ValueError on
    bad arguments (before anything is written or deleted)."""
    t0 = time.perf_counter()
    root, folders = build_folders(root, out, src, jobs)
    for f in folders.values():
        f.open()
    try:
        return _build(root, folders, jobs, clean, verbose, t0)
    finally:
        for f in folders.values():
            f.seal()


def _build(root: Path, folders: dict[str, OwnedFolder], jobs: int, clean: bool, verbose: bool,
           t0: float) -> BuildResult:
    site, cache = folders["site"], folders["doctrees"]
    out, src, doctrees = site.path, folders["src"].path, cache.path
    if clean:
        for f in folders.values():
            f.clear()
    with tempfile.TemporaryDirectory(prefix="book-assignments-") as released:
        plan = assemble(root, folders["src"], Path(released))
        titles = sorted(f"{d.src}\t{_doc_title(d)}" for d in plan.docs.values())
    # Sphinx re-reads pages when a config *value* changes, not when conf.py's code does
    # (an event handler, say): start from fresh doctrees whenever conf.py changed.
    stamp = doctrees / ".book-conf-hash"
    conf_hash = hashlib.sha256((src / "conf.py").read_bytes()
                               + (src / "_book_settings.json").read_bytes()).hexdigest()
    if not stamp.is_file() or stamp.read_text() != conf_hash:
        cache.clear()
    # Every page's sidebar shows the whole table of contents, but Sphinx rewrites only the
    # pages that changed: when the TOC or a page title changed, write all pages (-a).
    toc_stamp = doctrees / ".book-toc-hash"
    toc_hash = hashlib.sha256("\n".join(
        [(src / "index.md").read_text(encoding="utf-8")]
        + titles).encode()).hexdigest()
    write_all = not toc_stamp.is_file() or toc_stamp.read_text() != toc_hash
    for n in plan.notices:
        print(f"book: note: {n}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        warnfile = Path(tmp) / "warnings.txt"
        cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-d", str(doctrees),
               "-w", str(warnfile), "--keep-going", "-j", str(jobs), "-q",
               *(["-a"] if write_all else []), str(src), str(out)]
        env = dict(os.environ, PYTHONWARNINGS="ignore::DeprecationWarning")
        proc = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True)
        raw = warnfile.read_text(encoding="utf-8") if warnfile.exists() else ""
    srcs = {str(src / d.src): d.origin for d in plan.docs.values()}
    warnings, tolerated = [], []
    for w in _parse_warnings(raw):
        for full, origin in srcs.items():  # name the repository file, not the build copy
            w = w.replace(full, origin)
        w = w.replace(str(src) + os.sep, "")
        (tolerated if any(re.search(p, w) for p, _ in TOLERATED_WARNINGS) else warnings).append(w)
    if proc.returncode != 0 and not warnings:
        warnings.append(f"sphinx exited with {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    if not (out / "index.html").is_file():
        warnings.append("sphinx wrote no index.html")
    elif doctrees.is_dir():
        write_text_atomically(stamp, conf_hash)
        write_text_atomically(toc_stamp, toc_hash)
    # raw-HTML <img src> etc. are not copied by Sphinx: put them where the pages expect them
    for rel in plan.html_assets:
        dest = out / rel
        if not site.owns(rel):
            warnings.append(f"{dest} was not written by the build; move it away")
            continue
        copy_file_atomically(plan.assets[rel], dest)
    site.seal()
    _prune_site(site, src)
    if not warnings:
        warnings += check_site(out)
    dt = time.perf_counter() - t0
    if verbose:
        for w in tolerated:
            print(f"book: tolerated: {w}", file=sys.stderr)
    if warnings:
        # an incremental build would not re-read the pages that warned, and would pass:
        # forget the cached environment so the next build reports them again
        cache.seal()
        cache.clear()
        raise BookError("the book did not build cleanly:\n" + "\n".join(warnings))
    pages = [re.sub(r"\.(md|ipynb)$", ".html", p)
             for p in plan.chapters_toc + plan.assignments_toc]
    return BuildResult(out=out, seconds=dt, warnings=[], tolerated=tolerated,
                       notices=plan.notices, pages=pages)


# ----------------------------------------------------------------------------- serve


def serve(out: Path, port: int = 8000, host: str = "127.0.0.1") -> None:
    import http.server

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    try:
        httpd = http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as e:  # the port is taken, or the host is not an address of this machine
        raise ValueError(f"--port {port} / --host {host}: cannot listen there ({e.strerror})") from None
    with httpd:
        print(f"book: serving {out} at http://{host}:{httpd.server_address[1]}/ (Ctrl-C stops)")
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m minichinchilla.book",
                                 description="Build or serve the course as a static book.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="assemble chapters + notebooks and build the HTML book")
    s = sub.add_parser("serve", help="serve the built book on localhost (builds it if missing)")
    for p in (b, s):
        p.add_argument("--out", type=Path, default=None,
                       help="site folder (default: _build/book)")
        p.add_argument("--root", type=Path, default=None, help="repository root")
    b.add_argument("--clean", action="store_true", help="start from an empty build folder")
    b.add_argument("--jobs", "-j", type=int, default=1, help="Sphinx worker processes")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--rebuild", action="store_true", help="build before serving")
    return run_command(ap, _run, argv)


def _run(args) -> int:
    # every argument is checked before anything is built, written or deleted
    if args.cmd == "serve":
        check_port(args.port)
    root, folders = build_folders(args.root, args.out, jobs=getattr(args, "jobs", 1))
    out = folders["site"].path
    try:
        if args.cmd == "build" or args.rebuild or not (out / "index.html").is_file():
            r = build(root=root, out=out, jobs=getattr(args, "jobs", 1),
                      clean=getattr(args, "clean", False))
            print(f"book: built {r.out}/index.html in {r.seconds:.1f} s")
        if args.cmd == "serve":
            serve(out, port=args.port, host=args.host)  # Ctrl-C there is the normal stop: exit 0
    except BookError as e:  # the sources do not build: a failed build (1), not a usage mistake (2)
        print(f"book: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
