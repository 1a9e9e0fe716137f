"""compute_metrics on logits small enough to score by hand."""

from __future__ import annotations

import numpy as np
import pytest

from slimbert.data import REGRESSION, LabelMap
from slimbert.metrics import compute_metrics


def logits_for(predictions: list[int], classes: int) -> np.ndarray:
    """(N, C) logits whose argmax is `predictions`."""
    logits = np.zeros((len(predictions), classes), dtype=np.float32)
    logits[np.arange(len(predictions)), predictions] = 2.0
    return logits


# predicted 1 0 1 1 0 against gold 1 0 0 1 1: TP 2 (rows 0, 3), FP 1 (row 2), FN 1 (row 4)
BINARY_PREDICTED, BINARY_GOLD = [1, 0, 1, 1, 0], [1, 0, 0, 1, 1]


def test_binary_f1_is_the_positive_class_s():
    metrics = compute_metrics(
        logits_for(BINARY_PREDICTED, 2), BINARY_GOLD, "classification", LabelMap({0: "0", 1: "1"})
    )
    assert metrics.name == "f1"
    # precision 2/3, recall 2/3
    assert metrics.main == pytest.approx(200 / 3)
    # macro: class 1 F1 2/3, class 0 (TP 1, FP 1, FN 1) 1/2; MCC (2·1 − 1·1) / √(3·3·2·2) = 1/6
    assert metrics.values == pytest.approx(
        {"accuracy": 60.0, "f1": 200 / 3, "macro-f1": 700 / 12, "mcc": 100 / 6}
    )
    assert metrics.degenerate is None


def test_binary_f1_follows_the_label_map_s_positive_class():
    """'yes' is the positive class though it has id 0: F1 of class 0, TP 1 (row 1), FP 1 (row 4),
    FN 1 (row 2)."""
    metrics = compute_metrics(
        logits_for(BINARY_PREDICTED, 2),
        BINARY_GOLD,
        "classification",
        LabelMap({0: "yes", 1: "no"}),
    )
    assert metrics.main == pytest.approx(50.0)
    assert metrics.values["accuracy"] == pytest.approx(60.0)


def test_without_a_label_map_two_classes_score_class_one():
    metrics = compute_metrics(logits_for(BINARY_PREDICTED, 2), BINARY_GOLD, "classification")
    assert metrics.main == pytest.approx(200 / 3)


def test_multi_class_f1_is_the_macro_mean_over_every_class():
    # class 0: F1 1; class 1: TP 0, FP 1, FN 1 → 0; class 2: TP 1, FP 1, FN 1 → 0.5
    predicted, gold = [0, 2, 2, 1], [0, 1, 2, 2]
    three = compute_metrics(
        logits_for(predicted, 3), gold, "classification", LabelMap.from_labels(["a", "b", "c"])
    )
    # MCC (c·s − Σ p_k t_k) / √((s² − Σ p_k²)(s² − Σ t_k²)) = (2·4 − 6) / √(10 · 10) = 0.2
    assert three.values == pytest.approx(
        {"accuracy": 50.0, "f1": 50.0, "macro-f1": 50.0, "mcc": 20.0}
    )
    # a fourth class nobody predicts or holds still counts, with F1 0: (1 + 0 + 0.5 + 0) / 4
    four = compute_metrics(logits_for(predicted, 4), gold, "classification")
    assert four.main == pytest.approx(37.5)


def test_regression_pearson_and_spearman():
    gold = [1.0, 3.0, 2.0, 4.0]
    linear = compute_metrics(np.array([[1.0], [2.0], [3.0], [4.0]]), gold, REGRESSION)
    # deviations (−1.5, −0.5, 0.5, 1.5) and (−1.5, 0.5, −0.5, 1.5): r = 4 / 5; ranks alike
    assert linear.name == "pearson"
    assert linear.values == pytest.approx({"pearson": 80.0, "spearman": 80.0})
    # same ranks, one far value: Spearman stays, Pearson = 13 / √(50 · 5)
    skewed = compute_metrics(np.array([[1.0], [2.0], [3.0], [10.0]]), gold, REGRESSION)
    assert skewed.values["spearman"] == pytest.approx(80.0)
    assert skewed.main == pytest.approx(100 * 13 / np.sqrt(250))


def test_constant_regression_predictions_score_zero_not_nan():
    metrics = compute_metrics(np.full((4, 1), 2.5), [1.0, 3.0, 2.0, 4.0], REGRESSION)
    assert metrics.values == {"pearson": 0.0, "spearman": 0.0}
    constant_gold = compute_metrics(np.array([[1.0], [2.0]]), [3.0, 3.0], REGRESSION)
    assert constant_gold.main == 0.0


def test_a_classifier_that_never_predicts_the_positive_class_has_f1_zero():
    metrics = compute_metrics(logits_for([0, 0, 0, 0], 2), [1, 0, 0, 1], "classification")
    # class 0: precision 1/2, recall 1 → F1 2/3; class 1: 0 → macro 1/3; MCC 0 by convention
    assert metrics.values == pytest.approx(
        {"accuracy": 50.0, "f1": 0.0, "macro-f1": 100 / 3, "mcc": 0.0}
    )
    assert metrics.degenerate == "predicts only 0"


def test_the_chosen_metric_leads_and_a_wrong_kind_or_label_is_one_line():
    from slimbert.errors import SlimbertError
    from slimbert.metrics import Scoring

    labels = LabelMap({0: "0", 1: "1"})
    logits, gold = logits_for(BINARY_PREDICTED, 2), BINARY_GOLD
    mcc = compute_metrics(logits, gold, "classification", labels, Scoring("mcc"))
    assert mcc.name == "mcc" and mcc.main == pytest.approx(100 / 6)
    # --positive-label 0 scores F1 of class 0 (1/2, see above) without changing the others
    zero = compute_metrics(logits, gold, "classification", labels, Scoring(positive_label="0"))
    assert zero.main == pytest.approx(50.0) and zero.values["mcc"] == pytest.approx(100 / 6)
    with pytest.raises(SlimbertError, match="--metric pearson: a classification task is scored"):
        compute_metrics(logits, gold, "classification", labels, Scoring("pearson"))
    with pytest.raises(SlimbertError, match="--positive-label 'yes': not a label"):
        compute_metrics(logits, gold, "classification", labels, Scoring(positive_label="yes"))
