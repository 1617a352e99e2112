"""Autograding: run every student's notebooks with the instructor's tests and score each graded cell.

For each student folder and each instructor notebook the grader

1. reads the student's notebook (a missing or unreadable notebook scores 0, with a note);
2. puts back the instructor's version of every locked cell — the graded test cells, with their
   hidden tests, and the given code — matched by grade_id, re-inserting any the student deleted
   (nbgrader's OverwriteCells does the same);
3. adds a first cell that switches off the package's own implementation of every function the
   students write (`disable.py`);
4. executes the notebook with nbclient in a fresh ``python3`` kernel running ``sys.executable``,
   one cell at a time, with a per-cell and a per-notebook time limit and ``allow_errors=True``;
5. scores each graded cell: its points when it ran without error, else 0 and the error message.

Nothing a submission does — a syntax error, an exception, an infinite loop, a dead kernel, deleted
or edited cells — stops the grader; it scores what ran and says why the rest did not.
"""
from __future__ import annotations

import copy
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from . import nbtools
from .exercises import EXERCISES, exercise_of

MAX_MESSAGE = 2000
INJECTED_SOURCE = """\
# Added by the grader: the package's own implementations of the exercises are switched off.
from minichinchilla.assignments.disable import disable_references as _disable_references
_disable_references()
del _disable_references"""


class GradingError(RuntimeError):
    """A problem with the grader's inputs (not with a submission): the command exits non-zero."""


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
# executing one notebook
# ----------------------------------------------------------------------------------------------

def _kernel_manager_class():
    """An AsyncKernelManager whose ``python3`` kernel is ipykernel on THIS interpreter."""
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class ThisPythonSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f",
                                    "{connection_file}"],
                              name="python3", display_name="Python 3 (grader)", language="python")

    class ThisPythonKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            kwargs.setdefault("kernel_spec_manager", ThisPythonSpecs())
            super().__init__(**kwargs)

    return ThisPythonKernelManager


def _kernel_env():
    env = os.environ.copy()
    root = str(Path(__file__).resolve().parents[2])  # the directory holding `minichinchilla/`
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("MPLBACKEND", "Agg")
    # one BLAS thread per kernel: the grader runs kernels side by side, and OpenBLAS's spinning
    # threads make small problems (L-BFGS on 5 parameters) ~40x slower on a busy machine
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    env["MINICHINCHILLA_GRADING"] = "1"
    return env


def execute(nb, workdir, cell_timeout=60, notebook_timeout=300):
    """Run `nb` (in place) cell by cell. Returns (replies by cell index, notes, status).

    status is "ok", "timeout" (the notebook's time ran out) or "kernel died".
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    replies, notes, status = {}, [], "ok"

    def on_executed(cell, cell_index, execute_reply):
        replies[cell_index] = execute_reply

    client = NotebookClient(
        nb, timeout=cell_timeout, kernel_name="python3", allow_errors=True,
        interrupt_on_timeout=True, record_timing=False, shutdown_kernel="immediate",
        error_on_timeout={"ename": "CellTimeoutError", "evalue": "timed out", "traceback": []},
        kernel_manager_class=_kernel_manager_class(), startup_timeout=120,
        resources={"metadata": {"path": str(workdir)}}, on_cell_executed=on_executed,
        iopub_timeout=2,
    )
    deadline = time.monotonic() + notebook_timeout
    # the kernel's own stderr holds only start-up chatter: the cells' output comes over IOPub
    with client.setup_kernel(env=_kernel_env(), stderr=subprocess.DEVNULL):
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            remaining = deadline - time.monotonic()
            if remaining < 1:
                status = "timeout"
                notes.append(f"the notebook ran out of its {notebook_timeout:g} s time limit; "
                             f"cells from index {index} on were not run")
                break
            limit = max(1, int(min(cell_timeout, remaining)))
            client.timeout = limit
            try:
                client.execute_cell(cell, index)
            except DeadKernelError:
                status = "kernel died"
                notes.append(f"the kernel died while running cell {index} (os._exit, a crash or "
                             "running out of memory?); the cells after it were not run")
                break
            except CellTimeoutError:
                replies[index] = {"content": {"status": "error", "ename": "CellTimeoutError",
                                              "evalue": "timed out"}}
            reply = replies.get(index)
            if reply and reply.get("content", {}).get("ename") == "CellTimeoutError":
                message = (f"this cell did not finish within {limit} s (an infinite loop?) and "
                           "was interrupted")
                reply["content"]["evalue"] = message
                cell.outputs.append(nbformat.v4.new_output(
                    "error", ename="CellTimeoutError", evalue=message, traceback=[message]))
                notes.append(f"cell {index} timed out after {limit} s")
    return replies, notes, status


def _cell_error(cell, reply):
    """The error of an executed cell as 'Name: message', or None when it ran cleanly."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"
    if reply is not None and reply.get("content", {}).get("status") == "error":
        c = reply["content"]
        return f"{c.get('ename', 'Error')}: {c.get('evalue', '')}"
    return None


