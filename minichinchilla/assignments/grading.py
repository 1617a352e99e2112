"""Autograding a class: every submission runs sandboxed; every score is decided outside it.

For each student folder and each instructor notebook the grader

1. reads the student's notebook (a missing or unreadable notebook scores 0, with a note) and
   puts back the instructor's version of every locked cell (given code and test cells, matched by
   grade_id; nbgrader's OverwriteCells does the same);
2. makes a private scratch copy of the student's folder and starts a sandboxed worker
   (`sandbox.py`, `worker.py`) on the *grading copy* of the package (`gradingcopy.py`: the
   package with every implementation of this notebook's exercises removed at source level); the
   worker runs ONLY the set-up, given and solution cells;
3. runs the instructor's test cells — visible and hidden — in the grader's own process, where the
   student's functions are proxies (`remote.py`): arguments go to the sandbox as plain arrays, the
   student's function runs there, its result comes back as plain arrays, and the grader's own
   copies of the checks and of the given forwards judge it. Hidden tests' code, inputs and
   expected values never enter the notebook a student wrote; the student's code never runs in the
   process that writes the scores;
4. runs the whole notebook once more, in a second fresh sandbox without hidden tests, for the
   instructor's record of what the student saw (never used for scores);
5. writes per-student feedback (JSON and HTML: each check's verdict, message and hint, never a
   hidden test's code or values) and grades.csv under --out, and the executed notebooks and the
   suspicion report to an instructor-only folder outside --out.

A time-out in one exercise kills that sandbox, restarts it without the cell or function that hung,
and costs only that exercise's points ("timed out after N s").
"""
from __future__ import annotations

import contextlib
import copy
import csv
import html
import io
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import nbformat

from ..atomic import write_text_atomically
from . import nbtools, suspicion
from .exercises import EXERCISES, exercise_of, notebook_exercises, stripped_names

MAX_MESSAGE = 2000
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
HIDDEN_FAILED = ("a hidden test of this cell failed (hidden tests are not shown); the visible "
                 "checks passed, so think about the cases they do not cover: other shapes, "
                 "dtypes, ties, ignored targets, extreme values")


class GradingError(RuntimeError):
    """A problem with the grader's inputs (not with a submission): the command exits 2."""


# ----------------------------------------------------------------------------------------------
# merging a submission with the instructor's notebook
# ----------------------------------------------------------------------------------------------

def merge_submission(instructor, student):
    """The notebook to execute: the student's cells, with the instructor's locked cells restored.

    Returns (notebook, notes). Locked cells (graded tests and given code) are replaced by the
    instructor's version matched by grade_id; missing ones are re-inserted after the cell that
    precedes them in the instructor's notebook; duplicates are dropped; student cells claiming a
    grade_id the instructor does not have lose their nbgrader metadata (they cannot earn points).
    """
    notes = []
    protected = {nbtools.grade_id(c): c for c in instructor.cells
                 if nbtools.grade_id(c) and nbtools.is_locked(c)}
    known = {nbtools.grade_id(c) for c in instructor.cells if nbtools.grade_id(c)}
    merged, present = [], set()
    for cell in student.cells:
        gid = nbtools.grade_id(cell)
        if gid in protected:
            if gid in present:
                notes.append(f"a second copy of the locked cell {gid!r} was ignored")
                continue
            merged.append(copy.deepcopy(protected[gid]))
            present.add(gid)
            continue
        cell = copy.deepcopy(cell)
        if gid and gid not in known:
            cell.metadata.pop("nbgrader", None)  # an unknown graded cell cannot earn points
        elif gid in present:
            cell.metadata.pop("nbgrader", None)  # a duplicated solution cell: keep it as plain code
        elif gid:
            present.add(gid)
        merged.append(cell)

    # re-insert the locked cells the student deleted, in the instructor's order
    for i, cell in enumerate(instructor.cells):
        gid = nbtools.grade_id(cell)
        if gid not in protected or gid in present:
            continue
        position = 0
        for prev in reversed(instructor.cells[:i]):
            pg = nbtools.grade_id(prev)
            if pg and pg in present:
                position = 1 + next(k for k, c in enumerate(merged) if nbtools.grade_id(c) == pg)
                break
        merged.insert(position, copy.deepcopy(cell))
        present.add(gid)
        what = "test cell" if nbtools.is_grade(cell) else "locked cell"
        notes.append(f"the {what} {gid!r} was missing from the submission; the instructor's "
                     "version was put back")
    for cell in instructor.cells:
        gid = nbtools.grade_id(cell)
        if gid and nbtools.is_solution(cell) and gid not in present:
            notes.append(f"the solution cell {gid!r} is missing from the submission")

    for i, cell in enumerate(merged):
        cell["id"] = f"graded-{i}"  # nbformat 4.5 ids must be unique: renumber them
        if cell.cell_type == "code":  # no stale outputs: a cell that never runs shows nothing
            cell.outputs, cell.execution_count = [], None
    nb = nbformat.v4.new_notebook(cells=merged, metadata=copy.deepcopy(instructor.metadata))
    return nb, notes


