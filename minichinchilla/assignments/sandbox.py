"""Run a student's code in a throwaway sandbox: bubblewrap, else plain `unshare`, else refuse.

What a sandboxed process sees and may do:

* the system (``/usr``, ``/etc``, the Python installation and its site-packages) READ-ONLY, with
  the real ``minichinchilla`` and the automatic-differentiation libraries (PyTorch, JAX, ...)
  hidden under empty folders;
* the grading copy of the package (`gradingcopy.py`) read-only at ``/grader/lib``;
* ONE writable folder, ``/home/student/work``: a private copy of that student's submission;
  and a small private ``/tmp``;
* nothing else: not the other submissions, the instructor's notebooks, the results, the grader's
  repository, ``/root``, ``/home``, ``/work``;
* no network (a new network namespace with only loopback);
* its own PID namespace: when the sandbox is killed, the kernel kills every process in it, even
  ones that called ``setsid()`` or double-forked; ``/proc`` shows only the sandbox's processes;
* limits (``setrlimit``): address space, CPU seconds, file size, open files, no core dumps, and,
  where the grader runs as root, a number of processes, made to bind by running the student as a
  uid of its own (``RLIMIT_NPROC`` never binds root).

`launch()` starts one process in such a sandbox and returns a `Sandboxed` handle whose `kill()`
tears the whole namespace down.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import resource
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

INSIDE_LIB = "/grader/lib"
INSIDE_HOME = "/home/student"
INSIDE_WORK = "/home/student/work"
# libraries that would compute a gradient for the student; hidden inside the sandbox
# (the grading copy also shadows them with modules that raise ImportError)
from .gradingcopy import BLOCKED_IMPORTS as HIDDEN_LIBRARIES  # noqa: E402
SYSTEM_DIRS = ("/usr", "/etc", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/opt")
FIRST_UID = 640000  # students run as uids FIRST_UID + (pid of the grading process)


class SandboxUnavailable(RuntimeError):
    """Neither bubblewrap nor unshare can start a sandbox on this machine."""


@dataclass
class Limits:
    memory_mb: int = 4096  # address space of each process
    cpu_seconds: int = 600  # CPU time of each process
    file_mb: int = 64  # largest file a process may write
    processes: int = 64  # only where the grader runs as root (a uid of the student's own)
    open_files: int = 256
    tmp_mb: int = 256  # the sandbox's private /tmp (bubblewrap only)


@dataclass
class Sandboxed:
    """A running sandboxed process. `kill()` ends it and everything it started."""

    proc: subprocess.Popen
    backend: str
    uid: int | None = None
    cleanup: list = field(default_factory=list)

    def kill(self):
        if self.proc.poll() is None:
            try:
                if self.backend == "none":
                    os.killpg(self.proc.pid, signal.SIGKILL)
                else:  # bwrap/unshare: their child is PID 1 of the namespace and dies with them
                    self.proc.kill()
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        if self.uid is not None:  # anything left with the student's uid (there should be none)
            _kill_uid(self.uid)


def _kill_uid(uid):
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid == uid:
                os.kill(int(entry), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass


# ----------------------------------------------------------------------------------------------
# which backend works here
# ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def available_backend():
    """"bwrap" or "unshare" when a test sandbox starts here (and really isolates), else None."""
    for backend in ("bwrap", "unshare"):
        if works(backend):
            return backend
    return None


@functools.lru_cache(maxsize=None)
def works(backend):
    """True when a test sandbox of this kind starts here and really isolates."""
    return _probe(backend)


def describe(backend):
    if backend == "bwrap":
        try:
            version = subprocess.run(["bwrap", "--version"], capture_output=True, text=True,
                                     timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            version = "bubblewrap"
        return f"{version} (namespaces: mount, pid, net, ipc, uts)"
    if backend == "unshare":
        return "util-linux unshare (namespaces: user, mount, pid, net, ipc, uts)"
    return "NONE: --no-sandbox was given; student code ran with the grader's rights"


def _probe(backend):
    if backend == "bwrap" and not shutil.which("bwrap"):
        return False
    if backend == "unshare" and not (shutil.which("unshare") and shutil.which("setpriv")
                                     and os.geteuid() == 0):
        return False
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mc-probe-") as tmp:
        lib, work = Path(tmp) / "lib", Path(tmp) / "work"
        lib.mkdir()
        work.mkdir()
        # the probe must see its scratch, must not see the outside, and must have no network
        code = ("import os,socket,sys\n"
                f"assert os.path.isdir({INSIDE_WORK!r})\n"
                f"assert not os.path.exists({str(Path(tmp))!r})\n"
                "s=socket.socket()\ns.settimeout(1)\n"
                "try:\n s.connect(('1.1.1.1',53)); sys.exit(3)\nexcept OSError: pass\n"
                "print('ok')\n")
        try:
            box = launch([sys.executable, "-c", code], lib, work, Limits(), backend,
                         stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out, _ = box.proc.communicate(timeout=60)
            box.kill()
            return box.proc.returncode == 0 and out.strip() == b"ok"
        except (OSError, subprocess.TimeoutExpired, SandboxUnavailable):
            return False


# ----------------------------------------------------------------------------------------------
# what the sandbox may read
# ----------------------------------------------------------------------------------------------

def _python_dirs():
    """Directories the interpreter and its libraries live in (read-only in the sandbox)."""
    from .gradingcopy import package_dir

    prefixes = _system_prefixes()
    dirs = set(prefixes) | {str(Path(sys.executable).resolve().parent)}
    real_parent = str(package_dir().parent)
    for p in sys.path:
        if not p or not os.path.isdir(p):
            continue
        p = os.path.realpath(p)
        # only library folders: the script's folder or the working directory (sys.path[0]) and
        # the folder the real package was imported from (a repository on PYTHONPATH) stay out
        system = any(_inside(p, q) for q in prefixes | set(SYSTEM_DIRS))
        library = system or any(part in ("site-packages", "dist-packages") for part in Path(p).parts)
        if not library or (p == real_parent and not system):
            continue
        dirs.add(p)
    return dirs


def _hidden_paths(real_package):
    """What must not be visible even though it lies in a readable directory."""
    hidden = {str(real_package)}
    for name in HIDDEN_LIBRARIES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin and spec.origin not in ("built-in", "frozen"):
            origin = Path(spec.origin)
            hidden.add(str(origin.parent if origin.name == "__init__.py" else origin))
        for loc in (spec.submodule_search_locations or []) if spec else []:
            hidden.add(str(Path(loc)))
    return hidden


def _readable_dirs(private):
    """System and Python directories, minus any inside a private path, and minus any non-system
    one that holds a private path (e.g. a repository on PYTHONPATH). A system directory holding a
    private path (site-packages holding the installed package) stays: tmpfs covers that path."""
    system = set(SYSTEM_DIRS) | _system_prefixes()
    keep = []
    for d in sorted(set(SYSTEM_DIRS) | _python_dirs()):
        if not os.path.isdir(d) or (d in SYSTEM_DIRS and os.path.islink(d)):
            continue  # /bin -> usr/bin and the like become symlinks in the sandbox
        real = os.path.realpath(d)
        if any(_inside(real, p) for p in private):
            continue  # e.g. a venv inside the repository: the repository stays hidden
        holds_private = any(_inside(p, real) for p in private)
        if holds_private and not any(_inside(real, s) for s in system):
            continue
        keep.append(d)
    out = []  # drop directories already covered by a kept parent
    for d in sorted(keep, key=len):
        if not any(_inside(os.path.realpath(d), os.path.realpath(o)) for o in out):
            out.append(d)
    return out


def _system_prefixes():
    return {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                          sys.base_exec_prefix)}


def _inside(path, parent):
    path, parent = os.path.realpath(path), os.path.realpath(parent)
    return path == parent or path.startswith(parent.rstrip("/") + "/")


# ----------------------------------------------------------------------------------------------
# starting a sandboxed process
# ----------------------------------------------------------------------------------------------

def student_uid():
    """A uid of its own for the student's processes (root only), so RLIMIT_NPROC binds."""
    return FIRST_UID + os.getpid() if os.geteuid() == 0 else None


