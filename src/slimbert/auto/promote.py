"""`auto`'s last step, the promotion: the leading student (the best metric among the trained
students whose export meets the SLO) is trained again from the start with a longer schedule,
with the budget the search left, and its exports join the table as rows of their own.

Every trial trains one pass (--trial-steps) so that the budget reaches many choices; the
leader's choice is then run again, the same `slimbert compress` command in a new folder, with
--promote-steps a stage (default three passes) under one warm-up and decay, as a person would
train the chosen shape longer. Why from the start: the hand-run students of
benchmarks/results/quality-sst2/ were trained so (three passes, one schedule), and a second
schedule on a converged student adds little: on SST-2 (benchmarks/results/auto-sst2/) 4,210
more steps of distillation from a one-pass 2-layer relation student's weights left it at 86.81,
while the 2-layer kd student trained again for three passes went from 86.12 to 86.70.

    OUT/trials/<n>/
      promoted-model/   the leader's choice trained again, longer (a normal compress folder)
      promoted-fp32/    its exports at each precision, each with its parity gate
      promoted-int8/
      promote.log       the command's output

Its rows' method is the trial's with "+promoted", which is how the report finds their folders.
The leader is picked on one alternating timing of the teacher and every trained student (each
trial was timed as it finished, beside whatever the machine did then; a relative SLO reads the
speed-up of that run), and only when the budget left holds the promotion (its trial's
wall-clock, or the mean trial's, scaled by the steps); a run killed while it trains continues
with the same leaders and --resume, an export already written is kept, and a promoted trial is
never promoted again.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

from slimbert.auto.budget import SECONDS
from slimbert.auto.probe import export_once, onnx_target, precisions
from slimbert.auto.qat import run_logged
from slimbert.auto.report import Finished, read_trials, retime
from slimbert.auto.trial import (
    PROMOTED_SUFFIX,
    RESULT_FILE,
    TrialSetup,
    promoted_folder,
    read_choice,
    read_outcome,
)
from slimbert.bench.decide import Slo, relate_to_teacher
from slimbert.bench.report import Row
from slimbert.errors import SlimbertError
from slimbert.files import RECORD_FILE, STATE_DIR, write_json_atomic

MODEL_FOLDER = "promoted-model"


def row_key(precision: str) -> str:
    """The key of a promoted export's row in the trial's result.json."""
    return f"{precision}-promoted"


def promoted_rows(out: Path, number: int) -> dict[str, dict]:
    """Trial `number`'s promoted rows (none before its promotion)."""
    outcome = read_outcome(out / "trials" / str(number))
    rows = outcome.rows if outcome is not None else {}
    return {k: v for k, v in rows.items() if k in {row_key(p) for p in ("fp32", "int8", "fp16")}}


def ranked(trials: list[Finished], slo: Slo, teacher: Row) -> list[tuple[int, Row]]:
    """The complete trials with an export that meets the SLO (their speed-up over `teacher`,
    timed in the same run, for a relative one), each with its best such row (its promoted
    rows left out), best metric first."""
    best: dict[int, Row] = {}
    for trial in trials:
        if trial.state != "complete":
            continue
        relate_to_teacher([teacher, *trial.rows])
        for row in trial.rows:
            if row.method.endswith(PROMOTED_SUFFIX) or not slo.met(row):
                continue
            if trial.number not in best or row.metric > best[trial.number].metric:
                best[trial.number] = row
    return sorted(best.items(), key=lambda item: -item[1].metric)


def leader(trials: list[Finished], slo: Slo, teacher: Row) -> tuple[int, Row] | None:
    """The best of `ranked`: the trial whose export has the best metric among those that meet
    the SLO, and that row; None when no timed export meets it."""
    found = ranked(trials, slo, teacher)
    return found[0] if found else None


def promote(setup: TrialSetup, out: Path, number: int, steps: int) -> dict[str, dict]:
    """Train trial `number`'s choice again from the start with `steps` a stage (unless an
    earlier run did), export and time it at every precision; its rows are added to the
    trial's result.json (precision-promoted -> Row as a dict). SlimbertError with the
    command's last line if the training fails."""
    folder = out / "trials" / str(number)
    done = promoted_rows(out, number)
    if done:
        return done
    outcome = read_outcome(folder)
    choice = read_choice(folder)
    model = folder / MODEL_FOLDER
    if not (model / RECORD_FILE).is_file():
        command = replace(setup, steps=steps).command(choice, model, (model / STATE_DIR).is_dir())
        run_logged(command, folder / "promote.log", "promotion")
    name = f"#{number} {choice.key} promoted"
    for precision in precisions(setup.timing.provider):
        exported = folder / promoted_folder(precision)
        try:
            export_once(model, exported, setup.timing, precision, setup.optimize)
            method = choice.method + PROMOTED_SUFFIX
            row = setup.timing.time(onnx_target(name, exported, method, precision))
        except SlimbertError as exc:
            outcome.errors[row_key(precision)] = str(exc)
            continue
        done[row_key(precision)] = asdict(row)
    outcome.rows.update(done)
    write_json_atomic(folder / RESULT_FILE, asdict(outcome))
    return done


def promotion_seconds(
    lengths: list[float], trial_steps: int, steps: int, own: float | None = None
) -> float:
    """A promotion's estimate: its trial's own wall-clock (`own`, when the study kept it), or
    the mean trial's, scaled from the trial's steps to `steps` (a relation student's two stages
    take about twice a kd student's one)."""
    base = own if own else (sum(lengths) / len(lengths) if lengths else 0.0)
    return base * steps / trial_steps


