"""The search loop (auto/study.py) with trials stood in for: the pruner stops a trial at an
evaluation below the others', a pruned choice is not trained again, and --budget is not overrun
by a trial the time left cannot hold. Training itself is tested in test_auto.py."""

from __future__ import annotations

import optuna
import pytest

from slimbert.auto import study as studying
from slimbert.auto.budget import fitting
from slimbert.auto.space import Choice, Shape
from slimbert.auto.study import (
    Runner,
    Search,
    open_study,
    progress,
    promise,
)
from slimbert.auto.trial import Outcome

SHAPES = [Shape(layers, 64, 4, 256) for layers in (1, 2, 3, 4, 5)]
CHOICES = [Choice("kd", shape, False) for shape in SHAPES]


class Clock:
    def __init__(self):
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


def runner(tmp_path, pruner: str, curves: list[list[float]], clock: Clock, minutes=10):
    """A Runner over CHOICES whose n-th trial reports `curves[n]` one evaluation at a time and
    takes `minutes` on `clock`; the trials it ran are listed in `ran` (shape, state)."""
    study = open_study(tmp_path, {"test": 1}, "exhaustive", pruner, seed=0)
    search = Search(study, CHOICES, "p99", 10.0, exhaustive=True)
    ran: list[tuple[int, str]] = []

    def fake_trial(setup, choice, folder, name, judge, on_eval=None):
        clock.now += minutes * 60
        curve = curves[len(ran)]
        for index, value in enumerate(curve):
            if judge(index, value):
                ran.append((choice.shape.name, "pruned"))
                return Outcome("pruned", message="pruned", evaluations=[value])
        ran.append((choice.shape.name, "complete"))
        row = {"metric": curve[-1], "p99_ms": 1.0}
        return Outcome("complete", rows={"int8": row})

    return Runner(search, None, tmp_path, lambda *a: None), fake_trial, ran


def test_the_median_pruner_stops_a_trial_below_the_others_and_never_retries_it(
    tmp_path, monkeypatch
):
    clock = Clock()
    monkeypatch.setattr(studying, "time", clock)
    # every curve rises; the third trial's first evaluation (0.5) is under the median of the two
    # trials before it at that evaluation (0.8, 0.9), so it stops there; the others go on
    curves = [[0.8, 0.85], [0.9, 0.95], [0.5, 0.99], [0.92, 0.93], [0.95, 0.96]]
    run, fake_trial, ran = runner(tmp_path, "median", curves, clock)
    monkeypatch.setattr(studying, "run_trial", fake_trial)
    run.run(trials=5, budget_s=10**6)
    assert [state for _, state in ran] == ["complete", "complete", "pruned", "complete", "complete"]
    pruned = ran[2][0]
    states = {t.params["shape"]: t.state for t in run.search.study.trials if t.params}
    assert states[pruned] == optuna.trial.TrialState.PRUNED
    assert sorted(name for name, _ in ran) == sorted(s.name for s in SHAPES)  # each choice once


def test_no_trial_starts_that_the_budget_left_cannot_hold(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(studying, "time", clock)
    curves = [[0.9]] * 5
    run, fake_trial, ran = runner(tmp_path, "none", curves, clock, minutes=10)
    monkeypatch.setattr(studying, "run_trial", fake_trial)
    run.run(trials=5, budget_s=25 * 60)  # two 10-minute trials fit, a third would end at 30
    study = run.search.study
    assert len(ran) == 2 and clock.now == 20 * 60
    assert study.user_attrs["trial_seconds"] == [600.0, 600.0]
    # each trial keeps its own (a promotion's estimate for its choice)
    assert [t.user_attrs["seconds"] for t in study.trials if t.params] == [600.0, 600.0]
    assert (
        "a kd trial has taken 10.0 min on average and --budget has 5.0 min left"
        in (study.user_attrs["stopped"])
    )
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))


