"""The demo's corpus split: stratified, seeded, no tweet on both sides."""

from __future__ import annotations

from collections import Counter

import pytest

from slimbert.demo import DemoPlan, estimate_seconds, stratified_split
from slimbert.files import atomic_dir


def test_stratified_split_keeps_label_shares_and_drops_duplicates():
    rows = (
        [(f"neg {i}", "negative") for i in range(600)]
        + [(f"pos {i}", "positive") for i in range(300)]
        + [(f"neu {i}", "neutral") for i in range(100)]
    )
    rows += [("neg 1", "negative")] * 5  # retweets
    train, evaluation = stratified_split(rows, eval_rows=100, train_rows=500, seed=3)
    assert Counter(label for _, label in evaluation) == {
        "negative": 60,
        "positive": 30,
        "neutral": 10,
    }
    assert Counter(label for _, label in train) == {"negative": 300, "positive": 150, "neutral": 50}
    assert not {t for t, _ in train} & {t for t, _ in evaluation}
    assert stratified_split(rows, 100, 500, seed=3) == (train, evaluation)
    assert stratified_split(rows, 100, 500, seed=4) != (train, evaluation)


def test_estimate_scales_with_plan():
    quick = estimate_seconds(DemoPlan.quick(), steps=63, seconds_per_step=1.0)
    # teacher 2 epochs · 63 steps + students (3/6 + 2/6 + 1/6 + 3 · 0.15) · 2 · 63 steps, plus 20%
    assert quick == pytest.approx((126 + 126 * 1.45) * 1.2)


def test_atomic_dir_leaves_nothing_on_failure_and_keeps_the_old_result(tmp_path):
    out = tmp_path / "model"
    with atomic_dir(out) as staging:
        (staging / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), atomic_dir(out) as staging:
        (staging / "a.txt").write_text("second")
        raise RuntimeError("boom")
    assert (out / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