# ----------------------------------------------------------------------------------------------
# grading one notebook
# ----------------------------------------------------------------------------------------------

def _clip(message):
    message = ANSI.sub("", message or "")
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + " […]"


def _split_hint(message):
    """(message, hint): the checks put a recognised mistake's explanation on a 'hint:' line."""
    lines = message.split("\n")
    hints = [l.split("hint:", 1)[1].strip() for l in lines if l.strip().startswith("hint:")]
    rest = "\n".join(l for l in lines if not l.strip().startswith("hint:"))
    return rest.strip(), (" ".join(hints) or None)


def _startup_cells(nb):
    """(label, source) of the cells the scoring worker runs: set-up, given and solution cells."""
    cells = []
    for i, cell in enumerate(nb.cells):
        gid = nbtools.grade_id(cell) or ""
        if cell.cell_type != "code":
            continue
        if gid.endswith("_setup") or gid.endswith("_given") or nbtools.is_solution(cell):
            cells.append((gid, cell.source))
    return cells


def _trusted_namespace(name, instructor):
    """The instructor's set-up and given cells, run in the grader's process: the checks use these
    given functions, never the student's. Fresh for every notebook graded: a student's function
    that modifies its arguments in place must not change what the next student is tested on."""
    ns = {"__name__": "__grader__"}
    for label, source in _startup_cells(instructor):
        cell = next(c for c in instructor.cells if nbtools.grade_id(c) == label)
        if nbtools.is_solution(cell):
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                exec(compile(source, f"<{label}>", "exec"), ns)
            except Exception as e:  # noqa: BLE001
                raise GradingError(f"the instructor's cell {label} of {name} fails in the "
                                   f"grader: {type(e).__name__}: {e}") from None
    return ns


def _run_graded_cell(ns, source, session, cell_timeout, deadline):
    """Run one instructor test cell in the grader's process: (verdict, message, hint, output).

    The cell runs region by region (`nbtools.split_hidden`), so a failure is known to be a visible
    check's (message and hint shown) or a hidden test's (only "a hidden test failed"); what hidden
    tests print is dropped."""
    from .remote import CellTimeout, WorkerDied

    shown = []
    session.call_deadline = min(time.monotonic() + cell_timeout, deadline)
    parts = nbtools.split_hidden(source)
    try:
        codes = [(hidden, compile(text, "<test>", "exec")) for hidden, text in parts]
    except SyntaxError:  # a region that is not a whole statement: run the cell in one piece
        codes = [(True, compile(source, "<test>", "exec"))]
    for hidden, code in codes:
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(code, ns)
        except CellTimeout as e:
            return "timed out", _clip(str(e) or f"timed out after {cell_timeout:g} s"), None, ""
        except WorkerDied as e:
            return "failed", _clip(f"your code ended the process: {e}"), None, _joined(shown)
        except Exception as e:  # noqa: BLE001 — any error fails the cell, as in nbgrader
            if hidden:
                if isinstance(e, NotImplementedError) or "not written yet" in str(e):
                    return "failed", "not written yet (NotImplementedError)", None, _joined(shown)
                return "failed", HIDDEN_FAILED, None, _joined(shown)
            message, hint = _split_hint(_clip(f"{type(e).__name__}: {e}"))
            shown.append(out.getvalue())
            return "failed", message, hint, _joined(shown)
        if not hidden:
            shown.append(out.getvalue())
    return "passed", None, None, _joined(shown)


