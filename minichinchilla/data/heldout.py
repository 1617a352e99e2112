"""The built-in corpus's documents reserved for the fine-tuning tasks' evaluation.

The fine-tuning tasks (`minichinchilla.finetune.tasks`) read the docstrings of six large
standard-library packages (`CLASS_PACKAGES`) and split them, per package, into validation,
test and training documents (`task_split`). The validation and test documents must never be
seen in pretraining, or fine-tuning results measure memorisation, so the pretraining pipeline
(`minichinchilla.data.pipeline`) removes them from the built-in corpus with `exclude_heldout`.
The split lives here, with the corpus, because both pipelines need it and the data layer
depends on nothing above it.
"""
from __future__ import annotations

import functools
import re
import unicodedata

import numpy as np

from .builtin_corpus import load_builtin_documents
from .cleaning import clean_documents, clean_text

CLASS_PACKAGES = ("asyncio", "email", "importlib", "logging", "tkinter", "xml")
N_VAL = 40  # validation documents per class
N_TEST = 40  # test documents per class
MAX_TRAIN = 140  # training documents per class (fewer if a package is smaller)
TASK_SEED = 0  # the split does not depend on a fine-tuning run's seed


# ---- the document split ---------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def task_split(seed: int, packages: tuple, n_val: int, n_test: int, max_train: int):
    """{split name: tuple of (Document, class index)}: the fine-tuning tasks' documents.

    Per package k (in `packages`), its cleaned stdlib docstrings in corpus order are shuffled
    by ``default_rng([seed, k])``: the first `n_val` go to validation, the next `n_test` to
    test, the next at most `max_train` to training. Cached per process (it reads the corpus).
    """
    documents, _ = clean_documents(load_builtin_documents())
    splits = {"train": [], "val": [], "test": []}
    for k, package in enumerate(packages):
        docs = [d for d in documents if d.package == package and d.source.startswith("stdlib:")]
        if len(docs) < n_val + n_test + 1:
            raise ValueError(f"package {package!r} has {len(docs)} documents, fewer than "
                             f"n_val + n_test + 1 = {n_val + n_test + 1}")
        order = np.random.default_rng([seed, k]).permutation(len(docs))  # (n_docs,)
        parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test],
                 "train": order[n_val + n_test:n_val + n_test + max_train]}
        for name, idx in parts.items():
            splits[name].extend((docs[i], k) for i in sorted(idx))  # corpus order within a class
    return {name: tuple(items) for name, items in splits.items()}


# ---- held out of pretraining -------------------------------------------------------------------
def heldout_texts(seed: int = TASK_SEED) -> frozenset:
    """The cleaned texts of every validation and test document of the three tasks.

    (All three tasks use the documents of `classification_task`, so this is its val + test.)
    """
    splits = task_split(seed, CLASS_PACKAGES, N_VAL, N_TEST, MAX_TRAIN)
    return frozenset(d.text for name in ("val", "test") for d, _ in splits[name])


def heldout_sources(seed: int = TASK_SEED) -> list:
    """``(source, name)`` of every held-out document, e.g. ``("stdlib:email.message", "Message.get")``."""
    splits = task_split(seed, CLASS_PACKAGES, N_VAL, N_TEST, MAX_TRAIN)
    return sorted({(d.source, d.name) for name in ("val", "test") for d, _ in splits[name]})


def exclude_heldout(documents, seed: int = TASK_SEED) -> list:
    """`documents` without the fine-tuning tasks' validation and test documents.

    The pretraining pipeline calls this on the built-in corpus so that fine-tuning is
    evaluated on text the language model never saw. Matching is on the cleaned text, so it
    works before or after `clean_documents`, and it also removes a copy of a held-out text
    that comes from another source.

    Inputs:
        documents: a list of `Document` (or strings).
    Returns:
        the documents that are not held out, in their original order.
    """
    held = heldout_texts(seed)
    keys = _heldout_keys(seed)
    out = []
    for d in documents:
        text = d if isinstance(d, str) else d.text
        if text in held:
            continue
        # `_match_key` is unchanged by cleaning, so only a text whose key matches can clean
        # to a held-out text; the full (slower) `clean_text` runs on those few only.
        if _match_key(text) in keys and clean_text(text) in held:
            continue
        out.append(d)
    return out


_STRIPPED_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")  # removed by cleaning


def _match_key(text: str) -> str:
    """The words of a text after NFC and control-character removal: ``key(clean_text(t)) == key(t)``."""
    return " ".join(_STRIPPED_CONTROLS.sub("", unicodedata.normalize("NFC", text)).split())


@functools.lru_cache(maxsize=4)
def _heldout_keys(seed: int) -> frozenset:
    return frozenset(_match_key(t) for t in heldout_texts(seed))
