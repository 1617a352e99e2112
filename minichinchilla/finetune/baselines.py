"""Baselines on the same splits: what a fine-tuned transformer has to beat.

* `majority_baseline`: always predict the most frequent training class (tagging: "other";
  regression: the training mean). Accuracy 1/K on a balanced test split.
* `bow_logreg_baseline`: bag-of-words logistic regression, written with this project's own
  engine — a `Parameter` matrix, `ops.linear` (chapters/01-autograd.md, eq. 1.8), the fused
  cross-entropy (chapters/02-softmax-cross-entropy.md, eq. 2.6) and AdamW, full batch.
  Features: ``log(1 + count)`` of each lower-cased word of the training vocabulary (seen at
  least twice), each row scaled to unit length. Early stopping on validation loss, as the
  fine-tuning loop does.
* `bow_regression_baseline`: the same features with a linear output and squared error; and
  `length_regression_baseline`, least squares on log(docstring characters) alone — longer
  docstrings document bigger objects, and a model has to beat this to show it reads more
  than the length.
* `unigram_tagging_baseline`: each token id gets the tag it has most often in training.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np

from minichinchilla import tensor as ops
from minichinchilla.data.tokenizers.word import pre_tokenize
from minichinchilla.nn import Parameter
from minichinchilla.optim import AdamW
from minichinchilla.tensor import Tensor, no_grad

from .heads import squared_error_loss
from .metrics import binary_report, classification_report, regression_report
from .tasks import Task, make_task, token_tags


def _task(task, kind):
    task = make_task(kind) if task is None else task
    if task.kind != kind:
        raise ValueError(f"this baseline needs a {kind!r} task, got {task.kind!r}")
    return task


def majority_baseline(task: Task | None = None) -> dict:
    """Predict the most frequent training class. Returns {"val": metrics, "test": metrics}."""
    task = _task(task, "classify")
    counts = np.bincount([e.label for e in task.train], minlength=task.num_classes)
    majority = int(counts.argmax())  # ties: the first class
    out = {"name": "majority", "predicts": task.labels[majority]}
    for split in ("val", "test"):
        y = np.array([e.label for e in task.split(split)], dtype=np.int64)
        out[split] = classification_report(y, np.full_like(y, majority), task.num_classes)
    return out


# ---- bag of words -----------------------------------------------------------------------------
def bow_vocabulary(texts, min_freq: int = 2) -> dict:
    """word -> column, for lower-cased words seen at least `min_freq` times (sorted, reproducible)."""
    counts = Counter(w.lower() for t in texts for w in pre_tokenize(t))
    return {w: i for i, w in enumerate(sorted(w for w, c in counts.items() if c >= min_freq))}


def bow_features(texts, vocabulary: dict) -> np.ndarray:
    """(N, V) float32: log(1 + count) per word, rows scaled to unit L2 norm."""
    X = np.zeros((len(texts), len(vocabulary)), dtype=np.float32)  # (N, V)
    for n, t in enumerate(texts):
        for w, c in Counter(w.lower() for w in pre_tokenize(t)).items():
            j = vocabulary.get(w)
            if j is not None:
                X[n, j] = math.log1p(c)
    norms = np.linalg.norm(X, axis=1, keepdims=True)  # (N, 1)
    return X / np.maximum(norms, 1e-12)


def fit_linear(X_train, y_train, X_val, y_val, n_out, kind="classify", steps=300, lr=0.05,
               weight_decay=1e-4, eval_interval=10, patience=5, seed=0):
    """A linear model ``X W + b`` trained full-batch with AdamW; best validation loss kept.

    Inputs:
        X_*: (N, V) float32 features; y_*: (N,) int64 classes or float targets.
        kind: "classify" (cross-entropy over n_out classes) or "regress" (squared error).
    Returns:
        (W, b, curve) as NumPy arrays and a list of {"step", "train_loss", "val_loss"}.
    """
    V = X_train.shape[1]
    rng = np.random.default_rng(seed)
    W = Parameter(rng.normal(0.0, 0.01, size=(V, n_out)).astype(np.float32))  # (V, K)
    b = Parameter(np.zeros(n_out, dtype=np.float32))  # (K,)
    opt = AdamW([{"params": [W], "weight_decay": weight_decay}, {"params": [b], "weight_decay": 0.0}],
                lr=lr)
    Xt, Xv = Tensor(X_train), Tensor(X_val)

    def loss_of(X, y):
        out = ops.linear(X, W, b)  # (N, K)
        if kind == "classify":
            return ops.cross_entropy(out, y)
        return squared_error_loss(out.reshape(out.shape[0]), y)

    best, best_state, bad, curve = math.inf, None, 0, []
    for step in range(1, steps + 1):
        loss = loss_of(Xt, y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % eval_interval == 0 or step == steps:
            with no_grad():
                val = float(loss_of(Xv, y_val).data)
            curve.append({"step": step, "train_loss": float(loss.data), "val_loss": val})
            if val < best:
                best, best_state, bad = val, (W.data.copy(), b.data.copy()), 0
            else:
                bad += 1
                if bad >= patience:
                    break
    return best_state[0], best_state[1], curve


def bow_logreg_baseline(task: Task | None = None, steps=300, lr=0.05, weight_decay=1e-4,
                        min_freq=2, seed=0) -> dict:
    """Bag-of-words logistic regression. Returns {"val", "test"} metrics, the vocabulary size, the curve."""
    task = _task(task, "classify")
    vocab = bow_vocabulary([e.text for e in task.train], min_freq)
    X = {s: bow_features([e.text for e in task.split(s)], vocab) for s in ("train", "val", "test")}
    y = {s: np.array([e.label for e in task.split(s)], dtype=np.int64) for s in ("train", "val", "test")}
    W, b, curve = fit_linear(X["train"], y["train"], X["val"], y["val"], task.num_classes, "classify",
                             steps, lr, weight_decay, seed=seed)
    out = {"name": "bow_logreg", "vocab_size": len(vocab), "curve": curve}
    for s in ("val", "test"):
        pred = (X[s] @ W + b).argmax(axis=1)  # (N,)
        out[s] = classification_report(y[s], pred, task.num_classes)
    return out


# ---- regression ---------------------------------------------------------------------------------
def mean_regression_baseline(task: Task | None = None) -> dict:
    """Predict the training mean: R^2 close to 0 by construction."""
    task = _task(task, "regress")
    mean = float(np.mean([e.label for e in task.train]))
    out = {"name": "mean"}
    for s in ("val", "test"):
        y = np.array([e.label for e in task.split(s)])
        out[s] = regression_report(y, np.full_like(y, mean))
    return out


def length_regression_baseline(task: Task | None = None) -> dict:
    """Least squares ``y = a log(chars) + c`` on the docstring's length alone."""
    task = _task(task, "regress")

    def design(split):
        return np.array([[math.log(len(e.text)), 1.0] for e in task.split(split)])  # (N, 2)
    y_train = np.array([e.label for e in task.train])
    coef, *_ = np.linalg.lstsq(design("train"), y_train, rcond=None)  # (2,)
    out = {"name": "log_length", "coef": coef.tolist()}
    for s in ("val", "test"):
        out[s] = regression_report(np.array([e.label for e in task.split(s)]), design(s) @ coef)
    return out