def _joined(outputs):
    return _clip("".join(outputs).strip())


def grade_notebook(name, instructor, student_path, scratch, lib, backend, cell_timeout=60,
                   notebook_timeout=300, private=(), record_dir=None):
    """Grade one student's copy of instructor notebook `name`.

    `scratch` is a fresh folder holding a copy of the student's folder; `lib` the grading copy.
    Returns a dict: status, seconds, notes, cells {grade_id: {points, max, passed, verdict,
    message, hint, output}}, solution_errors, flags, and `record` (the executed notebook as
    text, for the instructor only, or None).
    """
    from .remote import WorkerDied, WorkerSession

    t0 = time.monotonic()
    deadline = t0 + notebook_timeout
    graded = nbtools.graded_cells(instructor)
    cells = {gid: {"points": 0.0, "max": pts, "passed": False, "verdict": "not run",
                   "message": None, "hint": None, "output": ""} for gid, pts, _ in graded}
    result = {"status": None, "seconds": 0.0, "notes": [], "cells": cells, "solution_errors": {},
              "flags": [], "record": None}

    def finish(status, message=None):
        result["status"] = status
        if message:
            result["notes"].append(message)
            for c in cells.values():
                if c["verdict"] == "not run":
                    c["message"] = c["message"] or message
        result["seconds"] = round(time.monotonic() - t0, 2)
        return result

    if student_path is None:
        return finish("missing", "notebook not submitted")
    try:
        student = nbtools.read(student_path)
    except Exception as e:  # noqa: BLE001 — invalid JSON, not a notebook, unreadable bytes
        return finish("unreadable", f"the notebook could not be read ({type(e).__name__}: "
                                    f"{str(e)[:300]})")
    nb, notes = merge_submission(instructor, student)
    result["notes"].extend(notes)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and not nbtools.is_locked(cell):
            result["flags"] += suspicion.flags(cell.source, nbtools.grade_id(cell) or f"cell {i}")

    ns = _trusted_namespace(name, instructor)
    session = WorkerSession(lib, scratch, backend, _startup_cells(nb), cell_timeout, deadline,
                            private=private, log_path=str(Path(scratch).parent / "worker.stderr"))
    for e in notebook_exercises(name):
        for fn in e.writes:
            ns[fn] = session.proxy(fn)
    status = "ok"
    try:
        try:
            session.ensure()
        except WorkerDied as e:
            return finish("grader error", f"the sandbox did not start: {e}")
        for gid, _, cell in graded:
            c = cells[gid]
            if time.monotonic() >= deadline:
                status = "timeout"
                c["message"] = (f"not run: the notebook ran out of its {notebook_timeout:g} s "
                                "time limit before this cell")
                continue
            verdict, message, hint, output = _run_graded_cell(ns, cell.source, session,
                                                              cell_timeout, deadline)
            c.update(verdict=verdict, message=message, hint=hint, output=output)
            if verdict == "passed":
                c["points"], c["passed"] = c["max"], True
    finally:
        session.close()
    solutions = {nbtools.grade_id(c) for c in nb.cells if nbtools.is_solution(c)}
    for label, r in session.cell_results.items():
        if r["error"] and label in solutions:
            result["solution_errors"][label] = _clip(r["error"])
        if r["timed_out"]:
            result["notes"].append(f"the cell {label} timed out and was left out of the rest of "
                                   "the grading")
    result["notes"] += [f"{fn} timed out after {s:g} s" for fn, s in session.timed_out.items()]
    if record_dir is not None and time.monotonic() < deadline:
        result["record"] = _record_run(nb, scratch, lib, backend, cell_timeout,
                                       min(deadline, time.monotonic() + notebook_timeout), private)
    return finish(status)