def test_a_draw_of_a_choice_already_tried_gives_way_to_an_untried_one(tmp_path, monkeypatch):
    """TPE keeps drawing the choice it rates best; each such draw hands the next ask to an
    untried choice, so every choice trains and the search does not end on repeated draws."""
    clock = Clock()
    monkeypatch.setattr(studying, "time", clock)
    run, fake_trial, ran = runner(tmp_path, "none", [[0.9]] * 5, clock)
    search = run.search
    search.exhaustive = False  # as TPE: nothing is queued before an ask ...
    monkeypatch.setattr(studying, "STARTUP", 0)  # ... from the first (no promising start)
    study, ask, first = search.study, search.study.ask, CHOICES[2]

    def draws_the_same(*args, **kwargs):  # an ask with nothing queued draws `first`
        if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
            study.enqueue_trial(search.params(first))
        return ask(*args, **kwargs)

    monkeypatch.setattr(study, "ask", draws_the_same)
    monkeypatch.setattr(studying, "run_trial", fake_trial)
    run.run(trials=5, budget_s=10**6)
    assert sorted(name for name, _ in ran) == sorted(s.name for s in SHAPES)
    repeats = [t for t in study.trials if "repeat_of" in t.user_attrs]
    assert len(repeats) == 4  # one draw of the tried choice before each of the other four