def trial_seconds(study) -> dict[int, float]:
    """Each trial's wall-clock over every run that trained it (trials of a study begun by an
    earlier version have none)."""
    return {
        t.number: t.user_attrs[SECONDS]
        for t in study.get_trials(deepcopy=False)
        if SECONDS in t.user_attrs
    }


def reserve(
    out: Path, slo: Slo, teacher: Row, trial_steps: int, steps: int, count: int = 1, study=None
):
    """What the search keeps of its budget for the promotion (Runner's `reserve`): the
    estimates of the `count` best trained students that meet the SLO against `teacher`'s
    timing (fewer while fewer do), nothing before one does (the trials go on until then)."""

    def kept(lengths: list[float]) -> float:
        if steps == 0 or not lengths:
            return 0.0
        own = trial_seconds(study) if study is not None else {}
        best = ranked(read_trials(out), slo, teacher)[:count]
        return sum(promotion_seconds(lengths, trial_steps, steps, own.get(n)) for n, _ in best)

    return kept


def promotion_fits(
    lengths: list[float], trial_steps: int, steps: int, left_s: float, own: float | None = None
) -> str | None:
    """Why a promotion does not run (None: it does): its estimate is more than the budget
    has left."""
    if not lengths and not own:
        return "no trial was timed to estimate it from"
    need = promotion_seconds(lengths, trial_steps, steps, own)
    if need <= left_s:
        return None
    return (
        f"its {steps} steps would take about {need / 60:.1f} min and --budget has "
        f"{max(left_s, 0) / 60:.1f} min left"
    )


def promote_leaders(
    out: Path,
    slo: Slo,
    teacher: Row,
    setup: TrialSetup,
    study,
    steps: int,
    count: int,
    budget_s: float,
    say=print,
) -> str | None:
    """Train the search's `count` best students again from the start, `steps` a stage, best
    first, each while the budget left holds it (steps or count 0: never); what was done, or
    why not, as the report says it. `teacher`: its row on the rows students are scored on.
    The time it takes joins the study's count."""
    if steps == 0 or count == 0:
        return None
    trials = read_trials(out)
    if leader(trials, slo, teacher) is None:
        return "no trained student meets the SLO: none was promoted"
    used, began = study.user_attrs.get("seconds", 0.0), time.monotonic()
    lengths = study.user_attrs.get("trial_seconds", [])
    own = trial_seconds(study)

    def left() -> float:
        return budget_s - (used + time.monotonic() - began)

    # the ranking an earlier run made, which a kill stopped (a study of an earlier version
    # kept its one leader)
    order = study.user_attrs.get("leaders")
    if order is None and study.user_attrs.get("leader") is not None:
        order = [study.user_attrs["leader"]]
    said: list[str] = []
    try:
        if order is None:
            # the cheapest of the candidates by the trials' own timings, before ranking them
            cheapest = min(
                (own.get(n) or 0.0 for n, _ in ranked(trials, slo, teacher)),
                key=lambda seconds: promotion_seconds(lengths, setup.steps, steps, seconds),
            )
            why_not = promotion_fits(lengths, setup.steps, steps, left(), cheapest)
            if why_not is not None:
                return f"no student was promoted: {why_not}"
            # each trial was timed as it finished, beside whatever the machine did then: the
            # leaders are picked on one alternating timing of the teacher and them all, as the
            # verdict is
            say("timing the teacher and every trained student again to rank the leaders")
            retimed, timed_teacher = retime(out, trials, setup.teacher, setup.timing)
            order = [number for number, _ in ranked(retimed, slo, timed_teacher)]
            if not order:
                return "no trained student meets the SLO when timed again: none was promoted"
            study.set_user_attr("leaders", order)
        for place, number in enumerate(order[:count], 1):
            # one the budget cannot hold is passed over: a later, cheaper one may fit
            why_not = promotion_fits(lengths, setup.steps, steps, left(), own.get(number))
            said.append(promote_one(out, number, place, setup, steps, why_not, say))
    finally:
        study.set_user_attr("seconds", used + time.monotonic() - began)
    return "; ".join(said)


def promote_one(
    out: Path,
    number: int,
    place: int,
    setup: TrialSetup,
    steps: int,
    why_not: str | None,
    say,
) -> str:
    """Promote trial `number`, the `place`-th best, unless it was or the budget left does not
    hold it (`why_not`, promotion_fits's words); what happened, in the report's words."""
    trials = read_trials(out)
    own = next(t for t in trials if t.number == number).rows
    trained = [r for r in own if not r.method.endswith(PROMOTED_SUFFIX)]
    row = max(trained, key=lambda r: r.metric)
    name = f"#{number} {read_choice(out / 'trials' / str(number)).key}"
    what = f"{name}, leader {place} ({row.metric_name} {row.metric:.2f})"
    done = promoted_rows(out, number)
    if not done:
        model = out / "trials" / str(number) / MODEL_FOLDER
        if not (model / STATE_DIR).is_dir():  # a promotion a kill stopped goes on regardless
            if why_not is not None:
                return f"{what}: {why_not}, not promoted"
        say(
            f"promoting {name} ({row.metric_name} {row.metric:.2f}, {row.precision}): "
            f"trained again from the start, {steps} steps a stage"
        )
        try:
            done = promote(setup, out, number, steps)
        except SlimbertError as exc:
            return f"{what} failed to train again: {exc}"
    if not done:
        return f"{what}, trained again but no export of it was timed"
    best = max(done.values(), key=lambda r: r["metric"])
    return (
        f"{what}, trained again from the start with {steps} steps a stage: "
        f"{best['metric']:.2f} at its best precision"
    )
