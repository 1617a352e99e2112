"""The grader's side of a sandboxed worker: start it, run cells in it, call the student's functions.

`WorkerSession` starts `worker.py` in a sandbox, runs the notebook's set-up, given and solution
cells there, and hands out *proxies*: plain Python functions, living in the grader's (trusted)
process, that send their arguments to the worker, call the student's function of that name there,
and return the result as plain data (`wire.py`). The instructor's test cells run in the grader's
process with these proxies in place of the student's functions, so every verdict is computed by
the grader's own code on data, and a submission can only influence what its functions return.

Time limits: every request has a deadline. A cell or a call that passes it gets the worker killed
(with its whole sandbox); the session restarts lazily and re-runs the set-up, given and solution
cells, leaving out a solution cell that hung, so one looping exercise costs only its own points.
A function that timed out once fails at once afterwards ("timed out after N s").
"""
from __future__ import annotations

import builtins
import os
import select
import subprocess
import sys
import time

from . import wire
from .sandbox import Limits, launch

READY_TIMEOUT = 120  # seconds for Python, NumPy and IPython to start inside the sandbox
MAX_RESTARTS = 6


class CellTimeout(Exception):
    """A cell or a call of the student's code passed its deadline."""


class WorkerDied(Exception):
    """The worker process ended while answering (os._exit, a crash, out of memory)."""


def _student_exception(etype, msg):
    """An exception of the student's type, re-created in the grader's process as plain data."""
    cls = getattr(builtins, str(etype), None)
    if isinstance(cls, type) and issubclass(cls, Exception) and not issubclass(cls, Warning):
        try:
            return cls(msg)
        except Exception:  # noqa: BLE001 — e.g. UnicodeDecodeError needs five arguments
            pass
    name = str(etype) if str(etype).isidentifier() else "Error"
    return type(name, (RuntimeError,), {})(msg)


