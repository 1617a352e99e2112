"""Is the fine-tuning tasks' held-out text really absent from pretraining?

`pretraining_documents(cfg)` returns the documents the pretraining pipeline
(`minichinchilla.train.prepare_data`) trains and validates on, by running the pipeline up to
its document split and capturing what reaches it; `heldout_overlap` counts the held-out task
texts among them (the pipeline calls `tasks.exclude_heldout`, so the answer should be 0).
"""
from __future__ import annotations

from .tasks import TASK_SEED, heldout_texts


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
