"""The process that runs a student's code, inside the sandbox (``python -m ...assignments.worker``).

It reads requests from stdin and answers on stdout (`wire.py` frames) and does nothing else:

* ``run``: execute one notebook cell (IPython's shell when installed, so magics work), capturing
  what it prints and the error it raises;
* ``call``: call a function the cells defined, with arguments sent by the grader, and send back
  its result (and the arguments it modified in place, so "do not modify dout" stays checkable);
* ``vjp``: run the backward of a Tensor a ``call`` returned, for the grader's autograd graph.

It decides nothing: the grader compares what comes back with its own reference, in its own
process. Before any student code runs, the protocol's file descriptors are moved away from 0/1
and fds 1 and 2 point at a log, so a stray ``os.write(1, ...)`` cannot garble a reply.
"""
from __future__ import annotations

import contextlib
import io
import os
import traceback

MAX_OUTPUT = 20000  # characters of a cell's output kept for the instructor's copy
_ANSI = None


def _strip_ansi(text):
    global _ANSI
    if _ANSI is None:
        import re

        _ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
    return _ANSI.sub("", text)


class Worker:
    def __init__(self, rfd, wfd):
        self.rfile = os.fdopen(rfd, "rb", buffering=0)
        self.wfile = os.fdopen(wfd, "wb", buffering=0)
        self.ns = {"__name__": "__main__"}
        self.handles = {}
        self.shell = self._shell()

    def _shell(self):
        try:
            from IPython.core.interactiveshell import InteractiveShell
            from traitlets.config import Config
        except Exception:  # IPython is optional: plain exec then (no magics)
            return None
        c = Config()
        c.HistoryManager.enabled = False
        c.InteractiveShell.colors = "NoColor"
        c.InteractiveShell.xmode = "Plain"
        shell = InteractiveShell.instance(config=c, user_ns=self.ns)
        self.ns = shell.user_ns
        return shell

    # ---- I/O --------------------------------------------------------------------------------
    def _read_exactly(self, n):
        chunks, got = [], 0
        while got < n:
            b = self.rfile.read(n - got)
            if not b:
                raise EOFError
            chunks.append(b)
            got += len(b)
        return b"".join(chunks)

    def send(self, header, arrays=()):
        from .wire import pack

        header = dict(header, n=len(arrays))
        self.wfile.write(pack(header, arrays))

    def serve(self):
        from .wire import WireError, read_frame, unpack

        self.send({"ok": True, "ready": True})
        while True:
            try:
                payload = read_frame(self._read_exactly)
            except EOFError:
                return
            try:
                header, arrays = unpack(payload)
            except WireError as e:
                self.send({"ok": False, "etype": "WireError", "msg": str(e)})
                continue
            op = header.get("op")
            if op == "run":
                self.send(self.run(str(header.get("source", "")), str(header.get("name", "cell"))))
            elif op == "call":
                self.call(header, arrays)
            elif op == "vjp":
                self.vjp(header, arrays)
            else:
                self.send({"ok": False, "etype": "ProtocolError", "msg": f"unknown op {op!r}"})

    # ---- run a cell ---------------------------------------------------------------------------
    def run(self, source, name):
        out = io.StringIO()
        error = None
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            if self.shell is not None:
                result = self.shell.run_cell(source, store_history=False, silent=False)
                exc = result.error_before_exec or result.error_in_exec
                if exc is not None:
                    error = f"{type(exc).__name__}: {exc}"
            else:
                try:
                    exec(compile(source, name, "exec"), self.ns)
                except BaseException as exc:  # noqa: BLE001 — report whatever the cell raised
                    error = f"{type(exc).__name__}: {exc}"
                    traceback.print_exc()
        text = _strip_ansi(out.getvalue())
        if len(text) > MAX_OUTPUT:
            text = text[:MAX_OUTPUT] + "\n[... output truncated]"
        return {"ok": True, "stdout": text, "error": error}

    # ---- call a student function --------------------------------------------------------------
    def _decode_args(self, header, arrays):
        from .wire import decode

        def tagged(t, dec):
            if t["$"] == "T":
                from ..tensor import Tensor

                return Tensor(arrays[t["i"]], requires_grad=bool(t.get("g")))
            if t["$"] == "fit":
                from ..scaling.parametric import ChinchillaFit

                return ChinchillaFit(**{k: float(v) for k, v in dec(t["v"]).items()})
            raise ValueError(f"unknown tag {t['$']!r}")

        return decode(header["args"], arrays, tagged), decode(header["kwargs"], arrays, tagged)

    def _encode_result(self, value, arg_tensors):
        from .wire import dataclass_fields, encode

        out_arrays = []

        def on_object(x, enc):
            cls = type(x)
            if cls.__name__ == "Tensor" and cls.__module__ == "minichinchilla.tensor":
                handle = len(self.handles) + 1
                self.handles[handle] = (x, arg_tensors)
                data = x.data
                if not hasattr(data, "dtype"):
                    return None
                return {"$": "T", "data": enc(data), "g": bool(x.requires_grad), "h": handle}
            if cls.__name__ == "ChinchillaFit":
                return {"$": "fit", "v": enc({k: float(v) for k, v in dataclass_fields(x).items()})}
            return None

        tree = encode(value, out_arrays, on_object=on_object)
        return tree, out_arrays

    def call(self, header, arrays):
        from .wire import WireError, encode

        name = str(header.get("name"))
        fn = self.ns.get(name)
        if fn is None or not callable(fn):
            self.send({"ok": False, "etype": "NameError",
                       "msg": f"name {name!r} is not defined (the grader runs your notebook's set-up, "
                              "given and solution cells; define it in a solution cell)"})
            return
        try:
            args, kwargs = self._decode_args(header, arrays)
        except Exception as e:  # noqa: BLE001
            self.send({"ok": False, "etype": "WireError", "msg": str(e)})
            return
        before = [a.copy() for a in arrays]
        arg_tensors = [a for a in _walk(args) if type(a).__name__ == "Tensor"]
        sink = io.StringIO()
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                value = fn(*args, **kwargs)
            tree, out_arrays = self._encode_result(value, arg_tensors)
        except WireError as e:
            self.send({"ok": False, "etype": "TypeError", "msg": str(e)})
            return
        except BaseException as e:  # noqa: BLE001 — the student's exception goes back as text
            self.send({"ok": False, "etype": type(e).__name__, "msg": _strip_ansi(str(e))[:2000]})
            return
        # arrays the call modified in place go back too (the checks test "nothing is modified")
        changed = [i for i, (a, b) in enumerate(zip(arrays, before))
                   if a.shape != b.shape or not _same_bits(a, b)]
        self.send({"ok": True, "result": tree, "changed": changed},
                  out_arrays + [arrays[i] for i in changed])

    def vjp(self, header, arrays):
        from .wire import decode

        entry = self.handles.get(header.get("h"))
        if entry is None:
            self.send({"ok": False, "etype": "RuntimeError", "msg": "unknown tensor handle"})
            return
        out, parents = entry
        try:
            dout = decode(header["dout"], arrays)
            for p in parents:
                p.grad = None
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                out.backward(dout, retain_graph=True)
            grads = tuple(p.grad if p.requires_grad else None for p in parents)
            tree, out_arrays = self._encode_result(grads, [])
        except BaseException as e:  # noqa: BLE001
            self.send({"ok": False, "etype": type(e).__name__, "msg": _strip_ansi(str(e))[:2000]})
            return
        self.send({"ok": True, "result": tree, "changed": []}, out_arrays)


def _same_bits(a, b):
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _walk(x):
    if isinstance(x, (tuple, list)):
        for v in x:
            yield from _walk(v)
    elif isinstance(x, dict):
        for v in x.values():
            yield from _walk(v)
    else:
        yield x


def main():
    # the protocol keeps private copies of stdin/stdout; fds 0-2 then point at harmless files
    rfd, wfd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    log = os.open(os.environ.get("MC_WORKER_LOG", os.devnull), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)  # (sys.stdin/stdout/stderr keep their fds 0-2, which now point there)
    Worker(rfd, wfd).serve()


if __name__ == "__main__":
    main()
