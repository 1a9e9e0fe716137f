"""Scoring predictions: the quality figures every report and early stop uses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slimbert.batches import TaskData, make_loader, predict_logits
from slimbert.data import REGRESSION, LabelMap


def evaluator(data: TaskData, batch_size: int = 64):
    loader = make_loader(data.eval_set, batch_size, shuffle=False, group_by_length=True)

    def evaluate(model) -> Metrics:
        dev = next(model.parameters()).device
        logits = predict_logits(model, loader, dev)
        return compute_metrics(logits, data.eval_targets, data.task, data.label_map)

    return evaluate


@dataclass(frozen=True)
class Metrics:
    """Quality figures; `main` is the one early stopping and reports use (F1 or Pearson)."""

    main: float
    values: dict[str, float]
    name: str


def compute_metrics(
    logits: np.ndarray, targets: list, task: str, label_map: LabelMap | None = None
) -> Metrics:
    """Classification: accuracy and F1 (binary: F1 of the positive class; multi-class: macro).
    Regression: Pearson and Spearman. Figures are in percent, as reports state them."""
    # scipy and scikit-learn load here, on the first score: each costs about a second to import
    if task == REGRESSION:
        from scipy.stats import pearsonr, spearmanr

        predictions = logits.reshape(-1)
        gold = np.asarray(targets, dtype=np.float64)
        if np.std(predictions) == 0 or np.std(gold) == 0:
            pearson = spearman = 0.0
        else:
            pearson = float(pearsonr(predictions, gold)[0]) * 100
            spearman = float(spearmanr(predictions, gold)[0]) * 100
        return Metrics(pearson, {"pearson": pearson, "spearman": spearman}, "pearson")
    from sklearn.metrics import accuracy_score, f1_score

    predictions = logits.argmax(axis=-1)
    gold = np.asarray(targets)
    positive = (
        label_map.positive_id() if label_map is not None else (1 if logits.shape[-1] == 2 else None)
    )
    if positive is not None:
        f1 = f1_score(gold, predictions, pos_label=positive, average="binary", zero_division=0)
    else:
        f1 = f1_score(
            gold,
            predictions,
            average="macro",
            labels=list(range(logits.shape[-1])),
            zero_division=0,
        )
    accuracy = accuracy_score(gold, predictions)
    return Metrics(
        float(f1) * 100, {"accuracy": float(accuracy) * 100, "f1": float(f1) * 100}, "f1"
    )
