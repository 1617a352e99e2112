"""Three fine-tuning tasks built reproducibly from the built-in corpus, one document split.

All three read the same documents: the docstrings of six large standard-library packages,

    asyncio, email, importlib, logging, tkinter, xml            (`CLASS_PACKAGES`)

chosen as the six largest packages of the corpus (Python 3.11: 340, 305, 297, 238, 728 and
223 documents after cleaning) that are neither private (``_pydecimal``) nor removed in later
Pythons (``distutils``). Each package's documents (cleaned, in corpus order) are shuffled by
a generator seeded with ``[seed, k]`` for the package's index k; the first `N_VAL` go to
validation, the next `N_TEST` to test and the next at most `MAX_TRAIN` to training. With the
defaults every split is balanced: 140 / 40 / 40 documents per class, 840 / 240 / 240 in all.

The three task shapes (the source article names them; GPT-1 fine-tuned this way):

* **classify** — which package does a docstring come from? 6 classes.
* **tag** — sequence labelling: which tokens belong to a Python identifier? The label is a
  fixed rule on the text (`identifier_char_mask`): dotted names (``os.path.join``),
  snake_case and dunder names (``max_size``, ``__init__``), camel-case names
  (``StreamReader``, ``getName``), a name followed by ``(`` (``close()``), and the inside of
  double backquotes (reST inline code). A token is 1 when any of its characters is.
* **regress** — how long is the documented object? The target is ``log(lines)``, the number
  of source lines of the function, class or module the docstring documents (read from the
  standard library with `ast`, so it is a property of the interpreter, like the corpus).

**Held out of pretraining.** The validation and test documents of these tasks must never be
seen by the language model, or fine-tuning results measure memorisation. `heldout_texts()`
returns their cleaned texts and `exclude_heldout(documents)` removes them from any document
list (raw or cleaned: the comparison is on `clean_text`). Both live in `minichinchilla.data.heldout`;
the pretraining pipeline (`minichinchilla.data.pipeline`) calls it after cleaning the built-in corpus.
"""
from __future__ import annotations

import ast
import functools
import math
import re
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minichinchilla.data.heldout import (CLASS_PACKAGES, MAX_TRAIN, N_TEST, N_VAL, TASK_SEED,
                                         exclude_heldout, heldout_sources, heldout_texts, task_split)

TASK_KINDS = ("classify", "tag", "regress")
TAG_LABELS = ("other", "identifier")


@dataclass(frozen=True)
class Example:
    """One fine-tuning example.

    Attributes:
        text: the cleaned docstring.
        label: class index (classify), float target (regress), or 0 (tag: the labels are
            per token, computed from `identifier_char_mask(text)` for a given tokenizer).
        source, name: where the docstring comes from (``"stdlib:email.message"``, ``"Message.get"``).
        package: its top-level package.
    """

    text: str
    label: float | int
    source: str
    name: str
    package: str


@dataclass
class Task:
    """A fine-tuning task: kind, label names and the three splits.

    Attributes:
        kind: "classify", "tag" or "regress".
        labels: class names (classify), tag names (tag), or ``("log_lines",)`` (regress).
        train, val, test: lists of `Example`.
        description: one paragraph saying how it was built.
    """

    kind: str
    labels: tuple
    train: list
    val: list
    test: list
    description: str = ""
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def split(self, name: str) -> list:
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {name!r}")
        return getattr(self, name)

    def class_counts(self, name: str) -> dict:
        """label name -> number of examples in split `name` (classify only)."""
        if self.kind != "classify":
            raise ValueError(f"class_counts is for classification tasks, this one is {self.kind!r}")
        counts = np.bincount([e.label for e in self.split(name)], minlength=self.num_classes)
        return {lab: int(n) for lab, n in zip(self.labels, counts)}

    def summary(self) -> str:
        return (f"task {self.kind!r}: {len(self.train)} train / {len(self.val)} val / "
                f"{len(self.test)} test documents, labels {list(self.labels)}")


