"""Fine-tuning a pretrained decoder on three task shapes (classification, tagging, regression).

    from minichinchilla.checkpoint import load_run
    from minichinchilla.finetune import (classification_task, run_classification,
                                         majority_baseline, bow_logreg_baseline)
    model, tokenizer, _ = load_run("runs/x")
    task = classification_task()                      # 6 stdlib packages, 840/240/240 docs
    result = run_classification(model, tokenizer, task, steps=300, lr=1e-3)
    result.test["accuracy"], result.test["macro_f1"], result.confusion

Modules: `tasks` (the three tasks and the pretraining hold-out), `heads` (pooling, the linear
heads, losses), `train` (the loop with early stopping, pretrained-vs-scratch and augmentation
comparisons), `baselines`, `metrics` (accuracy, macro-F1, confusion matrix, its plot),
`augment` (token dropout, span deletion), `holdout` (checks that pretraining never saw the
held-out text), `cli` (``python -m minichinchilla finetune``).

The pretraining pipeline must call ``exclude_heldout(documents)`` on the built-in corpus so the
tasks' validation and test documents are never pretrained on.
"""
from .augment import span_deletion, token_dropout
from .baselines import (baselines_for, bow_logreg_baseline, bow_regression_baseline,
                        length_regression_baseline, majority_baseline, mean_regression_baseline,
                        unigram_tagging_baseline)
from .cli import main
from .heads import FineTuneModel, Head, last_positions, pool
from .metrics import (accuracy, classification_report, confusion_matrix, macro_f1,
                      plot_confusion_matrix, regression_report)
from .tasks import (CLASS_PACKAGES, Task, classification_task, exclude_heldout, heldout_sources,
                    heldout_texts, identifier_char_mask, make_task,
                    regression_task, tagging_task, token_tags)
from .train import (FineTuneConfig, FineTuneResult, compare_augmentation,
                    compare_pretrained_vs_scratch, finetune, run_classification, run_regression,
                    run_tagging, run_task, scratch_copy)

__all__ = [
    "main", "Task", "CLASS_PACKAGES", "classification_task", "tagging_task", "regression_task",
    "make_task", "exclude_heldout", "heldout_texts", "heldout_sources",
    "identifier_char_mask", "token_tags", "Head", "FineTuneModel", "pool", "last_positions",
    "FineTuneConfig", "FineTuneResult", "finetune", "run_classification", "run_tagging",
    "run_regression", "run_task", "scratch_copy", "compare_pretrained_vs_scratch",
    "compare_augmentation", "majority_baseline", "bow_logreg_baseline", "mean_regression_baseline",
    "length_regression_baseline", "bow_regression_baseline", "unigram_tagging_baseline",
    "baselines_for", "accuracy", "macro_f1", "confusion_matrix", "classification_report",
    "regression_report", "plot_confusion_matrix", "token_dropout", "span_deletion",
]
