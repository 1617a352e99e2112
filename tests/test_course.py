"""`python -m minichinchilla course init DIR`: a student's copy of the chapter notebooks."""
import json
from pathlib import Path

import pytest

from minichinchilla import course

REPO = Path(__file__).resolve().parent.parent
SOLVED = ("def softmax_backward(dout, cache):\n    y = cache\n    ### BEGIN SOLUTION\n"
          "    return y * (dout - (dout * y).sum(-1, keepdims=True))  # SECRET\n"
          "    ### END SOLUTION\n")


def _nb(*cells):
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _code(src, outputs=(), **meta):
    return {"cell_type": "code", "id": f"c{abs(hash(str(src))) % 10**6}", "metadata": meta,
            "execution_count": 3, "source": src, "outputs": list(outputs)}


def _out(text):
    return {"output_type": "stream", "name": "stdout", "text": text}


def _course(tmp_path):
    root = tmp_path / "repo"
    for d in ("notebooks", "chapters", "results"):
        (root / d).mkdir(parents=True)
    (root / "chapters" / "02-softmax.md").write_text("# 02\n")
    (root / "results" / "sweep.jsonl").write_text("{}\n")
    nb = _nb({"cell_type": "markdown", "id": "m1", "metadata": {}, "source": "# 02 Softmax"},
             _code("import numpy as np", [_out("ok\n")]),
             _code(SOLVED.splitlines(keepends=True), [_out("SECRET OUTPUT\n")]),
             _code("gradcheck(softmax_backward)", [_out("PASS\n")]))
    (root / "notebooks" / "02-softmax.ipynb").write_text(json.dumps(nb))
    (root / "notebooks" / "assignments").mkdir()
    (root / "notebooks" / "assignments" / "A1.ipynb").write_text(json.dumps(_nb()))
    return root


def test_student_cell_hides_the_solution_and_its_output():
    cell = _code(SOLVED, [_out("SECRET OUTPUT\n")])
    student = course.student_cell(cell)
    assert "SECRET" not in json.dumps(student)
    assert student["source"] == ("def softmax_backward(dout, cache):\n    y = cache\n"
                                 "    # YOUR CODE HERE\n    raise NotImplementedError()\n")
    assert student["outputs"] == [] and student["execution_count"] is None
    assert "nbgrader" not in student["metadata"]  # not turned into an nbgrader notebook
    assert cell["source"] == SOLVED and cell["outputs"]  # the original is unchanged
    plain = _code("print(1)", [_out("1\n")])
    assert course.student_cell(plain) == plain


def test_a_cell_nbgrader_already_marks_keeps_its_metadata():
    meta = {"nbgrader": {"solution": True, "grade": False, "locked": False,
                         "grade_id": "softmax", "schema_version": 3}}
    student = course.student_cell(_code(SOLVED, **meta))
    assert student["metadata"] == meta and "SECRET" not in student["source"]


def test_unbalanced_markers_are_refused():
    with pytest.raises(ValueError, match="END SOLUTION"):
        course.student_cell(_code("### BEGIN SOLUTION\nx = 1\n"))


def test_init_writes_the_student_copy(tmp_path, capsys):
    root = _course(tmp_path)
    dest = tmp_path / "my-course"
    assert course.main(["init", str(dest), "--root", str(root)]) == 0
    assert "jupyter lab" in capsys.readouterr().out
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == ["chapters/02-softmax.md", "notebooks/02-softmax.ipynb",
                     "results/sweep.jsonl"]  # chapter notebooks only; what they link to and read
    nb = json.loads((dest / "notebooks" / "02-softmax.ipynb").read_text())
    text = json.dumps(nb)
    assert "SECRET" not in text and "raise NotImplementedError()" in text
    assert nb["cells"][1]["outputs"] == [_out("ok\n")]  # other cells keep their outputs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-course", "repo"]  # no leftovers


def test_init_refuses_to_overwrite_and_leaves_everything_as_it_was(tmp_path, capsys):
    root = _course(tmp_path)
    dest = tmp_path / "my-course"
    dest.mkdir()
    (dest / "my-notes.ipynb").write_text("mine")
    assert course.main(["init", str(dest), "--root", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(dest) in err[0]
    assert [p.name for p in dest.iterdir()] == ["my-notes.ipynb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-course", "repo"]  # no leftovers


def test_init_writes_nothing_half_way(tmp_path, monkeypatch):
    """A failure while writing (disk full, Ctrl-C) leaves no folder behind."""
    root = _course(tmp_path)
    calls = []

    def failing_copytree(*args, **kwargs):
        calls.append(args)
        raise KeyboardInterrupt

    monkeypatch.setattr(course.shutil, "copytree", failing_copytree)
    with pytest.raises(KeyboardInterrupt):
        course.init(tmp_path / "my-course", root)
    assert calls and sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_bad_root_is_named(tmp_path, capsys):
    assert course.main(["init", str(tmp_path / "c"), "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --root") and not (tmp_path / "c").exists()


def test_the_repository_copy_hides_every_solution(tmp_path):
    """On the real notebooks: every `### BEGIN SOLUTION` region is gone from the copy, and
    every notebook that has one is in it."""
    dest = tmp_path / "course"
    written = course.init(dest, REPO)
    assert [p.name for p in written] == [p.name for p in course.chapter_notebooks(REPO)]
    for p in written:
        assert "BEGIN SOLUTION" not in p.read_text(), p.name
    solved = [p.name for p in course.chapter_notebooks(REPO)
              if any(course.has_solution(c) for c in json.loads(p.read_text())["cells"])]
    for name in solved:
        assert "raise NotImplementedError()" in (dest / "notebooks" / name).read_text()