def test_the_budget_kept_for_the_promotion_is_not_spent_on_trials(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(studying, "time", clock)
    run, fake_trial, ran = runner(tmp_path, "none", [[0.9]] * 5, clock, minutes=10)
    run.reserve = lambda lengths: 20 * 60.0 if lengths else 0.0
    monkeypatch.setattr(studying, "run_trial", fake_trial)
    run.run(trials=5, budget_s=60 * 60)
    # a fourth 10-minute trial ends at 40 min and leaves the 20 kept; a fifth would not
    assert len(ran) == 4 and clock.now == 40 * 60
    assert run.search.study.user_attrs["stopped"] == (
        "stopped before trial 5: a kd trial has taken 10.0 min on average and --budget has "
        "20.0 min left, 20.0 min of it kept for the promotion"
    )


def test_a_search_that_spends_its_budget_says_what_it_left_untried(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(studying, "time", clock)
    run, fake_trial, ran = runner(tmp_path, "none", [[0.9]] * 5, clock, minutes=10)
    monkeypatch.setattr(studying, "run_trial", fake_trial)
    run.run(trials=5, budget_s=10 * 60)  # the first trial spends it all
    assert len(ran) == 1
    assert run.search.study.user_attrs["stopped"] == (
        "stopped at --budget (10m spent) with 4 of 5 choices untried"
    )
    # every choice tried within the budget: nothing to say
    (tmp_path / "again").mkdir()
    clock = Clock()
    monkeypatch.setattr(studying, "time", clock)
    again, fake_trial, ran = runner(tmp_path / "again", "none", [[0.9]] * 5, clock, minutes=1)
    monkeypatch.setattr(studying, "run_trial", fake_trial)
    again.run(trials=5, budget_s=10 * 60)
    assert len(ran) == 5 and again.search.study.user_attrs["stopped"] is None


def test_progress_names_the_time_spent_the_choices_tried_and_the_trial_a_kill_stopped(
    tmp_path, monkeypatch
):
    clock = Clock()
    monkeypatch.setattr(studying, "time", clock)
    run, fake_trial, ran = runner(tmp_path, "none", [[0.9]] * 5, clock, minutes=10)

    def killed_third(setup, choice, folder, name, judge, on_eval=None):
        if len(ran) < 2:
            return fake_trial(setup, choice, folder, name, judge)
        judge(0, 0.9)
        raise KeyboardInterrupt

    monkeypatch.setattr(studying, "run_trial", killed_third)
    with pytest.raises(KeyboardInterrupt):
        run.run(trials=5, budget_s=4 * 3600)
    study = run.search.study
    (stopped,) = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    key = studying.choice_of(stopped, CHOICES).key
    assert progress(study, CHOICES, 5, 4 * 3600) == (
        "reported before its end, at 20m of its 4h 00m budget, with 2 of 5 choices tried; "
        f"trial {stopped.number} ({key}) was stopped while it trained and resumes when the "
        "search does"
    )
    # resumed to its end: the search ended, nothing to report but its own reason (none)
    monkeypatch.setattr(studying, "run_trial", fake_trial)
    ran.clear()
    run.run(trials=5, budget_s=4 * 3600)
    assert len(ran) == 3 and progress(study, CHOICES, 5, 4 * 3600) is None


MIXED = [
    Choice("minilm", Shape(3, 128, 2, 512, narrow=True), False),
    Choice("kd", Shape(1, 384, 12, 1536), False),
    Choice("minilm", Shape(1, 384, 12, 1536), False),
    Choice("minilm", Shape(3, 312, 12, 1200, narrow=True), False),
    Choice("kd", Shape(2, 384, 12, 1536), False),
    Choice("minilm", Shape(2, 384, 12, 1536), False),
    Choice("kd", Shape(4, 64, 4, 256, start="base:tiny"), False),
]
PROMISING = [
    "kd/2x384", "minilm/2x384", "kd/1x384", "minilm/1x384", "kd/4x64@tiny", "minilm/3x312",
    "minilm/3x128",
]  # fmt: skip


def test_the_first_trials_go_to_the_most_promising_choices(tmp_path, monkeypatch):
    """Students that start from trained weights (the teacher's layers, a pre-trained model)
    before fresh narrow ones, the larger shape first; TPE's own draws begin after four."""
    assert [c.key for c in sorted(MIXED, key=promise)] == PROMISING
    assert promise(Choice("kd", Shape(2, 384, 12, 1536), True)) < promise(MIXED[4])  # transfer
    clock = Clock()
    monkeypatch.setattr(studying, "time", clock)
    study = open_study(tmp_path, {"test": 1}, "tpe", "none", seed=0)
    search = Search(study, MIXED, "p99", 10.0)
    trained: list[str] = []

    def fake_trial(setup, choice, folder, name, judge, on_eval=None):
        trained.append(choice.key)
        return Outcome("complete", rows={"int8": {"metric": 0.9, "p99_ms": 1.0}})

    monkeypatch.setattr(studying, "run_trial", fake_trial)
    Runner(search, None, tmp_path, lambda *a: None).run(trials=7, budget_s=10**6)
    assert trained[:4] == PROMISING[:4] and sorted(trained) == sorted(PROMISING)


@pytest.mark.parametrize(
    ("lengths", "left", "stops"),
    [([], 1.0, False), ([600.0], 600.0, False), ([300.0, 900.0], 599.0, True)],
)
def test_the_budget_holds_a_trial_as_long_as_the_mean_trial(lengths, left, stops):
    fits, why = fitting(CHOICES, lengths, {}, left)
    assert (why is not None) is stops and (fits == []) is stops


def test_a_choice_is_priced_from_the_trials_of_its_own_method():
    kd, minilm = Choice("kd", SHAPES[0], False), Choice("minilm", SHAPES[1], False)
    tinybert = Choice("tinybert", SHAPES[2], False)
    lengths = [600.0, 1800.0, 2000.0]
    by_method = {"kd": [600.0], "minilm": [1800.0, 2000.0]}
    # 20 minutes left: a kd trial (10) fits, a minilm one (31.7) does not, a tinybert one is
    # priced from every trial (auto's mean, 24.4)
    assert fitting([kd, minilm, tinybert], lengths, by_method, 20 * 60) == ([kd], None)
    fits, why = fitting([minilm, tinybert], lengths, by_method, 30 * 60, reserve_s=10 * 60)
    assert fits == [] and why == (
        "stopped before trial 4: a trial has taken 24.4 min on average and --budget has 30.0 "
        "min left, 10.0 min of it kept for the promotion"
    )
    assert fitting([minilm], lengths, by_method, 20 * 60)[1].startswith(
        "stopped before trial 4: a minilm trial has taken 31.7 min on average"
    )


def test_when_the_budget_holds_only_a_cheaper_method_the_search_trains_that(tmp_path, monkeypatch):
    """Relation students take longer than kd ones: with the time for a kd trial left but not
    for a minilm one, the next trial is the most promising kd choice, not a stop."""
    clock = Clock()
    monkeypatch.setattr(studying, "time", clock)
    choices = [Choice(m, shape, False) for shape in SHAPES[:3] for m in ("kd", "minilm")]
    study = open_study(tmp_path, {"test": 1}, "exhaustive", "none", seed=0)
    search = Search(study, choices, "p99", 10.0, exhaustive=True)
    trained: list[str] = []

    def fake_trial(setup, choice, folder, name, judge, on_eval=None):
        clock.now += (30 if choice.method == "minilm" else 10) * 60
        trained.append(choice.key)
        return Outcome("complete", rows={"int8": {"metric": 0.9, "p99_ms": 1.0}})

    monkeypatch.setattr(studying, "run_trial", fake_trial)
    Runner(search, None, tmp_path, lambda *a: None).run(trials=6, budget_s=75 * 60)
    # the largest shape first, kd before minilm (promise): kd 3x64 (10 min), minilm 3x64
    # (40), kd 2x64 (50), minilm 2x64 (80 > 75) passed over for kd 1x64 (60); then only
    # minilm choices are left, and 15 minutes hold none of them
    assert trained == ["kd/3x64", "minilm/3x64", "kd/2x64", "kd/1x64"]
    assert study.user_attrs["stopped"] == (
        "stopped before trial 5: a minilm trial has taken 30.0 min on average and --budget "
        "has 15.0 min left"
    )


def test_a_kill_mid_trial_keeps_the_time_up_to_its_last_evaluation_in_the_budget(
    tmp_path, monkeypatch
):
    clock = Clock()
    monkeypatch.setattr(studying, "time", clock)
    run, _, _ = runner(tmp_path, "none", [], clock)

    def killed(setup, choice, folder, name, judge, on_eval=None):
        clock.now += 300
        judge(0, 0.9)  # evaluated after 5 minutes ...
        clock.now += 200
        raise KeyboardInterrupt  # ... and killed 200 s later, before the trial could end

    monkeypatch.setattr(studying, "run_trial", killed)
    with pytest.raises(KeyboardInterrupt):
        run.run(trials=5, budget_s=10**6)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.load_study(study_name=studying.STUDY_NAME, storage=storage)
    assert study.user_attrs["seconds"] == 300.0
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.RUNNING]


def test_a_choice_that_failed_is_tried_again_by_the_next_run_not_by_the_same(tmp_path, monkeypatch):
    """A failure (a refused setting, a full disk) is final within its run; the next run of the
    same command, after the cause is fixed, tries that choice once more as a new trial."""
    clock = Clock()
    monkeypatch.setattr(studying, "time", clock)
    attempts: list[str] = []

    def fake_trial(setup, choice, folder, name, judge, on_eval=None):
        attempts.append(choice.shape.name)
        if choice.shape == SHAPES[1] and attempts.count(choice.shape.name) == 1:
            return Outcome("failed", message="failed: exit 1: Error: refused")
        return Outcome("complete", rows={"int8": {"metric": 0.9, "p99_ms": 1.0}})

    monkeypatch.setattr(studying, "run_trial", fake_trial)
    first, _, _ = runner(tmp_path, "none", [], clock)
    first.run(trials=5, budget_s=10**6)
    assert sorted(attempts) == sorted(s.name for s in SHAPES)  # each once, the failure too
    second, _, _ = runner(tmp_path, "none", [], clock)
    second.run(trials=5, budget_s=10**6)
    assert attempts[5:] == [SHAPES[1].name]  # only the failed choice, once
    states = [t.state for t in second.search.study.trials if t.params]
    assert states.count(optuna.trial.TrialState.FAIL) == 1
    assert states.count(optuna.trial.TrialState.COMPLETE) == 5
