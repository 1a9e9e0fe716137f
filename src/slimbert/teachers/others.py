"""Teachers beyond the first, and the previous production model a new student is checked
against.

    other_teacher_logits   a second (third, ...) --teacher's logits on the same training rows,
                           each read with its own tokenizer, cached, and its eval figures
    compare_with_previous  the new student's eval predictions against those of the model it
                           would replace (--previous-model), what a team checks before swapping:
                             agreement     % of eval rows where both predict the same label
                             recall        % of the rows the previous model predicts positive
                                           that the student predicts positive too (binary tasks;
                                           the positive label is --positive-label's)
                             kept_correct  % of the rows the previous model gets right that the
                                           student gets right too
                             new_errors    rows the previous model gets right and the student
                                           gets wrong
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from slimbert.batches import DataSpec, TaskData, evaluator, make_loader, predict_logits, prepare
from slimbert.data import REGRESSION
from slimbert.errors import SlimbertError
from slimbert.metrics import compute_metrics
from slimbert.teachers.load import Teacher, load_teacher
from slimbert.training.logits_cache import teacher_logits

PREVIOUS_MODEL_HELP = (
    "The model this student would replace in production (any slimbert model directory): after "
    "training, slimbert.json records its eval figures and the student's agreement with it, "
    "its recall of the rows it predicts positive, and the share of its correct rows the "
    "student keeps. To also learn from it, give it as a --teacher as well."
)


def read_with(other: Teacher, spec: DataSpec, data: TaskData, tokenizer) -> TaskData:
    """`data` as `other` reads it: the same rows, tokenised its own way when its vocabulary
    differs from `tokenizer`'s, which encoded `data`."""
    same_tokens = (
        type(other.tokenizer) is type(tokenizer)
        and other.tokenizer.get_vocab() == tokenizer.get_vocab()
    )
    if same_tokens:
        return data
    return prepare(spec, other.tokenizer, label_map=data.label_map, task=data.task)


def check_same_labels(other: Teacher, data: TaskData, flag: str) -> None:
    if other.task != data.task or other.label_map.id2label != data.label_map.id2label:
        raise SlimbertError(
            f"{flag} {other.path}: predicts {other.task} labels {other.label_map.id2label}, "
            f"the first teacher {data.task} labels {data.label_map.id2label}; "
            "every model must share the label set"
        )


def other_teacher_logits(
    path: Path, spec: DataSpec, data: TaskData, tokenizer, on: torch.device
) -> tuple[torch.Tensor, dict]:
    """Cached logits (N, C) of another teacher on `data`'s training rows, tokenised its own way,
    and its eval figures."""
    other = load_teacher(path)
    check_same_labels(other, data, "--teacher")
    own = read_with(other, spec, data, tokenizer)
    logits = teacher_logits(other.model, path, own, fingerprint=other.fingerprint, device=on)
    return logits, evaluator(own)(other.model).values


def open_previous(path: Path, data: TaskData) -> Teacher:
    """The previous production model, checked before any training: a classifier of the same
    labels."""
    if data.task == REGRESSION:
        raise SlimbertError(
            f"--previous-model {path}: agreement and recall compare predicted labels, and this "
            "task is regression; drop --previous-model"
        )
    previous = load_teacher(path, flag="--previous-model")
    check_same_labels(previous, data, "--previous-model")
    return previous


def eval_logits(model, data: TaskData) -> np.ndarray:
    """The model's logits (N, C) on the eval rows, in file order."""
    loader = make_loader(data.eval_set, 64, shuffle=False, group_by_length=True)
    return predict_logits(model, loader, next(model.parameters()).device)


def agreement(
    student: np.ndarray, previous: np.ndarray, gold: np.ndarray, positive: int | None
) -> dict:
    """Predicted labels (N,) of the student and the previous model against each other and the
    gold labels (N,): percentages, and the count of new errors."""
    right_before = previous == gold
    predicted_positive = previous == positive
    return {
        "agreement": float(np.mean(student == previous)) * 100,
        "recall": float(np.mean(student[predicted_positive] == positive)) * 100
        if positive is not None and predicted_positive.any()
        else None,
        "kept_correct": float(np.mean(student[right_before] == gold[right_before])) * 100
        if right_before.any()
        else None,
        "new_errors": int(np.sum(right_before & (student != gold))),
        "rows": int(len(gold)),
    }


def compare_with_previous(
    previous: Teacher, spec: DataSpec, data: TaskData, tokenizer, student, student_data: TaskData
) -> dict:
    """The record slimbert.json keeps under `previous_model`: the previous model's eval figures
    and `agreement` of the student's eval predictions (read on `student_data`) with its own."""
    own = read_with(previous, spec, data, tokenizer)
    previous_logits = eval_logits(previous.model, own)
    student_labels = eval_logits(student, student_data).argmax(-1)
    positive = data.scoring.positive_id(data.label_map, previous_logits.shape[-1])
    gold = np.asarray(data.eval_targets)
    figures = compute_metrics(previous_logits, data.eval_targets, data.task, data.label_map,
                              data.scoring)  # fmt: skip
    return {
        "path": str(previous.path),
        "metric": figures.values,
        **agreement(student_labels, previous_logits.argmax(-1), gold, positive),
    }
