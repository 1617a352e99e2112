"""Fine-tuning: tasks, hold-out from pretraining, heads (gradcheck, pooling), freezing, metrics,
early stopping, augmentation, baselines, and the CLI end to end on a tiny pretrained run."""
import json
import math

import numpy as np
import pytest

from minichinchilla.data import ByteBPETokenizer, Document, WordTokenizer
from minichinchilla.finetune import (accuracy, bow_logreg_baseline, classification_task, confusion_matrix,
                                     exclude_heldout, heldout_texts, identifier_char_mask, macro_f1,
                                     majority_baseline, plot_confusion_matrix, regression_report,
                                     regression_task, run_classification, span_deletion, tagging_task,
                                     token_dropout, token_tags)
from minichinchilla.finetune import train as ft_train
from minichinchilla.finetune.heads import (FineTuneModel, Head, classification_loss, last_positions, pool,
                                           squared_error_loss, tagging_loss)
from minichinchilla.finetune.metrics import classification_report, per_class_scores
from minichinchilla.finetune.tasks import Example, source_lines, token_spans
from minichinchilla.finetune.train import EarlyStopping, FineTuneConfig, finetune
from minichinchilla.gradcheck import numerical_gradient, rel_error
from minichinchilla.model import ModelConfig, TransformerLM
from minichinchilla.tensor import Tensor, no_grad


# ---- tasks ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def task():
    return classification_task()


def test_task_is_deterministic_balanced_and_disjoint(task):
    again = classification_task()
    for split in ("train", "val", "test"):
        assert task.split(split) == again.split(split)
    assert task.num_classes >= 4
    assert task.class_counts("train") == {p: 140 for p in task.labels}
    assert task.class_counts("val") == task.class_counts("test") == {p: 40 for p in task.labels}
    keys = {s: {(e.source, e.name, e.text) for e in task.split(s)} for s in ("train", "val", "test")}
    texts = {s: {e.text for e in task.split(s)} for s in ("train", "val", "test")}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not keys[a] & keys[b] and not texts[a] & texts[b], f"{a} and {b} overlap"
    for e in task.train + task.val + task.test:
        assert e.package == task.labels[e.label] and e.source.startswith(f"stdlib:{e.package}")
    # another seed gives another split of the same documents
    other = classification_task(seed=1)
    assert {e.text for e in other.test} != texts["test"]


def test_exclude_heldout_matches_cleaned_text(task):
    held = heldout_texts()
    assert held == {e.text for e in task.val + task.test}
    some = sorted(held)[:5]
    raw_variants = ["  " + t.replace("\n", "\r\n").replace(" ", "\t", 1) + "\n\n\n" for t in some]
    others = [task.train[0].text, "An unrelated text.", task.train[1].text + " (edited)"]
    docs = [Document(t, "x") for t in some + raw_variants + others]
    kept = exclude_heldout(docs)  # works before and after cleaning: matched on clean_text
    assert [d.text for d in kept] == others
    assert exclude_heldout(others) == others


def test_pretraining_pipeline_never_sees_heldout_documents(task):
    """The pretraining corpus as `minichinchilla.train.prepare_data` builds it (both its
    train and its validation split) holds none of the fine-tuning val/test documents,
    and still holds the fine-tuning training documents (unlabelled text is fair game)."""
    from minichinchilla.finetune.holdout import pretraining_documents

    docs = pretraining_documents()
    texts = {d.text for split in docs.values() for d in split}
    n = len(heldout_texts() & texts)
    assert n == 0, (f"minichinchilla.train.prepare_data pretrains on {n} of the {len(heldout_texts())} "
                    f"held-out fine-tuning documents: after clean_documents it must call "
                    f"`documents = exclude_heldout(documents)` (from minichinchilla.finetune.tasks) "
                    f"for the built-in corpus")
    assert {e.text for e in task.train} <= texts


def test_identifier_rule_on_handmade_text():
    text = "Call os.path.join(a, b) or max_size, e.g. StreamReader and close() but not HTTP; ``x + y``."
    mask = identifier_char_mask(text)
    marked = set()
    start = None
    for i, m in enumerate(list(mask) + [False]):
        if m and start is None:
            start = i
        if not m and start is not None:
            marked.add(text[start:i])
            start = None
    assert marked == {"os.path.join", "max_size", "StreamReader", "close", "x + y"}