def _check_packages(packages):
    packages = tuple(packages)
    if len(packages) < 2 or len(set(packages)) != len(packages):
        raise ValueError(f"packages must be at least two distinct names, got {packages}")
    return packages


def classification_task(seed: int = TASK_SEED, packages=CLASS_PACKAGES, n_val: int = N_VAL,
                        n_test: int = N_TEST, max_train: int = MAX_TRAIN) -> Task:
    """Which standard-library package is this docstring from? (see the module docstring)

    Returns:
        a `Task` of kind "classify"; ``labels`` are the package names, ``Example.label``
        their index. The same arguments always give the same task.
    """
    packages = _check_packages(packages)
    splits = task_split(seed, packages, n_val, n_test, max_train)

    def examples(name):
        return [Example(d.text, k, d.source, d.name, d.package) for d, k in splits[name]]

    task = Task("classify", packages, examples("train"), examples("val"), examples("test"))
    task.description = (f"Which package is a docstring from: {', '.join(packages)}. "
                        f"Split seed {seed}; per class {n_val} validation, {n_test} test, "
                        f"at most {max_train} training documents.")
    return task


# ---- sequence labelling: Python identifiers ---------------------------------------------------
_NAME = r"[A-Za-z_]\w*"
_DOTTED_RE = re.compile(rf"(?<![\w.]){_NAME}(?:\.{_NAME})+")
_CALL_RE = re.compile(rf"(?<![\w.]){_NAME}(?=\()")
_WORD_RE = re.compile(rf"(?<![\w.]){_NAME}")
_BACKQUOTED_RE = re.compile(r"``([^`\n]+)``")
_CAMEL_RE = re.compile(r"[a-z][A-Z]|[A-Z]{2}[a-z]")
_NOT_DOTTED = {"e.g", "i.e", "E.g", "I.e", "etc", "vs"}


def identifier_char_mask(text: str) -> np.ndarray:
    """Which characters of `text` belong to a Python identifier (the tagging rule).

    Marked: dotted names (``os.path.join``; not ``e.g``/``i.e``), words containing ``_`` and
    a letter (``max_size``, ``__init__``), camel-case words (``StreamReader``, ``getName``,
    ``JSONDecoder``), a name directly followed by ``(``, and everything inside ````...````.
    Returns:
        (len(text),) bool.
    """
    mask = np.zeros(len(text), dtype=bool)  # (n_chars,)
    for m in _DOTTED_RE.finditer(text):
        if m.group(0) not in _NOT_DOTTED:
            mask[m.start():m.end()] = True
    for m in _CALL_RE.finditer(text):
        mask[m.start():m.end()] = True
    for m in _WORD_RE.finditer(text):
        w = m.group(0)
        if ("_" in w and any(c.isalpha() for c in w)) or _CAMEL_RE.search(w):
            mask[m.start():m.end()] = True
    for m in _BACKQUOTED_RE.finditer(text):
        mask[m.start(1):m.end(1)] = True
    return mask


def token_spans(tokenizer, text: str) -> tuple[list, list]:
    """Token ids of `text` and the character span ``(start, end)`` each one covers.

    Byte-level BPE: token bytes are consecutive pieces of the UTF-8 text, mapped back to
    characters. Word and character tokenizers: the spans of their pieces.
    """
    from minichinchilla.data import ByteBPETokenizer, CharTokenizer, WordTokenizer
    from minichinchilla.data.tokenizers.word import WORD_RE

    if isinstance(tokenizer, ByteBPETokenizer):
        ids = tokenizer.encode(text)
        lens = np.array([len(c.encode("utf-8")) for c in text], dtype=np.int64)  # (n_chars,)
        byte_to_char = np.repeat(np.arange(len(text)), lens)  # (n_bytes,)
        spans, b = [], 0
        for i in ids:
            n = len(tokenizer.token_bytes[i])
            spans.append((int(byte_to_char[b]), int(byte_to_char[b + n - 1]) + 1))
            b += n
        return ids, spans
    if isinstance(tokenizer, WordTokenizer):
        spans = [(m.start(), m.end()) for m in WORD_RE.finditer(text)]
    elif isinstance(tokenizer, CharTokenizer):
        spans = [(i, i + 1) for i in range(len(text))]
    else:
        raise ValueError(f"token_spans: tagging needs character offsets, which "
                         f"{type(tokenizer).__name__} does not give")
    ids = tokenizer.encode(text)
    if len(ids) != len(spans):
        raise ValueError("token_spans: the tokenizer split the text differently than expected")
    return ids, spans


