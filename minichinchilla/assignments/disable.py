"""Switch off the package's own implementations while a submission is graded.

The grader runs ``disable_references()`` in a cell it puts before the student's first cell. Each
target (``"module:attribute"`` or ``"module:Class.attribute"``, listed per exercise in
`exercises.py`) is replaced, in EVERY loaded minichinchilla module that holds it, by a stub that
raises ``RuntimeError("disabled during grading: ...")``. A submission whose answer merely calls
the package therefore fails that exercise's tests with a message saying why, while everything
the tests themselves need (the forwards, `gradcheck`, the Tensor engine's other operations)
keeps working.

A target is patched the moment its module has run (an import hook; at once if it is already
loaded), and every loaded minichinchilla module is scanned for references to the original, so
``from minichinchilla.functional.softmax import softmax_backward`` in any later cell finds the
stub, and so does package code that imported the original at module level (the fused Tensor
nodes).
"""
from __future__ import annotations

import functools
import importlib
import importlib.abc
import sys

MESSAGE = ("disabled during grading: {name} is the package's own implementation of what this "
           "exercise asks you to write; write your own")

def _stub(name, original):
    message = MESSAGE.format(name=name)

    def disabled(*args, **kwargs):
        raise RuntimeError(message)

    try:
        functools.update_wrapper(disabled, original)
    except Exception:
        pass
    disabled.__wrapped__ = None  # inspect.unwrap must not lead back to the original
    disabled.__doc__ = message
    disabled._disabled_for_grading = True
    return disabled


def disable_references(targets=None):
    """Replace each target by a raising stub; returns the names disabled now.

    Targets in modules that are already loaded are patched at once; the others when their module
    is first imported (an import hook), so grading a notebook never imports what it does not use.
    """
    if targets is None:
        from .exercises import all_disabled

        targets = all_disabled()
    by_module = {}
    for target in targets:
        module_name, _, attr = target.partition(":")
        by_module.setdefault(module_name, []).append(attr)
    done, pending = [], {}
    for module_name, attrs in by_module.items():
        if module_name in sys.modules:
            done += _disable_in(sys.modules[module_name], attrs)
        else:
            pending[module_name] = attrs
    if pending:
        sys.meta_path.insert(0, _PatchOnImport(pending))
    return done


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Wrap the loader of each pending module so its targets are disabled right after it runs,
    before any importer can bind the originals."""

    def __init__(self, pending):
        self.pending = pending

    def find_spec(self, name, path, target=None):
        if name not in self.pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        attrs = self.pending.pop(name)
        exec_module = spec.loader.exec_module

        def exec_then_disable(module):
            exec_module(module)
            _disable_in(module, attrs)

        spec.loader.exec_module = exec_then_disable
        return spec


def _disable_in(module, attrs):
    done = []
    for attr in attrs:
        owner_name, _, member = attr.rpartition(".")
        full = f"{module.__name__}.{attr}"
        if owner_name:  # a method or property of a class
            cls = getattr(module, owner_name, None)
            if cls is None or member not in vars(cls):
                continue
            original = vars(cls)[member]
            if isinstance(original, property):
                setattr(cls, member, property(_stub(full, original.fget)))
            else:
                stub = _stub(full, getattr(original, "__func__", original))
                if isinstance(original, staticmethod):
                    stub = staticmethod(stub)
                elif isinstance(original, classmethod):
                    stub = classmethod(stub)
                setattr(cls, member, stub)
            done.append(full)
            continue
        original = getattr(module, attr, None)
        if original is None or getattr(original, "_disabled_for_grading", False):
            continue
        stub = _stub(full, original)
        # replace every reference to the same object in the package's loaded modules
        for mod_name, mod in list(sys.modules.items()):
            if mod is None or not (mod_name == "minichinchilla" or mod_name.startswith("minichinchilla.")):
                continue
            if mod_name.startswith("minichinchilla.assignments"):
                continue
            for key, value in list(vars(mod).items()):
                if value is original:
                    setattr(mod, key, stub)
        done.append(full)
    return done