@pytest.mark.parametrize("kind", ["bpe", "word"])
def test_token_spans_cover_their_text(kind, task):
    texts = [e.text for e in task.train[:200]]
    tok = ByteBPETokenizer.train(texts, vocab_size=300) if kind == "bpe" else WordTokenizer.train(texts)
    text = "Return the «value» of ``get_loader()`` — see importlib.util.find_spec."
    ids, spans = token_spans(tok, text)
    assert len(ids) == len(spans)
    if kind == "bpe":  # consecutive, covering every character
        assert spans[0][0] == 0 and spans[-1][1] == len(text)
        assert all(a[1] <= b[0] + 1 for a, b in zip(spans, spans[1:]))
        assert tok.decode(ids) == text
    ids, tags = token_tags(tok, text)
    tagged = "".join(text[a:b] for (a, b), t in zip(spans, tags) if t)
    assert "get_loader" in tagged and "importlib" in tagged and "Return" not in tagged


def test_tagging_and_regression_tasks_share_the_split(task):
    tag, reg = tagging_task(), regression_task()
    for s in ("train", "val", "test"):
        assert [e.text for e in tag.split(s)] == [e.text for e in task.split(s)]
        assert [e.text for e in reg.split(s)] == [e.text for e in task.split(s)]
    y = np.array([e.label for e in reg.train])
    assert np.isfinite(y).all() and y.min() >= 0 and y.std() > 0.5


def test_source_lines_match_inspect():
    import inspect
    import json.decoder

    ex = Example("doc", 0, "stdlib:json.decoder", "JSONDecoder.raw_decode", "json")
    assert source_lines(ex) == len(inspect.getsourcelines(json.decoder.JSONDecoder.raw_decode)[0])
    with pytest.raises(ValueError, match="cannot find"):
        source_lines(Example("doc", 0, "stdlib:json.decoder", "NoSuchThing", "json"))


# ---- heads --------------------------------------------------------------------------------------
def tiny_model(dtype="float64", seed=0, vocab=13, seq_len=7):
    return TransformerLM(ModelConfig(vocab_size=vocab, seq_len=seq_len, d_model=8, n_layers=1, n_heads=2,
                                     dtype=dtype), seed=seed)


def padded_batch(rng, vocab=13):
    ids = rng.integers(0, vocab, size=(3, 7))  # (B, T)
    lengths = np.array([7, 4, 2])
    mask = np.arange(7)[None, :] >= lengths[:, None]  # (B, T)
    return ids, mask


@pytest.mark.parametrize("kind,pooling", [("classify", "last"), ("classify", "mean"), ("tag", "last"),
                                          ("regress", "last"), ("regress", "mean")])
def test_head_gradients_match_finite_differences(kind, pooling, rng):
    body = tiny_model()
    head = Head(8, 1 if kind == "regress" else 3, kind=kind, pooling=pooling, std=0.5, seed=1,
                dtype="float64")
    model = FineTuneModel(body, head)
    ids, mask = padded_batch(rng)
    if kind == "classify":
        y = np.array([0, 2, 1])
    elif kind == "tag":
        y = np.where(mask, -100, rng.integers(0, 3, size=ids.shape))  # (B, T)
    else:
        y = rng.normal(size=3)

    def loss_fn():
        out = model(ids, mask)
        if kind == "classify":
            return classification_loss(out, y)
        return tagging_loss(out, y) if kind == "tag" else squared_error_loss(out, y)

    loss = loss_fn()
    model.zero_grad()
    loss.backward()
    checked = [head.proj.weight, head.proj.bias, body.blocks[0].attn.qkv_weight, body.tok_emb.weight]
    for p in checked:
        analytic = p.grad.copy()

        def f(x, p=p):
            old, p.data = p.data, x
            with no_grad():
                value = loss_fn().data
            p.data = old
            return value
        numeric = numerical_gradient(f, p.data, np.array(1.0))
        assert rel_error(analytic, numeric) < 1e-7, f"{kind}/{pooling}: gradient of a {p.shape} parameter"


def test_last_pooling_reads_the_last_real_position(rng):
    h = Tensor(rng.normal(size=(3, 5, 4)), requires_grad=True)  # (B, T, C)
    mask = np.array([[0, 0, 0, 0, 0], [0, 0, 1, 1, 1], [0, 1, 1, 1, 1]], dtype=bool)
    assert last_positions(mask, 3, 5).tolist() == [4, 1, 0]
    out = pool(h, mask, "last")
    np.testing.assert_array_equal(out.data, h.data[[0, 1, 2], [4, 1, 0]])
    out.backward(np.ones((3, 4)))
    nonzero = np.abs(h.grad).sum(axis=2) > 0  # (B, T) which positions got a gradient
    np.testing.assert_array_equal(nonzero, ~mask & (np.arange(5) == np.array([[4], [1], [0]])))
    # mean pooling ignores whatever is in the padding
    h2 = h.data.copy()
    h2[mask] = 1e6
    np.testing.assert_allclose(pool(Tensor(h2), mask, "mean").data,
                               np.stack([h.data[b, ~mask[b]].mean(axis=0) for b in range(3)]))
    with pytest.raises(ValueError, match="all padding"):
        last_positions(np.ones((1, 3), dtype=bool), 1, 3)
    with pytest.raises(ValueError, match="pooling"):
        pool(h, mask, "max")


