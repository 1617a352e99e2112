"""Is the fine-tuning tasks' held-out text really absent from pretraining?

`pretraining_documents(cfg)` returns the documents the pretraining pipeline trains and
validates on, built by the same stage functions the training command calls
(`minichinchilla.data.pipeline`: load, clean and hold out, split); `heldout_overlap` counts
the held-out task texts among them (the answer should be 0).
"""
from __future__ import annotations

from minichinchilla.data.pipeline import clean_for_pretraining, load_corpus, split_train_val

from .tasks import TASK_SEED, heldout_texts


def pretraining_documents(cfg=None) -> dict:
    """{"train": [...], "val": [...]}: the documents `prepare_data(cfg)` splits (no tokenizer
    is trained). `cfg` is a `TrainConfig` (default: the defaults, i.e. the built-in corpus)."""
    if cfg is None:
        from minichinchilla.config import TrainConfig

        cfg = TrainConfig()
    documents, _ = load_corpus(cfg.data)
    documents = clean_for_pretraining(documents, builtin=cfg.data is None)
    train, val, _ = split_train_val(documents, cfg.val_fraction)
    return {"train": train, "val": val}


def heldout_overlap(cfg=None, seed: int = TASK_SEED) -> int:
    """How many held-out (validation/test) task texts the pretraining pipeline would use (want 0)."""
    docs = pretraining_documents(cfg)
    held = heldout_texts(seed)
    return sum(d.text in held for split in docs.values() for d in split)
