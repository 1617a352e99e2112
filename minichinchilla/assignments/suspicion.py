"""Flag student code that reaches for things an honest solution does not need.

The sandbox makes these harmless; the flags are for the instructor's report, so a human can look
at the notebook (they are never penalised automatically: ``inspect`` in a debugging line is not
cheating). A flag names the cell, the line and what was found.
"""
from __future__ import annotations

import ast
import re

# (what, pattern on the source text); patterns are deliberately simple and case-sensitive
PATTERNS = (
    ("importlib", r"\bimportlib\b|\b__import__\b"),
    ("exec/eval", r"\b(exec|eval|compile)\s*\("),
    ("inspect", r"\binspect\b"),
    ("get_ipython", r"\bget_ipython\b"),
    ("subprocess", r"\bsubprocess\b|\bPopen\b|\bos\.(fork|spawn\w*|exec\w*|setsid|kill)\b"),
    ("os.system", r"\bos\.(system|popen)\b"),
    ("ctypes", r"\bctypes\b|\bcffi\b"),
    ("torch", r"\btorch\b|\bjax\b|\btensorflow\b|\bautograd\b"),
    ("numerical_gradient", r"\bnumerical_gradient\b|\bgradcheck\b|\bapprox_fprime\b"),
    ("sys.modules", r"\bsys\.modules\b|\bsys\.meta_path\b|\bsys\.path\b|\breload\b"),
    ("sockets", r"\bsocket\b|\burllib\b|\brequests\b|\bhttp\.client\b"),
    ("autograd internals", r"\._node\b|\._backward\b|\._parents\b|\b_topological_order\b"),
)
_PATH_CALLS = {"open", "Path", "listdir", "scandir", "walk", "glob", "iglob", "read_text",
               "read_bytes", "remove", "unlink", "rmtree", "copy", "copyfile", "copytree",
               "rename", "replace", "chdir", "load", "loadtxt", "genfromtxt", "read"}


def _outside_paths(source):
    """String literals used as paths that leave the notebook's folder (absolute, ``..``, ``~``)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            s = node.value.strip()
            if len(s) > 1 and (s.startswith("/") or s.startswith("~") or s.startswith("..")
                               or "/../" in s or s.startswith("\\\\")):
                if " " not in s or s.startswith("/"):
                    found.append((node.lineno, s[:80]))
    return found


def _code_only(source):
    """The source with comments and string literals blanked (docstrings mention torch.amax)."""
    import io
    import tokenize

    lines = source.split("\n")
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return [line.split("#", 1)[0] for line in lines]
    out = [list(line) for line in lines]
    for tok in tokens:
        if tok.type in (tokenize.COMMENT, tokenize.STRING):
            (r0, c0), (r1, c1) = tok.start, tok.end
            for r in range(r0, r1 + 1):
                row = out[r - 1]
                start = c0 if r == r0 else 0
                end = c1 if r == r1 else len(row)
                row[start:end] = [" "] * (end - start)
    return ["".join(row) for row in out]


def flags(source, where):
    """[{where, line, what, text}] for one cell's source."""
    out = []
    lines = source.split("\n")
    code_lines = _code_only(source)
    for what, pattern in PATTERNS:
        rx = re.compile(pattern)
        for i, (line, code) in enumerate(zip(lines, code_lines), 1):
            if rx.search(code):
                out.append({"where": where, "line": i, "what": what, "text": line.strip()[:120]})
    for lineno, path in _outside_paths(source):
        out.append({"where": where, "line": lineno, "what": "path outside the notebook's folder",
                    "text": path})
    return out


__all__ = ["flags", "PATTERNS"]
