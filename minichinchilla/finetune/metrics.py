"""Metrics for the fine-tuning tasks, in plain NumPy.

Classification: accuracy, the confusion matrix ``M[i, j]`` = number of examples of true class
i predicted as j, per-class precision/recall/F1 and macro-F1, the unweighted mean of the
per-class F1 (each class counts the same however many examples it has, so a classifier that
ignores a small class is penalised — accuracy hides that). For class c:

    precision_c = M[c, c] / sum_i M[i, c]     recall_c = M[c, c] / sum_j M[c, j]
    F1_c = 2 M[c, c] / (sum_i M[i, c] + sum_j M[c, j])

A class with no true and no predicted example has F1 = 0 (scikit-learn's ``zero_division=0``).
Regression: RMSE and R^2 = 1 - SSE / SST (0 for predicting the mean, < 0 for worse).
"""
from __future__ import annotations

import numpy as np


def _labels(y, name):
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer array, got shape {y.shape}, dtype {y.dtype}")
    return y


def accuracy(y_true, y_pred) -> float:
    """Fraction of equal entries of two (N,) arrays."""
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"y_true and y_pred must be non-empty and the same shape, got "
                         f"{y_true.shape} and {y_pred.shape}")
    return float((y_true == y_pred).mean())


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """(K, K) int64 counts: row = true class, column = predicted class."""
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred shapes differ: {y_true.shape} vs {y_pred.shape}")
    K = int(max(y_true.max(initial=-1), y_pred.max(initial=-1)) + 1) if num_classes is None else num_classes
    if y_true.size and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= K):
        raise ValueError(f"labels must lie in [0, {K})")
    cm = np.zeros((K, K), dtype=np.int64)  # (K, K)
    np.add.at(cm, (y_true, y_pred), 1)  # add.at: repeated (i, j) pairs all count
    return cm


def per_class_scores(cm) -> dict:
    """precision, recall, f1, support: (K,) arrays from a confusion matrix."""
    cm = np.asarray(cm, dtype=np.float64)  # (K, K)
    tp = np.diag(cm)  # (K,)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)  # (K,), (K,)

    def safe(num, den):
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return {"precision": safe(tp, predicted), "recall": safe(tp, actual),
            "f1": safe(2 * tp, predicted + actual), "support": actual.astype(np.int64)}


def macro_f1(y_true, y_pred, num_classes: int | None = None) -> float:
    """Unweighted mean over classes of F1_c."""
    return float(per_class_scores(confusion_matrix(y_true, y_pred, num_classes))["f1"].mean())


def classification_report(y_true, y_pred, num_classes: int) -> dict:
    """accuracy, macro_f1, confusion (list of lists) and per-class F1 in one JSON-able dict."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    scores = per_class_scores(cm)
    return {"accuracy": accuracy(y_true, y_pred), "macro_f1": float(scores["f1"].mean()),
            "per_class_f1": [float(f) for f in scores["f1"]], "confusion": cm.tolist(),
            "n": int(len(y_true))}


def binary_report(y_true, y_pred) -> dict:
    """Token tagging: accuracy, and precision/recall/F1 of the positive class (1)."""
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    scores = per_class_scores(confusion_matrix(y_true, y_pred, 2))
    return {"accuracy": accuracy(y_true, y_pred), "precision": float(scores["precision"][1]),
            "recall": float(scores["recall"][1]), "f1": float(scores["f1"][1]),
            "macro_f1": float(scores["f1"].mean()), "n": int(len(y_true))}


def regression_report(y_true, y_pred) -> dict:
    """rmse, mae and R^2 of (N,) predictions."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or y_true.size == 0:
        raise ValueError(f"y_true and y_pred must be non-empty 1-D arrays of one shape, got "
                         f"{y_true.shape} and {y_pred.shape}")
    sse = float(((y_pred - y_true) ** 2).sum())
    sst = float(((y_true - y_true.mean()) ** 2).sum())
    return {"rmse": (sse / y_true.size) ** 0.5, "mae": float(np.abs(y_pred - y_true).mean()),
            "r2": 1.0 - sse / sst if sst > 0 else 0.0, "n": int(y_true.size)}


def plot_confusion_matrix(cm, labels, path=None, title="confusion matrix (test)", normalize=False,
                          ax=None):
    """Draw a confusion matrix with counts in the cells.

    Inputs:
        cm: (K, K) counts; labels: K names; path: save a PNG there (optional);
        normalize: show each row as fractions of the true class; ax: draw into this
        matplotlib Axes (a notebook) instead of a new figure.
    Returns:
        the matplotlib Figure.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(labels):
        raise ValueError(f"cm must be (K, K) with K = len(labels) = {len(labels)}, got {cm.shape}")
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    if ax is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure  # no pyplot: no global backend, no GUI

        fig = Figure(figsize=(1.0 + 0.7 * len(labels), 0.6 + 0.6 * len(labels)), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    im = ax.imshow(shown, cmap="Blues")
    K = len(labels)
    ax.set_xticks(range(K), labels, rotation=45, ha="right")
    ax.set_yticks(range(K), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    top = shown.max() if shown.size else 1
    for i in range(K):
        for j in range(K):
            text = f"{shown[i, j]:.2f}" if normalize else str(int(cm[i, j]))
            ax.text(j, i, text, ha="center", va="center",
                    color="white" if shown[i, j] > 0.6 * top else "black", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    if path is not None:
        from minichinchilla.atomic import write_atomically

        write_atomically(path, lambda f: fig.savefig(f, format="png"))
    return fig