class WorkerSession:
    """One student's code in one sandbox, restartable. `cells` = [(label, source)] run at start."""

    def __init__(self, lib, work, backend, cells, cell_timeout, deadline, limits=None,
                 private=(), log_path=None, restart_on_timeout=True):
        self.lib, self.work, self.backend = lib, work, backend
        self.restart_on_timeout = restart_on_timeout
        self.cells = list(cells)
        self.cell_timeout, self.deadline = cell_timeout, deadline
        self.limits = limits or Limits()
        self.private, self.log_path = private, log_path
        self.box = None
        self.restarts = -1
        self.skip = set()  # labels of cells that hung: left out of every restart
        self.cell_results = {}  # label -> {"error", "stdout", "timed_out"}
        self.timed_out = {}  # function name -> seconds
        self.crashed = set()  # functions whose call ended the worker
        self.call_deadline = None
        self.handles_generation = 0

    # ---- process ------------------------------------------------------------------------------
    def _start(self):
        self.restarts += 1
        if self.restarts > MAX_RESTARTS:
            raise WorkerDied(f"the worker was restarted {MAX_RESTARTS} times; giving up")
        env = {"MC_WORKER_LOG": "/tmp/worker.log"}
        stderr = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.box = launch([sys.executable, "-m", "minichinchilla.assignments.worker"], self.lib,
                              self.work, self.limits, self.backend, private=self.private, env=env,
                              stderr=stderr)
        finally:
            if self.log_path:
                stderr.close()
        self.handles_generation += 1
        self.rfd = self.box.proc.stdout.fileno()
        self.buf = b""
        try:
            ready = self._reply(time.monotonic() + READY_TIMEOUT)
        except (WorkerDied, CellTimeout, wire.WireError) as e:
            raise WorkerDied(f"the worker did not start ({e}){self.stderr_tail()}") from None
        if not ready.get("ready"):
            raise WorkerDied("the worker did not start")
        for label, source in self.cells:
            if label in self.skip:
                continue
            limit = self._limit(self.cell_timeout)
            try:
                header, _ = self._request({"op": "run", "source": source, "name": label}, (),
                                          time.monotonic() + limit)
                self.cell_results[label] = {"error": header.get("error"),
                                            "stdout": header.get("stdout", ""), "timed_out": False}
            except CellTimeout:
                self.skip.add(label)
                self.cell_results[label] = {
                    "error": f"CellTimeout: timed out after {limit:g} s", "stdout": "",
                    "timed_out": True}
                self.close()
                if not self.restart_on_timeout:
                    return None
                return self._start()
            except WorkerDied as e:
                self.skip.add(label)
                self.cell_results[label] = {"error": f"WorkerDied: {e}", "stdout": "",
                                            "timed_out": False}
                self.close()
                if not self.restart_on_timeout:
                    return None
                return self._start()

    def stderr_tail(self):
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, "rb") as f:
            tail = f.read()[-1500:].decode("utf-8", "replace").strip()
        return f"; its stderr ends with:\n{tail}" if tail else ""

    def _limit(self, seconds):
        return max(1.0, min(seconds, self.deadline - time.monotonic()))

    def ensure(self):
        if self.box is None or self.box.proc.poll() is not None:
            self.close()
            self._start()

    def close(self):
        if self.box is not None:
            self.box.kill()
            self.box = None

    # ---- requests -----------------------------------------------------------------------------
    def _read_exactly(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CellTimeout()
            ready, _, _ = select.select([self.rfd], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(self.rfd, max(65536, n - len(self.buf)))
            if not chunk:
                raise WorkerDied("the worker process ended (os._exit, a crash, or out of memory?)")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _reply(self, deadline):
        payload = wire.read_frame(lambda n: self._read_exactly(n, deadline))
        header, arrays = wire.unpack(payload)
        if header.get("ok") is False and header.get("etype") in ("WireError", "ProtocolError"):
            raise wire.WireError(header.get("msg", "protocol error"))
        return header if not arrays else (header, arrays)

    def _request(self, header, arrays, deadline):
        try:
            self.box.proc.stdin.write(wire.pack(dict(header, n=len(arrays)), arrays))
            self.box.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerDied("the worker process ended (os._exit, a crash, or out of memory?)") from None
        payload = wire.read_frame(lambda n: self._read_exactly(n, deadline))
        return wire.unpack(payload)

    def call(self, name, args, kwargs):
        """Call the student's `name` with plain-data `args`; returns plain data (or raises)."""
        if name in self.crashed:
            raise WorkerDied(f"{name} ended the process on an earlier call; it is not called again")
        if name in self.timed_out:
            raise CellTimeout(f"{name} timed out after {self.timed_out[name]:g} s (an infinite "
                              "loop?); it is not called again")
        if time.monotonic() >= self.deadline:
            raise CellTimeout("the notebook ran out of its time limit")
        self.ensure()
        arrays, ids = [], {}
        tensors = []

        def on_object(x, enc):
            from ..scaling.parametric import ChinchillaFit
            from ..tensor import Tensor

            if isinstance(x, Tensor):
                tensors.append(x)
                return {"$": "T", "i": _add_array(x.data, arrays, ids), "g": bool(x.requires_grad)}
            if isinstance(x, ChinchillaFit):
                return {"$": "fit", "v": enc(wire.dataclass_fields(x))}
            return None

        tree_args = wire.encode(tuple(args), arrays, ids, on_object)
        tree_kwargs = wire.encode(dict(kwargs), arrays, ids, on_object)
        header = {"op": "call", "name": name, "args": tree_args, "kwargs": tree_kwargs}
        started = time.monotonic()
        limit = max(0.5, (self.call_deadline or self.deadline) - started)
        try:
            reply, out = self._request(header, arrays, started + limit)
        except CellTimeout:
            self.close()
            self.timed_out[name] = round(limit, 1)
            raise CellTimeout(f"{name} timed out after {limit:.0f} s (an infinite loop?)") from None
        except WorkerDied:
            self.close()
            self.crashed.add(name)
            raise
        if not reply.get("ok"):
            raise _student_exception(reply.get("etype"), reply.get("msg", ""))
        changed = reply.get("changed", [])
        n_result = len(out) - len(changed)
        for k, i in enumerate(changed):  # in-place modifications, so the checks can see them
            if isinstance(i, int) and 0 <= i < len(arrays):
                original, new = arrays[i], out[n_result + k]
                if original.shape == new.shape and original.dtype == new.dtype and original.flags.writeable:
                    original[...] = new
        return self._decode_result(reply.get("result"), out[:n_result], tensors)

    def _decode_result(self, tree, arrays, parents):
        generation = self.handles_generation

        def tagged(t, dec):
            if t["$"] == "T":
                from ..tensor import Tensor

                data = dec(t["data"])
                if not hasattr(data, "dtype"):
                    raise wire.WireError("a Tensor without an array")
                if not t.get("g"):
                    return Tensor(data)
                handle = t.get("h")

                def backward(dout, handle=handle):
                    if generation != self.handles_generation:
                        raise WorkerDied("the worker was restarted; this Tensor's backward is gone")
                    grads = self.vjp(handle, dout)
                    if not isinstance(grads, tuple) or len(grads) != len(parents):
                        raise wire.WireError("malformed gradients")
                    return grads

                return Tensor.from_op(data, parents=tuple(parents), backward=backward)
            if t["$"] == "fit":
                from ..scaling.parametric import ChinchillaFit

                fields = dec(t["v"])
                if not isinstance(fields, dict):
                    raise wire.WireError("malformed ChinchillaFit")
                return ChinchillaFit(**{k: float(v) for k, v in fields.items()
                                        if k in ("E", "A", "B", "alpha", "beta")})
            raise wire.WireError(f"unknown value tag {t['$']!r}")

        return wire.decode(tree, arrays, tagged)

    def vjp(self, handle, dout):
        arrays = []
        tree = wire.encode(dout, arrays)
        started = time.monotonic()
        limit = max(0.5, (self.call_deadline or self.deadline) - started)
        try:
            reply, out = self._request({"op": "vjp", "h": handle, "dout": tree}, arrays,
                                       started + limit)
        except CellTimeout:
            self.close()
            raise CellTimeout(f"a backward timed out after {limit:.0f} s (an infinite loop?)") from None
        if not reply.get("ok"):
            raise _student_exception(reply.get("etype"), reply.get("msg", ""))
        return wire.decode(reply.get("result"), out)

    def proxy(self, name):
        """A function in the grader's process that calls the student's `name` in the sandbox."""
        def student_function(*args, **kwargs):
            return self.call(name, args, kwargs)

        student_function.__name__ = student_function.__qualname__ = name
        return student_function


def _add_array(a, arrays, ids):
    if id(a) not in ids:
        ids[id(a)] = len(arrays)
        arrays.append(a)
    return ids[id(a)]


__all__ = ["WorkerSession", "CellTimeout", "WorkerDied"]
