"""`slimbert auto` from start to end: check the inputs, probe the shapes against the SLO,
print the plan, search, report.

    teacher ─► candidate shapes (space.py) ─► probes (probe.py, cached) ─► plan (plan.py)
                                                                             │ --dry-run stops
           study.db ◄─► trials (study.py, trial.py: `slimbert compress` + export + timing)
                                                                             │
                                 trials.md, report/, winner/, one line (report.py)
"""

from __future__ import annotations

import fcntl
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

from slimbert.auto.budget import SETUP_SECONDS
from slimbert.auto.live import Board
from slimbert.auto.plan import Plan, make_plan
from slimbert.auto.probe import Timing, probe_all, score_teacher
from slimbert.auto.promote import promote_leaders, reserve
from slimbert.auto.qat import QatRescue
from slimbert.auto.report import finish
from slimbert.auto.settings import TRIAL_TRAIN_FLAGS, AutoSettings
from slimbert.auto.space import (
    Shape,
    candidate_shapes,
    check_methods,
    choices,
    model_shape,
    start_shapes,
    teacher_shape,
    trains,
)
from slimbert.auto.study import Runner, Search, open_study, progress
from slimbert.auto.trial import (
    TrialSetup,
    data_flags,
    read_choice,
    setting_flags,
    trial_folders,
)
from slimbert.batches import DataSpec
from slimbert.bench.report import Row
from slimbert.compress.aligned import misaligned_row
from slimbert.data import data_exists, read_examples, read_transfer
from slimbert.errors import SlimbertError
from slimbert.hub import weights_sha256
from slimbert.models import load_classifier, load_tokenizer, resolve_base
from slimbert.training.config import TrainConfig


@dataclass
class Inputs:
    """What `auto` is given."""

    teacher: Path
    data: DataSpec
    train: TrainConfig
    settings: AutoSettings
    provider: str
    out: Path


def check(inputs: Inputs) -> None:
    """One line for each input a user can get wrong, before anything runs."""
    if not (inputs.teacher / "config.json").is_file():
        raise SlimbertError(f"--teacher {inputs.teacher}: no model directory (no config.json)")
    for flag, path in (("--train", inputs.data.train), ("--eval", inputs.data.eval)):
        if not data_exists(path):
            raise SlimbertError(f"{flag} {path}: no such file")
    if inputs.data.transfer is not None and not Path(inputs.data.transfer).is_file():
        raise SlimbertError(f"--transfer {inputs.data.transfer}: no such file")
    inputs.settings.objective()
    inputs.settings.seconds()
    check_methods(list(inputs.settings.methods))
    if not inputs.settings.methods:
        raise SlimbertError("--method: give at least one method to search")


def student_bases(values: tuple[str, ...], teacher: Shape) -> list[str]:
    """--student-base as given, with `auto` resolved: the bundled minilm-l6 when it is
    installed and narrower than the teacher (a base-size teacher's best small students start
    from it: benchmarks/results/base-teacher/), nothing otherwise; `none`: no start."""
    if "none" in values:
        if len(values) > 1:
            raise SlimbertError("--student-base none turns the starting points off; give it alone")
        return []
    bases = [value for value in values if value != "auto"]
    if "auto" in values and "minilm-l6" not in bases:
        try:
            bundled = model_shape("minilm-l6", "--student-base")
        except SlimbertError:  # the demo extra is not installed
            bundled = None
        if bundled is not None and bundled.hidden < teacher.hidden:
            bases.append("minilm-l6")
    return bases


def mark_aligned(starts: list[Shape], inputs: Inputs, say=print) -> list[Shape]:
    """Each --student-base start whose tokenizer cuts every training, transfer and eval row into
    the teacher's word pieces, marked so: then minilm and tinybert can teach it too (their
    losses compare tokens). Checked only when a searched method could use it."""
    bases = sorted({shape.source for shape in starts if shape.kind == "base"})
    probe = [replace(shape, aligned=True) for shape in starts if shape.kind == "base"]
    if not bases or not any(
        trains(m, shape) and not trains(m, replace(shape, aligned=False))
        for m in inputs.settings.methods
        for shape in probe
    ):
        return starts
    teacher_tokenizer = load_tokenizer(inputs.teacher, "--teacher")
    spec = inputs.data
    rows = [read_examples(spec.train, spec.columns), read_examples(spec.eval, spec.columns)]
    if spec.transfer is not None:
        rows.append(read_transfer(Path(spec.transfer), rows[1], rows[0].task))
    aligned = set()
    for base in bases:
        tokenizer = load_tokenizer(resolve_base(base, "--student-base"), "--student-base")
        missed = [misaligned_row(ex, tokenizer, teacher_tokenizer, spec.max_length) for ex in rows]
        if all(row is None for row in missed):
            aligned.add(base)
        verdict = (
            "every row into the teacher's word pieces: every searched method may train it"
            if base in aligned
            else "some rows into other pieces than the teacher's: kd alone may train it"
        )
        say(f"--student-base {base}: its tokenizer cuts {verdict}")
    return [
        replace(shape, aligned=True) if shape.kind == "base" and shape.source in aligned else shape
        for shape in starts
    ]