def test_padded_batch_gives_the_same_prediction_as_each_row_alone(rng):
    body = tiny_model()
    for pooling in ("last", "mean"):
        model = FineTuneModel(body, Head(8, 3, pooling=pooling, std=0.5, dtype="float64"))
        ids, mask = padded_batch(rng)
        batched = model(ids, mask).data  # (B, K)
        for b in range(3):
            n = int((~mask[b]).sum())
            alone = model(ids[b:b + 1, :n]).data[0]  # (K,) no padding at all
            np.testing.assert_allclose(batched[b], alone, rtol=1e-10, atol=1e-12)


# ---- freezing, early stopping -----------------------------------------------------------------
@pytest.fixture(scope="module")
def small_setup(task):
    tok = WordTokenizer.train([e.text for e in task.train], min_freq=2, max_size=1500)
    body = TransformerLM(ModelConfig(tok.vocab_size, 32, 32, 1, 2), seed=0)
    return body, tok


def _snapshot(module):
    return {k: v.copy() for k, v in module.state_dict().items()}


def test_freeze_body_leaves_the_body_unchanged(small_setup, task):
    body, tok = small_setup
    before = _snapshot(body)
    cfg = FineTuneConfig(steps=6, lr=1e-2, eval_interval=6, batch_size=8, max_len=32, freeze_body=True)
    res = finetune(body, tok, task, cfg, copy_body=False)  # train on the original object itself
    after = _snapshot(res.model.body)
    assert all(np.array_equal(before[k], after[k]) for k in before), "a frozen body parameter changed"
    assert not np.allclose(res.model.head.proj.weight.data, Head(32, 6, seed=0).proj.weight.data)
    # training everything changes the body, but only the copy: the caller's model is untouched
    res = finetune(body, tok, task, FineTuneConfig(steps=6, lr=1e-2, eval_interval=6, batch_size=8,
                                                   max_len=32))
    changed = _snapshot(res.model.body)
    assert any(not np.array_equal(before[k], changed[k]) for k in before)
    assert all(np.array_equal(before[k], v) for k, v in _snapshot(body).items())


def test_early_stopping_rule():
    stop = EarlyStopping(patience=2)
    assert stop.update(10, 1.0) and stop.update(20, 0.9)
    assert not stop.update(30, 0.95) and not stop.should_stop
    assert not stop.update(40, 0.9) and stop.should_stop and stop.best_step == 20


def test_finetune_stops_early_and_restores_the_best(small_setup, task, monkeypatch):
    body, tok = small_setup
    real = ft_train.evaluate
    calls = []

    def rising(*args, **kwargs):  # validation loss that only gets worse after the first check
        loss, preds = real(*args, **kwargs)
        calls.append(loss)
        return 1.0 + len(calls), preds

    monkeypatch.setattr(ft_train, "evaluate", rising)
    res = finetune(body, tok, task, FineTuneConfig(steps=100, eval_interval=2, patience=2, batch_size=4,
                                                   max_len=16))
    assert res.stopped_early and res.steps_run == 6 and res.best_step == 2
    assert [e["step"] for e in res.curve] == [2, 4, 6]


