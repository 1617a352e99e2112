"""The messages between the grader and a sandboxed worker: plain data only, never pickles.

A message is a JSON header followed by arrays in NumPy's ``.npy`` format, read back with
``allow_pickle=False``: whatever a submission returns reaches the grader as arrays, numbers,
strings, tuples, lists and dicts of those, never as an object whose methods the student wrote.
Two richer values cross the boundary as their data: a ``Tensor`` (its array, whether it requires
grad, and a handle the grader uses to ask the worker for its backward), and a ``ChinchillaFit``
(its five numbers). The receiver rebuilds them from its OWN classes (`decode`'s hooks).

Frame: 8-byte big-endian length, then ``[8-byte header length][JSON header][arrays...]``.
"""
from __future__ import annotations

import dataclasses
import io
import json
import struct

import numpy as np

MAX_MESSAGE = 512 * 1024 * 1024  # a reply larger than this is refused, not read


class WireError(ValueError):
    """A message that is not well-formed plain data (or is too large)."""


def encode(obj, arrays=None, ids=None, on_object=None):
    """The JSON tree of `obj`; its arrays are appended to `arrays` (shared ones once).

    `on_object(obj)` may return a tree for a value this module does not know (or None)."""
    arrays = [] if arrays is None else arrays
    ids = {} if ids is None else ids

    def enc(x):
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, int) and not isinstance(x, bool):
            return x if type(x) is int else int(x)
        if isinstance(x, float):
            return {"$": "f", "v": repr(float(x))}  # repr keeps every bit, and inf/nan
        if isinstance(x, np.ndarray):
            if x.dtype.hasobject:
                raise WireError("an array of Python objects cannot be passed; use a numeric dtype")
            if id(x) not in ids:
                ids[id(x)] = len(arrays)
                arrays.append(x)
            return {"$": "a", "i": ids[id(x)]}
        if isinstance(x, np.generic):
            if isinstance(x, np.object_):
                raise WireError("a NumPy object scalar cannot be passed")
            arrays.append(np.asarray(x))
            return {"$": "s", "i": len(arrays) - 1}
        if isinstance(x, np.dtype):
            if x.hasobject or x.fields is not None:
                raise WireError(f"dtype {x} cannot be passed")
            return {"$": "dt", "v": x.str}
        if isinstance(x, tuple):
            return {"$": "t", "v": [enc(v) for v in x]}
        if isinstance(x, list):
            return {"$": "l", "v": [enc(v) for v in x]}
        if isinstance(x, dict):
            if not all(isinstance(k, str) for k in x):
                raise WireError("only dicts with string keys can be passed")
            return {"$": "d", "k": list(x), "v": [enc(v) for v in x.values()]}
        if isinstance(x, complex):
            return {"$": "c", "v": [repr(x.real), repr(x.imag)]}
        tree = on_object(x, enc) if on_object is not None else None
        if tree is None:
            raise WireError(f"a {type(x).__name__} cannot be passed between the grader and your "
                            "code; use arrays, numbers, strings, tuples, lists or dicts")
        return tree

    return enc(obj)


def decode(tree, arrays, on_tagged=None):
    """The value of a JSON tree from `encode`; unknown tags go to `on_tagged(tree, dec)`."""

    def dec(t):
        if t is None or isinstance(t, (bool, int, str)):
            return t
        if isinstance(t, float):
            return t
        if not isinstance(t, dict) or "$" not in t:
            raise WireError("malformed message")
        tag = t["$"]
        if tag == "f":
            return float(t["v"])
        if tag == "a":
            return arrays[_index(t, arrays)]
        if tag == "s":
            return arrays[_index(t, arrays)][()]
        if tag == "dt":
            dt = np.dtype(str(t["v"]))
            if dt.hasobject:
                raise WireError("object dtype refused")
            return dt
        if tag == "t":
            return tuple(dec(v) for v in t["v"])
        if tag == "l":
            return [dec(v) for v in t["v"]]
        if tag == "d":
            return {str(k): dec(v) for k, v in zip(t["k"], t["v"])}
        if tag == "c":
            return complex(float(t["v"][0]), float(t["v"][1]))
        if on_tagged is not None:
            return on_tagged(t, dec)
        raise WireError(f"unknown value tag {tag!r}")

    return dec(tree)


def _index(t, arrays):
    i = t.get("i")
    if not isinstance(i, int) or not 0 <= i < len(arrays):
        raise WireError("malformed array reference")
    return i


def dataclass_fields(obj):
    """The fields of a dataclass instance as a dict (for ChinchillaFit)."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


# ----------------------------------------------------------------------------------------------
# framing
# ----------------------------------------------------------------------------------------------

def pack(header, arrays=()):
    """One frame: the JSON header and the arrays in .npy format."""
    head = json.dumps(header, allow_nan=True).encode("utf-8")
    body = io.BytesIO()
    for a in arrays:
        np.save(body, np.asarray(a), allow_pickle=False)  # (ascontiguousarray would make 0-d 1-d)
    payload = struct.pack(">Q", len(head)) + head + body.getvalue()
    return struct.pack(">Q", len(payload)) + payload


def unpack(payload, n_arrays_key="n"):
    """(header, arrays) of a frame's payload; arrays are fresh, writeable copies."""
    if len(payload) < 8:
        raise WireError("truncated message")
    (n,) = struct.unpack(">Q", payload[:8])
    if n > len(payload) - 8:
        raise WireError("truncated message")
    try:
        header = json.loads(payload[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WireError("malformed message header") from None
    if not isinstance(header, dict):
        raise WireError("malformed message header")
    count = header.get(n_arrays_key, 0)
    if not isinstance(count, int) or count < 0:
        raise WireError("malformed array count")
    body = io.BytesIO(payload[8 + n:])
    arrays = []
    for _ in range(count):
        try:
            a = np.load(body, allow_pickle=False)
        except Exception as e:  # noqa: BLE001 — any malformed .npy is the sender's fault
            raise WireError(f"malformed array ({type(e).__name__})") from None
        arrays.append(np.array(a, copy=True))
    return header, arrays


def read_frame(read_exactly):
    """Read one frame with `read_exactly(n)`; returns its payload."""
    (size,) = struct.unpack(">Q", read_exactly(8))
    if size > MAX_MESSAGE:
        raise WireError(f"a message of {size} bytes is larger than the {MAX_MESSAGE} allowed")
    return read_exactly(size)
