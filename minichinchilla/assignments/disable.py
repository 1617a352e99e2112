"""Switch off the package's own implementations while a submission is graded.

The grader runs ``disable_references()`` in a cell it puts before the student's first cell. Each
target (``"module:attribute"`` or ``"module:Class.attribute"``, listed per exercise in
`exercises.py`) is replaced, in EVERY loaded minichinchilla module that holds it, by a stub that
raises ``RuntimeError("disabled during grading: ...")``. A submission whose answer merely calls
the package therefore fails that exercise's tests with a message saying why, while everything
the tests themselves need (the forwards, `gradcheck`, the Tensor engine's other operations)
keeps working.

The modules are imported before patching, so ``from minichinchilla.functional.softmax import
softmax_backward`` in a later cell gets the stub too.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
import sys

MESSAGE = ("disabled during grading: {name} is the package's own implementation of what this "
           "exercise asks you to write; write your own")

# packages whose modules may hold (or re-export) a disabled target
_PACKAGES = ("minichinchilla.functional", "minichinchilla.tensor", "minichinchilla.composed",
             "minichinchilla.nn", "minichinchilla.model", "minichinchilla.optim",
             "minichinchilla.scaling")


def _import_all():
    for name in _PACKAGES:
        try:
            mod = importlib.import_module(name)
        except Exception:  # a module that is missing or broken cannot leak an answer
            continue
        for info in pkgutil.walk_packages(getattr(mod, "__path__", []), prefix=name + "."):
            try:
                importlib.import_module(info.name)
            except Exception:
                pass


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
    """Replace each target by a raising stub; returns the names that were disabled."""
    if targets is None:
        from .exercises import all_disabled

        targets = all_disabled()
    _import_all()
    done = []
    for target in targets:
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception:
            continue
        owner_name, _, member = attr.rpartition(".")
        full = f"{module_name}.{attr}"
        if owner_name:  # a method or property of a class
            cls = getattr(module, owner_name, None)
            if cls is None or member not in vars(cls):
                continue
            original = vars(cls)[member]
            if isinstance(original, property):
                getter = _stub(full, original.fget)
                setattr(cls, member, property(getter))
            else:
                func = getattr(original, "__func__", original)
                stub = _stub(full, func)
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