def bow_regression_baseline(task: Task | None = None, steps=300, lr=0.05, weight_decay=1e-4,
                            min_freq=2, seed=0) -> dict:
    """Bag-of-words linear regression with squared error (targets standardised on train)."""
    task = _task(task, "regress")
    vocab = bow_vocabulary([e.text for e in task.train], min_freq)
    X = {s: bow_features([e.text for e in task.split(s)], vocab) for s in ("train", "val", "test")}
    y = {s: np.array([e.label for e in task.split(s)]) for s in ("train", "val", "test")}
    mu, sd = float(y["train"].mean()), float(y["train"].std() or 1.0)
    z = {s: ((y[s] - mu) / sd).astype(np.float32) for s in y}
    W, b, curve = fit_linear(X["train"], z["train"], X["val"], z["val"], 1, "regress", steps, lr,
                             weight_decay, seed=seed)
    out = {"name": "bow_linear", "vocab_size": len(vocab), "curve": curve}
    for s in ("val", "test"):
        out[s] = regression_report(y[s], (X[s] @ W + b)[:, 0] * sd + mu)
    return out


# ---- tagging ------------------------------------------------------------------------------------
def _tagged(task, tokenizer, split, max_len):
    pairs = [token_tags(tokenizer, e.text) for e in task.split(split)]
    return [(ids[:max_len], tags[:max_len]) for ids, tags in pairs]


def unigram_tagging_baseline(task: Task | None, tokenizer, max_len: int = 127) -> dict:
    """Each token id gets its most frequent training tag (unseen ids: "other"); also all-"other".

    `max_len` truncates like the fine-tuning inputs (127 tokens + the end-of-text token).
    """
    task = _task(task, "tag")
    ones, total = Counter(), Counter()
    for ids, tags in _tagged(task, tokenizer, "train", max_len):
        for i, t in zip(ids, tags):
            ones[i] += t
            total[i] += 1
    out = {"name": "unigram", "majority": {}}
    for s in ("val", "test"):
        ids = np.array([i for seq, _ in _tagged(task, tokenizer, s, max_len) for i in seq])
        tags = np.array([t for _, seq in _tagged(task, tokenizer, s, max_len) for t in seq], dtype=np.int64)
        pred = np.array([int(2 * ones[i] > total[i]) for i in ids], dtype=np.int64)
        out[s] = binary_report(tags, pred)
        out["majority"][s] = binary_report(tags, np.zeros_like(tags))
    return out


def baselines_for(kind: str, task: Task | None = None, tokenizer=None, max_len: int = 128) -> dict:
    """The baselines of a task by name: {baseline name: {"val": ..., "test": ...}}."""
    task = make_task(kind) if task is None else task
    if kind == "classify":
        return {"majority": majority_baseline(task), "bow_logreg": bow_logreg_baseline(task)}
    if kind == "regress":
        return {"mean": mean_regression_baseline(task), "log_length": length_regression_baseline(task),
                "bow_linear": bow_regression_baseline(task)}
    if kind == "tag":
        if tokenizer is None:
            raise ValueError("the tagging baselines need the tokenizer (tags are per token)")
        uni = unigram_tagging_baseline(task, tokenizer, max_len - 1)
        return {"all_other": {"name": "all_other", **uni.pop("majority")}, "unigram": uni}
    raise ValueError(f"unknown task {kind!r}")