def trial_steps(inputs: Inputs) -> int:
    """--trial-steps, or one pass over the training rows (and the transfer set's)."""
    if inputs.settings.trial_steps:
        return inputs.settings.trial_steps
    rows = len(read_examples(inputs.data.train, inputs.data.columns))
    rows = min(rows, inputs.data.limit or rows)
    return max(1, math.ceil(rows / inputs.train.batch_size))


def plan_search(inputs: Inputs, say=print) -> tuple[Plan, Timing]:
    """Probe every candidate shape (cached in OUT) and price the search."""
    check(inputs)
    s = inputs.settings
    slo, batch = s.objective()
    teacher = teacher_shape(load_classifier(inputs.teacher).config)
    shapes = candidate_shapes(teacher, list(s.depths) or None, list(s.widths) or None)
    starts = start_shapes(
        student_bases(s.student_bases, teacher), list(s.student_inits), list(s.depths) or None
    )
    starts = mark_aligned(starts, inputs, say)
    # only shapes some searched method can train (narrow ones need tinybert or minilm, a
    # --student-base kd, a --student-init a method that takes it)
    shapes = sorted(
        (shape for shape in shapes + starts if any(trains(m, shape) for m in s.methods)),
        key=Shape.cost,
    )
    if not shapes:
        raise SlimbertError(
            f"--method {', '.join(s.methods)} keep the teacher's width, and no depth below "
            "the teacher's was asked for; add --method minilm or give --depths"
        )
    eval_rows = len(read_examples(inputs.data.eval, inputs.data.columns))
    timing = Timing(
        inputs.data.eval,
        inputs.data.columns,
        inputs.provider,
        batch,
        None,
        s.repeats,
        s.warmup,
        inputs.data.max_length,
        slo.statistic,
        inputs.data.metric,
        inputs.data.positive_label,
        s.threads,
    )
    probe_timing = replace(timing, requests=s.probe_requests)
    probes, teacher_row = probe_all(
        inputs.teacher,
        shapes,
        slo,
        probe_timing,
        inputs.data.train,
        inputs.train.batch_size,
        inputs.out,
        s.optimize,
        say,
    )
    kept = [p.shape for p in probes if p.meets(slo, teacher_row)]
    found = choices(list(s.methods), kept, inputs.data.transfer is not None)
    timed_rows = min(eval_rows, s.timing_requests or eval_rows)
    plan = make_plan(
        slo,
        batch,
        inputs.provider,
        teacher_row,
        probes,
        found,
        s.trials,
        trial_steps(inputs),
        s.evaluations,
        eval_rows,
        timed_rows,
        s.repeats,
        s.seconds(),
        s.promote_steps,
        s.promotions,
    )
    return plan, replace(timing, requests=s.timing_requests)


def fingerprint(inputs: Inputs, plan: Plan, setup: TrialSetup) -> dict:
    """What the trials of a study depend on: resuming with any of it changed is refused."""
    s = inputs.settings
    return {
        "teacher": weights_sha256(inputs.teacher),
        "choices": [c.key for c in plan.choices],
        "command": [*setup.data_flags, *setup.train_flags, str(setup.transfer)],
        "steps": setup.steps,
        "evaluations": setup.evaluations,
        "slo": s.slo,
        "provider": inputs.provider,
        "search": [s.sampler, s.pruner, s.optimize, s.timing_requests, s.repeats, s.threads],
    }


def qat_rescue(inputs: Inputs, teacher_metric: float, timing: Timing) -> QatRescue | None:
    """How a trial whose int8 export alone loses too much is tuned for int8 (CPU, where int8
    is exported; --qat-steps 0: never); `teacher_metric` on the rows trials are scored on."""
    s = inputs.settings
    if s.qat_steps == 0 or inputs.provider != "cpu":
        return None
    return QatRescue(
        inputs.teacher,
        tuple(data_flags(inputs.data)),
        tuple(setting_flags(inputs.train, TRIAL_TRAIN_FLAGS)),
        timing,
        s.optimize,
        teacher_metric,
        s.max_drop,
        s.qat_steps,
    )


