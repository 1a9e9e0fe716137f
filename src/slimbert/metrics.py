"""Scoring predictions: the quality figures every report and early stop uses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slimbert.data import REGRESSION, LabelMap
from slimbert.errors import SlimbertError

CLASSIFICATION_METRICS = ("accuracy", "f1", "macro-f1", "mcc")
REGRESSION_METRICS = ("pearson", "spearman")
METRICS = CLASSIFICATION_METRICS + REGRESSION_METRICS


@dataclass(frozen=True)
class Scoring:
    """How a task is scored.

    metric:         the figure that picks the best checkpoint and leads the reports; None is
                    f1 for classification and pearson for regression. On a skewed task (70/30)
                    a model that always answers the majority class scores a high F1 and an MCC
                    of 0: choose mcc there.
    positive_label: the class binary F1 is computed for; None is '1', 'positive', ... or else
                    the second label (LabelMap.positive_id)
    """

    metric: str | None = None
    positive_label: str | None = None

    def main_metric(self, task: str) -> str:
        allowed = REGRESSION_METRICS if task == REGRESSION else CLASSIFICATION_METRICS
        name = self.metric or allowed[1 if task != REGRESSION else 0]
        if name not in allowed:
            raise SlimbertError(f"--metric {name}: a {task} task is scored by {', '.join(allowed)}")
        return name

    def positive_id(self, label_map: LabelMap | None, classes: int) -> int | None:
        """The positive class id of binary F1, or None (multi-class: F1 is macro-averaged)."""
        if self.positive_label is not None:
            if label_map is None or self.positive_label not in label_map.label2id:
                known = ", ".join(label_map.label2id) if label_map is not None else "none"
                raise SlimbertError(
                    f"--positive-label {self.positive_label!r}: not a label of this task "
                    f"(labels: {known})"
                )
            return label_map.label2id[self.positive_label] if classes == 2 else None
        if label_map is not None:
            return label_map.positive_id()
        return 1 if classes == 2 else None


@dataclass(frozen=True)
class Metrics:
    """Quality figures; `main` is the one early stopping and reports use (the chosen metric,
    by default F1 or Pearson). `degenerate` says "predicts only X" when a classifier gave one
    class to every eval row."""

    main: float
    values: dict[str, float]
    name: str
    degenerate: str | None = None


def compute_metrics(
    logits: np.ndarray,
    targets: list,
    task: str,
    label_map: LabelMap | None = None,
    scoring: Scoring = Scoring(),
) -> Metrics:
    """Classification: accuracy, F1 (binary: of the positive class; multi-class: macro),
    macro-F1 and Matthews correlation. Regression: Pearson and Spearman. Figures are in
    percent (MCC × 100), as reports state them; `main` is scoring's metric."""
    name = scoring.main_metric(task)
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
        values = {"pearson": pearson, "spearman": spearman}
        return Metrics(values[name], values, name)
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    classes = logits.shape[-1]
    predictions = logits.argmax(axis=-1)
    gold = np.asarray(targets)
    labels = list(range(classes))
    macro = f1_score(gold, predictions, average="macro", labels=labels, zero_division=0)
    positive = scoring.positive_id(label_map, classes)
    if positive is not None:
        f1 = f1_score(gold, predictions, pos_label=positive, average="binary", zero_division=0)
    else:
        f1 = macro
    values = {
        "accuracy": float(accuracy_score(gold, predictions)) * 100,
        "f1": float(f1) * 100,
        "macro-f1": float(macro) * 100,
        "mcc": float(matthews_corrcoef(gold, predictions)) * 100,
    }
    degenerate = None
    if len(predictions) > 1 and np.all(predictions == predictions[0]):
        only = int(predictions[0])
        label = label_map.id2label[only] if label_map is not None else str(only)
        degenerate = f"predicts only {label}"
    return Metrics(values[name], values, name, degenerate)
