"""The package's top level: PyTorch-like names, the version, the command line, the dependencies."""
import ast
import importlib
import os
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

import minichinchilla as mc

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _python(*args, code=None):
    """Run the interpreter on this checkout (not an installed copy) and return the result."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, *(["-c", code] if code is not None else args)]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_pytorch_like_names():
    from minichinchilla import nn, tensor

    assert mc.Tensor is tensor.Tensor
    assert issubclass(nn.Parameter, mc.Tensor)
    assert mc.no_grad is tensor.no_grad
    for name in ("functional", "nn", "optim", "tensor", "model", "backend", "gradcheck"):
        assert isinstance(getattr(mc, name), types.ModuleType), name
    assert mc.optim.AdamW is importlib.import_module("minichinchilla.optim").AdamW
    x = mc.Tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0]
    with mc.no_grad():
        assert not (x * x).requires_grad


def test_no_top_level_name_rebinds_a_submodule():
    """`minichinchilla.gradcheck` is the module even after every top-level name was loaded."""
    for name in mc.__all__:
        getattr(mc, name)
    for path in (ROOT / "minichinchilla").iterdir():
        name = path.stem if path.suffix == ".py" else path.name
        if name.startswith("_") or not (path.suffix == ".py" or (path / "__init__.py").is_file()):
            continue
        importlib.import_module(f"minichinchilla.{name}")
        assert isinstance(getattr(mc, name), types.ModuleType), f"minichinchilla.{name} is rebound"
    assert mc.gradcheck.__name__ == "minichinchilla.gradcheck"
    assert dir(mc) == sorted(set(dir(mc)))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mc.nope


def test_version_is_pyprojects():
    assert mc.__version__ == PYPROJECT["project"]["version"]


def test_python_m_version():
    res = _python("-m", "minichinchilla", "--version")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"minichinchilla {PYPROJECT['project']['version']}"


def test_console_script_declared_and_resolves():
    target = PYPROJECT["project"]["scripts"]["minichinchilla"]
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    assert func(["--version"]) == 0


def test_import_is_cheap_and_free_of_side_effects():
    """Importing the package loads none of its submodules and not even NumPy; no threads start."""
    res = _python(code=(
        "import sys, threading; n = threading.active_count(); import minichinchilla; "
        "print(sorted(m for m in sys.modules if m.startswith('minichinchilla') or m == 'numpy')); "
        "print(threading.active_count() - n)"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:2] == ["['minichinchilla']", "0"]


def test_every_module_imports_on_its_own():
    """No import cycle: each module imports first, in a fresh process state, without error."""
    names = []
    for path in sorted((ROOT / "minichinchilla").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__main__":  # runs a command when imported
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    code = f"""
import importlib, sys
optional = {sorted(_optional_modules())!r}
for name in {names!r}:
    for m in [m for m in sys.modules if m.startswith('minichinchilla')]:
        del sys.modules[m]
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as err:
        if (err.name or '').split('.')[0] not in optional:
            raise
print('ok')
"""
    res = _python(code=code)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-3000:]


def _optional_modules():
    from minichinchilla.__main__ import OPTIONAL_MODULES

    return set(OPTIONAL_MODULES)


def _dist_names(requirements):
    """'dask[distributed]>=2024.1' -> 'dask'."""
    out = set()
    for req in requirements:
        name = req
        for sep in "[<>=!~ ;":
            name = name.split(sep)[0]
        out.add(name.lower().replace("_", "-"))
    return out


# import name -> the distribution that provides it, where the two differ
_DIST_OF = {"markdown_it": "myst-parser", "myst_parser": "myst-parser", "myst_nb": "myst-nb",
            "jupyter_client": "nbclient", "cupy": "cupy-cuda12x", "cupyx": "cupy-cuda12x",
            "distributed": "dask", "threadpoolctl": "threadpoolctl"}


def test_every_third_party_import_is_a_dependency_or_an_extra():
    """What a `pip install .` user can run: each third-party import in the package is in the core
    dependencies, or in the extra that minichinchilla/__main__.py names when it is missing."""
    project = PYPROJECT["project"]
    core = _dist_names(project["dependencies"])
    extras = {k: _dist_names(v) for k, v in project["optional-dependencies"].items()}
    optional = importlib.import_module("minichinchilla.__main__").OPTIONAL_MODULES
    problems = []
    for path in sorted((ROOT / "minichinchilla").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            for mod in (m.split(".")[0] for m in mods):
                if mod in sys.stdlib_module_names or mod == "minichinchilla":
                    continue
                dist = _DIST_OF.get(mod, mod).lower().replace("_", "-")
                ok = dist in core or (mod in optional and dist in extras.get(optional[mod], ()))
                if not ok:
                    problems.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not problems, problems


def test_missing_extra_is_one_error_line_naming_it(tmp_path):
    """`assignments release` without nbformat used to die with a ModuleNotFoundError traceback."""
    out = tmp_path / "released"
    res = _python(code=("import sys; sys.modules['nbformat'] = None; "
                        "from minichinchilla.__main__ import main; "
                        f"sys.exit(main(['assignments', 'release', {str(out)!r}]))"))
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        "error: the 'assignments' command needs nbformat, which is not installed: "
        "pip install 'minichinchilla[assignments]' (or, in a checkout, pip install -e '.[assignments]')"]
    assert not out.exists()


ENGINE = {"backend", "functional", "tensor", "nn", "model", "optim", "gradcheck", "composed"}


def test_the_engine_imports_only_the_engine():
    """The layout's promise: backend, functional, tensor, nn, model, optim, gradcheck never import
    the applications (data, train, scaling, ...) or the course tooling (assignments, book, cli)."""
    pkg = ROOT / "minichinchilla"
    files = [pkg / f"{m}.py" for m in ENGINE if (pkg / f"{m}.py").is_file()]
    files += sorted((pkg / "functional").rglob("*.py"))
    bad = []
    for path in files:
        depth = len(path.relative_to(pkg).parts) - 1  # how many dots lead back to the package
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                if node.level > depth:  # above this file's own package: a top-level module
                    first = (node.module or "").split(".")[0]
                    targets = [first] if first else [a.name for a in node.names]
                    bad += [f"{path.relative_to(ROOT)} imports {t}" for t in targets if t not in ENGINE]
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                bad += [f"{path.relative_to(ROOT)} imports {n}" for n in names
                        if n.startswith("minichinchilla.") and n.split(".")[1] not in ENGINE]
    assert not bad, bad
