"""Hinton logit distillation into a DistilBERT-style student built from the teacher's layers.

    loss = alpha · T² · KL(softmax(teacher / T) ‖ softmax(student / T))
           + (1 − alpha) · CE(student, gold)

(regression: MSE to the teacher's output in place of the soft term, MSE to the gold score in
place of CE). The student keeps `layers` of the teacher's layers chosen by `--layer-map`
(`compress.students.map_layers`: evenly with the top one kept, by default), plus the teacher's
embeddings and classifier. Teacher logits on the training set come from the cache.

`--cosine-weight w` adds DistilBERT's third term, w · mean over real tokens of
1 − cos(student's last hidden state, teacher's), the teacher run live (no gradient) beside the
cached logits; it needs the two to share tokens and width, so it refuses --student-base and a
narrower --student-init.

BERT-of-Theseus's baseline, the teacher's first k layers fine-tuned on the labels alone, is this
method with `--layers k --layer-map bottom --alpha 0` (`KDConfig.first_layers(k)`,
recipes/kd-first-layers.yaml): the student is teacher layers 0..k−1 under the teacher's
embeddings and classifier, as Theseus's `--init first` starts its successor, and no soft term
reaches it.

References: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015);
Sanh et al., "DistilBERT" (2019), for initialising the student from the teacher's layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from slimbert.batches import TaskData, evaluator
from slimbert.compress.method import Job, Method, open_job, student_record
from slimbert.compress.start import base_student, retokenized, start_student, student_base_record
from slimbert.compress.students import (
    StudentShape,
    ffn_size_setting,
    heads_setting,
    hidden_size_setting,
    map_layers,
    student_init_setting,
)
from slimbert.compress.teaching_step import (
    check_teacher_weights,
    ensemble_logits,
    normalised_weights,
)
from slimbert.errors import SlimbertError
from slimbert.families import family_of
from slimbert.models import (
    device,
    save_model,
    seed_everything,
)
from slimbert.record import ModelRecord
from slimbert.settings import setting
from slimbert.teachers.others import (
    PREVIOUS_MODEL_HELP,
    compare_with_previous,
    open_previous,
    other_teacher_logits,
)
from slimbert.training.config import TrainResult, train_loader
from slimbert.training.logits_cache import teacher_logits
from slimbert.training.losses import (
    LossTerm,
    cached_logits_step,
    hard_loss,
    hidden_cosine_loss,
    kd_loss,
)
from slimbert.training.route import describe as describe_route
from slimbert.training.route import soft_targets, train_stages
from slimbert.training.state import RunFiles

ROUTE_HELP = (
    "The teacher's route (train-teacher --save-route): distil from its checkpoints in order, "
    "splitting the step budget, before the teacher."
)


@dataclass
class KDConfig:
    """temperature: softens both distributions; alpha: weight of the soft term (1 − alpha on the
    hard labels); layers: student depth."""

    layers: int = setting(
        3,
        "Student depth; which of the teacher's layers it keeps is --layer-map's choice.",
        min=1,
    )
    layer_map: str = setting(
        "uniform",
        "The teacher layers the student keeps: uniform (evenly, top kept: 6→3 keeps 1, 3, 5), "
        "bottom (the first --layers: with --alpha 0 this is BERT-of-Theseus's baseline, the "
        "teacher's first k layers fine-tuned on the labels), top, or teacher layers like 0,2,5. "
        "With --student-base the layers are that model's.",
    )
    temperature: float = setting(
        2.0, "Softmax temperature T of the soft loss (scaled by T²).", min=0, min_open=True
    )
    alpha: float = setting(
        0.5, "Weight of the soft loss; 1 − alpha goes to the hard labels.", min=0, max=1
    )
    cosine_weight: float = setting(
        0.0,
        "Weight of DistilBERT's cosine term: 1 − cos(student's last hidden states, the "
        "teacher's), token by token over real tokens, pulling the student's representation "
        "toward the teacher's direction, not only its logits. The teacher runs beside the "
        "student on every batch (about one more forward per step); it needs the same tokens "
        "and width (not with --student-base or a narrower --student-init). 0 = off.",
        min=0,
    )
    hidden_size: int | None = hidden_size_setting(
        "Student hidden size (default: the teacher's). A narrower student has fresh random "
        "weights throughout (no tensor of the teacher fits): distillation without pre-training, "
        "the baseline a general step (--student-init) is measured against."
    )
    heads: int | None = heads_setting()
    ffn_size: int | None = ffn_size_setting()
    student_init: Path | None = student_init_setting()
    teacher_route: Path | None = setting(None, ROUTE_HELP)
    teacher_weights: tuple[float, ...] | None = setting(
        None,
        "One weight per --teacher, in order: the soft labels are Σ w_k z_k / Σ w (default: the "
        "plain mean of every teacher's logits). The first teacher gives the layers and tokens; "
        "the others may read their own.",
    )
    previous_model: Path | None = setting(None, PREVIOUS_MODEL_HELP)
    student_base: str | None = setting(
        None,
        "Cut the student from this pre-trained model instead of the teacher (a directory, a Hub "
        "name or 'minilm-l6'; any family and tokenizer): --layers of its layers picked evenly, "
        "reading with its own tokenizer. The teacher's soft labels are per example, so the "
        "tokenizers need not agree (minilm and tinybert take one too when the two cut every row "
        "into the same word pieces).",
    )

    def __post_init__(self) -> None:
        if self.student_base is not None and self.student_init is not None:
            raise SlimbertError(
                "--student-base and --student-init both name the student's start; give one"
            )
        sized = [
            flag
            for flag, value in (
                ("--hidden-size", self.hidden_size),
                ("--heads", self.heads),
                ("--ffn-size", self.ffn_size),
            )
            if value is not None
        ]
        start = "--student-base" if self.student_base else "--student-init"
        if sized and (self.student_base is not None or self.student_init is not None):
            raise SlimbertError(
                f"{' and '.join(sized)} shape a fresh student, but {start} brings its own "
                "shape; drop one"
            )
        if self.cosine_weight > 0 and self.student_base is not None:
            raise SlimbertError(
                "--cosine-weight compares the student's hidden states with the teacher's token "
                "by token, but --student-base reads other tokens; drop one"
            )
        if self.cosine_weight > 0 and self.teacher_route is not None:
            raise SlimbertError(
                "--cosine-weight reads the teacher's hidden states, which a --teacher-route "
                "checkpoint's cached logits do not carry; drop one"
            )
        if self.student_init is not None and self.layer_map != "uniform":
            raise SlimbertError(
                f"--layer-map {self.layer_map} picks teacher layers, but --student-init replaces "
                "the student's encoder with its own; drop one"
            )

    @classmethod
    def first_layers(cls, layers: int = 3) -> KDConfig:
        """BERT-of-Theseus's baseline: the teacher's first `layers` layers, fine-tuned on the
        gold labels alone."""
        return cls(layers=layers, layer_map="bottom", alpha=0.0)


def loss_terms(config: KDConfig) -> list[LossTerm]:
    terms = [
        LossTerm("soft", config.alpha, kd_loss(config.temperature)),
        LossTerm("hard", 1.0 - config.alpha, hard_loss),
    ]
    if config.cosine_weight > 0:
        terms.append(LossTerm("cosine", config.cosine_weight, hidden_cosine_loss()))
    return terms


def soft_labels(job: Job, kd: KDConfig, loaded, data: TaskData) -> tuple[torch.Tensor, dict]:
    """The soft labels (N, C) on the training rows: the first teacher's cached logits, or the
    weighted mean over every --teacher (each read with its own tokenizer); and the eval figures
    of the teachers after the first."""
    if kd.alpha == 0 and (len(job.teachers) > 1 or kd.teacher_weights):
        raise SlimbertError(
            "--alpha 0 trains on the gold labels alone, so a second --teacher or "
            "--teacher-weights would do nothing; drop it or give --alpha > 0"
        )
    check_teacher_weights(kd.teacher_weights, len(job.teachers))
    on = device(job.train.device)
    logits = [teacher_logits(loaded.model, job.teacher, data, fingerprint=loaded.fingerprint,
                             device=on)]  # fmt: skip
    metrics = {}
    for path in job.teachers[1:]:
        other, metrics[str(path)] = other_teacher_logits(
            Path(path), job.data, data, loaded.tokenizer, on
        )
        logits.append(other)
    weights = normalised_weights(kd.teacher_weights, len(logits))
    return ensemble_logits(logits, weights), {"weights_used": weights, "teacher_metrics": metrics}


def cosine_teacher(teacher: nn.Module, student: nn.Module, kd: KDConfig, on) -> nn.Module | None:
    """The teacher whose hidden states the cosine term reads, frozen on the student's device;
    None without the term. Refuses a student of another width in one line."""
    if kd.cosine_weight == 0:
        return None
    widths = [family_of(m.config).size(m.config, "width") for m in (student, teacher)]
    if widths[0] != widths[1]:
        raise SlimbertError(
            f"--cosine-weight compares hidden states of one width, but the student is "
            f"{widths[0]} wide and the teacher {widths[1]}; drop --cosine-weight or give a "
            "student of the teacher's width"
        )
    return teacher.eval().requires_grad_(False).to(on)


def run(job: Job, kd: KDConfig) -> tuple[TrainResult, ModelRecord]:
    """The teacher may be a professor ensemble: its logits teach, its best member gives the
    student's layers. `student_init` (from pretrain-student) replaces the student's embeddings
    and encoder before training. `teacher_route` (train-teacher --save-route) splits the step
    budget over the teacher's checkpoints, easy to hard, before the teacher itself
    (training/route.py)."""
    config = job.train
    opening = open_job(job)
    loaded, data = opening.teacher, opening.data
    teacher, tokenizer = loaded.layers, loaded.tokenizer
    loaded_tokenizer = tokenizer  # the first teacher's: --student-base replaces `tokenizer`
    previous = open_previous(kd.previous_model, data) if kd.previous_model else None
    cached, teachers = soft_labels(job, kd, loaded, data)
    seed_everything(config.seed)
    student_data = data
    if kd.student_base is not None:
        student, tokenizer, layers = base_student(
            kd.student_base, kd.layers, data, config.seed, kd.layer_map
        )
        student_data = retokenized(data, tokenizer)
        init = None
    else:
        layers = map_layers(
            family_of(teacher.config).size(teacher.config, "depth"), kd.layers, kd.layer_map
        )
        shape = StudentShape(kd.layers, kd.hidden_size, kd.heads, kd.ffn_size)
        student, _, init = start_student(teacher, shape, layers, config.seed, kd.student_init)
    live = cosine_teacher(teacher, student, kd, device(config.device))
    loader = train_loader(student_data.train_set, config)
    # (stage, (N, C) logits) for every checkpoint of the route, then the teacher's own: each
    # read on the teacher's tokens, looked up by row index
    stages = soft_targets(kd.teacher_route, job.teacher, teacher, data, cached, config, len(loader))
    del teacher, loaded, opening.teacher

    results = train_stages(
        student,
        loader,
        stages,
        cached_logits_step(loss_terms(kd), live),
        evaluator(student_data),
        f"kd-{kd.layers}L",
        run=RunFiles(job.out, config.resume),
    )
    result = results[-1]
    if previous is not None:
        teachers["previous_model"] = compare_with_previous(
            previous, job.data, data, loaded_tokenizer, student, student_data
        )
    record = student_record(
        "kd",
        job,
        opening,
        kd,
        result,
        layer_map=layers,
        steps=sum(r.steps for r in results),
        first_losses=results[0].losses[:5],
        teachers=[str(t) for t in job.teachers],
        details={
            "route": describe_route([stage for stage, _ in stages], results)
            if kd.teacher_route is not None
            else None,
            "student_init": init,
            "student_base": student_base_record(kd.student_base) if kd.student_base else None,
            **teachers,
        },
    )
    return result, save_model(student, tokenizer, job.out, record)


METHOD = Method(
    name="kd",
    config=KDConfig,
    run=run,
    summary="Hinton logit distillation into a student built from the teacher's own layers (or "
    "a pre-trained model, or fresh weights of a narrower shape).",
    stages=("distil",),
    several_teachers=True,
    notes=(
        "--alpha 0 trains on the labels alone; with --layer-map bottom that is BERT-of-Theseus's "
        "baseline, the teacher's first --layers layers fine-tuned (recipes/kd-first-layers.yaml)."
    ),
)