def _preexec(limits, backend):
    def apply():
        os.setsid()
        mb = 1024 * 1024
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb,) * 2)
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * mb,) * 2)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files,) * 2)
        if os.geteuid() == 0 and backend != "none":
            # binds once the student runs as its own uid (setpriv inside the sandbox)
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes,) * 2)
    return apply


def _env(extra=None):
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": INSIDE_HOME,
        "PYTHONPATH": INSIDE_LIB,
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp/mpl",
        "IPYTHONDIR": "/tmp/ipython",
        "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "LANG": "C.UTF-8",
    }
    env.update(extra or {})
    return env


def bwrap_argv(argv, lib, work, private, limits, uid, env):
    """The bubblewrap command line for `argv` (see the module docstring)."""
    from .gradingcopy import package_dir

    root = os.geteuid() == 0
    cmd = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net",
           "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--clearenv"]
    if not root:
        cmd += ["--unshare-user"]
    # the private /tmp first: a Python installation under /tmp (a CI venv) is bound over it
    cmd += ["--perms", "1777", "--size", str(limits.tmp_mb * 1024 * 1024), "--tmpfs", "/tmp"]
    readable = _readable_dirs(private)
    parents = sorted({str(a) for d in readable for a in Path(d).parents if str(a) != "/"}, key=len)
    for a in parents:  # bwrap would make these 0700: the student could not reach Python
        cmd += ["--perms", "0755", "--dir", a]
    for d in readable:
        cmd += ["--ro-bind", d, d]
    for link, target in (("/bin", "usr/bin"), ("/lib", "usr/lib"), ("/lib64", "usr/lib64"),
                         ("/sbin", "usr/sbin")):
        if os.path.islink(link) and os.readlink(link).lstrip("/") == target:
            cmd += ["--symlink", target, link]
    for h in sorted(_hidden_paths(package_dir()) | set(private)):
        if any(_inside(h, d) for d in readable) and os.path.isdir(h):
            cmd += ["--tmpfs", h]  # an empty folder over what must stay hidden
    cmd += ["--dev", "/dev", "--proc", "/proc",
            "--perms", "0755", "--dir", "/home", "--perms", "0755", "--dir", INSIDE_HOME,
            "--perms", "0755", "--dir", str(Path(INSIDE_LIB).parent),
            "--ro-bind", str(lib), INSIDE_LIB,
            "--bind", str(work), INSIDE_WORK,
            "--chdir", INSIDE_WORK]
    for k, v in env.items():
        cmd += ["--setenv", k, v]
    cmd.append("--args-end")  # `launch` passes everything before this through a pipe
    if root and uid is not None:
        cmd += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    return cmd + list(argv)