def _record_run(nb, scratch, lib, backend, cell_timeout, deadline, private):
    """The notebook as the student wrote it, hidden tests left out, run in a fresh sandbox: the
    instructor's record (outputs and errors per cell). Never used for a score."""
    from .remote import WorkerDied, WorkerSession

    record = copy.deepcopy(nb)
    cells = []
    for i, cell in enumerate(record.cells):
        if cell.cell_type != "code":
            continue
        if nbtools.is_grade(cell):  # scored by the grader, outside the notebook: see the feedback
            nbtools.clear_hidden_tests(cell)
            continue
        cells.append((f"cell-{i}", cell.source))
    session = WorkerSession(lib, scratch, backend, cells, cell_timeout, deadline, private=private,
                            restart_on_timeout=False)  # a record stops at a cell that hangs
    try:
        session.ensure()
    except WorkerDied as e:
        record.metadata["minichinchilla"] = {"record_error": str(e)}
    finally:
        session.close()
    for i, cell in enumerate(record.cells):
        r = session.cell_results.get(f"cell-{i}")
        if cell.cell_type != "code" or r is None:
            continue
        if r["stdout"]:
            cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=r["stdout"]))
        if r["error"]:
            ename, _, evalue = r["error"].partition(": ")
            cell.outputs.append(nbformat.v4.new_output("error", ename=ename, evalue=evalue,
                                                       traceback=[r["error"]]))
    return nbformat.writes(record)


# ----------------------------------------------------------------------------------------------
# a class of students
# ----------------------------------------------------------------------------------------------

def default_source():
    return Path(__file__).resolve().parents[2] / "notebooks" / "assignments"


def load_instructor(source):
    source = Path(source)
    if not source.is_dir():
        raise GradingError(f"instructor notebooks: {source} is not a directory (pass --source DIR)")
    paths = sorted(source.glob("*.ipynb"))
    if not paths:
        raise GradingError(f"instructor notebooks: no .ipynb files in {source}")
    notebooks = {}
    for p in paths:
        try:
            nb = nbtools.read(p)
            nbtools.validate_instructor(nb, p.name)
        except nbtools.NotebookFormatError as e:
            raise GradingError(f"instructor notebook {p}: {e}") from None
        except Exception as e:
            raise GradingError(f"instructor notebook {p} could not be read: {e}") from None
        notebooks[p.name] = nb
    return notebooks


def _find_submission(folder, name):
    """The student's copy of notebook `name`: the same file name, else a unique file starting with
    the same assignment tag (``A1-``), e.g. a browser's ``A1-backprop-basics (1).ipynb``."""
    exact = folder / name
    if exact.is_file():
        return exact, None
    tag = name.split("-", 1)[0] + "-"
    candidates = sorted(p for p in folder.glob("*.ipynb") if p.name.startswith(tag))
    if len(candidates) == 1:
        return candidates[0], f"graded {candidates[0].name} as {name}"
    return None, None


def _copy_submission(folder, dest):
    """The student's private scratch: a copy of their folder (links copied as links, never
    followed; a folder named like the package would shadow the grading copy, so it stays out)."""
    try:
        shutil.copytree(folder, dest, symlinks=True, ignore=shutil.ignore_patterns(
            "minichinchilla", "minichinchilla.py", ".ipynb_checkpoints", "__pycache__"))
    except Exception:  # noqa: BLE001 — an unreadable file must not stop the grading
        dest.mkdir(parents=True, exist_ok=True)


def _grade_task(args):
    """Worker: grade one (student, notebook) pair in a scratch copy of the student's folder."""
    (student, folder, nb_name, instructor_json, lib, backend, cell_timeout, notebook_timeout,
     private, tmp_root) = args
    instructor = nbformat.reads(instructor_json, as_version=4)
    path, note = _find_submission(Path(folder), nb_name)
    with tempfile.TemporaryDirectory(prefix="mc-scratch-", dir=tmp_root) as tmp:
        work = Path(tmp) / "work"
        _copy_submission(folder, work)
        copied = work / path.relative_to(folder) if path is not None else None
        try:
            res = grade_notebook(nb_name, instructor, copied, work, lib, backend, cell_timeout,
                                 notebook_timeout, private, record_dir=True)
        except Exception as e:  # noqa: BLE001 — a grader bug must not lose the class's results
            res = {"status": "grader error", "seconds": 0.0, "cells": {
                gid: {"points": 0.0, "max": pts, "passed": False, "verdict": "not run",
                      "message": f"grader error: {type(e).__name__}: {e}", "hint": None,
                      "output": ""}
                for gid, pts, _ in nbtools.graded_cells(instructor)},
                "notes": [f"grader error: {type(e).__name__}: {e}"], "solution_errors": {},
                "flags": [], "record": None}
    if note:
        res["notes"].insert(0, note)
    return student, nb_name, res


