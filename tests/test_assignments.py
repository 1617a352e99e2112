"""The assignments and their autograder (minichinchilla/assignments, notebooks/assignments).

Two layers of tests:

* fast, in-process: the instructor notebooks' given code and reference solutions are exec'd into a
  namespace (no kernel) and the checks are run on them and on planted wrong solutions; release
  and merge are tested on notebook objects;
* end to end, WITHOUT a sandbox (``no_sandbox=True``, so this runs in CI phase 1): ONE grading run
  over a class of submissions (the instructor versions, the released versions, each planted wrong
  solution, a messy notebook, one that calls the package), and one short-timeout run for an
  infinite loop and a crash. Each case submits only the notebook it needs; missing notebooks are
  graded instantly. The attacks, which need the sandbox, are in test_grader_sandbox.py.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import pathlib
import subprocess
import sys
import time

import nbformat
import pytest

from minichinchilla.assignments import checks, nbtools
from minichinchilla.assignments.exercises import EXERCISES, exercise_of
from minichinchilla.assignments.grading import grade, merge_submission
from minichinchilla.assignments.release import release

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE = ROOT / "notebooks" / "assignments"
NOTEBOOKS = sorted(p.name for p in SOURCE.glob("*.ipynb"))
A1, A2, A3, A4, A5 = NOTEBOOKS


def instructor(name):
    return nbtools.read(SOURCE / name)


def cell(nb, gid):
    return next(c for c in nb.cells if nbtools.grade_id(c) == gid)


def edit(nb, gid, old, new):
    c = cell(nb, gid)
    assert old in c.source, f"{gid}: {old!r} not in the cell"
    c.source = c.source.replace(old, new)
    return nb


# ----------------------------------------------------------------------------------------------
# planted wrong solutions: (grade_id of the solution cell, text replaced, replacement)
# ----------------------------------------------------------------------------------------------
PLANTED = {
    "softmax_diagonal_only": (A1, "ex1_solution", "    dx = y * (dout - inner)",
                              "    dx = dout * y * (1 - y)"),
    "embedding_overwrites": (A1, "ex5_solution",
                             "    np.add.at(dE, idx.reshape(-1), dout.reshape(-1, E_shape[1]))",
                             "    dE[idx] = dout"),
    "ffn_transposed_dW": (A2, "ex4_solution", "    dW2 = h.reshape(-1, H).T @ d2",
                          "    dW2 = d2.T @ h.reshape(-1, H)"),
    "attention_missing_scale": (A3, "ex6_solution", "    dq = (ds @ k) * scale",
                                "    dq = ds @ k"),
    "adamw_l2_decay": (A4, "ex8_solution",
                       "    p = p * (1.0 - lr * weight_decay)  # decoupled: shrink the weights, not the gradient",
                       "    g = g + weight_decay * p  # L2: decay through the gradient"),
}
# what each planted solution must lose, and a word its failure messages must contain
PLANTED_LOSS = {
    "softmax_diagonal_only": ("ex1", None, "off-diagonal"),
    "embedding_overwrites": ("ex5", None, "SUM"),
    "ffn_transposed_dW": ("ex4", ["ex4_ffn_2d", "ex4_ffn_3d"], "dW2"),
    "attention_missing_scale": ("ex6", None, "1/sqrt(hs)"),
    "adamw_l2_decay": ("ex8", None, "decay"),
}


def planted(name):
    nb_name, gid, old, new = PLANTED[name]
    nb = instructor(nb_name)
    if name == "attention_missing_scale":  # both dQ and dK lose the scale
        edit(nb, gid, "    dk = (ds.transpose(0, 1, 3, 2) @ q) * scale", "    dk = ds.transpose(0, 1, 3, 2) @ q")
    return nb_name, edit(nb, gid, old, new)


# ----------------------------------------------------------------------------------------------
# fast tests: the notebook code exec'd in-process
# ----------------------------------------------------------------------------------------------

def namespace(nb):
    """Run a notebook's set-up, given and solution cells (not its tests) in a fresh namespace."""
    ns = {}
    for c in nb.cells:
        gid = nbtools.grade_id(c) or ""
        if c.cell_type == "code" and (gid.endswith("_setup") or gid.endswith("_given")
                                      or nbtools.is_solution(c)):
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(c.source, gid, "exec"), ns)
    return ns


