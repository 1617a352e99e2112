"""The course as a static, offline book (minichinchilla/book.py).

Two kinds of check:

* build checks on a small SAMPLE repository made in a temporary folder (two chapters, a
  notebook with a figure, a fake package, instructor assignments and a fake release
  command): broken links, notebooks without a title and broken cross-references fail the
  build, instructor solutions are never published, nothing is loaded from another host;
* browser checks: headless Chromium opens the built book (the sample one, and the real one
  built from this repository) from a local HTTP server and checks every chapter, notebook
  and assignment page: no console errors, math typeset by the local MathJax with no MathJax
  error box and no display equation wider than its column, no code block scrolling sideways,
  every image loads and has alt text that is not a file name, every internal link resolves,
  search works, and no request leaves localhost;
* what `book build` / `book serve` may touch (no docs stack needed: these run in CI's first
  phase): every argument checked before anything is written, and nothing deleted that the build
  did not write (a manifest per folder).
  A screenshot of one chapter is saved to _build/artifacts/chapter-screenshot.png.

Needs requirements-docs.txt (Sphinx, MyST-NB, sphinx-book-theme, a local MathJax, Selenium)
and, for the browser checks, Debian's chromium + chromium-driver; those tests are marked `docs`
and skip where they are absent.
"""
from __future__ import annotations

import base64
import functools
import http.server
import importlib.util
import json
import os
import re
import shutil
import struct
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

import pytest

from minichinchilla import book
from minichinchilla.book import MANIFEST

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "_build" / "artifacts"

_missing_docs = [m for m in ("sphinx", "myst_nb", "sphinx_book_theme", "sphinx_copybutton")
                 if importlib.util.find_spec(m) is None]
try:
    book.find_mathjax()
    _no_mathjax = ""
except book.BookError as e:
    _no_mathjax = str(e)
_skip_without_docs = pytest.mark.skipif(
    bool(_missing_docs or _no_mathjax),
    reason=(f"docs packages missing ({', '.join(_missing_docs)}): "
            "pip install -r requirements-docs.txt" if _missing_docs else _no_mathjax))


def needs_docs(test):
    """Needs the docs stack (marked `docs` for CI's phase 2; skipped cleanly without it)."""
    return pytest.mark.docs(_skip_without_docs(test))


def _browser_missing() -> str:
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed: pip install -r requirements-docs.txt"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        return "headless Chromium missing: apt-get install -y chromium chromium-driver"
    return ""


_skip_without_browser = pytest.mark.skipif(bool(_browser_missing()),
                                           reason=_browser_missing() or "-")


def needs_browser(test):
    return pytest.mark.docs(_skip_without_browser(test))


# ----------------------------------------------------------------------------- the sample


