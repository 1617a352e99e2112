"""Is the fine-tuning tasks' held-out text really absent from pretraining?

`pretraining_documents(cfg)` returns the documents the pretraining pipeline
(`minichinchilla.train.prepare_data`) trains on and validates on, by running the pipeline up
to its document split and capturing what reaches it; `heldout_overlap` counts the held-out
texts among them. `pretrain_with_holdout(argv)` runs the training CLI with the hold-out
applied — needed only while the pipeline does not call `exclude_heldout` itself.
"""
from __future__ import annotations

import contextlib

from .tasks import TASK_SEED, exclude_heldout, heldout_texts


class _Captured(Exception):
    pass


def pretraining_documents(cfg=None) -> dict:
    """{"train": [...], "val": [...]}: the documents `prepare_data` splits, built as it builds them.

    Runs `minichinchilla.train.prepare_data` until its call to `split_documents` (no tokenizer
    is trained) and returns both sides of that split.
    """
    from minichinchilla import train as pretrain
    from minichinchilla.config import TrainConfig

    cfg = cfg or TrainConfig()
    original = pretrain.split_documents
    seen = {}

    def spy(documents, *args, **kwargs):
        seen["train"], seen["val"] = original(documents, *args, **kwargs)
        raise _Captured

    pretrain.split_documents = spy
    try:
        pretrain.prepare_data(cfg)
    except _Captured:
        pass
    finally:
        pretrain.split_documents = original
    if not seen:
        raise RuntimeError("prepare_data did not call split_documents; cannot inspect its corpus")
    return seen


def heldout_overlap(cfg=None, seed: int = TASK_SEED) -> int:
    """How many held-out (validation/test) task texts the pretraining pipeline would use (want 0)."""
    docs = pretraining_documents(cfg)
    held = heldout_texts(seed)
    return sum(d.text in held for split in docs.values() for d in split)


@contextlib.contextmanager
def holdout_applied():
    """Inside this block the pretraining pipeline reads the built-in corpus without the held-out
    documents (a no-op once `minichinchilla.train` calls `exclude_heldout` itself)."""
    from minichinchilla import train as pretrain

    original = pretrain.load_builtin_documents
    pretrain.load_builtin_documents = lambda *a, **k: exclude_heldout(original(*a, **k))
    try:
        yield
    finally:
        pretrain.load_builtin_documents = original


def pretrain_with_holdout(argv) -> int:
    """``python -m minichinchilla train ARGV`` with the fine-tuning hold-out applied."""
    from minichinchilla import train as pretrain

    with holdout_applied():
        return pretrain.main(list(argv))
