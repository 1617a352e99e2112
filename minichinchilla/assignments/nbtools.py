"""Reading and rewriting assignment notebooks the way nbgrader does, without needing nbgrader.

An instructor notebook marks its cells with nbgrader's metadata (schema version 3):

* a SOLUTION cell (``solution: true``) holds the reference solution between
  ``### BEGIN SOLUTION`` and ``### END SOLUTION``;
* a GRADED TEST cell (``grade: true, locked: true, points: P``) holds visible tests and, between
  ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``, tests the students never see;
* a LOCKED cell (``locked: true``, neither of the above) is given code the students must not change.

`release_notebook` applies nbgrader's ClearSolutions, ClearHiddenTests and ClearOutput
preprocessors, with the same markers, stubs and metadata, so a released notebook can also be
imported by nbgrader itself (``nbgrader generate_assignment`` gives the same cell sources).
"""
from __future__ import annotations

import copy
import re

import nbformat

from ..atomic import write_text_atomically

BEGIN_SOLUTION = "BEGIN SOLUTION"
END_SOLUTION = "END SOLUTION"
BEGIN_HIDDEN = "BEGIN HIDDEN TESTS"
END_HIDDEN = "END HIDDEN TESTS"
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
TEXT_STUB = "YOUR ANSWER HERE"


class NotebookFormatError(ValueError):
    """An instructor notebook breaks the marker or metadata rules."""


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def grade_id(cell):
    return nbgrader_meta(cell).get("grade_id")


def is_solution(cell) -> bool:
    return bool(nbgrader_meta(cell).get("solution", False))


def is_grade(cell) -> bool:
    return bool(nbgrader_meta(cell).get("grade", False))


def is_locked(cell) -> bool:
    """Locked as nbgrader sees it: marked locked, or a graded cell that is not a solution."""
    m = nbgrader_meta(cell)
    if m.get("solution", False):
        return False
    return bool(m.get("locked", False) or m.get("grade", False))


def points(cell) -> float:
    p = nbgrader_meta(cell).get("points", 0)
    return float(p) if p is not None else 0.0


def graded_cells(nb):
    """The graded test cells of a notebook, in order: a list of (grade_id, points, cell)."""
    return [(grade_id(c), points(c), c) for c in nb.cells if is_grade(c) and c.cell_type == "code"]


def _replace_region(source, begin, end, stub_lines, what):
    """Replace each begin..end region with `stub_lines` (indented like the begin marker).

    Returns (new source, whether a region was found). Mirrors nbgrader's
    ClearSolutions._replace_solution_region / ClearHiddenTests._remove_hidden_test_region:
    a marker counts wherever it appears on a line.
    """
    new_lines, inside, found = [], False, False
    for line in source.split("\n"):
        if begin in line:
            if inside:
                raise NotebookFormatError(f"nested '{begin}' markers ({what})")
            inside, found = True, True
            indent = re.match(r"\s*", line).group(0)
            new_lines.extend(indent + s for s in stub_lines)
        elif end in line:
            if not inside:
                raise NotebookFormatError(f"'{end}' without a matching '{begin}' ({what})")
            inside = False
        elif not inside:
            new_lines.append(line)
    if inside:
        raise NotebookFormatError(f"'{begin}' without a matching '{end}' ({what})")
    return "\n".join(new_lines), found


def clear_solutions(cell, where=""):
    """nbgrader's ClearSolutions on one cell (enforce_metadata=True)."""
    stub = CODE_STUB if cell.cell_type == "code" else TEXT_STUB
    src, found = _replace_region(cell.source, BEGIN_SOLUTION, END_SOLUTION, stub.split("\n"), where)
    if found and not is_solution(cell):
        raise NotebookFormatError(
            f"{where}: a solution region lies in a cell that is not marked as a solution cell "
            "(metadata nbgrader.solution must be true)"
        )
    if is_solution(cell) and not found:
        src = stub  # a whole-cell solution: nbgrader replaces the entire source
    cell.source = src


