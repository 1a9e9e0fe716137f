"""`auto`'s last step, the promotion: the leading student (the best metric among the trained
students whose export meets the SLO) is trained further with the budget the search left, and
its exports join the table as rows of their own.

Every trial trains one pass (--trial-steps) so that the budget reaches many choices; the leader
then gets --promote-steps more of distillation from the teacher's soft labels, starting from its
trained weights with a fresh warm-up and decay (`slimbert compress qat --no-simulate-int8`:
tuning towards the teacher in fp32, the trial's learning rate and transfer set), as a person
would train the chosen shape longer. On SST-2 the 2-layer kd student kept 98.84% of its
teacher after three passes (benchmarks/results/quality-sst2/); one pass leaves it short.

    OUT/trials/<n>/
      promoted-model/   the leader trained further (slimbert.json: method qat, simulated false,
                        its parent the trial's model/)
      promoted-fp32/    its exports at each precision, each with its parity gate
      promoted-int8/
      promote.log       the command's output

Its rows' method is the trial's with "+promoted", which is how the report finds their folders.
The leader is picked on one alternating timing of every trained student (each trial was timed
as it finished, beside whatever the machine did then), and only when the budget left holds the
promotion (the mean trial's time, scaled by its steps); a run killed while it trains continues
with the same leader and --resume, an export already written is kept, and a promoted trial is
never promoted again.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from slimbert.auto.probe import Timing, export_once, onnx_target, precisions
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
from slimbert.bench.decide import Slo
from slimbert.bench.report import Row
from slimbert.errors import SlimbertError
from slimbert.files import RECORD_FILE, STATE_DIR, write_json_atomic

MODEL_FOLDER = "promoted-model"
# the trial's training flags the promotion does not take over: qat trains in fp32
NOT_PASSED = ("--mixed-precision",)


def row_key(precision: str) -> str:
    """The key of a promoted export's row in the trial's result.json."""
    return f"{precision}-promoted"


def promoted_rows(out: Path, number: int) -> dict[str, dict]:
    """Trial `number`'s promoted rows (none before its promotion)."""
    outcome = read_outcome(out / "trials" / str(number))
    rows = outcome.rows if outcome is not None else {}
    return {k: v for k, v in rows.items() if k in {row_key(p) for p in ("fp32", "int8", "fp16")}}


def leader(trials: list[Finished], slo: Slo) -> tuple[int, Row] | None:
    """The complete trial whose exports include the best metric among those that meet the SLO,
    and that row; None when no timed export meets it."""
    best = None
    for trial in trials:
        if trial.state != "complete":
            continue
        for row in trial.rows:
            if slo.met(row) and (best is None or row.metric > best[1].metric):
                best = trial.number, row
    return best