def _clip(message):
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + " […]"


def grade_notebook(instructor, student_path, workdir, cell_timeout=60, notebook_timeout=300):
    """Grade one student's copy of one instructor notebook.

    Returns a dict: status, seconds, notes, cells {grade_id: {points, max, passed, message}},
    solution_errors {grade_id: message} and the executed notebook (as JSON text, or None).
    """
    t0 = time.monotonic()
    graded = nbtools.graded_cells(instructor)
    cells = {gid: {"points": 0.0, "max": pts, "passed": False, "message": None}
             for gid, pts, _ in graded}
    result = {"status": None, "seconds": 0.0, "notes": [], "cells": cells, "solution_errors": {},
              "notebook": None}

    def fail_all(status, message):
        result["status"] = status
        result["notes"].append(message)
        for c in cells.values():
            c["message"] = message
        result["seconds"] = round(time.monotonic() - t0, 2)
        return result

    if student_path is None:
        return fail_all("missing", "notebook not submitted")
    try:
        student = nbtools.read(student_path)
    except Exception as e:  # invalid JSON, not a notebook, unreadable bytes
        return fail_all("unreadable", f"the notebook could not be read ({type(e).__name__}: "
                                      f"{str(e)[:300]})")
    nb, notes = merge_submission(instructor, student)
    result["notes"].extend(notes)
    nb.cells.insert(0, nbformat.v4.new_code_cell(INJECTED_SOURCE,
                                                 metadata={"minichinchilla": {"injected": True}}))
    replies, notes, status = execute(nb, workdir, cell_timeout, notebook_timeout)
    result["notes"].extend(notes)
    result["status"] = status

    by_gid = {}
    for index, cell in enumerate(nb.cells):
        gid = nbtools.grade_id(cell)
        if gid and gid not in by_gid:
            by_gid[gid] = (index, cell)
    for gid, c in cells.items():
        index, cell = by_gid[gid]  # merge_submission guarantees every graded cell is present
        if index not in replies:
            c["message"] = "not run: " + ("the notebook ran out of time before this cell"
                                          if status == "timeout" else
                                          f"the kernel died before this cell ({status})")
            continue
        error = _cell_error(cell, replies[index])
        if error is None:
            c["points"], c["passed"] = c["max"], True
        else:
            c["message"] = _clip(error)
    for gid, (index, cell) in by_gid.items():
        if nbtools.is_solution(cell) and index in replies:
            error = _cell_error(cell, replies[index])
            if error:
                result["solution_errors"][gid] = _clip(error)
    result["notebook"] = nbformat.writes(nb)
    result["seconds"] = round(time.monotonic() - t0, 2)
    return result


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


def _grade_task(args):
    """Worker: grade one (student, notebook) pair in a scratch copy of the student's folder."""
    student, folder, nb_name, instructor_json, cell_timeout, notebook_timeout = args
    instructor = nbformat.reads(instructor_json, as_version=4)
    path, note = _find_submission(Path(folder), nb_name)
    with tempfile.TemporaryDirectory(prefix="mc-grade-") as tmp:
        work = Path(tmp) / "work"
        try:
            # a folder named like the package would shadow it on the kernel's sys.path
            shutil.copytree(folder, work, symlinks=True, ignore=shutil.ignore_patterns(
                "minichinchilla", "minichinchilla.py", ".ipynb_checkpoints", "__pycache__"))
        except Exception:
            work.mkdir(parents=True, exist_ok=True)
        copied = work / path.name if path is not None else None
        try:
            res = grade_notebook(instructor, copied, work, cell_timeout, notebook_timeout)
        except Exception as e:  # a grader bug must not lose the class's other results
            res = {"status": "grader error", "seconds": 0.0, "cells": {
                gid: {"points": 0.0, "max": pts, "passed": False,
                      "message": f"grader error: {type(e).__name__}: {e}"}
                for gid, pts, _ in nbtools.graded_cells(instructor)},
                "notes": [f"grader error: {type(e).__name__}: {e}"], "solution_errors": {},
                "notebook": None}
    if note:
        res["notes"].insert(0, note)
    return student, nb_name, res