def token_tags(tokenizer, text: str) -> tuple[list, list]:
    """Token ids of `text` and their 0/1 identifier tags (1: a token touches an identifier)."""
    ids, spans = token_spans(tokenizer, text)
    mask = identifier_char_mask(text)  # (n_chars,)
    return ids, [int(mask[a:b].any()) for a, b in spans]


def tagging_task(seed: int = TASK_SEED) -> Task:
    """Identifier tagging on the documents of `classification_task` (same splits)."""
    base = classification_task(seed)

    def relabel(examples):
        return [Example(e.text, 0, e.source, e.name, e.package) for e in examples]

    task = Task("tag", TAG_LABELS, relabel(base.train), relabel(base.val), relabel(base.test))
    chars = np.concatenate([identifier_char_mask(e.text) for e in base.train])
    task.description = ("Tag each token 1 if it touches a Python identifier (dotted, snake_case, "
                        "camelCase, called, or ``backquoted``), else 0. "
                        f"{chars.mean():.1%} of training characters are identifier characters.")
    return task


# ---- regression: size of the documented object --------------------------------------------------
@functools.lru_cache(maxsize=512)
def _object_lines(module: str) -> dict:
    """qualified name -> source lines of that def/class in `module` ("" -> the whole file)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    base = stdlib.joinpath(*module.split("."))
    path = base / "__init__.py" if (base / "__init__.py").exists() else base.with_suffix(".py")
    source = path.read_bytes()
    lines = {"": source.count(b"\n") + (not source.endswith(b"\n"))}

    def visit(node, prefix):  # the same walk as data/builtin_corpus.py, so names agree
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                lines.setdefault(name, child.end_lineno - child.lineno + 1)
                visit(child, name + ".")
            elif isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)):
                visit(child, prefix)

    visit(ast.parse(source, filename=str(path)), "")
    return lines


def source_lines(example) -> int:
    """Source lines of the object a stdlib docstring documents (a module: the whole file)."""
    module = example.source.removeprefix("stdlib:")
    try:
        return _object_lines(module)[example.name]
    except (KeyError, OSError, SyntaxError) as err:
        raise ValueError(f"cannot find the source of {example.source}:{example.name} ({err})") from None


def regression_task(seed: int = TASK_SEED) -> Task:
    """Predict log(source lines) of the documented object from its docstring (same splits).

    ``Example.label`` is ``log(lines)`` (natural log); a doubling of size is +0.69.
    """
    base = classification_task(seed)

    def relabel(examples):
        return [Example(e.text, math.log(source_lines(e)), e.source, e.name, e.package)
                for e in examples]

    task = Task("regress", ("log_lines",), relabel(base.train), relabel(base.val), relabel(base.test))
    y = np.array([e.label for e in task.train])
    task.description = ("Predict log(number of source lines) of the function/class/module a "
                        f"docstring documents; training targets: mean {y.mean():.2f}, "
                        f"std {y.std():.2f} (median {np.exp(np.median(y)):.0f} lines).")
    return task


def make_task(kind: str, seed: int = TASK_SEED) -> Task:
    """The task named `kind`: "classify", "tag" or "regress"."""
    builders = {"classify": classification_task, "tag": tagging_task, "regress": regression_task}
    if kind not in builders:
        raise ValueError(f"unknown task {kind!r}; choose one of {TASK_KINDS}")
    return builders[kind](seed)
