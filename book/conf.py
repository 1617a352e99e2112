"""Sphinx configuration for the minichinchilla book.

This file is copied into the assembled source folder (``_build/book-src/``) by
``python -m minichinchilla.book build``; it is not meant to be run from ``book/``.
The build writes ``_book_settings.json`` beside it with the values that depend on
the machine (where the local MathJax copy came from).

Everything the site needs is served from the site itself: MathJax is a local copy in
``_static/mathjax/``, the theme bundles its fonts and icons, the search index is
Sphinx's own, and nothing is fetched from a CDN (ipywidgets' loader, Thebe and launch
buttons are off).
"""
import json
import re
from pathlib import Path

_here = Path(__file__).resolve().parent
_settings = json.loads((_here / "_book_settings.json").read_text(encoding="utf-8"))

project = "minichinchilla"
author = "the minichinchilla authors"
copyright = "the minichinchilla authors, MIT licence"
root_doc = "index"
language = "en"

extensions = [
    "myst_nb",  # Markdown (MyST) chapters and executed notebooks
    "sphinx_copybutton",
]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["**.ipynb_checkpoints", "_book_settings.json"]
templates_path = []

# ---- MyST: $…$ / $$…$$ math, amsmath environments, heading anchors for `file.md#section` links
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_dmath_double_inline = True
myst_heading_anchors = 4
myst_all_links_external = False

# ---- notebooks are committed executed: never run them here, never load widget JS from a CDN
nb_execution_mode = "off"
nb_ipywidgets_js = {}
nb_merge_streams = True

# ---- math: a local MathJax copy (see minichinchilla/book.py: _install_mathjax)
mathjax_path = _settings["mathjax_path"]
if _settings["mathjax_version"] == 3:
    mathjax3_config = {
        "tex": {"tags": "none", "macros": {}},
        "options": {"enableMenu": True},
    }
else:  # MathJax 2 (Debian's libjs-mathjax)
    mathjax3_config = None
    myst_update_mathjax = False  # else MyST writes a MathJax 3 config that MathJax 2 misreads
    mathjax2_config = {
        "TeX": {"extensions": ["AMSmath.js", "AMSsymbols.js"]},
        "showMathMenu": False,
    }

# ---- HTML: sphinx-book-theme (what Jupyter Book 1 uses), everything local
html_theme = "sphinx_book_theme"
html_title = "minichinchilla"
html_static_path = ["_static"]
html_css_files = ["book.css"]
html_js_files = ["book.js"]
html_favicon = "_static/favicon.svg"  # else the browser asks for /favicon.ico (a 404)
html_context = {"default_mode": "light"}  # an empty mode makes the theme log an error
html_copy_source = True
html_show_sourcelink = False
html_last_updated_fmt = None
html_search_language = "en"
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": True,
    "use_repository_button": False,
    "use_issues_button": False,
    "use_edit_page_button": False,
    "launch_buttons": {},
    "navigation_with_keys": False,
    "show_prev_next": True,
    "navbar_persistent": [],  # one search box (in the sidebar), not a second one in a header
}
pygments_style = "tango"
numfig = False


_TAG = re.compile(r"\\tag\*?\{[^{}]*\}")
_ENV = re.compile(r"\\(begin|end)\{([^{}]*)\}")


def _has_top_level_newline(tex: str) -> bool:
    """Whether `tex` breaks a line (``\\\\``) outside every ``\\begin{…}…\\end{…}``."""
    depth, i = 0, 0
    while i < len(tex):
        if tex.startswith("\\\\", i):
            if depth == 0:
                return True
            i += 2
            continue
        m = _ENV.match(tex, i)
        if m:
            depth += 1 if m.group(1) == "begin" else -1
            i = m.end()
            continue
        i += 2 if tex[i] == "\\" else 1
    return False


def tagged_display_math(tex: str, open_: str = "\\[", close: str = "\\]") -> str:
    """The TeX a tagged display equation is handed to MathJax as, whole (no Sphinx wrapper).

    Sphinx wraps any display equation containing ``\\\\`` in ``\\begin{split}`` (even when
    every ``\\\\`` sits inside a ``cases`` or ``aligned`` of its own), and MathJax 3 refuses
    a ``\\tag`` inside ``split`` (a red "\\tag not allowed in split environment"). So the
    equation is passed through as the chapter wrote it; only a line break at its top level
    gets an ``aligned`` around the lines, with the tag moved after it, where a tag may stand.
    """
    body = tex.strip()
    if _has_top_level_newline(body):
        tags = _TAG.findall(body)
        body = _TAG.sub("", body).strip()
        body = "\\begin{aligned}" + body + "\\end{aligned}" + "".join(tags)
    return f"{open_}{body}{close}"


def _tagged_math_whole(app, doctree):
    """Chapters number their equations with \\tag{N.M} (cited by the code): such an
    equation gets no extra Sphinx number (amsmath blocks would get "(1)") and is not wrapped
    in ``split`` (see `tagged_display_math`)."""
    from docutils import nodes

    open_, close = app.config.mathjax_display
    for node in doctree.findall(nodes.math_block):
        text = node.astext()
        if "\\tag" not in text:
            continue
        node["number"] = None
        if not node.get("nowrap"):
            node["nowrap"] = True
            node[:] = [nodes.Text(tagged_display_math(text, open_, close))]


def setup(app):
    app.connect("doctree-read", _tagged_math_whole)
