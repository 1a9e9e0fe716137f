"""How the students without attention (textcnn, bilstm, tree) are taught: one loop, three ways.

    offline   every teacher's logits on the training set come from the on-disk cache
              (`slimbert.training.logits_cache`); only the student trains
    joint     the first teacher trains alongside the student on the gold labels (its own
              learning rate); the student's soft loss reads its live logits
                summed:       one step on the student's loss plus the teacher's CE
                alternating:  the teacher steps on its CE, then the student on its fresh
                              logits (compress/teaching_step.py draws both)
                isolated:     the soft loss sees teacher logits .detach(): only the labels
                              move the teacher
                not isolated: the soft loss's gradient reaches the teacher as well, pulling it
                              toward what the student can imitate
    several   two or more teachers: the soft target is the mean of their logits, or a weighted
              mean Σ_k w_k z_k / Σ_k w_k; one of them may be the previous production model
              the new student must stay close to (any slimbert model directory, a student too)

The loss is the kd recipe, alpha · T² · KL(softmax(z_teacher / T) ‖ softmax(z_student / T)) +
(1 − alpha) · CE(student, gold) (regression: MSEs; --soft-loss mse: MSE between logits), plus
the teacher's own CE in joint mode and the architecture's own penalty (the tree's balance term)
when it has one. alpha = 0 trains on the gold labels alone: the baseline rows. `--teacher-route`
distils from the first teacher's route checkpoints (offline) before the final stage (see
training/route.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimbert.batches import evaluator, prepare
from slimbert.compress.method import Job
from slimbert.compress.teaching_step import (
    JOINT_UPDATES,
    SoftTargets,
    TeacherStep,
    batch_step,
    check_alternating,
    check_teacher_weights,
    normalised_weights,
)
from slimbert.errors import SlimbertError
from slimbert.models import device, seed_everything
from slimbert.networks.configs import PROJECTIONS, StudentConfig
from slimbert.networks.files import build_network, save_student
from slimbert.record import ModelRecord
from slimbert.settings import setting
from slimbert.teachers.load import load_teacher
from slimbert.teachers.others import (
    PREVIOUS_MODEL_HELP,
    compare_with_previous,
    open_previous,
    other_teacher_logits,
)
from slimbert.training.config import (
    TrainConfig,
    TrainResult,
    planned_steps,
    train_loader,
    training_record,
)
from slimbert.training.logits_cache import teacher_logits
from slimbert.training.loop import train
from slimbert.training.losses import LossTerm, hard_loss, kd_loss, logit_mse
from slimbert.training.route import Stage, describe, plan, route_logits
from slimbert.training.state import RunFiles

SOFT_LOSSES = ("kl", "mse")


@dataclass
class TeachingConfig:
    """Where a student's soft targets come from; a method's config adds the student's sizes.
    Every field is the flag of the same name.

    teacher_weights: one weight per --teacher, in order; None = plain mean of their logits
    joint:           train the first teacher with the student (else: its cached logits)
    joint_update:    joint only: "summed" (one step) or "alternating" (teacher, then student)
    isolated:        joint only: the student's soft loss does not reach the teacher
    teacher_lr:      joint only: the first teacher's peak learning rate
    temperature:     softmax temperature T of the soft loss (scaled by T²)
    alpha:           weight of the soft loss; 1 − alpha on the gold labels; 0 = labels only
    soft_loss:       "kl" (Hinton's T² · KL) or "mse" between logits (Tang et al.'s choice)
    teacher_route:   the first teacher's route (train-teacher --save-route) to distil from first
    previous_model:  the model the student would replace: compared with it after training
    """

    teacher_weights: tuple[float, ...] | None = setting(
        None,
        "One weight per --teacher, in order, for a weighted mean of their logits "
        "(default: the plain mean).",
    )
    joint: bool = setting(
        False,
        "Train the first teacher alongside the student on the labels (default: its cached logits).",
        secondary=False,
    )
    isolated: bool = setting(
        True,
        "With --joint: keep the student's soft loss from reaching the teacher (its logits are "
        "detached).",
        flag="--isolated/--not-isolated",
    )
    joint_update: str = setting(
        "summed",
        "With --joint, how teacher and student step on a batch. summed: one step on the "
        "student's loss plus the teacher's CE, both read from one forward. alternating: the "
        "teacher first steps on its own CE, then the student steps on the updated teacher's "
        "logits; --isolated keeps the student's loss off the teacher, --not-isolated lets it "
        "move the teacher a second time.",
        choices=JOINT_UPDATES,
    )
    teacher_lr: float = setting(
        2e-5, "With --joint: the teacher's peak learning rate.", min=0, min_open=True
    )
    temperature: float = setting(
        2.0, "Softmax temperature T of the soft loss (scaled by T²).", min=0, min_open=True
    )
    alpha: float = setting(
        0.5,
        "Weight of the soft loss; 1 − alpha goes to the labels; 0 trains on the labels alone "
        "(the baseline).",
        min=0,
        max=1,
    )
    soft_loss: str = setting(
        "kl",
        "kl: Hinton's soft cross-entropy; mse: MSE between logits (Tang et al.).",
        choices=SOFT_LOSSES,
    )
    previous_model: Path | None = setting(None, PREVIOUS_MODEL_HELP)
    teacher_route: Path | None = setting(
        None,
        "The first teacher's route (train-teacher --save-route): distil from its checkpoints "
        "in order, splitting the step budget, first.",
    )

    @property
    def distils(self) -> bool:
        return self.alpha > 0

    def teaching(self) -> dict:
        """The teaching fields alone (a method's config carries its sizes too)."""
        return {f.name: getattr(self, f.name) for f in fields(TeachingConfig)}

    def check(self, teachers: int, train: TrainConfig | None = None) -> None:
        """Refuse, in one line, flags that would do nothing or cannot run together (`train`:
        the run's training settings, which the alternating update restricts)."""
        if not self.distils and (
            self.joint or self.teacher_route is not None or teachers > 1 or self.teacher_weights
        ):
            used = (
                "--joint"
                if self.joint
                else "--teacher-route"
                if self.teacher_route is not None
                else "--teacher-weights"
                if self.teacher_weights
                else "a second --teacher"
            )
            raise SlimbertError(
                f"--alpha 0 trains on the gold labels alone, so {used} would do nothing; "
                "drop it or give --alpha > 0"
            )
        check_teacher_weights(self.teacher_weights, teachers)
        if self.joint_update not in JOINT_UPDATES:
            raise SlimbertError(
                f"--joint-update {self.joint_update!r}: choose one of {', '.join(JOINT_UPDATES)}"
            )
        if self.joint_update != "summed" and not self.joint:
            raise SlimbertError(
                f"--joint-update {self.joint_update} says how a teacher trained alongside steps, "
                "but the teacher is not trained (its logits are cached); add --joint or drop it"
            )
        if self.joint and self.joint_update == "alternating" and train is not None:
            check_alternating(train)
        if self.soft_loss not in SOFT_LOSSES:
            raise SlimbertError(
                f"--soft-loss {self.soft_loss!r}: choose one of {', '.join(SOFT_LOSSES)}"
            )
        if self.temperature <= 0 or not 0 <= self.alpha <= 1 or self.teacher_lr <= 0:
            raise SlimbertError("--temperature and --teacher-lr must be > 0 and --alpha in [0, 1]")


def embedding_dim_setting(default: int) -> Any:
    return setting(
        default, "Student embedding width E; the teacher's table is projected to it.", min=1
    )


def dropout_setting(default: float) -> Any:
    return setting(default, "Dropout before the classifier.", min=0, max=1, max_open=True)


@dataclass
class EmbeddingStudentMethod(TeachingConfig):
    """The flags every student over the teacher's embedding table shares (textcnn, bilstm,
    tree): the teacher signal and the table's sizes. A method redeclares embedding_dim or
    dropout (with embedding_dim_setting / dropout_setting) to change its default."""

    embedding_dim: int = embedding_dim_setting(300)
    projection: str = setting(
        "pca",
        "pca: own table = teacher table × fixed top-E SVD directions, trained; learned: "
        "teacher table frozen, projection trained.",
        choices=PROJECTIONS,
    )
    freeze_embeddings: bool = setting(
        False, "Keep the student's projected table fixed (--projection pca).", secondary=False
    )
    dropout: float = dropout_setting(0.5)

    def embedding_sizes(self) -> dict[str, Any]:
        """The StudentConfig fields these flags set."""
        return {
            "embedding_dim": self.embedding_dim,
            "projection": self.projection,
            "freeze_embeddings": self.freeze_embeddings,
            "dropout": self.dropout,
        }


def loss_terms(teaching: TeachingConfig) -> list[LossTerm]:
    if not teaching.distils:
        return [LossTerm("hard", 1.0, hard_loss)]
    soft = kd_loss(teaching.temperature) if teaching.soft_loss == "kl" else logit_mse
    return [
        LossTerm("soft", teaching.alpha, soft),
        LossTerm("hard", 1.0 - teaching.alpha, hard_loss),
    ]


def teach(
    job: Job,
    student_config: StudentConfig,
    teaching: TeachingConfig,
    penalty_weight: float = 0.0,
    inspect: Callable[[nn.Module, Any], dict] | None = None,
) -> tuple[TrainResult, ModelRecord]:
    """Build a `student_config` student from the first of the job's teachers, train it as
    `teaching` says, save it to job.out and return the final stage's result and the metadata
    written.

    penalty_weight weighs the student's own penalty (the tree's balance term); inspect(student,
    tokenizer) adds a description of the trained student to the metadata under its
    architecture's name."""
    teachers, spec, out, config = [Path(d) for d in job.teachers], job.data, job.out, job.train
    teacher_dir, *also_teachers = teachers
    teaching.check(len(teachers), config)
    if not teaching.distils and spec.transfer is not None:
        raise SlimbertError(
            "--alpha 0 is the gold-labels baseline, but --transfer adds rows labelled by the "
            "teacher; drop --transfer or give --alpha > 0"
        )
    student_config.check()
    method = student_config.architecture
    primary = load_teacher(teacher_dir)
    if teaching.joint and primary.is_ensemble:
        raise SlimbertError(
            f"--joint: {teacher_dir} is an ensemble; "
            "joint training needs one classifier directory as the first --teacher"
        )
    tokenizer, task, label_map = primary.tokenizer, primary.task, primary.label_map
    data = prepare(spec, tokenizer, label_map=label_map, task=task)
    previous = open_previous(teaching.previous_model, data) if teaching.previous_model else None
    evaluate = evaluator(data)
    teacher_metrics = {str(teacher_dir): evaluate(primary.model).values}
    seed_everything(config.seed)
    student = build_network(
        student_config, primary.layers, tokenizer, label_map, task, data.train.is_pair
    )
    loader = train_loader(data.train_set, config)
    on = device(config.device)  # where the teachers' cached passes run: the student's device
    stages = plan(teaching.teacher_route, Path(teacher_dir), config, len(loader))
    route_targets = {
        s.name: SoftTargets([route_logits(s, primary.layers, data, on)], [1.0])
        for s in stages
        if not s.final
    }

    final_targets = None
    joint_teacher = primary.model if teaching.joint else None
    if teaching.distils:
        cached: list[torch.Tensor | None] = [
            None
            if teaching.joint
            else teacher_logits(
                primary.model, teacher_dir, data, fingerprint=primary.fingerprint, device=on
            )
        ]
        for other_dir in also_teachers:
            logits, metrics = other_teacher_logits(Path(other_dir), spec, data, tokenizer, on)
            cached.append(logits)
            teacher_metrics[str(other_dir)] = metrics
        final_targets = SoftTargets(
            cached, normalised_weights(teaching.teacher_weights, len(cached))
        )
    del primary
    terms = loss_terms(teaching)

    def step_for(stage: Stage):
        if not stage.final:
            return batch_step(terms, route_targets[stage.name], None, True, penalty_weight)
        alternate = None
        if joint_teacher is not None and teaching.joint_update == "alternating":
            steps = planned_steps(stage.config, len(loader))
            alternate = TeacherStep(joint_teacher, teaching.teacher_lr, stage.config, steps)
        return batch_step(
            terms, final_targets, joint_teacher, teaching.isolated, penalty_weight, alternate
        )

    results = []
    run = RunFiles(out, config.resume)
    for stage in stages:
        joint = teaching.joint and stage.final
        results.append(
            train(
                student,
                loader,
                step_for(stage),
                evaluate,
                stage.config,
                extra_modules=[joint_teacher] if joint else None,
                extra_lrs=[teaching.teacher_lr] if joint else None,
                description=method if stage.final else f"{method} {stage.name}",
                run=run,
            )
        )
    result = results[-1]
    details = {
        "teacher_metrics": teacher_metrics,
        "route": describe(stages, results) if teaching.teacher_route is not None else None,
    }
    if joint_teacher is not None:
        joint_teacher.eval()
        details["joint_teacher_metric"] = evaluate(joint_teacher).values
    if previous is not None:
        details["previous_model"] = compare_with_previous(previous, spec, data, tokenizer,
                                                          student, data)  # fmt: skip
    if inspect is not None:
        details[method] = inspect(student.to("cpu").eval(), tokenizer)
    values = {
        **training_record(result, config, data),
        "steps": sum(r.steps for r in results),
        "first_losses": results[0].losses[:5],
    }
    record = ModelRecord(
        role="student",
        method=method,
        teacher=str(teacher_dir),
        teachers=[str(teacher_dir), *map(str, also_teachers)],
        teacher_metric=teacher_metrics[str(teacher_dir)],
        method_config=asdict(teaching),
        teaching=_teaching_record(teaching, len(teachers), final_targets),
        details=details,
        **values,
    )
    return result, save_student(student, tokenizer, out, record)


def _teaching_record(teaching: TeachingConfig, teachers: int, targets: SoftTargets | None) -> dict:
    """The record's `teaching`: the loss weights, the mode and the teachers' weights used."""
    weights = targets.weights if targets else None
    if not teaching.distils:
        mode = "hard-labels"
    elif teaching.joint:
        scheme = "joint" if teaching.joint_update == "summed" else "alternating"
        mode = f"{scheme}-isolated" if teaching.isolated else f"{scheme}-not-isolated"
    else:
        mode = "offline" if teachers == 1 else "several"
    return {**teaching.teaching(), "mode": mode, "weights_used": weights}
