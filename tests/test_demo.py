"""The demo's corpus split (stratified, seeded, no tweet on both sides) and its up-front time
estimate (warm steps of the real training loop, not the cold first ones)."""

from __future__ import annotations

from collections import Counter

import pytest

from slimbert import demo
from slimbert.batches import DataSpec
from slimbert.demo import DemoPlan, estimate_seconds, stratified_split, warm_step_seconds
from slimbert.files import atomic_dir
from slimbert.training.config import TrainConfig


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


def test_warm_step_seconds_skips_the_warm_up_steps():
    # steps end at these times: step 2 (cold) took 30 s, steps 3-6 took 1, 1, 1.5, 1
    ended = [0.0, 30.0, 31.0, 32.0, 33.5, 34.5]
    assert warm_step_seconds(ended, warm_up=2) == 1.0
    with pytest.raises(ValueError, match="none after the 2 warm-up steps"):
        warm_step_seconds([0.0, 30.0], warm_up=2)


def test_measured_step_excludes_slow_first_steps(tiny_base, sst2_files, monkeypatch):
    """The first two steps take 0.5 s each, as a cold start does, the others 0.01 s (on a clock
    the steps advance, so the figure does not depend on how busy the machine is): the measured
    step is a warm one, timed through the training loop with the teacher's settings."""
    calls, seen, now = [], [], [0.0]
    forward = demo.forward

    def cold_then_warm(model, batch):
        calls.append(1)
        now[0] += 0.5 if len(calls) <= 2 else 0.01
        return forward(model, batch)

    train = demo.train

    def spying_train(model, loader, step, evaluate, config, **kwargs):
        seen.append(config)
        return train(model, loader, step, evaluate, config, **kwargs)

    monkeypatch.setattr(demo, "forward", cold_then_warm)
    monkeypatch.setattr(demo, "train", spying_train)
    train_file, dev_file = sst2_files
    spec = DataSpec(train_file, dev_file, max_length=32)
    config = TrainConfig(batch_size=8, lr=1e-4, seed=0, group_by_length=True)
    seconds = demo.measure_step_seconds(spec, config, base=str(tiny_base), clock=lambda: now[0])
    assert seconds == pytest.approx(0.01)
    assert len(calls) == 6  # 2 warm-up steps + 4 timed, then the loop stops: no evaluation
    assert seen[0].batch_size == 8 and seen[0].group_by_length and seen[0].lr == 1e-4
    assert not seen[0].save_state and not seen[0].progress


def test_atomic_dir_leaves_nothing_on_failure_and_keeps_the_old_result(tmp_path):
    out = tmp_path / "model"
    with atomic_dir(out) as staging:
        (staging / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), atomic_dir(out) as staging:
        (staging / "a.txt").write_text("second")
        raise RuntimeError("boom")
    assert (out / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