def clear_hidden_tests(cell, where=""):
    """nbgrader's ClearHiddenTests on one cell (enforce_metadata=True)."""
    src, found = _replace_region(cell.source, BEGIN_HIDDEN, END_HIDDEN, [], where)
    if found and not is_grade(cell):
        raise NotebookFormatError(
            f"{where}: hidden tests lie in a cell that is not a graded cell "
            "(metadata nbgrader.grade must be true)"
        )
    cell.source = src


def clear_outputs(cell):
    """nbconvert's ClearOutputPreprocessor: no outputs, no execution count, no view state."""
    if cell.cell_type == "code":
        cell.outputs = []
        cell.execution_count = None
    for key in ("collapsed", "scrolled", "execution", "ExecuteTime"):
        cell.metadata.pop(key, None)


def validate_instructor(nb, name=""):
    """Check the nbgrader metadata rules that release and grading rely on.

    Every graded cell and solution cell has a grade_id, grade_ids are unique, graded code cells
    carry points, and the schema version is 3. Raises NotebookFormatError naming the cell.
    """
    seen = set()
    for i, cell in enumerate(nb.cells):
        m = nbgrader_meta(cell)
        if not m:
            continue
        where = f"{name} cell {i}"
        gid = m.get("grade_id")
        if not gid:
            raise NotebookFormatError(f"{where}: nbgrader cell without a grade_id")
        if gid in seen:
            raise NotebookFormatError(f"{where}: duplicate grade_id {gid!r}")
        seen.add(gid)
        if m.get("schema_version") != 3:
            raise NotebookFormatError(f"{where} ({gid}): nbgrader schema_version must be 3")
        if m.get("grade") and m.get("points") is None:
            raise NotebookFormatError(f"{where} ({gid}): a graded cell needs 'points'")
        for key in ("grade", "solution", "locked"):
            if key not in m:
                raise NotebookFormatError(f"{where} ({gid}): nbgrader metadata lacks {key!r}")


def release_notebook(nb, name=""):
    """The student version of an instructor notebook (a new notebook; `nb` is unchanged)."""
    validate_instructor(nb, name)
    out = copy.deepcopy(nb)
    for i, cell in enumerate(out.cells):
        where = f"{name} cell {i} ({grade_id(cell) or cell.cell_type})"
        clear_solutions(cell, where)
        clear_hidden_tests(cell, where)
        clear_outputs(cell)
    return out


def read(path):
    return nbformat.read(str(path), as_version=4)


def write(nb, path):
    text = nbformat.writes(nb)
    write_text_atomically(path, text if text.endswith("\n") else text + "\n")  # as nbformat.write


def split_hidden(source):
    """The source of a graded cell as [(hidden, text), ...] in order: the visible parts and the
    ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` regions (markers dropped)."""
    parts, current, hidden = [], [], False
    for line in source.split("\n"):
        if BEGIN_HIDDEN in line or END_HIDDEN in line:
            if current:
                parts.append((hidden, "\n".join(current)))
            current, hidden = [], BEGIN_HIDDEN in line
            continue
        current.append(line)
    if current:
        parts.append((hidden, "\n".join(current)))
    return [(h, text) for h, text in parts if text.strip()]


def strip_solutions(nb, *, require_metadata=False, clear_output=True):
    """A copy of `nb` with every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region replaced by
    ``# YOUR CODE HERE`` / ``raise NotImplementedError()`` (``YOUR ANSWER HERE`` in Markdown).

    The student copy of ANY notebook (chapter notebooks included, which carry no nbgrader
    metadata): with ``require_metadata=False`` a region may lie in any cell. Hidden-test regions
    are removed too and, with `clear_output`, outputs are cleared. `nb` is not modified.
    """
    out = copy.deepcopy(nb)
    for i, cell in enumerate(out.cells):
        where = f"cell {i}"
        if require_metadata:
            clear_solutions(cell, where)
            clear_hidden_tests(cell, where)
        else:
            stub = CODE_STUB if cell.cell_type == "code" else TEXT_STUB
            cell.source, _ = _replace_region(cell.source, BEGIN_SOLUTION, END_SOLUTION,
                                             stub.split("\n"), where)
            cell.source, _ = _replace_region(cell.source, BEGIN_HIDDEN, END_HIDDEN, [], where)
        if clear_output:
            clear_outputs(cell)
    return out
