"""What a search's --budget holds: which untried choices the time left can train, priced from
the trials of their own method (a relation student's two stages take about 2.7 times a kd
student's one on SST-2), and how the stop reasons name the probes' share."""

from __future__ import annotations

import optuna

from slimbert.auto.plan import duration
from slimbert.auto.space import Choice

# a trial's user attribute: its wall-clock over every run that trained it, kept at each
# evaluation (the promotion's estimate for that choice, auto/promote.py)
SECONDS = "seconds"
# a study's user attribute: its runs' seconds before the trials (in its budget count too)
SETUP_SECONDS = "setup_seconds"


def setup_part(study: optuna.Study) -> str:
    """The probes' share of the budget spent, as the stop reasons say it."""
    setup = study.user_attrs.get(SETUP_SECONDS)
    return f", the probes' {duration(setup)} included" if setup else ""


def method_seconds(trials: list[optuna.trial.FrozenTrial], method_of) -> dict[str, list[float]]:
    """Each method's trials' wall-clock (`method_of`: a trial's method), those that kept it."""
    by_method: dict[str, list[float]] = {}
    for trial in trials:
        if SECONDS in trial.user_attrs and trial.params and "repeat_of" not in trial.user_attrs:
            by_method.setdefault(method_of(trial), []).append(trial.user_attrs[SECONDS])
    return by_method


def estimate(choice: Choice, lengths: list[float], by_method: dict[str, list[float]]) -> float:
    """A trial of `choice`: the mean of its method's trials, or of every trial before one of
    its method has run."""
    own = by_method.get(choice.method) or lengths
    return sum(own) / len(own)


def fitting(
    untried: list[Choice],
    lengths: list[float],
    by_method: dict[str, list[float]],
    left_s: float,
    reserve_s: float = 0.0,
) -> tuple[list[Choice], str | None]:
    """The untried choices whose trial the budget left holds, less `reserve_s` kept for what
    follows the trials; when none does, why the next trial is not started. Before any trial
    has run every choice fits."""
    if not lengths:
        return untried, None
    fits = [c for c in untried if estimate(c, lengths, by_method) <= left_s - reserve_s]
    if fits or not untried:
        return fits, None
    cheapest = min(untried, key=lambda c: estimate(c, lengths, by_method))
    trial = f"a {cheapest.method} trial" if cheapest.method in by_method else "a trial"
    kept = f", {reserve_s / 60:.1f} min of it kept for the promotion" if reserve_s else ""
    return [], (
        f"stopped before trial {len(lengths) + 1}: {trial} has taken "
        f"{estimate(cheapest, lengths, by_method) / 60:.1f} min on average and --budget has "
        f"{max(left_s, 0) / 60:.1f} min left{kept}"
    )