def _exercise_report(nb_results):
    """Per-exercise points, checks and notes from the per-notebook results of one student."""
    exercises = {}
    for nb_name, res in nb_results.items():
        for gid, c in res["cells"].items():
            ex = exercise_of(gid)
            key = ex.key if ex else gid
            e = exercises.setdefault(key, {
                "title": ex.title if ex else gid, "notebook": nb_name, "points": 0.0, "max": 0.0,
                "checks": {}, "notes": []})
            e["points"] += c["points"]
            e["max"] += c["max"]
            e["checks"][gid] = {k: c[k] for k in ("points", "max", "verdict", "message", "hint",
                                                  "output")}
        for gid, err in res.get("solution_errors", {}).items():
            ex = exercise_of(gid)
            if ex and ex.key in exercises:
                exercises[ex.key]["notes"].append(f"your cell {gid!r} raised {err}")
    for e in exercises.values():
        messages = " ".join(c["message"] or "" for c in e["checks"].values())
        if "removed from the grading copy" in messages:
            e["notes"].append("this exercise calls the package's own implementation, which is not "
                              "available while grading: write the function yourself")
        if "is not defined" in messages:
            e["notes"].append("the grader runs only the set-up, given and solution cells "
                              "(# YOUR CODE HERE): put every helper your answer needs in one of them")
    order = {ex.key: i for i, ex in enumerate(EXERCISES)}
    return dict(sorted(exercises.items(), key=lambda kv: order.get(kv[0], len(order))))


def _inside(path, parent):
    path, parent = Path(os.path.realpath(path)), Path(os.path.realpath(parent))
    return path == parent or parent in path.parents


def repository_root():
    return Path(__file__).resolve().parents[2]


def check_locations(submissions, out, instructor_dir):
    """Refuse result folders that would touch the submissions, or put instructor-only files where
    students get their feedback. Raises GradingError (exit 2) before anything is written."""
    if _inside(out, submissions):
        raise GradingError(f"--out {out} is inside (or is) the submissions folder {submissions}: "
                           "results and feedback must never be written among the submissions")
    if _inside(submissions, out):
        raise GradingError(f"--out {out} contains the submissions folder {submissions}; choose a "
                           "folder of its own")
    if _inside(instructor_dir, submissions):
        raise GradingError(f"--instructor-dir {instructor_dir} is inside the submissions folder")
    if _inside(instructor_dir, out) or _inside(out, instructor_dir):
        raise GradingError(f"--instructor-dir {instructor_dir} and --out {out} overlap: the "
                           "instructor's folder holds what students must not see")
    if _inside(instructor_dir, repository_root()):
        raise GradingError(f"--instructor-dir {instructor_dir} is inside the repository "
                           f"{repository_root()}: choose a folder outside it")


def default_instructor_dir(out):
    out = Path(os.path.realpath(out))
    return out.parent / (out.name + ".instructor")