def graded_calls(nb):
    """(grade_id, points, visible source) of every graded cell."""
    out = []
    for gid, pts, c in nbtools.graded_cells(nb):
        visible, _ = nbtools._replace_region(c.source, nbtools.BEGIN_HIDDEN, nbtools.END_HIDDEN, [], gid)
        out.append((gid, pts, c.source, visible))
    return out


def run_cell(ns, source):
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(source, "test", "exec"), dict(ns))
    except Exception as e:  # noqa: BLE001 — any error is a failed cell, as in the grader
        return f"{type(e).__name__}: {e}"
    return None


@pytest.mark.parametrize("name", [n for n in NOTEBOOKS if n != A5])
def test_reference_solutions_pass_every_graded_cell_in_process(name):
    nb = instructor(name)
    ns = namespace(nb)
    for gid, _, source, _ in graded_calls(nb):
        assert run_cell(ns, source) is None, gid


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_planted_wrong_solution_fails_its_checks_with_a_named_reason(name):
    nb_name, nb = planted(name)
    key, cells, word = PLANTED_LOSS[name]
    ns = namespace(nb)
    failed = {}
    for gid, pts, source, _ in graded_calls(nb):
        err = run_cell(ns, source)
        if err:
            failed[gid] = err
    wanted = cells or [gid for gid, _, _, _ in graded_calls(nb) if gid.startswith(key + "_")]
    assert set(wanted) <= set(failed), f"{name}: cells that still pass: {set(wanted) - set(failed)}"
    assert all(exercise_of(g).key == key for g in failed), f"{name}: other exercises failed: {failed}"
    assert any(word in m for m in failed.values()), f"{name}: no message mentions {word!r}: {failed}"


def test_check_prints_a_verdict_per_subcheck(capsys):
    ns = namespace(instructor(A1))
    checks.check("softmax_backward", ns["softmax_backward"], ns["softmax_forward"])
    out = capsys.readouterr().out
    assert "6/6 points" in out and out.count("ok    ex1_") == 4
    _, bad = planted("softmax_diagonal_only")
    bad_ns = namespace(bad)
    checks.check("softmax_backward", bad_ns["softmax_backward"], bad_ns["softmax_forward"])
    out = capsys.readouterr().out
    assert "0/6 points" in out and "FAIL  ex1_softmax_vector" in out and "worst at index" in out
    with pytest.raises(ValueError, match="unknown exercise"):
        checks.check("no_such_thing", print)


# ----------------------------------------------------------------------------------------------
# release
# ----------------------------------------------------------------------------------------------

def _solution_lines(nb):
    """Lines inside solution and hidden-test regions that appear nowhere else in the notebook."""
    inside, outside = set(), set()
    for c in nb.cells:
        state = None
        for line in c.source.split("\n"):
            s = line.strip()
            if nbtools.BEGIN_SOLUTION in s or nbtools.BEGIN_HIDDEN in s:
                state = True
            elif nbtools.END_SOLUTION in s or nbtools.END_HIDDEN in s:
                state = None
            elif state and len(s) > 12:
                inside.add(s)
            elif len(s) > 12:
                outside.add(s)
    return inside - outside


def test_release_writes_student_versions(tmp_path):
    out = tmp_path / "release"
    paths = release(out, SOURCE)
    assert sorted(p.name for p in paths) == NOTEBOOKS
    for name in NOTEBOOKS:
        inst, stud = instructor(name), nbtools.read(out / name)
        text = (out / name).read_text(encoding="utf-8")
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            assert marker not in text
        for line in _solution_lines(inst):
            assert line not in text, f"{name}: solution or hidden-test text released: {line!r}"
        assert len(stud.cells) == len(inst.cells)
        for a, b in zip(inst.cells, stud.cells):
            assert a.metadata.get("nbgrader") == b.metadata.get("nbgrader")  # metadata kept
            if b.cell_type == "code":
                assert b.outputs == [] and b.execution_count is None
            if nbtools.is_solution(b):
                assert "# YOUR CODE HERE\n" in b.source and "raise NotImplementedError()" in b.source
        nbformat.validate(stud)


