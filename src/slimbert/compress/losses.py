"""Pure loss terms. Every term has one signature: (student, teacher, batch) -> scalar tensor.

A method is a list of `LossTerm`s; the trainer logs each term's unweighted value so a user can
see which one moves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from slimbert.compress.outputs import Outputs

TermFn = Callable[[Outputs, Outputs | None, dict[str, torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class LossTerm:
    name: str
    weight: float
    fn: TermFn


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al. (2015): KL(softmax(t/T) ‖ softmax(s/T)) · T², mean over the batch.

    The T² keeps the soft term's gradient scale independent of T. KL differs from the soft
    cross-entropy only by the teacher's entropy, a constant for the student, and is 0 at a match.
    """
    log_student = F.log_softmax(student_logits / temperature, dim=-1)  # (B, C)
    log_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)  # (B, C)
    kl = (log_teacher.exp() * (log_teacher - log_student)).sum(dim=-1)  # (B,)
    return kl.mean() * temperature**2


def hard_loss(student: Outputs, teacher: Outputs | None, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy to the gold label (MSE for regression, where C = 1)."""
    if student.logits.shape[-1] == 1:
        return F.mse_loss(student.logits.squeeze(-1), batch["labels"].float())
    return F.cross_entropy(student.logits, batch["labels"])


def kd_loss(temperature: float) -> TermFn:
    """Soft loss at temperature T (regression: MSE to the teacher's output)."""

    def term(student: Outputs, teacher: Outputs | None, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        assert teacher is not None, "kd_loss needs teacher outputs"
        if student.logits.shape[-1] == 1:
            return F.mse_loss(student.logits, teacher.logits)
        return soft_cross_entropy(student.logits, teacher.logits, temperature)

    return term


def logit_mse(student: Outputs, teacher: Outputs | None, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    assert teacher is not None
    return F.mse_loss(student.logits, teacher.logits)


def combine(terms: list[LossTerm], student: Outputs, teacher: Outputs | None, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the terms, and each term's unweighted value for the log."""
    total = student.logits.new_zeros(())
    logged: dict[str, float] = {}
    for term in terms:
        value = term.fn(student, teacher, batch)
        logged[term.name] = float(value.detach())
        if term.weight:
            total = total + term.weight * value
    return total, logged