def _exercise_report(nb_results):
    """Per-exercise totals, failures and notes from the per-notebook results of one student."""
    exercises = {}
    for nb_name, res in nb_results.items():
        for gid, c in res["cells"].items():
            ex = exercise_of(gid)
            key = ex.key if ex else gid
            e = exercises.setdefault(key, {
                "title": ex.title if ex else gid, "notebook": nb_name, "points": 0.0, "max": 0.0,
                "cells": {}, "failures": [], "notes": []})
            e["points"] += c["points"]
            e["max"] += c["max"]
            e["cells"][gid] = c
            if not c["passed"]:
                e["failures"].append({"grade_id": gid, "message": c["message"]})
        for gid, err in res.get("solution_errors", {}).items():
            ex = exercise_of(gid)
            if ex and ex.key in exercises:
                exercises[ex.key]["notes"].append(f"your solution cell {gid!r} raised {err}")
    for key, e in exercises.items():
        if any("disabled during grading" in (f["message"] or "") for f in e["failures"]):
            e["notes"].append(
                "this exercise calls the package's own implementation, which is switched off while "
                "grading, so the checks that reached it score 0: write the function yourself")
        if any((f["message"] or "").startswith("not run") for f in e["failures"]):
            e["notes"].append("some checks did not run (see the notebook's notes)")
    order = {ex.key: i for i, ex in enumerate(EXERCISES)}
    return dict(sorted(exercises.items(), key=lambda kv: order.get(kv[0], len(order))))


def grade(submissions, out, source=None, cell_timeout=60, notebook_timeout=300, jobs=1,
          students=None, log=print):
    """Grade every student folder of `submissions`; write `out/<student>.json`, `out/grades.csv`
    and the executed notebooks under `out/<student>/`. Returns {student: report dict}."""
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise GradingError(f"submissions directory {submissions} does not exist (expected one "
                           "sub-folder per student holding that student's notebooks)")
    instructor = load_instructor(source or default_source())
    folders = sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))
    if students:
        wanted = set(students)
        missing = wanted - {p.name for p in folders}
        if missing:
            raise GradingError(f"no folder for student(s) {', '.join(sorted(missing))} in {submissions}")
        folders = [p for p in folders if p.name in wanted]
    if not folders:
        raise GradingError(f"{submissions} holds no student folders (one sub-folder per student)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    tasks = [(f.name, str(f), name, nbformat.writes(nb), cell_timeout, notebook_timeout)
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
    reports = {}
    for student, nb_results in results.items():
        exercises = _exercise_report(nb_results)
        total = sum(e["points"] for e in exercises.values())
        max_total = sum(e["max"] for e in exercises.values())
        report = {
            "student": student, "total": total, "max_total": max_total, "exercises": exercises,
            "notebooks": {name: {"status": r["status"], "seconds": r["seconds"], "notes": r["notes"]}
                          for name, r in nb_results.items()},
        }
        reports[student] = report
        (out / f"{student}.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
        feedback_dir = out / student
        feedback_dir.mkdir(exist_ok=True)
        for name, r in nb_results.items():
            if r.get("notebook"):
                (feedback_dir / name).write_text(r["notebook"], encoding="utf-8")
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", *grade_ids, "total"])
        for student, report in reports.items():
            cells = {gid: c for e in report["exercises"].values() for gid, c in e["cells"].items()}
            w.writerow([student, *(_fmt(cells[g]["points"]) if g in cells else "" for g in grade_ids),
                        _fmt(report["total"])])
    return reports


def _fmt(x):
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def summary_lines(reports):
    """One line per student: total and the exercises that lost points."""
    lines = []
    for student, r in reports.items():
        lost = [f"{k} {_fmt(e['points'])}/{_fmt(e['max'])}" for k, e in r["exercises"].items()
                if e["points"] < e["max"]]
        lines.append(f"{student}: {_fmt(r['total'])}/{_fmt(r['max_total'])}"
                     + (f"  (lost points: {', '.join(lost)})" if lost else ""))
    return lines


__all__ = ["GradingError", "grade", "grade_notebook", "merge_submission", "execute"]
