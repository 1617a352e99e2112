"""The fine-tuning loop: a pretrained body, a new head, AdamW, early stopping on validation.

    result = run_classification(model, tokenizer, steps=300, lr=1e-3)     # train everything
    result = run_classification(model, tokenizer, freeze_body=True, lr=1e-2)  # the head only
    result.test            # {"accuracy": ..., "macro_f1": ..., "confusion": [[...]], ...}
    result.curve           # [{"step", "train_loss", "val_loss", "val_metric"}, ...]

How one run goes:

1. **Inputs.** Each docstring is tokenized, cut to ``max_len - 1`` tokens, and the tokenizer's
   end-of-text id is appended (when it has one). Pretraining put that id after every
   document, so at its position the body has read the whole docstring and "knows" it ended:
   a natural place for ``pooling="last"`` to read (GPT-1 appended an extract token the same way).
2. **The model.** A copy of the body (the caller's model is left untouched) plus a `Head`
   whose weights are N(0, 0.02^2) and bias 0. ``freeze_body=True`` trains the head alone.
3. **Steps.** Batches are drawn without replacement, epoch after epoch, from a generator
   seeded with ``[seed, 2]``; the learning rate warms up linearly and decays on a cosine to
   10 % at ``steps`` (as pretraining); gradients are clipped to norm 1; AdamW with weight
   decay on matrices only.
4. **Early stopping.** Every ``eval_interval`` steps the validation loss is computed; the best
   parameters so far are kept, and the run stops once ``patience`` evaluations in a row have
   not improved on the best. The test split is scored once, at the end, with the best
   parameters — choosing anything by test would make the test number optimistic.

Regression targets are standardised with the training mean and standard deviation (the
head predicts z-scores; metrics are in the original units, log-lines).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from minichinchilla.backend import asarray, to_numpy
from minichinchilla.data import IGNORE_INDEX, pad_batch
from minichinchilla.model import TransformerLM
from minichinchilla.optim import AdamW, clip_grad_norm, cosine_lr
from minichinchilla.tensor import no_grad

from .augment import AUGMENTATIONS, augment
from .heads import FineTuneModel, Head, classification_loss, squared_error_loss, tagging_loss
from .metrics import binary_report, classification_report, regression_report
from .tasks import TASK_KINDS, Task, make_task, token_tags


FINETUNE_BETAS = (0.9, 0.999)  # AdamW's usual defaults (pretraining uses beta2 = 0.95)
MAX_WARMUP_SHARE = 5  # warm-up takes at most a fifth of the steps, so a short run still decays


@dataclass
class FineTuneConfig:
    """Settings of one fine-tuning run (the CLI's flags have the same names)."""

    steps: int = 300  # optimiser steps at most (early stopping may end sooner)
    lr: float = 1e-3  # peak learning rate of the body
    head_lr: float | None = None  # peak learning rate of the head; None = lr
    batch_size: int = 16
    max_len: int = 128  # tokens per example, end-of-text token included
    freeze_body: bool = False
    pooling: str = "last"  # "last" or "mean" (classify / regress)
    eval_interval: int = 25
    patience: int = 4  # evaluations without a new best validation loss before stopping
    warmup_steps: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    augment: str | None = None  # None, "token_dropout" or "span_deletion" (classify only)
    augment_p: float = 0.1  # deletion probability / deleted fraction
    seed: int = 0

    def validate(self):
        for key in ("steps", "batch_size", "eval_interval", "patience"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ValueError(f"{key} must be a positive integer, got {getattr(self, key)!r}")
        if self.max_len < 2:
            raise ValueError(f"max_len must be at least 2, got {self.max_len}")
        for key in ("lr", "head_lr"):
            v = getattr(self, key)
            if v is not None and not (v > 0 and math.isfinite(v)):
                raise ValueError(f"{key} must be a positive number, got {v}")
        if self.pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', got {self.pooling!r}")
        if self.augment is not None and self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be None or one of {AUGMENTATIONS}, got {self.augment!r}")
        if not 0 <= self.augment_p < 1:
            raise ValueError(f"augment_p must be in [0, 1), got {self.augment_p}")
        return self


@dataclass
class FineTuneResult:
    """What a run returns. ``test`` and ``val`` are metric dicts (see `metrics`)."""

    task: str
    labels: list
    config: dict
    test: dict
    val: dict
    curve: list  # one dict per evaluation
    best_step: int
    steps_run: int
    stopped_early: bool
    seconds: float
    init: str = "pretrained"  # or "scratch"
    model: object = field(default=None, repr=False)  # the fine-tuned FineTuneModel

    @property
    def confusion(self):
        return np.asarray(self.test["confusion"]) if "confusion" in self.test else None

    def to_dict(self) -> dict:
        """Everything but the model, JSON-able."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != "model"}


class EarlyStopping:
    """Keep the best validation loss; say stop after `patience` evaluations without a new best.

    ``improved = stopper.update(step, val_loss)``; ``stopper.should_stop``; ``stopper.best_step``.
    """

    def __init__(self, patience: int):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience, self.best, self.best_step, self.bad = patience, math.inf, 0, 0

    def update(self, step: int, val_loss: float) -> bool:
        if val_loss < self.best:
            self.best, self.best_step, self.bad = val_loss, step, 0
            return True
        self.bad += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad >= self.patience


# ---- inputs -----------------------------------------------------------------------------------
def encode_examples(tokenizer, task: Task, split: str, max_len: int):
    """Token ids (and, for tagging, per-token targets) of one split.

    Returns:
        ids: list of lists (each ``<= max_len`` long, ending in the end-of-text id when the
        tokenizer has one); targets: (N,) int64 classes, (N,) float64 values, or for tagging a
        list of lists aligned with ``ids`` (``IGNORE_INDEX`` at the end-of-text token).
    """
    eos = getattr(tokenizer, "eos_id", None)
    room = max_len - (eos is not None)
    ids, targets = [], []
    for e in task.split(split):
        if task.kind == "tag":
            tok, tags = token_tags(tokenizer, e.text)
            tok, tags = tok[:room], tags[:room]
            if eos is not None:
                tok, tags = tok + [eos], tags + [IGNORE_INDEX]
            targets.append(tags)
        else:
            tok = tokenizer.encode(e.text)[:room] + ([eos] if eos is not None else [])
            targets.append(e.label)
        if not tok:
            tok = [eos if eos is not None else 0]
        ids.append(tok)
    if task.kind == "classify":
        targets = np.asarray(targets, dtype=np.int64)  # (N,)
    elif task.kind == "regress":
        targets = np.asarray(targets, dtype=np.float64)  # (N,)
    return ids, targets


def _pad_id(tokenizer):
    pad = getattr(tokenizer, "pad_id", None)
    return 0 if pad is None else pad  # never read: the mask hides padding


def _batch(ids, pad_id, tag_targets=None):
    """Padded (B, T) ids, (B, T) padding mask, and (B, T) tag targets if given."""
    x, mask, _ = pad_batch(ids, pad_id)  # (B, T), (B, T)
    if tag_targets is None:
        return x, mask, None
    y = np.full(x.shape, IGNORE_INDEX, dtype=np.int64)  # (B, T)
    for b, t in enumerate(tag_targets):
        y[b, :len(t)] = t
    return x, mask, y


# ---- one forward pass ---------------------------------------------------------------------------
def _loss(model, kind, x, mask, y):
    out = model(asarray(x), asarray(mask))
    if kind == "classify":
        return out, classification_loss(out, asarray(y))
    if kind == "tag":
        return out, tagging_loss(out, asarray(y))
    return out, squared_error_loss(out, y)


def evaluate(model, kind, ids, targets, pad_id, batch_size=32, y_mean=0.0, y_std=1.0):
    """Loss and predictions over a whole split, without gradients.

    Rows are batched by length (less padding), then put back in their order.
    Returns:
        (mean loss, predictions): classes (N,), values (N,) in original units, or for
        tagging one array of token predictions per example.
    """
    order = np.argsort([len(s) for s in ids], kind="stable")  # (N,)
    preds = [None] * len(ids)
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with no_grad():
        for start in range(0, len(ids), batch_size):
            rows = order[start:start + batch_size]
            batch_ids = [ids[i] for i in rows]
            if kind == "tag":
                x, mask, y = _batch(batch_ids, pad_id, [targets[i] for i in rows])
                n = int((y != IGNORE_INDEX).sum())
            else:
                x, mask, _ = _batch(batch_ids, pad_id)
                y = targets[rows] if kind == "classify" else (targets[rows] - y_mean) / y_std
                n = len(rows)
            out, loss = _loss(model, kind, x, mask, y)
            total += float(loss.data) * n
            count += n
            out = to_numpy(out.data)
            for k, i in enumerate(rows):
                if kind == "classify":
                    preds[i] = int(out[k].argmax())
                elif kind == "tag":
                    preds[i] = out[k, :len(ids[i])].argmax(axis=-1)  # (T_i,)
                else:
                    preds[i] = float(out[k]) * y_std + y_mean
    model.train(was_training)
    return total / max(count, 1), preds


def score(kind, targets, preds, num_classes=None):
    """The metrics of a task from targets and predictions."""
    if kind == "classify":
        return classification_report(np.asarray(targets), np.asarray(preds, dtype=np.int64), num_classes)
    if kind == "tag":
        t = np.concatenate([np.asarray(a) for a in targets])  # (n_tokens,)
        p = np.concatenate([np.asarray(a) for a in preds])
        keep = t != IGNORE_INDEX
        return binary_report(t[keep], p[keep].astype(np.int64))
    return regression_report(targets, preds)


def headline(kind) -> str:
    """The metric the CLI prints first for a task."""
    return {"classify": "accuracy", "tag": "f1", "regress": "r2"}[kind]


# ---- the run ------------------------------------------------------------------------------------
def finetune(body, tokenizer, task: Task, config: FineTuneConfig | None = None, init="pretrained",
             log=None, copy_body=True, on_step=None) -> FineTuneResult:
    """Fine-tune `body` (a `TransformerLM`) with a new head on `task`.

    Inputs:
        body: the pretrained model (copied first unless ``copy_body=False``).
        tokenizer: the tokenizer it was pretrained with.
        task: a `Task` (`make_task("classify")`, ...).
        config: a `FineTuneConfig`.
        log: ``log(dict)`` is called after every evaluation (the CLI prints and saves them).
        on_step: ``on_step(loss, lr)`` is called after every optimiser step (a progress bar).
    Returns:
        a `FineTuneResult`; ``result.model`` is the fine-tuned model (best validation loss).
    """
    cfg = (config or FineTuneConfig()).validate()
    if not isinstance(body, TransformerLM):
        raise TypeError(f"body must be a TransformerLM, got {type(body).__name__}")
    if cfg.max_len > body.config.seq_len:
        cfg = FineTuneConfig(**{**asdict(cfg), "max_len": body.config.seq_len})
    if cfg.augment and task.kind != "classify":
        raise ValueError("augmentation is implemented for the classification task only")
    t0 = time.perf_counter()
    kind = task.kind
    body = copy.deepcopy(body) if copy_body else body
    n_out = task.num_classes if kind in ("classify", "tag") else 1
    head = Head(body.config.d_model, n_out, kind=kind, pooling=cfg.pooling, seed=cfg.seed,
                dtype=body.config.dtype)
    model = FineTuneModel(body, head, freeze_body=cfg.freeze_body)

    head_lr = cfg.head_lr or cfg.lr
    groups = []
    for module, lr in ((head, head_lr),) + (() if cfg.freeze_body else ((body, cfg.lr),)):
        params = module.parameters()
        groups.append({"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay,
                       "lr": lr, "lr_max": lr})
        groups.append({"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0,
                       "lr": lr, "lr_max": lr})
    groups = [g for g in groups if g["params"]]
    optimizer = AdamW(groups, lr=cfg.lr, betas=FINETUNE_BETAS, weight_decay=cfg.weight_decay)
    trainable = model.trainable_parameters()

    pad_id = _pad_id(tokenizer)
    train_ids, train_y = encode_examples(tokenizer, task, "train", cfg.max_len)
    val_ids, val_y = encode_examples(tokenizer, task, "val", cfg.max_len)
    y_mean, y_std = 0.0, 1.0
    if kind == "regress":
        y_mean, y_std = float(train_y.mean()), float(train_y.std() or 1.0)

    rng = np.random.default_rng([cfg.seed, 2])  # batch order and augmentation
    N = len(train_ids)
    queue = []
    curve, best_state, stopper = [], None, EarlyStopping(cfg.patience)
    stopped_early, step, running = False, 0, []
    model.train()
    for step in range(1, cfg.steps + 1):
        for g in optimizer.param_groups:
            warmup = min(cfg.warmup_steps, cfg.steps // MAX_WARMUP_SHARE)
            g["lr"] = cosine_lr(step - 1, cfg.steps, g["lr_max"], warmup)
        if len(queue) < cfg.batch_size:
            queue.extend(rng.permutation(N).tolist())
        rows, queue = queue[:cfg.batch_size], queue[cfg.batch_size:]
        batch_ids = [train_ids[i] for i in rows]
        if cfg.augment:
            batch_ids = [augment(s, cfg.augment, cfg.augment_p, rng) for s in batch_ids]
        if kind == "tag":
            x, mask, y = _batch(batch_ids, pad_id, [train_y[i] for i in rows])
        else:
            x, mask, _ = _batch(batch_ids, pad_id)
            y = train_y[rows] if kind == "classify" else (train_y[rows] - y_mean) / y_std
        _, loss = _loss(model, kind, x, mask, y)
        loss_value = float(loss.data)
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"fine-tuning diverged at step {step} (loss {loss_value}); "
                                     f"lower the learning rate")
        optimizer.zero_grad()
        loss.backward()
        if cfg.grad_clip:
            clip_grad_norm(trainable, cfg.grad_clip)
        optimizer.step()
        running.append(loss_value)
        if on_step is not None:
            on_step(loss_value, optimizer.param_groups[0]["lr"])

        if step % cfg.eval_interval == 0 or step == cfg.steps:
            val_loss, val_pred = evaluate(model, kind, val_ids, val_y, pad_id, y_mean=y_mean, y_std=y_std)
            val_metrics = score(kind, val_y, val_pred, task.num_classes)
            entry = {"step": step, "train_loss": float(np.mean(running)), "val_loss": val_loss,
                     "val_metric": val_metrics[headline(kind)], "metric": headline(kind),
                     "lr": optimizer.param_groups[0]["lr"]}
            running = []
            if stopper.update(step, val_loss):
                best_state = [p.data.copy() for p in trainable]
            entry["best_step"] = stopper.best_step
            curve.append(entry)
            if log is not None:
                log(entry)
            if stopper.should_stop:
                stopped_early = True
                break

    for p, data in zip(trainable, best_state):  # back to the best validation loss
        p.data = data
    val_loss, val_pred = evaluate(model, kind, val_ids, val_y, pad_id, y_mean=y_mean, y_std=y_std)
    val_metrics = {"loss": val_loss, **score(kind, val_y, val_pred, task.num_classes)}
    test_ids, test_y = encode_examples(tokenizer, task, "test", cfg.max_len)
    test_loss, test_pred = evaluate(model, kind, test_ids, test_y, pad_id, y_mean=y_mean, y_std=y_std)
    test_metrics = {"loss": test_loss, **score(kind, test_y, test_pred, task.num_classes)}
    return FineTuneResult(task=kind, labels=list(task.labels), config=asdict(cfg), test=test_metrics,
                          val=val_metrics, curve=curve, best_step=stopper.best_step, steps_run=step,
                          stopped_early=stopped_early, seconds=time.perf_counter() - t0, init=init,
                          model=model)


def scratch_copy(model: TransformerLM, seed: int = 0) -> TransformerLM:
    """A randomly initialised model of the same shape: the 'no pretraining' control."""
    return TransformerLM(model.config, seed=seed)


def _run(kind, model, tokenizer, task, init, **settings):
    if init not in ("pretrained", "scratch"):
        raise ValueError(f"init must be 'pretrained' or 'scratch', got {init!r}")
    task = make_task(kind) if task is None else task
    if task.kind != kind:
        raise ValueError(f"expected a {kind!r} task, got a {task.kind!r} one")
    log = settings.pop("log", None)
    cfg = FineTuneConfig(**settings)
    body = model if init == "pretrained" else scratch_copy(model, seed=cfg.seed)
    return finetune(body, tokenizer, task, cfg, init=init, log=log)


def run_classification(model, tokenizer, task=None, steps=300, lr=1e-3, freeze_body=False,
                       pooling="last", seed=0, init="pretrained", **settings) -> FineTuneResult:
    """Fine-tune for package classification; ``init="scratch"`` re-initialises the body first.

    Other keyword arguments are `FineTuneConfig` fields (``augment="token_dropout"``, ...).
    """
    return _run("classify", model, tokenizer, task, init, steps=steps, lr=lr,
                freeze_body=freeze_body, pooling=pooling, seed=seed, **settings)


def run_tagging(model, tokenizer, task=None, steps=300, lr=1e-3, freeze_body=False, seed=0,
                init="pretrained", **settings) -> FineTuneResult:
    """Fine-tune a per-token head to tag identifier tokens."""
    return _run("tag", model, tokenizer, task, init, steps=steps, lr=lr,
                freeze_body=freeze_body, seed=seed, **settings)


def run_regression(model, tokenizer, task=None, steps=300, lr=1e-3, freeze_body=False,
                   pooling="last", seed=0, init="pretrained", **settings) -> FineTuneResult:
    """Fine-tune a regression head (squared error) to predict log(source lines)."""
    return _run("regress", model, tokenizer, task, init, steps=steps, lr=lr,
                freeze_body=freeze_body, pooling=pooling, seed=seed, **settings)


def run_task(kind, model, tokenizer, task=None, **settings) -> FineTuneResult:
    """`run_classification` / `run_tagging` / `run_regression` by name."""
    if kind not in TASK_KINDS:
        raise ValueError(f"unknown task {kind!r}; choose one of {TASK_KINDS}")
    return {"classify": run_classification, "tag": run_tagging,
            "regress": run_regression}[kind](model, tokenizer, task, **settings)


def compare_pretrained_vs_scratch(model, tokenizer, task=None, **settings) -> dict:
    """The same fine-tuning (steps, lr, seed, head) from the pretrained body and from a random one.

    Returns ``{"pretrained": FineTuneResult, "scratch": FineTuneResult}``.
    """
    kind = task.kind if task is not None else "classify"
    return {init: run_task(kind, model, tokenizer, task, init=init, **settings)
            for init in ("pretrained", "scratch")}


def compare_augmentation(model, tokenizer, task=None, method="token_dropout", p=0.1, **settings) -> dict:
    """Classification with and without augmentation, same budget and seed.

    Returns ``{"none": FineTuneResult, method: FineTuneResult}``.
    """
    return {"none": run_classification(model, tokenizer, task, **settings),
            method: run_classification(model, tokenizer, task, augment=method, augment_p=p, **settings)}