def unshare_argv(argv, lib, work, private, limits, uid, env):
    """Plain util-linux, as root: new mount/pid/net/ipc/uts namespaces, a fresh read-only root
    built on a tmpfs (the same view bubblewrap gives), then `chroot` and `setpriv` to the
    student's own uid with every capability dropped, so nothing can be remounted or undone."""
    import shlex

    from .gradingcopy import package_dir

    q = shlex.quote
    new = "/mnt"
    readable = _readable_dirs(private)
    hidden = [h for h in sorted(_hidden_paths(package_dir()) | set(private))
              if os.path.isdir(h) and any(_inside(h, d) for d in readable)]
    lines = ["set -e", "mount --make-rprivate /", f"mount -t tmpfs -o size=16m,mode=755 none {new}",
             # the private /tmp first: a Python installation under /tmp (a CI venv) goes over it
             f"mkdir -p {new}/tmp",
             f"mount -t tmpfs -o size={limits.tmp_mb}m,mode=1777 none {new}/tmp"]
    for d in readable:
        lines += [f"mkdir -p {q(new + d)}", f"mount --rbind {q(d)} {q(new + d)}",
                  f"mount -o remount,bind,ro {q(new + d)}"]
    for h in hidden:
        lines.append(f"mount -t tmpfs -o size=1m,mode=755,ro none {q(new + h)}")
    for link, target in (("/bin", "usr/bin"), ("/lib", "usr/lib"), ("/lib64", "usr/lib64"),
                         ("/sbin", "usr/sbin")):
        if os.path.islink(link) and os.readlink(link).lstrip("/") == target:
            lines.append(f"ln -s {target} {new}{link}")
    lines += [f"mkdir -p {new}/proc {new}/dev {new}/tmp {new}{INSIDE_WORK} {new}{INSIDE_LIB}",
              f"mount -t proc proc {new}/proc",
              *[f"touch {new}/dev/{d} && mount --bind /dev/{d} {new}/dev/{d}"
                for d in ("null", "zero", "random", "urandom")],
              f"mount --bind {q(str(lib))} {new}{INSIDE_LIB}",
              f"mount -o remount,bind,ro {new}{INSIDE_LIB}",
              f"mount --bind {q(str(work))} {new}{INSIDE_WORK}",
              f"mount -o remount,ro {new}",
              f"exec chroot {new} setpriv --reuid={uid} --regid={uid} --clear-groups "
              "--inh-caps=-all --bounding-set=-all --no-new-privs "
              f"env -i -C {INSIDE_WORK} " + " ".join(q(f"{k}={v}") for k, v in env.items())
              + ' "$@"']
    return (["unshare", "--mount", "--pid", "--fork", "--kill-child", "--net", "--ipc", "--uts",
             "sh", "-c", "\n".join(lines), "sandbox"] + list(argv))


