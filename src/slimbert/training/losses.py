"""Pure loss terms. Every term has one signature: (student, teacher, batch) -> scalar tensor.

A method is a list of `LossTerm`s; the trainer logs each term's unweighted value so a user can
see which one moves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from slimbert.training.outputs import Outputs, forward

TermFn = Callable[[Outputs, Outputs | None, dict[str, torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class LossTerm:
    name: str
    weight: float
    fn: TermFn


def soft_cross_entropy(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Hinton et al. (2015): KL(softmax(t/T) ‖ softmax(s/T)) · T², mean over the batch.

    The T² keeps the soft term's gradient scale independent of T. KL differs from the soft
    cross-entropy only by the teacher's entropy, a constant for the student, and is 0 at a match.
    """
    # fp32 whatever the autocast: a bf16 log-softmax rounds the KL of close logits below 0
    log_student = F.log_softmax(student_logits.float() / temperature, dim=-1)  # (B, C)
    log_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)  # (B, C)
    kl = (log_teacher.exp() * (log_teacher - log_student)).sum(dim=-1)  # (B,)
    return kl.mean() * temperature**2


def hard_loss(
    student: Outputs, teacher: Outputs | None, batch: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Cross-entropy to the gold label (MSE for regression, where C = 1)."""
    if student.logits.shape[-1] == 1:
        return F.mse_loss(student.logits.squeeze(-1), batch["labels"].float())
    return F.cross_entropy(student.logits, batch["labels"])


def kd_loss(temperature: float) -> TermFn:
    """Soft loss at temperature T (regression: MSE to the teacher's output)."""

    def term(
        student: Outputs, teacher: Outputs | None, batch: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        assert teacher is not None, "kd_loss needs teacher outputs"
        if student.logits.shape[-1] == 1:
            return F.mse_loss(student.logits.float(), teacher.logits.float())
        return soft_cross_entropy(student.logits, teacher.logits, temperature)

    return term


def logit_mse(
    student: Outputs, teacher: Outputs | None, batch: dict[str, torch.Tensor]
) -> torch.Tensor:
    assert teacher is not None
    return F.mse_loss(student.logits.float(), teacher.logits.float())


def combine(
    terms: list[LossTerm], student: Outputs, teacher: Outputs | None, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the terms, and each term's unweighted value for the log."""
    total = student.logits.new_zeros(())
    logged: dict[str, float] = {}
    for term in terms:
        value = term.fn(student, teacher, batch)
        logged[term.name] = float(value.detach())
        if term.weight:
            total = total + term.weight * value
    return total, logged


# Feature terms any transformer recipe can use. Layer indices follow `Outputs`: hidden_states[0]
# is the embedding output and hidden_states[i] the output of encoder layer i − 1; attentions[i]
# is encoder layer i. Padding never counts: every mean runs over real tokens only.


def _token_mask(student: Outputs) -> torch.Tensor:
    return student.attention_mask.float()  # (B, T)


def masked_mse(
    student_states: torch.Tensor, teacher_states: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean squared error over real tokens: (B, T, H) × 2, mask (B, T) → scalar, in fp32."""
    mask = mask.float().unsqueeze(-1)  # (B, T, 1)
    squared = (student_states.float() - teacher_states.float()).pow(2) * mask  # (B, T, H)
    return squared.sum() / (mask.sum() * student_states.shape[-1]).clamp_min(1.0)


def hint_loss(pairs: list[tuple[int, int]], projection: torch.nn.Module | None = None) -> TermFn:
    """FitNets (Romero et al. 2015): MSE between W·student hidden state and the teacher's, summed
    over (student index, teacher index) pairs of `hidden_states`. `projection` is the learned
    regressor W: (B, T, H_student) → (B, T, H_teacher); None when the widths already match."""

    def term(
        student: Outputs, teacher: Outputs | None, batch: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        assert (
            teacher is not None
            and student.hidden_states is not None
            and teacher.hidden_states is not None
        ), "hint_loss needs hidden states of both models"
        total = student.logits.new_zeros(())
        for s, t in pairs:
            states = student.hidden_states[s]  # (B, T, H_s)
            if projection is not None:
                states = projection(states)  # (B, T, H_t)
            total = total + masked_mse(states, teacher.hidden_states[t], student.attention_mask)
        return total

    return term


def hidden_cosine_loss(
    student_index: int = -1, teacher_index: int = -1, projection: torch.nn.Module | None = None
) -> TermFn:
    """DistilBERT (Sanh et al. 2019): 1 − cos(student, teacher) per real token, mean, on one
    pair of hidden states (default: the last of each). Widths must match unless `projection`."""

    def term(
        student: Outputs, teacher: Outputs | None, batch: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        assert (
            teacher is not None
            and student.hidden_states is not None
            and teacher.hidden_states is not None
        ), "hidden_cosine_loss needs hidden states of both models"
        states = student.hidden_states[student_index]  # (B, T, H)
        if projection is not None:
            states = projection(states)
        cosine = F.cosine_similarity(
            states.float(), teacher.hidden_states[teacher_index].float(), dim=-1
        )  # (B, T)
        mask = _token_mask(student)
        return ((1.0 - cosine) * mask).sum() / mask.sum().clamp_min(1.0)

    return term


def attention_kl(pairs: list[tuple[int, int]]) -> TermFn:
    """KL(teacher attention ‖ student attention) per query row, summed over (student layer,
    teacher layer) pairs; mean over heads and real query rows. Maps are (B, nh, T, T) softmaxed
    probabilities; when head counts differ both sides are averaged over their heads first."""

    def term(
        student: Outputs, teacher: Outputs | None, batch: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        assert (
            teacher is not None
            and student.attentions is not None
            and teacher.attentions is not None
        ), "attention_kl needs attention maps of both models"
        rows = _token_mask(student)[:, None, :]  # (B, 1, T) real query rows
        tiny = torch.finfo(torch.float32).tiny
        total = student.logits.new_zeros(())
        for s, t in pairs:
            student_map = student.attentions[s].float()  # (B, nh, T, T)
            teacher_map = teacher.attentions[t].float()
            if student_map.shape[1] != teacher_map.shape[1]:
                student_map, teacher_map = (
                    student_map.mean(1, keepdim=True),
                    teacher_map.mean(1, keepdim=True),
                )
            kl = (
                teacher_map
                * (teacher_map.clamp_min(tiny).log() - student_map.clamp_min(tiny).log())
            ).sum(-1)  # (B, nh, T)
            total = total + (kl * rows).sum() / (rows.sum() * kl.shape[1]).clamp_min(1.0)
        return total

    return term


def cached_logits_step(terms: list[LossTerm], teacher: torch.nn.Module | None = None) -> Callable:
    """`step_for(targets)`: the training step that distils from fixed soft targets (N, C), looked
    up by each batch's row indices — the teacher's cached logits, or a route checkpoint's.

    With `teacher` (frozen, in eval mode, on the student's device) each batch also runs it, with
    no gradient, for the hidden states a feature term reads (`hidden_cosine_loss`); the student
    then returns its hidden states too."""

    def step_for(targets: torch.Tensor):
        def step(model, batch):
            states = teacher is not None
            student_out = forward(model, batch, hidden_states=states)
            teacher_states = None
            if teacher is not None:
                with torch.no_grad():
                    teacher_states = forward(teacher, batch, hidden_states=True).hidden_states
            teacher_out = Outputs(
                logits=targets[batch["idx"].cpu()].to(student_out.logits.device),
                attention_mask=batch["attention_mask"],
                hidden_states=teacher_states,
            )
            return combine(terms, student_out, teacher_out, batch)

        return step

    return step_for
