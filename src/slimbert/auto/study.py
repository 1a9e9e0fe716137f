"""The search: an Optuna study over the choices the SLO kept, stored in OUT/study.db.

    sampler   TPE (constrained: a trial whose every export misses the SLO is infeasible) after
              the STARTUP most promising choices (`promise`: trained starting weights first,
              then the larger shape), or every choice once in that order ("exhaustive")
    pruner    successive halving over a stage's evaluations (a trial goes on past an evaluation
              only in the best third of those that reached it), the median rule, or none
    storage   sqlite:///OUT/study.db: trials, their choices, their evaluations and values

Resuming: `auto` run again on the same OUT finds the study. A trial it left RUNNING (the
process was killed) is finished first, in its own folder, from its training state; finished
trials are read, never rerun. A choice already tried is never trained again: the sampler's
repeat is told as failed and costs no training. A choice whose trial failed in an earlier run
(a full disk, a refused setting since fixed) is tried once more, as a new trial; within one run
a failure is final. The wall-clock spent is kept in the study at
every evaluation and after every trial, so --budget counts every run (a kill loses at most the
time since the last evaluation from the count); each trial keeps its own the same way (its user
attribute `seconds`: the mean trial's, and its promotion's estimate).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import optuna

from slimbert.auto.budget import SECONDS, fitting, method_seconds, setup_part
from slimbert.auto.plan import duration
from slimbert.auto.space import Choice, Shape
from slimbert.auto.trial import TrialSetup, read_outcome, run_trial, trial_dir
from slimbert.errors import SlimbertError

STUDY_NAME = "slimbert-auto"
# repeats of tried choices in a row after which the sampler is taken to have no new one
MAX_REPEATS = 50


@dataclass
class Search:
    """The study and what it searches: the kept choices, the statistic and limit of the SLO."""

    study: optuna.Study
    choices: list[Choice]
    statistic: str
    limit_ms: float
    exhaustive: bool = False

    def params(self, choice: Choice) -> dict:
        """The Optuna parameters `suggest` draws for `choice`."""
        params = {"shape": choice.shape.name, method_param(choice.shape): choice.method}
        if len({c.transfer for c in self.choices if c.shape == choice.shape}) > 1:
            params["transfer"] = choice.transfer
        return params

    def queue(self, tried: set[str], among: list[Choice] | None = None) -> None:
        """The most promising untried choice (`promise`; of `among`, the choices the budget
        left holds, when given), enqueued for the next `ask`: every ask of an exhaustive
        search, TPE's first STARTUP asks (in place of its random draws), the ask after TPE
        drew a choice already tried, and every ask once the budget holds only some."""
        pool = self.choices if among is None else among
        untried = [c for c in sorted(pool, key=promise) if c.key not in tried]
        if untried:
            self.study.enqueue_trial(self.params(untried[0]))

    def suggest(self, trial: optuna.Trial) -> Choice:
        """The trial's choice, as Optuna parameters: the shape, then a method able to train it
        (a parameter of its own for each kind of shape, whose methods differ: Optuna keeps one
        set of values per parameter), then the transfer set."""
        shapes = list(dict.fromkeys(c.shape.name for c in self.choices))
        name = trial.suggest_categorical("shape", shapes)
        fitting = [c for c in self.choices if c.shape.name == name]
        methods = list(dict.fromkeys(c.method for c in fitting))
        method = trial.suggest_categorical(method_param(fitting[0].shape), methods)
        transfers = sorted({c.transfer for c in fitting})
        transfer = (
            trial.suggest_categorical("transfer", transfers)
            if len(transfers) > 1
            else (transfers[0])
        )
        return next(c for c in fitting if c.method == method and c.transfer == transfer)


def promise(choice: Choice) -> tuple:
    """The order in which choices are worth a trial, most promising first: a student that
    starts from trained weights (the teacher's own layers at its width, a --student-base, a
    --student-init) before one of fresh narrow weights, then the larger shape (all of them meet
    the SLO; a larger one keeps more), the transfer set before none, then the key. On SST-2 one
    pass over the training rows took fresh 3 x 128 and 3 x 312 students to 81.9 and 81.8 (the
    teacher 88.9) and the teacher's one layer to 83.3; the hand-run 3-layer cut, 88
    (benchmarks/results/auto-sst2/, quality-sst2/)."""
    shape = choice.shape
    fresh = shape.narrow and not shape.start
    return (fresh, -shape.cost(), not choice.transfer, choice.key)


def method_param(shape: Shape) -> str:
    """The Optuna parameter of a shape's method: "method" for the teacher's depth cuts,
    "method_narrow", "method_base" or "method_init" for the other kinds, and
    "method_base_unaligned" for a --student-base whose tokenizer cuts some rows into other
    pieces than the teacher's (kd alone trains it). Optuna keeps one set of values per
    parameter, so the shapes that share one must be trained by the same methods."""
    if shape.kind == "base" and not shape.aligned:
        return "method_base_unaligned"
    return f"method_{shape.kind}" if shape.kind else "method"


METHOD_PARAMS = ("method", "method_narrow", "method_base", "method_base_unaligned", "method_init")


# TPE's first trials: the most promising choices (`promise`), not random draws
STARTUP = 4


def make_sampler(kind: str, seed: int) -> optuna.samplers.BaseSampler:
    if kind == "exhaustive":
        # every choice is enqueued, most promising first (Search.queue): nothing left to sample
        return optuna.samplers.RandomSampler(seed=seed)
    # constrained: a trial's `slo_excess_ms` (its fastest export's latency over the limit) > 0
    # marks it infeasible, and TPE draws towards the feasible ones
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP)


def make_pruner(kind: str) -> optuna.pruners.BasePruner:
    if kind == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


# what a report may judge a study's finished trials under anew (--report-only trains nothing):
# another SLO, and so the choices it keeps
JUDGED = ("slo", "choices")


def open_study(
    out: Path, fingerprint: dict, sampler: str, pruner: str, seed: int, judging: bool = False
):
    """The study in OUT/study.db, new or as an earlier run left it; one with other settings is
    an error (its trials answer another question), except for the SLO and the choices it keeps
    when `judging` (a report of the trials, nothing trained)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{out / 'study.db'}"
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        pruner=make_pruner(pruner),
    )
    saved = study.user_attrs.get("fingerprint")
    if saved is None:
        study.set_user_attr("fingerprint", fingerprint)
        saved = fingerprint
    changed = sorted(
        k for k in fingerprint if saved.get(k) != fingerprint[k] and not (judging and k in JUDGED)
    )
    if changed:
        raise SlimbertError(
            f"--out {out} holds a search with other settings ({', '.join(changed)}); give the "
            "same flags to resume it, or a new --out"
        )
    # seeded by how far the study has come: a resumed run does not draw the same choices again
    study.sampler = make_sampler(sampler, seed + len(study.trials))
    return study