@dataclass(frozen=True)
class Promotion:
    """How the leader is trained further: the teacher, the trials' data and training flags,
    how its exports are timed, and --promote-steps."""

    teacher: Path
    data_flags: tuple[str, ...]
    transfer: Path | None
    train_flags: tuple[str, ...]
    timing: Timing
    optimize: bool
    steps: int

    def command(self, folder: Path) -> list[str]:
        out = folder / MODEL_FOLDER
        pairs = zip(self.train_flags[::2], self.train_flags[1::2], strict=True)
        passed = [item for flag, value in pairs if flag not in NOT_PASSED for item in (flag, value)]
        transfer = read_choice(folder).transfer and self.transfer is not None
        return [
            sys.executable, "-m", "slimbert", "compress", "qat", "--no-simulate-int8",
            "--teacher", str(self.teacher), "--student", str(folder / "model"),
            "--out", str(out), *self.data_flags,
            *(["--transfer", str(self.transfer)] if transfer else []), *passed,
            "--max-steps", str(self.steps), "--eval-every", str(max(1, self.steps // 4)),
            "--patience", "0", "--no-progress",
            *(["--resume"] if (out / STATE_DIR).is_dir() else []),
        ]  # fmt: skip

    def train(self, folder: Path) -> None:
        """Train folder/promoted-model unless it is there; SlimbertError with the command's
        last line if it fails."""
        if (folder / MODEL_FOLDER / RECORD_FILE).is_file():
            return
        run_logged(self.command(folder), folder / "promote.log", "promotion")

    def promote(self, out: Path, number: int) -> dict[str, dict]:
        """Train trial `number`'s student further, export and time it at every precision;
        its rows are added to the trial's result.json (precision-promoted -> Row as a dict)."""
        folder = out / "trials" / str(number)
        done = promoted_rows(out, number)
        if done:
            return done
        outcome = read_outcome(folder)
        self.train(folder)
        choice = read_choice(folder)
        name = f"#{number} {choice.key} promoted"
        for precision in precisions(self.timing.provider):
            exported = folder / promoted_folder(precision)
            try:
                export_once(folder / MODEL_FOLDER, exported, self.timing, precision, self.optimize)
                method = choice.method + PROMOTED_SUFFIX
                row = self.timing.time(onnx_target(name, exported, method, precision))
            except SlimbertError as exc:
                outcome.errors[row_key(precision)] = str(exc)
                continue
            done[row_key(precision)] = asdict(row)
        outcome.rows.update(done)
        write_json_atomic(folder / RESULT_FILE, asdict(outcome))
        return done


def promotion_seconds(lengths: list[float], trial_steps: int, steps: int) -> float:
    """The promotion's estimate: the mean trial's time scaled from its steps to `steps`."""
    return sum(lengths) / len(lengths) * steps / trial_steps if lengths else 0.0


def reserve(out: Path, slo: Slo, trial_steps: int, steps: int):
    """What the search keeps of its budget for the promotion (Runner's `reserve`): its estimate
    once some trained student meets the SLO, nothing before (the trials go on until one does)."""

    def kept(lengths: list[float]) -> float:
        if steps == 0 or not lengths or leader(read_trials(out), slo) is None:
            return 0.0
        return promotion_seconds(lengths, trial_steps, steps)

    return kept


def promotion_fits(lengths: list[float], trial_steps: int, steps: int, left_s: float) -> str | None:
    """Why the promotion does not run (None: it does): its estimate is more than the budget
    has left."""
    if not lengths:
        return "no trial was timed to estimate it from"
    need = promotion_seconds(lengths, trial_steps, steps)
    if need <= left_s:
        return None
    return (
        f"its {steps} steps would take about {need / 60:.1f} min and --budget has "
        f"{max(left_s, 0) / 60:.1f} min left"
    )


def promote_leader(
    out: Path, slo: Slo, setup: TrialSetup, study, steps: int, budget_s: float, say=print
) -> str | None:
    """Train the search's leader `steps` more when the budget left holds them (0: never); what
    was done, or why not, as the report says it. The time it takes joins the study's count."""
    if steps == 0:
        return None
    trials = read_trials(out)
    if leader(trials, slo) is None:
        return "no trained student meets the SLO: none was promoted"
    used, began = study.user_attrs.get("seconds", 0.0), time.monotonic()
    number = study.user_attrs.get("leader")  # an earlier run's choice, which a kill stopped
    try:
        if number is None:
            lengths = study.user_attrs.get("trial_seconds", [])
            why_not = promotion_fits(lengths, setup.steps, steps, budget_s - used)
            if why_not is not None:
                return f"no student was promoted: {why_not}"
            # each trial was timed as it finished, beside whatever the machine did then: the
            # leader is picked on one alternating timing of them all, as the verdict is
            say("timing every trained student again to pick the leader")
            found = leader(retime(out, trials, setup.teacher, setup.timing)[0], slo)
            if found is None:
                return "no trained student meets the SLO when timed again: none was promoted"
            number = found[0]
            study.set_user_attr("leader", number)
        own = next(t for t in trials if t.number == number).rows
        trained = [r for r in own if not r.method.endswith(PROMOTED_SUFFIX)]
        row = max(trained, key=lambda r: r.metric)
        name = f"#{number} {read_choice(out / 'trials' / str(number)).key}"
        done = promoted_rows(out, number)
        if not done:
            say(
                f"promoting {name} ({row.metric_name} {row.metric:.2f}, {row.precision}): "
                f"{steps} more steps from its trained weights"
            )
            promotion = Promotion(
                setup.teacher,
                setup.data_flags,
                setup.transfer,
                setup.train_flags,
                setup.timing,
                setup.optimize,
                steps,
            )
            try:
                done = promotion.promote(out, number)
            except SlimbertError as exc:
                return f"{name}, the leader, was not promoted: {exc}"
    finally:
        study.set_user_attr("seconds", used + time.monotonic() - began)
    if not done:
        return f"{name}, the leader, was trained further but no export of it was timed"
    best = max(done.values(), key=lambda r: r["metric"])
    return (
        f"{name}, the leader ({row.metric_name} {row.metric:.2f}), trained {steps} steps more "
        f"from its trained weights: {best['metric']:.2f} at its best precision"
    )