def test_release_matches_nbgraders_rules_on_a_small_notebook():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
                                  metadata={"nbgrader": {"solution": True, "grade": False, "locked": False,
                                                         "grade_id": "s", "schema_version": 3}}),
        nbformat.v4.new_markdown_cell("### BEGIN SOLUTION\nan answer\n### END SOLUTION",
                                      metadata={"nbgrader": {"solution": True, "grade": False, "locked": False,
                                                             "grade_id": "m", "schema_version": 3}}),
        nbformat.v4.new_code_cell("assert f(1) == 2\n### BEGIN HIDDEN TESTS\nassert f(2) == 4\n### END HIDDEN TESTS",
                                  metadata={"nbgrader": {"solution": False, "grade": True, "locked": True,
                                                         "points": 1, "grade_id": "t", "schema_version": 3}}),
    ])
    out = nbtools.release_notebook(nb)
    assert out.cells[0].source == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    assert out.cells[1].source == "YOUR ANSWER HERE"
    assert out.cells[2].source == "assert f(1) == 2"
    assert nb.cells[0].source.startswith("def f(x):\n    ### BEGIN")  # the input is unchanged
    bad = copy.deepcopy(nb)
    bad.cells[2].metadata["nbgrader"]["grade"] = False
    with pytest.raises(nbtools.NotebookFormatError, match="hidden tests"):
        nbtools.release_notebook(bad)
    bad = copy.deepcopy(nb)
    bad.cells[0].source = "### BEGIN SOLUTION\nx = 1"
    with pytest.raises(nbtools.NotebookFormatError, match="without a matching"):
        nbtools.release_notebook(bad)
    bad = copy.deepcopy(nb)
    bad.cells[2].metadata["nbgrader"]["grade_id"] = "s"
    with pytest.raises(nbtools.NotebookFormatError, match="duplicate grade_id"):
        nbtools.release_notebook(bad)


@pytest.mark.nbgrader
def test_release_is_what_nbgrader_itself_produces():
    """Only where nbgrader is installed (it is never required): its own preprocessors and
    metadata validator agree with ours on every notebook."""
    pytest.importorskip("nbgrader")
    from nbgrader.nbgraderformat import MetadataValidator
    from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions

    for name in NOTEBOOKS:
        nb = instructor(name)
        MetadataValidator().validate_nb(nb)
        theirs, res = copy.deepcopy(nb), {"language": "python"}
        for pre in (ClearSolutions(), ClearHiddenTests(), ClearOutput()):
            theirs, res = pre.preprocess(theirs, res)
        ours = nbtools.release_notebook(nb, name)
        assert [c.source for c in ours.cells] == [c.source for c in theirs.cells], name


def test_instructor_notebooks_are_consistent():
    ids = []
    for name in NOTEBOOKS:
        nb = instructor(name)
        nbtools.validate_instructor(nb, name)
        ids += [gid for gid, _, _ in nbtools.graded_cells(nb)]
        for c in nb.cells:  # committed executed, without errors, for nbval
            if c.cell_type == "code":
                assert c.execution_count is not None, f"{name}: not executed"
                assert not any(o.output_type == "error" for o in c.outputs), f"{name}: an error output"
        for ex in EXERCISES:
            if ex.notebook == name:
                assert any(nbtools.grade_id(c) == f"{ex.key}_solution" for c in nb.cells)
                assert ex.chapter.split("/")[1] in "".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert len(ids) == len(set(ids))
    assert {exercise_of(g).key for g in ids} == {e.key for e in EXERCISES}