# ---- metrics ---------------------------------------------------------------------------------------
def test_metrics_on_a_hand_computed_case(tmp_path):
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 0, 2])
    cm = confusion_matrix(y_true, y_pred, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    # F1: class 0: 2*1/(2+2) = 0.5; class 1: 2*2/(3+2) = 0.8; class 2: 2*1/(1+2) = 2/3
    np.testing.assert_allclose(per_class_scores(cm)["f1"], [0.5, 0.8, 2 / 3])
    assert macro_f1(y_true, y_pred) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # a class that never occurs and is never predicted counts as F1 = 0 (zero_division=0)
    assert macro_f1(y_true, y_pred, num_classes=4) == pytest.approx((0.5 + 0.8 + 2 / 3) / 4)
    rep = classification_report(y_true, y_pred, 3)
    assert rep["confusion"] == cm.tolist() and rep["n"] == 6
    r = regression_report([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert r["rmse"] == pytest.approx(math.sqrt(4 / 3)) and r["r2"] == pytest.approx(1 - 4 / 2)
    with pytest.raises(ValueError):
        accuracy([0, 1], [0])
    fig = plot_confusion_matrix(cm, ["a", "b", "c"], tmp_path / "cm.png")
    assert (tmp_path / "cm.png").stat().st_size > 1000 and fig is not None


# ---- augmentation ---------------------------------------------------------------------------------
def test_augmentations_keep_the_end_token_and_are_seeded():
    ids = list(range(100, 140)) + [3]
    a = token_dropout(ids, 0.3, np.random.default_rng(0))
    assert a == token_dropout(ids, 0.3, np.random.default_rng(0))
    assert a[-1] == 3 and 15 < len(a) < 41 and set(a) <= set(ids)
    assert token_dropout(ids, 0.0, np.random.default_rng(0)) == ids
    assert len(token_dropout([7, 3], 0.99, np.random.default_rng(1))) == 2
    s = span_deletion(ids, 0.25, np.random.default_rng(0))
    assert len(s) == len(ids) - 10 and s[-1] == 3
    with pytest.raises(ValueError):
        token_dropout(ids, 1.0, np.random.default_rng(0))


# ---- baselines and an end-to-end fine-tune ----------------------------------------------------------
def test_bow_logreg_beats_majority(task):
    maj = majority_baseline(task)
    assert maj["test"]["accuracy"] == pytest.approx(1 / task.num_classes)
    bow = bow_logreg_baseline(task, steps=150)
    assert bow["test"]["accuracy"] > 0.6 > maj["test"]["accuracy"]
    assert bow["test"]["macro_f1"] > 0.6


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    """A tiny run from the training CLI (word tokenizer, 80 steps)."""
    from minichinchilla.train import main as pretrain

    run = tmp_path_factory.mktemp("run")
    rc = pretrain(["--out", str(run), "--force", "--quiet", "--tokenizer", "word", "--vocab-size", "2000",
                   "--d-model", "32", "--n-layers", "2", "--n-heads", "2", "--seq-len", "64",
                   "--batch-size", "8", "--max-steps", "80", "--eval-interval", "80",
                   "--eval-batches", "1", "--sample-tokens", "0"])
    assert rc == 0
    return run


def test_short_finetune_of_a_pretrained_run_beats_majority(pretrained_run, task):
    from minichinchilla.checkpoint import load_run

    model, tok, _ = load_run(pretrained_run)
    res = run_classification(model, tok, task, steps=60, lr=3e-3, eval_interval=30, max_len=64)
    majority = majority_baseline(task)["test"]
    # 240 test documents: the standard error of an accuracy near 1/6 is about 0.024
    assert res.test["accuracy"] > 0.23 > majority["accuracy"] + 0.06
    assert res.test["macro_f1"] > majority["macro_f1"] + 0.1
    assert len(res.curve) == 2 and res.test["loss"] < math.log(task.num_classes)


def test_cli_end_to_end_and_errors(pretrained_run, tmp_path, capsys):
    from minichinchilla.__main__ import main as dispatch

    out = tmp_path / "ft"
    rc = dispatch(["finetune", "--checkpoint", str(pretrained_run), "--steps", "10", "--eval-interval", "5",
                   "--max-len", "48", "--freeze-body", "--out", str(out), "--augment"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "baseline majority" in text and "baseline bow_logreg" in text and "step    5" in text
    records = [json.loads(line) for line in (out / "finetune.jsonl").read_text().splitlines()]
    assert {r["type"] for r in records} == {"run", "eval", "test", "baseline"}
    assert (out / "confusion.png").stat().st_size > 1000

    bad_ckpt = tmp_path / "bad"
    (bad_ckpt / "ckpt").mkdir(parents=True)
    (bad_ckpt / "ckpt" / "state.json").write_text("{not json")
    for argv, message in ((["--checkpoint", str(tmp_path / "missing")], "does not exist"),
                          (["--checkpoint", str(bad_ckpt)], "corrupted"),
                          (["--checkpoint", str(pretrained_run), "--task", "poetry"], "unknown task"),
                          (["--checkpoint", str(pretrained_run), "--steps", "0"], "steps"),
                          (["--checkpoint", str(pretrained_run), "--task", "tag", "--augment"], "augment")):
        rc = dispatch(["finetune", *argv])
        err = capsys.readouterr().err
        assert rc == 2 and "error:" in err and message in err and "Traceback" not in err, (argv, err)


def test_cli_shows_a_progress_bar_and_the_threads(pretrained_run, tmp_path, capsys, monkeypatch):
    """The same tqdm bar as `train` on a terminal (stderr), and the thread count in the header."""
    import io
    import sys

    from minichinchilla.__main__ import main as dispatch

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    rc = dispatch(["finetune", "--checkpoint", str(pretrained_run), "--steps", "3", "--eval-interval", "3",
                   "--max-len", "32", "--freeze-body", "--out", str(tmp_path / "ft"), "--threads", "1"])
    assert rc == 0
    assert "3/3" in terminal.getvalue() and "loss=" in terminal.getvalue()  # the bar reached the end
    assert "threads: 1 (BLAS and kernels" in capsys.readouterr().out