def _png(w: int = 24, h: int = 16) -> bytes:
    """A small valid RGB PNG (a gradient), without any imaging library."""
    rows = b"".join(b"\x00" + bytes(v for x in range(w) for v in (x * 10 % 256, y * 15 % 256, 128))
                    for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


CH02 = r"""# 02 Softmax and cross-entropy

The softmax turns scores into probabilities,

$$
y_i = \frac{e^{x_i}}{\sum_j e^{x_j}} \tag{2.1}
$$

and the cross-entropy of the target $t$ is $\ell = -\log y_t$:

$$
\ell = -x_t + \log \sum_j e^{x_j}. \tag{2.6}
$$

The next chapter is [attention](03-attention.md) (see also the [read-me](../README.md));
the code is in
[`functional/softmax.py`](../minichinchilla/functional/softmax.py#L3).

## Summary

Cross-entropy is the loss of every model in this course.
"""

CH03 = r"""# 03 Attention

Scaled dot-product attention with a causal mask:

$$
S = \frac{Q K^\top}{\sqrt{d}} + M, \qquad P = \mathrm{softmax}(S). \tag{3.2}
$$

A mask with cases, whose line breaks make Sphinx reach for a split environment:

$$
M_{ts} =
\begin{cases}
0 & s \le t , \\
-\infty & \text{otherwise.}
\end{cases}
\tag{3.3}
$$

and two lines with no environment of their own:

$$
a = b + c \\
d = e
\tag{3.5}
$$

```{math}
:label: eq-pv
O = P V
```

An aligned block:

\begin{align}
dV &= P^\top dO \tag{3.7} \\
dP &= dO\, V^\top
\end{align}

![a figure](figures/heatmap.png)

<img src="figures/heatmap.png" alt="the same figure as raw HTML" width="32">

See the [notebook](../notebooks/03-attention.ipynb), the
[softmax chapter's loss](02-softmax.md#summary), the
[attention code](../minichinchilla/functional/attention.py), the
[functional folder](../minichinchilla/functional/) and the [tests](../tests/test_attention.py).

```python
def attention(q, k, v):  # a code block, not a link: [x](missing.py)
    return softmax(q @ k.T) @ v
```
"""


def _nb(cells: list[dict]) -> str:
    return json.dumps({"cells": cells, "metadata": {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}, indent=1)


def _md(src: str, **meta) -> dict:
    return {"cell_type": "markdown", "id": f"m{abs(hash(src)) % 10**8}", "metadata": meta,
            "source": src}


def _code(src: str, outputs: list[dict], **meta) -> dict:
    return {"cell_type": "code", "id": f"c{abs(hash(src)) % 10**8}", "metadata": meta,
            "execution_count": 1, "source": src, "outputs": outputs}


NB03 = _nb([
    _md("# 03 Attention (notebook)\n\nThe weights $P$ of eq. $(3.4)$ — see "
        "[chapter 3](../chapters/03-attention.md) and "
        "[`backend.py`](../minichinchilla/backend.py)."),
    _code("import numpy as np\nprint(np.arange(3))",
          [{"output_type": "stream", "name": "stdout", "text": "[0 1 2]\n"}]),
    _code("plt.imshow(P); plt.show()", [{"output_type": "display_data", "metadata": {},
                                         "data": {"image/png": base64.b64encode(_png()).decode(),
                                                  "text/plain": "<Figure>"}}]),
    _code("ax.plot(losses)\nax.set(xlabel='step', ylabel='loss')\nplt.show()",
          [{"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(_png(8, 8)).decode(), "text/plain": "<Figure>"}}],
          mystnb={"image": {"alt": "Training loss falling over 100 steps"}}),
    _md("## Write it yourself\n\nThe weights, by hand:"),
    _code("def weights(S):\n    ### BEGIN SOLUTION\n    return softmax(S)  # WRITE-IT-YOURSELF-SECRET\n"
          "    ### END SOLUTION\n", [{"output_type": "stream", "name": "stdout",
                                    "text": "SECRET-OUTPUT\n"}]),
    _md("$$\nP = \\mathrm{softmax}(S) \\tag{3.4}\n$$"),
])

ASSIGNMENT = _nb([
    _md("# Assignment 1: softmax\n\nImplement eq. $(2.1)$; compare with "
        "[the chapter](../../chapters/02-softmax.md)."),
    _code("def softmax(x):\n    # SOLUTION-SECRET-LINE\n    return np.exp(x) / np.exp(x).sum()",
          [], tags=["solution"]),
])

FAKE_RELEASE = '''"""Fake release command for the book test: drops cells tagged "solution"."""
import json, sys
from pathlib import Path

def main(argv):
    assert argv[0] == "release"
    out = Path(argv[1]); out.mkdir(parents=True, exist_ok=True)
    src = Path(__file__).resolve().parents[2] / "notebooks" / "assignments"
    for p in sorted(src.glob("*.ipynb")):
        nb = json.loads(p.read_text())
        for c in nb["cells"]:
            if "solution" in c["metadata"].get("tags", []):
                c["source"] = "# YOUR CODE HERE\\nraise NotImplementedError"
        (out / p.name).write_text(json.dumps(nb))
    return 0

sys.exit(main(sys.argv[1:]))
'''


def make_sample_repo(dest: Path, release_command: bool = True) -> Path:
    """A small repository with the layout of this one, for building a book quickly."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "book", dest / "book")
    files = {
        "chapters/02-softmax.md": CH02,
        "chapters/03-attention.md": CH03,
        "notebooks/03-attention.ipynb": NB03,
        "notebooks/assignments/01-softmax.ipynb": ASSIGNMENT,
        "minichinchilla/__init__.py": '"""Sample package."""\n',
        "minichinchilla/backend.py": "def get_array_module(x):\n    return None\n",
        "minichinchilla/functional/__init__.py": "",
        "minichinchilla/functional/softmax.py": "\n\ndef softmax_forward(x):\n    pass\n",
        "minichinchilla/functional/attention.py": "def attention_forward(q, k, v):\n"
                                                  "    '''```not a fence```'''\n",
        "tests/test_attention.py": "def test_nothing():\n    pass\n",
        "README.md": "# Sample course\n\nStart with [chapter 2](chapters/02-softmax.md); "
                     "run [the tests](tests/).\n",
    }
    if release_command:
        files["minichinchilla/assignments/__init__.py"] = ""
        files["minichinchilla/assignments/__main__.py"] = FAKE_RELEASE
    for rel, text in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text, encoding="utf-8")
    (dest / "chapters" / "figures").mkdir()
    (dest / "chapters" / "figures" / "heatmap.png").write_bytes(_png(64, 48))
    return dest


# ----------------------------------------------------------------------------- build checks


def test_png_helper_is_valid():
    data = _png(5, 4)
    assert data.startswith(b"\x89PNG") and struct.unpack(">II", data[16:24]) == (5, 4)


@needs_docs
def test_assemble_rewrites_links_and_keeps_layout(tmp_path):
    root = make_sample_repo(tmp_path / "repo")
    src = tmp_path / "src"
    plan = book.assemble(root, src)
    assert plan.chapters_toc == ["chapters/02-softmax.md", "chapters/03-attention.md",
                                 "notebooks/03-attention.ipynb"]
    ch3 = (src / "chapters/03-attention.md").read_text()
    assert "](../notebooks/03-attention.ipynb)" in ch3  # unchanged: same layout
    assert "](../minichinchilla/functional/attention.py.md)" in ch3  # a source page
    assert "](../minichinchilla/functional/index.md)" in ch3  # a folder listing
    assert "](../tests/test_attention.py.md)" in ch3
    assert "[x](missing.py)" in ch3  # code is left alone
    ch2 = (src / "chapters/02-softmax.md").read_text()
    assert "](../minichinchilla/functional/softmax.py.md)" in ch2  # #L3 anchor dropped
    assert (src / "chapters/figures/heatmap.png").is_file()
    page = (src / "minichinchilla/functional/attention.py.md").read_text()
    assert page.startswith("# `minichinchilla/functional/attention.py`")
    assert "````{code-block} python" in page  # fence longer than the ``` inside
    assert "orphan: true" in (src / "tests/test_attention.py.md").read_text()
    readme = (src / "README.md").read_text()  # a page reached by a link: rendered, orphan
    assert readme.startswith("---\norphan: true\n---") and "](tests/index.md)" in readme
    index = (src / "index.md").read_text()
    assert index.index("chapters/03-attention\n") < index.index("<notebooks/03-attention>")
    assert "Notebook 03 <notebooks/03-attention>" in index  # the same label under every chapter
    # the chapter page points at its notebook and says how to run a copy
    assert "[03-attention.ipynb](../notebooks/03-attention.ipynb)" in ch3
    assert "course init" in ch3
    nb = json.loads((src / "notebooks/03-attention.ipynb").read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert not any("WRITE-IT-YOURSELF-SECRET" in c for c in code)  # the solution is hidden
    assert any("raise NotImplementedError" in c for c in code)
    alts = [c["metadata"].get("mystnb", {}).get("image", {}).get("alt") for c in nb["cells"]
            if c["cell_type"] == "code" and c.get("outputs")
            and "image/png" in c["outputs"][0].get("data", {})]
    assert alts == ["Plot for the section \u201c03 Attention (notebook)\u201d",
                    "Training loss falling over 100 steps"]
    assert ":caption: Assignments" in index
    # only the released student version is in the book, never the instructor one
    released = (src / "notebooks/assignments/01-softmax.ipynb").read_text()
    assert "SOLUTION-SECRET-LINE" not in released and "YOUR CODE HERE" in released
    assert (src / "_static/mathjax").is_dir() and (src / "conf.py").is_file()


@needs_docs
def test_assignments_without_release_command_are_not_published(tmp_path):
    root = make_sample_repo(tmp_path / "repo", release_command=False)
    src = tmp_path / "src"
    plan = book.assemble(root, src)
    assert any("release" in n for n in plan.notices)
    assert not (src / "notebooks/assignments/01-softmax.ipynb").exists()
    assert "once the release command" in (src / "notebooks/assignments/index.md").read_text()
    for p in src.rglob("*"):
        if p.is_file() and p.suffix in (".md", ".ipynb"):
            assert "SOLUTION-SECRET-LINE" not in p.read_text(), p


@needs_docs
@pytest.mark.parametrize("bad, message", [
    ("See [gone](../minichinchilla/functional/gone.py).", "broken link"),
    ("See ![gone](figures/nope.png).", "broken link"),
    ("See [escape](../../outside.md).", "outside the repository"),
])
def test_broken_link_fails(tmp_path, bad, message):
    root = make_sample_repo(tmp_path / "repo")
    (root / "chapters" / "04-ffn.md").write_text(f"# 04 FFN\n\n{bad}\n")
    with pytest.raises(book.BookError, match=message):
        book.assemble(root, tmp_path / "src")
    # and the command says so with a non-zero exit status
    assert book.main(["build", "--root", str(root), "--out", str(tmp_path / "site")]) == 1


@needs_docs
def test_notebook_without_title_fails(tmp_path):
    root = make_sample_repo(tmp_path / "repo")
    (root / "notebooks" / "04-ffn.ipynb").write_text(_nb([_md("No heading here.")]))
    with pytest.raises(book.BookError, match="no title"):
        book.assemble(root, tmp_path / "src")


@needs_docs
def test_broken_cross_reference_fails_the_build(tmp_path):
    root = make_sample_repo(tmp_path / "repo")
    (root / "chapters" / "04-ffn.md").write_text(
        "# 04 FFN\n\nSee [a missing section](03-attention.md#no-such-section) and "
        "{eq}`eq-missing`.\n")
    with pytest.raises(book.BookError) as err:
        book.build(root=root, out=tmp_path / "site", verbose=False)
    assert "04-ffn" in str(err.value) and "no-such-section" in str(err.value)
    assert "eq-missing" in str(err.value)


def test_plot_alt_text_says_what_the_plot_shows():
    """Sphinx's default alt text for a notebook plot is its file name (a hash); the book uses
    the cell's mystnb.image.alt, else the cell's own labels, else its section's heading."""
    plot = [{"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "<Figure>"}}]
    labelled = _code("ax.loglog(hs, err, label='centred')\nax.set_xlabel('step h')\n"
                     "ax.set(ylabel=f'relative error {k}')\nplt.show()", plot)
    bare = _code("plot_approach2(a2)", plot)
    described = _code("plot_approach2(a2)", plot, mystnb={"image": {"alt": "IsoFLOP valleys"}})
    nb = {"cells": [_md("# 10 Scaling\n\n## Approach 2: IsoFLOP profiles"), labelled, bare, described]}
    for i, cell in enumerate(nb["cells"][1:], start=1):
        book._describe_plots(cell, nb, i)
    alts = [c["metadata"]["mystnb"]["image"]["alt"] for c in nb["cells"][1:]]
    assert alts == ["Plot of relative error … against step h: centred",
                    "Plot for the section \u201cApproach 2: IsoFLOP profiles\u201d",
                    "IsoFLOP valleys"]
    text_only = _code("print(1)", [{"output_type": "stream", "name": "stdout", "text": "1\n"}])
    book._describe_plots(text_only, nb, 0)
    assert "mystnb" not in text_only["metadata"]


def test_check_site_flags_a_tag_inside_split(tmp_path):
    """Sphinx's wrapping of multi-line equations, which MathJax 3 refuses (eq. 3.3's red box)."""
    (tmp_path / "bad.html").write_text(
        '<div class="math">\\[\\begin{split}M = \\begin{cases} 0 \\\\ 1 \\end{cases}'
        '\\tag{3.3}\\end{split}\\]</div>')
    (tmp_path / "good.html").write_text(
        '<div class="math">\\[\\begin{split}a \\\\ b\\end{split}\\]</div><div class="math">'
        '\\[M = \\begin{cases} 0 \\\\ 1 \\end{cases}\\tag{3.3}\\]</div>')
    problems = book.check_site(tmp_path)
    assert len(problems) == 1 and problems[0].startswith("bad.html: \\tag inside"), problems


def _site_tagged_in_split(out: Path) -> list[str]:
    return [p for page in sorted(out.rglob("*.html"))
            for p in book.tag_in_split(page.relative_to(out).as_posix(), page.read_text())]


def test_check_site_flags_other_hosts_and_missing_files(tmp_path):
    (tmp_path / "a.html").write_text(
        '<script src="https://cdn.example.org/x.js"></script><link rel="stylesheet" '
        'href="//fonts.example.org/f.css"><a href="b.html">ok</a><a href="gone.html">x</a>'
        '<a href="https://example.org/">an external link is fine</a><img src="i.png">')
    (tmp_path / "b.html").write_text("<p>b</p>")
    (tmp_path / "s.css").write_text("@import url(https://fonts.example.org/x.css);")
    problems = "\n".join(book.check_site(tmp_path))
    assert "cdn.example.org" in problems and "fonts.example.org/f.css" in problems
    assert "missing gone.html" in problems and "missing i.png" in problems
    assert "s.css" in problems and "example.org/\n" not in problems + "\n"
    assert "b.html" not in problems


# ----------------------------------------------------------------------------- builds


@pytest.fixture(scope="session")
def sample_site(tmp_path_factory):
    if _missing_docs or _no_mathjax:
        pytest.skip("docs packages missing")
    root = make_sample_repo(tmp_path_factory.mktemp("book") / "repo")
    out = root / "_build" / "book"
    result = book.build(root=root, out=out, verbose=False)
    assert result.pages == ["chapters/02-softmax.html", "chapters/03-attention.html",
                            "notebooks/03-attention.html",
                            "notebooks/assignments/01-softmax.html"]
    return result.out, result.pages


@pytest.fixture(scope="session")
def real_site():
    """The book of this repository, built into _build/book (incremental: reuses a build)."""
    if _missing_docs or _no_mathjax:
        pytest.skip("docs packages missing")
    root = Path(os.environ.get("BOOK_TEST_ROOT", REPO))  # another checkout, if asked
    result = book.build(root=root, out=root / "_build" / "book", verbose=False)
    return result.out, result.pages


@needs_docs
def test_sample_build_is_self_contained(sample_site):
    out, pages = sample_site
    for p in pages:
        assert (out / p).is_file(), p
    assert (out / "_static/mathjax").is_dir()
    assert (out / "searchindex.js").is_file() and (out / "search.html").is_file()
    assert book.check_site(out) == []
    assert _site_tagged_in_split(out) == []
    for secret in ("WRITE-IT-YOURSELF-SECRET", "SECRET-OUTPUT"):  # hidden, output and all
        assert secret not in "".join(p.read_text(errors="replace") for p in out.rglob("*")
                                     if p.is_file() and p.suffix in (".html", ".ipynb", ".txt"))
    assert 'alt="Training loss falling over 100 steps"' in (
        out / "notebooks/03-attention.html").read_text()
    html = (out / "chapters/03-attention.html").read_text()
    assert "_static/mathjax/" in html and "cdn.jsdelivr" not in html
    assert "SOLUTION-SECRET-LINE" not in "".join(p.read_text(errors="replace")
                                                 for p in out.rglob("*") if p.is_file()
                                                 and p.suffix in (".html", ".ipynb", ".js",
                                                                  ".txt", ".md"))


@needs_docs
def test_real_build(real_site):
    out, pages = real_site
    assert (out / "index.html").is_file()
    for p in pages:
        assert (out / p).is_file(), p
    assert book.check_site(out) == []
    assert _site_tagged_in_split(out) == []
    # the reader's notebooks: no write-it-yourself solution on a page or in a download
    for page in [*out.glob("notebooks/*.html"), *out.glob("_sources/notebooks/*.ipynb")]:
        assert "BEGIN SOLUTION" not in page.read_text(errors="replace"), page
    # every figure a chapter shows is in the site, on its page (the browser test sees it load)
    root = Path(os.environ.get("BOOK_TEST_ROOT", REPO))
    for chapter in sorted((root / "chapters").glob("*.md")):
        html = (out / "chapters" / (chapter.stem + ".html")).read_text()
        for fig in re.findall(r"!\[[^\]]*\]\((figures/[^)\s]+)\)", chapter.read_text()):
            name = Path(fig).name
            assert re.search(rf'<img[^>]+src="[^"]*{re.escape(name)}"', html), (chapter.name, fig)
            assert list(out.rglob(name)), (chapter.name, fig)


# ------------------------------------------------------------- what build and serve may touch


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _users_folder(tmp_path: Path) -> Path:
    d = tmp_path / "mine"
    (d / "deep").mkdir(parents=True)
    (d / "thesis.txt").write_text("three years of work")
    (d / "notes.html").write_text("<p>mine</p>")
    (d / "deep" / "index.html").write_text("<p>also mine</p>")
    return d


@pytest.mark.parametrize("argv, flag", [
    (["build", "--clean", "--root", "{tmp}/not-a-repo"], "--root"),
    (["build", "--root", "{tmp}/not-a-repo"], "--root"),
    (["build", "--clean", "--root", "{repo}"], "--out"),  # a folder the build did not make
    (["build", "--root", "{repo}"], "--out"),
    (["build", "--jobs", "0", "--root", "{repo}"], "--jobs"),
    (["serve", "--root", "{tmp}/not-a-repo"], "--root"),
    (["serve", "--rebuild", "--root", "{repo}"], "--out"),
    (["serve", "--port", "70000", "--root", "{repo}"], "--port"),
    (["serve", "--port", "-1", "--root", "{repo}"], "--port"),
])
def test_bad_arguments_are_refused_before_anything_is_touched(tmp_path, capsys, argv, flag):
    """Issue 15: `book build --clean --out DIR --root NOT_A_REPO` removed DIR; a build into a
    folder deleted its *.html; `serve --port 70000` gave a traceback. Now: exit 2, one error
    line naming the flag, and not one file created, changed or deleted."""
    (tmp_path / "not-a-repo").mkdir()
    mine = _users_folder(tmp_path)
    before, siblings = _tree(mine), sorted(p.name for p in tmp_path.iterdir())
    argv = [a.format(tmp=tmp_path, repo=REPO) for a in argv] + ["--out", str(mine)]
    assert book.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and flag in err[0], err
    assert _tree(mine) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == siblings  # no -src, -doctrees, ...


def test_serve_on_a_taken_port_is_one_error_line(tmp_path, capsys):
    import socket

    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<p>built</p>")
    (site / MANIFEST).write_text('{"files": ["index.html"]}')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert book.main(["serve", "--root", str(REPO), "--out", str(site),
                          "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --port {port}"), err
    assert sorted(p.name for p in site.iterdir()) == [MANIFEST, "index.html"]


def test_a_fresh_out_folder_next_to_user_files_is_fine_but_theirs_is_not(tmp_path):
    """The folders a build writes beside --out (sources, cache, MyST-NB's images) get the
    same protection as --out itself."""
    (tmp_path / "site-src").mkdir()
    (tmp_path / "site-src" / "draft.md").write_text("mine")
    with pytest.raises(ValueError, match="site-src"):
        book.build_folders(REPO, tmp_path / "site")
    (tmp_path / "site-src" / "draft.md").unlink()
    root, folders = book.build_folders(REPO, tmp_path / "site")  # empty: fine
    assert folders["site"].path == tmp_path / "site" and not folders["site"].path.exists()
    with pytest.raises(ValueError, match="--out"):
        book.build_folders(REPO, REPO)  # the repository itself
    with pytest.raises(ValueError, match="inside the book's sources"):
        book.build_folders(REPO, REPO / "chapters" / "site")  # the next build would publish it


def test_owned_folder_deletes_only_what_it_wrote(tmp_path):
    folder = book.OwnedFolder(tmp_path / "site", "--out")
    folder.open()
    (folder.path / "a").mkdir()
    (folder.path / "a" / "page.html").write_text("built")
    (folder.path / "index.html").write_text("built")
    folder.seal()
    (folder.path / "a" / "notes.html").write_text("the user's, put here later")
    again = book.OwnedFolder(tmp_path / "site", "--out")
    again.open()
    assert again.files == {"a/page.html", "index.html"} and again.foreign == {"a/notes.html"}
    assert not again.owns("a/notes.html") and again.owns("new.html")
    again.clear()  # what --clean does
    assert _tree(folder.path) == {".book-manifest.json": (folder.path / MANIFEST).read_bytes(),
                                  "a/notes.html": b"the user's, put here later"}
    again.seal()  # the user's file never becomes the build's
    assert book.OwnedFolder(tmp_path / "site", "--out")._manifest() == set()


def test_prune_site_keeps_pages_the_build_did_not_write(tmp_path):
    site = book.OwnedFolder(tmp_path / "site", "--out")
    site.open()
    for rel in ("index.html", "chapters/gone.html", "chapters/kept.html"):
        (site.path / rel).parent.mkdir(parents=True, exist_ok=True)
        (site.path / rel).write_text("built")
    site.seal()
    (site.path / "chapters" / "mine.html").write_text("the user's")
    site.open()
    src = tmp_path / "src" / "chapters"
    src.mkdir(parents=True)
    (src / "kept.md").write_text("# Kept")
    book._prune_site(site, tmp_path / "src")
    left = sorted(p.relative_to(site.path).as_posix() for p in site.path.rglob("*.html"))
    assert left == ["chapters/kept.html", "chapters/mine.html"]  # index.html: a kept name


def test_the_default_site_is_inside_the_repository_and_ignored_by_git():
    """README: `python -m minichinchilla book build` writes the site inside the repository
    (_build/book and its siblings), and git does not see any of it."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    import subprocess

    folders = book.work_folders(book.default_out(REPO))
    paths = [f / "index.html" for f in folders.values()]
    for p in paths:
        assert p.parent.parent == REPO / "_build"
        proc = subprocess.run(["git", "check-ignore", "-q", str(p)], cwd=REPO)
        assert proc.returncode == 0, f"{p} is not ignored by git"


# ----------------------------------------------------------------------------- the browser


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def browser():
    if _browser_missing():
        pytest.skip(_browser_missing())
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = Path(tempfile.mkdtemp(prefix="book-chromium-"))
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000",
                 f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)  # _WAIT_MATH gives up after 30 s by itself
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def serve_dir():
    servers = []

    def start(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}/"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


_STATUS: dict[str, tuple[int, str]] = {}


def _fetch(url: str) -> tuple[int, str]:
    if url not in _STATUS:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = r.read().decode("utf-8", "replace") if url.endswith(".html") else ""
                _STATUS[url] = (r.status, body)
        except urllib.error.HTTPError as e:
            _STATUS[url] = (e.code, "")
    return _STATUS[url]


_WAIT_MATH = """
const done = arguments[arguments.length - 1];
const t0 = Date.now();
// Sphinx's math elements (MathJax 2 adds span.math of its own inside them)
const nodes = () => [...document.querySelectorAll('article .math.notranslate')];
const typeset = n => n.querySelector('mjx-container, .MathJax_CHTML, .MathJax, .MathJax_SVG') !== null;
function finish() {
  const all = nodes();
  document.fonts.ready.then(() => done({n: all.length, typeset: all.filter(typeset).length}));
}
(function poll() {
  const mj = window.MathJax;
  if (nodes().length === 0 && document.readyState === 'complete') { finish(); return; }
  if (mj && mj.startup && mj.startup.promise) { mj.startup.promise.then(finish); return; }  // v3
  if (mj && mj.Hub && mj.Hub.Queue) { mj.Hub.Queue(finish); return; }  // v2
  if (Date.now() - t0 > 30000) { finish(); return; }
  setTimeout(poll, 100);
})();
"""

# What a reader would see broken once MathJax is done: an equation MathJax refused (it shows a
# red error box, still inside an mjx-container), a display equation wider than its column (cut
# off, or scrolling sideways) and code that scrolls sideways instead of wrapping. book.js scales
# wide equations to fit after typesetting and sets data-math-fitted when done: wait for it.
_LAYOUT = """
const done = arguments[arguments.length - 1];
const t0 = Date.now();
(function wait() {
  const fitter = [...document.scripts].some(s => /book\\.js/.test(s.src));
  if (fitter && !document.documentElement.dataset.mathFitted && Date.now() - t0 < 10000) {
    setTimeout(wait, 50); return;
  }
  const col = document.querySelector('article.bd-article') || document.querySelector('article') || document.body;
  const res = {errors: [], overflow: [], code: []};
  for (const e of document.querySelectorAll('mjx-merror, [data-mjx-error], .MathJax .merror')) {
    res.errors.push((e.getAttribute('data-mjx-error') || e.textContent).slice(0, 120));
  }
  const colBox = col.getBoundingClientRect();
  for (const d of col.querySelectorAll('div.math')) {
    const c = d.querySelector('mjx-container, .MathJax_Display');
    if (!c) continue;
    const box = d.getBoundingClientRect();
    const left = Math.max(box.left, colBox.left), right = Math.min(box.right, colBox.right);
    let lo = Infinity, hi = -Infinity;
    for (const e of c.querySelectorAll('*')) {
      if (e.closest('mjx-assistive-mml, .MJX_Assistive_MathML')) continue;
      const r = e.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      lo = Math.min(lo, r.left); hi = Math.max(hi, r.right);
    }
    if (lo < left - 1 || hi > right + 1) {
      res.overflow.push(`${(d.textContent || '').trim().slice(0, 40)}: spans ${Math.round(lo)}..${Math.round(hi)} px, column ${Math.round(left)}..${Math.round(right)}`);
    }
  }
  for (const pre of col.querySelectorAll('pre')) {
    if (pre.scrollWidth > pre.clientWidth + 1) {
      res.code.push(`${pre.textContent.trim().slice(0, 40)}: ${pre.scrollWidth} px wide in ${pre.clientWidth}`);
    }
  }
  done(res);
})();
"""

# an image whose alt text is its own file name (Sphinx's default for notebook plots) says
# nothing about what the plot shows
_BAD_ALT = re.compile(r"(^|/)[0-9a-f]{16,}\.(png|jpe?g|svg|gif)$|\.(png|jpe?g|svg|gif)$", re.I)

_VISIBLE_TEXT = """
const a = document.querySelector('article.bd-article') || document.querySelector('article') || document.body;
const c = a.cloneNode(true);
c.querySelectorAll('pre, code, script, style, mjx-container, mjx-assistive-mml, .MathJax, .MathJax_Preview, .MJX_Assistive_MathML').forEach(e => e.remove());
return c.textContent;
"""


def _check_page(driver, base: str, page: str) -> dict:
    """Open one page and return what is wrong with it (empty lists: nothing)."""
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get_log("performance")
    driver.get(base + page)
    math = driver.execute_async_script(_WAIT_MATH)
    time.sleep(0.2)
    problems: dict[str, list] = {"console": [], "math": [], "images": [], "links": [],
                                 "hosts": []}
    for entry in driver.get_log("browser"):
        if entry["level"] in ("SEVERE", "ERROR"):
            problems["console"].append(entry["message"])
    if math["typeset"] != math["n"]:
        problems["math"].append(f"{math['n'] - math['typeset']} of {math['n']} not typeset")
    text = driver.execute_script(_VISIBLE_TEXT)
    for raw in ("$$", "\\tag{", "\\frac", "\\begin{"):
        if raw in text:
            i = text.index(raw)
            problems["math"].append(f"raw {raw!r} in text: …{text[max(0, i - 40):i + 40]}…")
    layout = driver.execute_async_script(_LAYOUT)
    problems["math"] += [f"MathJax error: {e}" for e in layout["errors"]]
    problems["math"] += [f"equation overflows: {e}" for e in layout["overflow"]]
    problems["code"] = [f"code scrolls sideways: {e}" for e in layout["code"]]
    for src, ok, alt in driver.execute_script(
            "return [...document.querySelectorAll('article img')].map(i => "
            "[i.src, i.complete && i.naturalWidth > 0, i.getAttribute('alt') || ''])"):
        if not ok:
            problems["images"].append(src)
        if not alt.strip() or _BAD_ALT.search(alt.strip()):
            problems["images"].append(f"{src}: alt text {alt!r} does not say what it shows")
    for img in driver.execute_script(
            "return [...document.images].map(i => [i.src, i.complete && i.naturalWidth > 0])"):
        if not img[1]:
            problems["images"].append(img[0])
    hrefs = driver.execute_script(
        "return [...document.querySelectorAll('a[href]')].map(a => a.href)")
    for href in sorted(set(hrefs)):
        if not href.startswith(base):
            continue
        url, _, frag = href.partition("#")
        status, body = _fetch(url)
        if status != 200:
            problems["links"].append(f"{href} -> HTTP {status}")
        elif frag and body and f'id="{urllib.parse.unquote(frag)}"' not in body:
            problems["links"].append(f"{href} -> no id {frag!r}")
    urls = set(driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"))
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.add(msg["params"]["request"]["url"])
    host = urllib.parse.urlsplit(base).hostname
    for u in sorted(urls):
        parts = urllib.parse.urlsplit(u)
        if parts.scheme in ("data", "blob", "about", "chrome", "chrome-extension"):
            continue
        if parts.hostname not in (host, "localhost", "127.0.0.1"):
            problems["hosts"].append(u)
    problems["math_count"] = math["n"]
    return problems


def _assert_pages(driver, base: str, pages: list[str]) -> dict[str, int]:
    failures, maths = {}, {}
    for page in ["index.html"] + pages:
        t0 = time.perf_counter()
        p = _check_page(driver, base, page)
        print(f"{page}: checked in {time.perf_counter() - t0:.1f} s, {p['math_count']} math")
        maths[page] = p.pop("math_count")
        bad = {k: v for k, v in p.items() if v}
        if bad:
            failures[page] = bad
    assert not failures, json.dumps(failures, indent=1)
    return maths


def _search(driver, base: str, term: str) -> list[str]:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base + "search.html?q=" + urllib.parse.quote(term))
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "const s = document.querySelector('#search-results');"
        "return s && (s.querySelectorAll('li').length > 0 || /match|found|no /i.test("
        "s.textContent));"))
    return driver.execute_script(
        "return [...document.querySelectorAll('#search-results li a')]"
        ".map(a => a.getAttribute('href'))")


@needs_browser
@needs_docs
def test_browser_sample_book(browser, serve_dir, sample_site):
    out, pages = sample_site
    base = serve_dir(out)
    maths = _assert_pages(browser, base, pages)
    assert maths["chapters/03-attention.html"] >= 3 and maths["notebooks/03-attention.html"] >= 2
    hits = _search(browser, base, "cross-entropy")
    assert any("02-softmax" in h for h in hits), hits
    # chapter navigation: the sidebar lists every page, prev/next links follow reading order
    browser.get(base + "chapters/03-attention.html")
    nav = browser.execute_script(
        "return [...document.querySelectorAll('.bd-sidebar-primary a.reference')]"
        ".map(a => a.getAttribute('href'))")
    assert any("02-softmax" in h for h in nav) and any("assignments" in h for h in nav), nav
    nxt = browser.execute_script(
        "const a = document.querySelector('a.right-next'); return a && a.getAttribute('href')")
    assert nxt and "notebooks/03-attention" in nxt


@needs_browser
@needs_docs
def test_browser_real_book(browser, serve_dir, real_site):
    out, pages = real_site
    base = serve_dir(out)
    _assert_pages(browser, base, pages)
    chapters = [p for p in pages if p.startswith("chapters/")]
    root = Path(os.environ.get("BOOK_TEST_ROOT", REPO))
    searched = any("cross-entropy" in (root / p.replace(".html", ".md")).read_text().lower()
                   for p in chapters)
    if searched:
        hits = _search(browser, base, "cross-entropy")
        assert hits, "search for cross-entropy found nothing"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = chapters[min(3, len(chapters) - 1)] if chapters else "index.html"
    browser.get(base + shot)
    browser.execute_async_script(_WAIT_MATH)
    browser.save_screenshot(str(ARTIFACTS / "chapter-screenshot.png"))
    assert (ARTIFACTS / "chapter-screenshot.png").stat().st_size > 10_000
    if browser.execute_script(  # and one scrolled to its first display equation
            "const m = document.querySelector('article div.math.notranslate');"
            "if (!m) return false; m.scrollIntoView({block: 'center'}); return true;"):
        time.sleep(0.3)
        browser.save_screenshot(str(ARTIFACTS / "chapter-math-screenshot.png"))


@needs_browser
@needs_docs
def test_browser_sample_screenshot(browser, serve_dir, sample_site):
    """A screenshot of a sample chapter too: useful while the real chapters are few."""
    out, _ = sample_site
    base = serve_dir(out)
    browser.get(base + "chapters/03-attention.html")
    browser.execute_async_script(_WAIT_MATH)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "sample-chapter-screenshot.png"))
    assert (ARTIFACTS / "sample-chapter-screenshot.png").stat().st_size > 10_000
