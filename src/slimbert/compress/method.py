"""What a distillation method is, to the rest of slimbert.

A method is one module that ends with

    METHOD = Method(name="kd", config=KDConfig, run=run, summary="...", stages=("distil",))

where `KDConfig` is a dataclass whose fields are declared with `slimbert.settings.setting`
(help text and range in the field) and `run(job, config)` trains and saves the student. The
registry (compress/registry.py) finds every module of this package that defines a `METHOD`;
from it the CLI makes `slimbert compress NAME`, the recipe loader checks `--recipe` files and
`slimbert experiment` runs a method's students, so a new method is its module and nothing else.

Every method opens the same way (`open_job`: load the teacher, read the data with the
teacher's tokenizer and labels, score the teacher on the eval set) and records the same
provenance (`student_record`, the students' slimbert.json).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slimbert.batches import DataSpec, TaskData, evaluator, prepare
from slimbert.errors import SlimbertError
from slimbert.record import ModelRecord
from slimbert.teachers.load import Teacher, load_teacher
from slimbert.training.config import TrainConfig, TrainResult, training_record


@dataclass(frozen=True)
class Job:
    """What every method is handed: its teachers (the first gives the tokenizer, labels and, for
    transformer students, the layers), the data, where the student goes, and optimisation."""

    teachers: tuple[Path, ...]
    data: DataSpec
    out: Path
    train: TrainConfig

    def __post_init__(self) -> None:
        if not self.teachers:
            raise SlimbertError("no --teacher given; name at least one teacher directory")

    @property
    def teacher(self) -> Path:
        return Path(self.teachers[0])


RunFn = Callable[[Job, Any], tuple[TrainResult, ModelRecord]]


@dataclass(frozen=True)
class Method:
    """A registry entry.

    name:             the subcommand, `slimbert compress NAME`
    config:           the method's settings dataclass (fields declared with `setting`)
    run:              run(job, config) -> (final stage's TrainResult, the saved record)
    summary:          one line for `slimbert compress --help`
    stages:           the training stages in order, for the help text and reports
    notes:            a paragraph more for `slimbert compress NAME --help` (e.g. how to run
                      the method's baseline)
    several_teachers: --teacher may be repeated (the first is the primary)
    train_defaults:   optimisation defaults that differ from TrainConfig's (e.g. a higher lr
                      for students trained from scratch)
    """

    name: str
    config: type
    run: RunFn
    summary: str
    stages: tuple[str, ...] = ("distil",)
    notes: str = ""
    several_teachers: bool = False
    train_defaults: dict[str, Any] = field(default_factory=dict)


@dataclass
class Opening:
    """The loaded teacher, the data it reads, and its eval figures, as every method starts."""

    teacher: Teacher
    data: TaskData
    teacher_metric: dict[str, float]
    teacher_record: ModelRecord


def open_job(job: Job) -> Opening:
    """Load the primary teacher (a classifier or an ensemble), read the data with its tokenizer
    and label map, and score it on the eval set."""
    teacher = load_teacher(job.teacher)
    data = prepare(job.data, teacher.tokenizer, label_map=teacher.label_map, task=teacher.task)
    return Opening(teacher, data, evaluator(data)(teacher.model).values, teacher.record)


def plain(value: Any) -> Any:
    """A settings value as JSON can hold it (paths as text)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def student_record(
    method: str,
    job: Job,
    opening: Opening,
    config: Any,
    result: TrainResult,
    details: dict | None = None,
    stages: dict[str, dict] | None = None,
    **changes: Any,
) -> ModelRecord:
    """The record (slimbert.json) every student carries: what taught it, with which settings,
    on which data, and how training went (`result`, the final stage's). `details` is what the
    method adds; `stages` its stages' `stage_record`s by name, kept in details with each one's
    first losses as the record's; `changes` sets or overrides fields (a method that trains in
    several passes counts all their steps)."""
    teacher = opening.teacher_record
    details = dict(details or {})
    if stages is not None:
        details["stages"] = stages
        changes.setdefault(
            "first_losses", {k: stage["first_losses"] for k, stage in stages.items()}
        )
    values = {
        "teacher_metric": opening.teacher_metric,
        "method_config": plain(asdict(config)),
        **training_record(result, job.train, opening.data),
        "teacher_meta": {
            "method": teacher.method,
            "base": teacher.base,
            "metric": teacher.metric or None,
        },
        **changes,
    }
    return ModelRecord(
        role="student", method=method, teacher=str(job.teacher), details=details, **values
    )


def stage_record(result: TrainResult) -> dict:
    """One training stage's figures, for methods with several stages."""
    return {
        "steps": result.steps,
        "best_step": result.best_step,
        "best": result.best.values if result.best else {},
        "history": result.history,
        "first_losses": result.losses[:5],
    }