def test_cli_release_refuses_a_non_empty_directory_and_grade_needs_submissions(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    cmd = [sys.executable, "-m", "minichinchilla.assignments"]
    r = subprocess.run(cmd + ["release", str(tmp_path / "x")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and "not empty" in r.stderr and (tmp_path / "x" / "keep.txt").exists()
    r = subprocess.run(cmd + ["grade", str(tmp_path / "nope"), "--out", str(tmp_path / "res")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and "does not exist" in r.stderr


COPY_SCRIPT = """
import importlib, inspect, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import minichinchilla
assert minichinchilla.__file__.startswith(sys.argv[1]), minichinchilla.__file__
from minichinchilla import functional as F
from minichinchilla.functional import softmax as S
from minichinchilla import gradcheck, composed, tensor
from minichinchilla.tensor import Tensor
stubs = {
    "F.softmax_backward": lambda: F.softmax_backward(None, None),
    "fast.cross_entropy_backward": lambda: importlib.import_module(
        "minichinchilla.functional.fast.cross_entropy").cross_entropy_backward(None, None),
    "fast.embedding_backward": lambda: importlib.import_module(
        "minichinchilla.functional.fast").embedding_backward(None, None),
    "numerical_gradient": lambda: gradcheck.numerical_gradient(None, None, None),
    "composed.softmax": lambda: composed.softmax(None),
    "tensor.softmax": lambda: tensor.softmax(None),
    "Tensor.backward": lambda: (Tensor(np.ones(2), requires_grad=True) * 2.0).sum().backward(),
    "reloaded": lambda: importlib.reload(S).softmax_backward(None, None),
    "fast twin": lambda: importlib.import_module("minichinchilla.functional.fast.softmax").softmax_backward(None, None),
    "alias": lambda: importlib.import_module("minichinchilla.functional.fast.softmax").sm_alias(None, None),
    "private helper": lambda: importlib.import_module("minichinchilla.functional.fast.softmax")._fast_core(None),
}
for name, call in stubs.items():
    try:
        call()
        raise SystemExit(f"{name} still works")
    except RuntimeError as e:
        assert "removed from the grading copy" in str(e), (name, e)
assert "removed from the grading copy" in inspect.getsource(S.softmax_backward)
y, _ = F.softmax_forward(np.zeros(4))  # forwards keep working
assert np.allclose(y, 0.25)
assert F.embedding_backward is not None and callable(F.layernorm_backward)
try:
    import torch
    raise SystemExit("torch importable")
except ImportError:
    pass
print("ok")
"""


def test_grading_copy_removes_every_implementation_at_source_level(tmp_path):
    """Every def of an exercised name, in any module (a `fast/` twin planted here too), its
    private helpers and aliases become raising stubs in the copy; the rest keeps working."""
    from minichinchilla.assignments.exercises import stripped_names
    from minichinchilla.assignments.gradingcopy import make_grading_copy

    pkg = tmp_path / "pkg"
    import shutil

    shutil.copytree(ROOT / "minichinchilla", pkg / "minichinchilla",
                    ignore=shutil.ignore_patterns("__pycache__"))
    fast = pkg / "minichinchilla" / "functional" / "fast"
    fast.mkdir(exist_ok=True)
    (fast / "__init__.py").touch()
    (fast / "softmax.py").write_text(
        "def _fast_core(y):\n    return y\n\n\n"
        "def softmax_backward(dout, cache):\n    return _fast_core(cache[0]) * dout\n\n\n"
        "def _unrelated():\n    return 1\n\n\nsm_alias = softmax_backward\n")
    lib = make_grading_copy(tmp_path / "copy", stripped_names(A1), source=pkg / "minichinchilla")
    text = (lib / "minichinchilla" / "functional" / "softmax.py").read_text()
    assert "inner" not in text and "removed from the grading copy" in text
    assert "def _unrelated():\n    return 1" in (lib / "minichinchilla/functional/fast/softmax.py").read_text()
    assert not (lib / "minichinchilla" / "assignments" / "grading.py").exists()
    r = subprocess.run([sys.executable, "-c", COPY_SCRIPT, str(lib)], capture_output=True, text=True,
                       cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(lib)})
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


def test_grading_copy_of_a4_keeps_autograd_but_not_amax(tmp_path):
    from minichinchilla.assignments.exercises import stripped_names
    from minichinchilla.assignments.gradingcopy import make_grading_copy

    lib = make_grading_copy(tmp_path / "copy", stripped_names(A4))
    script = ("import numpy as np\nfrom minichinchilla.tensor import Tensor, amax\n"
              "x = Tensor(np.ones(3), requires_grad=True)\n(x * 2.0).sum().backward()\n"
              "assert np.allclose(x.grad, 2)\n"
              "from minichinchilla.functional.fast import FusedAdamW\n"
              "try:\n    FusedAdamW([x]).step()\nexcept RuntimeError as e:\n    assert 'grading copy' in str(e)\n"
              "try:\n    x.max()\nexcept RuntimeError as e:\n    print('stub' if 'grading copy' in str(e) else e)\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(lib)})
    assert r.stdout.strip() == "stub", r.stdout + r.stderr


def test_wire_refuses_objects_and_pickles():
    import numpy as np

    from minichinchilla.assignments import wire

    arrays = []
    tree = wire.encode((np.arange(3.0), np.float32(2), np.dtype("float32"), {"a": [1, None]}, 2 ** 70,
                        float("nan"), np.zeros(())), arrays)
    payload = wire.pack({"t": tree, "n": len(arrays)}, arrays)[8:]
    header, back = wire.unpack(payload)
    v = wire.decode(header["t"], back)
    assert v[0].tolist() == [0, 1, 2] and v[1] == 2 and v[1].dtype == np.float32 and v[3] == {"a": [1, None]}
    assert v[4] == 2 ** 70 and np.isnan(v[5]) and v[6].shape == () and back[0].flags.writeable
    with pytest.raises(wire.WireError):
        wire.encode(np.array([object()]), [])
    with pytest.raises(wire.WireError):
        wire.encode(lambda: 0, [])
    import io
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    bad = wire.pack({"n": 0})[8:] + buf.getvalue()
    bad = bad[:8] + bad[8:].replace(b'"n": 0', b'"n": 1')
    with pytest.raises(wire.WireError):
        wire.unpack(bad)


def test_suspicion_flags_what_an_honest_solution_does_not_need():
    from minichinchilla.assignments.suspicion import flags

    src = ("import importlib, inspect\nimport subprocess\nx = open('/etc/passwd').read()\n"
           "exec(inspect.getsource(f))\nimport torch\nfrom minichinchilla.gradcheck import numerical_gradient\n"
           "os.system('ls')\nget_ipython()\nimport ctypes\nopen('../classmate/A1.ipynb')\n"
           "g = out._node._backward(d)\n")
    found = {f["what"] for f in flags(src, "ex1_solution")}
    assert {"importlib", "inspect", "subprocess", "exec/eval", "torch", "numerical_gradient",
            "os.system", "get_ipython", "ctypes", "path outside the notebook's folder",
            "autograd internals"} <= found
    assert flags("dx = y * (dout - (dout * y).sum(axis=axis, keepdims=True))\n", "ok") == []
    for name in NOTEBOOKS:  # no reference solution is flagged (a docstring may say torch.amax)
        for c in instructor(name).cells:
            if nbtools.is_solution(c):
                assert flags(c.source, nbtools.grade_id(c)) == [], (name, flags(c.source, "x"))


def test_merge_puts_back_locked_cells_and_strips_fake_graded_cells():
    inst = instructor(A1)
    student = nbtools.release_notebook(inst)
    gid = "ex2_ce_basic"
    student.cells = [c for c in student.cells if nbtools.grade_id(c) != gid]  # deleted
    cell(student, "ex1_softmax_vector").source = "pass  # the student's own 'test'"
    fake = nbformat.v4.new_code_cell("1", metadata={"nbgrader": {"grade": True, "points": 99,
                                                                 "grade_id": "ex1_bonus", "locked": True,
                                                                 "solution": False, "schema_version": 3}})
    student.cells.insert(3, fake)
    merged, notes = merge_submission(inst, student)
    gids = [nbtools.grade_id(c) for c in merged.cells]
    assert gids.count(gid) == 1 and "ex1_bonus" not in gids
    assert gids.index("ex2_solution") < gids.index(gid) < gids.index("ex2_ce_batched")
    assert cell(merged, "ex1_softmax_vector").source == cell(inst, "ex1_softmax_vector").source
    assert any(gid in n and "put back" in n for n in notes)
    nbformat.validate(merged)


# ----------------------------------------------------------------------------------------------
# end to end: one grading run over a class
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    base = tmp_path_factory.mktemp("class")
    subs, released = base / "submissions", base / "released"
    release(released, SOURCE)

    def submit(student, name, nb):
        d = subs / student
        d.mkdir(parents=True, exist_ok=True)
        nbtools.write(nb, d / name)

    for name in NOTEBOOKS:
        submit("instructor", name, instructor(name))
        submit("released", name, nbtools.read(released / name))
    for pname in PLANTED:
        nb_name, nb = planted(pname)
        submit(pname, nb_name, nb)

    # messy: a syntax error in one exercise, a deleted test cell, an edited given cell and test
    messy = instructor(A1)
    edit(messy, "ex1_solution", "    inner = (dout * y)", "    inner = (dout * y")
    messy.cells = [c for c in messy.cells if nbtools.grade_id(c) != "ex2_ce_basic"]
    edit(messy, "ex5_given", "return E[idx]", "return 0 * E[idx]")
    cell(messy, "ex5_embedding_repeated").source = "pass"
    messy.cells.insert(2, nbformat.v4.new_code_cell("raise ValueError('a stray error')"))
    submit("messy", A1, messy)

    # calls the package: softmax from the package namespace, embedding from its module
    caller = instructor(A1)
    c = cell(caller, "ex1_solution")
    c.source = ("from minichinchilla.functional import softmax_backward as _ref\n\n"
                "def softmax_backward(dout, cache):\n    return _ref(dout, cache)\n")
    c = cell(caller, "ex5_solution")
    c.source = ("from minichinchilla.functional.embedding import embedding_backward as _eb\n\n"
                "def embedding_backward(dout, cache):\n    return _eb(dout, cache)\n")
    submit("caller", A1, caller)

    (subs / "empty").mkdir()  # submitted nothing
    out = base / "results"
    before = {p: p.read_bytes() for p in subs.rglob("*") if p.is_file()}
    reports = grade(subs, out, SOURCE, cell_timeout=120, notebook_timeout=300, jobs=2,
                    log=lambda m: None, no_sandbox=True, instructor_dir=base / "instructor")
    after = {p: p.read_bytes() for p in subs.rglob("*") if p.is_file()}
    return reports, out, base / "instructor", (before, after)


def _checks(report, key):
    return report["exercises"][key]["checks"]


def test_instructor_versions_score_full_marks(graded_class):
    # graded on the stripped grading copy: the tests never rely on the package's implementations
    reports, *_ = graded_class
    r = reports["instructor"]
    assert r["total"] == r["max_total"] == 62, json.dumps(r["exercises"], indent=1)[:3000]


def test_released_versions_score_zero_without_crashing(graded_class):
    reports, *_ = graded_class
    r = reports["released"]
    assert r["total"] == 0 and r["max_total"] == 62
    assert all(n["status"] == "ok" for n in r["notebooks"].values())
    msgs = [c["message"] for e in r["exercises"].values() for c in e["checks"].values()]
    assert all("not written yet" in m or "NotImplementedError" in m for m in msgs), msgs


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_planted_wrong_solutions_lose_their_points_with_a_named_reason(graded_class, name):
    reports, *_ = graded_class
    key, cells, word = PLANTED_LOSS[name]
    ex = reports[name]["exercises"][key]
    assert ex["points"] < ex["max"]
    lost = cells or list(ex["checks"])
    assert all(ex["checks"][g]["points"] == 0 for g in lost), ex["checks"]
    assert any(word in (c["message"] or "") + (c["hint"] or "") for c in ex["checks"].values()), ex
    nb_name = PLANTED[name][0]
    others = [e for k, e in reports[name]["exercises"].items() if k != key and e["notebook"] == nb_name]
    assert all(e["points"] == e["max"] for e in others)  # the rest of that notebook is unharmed


def test_messy_notebook_gets_the_points_it_earned(graded_class):
    reports, out, instructor_dir, _ = graded_class
    r = reports["messy"]
    ex = r["exercises"]
    assert ex["ex1"]["points"] == 0 and any("SyntaxError" in n for n in ex["ex1"]["notes"])
    assert ex["ex2"]["points"] == ex["ex2"]["max"]  # the deleted test cell was put back and passes
    assert ex["ex5"]["points"] == ex["ex5"]["max"]  # the edited given cell and test were restored
    notes = r["notebooks"][A1]["notes"]
    assert any("ex2_ce_basic" in n and "put back" in n for n in notes)
    assert r["notebooks"][A2]["status"] == "missing"
    assert (instructor_dir / "messy" / A1).exists() and not (out / "messy").exists()


def test_calling_the_package_scores_zero_with_a_note(graded_class):
    reports, *_ = graded_class
    ex = reports["caller"]["exercises"]
    for key in ("ex1", "ex5"):
        assert ex[key]["points"] == 0
        assert all("removed from the grading copy" in c["message"] for c in ex[key]["checks"].values())
        assert any("package's own implementation" in n for n in ex[key]["notes"])
    assert ex["ex2"]["points"] == ex["ex2"]["max"]


def test_results_files(graded_class):
    reports, out, instructor_dir, _ = graded_class
    lines = (out / "grades.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[0] == "student" and header[-1] == "total" and "ex6_attention_heads" in header
    rows = {line.split(",")[0]: line.split(",") for line in lines[1:]}
    assert set(rows) == set(reports) and rows["instructor"][-1] == "62" and rows["empty"][-1] == "0"
    data = json.loads((out / "instructor.json").read_text())
    assert data["exercises"]["ex6"]["points"] == 10 and data["exercises"]["ex6"]["max"] == 10
    assert data["total"] == 62 and set(data["exercises"]) == {e.key for e in EXERCISES}
    meta = json.loads((out / "grades.meta.json").read_text())
    assert meta["sandboxed"] is False and "NONE" in meta["sandbox"]  # --no-sandbox is never silent
    assert "NOT SANDBOXED" in (instructor_dir / "report.md").read_text()
    html_text = (out / "softmax_diagonal_only.html").read_text()
    assert "off-diagonal" in html_text and "hint" in html_text


def _hidden_lines():
    """Every substantial line of every hidden-test region of the instructor notebooks."""
    lines = set()
    for name in NOTEBOOKS:
        for _, _, c in nbtools.graded_cells(instructor(name)):
            for hidden, text in nbtools.split_hidden(c.source):
                if hidden:
                    lines |= {l.strip() for l in text.split("\n") if len(l.strip()) > 15}
    return lines


def test_nothing_under_out_contains_hidden_tests_or_ansi(graded_class):
    _, out, instructor_dir, _ = graded_class
    hidden = _hidden_lines()
    assert len(hidden) > 20
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and not any(p.suffix == ".ipynb" for p in files)  # executed notebooks live elsewhere
    for p in files:
        text = p.read_text(encoding="utf-8")
        assert "\x1b[" not in text and "\\u001b" not in text, p
        assert "(hidden)" not in text, p
        for line in hidden:
            assert line not in text, (p, line)
    for p in instructor_dir.rglob("*.ipynb"):  # the instructor's record runs no hidden test either
        text = p.read_text(encoding="utf-8")
        assert not any(line in text for line in hidden), p


def test_submissions_are_never_modified(graded_class):
    _, _, _, (before, after) = graded_class
    assert before and after == before


def test_looping_exercise_loses_only_its_own_points_and_a_crash_only_its_own(tmp_path):
    subs = tmp_path / "subs"
    looper = instructor(A1)  # an uninterruptible loop in softmax_backward: ex1 times out
    edit(looper, "ex1_solution", "    y, axis = cache",
         "    y, axis = cache\n    while True:\n        try:\n            pass\n        except BaseException:\n            pass")
    (subs / "looper").mkdir(parents=True)
    nbtools.write(looper, subs / "looper" / A1)
    crasher = instructor(A1)  # embedding_backward ends the process
    edit(crasher, "ex5_solution", "    idx, E_shape, E_dtype = cache", "    import os\n    os._exit(1)")
    (subs / "crasher").mkdir()
    nbtools.write(crasher, subs / "crasher" / A1)
    before = {p: p.read_bytes() for p in subs.rglob("*") if p.is_file()}
    t0 = time.monotonic()
    reports = grade(subs, tmp_path / "out", SOURCE, cell_timeout=4, notebook_timeout=120, jobs=2,
                    log=lambda m: None, no_sandbox=True, instructor_dir=tmp_path / "instructor")
    assert time.monotonic() - t0 < 100
    loop = reports["looper"]["exercises"]
    assert loop["ex1"]["points"] == 0
    assert all(c["verdict"] == "timed out" and "timed out after" in c["message"]
               for c in loop["ex1"]["checks"].values()), loop["ex1"]
    assert loop["ex2"]["points"] == loop["ex2"]["max"] and loop["ex5"]["points"] == loop["ex5"]["max"]
    crash = reports["crasher"]["exercises"]
    assert crash["ex5"]["points"] == 0 and crash["ex1"]["points"] == crash["ex1"]["max"]
    assert crash["ex2"]["points"] == crash["ex2"]["max"]
    assert before == {p: p.read_bytes() for p in subs.rglob("*") if p.is_file()}


class _Ran:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _cli(*args):
    """The command line, in this process (a subprocess costs seconds of start-up per case)."""
    from minichinchilla.assignments.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return _Ran(rc, out.getvalue(), err.getvalue())


@pytest.mark.parametrize("flag,value", [("--cell-timeout", "2.5"), ("--cell-timeout", "-1"),
                                        ("--cell-timeout", "abc"), ("--notebook-timeout", "2.5"),
                                        ("--notebook-timeout", "0"), ("--jobs", "-1")])
def test_bad_timeouts_are_refused_naming_the_flag(tmp_path, flag, value):
    """(nbclient used to raise on 2.5, score every cell 0 and exit 0 with a grades.csv)"""
    (tmp_path / "subs" / "s").mkdir(parents=True)
    r = _cli("grade", tmp_path / "subs", "--out", tmp_path / "out", flag, value)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error:") and flag in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["equal", "inside"])
def test_out_inside_the_submissions_is_refused(tmp_path, where):
    subs = tmp_path / "subs"
    (subs / "s").mkdir(parents=True)
    nbtools.write(instructor(A1), subs / "s" / A1)
    before = sorted(p.relative_to(subs) for p in subs.rglob("*"))
    out = subs if where == "equal" else subs / "s" / "results"
    r = _cli("grade", subs, "--out", out, "--no-sandbox")
    assert r.returncode == 2 and r.stderr.startswith("error:") and "--out" in r.stderr, r.stderr
    assert sorted(p.relative_to(subs) for p in subs.rglob("*")) == before


def test_grade_refuses_without_a_sandbox_unless_told(tmp_path, monkeypatch):
    from minichinchilla.assignments import sandbox
    from minichinchilla.assignments.grading import GradingError

    (tmp_path / "subs" / "s").mkdir(parents=True)
    monkeypatch.setattr(sandbox, "available_backend", lambda: None)
    with pytest.raises(GradingError, match="--no-sandbox"):
        grade(tmp_path / "subs", tmp_path / "out", SOURCE, log=lambda m: None)
    assert not (tmp_path / "out").exists()


def test_collect_packages_a_students_notebooks(tmp_path):
    import zipfile

    work = tmp_path / "mywork"
    release(work, SOURCE)
    (work / "notes.txt").write_text("not submitted")
    r = _cli("collect", work, "--student", "ada", "--out", tmp_path / "ada.zip")
    assert r.returncode == 0, r.stderr
    names = zipfile.ZipFile(tmp_path / "ada.zip").namelist()
    assert sorted(names) == [f"ada/{n}" for n in NOTEBOOKS]
    r = _cli("collect", work, "--student", "ada", "--out", tmp_path / "ada.zip")
    assert r.returncode == 2 and "already exists" in r.stderr
    (work / A1).write_text("{not json")
    r = _cli("collect", work, "--student", "bob", "--out", tmp_path / "bob.zip")
    assert r.returncode == 2 and A1 in r.stderr and not (tmp_path / "bob.zip").exists()


def test_strip_solutions_works_on_a_notebook_without_nbgrader_metadata():
    from minichinchilla.assignments import strip_solutions

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION"),
        nbformat.v4.new_markdown_cell("Why?\n### BEGIN SOLUTION\nbecause\n### END SOLUTION"),
    ])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", text="4")]
    out = strip_solutions(nb)
    assert out.cells[0].source == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    assert out.cells[1].source == "Why?\nYOUR ANSWER HERE" and out.cells[0].outputs == []
    assert "return 2 * x" in nb.cells[0].source  # the original is untouched


def test_instructor_folder_must_stay_apart_from_out_submissions_and_repository(tmp_path):
    from minichinchilla.assignments.grading import GradingError

    subs = tmp_path / "subs"
    (subs / "s").mkdir(parents=True)
    for bad in (tmp_path / "out" / "instructor", subs / "instructor", ROOT / "instructor-records"):
        with pytest.raises(GradingError, match="instructor-dir"):
            grade(subs, tmp_path / "out", SOURCE, log=lambda m: None, no_sandbox=True,
                  instructor_dir=bad)
        assert not bad.exists()
    assert not (tmp_path / "out").exists()