def choice_of(trial: optuna.trial.FrozenTrial, choices: list[Choice]) -> Choice:
    params = trial.params
    method = next((params[key] for key in METHOD_PARAMS if key in params), None)
    for c in choices:
        if c.shape.name == params.get("shape") and c.method == method:
            if c.transfer == params.get("transfer", c.transfer):
                return c
    raise SlimbertError(f"trial {trial.number} of the study names a choice not in the plan")


Events = Callable[..., None]  # (number, choice, state, outcome|None, evaluation|None)


class Runner:
    """Runs the trials of a search and tells the study how each ended."""

    def __init__(
        self,
        search: Search,
        setup: TrialSetup,
        out: Path,
        events: Events,
        reserve: Callable[[list[float]], float] = lambda lengths: 0.0,
    ):
        self.search, self.setup, self.out, self.events = search, setup, out, events
        self.spent: Callable[[], float] = lambda: 0.0  # the budget's count; run() sets it
        # seconds of the budget kept for what follows the trials (the leader's promotion),
        # from the trials' lengths so far
        self.reserve = reserve

    def keep_spent(self) -> None:
        self.search.study.set_user_attr("seconds", self.spent())

    def judge(self, trial: optuna.Trial, number: int, choice: Choice, clock: Callable[[], float]):
        # a resumed trial has its evaluations before the kill in the study already
        reported = set(self.search.study.trials[number].intermediate_values)

        def decide(index: int, value: float) -> bool:
            if index not in reported:
                trial.report(value, index)
                reported.add(index)
            # a kill from here on loses only the time since this evaluation
            self.keep_spent()
            trial.set_user_attr(SECONDS, clock())
            self.events(number, choice, "running", None, value)
            return trial.should_prune()

        return decide

    def finish(self, trial: optuna.Trial, number: int, choice: Choice) -> float:
        """Run the trial (or take its result.json) and tell the study; the trial's wall-clock
        over every run that trained it (kept in its user attribute `seconds`)."""
        folder = trial_dir(self.out, number)
        outcome = read_outcome(folder)
        carried = self.search.study.trials[number].user_attrs.get(SECONDS, 0.0)
        began = time.monotonic()

        def clock() -> float:
            return carried + time.monotonic() - began

        if outcome is None:
            self.events(number, choice, "running", None, None)
            name = f"#{number} {choice.key}"
            judge = self.judge(trial, number, choice, clock)
            outcome = run_trial(self.setup, choice, folder, name, judge)
            trial.set_user_attr(SECONDS, clock())
        latency = outcome.best_latency(self.search.statistic)
        if latency is not None:
            trial.set_constraint("slo_excess_ms", latency - self.search.limit_ms)
        if outcome.state == "complete":
            self.search.study.tell(trial, outcome.value())
        elif outcome.state == "pruned":
            self.search.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            trial.set_user_attr("message", outcome.message)
            self.search.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        self.events(number, choice, outcome.state, outcome, None)
        return clock()

    def resume_running(self) -> list[float]:
        """Finish every trial an earlier run left RUNNING; their wall-clock, every run's."""
        study = self.search.study
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        lengths = []
        for frozen in running:
            # Optuna's ask/tell makes a Trial by its storage id, which FrozenTrial keeps under
            # a private name; there is no public way to take up a RUNNING trial again
            trial = optuna.Trial(study, frozen._trial_id)
            choice = choice_of(frozen, self.search.choices)
            lengths.append(self.finish(trial, frozen.number, choice))
        return lengths

    def tried(self, since: datetime | None = None) -> set[str]:
        """The choices not to train again: every trial's, except those that failed before
        `since` (this run's start: an earlier run's failures are tried once more)."""
        done = self.search.study.get_trials(deepcopy=False)

        def failed_earlier(t: optuna.trial.FrozenTrial) -> bool:
            return (
                since is not None
                and t.state == optuna.trial.TrialState.FAIL
                and t.datetime_complete is not None
                and t.datetime_complete < since
            )

        kept = [t for t in done if not failed_earlier(t)]
        return tried_choices(kept, self.search.choices)

    def run(self, trials: int, budget_s: float) -> None:
        """Trials until `trials` have been trained, the choices run out or the budget is spent.
        A trial is not started when the mean of the trials so far would overrun the budget (a
        trial is not stopped half-way for it: its model would be lost); why the search stopped
        early is kept in the study's `stopped`."""
        study = self.search.study
        started, used = time.monotonic(), study.user_attrs.get("seconds", 0.0)
        lengths = list(study.user_attrs.get("trial_seconds", []))
        study.set_user_attr("stopped", None)  # a resumed search says its own reason

        def spent() -> float:
            return used + time.monotonic() - started

        self.spent = spent
        this_run = datetime.now()  # Optuna stamps trials in local time, naive
        lengths += self.resume_running()
        study.set_user_attr("trial_seconds", lengths)
        repeats = 0
        while spent() < budget_s and repeats < MAX_REPEATS:
            tried = self.tried(since=this_run)
            if len(tried) >= min(trials, len(self.search.choices)):
                break
            untried = [c for c in self.search.choices if c.key not in tried]
            by_method = method_seconds(
                study.get_trials(deepcopy=False), lambda t: choice_of(t, self.search.choices).method
            )
            fits, overrun = fitting(
                untried, lengths, by_method, budget_s - spent(), self.reserve(lengths)
            )
            if overrun:
                study.set_user_attr("stopped", overrun)
                break
            narrowed = len(fits) < len(untried)  # a cheaper method's trial may still fit
            if self.search.exhaustive or len(tried) < STARTUP or narrowed:
                self.search.queue(tried, fits)
            trial = study.ask()
            choice = self.search.suggest(trial)
            if choice.key in tried:
                # TPE draws again what it rates best, often a choice trained already: the next
                # ask takes an untried one instead, so the budget goes to new choices
                repeats += 1
                trial.set_user_attr("repeat_of", choice.key)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                self.search.queue(tried, fits)
                continue
            repeats = 0
            lengths.append(self.finish(trial, trial.number, choice))
            study.set_user_attr("trial_seconds", lengths)
            self.keep_spent()
        if study.user_attrs.get("stopped") is None and spent() >= budget_s:
            untried = min(trials, len(self.search.choices)) - len(self.tried())
            if untried > 0:
                study.set_user_attr(
                    "stopped",
                    f"stopped at --budget ({duration(budget_s)} spent{setup_part(study)}) "
                    f"with {untried} of {len(self.search.choices)} choices untried",
                )
        self.keep_spent()