def grade(submissions, out, source=None, cell_timeout=60, notebook_timeout=300, jobs=1,
          students=None, log=print, no_sandbox=False, instructor_dir=None, sandbox_kind="auto"):
    """Grade every student folder of `submissions`; write `out/<student>.json` and `.html`,
    `out/grades.csv` (+ `grades.meta.json`), and the executed notebooks and the suspicion report
    to `instructor_dir` (default: ``<out>.instructor`` beside `out`). `sandbox_kind` is "auto"
    (bubblewrap, else unshare), "bwrap" or "unshare". Returns {student: report}.
    """
    from . import sandbox
    from .gradingcopy import make_grading_copy, package_dir

    submissions = Path(submissions)
    if not submissions.is_dir():
        raise GradingError(f"submissions directory {submissions} does not exist (expected one "
                           "sub-folder per student holding that student's notebooks)")
    out = Path(out)
    instructor_dir = Path(instructor_dir) if instructor_dir else default_instructor_dir(out)
    check_locations(submissions, out, instructor_dir)
    source = Path(source or default_source())
    instructor = load_instructor(source)
    folders = sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))
    if students:
        wanted = set(students)
        missing = wanted - {p.name for p in folders}
        if missing:
            raise GradingError(f"no folder for student(s) {', '.join(sorted(missing))} in {submissions}")
        folders = [p for p in folders if p.name in wanted]
    if not folders:
        raise GradingError(f"{submissions} holds no student folders (one sub-folder per student)")
    if no_sandbox:
        backend = "none"
    else:
        backend = sandbox.available_backend() if sandbox_kind == "auto" else (
            sandbox_kind if sandbox.works(sandbox_kind) else None)
        if backend is None:
            raise GradingError("no sandbox works on this machine (install bubblewrap: apt-get install "
                               "bubblewrap; or run as root with util-linux unshare). Student code "
                               "would run with your rights: pass --no-sandbox to accept that")
    sandbox_text = sandbox.describe(backend)
    log(f"sandbox: {sandbox_text}")

    out.mkdir(parents=True, exist_ok=True)
    instructor_dir.mkdir(parents=True, exist_ok=True)
    private = [str(submissions), str(out), str(instructor_dir), str(source), str(repository_root()),
               str(package_dir())]
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="mc-grading-") as tmp_root:
        os.chmod(tmp_root, 0o711)  # students' uids reach their scratch, but cannot list others
        libs = {}
        for name in instructor:
            libs[name] = str(make_grading_copy(Path(tmp_root) / f"lib-{name.split('-', 1)[0]}",
                                               stripped_names(name)))
        tasks = [(f.name, str(f), name, nbformat.writes(nb), libs[name], backend, cell_timeout,
                  notebook_timeout, private, tmp_root)
                 for f in folders for name, nb in instructor.items()]
        results = {f.name: {} for f in folders}
        if jobs > 1 and len(tasks) > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=jobs,
                                     mp_context=multiprocessing.get_context("spawn")) as pool:
                for student, nb_name, res in pool.map(_grade_task, tasks):
                    results[student][nb_name] = res
                    log(f"graded {student}/{nb_name}: {res['status']} in {res['seconds']:.1f} s")
        else:
            for task in tasks:
                student, nb_name, res = _grade_task(task)
                results[student][nb_name] = res
                log(f"graded {student}/{nb_name}: {res['status']} in {res['seconds']:.1f} s")

    grade_ids = [gid for nb in instructor.values() for gid, _, _ in nbtools.graded_cells(nb)]
    reports, flagged = {}, {}
    for student, nb_results in results.items():
        exercises = _exercise_report(nb_results)
        report = {
            "student": student,
            "total": sum(e["points"] for e in exercises.values()),
            "max_total": sum(e["max"] for e in exercises.values()),
            "exercises": exercises,
            "notebooks": {name: {"status": r["status"], "seconds": r["seconds"], "notes": r["notes"]}
                          for name, r in nb_results.items()},
        }
        reports[student] = report
        _write_text(out / f"{student}.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        _write_text(out / f"{student}.html", feedback_html(report))
        record_dir = instructor_dir / student
        for name, r in nb_results.items():
            if r.get("record"):
                record_dir.mkdir(parents=True, exist_ok=True)
                _write_text(record_dir / name, r["record"])
            if r.get("flags"):
                flagged.setdefault(student, {})[name] = r["flags"]
    table = io.StringIO(newline="")
    w = csv.writer(table)
    w.writerow(["student", *grade_ids, "total"])
    for student, report in reports.items():
        cells = {gid: c for e in report["exercises"].values() for gid, c in e["checks"].items()}
        w.writerow([student, *(_fmt(cells[g]["points"]) if g in cells else "" for g in grade_ids),
                    _fmt(report["total"])])
    _write_text(out / "grades.csv", table.getvalue())
    meta = {"sandbox": sandbox_text, "sandboxed": backend != "none", "backend": backend,
            "cell_timeout": cell_timeout, "notebook_timeout": notebook_timeout, "jobs": jobs,
            "students": len(reports), "seconds": round(time.time() - started, 1),
            "source": str(source), "instructor_dir": str(instructor_dir)}
    _write_text(out / "grades.meta.json", json.dumps(meta, indent=2) + "\n")
    _write_text(instructor_dir / "suspicion.json", json.dumps(flagged, indent=2) + "\n")
    _write_text(instructor_dir / "report.md", instructor_report(reports, flagged, meta))
    return reports


def _write_text(path, text):
    """Whole file or nothing (a crash mid-run never leaves half a grades.csv), readable by all."""
    write_text_atomically(path, text)
    path.chmod(0o644)


def _fmt(x):
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def instructor_report(reports, flagged, meta):
    lines = ["# Grading report (instructor only)", "",
             f"- sandbox: {meta['sandbox']}" + ("" if meta["sandboxed"] else "  **NOT SANDBOXED**"),
             f"- students: {meta['students']}; {meta['seconds']} s with --jobs {meta['jobs']}",
             "", "## Totals", ""]
    lines += [f"- {line}" for line in summary_lines(reports)]
    lines += ["", "## Code worth a look (flagged, not penalised)", ""]
    if not flagged:
        lines.append("nothing flagged")
    for student, by_nb in flagged.items():
        for nb_name, items in by_nb.items():
            for f in items:
                lines.append(f"- {student} / {nb_name} / {f['where']} line {f['line']}: "
                             f"{f['what']}: `{f['text']}`")
    return "\n".join(lines) + "\n"


def feedback_html(report):
    """The student's feedback page: per exercise, each check's verdict, message and hint."""
    esc = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             f"<title>Feedback: {esc(report['student'])}</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
             ".passed{color:#176f2c}.failed,.timed{color:#a11}pre{white-space:pre-wrap;"
             "background:#f5f5f5;padding:.5em}</style></head><body>",
             f"<h1>Feedback for {esc(report['student'])}</h1>",
             f"<p><b>Total: {_fmt(report['total'])} / {_fmt(report['max_total'])}</b></p>"]
    for key, e in report["exercises"].items():
        parts.append(f"<h2>{esc(key)} · {esc(e['title'])} — {_fmt(e['points'])} / {_fmt(e['max'])}"
                     "</h2><ul>")
        for gid, c in e["checks"].items():
            cls = {"passed": "passed", "timed out": "timed"}.get(c["verdict"], "failed")
            parts.append(f"<li><span class='{cls}'>{esc(c['verdict'])}</span> <code>{esc(gid)}</code>"
                         f" ({_fmt(c['points'])}/{_fmt(c['max'])})")
            if c.get("message"):
                parts.append(f"<pre>{esc(c['message'])}</pre>")
            if c.get("hint"):
                parts.append(f"<p><i>hint:</i> {esc(c['hint'])}</p>")
            parts.append("</li>")
        parts.append("</ul>")
        for note in e["notes"]:
            parts.append(f"<p>{esc(note)}</p>")
    for name, nbinfo in report["notebooks"].items():
        if nbinfo["notes"]:
            parts.append(f"<h3>{esc(name)}</h3><ul>" + "".join(f"<li>{esc(n)}</li>"
                                                              for n in nbinfo["notes"]) + "</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def summary_lines(reports):
    """One line per student: total and the exercises that lost points."""
    lines = []
    for student, r in reports.items():
        lost = [f"{k} {_fmt(e['points'])}/{_fmt(e['max'])}" for k, e in r["exercises"].items()
                if e["points"] < e["max"]]
        lines.append(f"{student}: {_fmt(r['total'])}/{_fmt(r['max_total'])}"
                     + (f"  (lost points: {', '.join(lost)})" if lost else ""))
    return lines


__all__ = ["GradingError", "grade", "grade_notebook", "merge_submission", "check_locations"]