def search(inputs: Inputs, say=print) -> str:
    """The whole command: the plan, then (unless --dry-run) the search and its report; returns
    the last line printed."""
    out = inputs.out
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".auto.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SlimbertError(f"--out {out}: another `slimbert auto` is running there") from None
        return _search_locked(inputs, say)


def reported(inputs: Inputs, plan: Plan, study) -> str | None:
    """--report-only: where the search stands (study.progress). Judged under another --slo,
    the plan may keep other choices than the search had: those its trials began with count."""
    s, out = inputs.settings, inputs.out
    searched = study.user_attrs["fingerprint"]["choices"]
    known = {c.key for c in plan.choices}
    began = [read_choice(folder) for folder in trial_folders(out)]
    choices = plan.choices + [c for c in began if c.key not in known]
    trials = min(s.trials or len(searched), len(searched))
    return progress(study, choices, trials, s.seconds(), total=len(searched))


def run_trials(
    inputs: Inputs, plan: Plan, setup: TrialSetup, study, teacher: Row, say
) -> str | None:
    """The trials within the budget, then the leaders' promotion; why the search stopped
    early, if it did."""
    s, out = inputs.settings, inputs.out
    found = Search(
        study,
        plan.choices,
        plan.bound.statistic,
        plan.bound.limit_ms,
        exhaustive=s.sampler == "exhaustive",
    )
    width = max(9, *(len(c.shape.name) + 1 for c in plan.choices))
    board = Board(teacher.metric_name, plan.slo.statistic, shape_width=width)
    steps = plan.promote_steps
    kept = reserve(out, plan.slo, teacher, plan.steps, steps, s.promotions, study)
    say("")
    Runner(found, setup, out, board.event, kept).run(plan.trials, s.seconds())
    say("")
    stopped = study.user_attrs.get("stopped")
    promotion = promote_leaders(
        out, plan.slo, teacher, setup, study, steps, s.promotions, s.seconds(), say
    )
    study.set_user_attr("promotion", promotion)
    return stopped


def count_setup(study, seconds: float) -> None:
    """Add a run's setup (the probes, the teacher's scoring: cached ones cost next to nothing
    again) to the study's budget count, and keep it apart for the report."""
    for key in ("seconds", SETUP_SECONDS):
        study.set_user_attr(key, study.user_attrs.get(key, 0.0) + seconds)


def _search_locked(inputs: Inputs, say) -> str:
    s, out = inputs.settings, inputs.out
    began = time.monotonic()
    if s.dry_run and s.report_only:
        raise SlimbertError("--dry-run and --report-only: give one (the plan, or the report)")
    if s.report_only and not (out / "study.db").is_file():
        raise SlimbertError(
            f"--out {out}: no search to report (no study.db); run without --report-only first"
        )
    plan, timing = plan_search(inputs, say)
    for line in plan.lines():
        say(line)
    if s.dry_run:
        return "dry run: nothing trained"
    if not plan.choices:
        fastest = min((p for p in plan.probes if p.latency_ms), key=lambda p: p.fastest()[1])
        precision, ms = fastest.fastest()
        return (
            f"No candidate can meet {plan.slo}"
            + (f" ({plan.bound} here)" if plan.slo.relative else "")
            + f": the fastest shape, {fastest.shape.name} "
            f"({precision}), takes {ms:.2f} ms; relax the SLO or give smaller --depths/"
            "--widths."
        )
    teacher = score_teacher(inputs.teacher, timing, out, s.optimize, say)
    setup = TrialSetup(
        inputs.teacher,
        tuple(data_flags(inputs.data)),
        inputs.data.transfer,
        tuple(setting_flags(inputs.train, TRIAL_TRAIN_FLAGS)),
        plan.steps,
        s.evaluations,
        timing,
        s.optimize,
        plan.teacher.metric_name,
        qat_rescue(inputs, teacher.metric, timing),
    )
    study = open_study(
        out,
        fingerprint(inputs, plan, setup),
        s.sampler,
        s.pruner,
        inputs.train.seed,
        judging=s.report_only,
    )
    if s.report_only:
        stopped = reported(inputs, plan, study)
    else:
        count_setup(study, time.monotonic() - began)
        stopped = run_trials(inputs, plan, setup, study, teacher, say)
    if stopped:
        say(f"Search {stopped}.")
    promotion = study.user_attrs.get("promotion")
    if promotion:
        say(f"Promotion: {promotion}.")
    seconds = study.user_attrs.get("seconds", 0.0)
    return finish(
        out,
        teacher,
        plan.slo,
        s.max_drop,
        seconds,
        stopped,
        (inputs.teacher, timing),
        timing,
        promotion,
    )