def tried_choices(trials: list[optuna.trial.FrozenTrial], choices: list[Choice]) -> set[str]:
    """The keys of the choices `trials` trained or began to (a sampler's repeat of a tried
    choice is not one)."""
    return {
        choice_of(t, choices).key
        for t in trials
        if t.params and t.user_attrs.get("repeat_of") is None
    }


def progress(
    study: optuna.Study,
    choices: list[Choice],
    trials: int,
    budget_s: float,
    total: int | None = None,
) -> str | None:
    """Where a search stopped before its end stands, in the words of a `stopped` reason: its
    time against --budget, the choices it finished (of `total`, default all of `choices`), the
    trial a kill interrupted; None when it ended (its `trials` trained, or the reason it
    stopped early kept in the study)."""
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    done = study.get_trials(
        deepcopy=False,
        states=(
            optuna.trial.TrialState.COMPLETE,
            optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.FAIL,
        ),
    )
    finished = tried_choices(done, choices)
    total = len(choices) if total is None else total
    if not running and (study.user_attrs.get("stopped") or len(finished) >= min(trials, total)):
        return study.user_attrs.get("stopped")
    seconds = study.user_attrs.get("seconds", 0.0)
    text = (
        f"reported before its end, at {duration(seconds)} of its {duration(budget_s)} budget"
        f"{setup_part(study)}, "
        f"with {len(finished)} of {total} choices tried"
    )
    for trial in running:
        text += (
            f"; trial {trial.number} ({choice_of(trial, choices).key}) was stopped while it "
            "trained and resumes when the search does"
        )
    return text