def launch(argv, lib, work, limits, backend, private=(), env=None, stdin=subprocess.PIPE,
           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL):
    """Start `argv` in a sandbox of kind `backend` ("bwrap", "unshare" or "none").

    `lib` (the grading copy) is mounted read-only at /grader/lib, `work` read-write at
    /home/student/work; `private` lists host paths that must stay invisible. Returns Sandboxed.
    """
    env = _env(env)
    private = [os.path.realpath(p) for p in private]
    uid = student_uid() if backend in ("bwrap", "unshare") else None
    if backend == "unshare" and uid is None:
        raise SandboxUnavailable("the plain-unshare sandbox needs root (it switches the student to "
                                 "a uid of its own); as a normal user, install bubblewrap")
    if uid is not None:
        os.chown(work, uid, uid)
        for dirpath, dirnames, filenames in os.walk(work):
            for n in dirnames + filenames:
                try:
                    os.chown(os.path.join(dirpath, n), uid, uid, follow_symlinks=False)
                except OSError:
                    pass
    if backend == "bwrap":
        cmd = bwrap_argv(argv, lib, work, private, limits, uid, env)
        popen_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        cwd = "/"
    elif backend == "unshare":
        cmd = unshare_argv(argv, lib, work, private, limits, uid, env)
        popen_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        cwd = "/"
    elif backend == "none":
        cmd = list(argv)
        popen_env = {**os.environ, **env, "PYTHONPATH": str(lib), "HOME": str(work)}
        for var in ("MPLCONFIGDIR", "IPYTHONDIR", "MC_WORKER_LOG"):  # /tmp paths of the sandbox
            popen_env.pop(var, None)
        cwd = str(work)
    else:
        raise SandboxUnavailable(f"unknown sandbox backend {backend!r}")
    pass_fds = ()
    if backend == "bwrap":
        # the options go through a pipe (--args FD), so /proc/1/cmdline inside the sandbox does
        # not list the host paths of the grading copy, the scratch folder or what is hidden
        split = cmd.index("--args-end")
        options, cmd = cmd[1:split], ["bwrap", "--args"] + cmd[split + 1:]
        r, w = os.pipe()
        data = b"".join(os.fsencode(a) + b"\0" for a in options)
        if len(data) > 60000:
            raise SandboxUnavailable("too many bubblewrap options for one pipe")
        os.write(w, data)
        os.close(w)
        cmd.insert(2, str(r))
        pass_fds = (r,)
    try:
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=stdout, stderr=stderr, env=popen_env,
                                cwd=cwd, preexec_fn=_preexec(limits, backend), close_fds=True,
                                pass_fds=pass_fds)
    finally:
        for fd in pass_fds:
            os.close(fd)
    return Sandboxed(proc, backend, uid)


__all__ = ["Limits", "Sandboxed", "SandboxUnavailable", "available_backend", "describe", "launch",
           "INSIDE_WORK", "INSIDE_LIB"]
