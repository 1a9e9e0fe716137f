"""One batch of teaching a textcnn, bilstm or tree student: its soft targets, its loss, and how
a teacher trained alongside it (--joint) steps (compress/teaching.py runs the stages).

The joint updates, z the teacher's logits, L the student's loss (soft term on z plus labels):

    summed        one optimiser step on L(z) + CE(teacher, gold), z from the same forward as
                  the teacher's CE, read before anything moves
    alternating   on every batch, in this order:
                    1. the teacher steps on CE(teacher, gold) alone (AdamW at --teacher-lr)
                    2. z' = its logits after that step (a second forward of the batch)
                    3. the student steps on L(z')
                  --isolated:      z' is detached, so step 3 leaves the teacher where step 1 put it
                  --not-isolated:  step 3's gradient reaches the teacher as well, and the loop's
                                   optimiser moves it a second time, at --teacher-lr, toward
                                   logits the student can imitate

With --isolated the two differ in the logits the student reads: the teacher's before its step
on the batch (summed) or after it (alternating). With --not-isolated they differ as well in
what pulls on the teacher: one summed gradient, or its own CE step, then the student's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from slimbert.batches import model_inputs
from slimbert.errors import SlimbertError
from slimbert.training.config import TrainConfig
from slimbert.training.losses import LossTerm, combine, hard_loss
from slimbert.training.outputs import Outputs
from slimbert.training.records import world_size

JOINT_UPDATES = ("summed", "alternating")


def normalised_weights(weights: Sequence[float] | None, teachers: int) -> list[float]:
    """Weights summing to 1: equal for None (the plain mean), else w_k / Σ w."""
    if weights is None:
        return [1.0 / teachers] * teachers
    total = float(sum(weights))
    return [float(w) / total for w in weights]


def check_teacher_weights(weights: Sequence[float] | None, teachers: int) -> None:
    """One weight per --teacher, none negative, not all 0; else one line."""
    if weights is None:
        return
    if len(weights) != teachers:
        raise SlimbertError(
            f"--teacher-weights gives {len(weights)} weights for {teachers} --teacher; "
            "give one per --teacher, in the same order"
        )
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise SlimbertError(
            f"--teacher-weights {','.join(map(str, weights))}: weights must be ≥ 0 and not all 0"
        )


def ensemble_logits(logits: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """Σ_k w_k · z_k over teachers' logits z_k (B, C), for weights already summing to 1."""
    assert len(logits) == len(weights), (len(logits), len(weights))
    combined = logits[0] * weights[0]
    for z, w in zip(logits[1:], weights[1:], strict=True):
        combined = combined + z * w
    return combined  # (B, C)


@dataclass
class SoftTargets:
    """Per-batch teacher logits. cached: (N, C) per teacher, None marking the live joint
    teacher; weights: one per teacher, summing to 1."""

    cached: list[torch.Tensor | None]
    weights: list[float]

    def for_batch(
        self, batch: dict[str, torch.Tensor], live: torch.Tensor | None, device: torch.device
    ) -> torch.Tensor:
        index = batch["idx"].cpu()
        logits = [live if c is None else c[index].to(device) for c in self.cached]
        return ensemble_logits(logits, self.weights)  # (B, C)


def student_losses(
    student: nn.Module,
    batch: dict[str, torch.Tensor],
    terms: list[LossTerm],
    targets: SoftTargets | None,
    joint_teacher: nn.Module | None = None,
    isolated: bool = True,
    penalty_weight: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, float]]:
    """One batch: the student's weighted loss, the joint teacher's own CE (None when offline)
    and every unweighted term for the log. With isolated=True the student's loss has no path
    to the joint teacher's parameters."""
    result = student(**model_inputs(batch, student))
    mask = batch["attention_mask"]
    student_out = Outputs(logits=result.logits, attention_mask=mask)
    teacher_loss = live = None
    if joint_teacher is not None:
        joint_teacher.train()
        live = joint_teacher(**model_inputs(batch, joint_teacher)).logits  # (B, C)
        teacher_loss = hard_loss(Outputs(logits=live, attention_mask=mask), None, batch)
        if isolated:
            live = live.detach()
    teacher_out = None
    if targets is not None:
        teacher_out = Outputs(
            logits=targets.for_batch(batch, live, result.logits.device), attention_mask=mask
        )
    loss, logged = combine(terms, student_out, teacher_out, batch)
    penalty = getattr(result, "penalty", None)
    if penalty is not None:
        logged["balance"] = float(penalty.detach())
        if penalty_weight:
            loss = loss + penalty_weight * penalty
    if teacher_loss is not None:
        logged["teacher_hard"] = float(teacher_loss.detach())
    return loss, teacher_loss, logged


class TeacherStep:
    """The joint teacher's own update in the alternating scheme (step 1 above): AdamW at `lr`
    with the loop's warmup and linear decay over `total_steps`, weight decay on matrices only,
    the gradient clipped to config.max_grad_norm, as the loop treats the student."""

    def __init__(self, teacher: nn.Module, lr: float, config: TrainConfig, total_steps: int):
        params = [p for p in teacher.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        self.teacher, self.params, self.max_grad_norm = teacher, params, config.max_grad_norm
        self.optimizer = torch.optim.AdamW(groups, lr=lr)
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, int(config.warmup_ratio * total_steps), total_steps
        )

    def __call__(self, batch: dict[str, torch.Tensor]) -> float:
        """Step the teacher on CE(teacher, gold) for `batch`; the CE before the step."""
        self.teacher.train()
        logits = self.teacher(**model_inputs(batch, self.teacher)).logits  # (B, C)
        loss = hard_loss(
            Outputs(logits=logits, attention_mask=batch["attention_mask"]), None, batch
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        # set_to_none: the loop's optimiser, which holds the teacher too, must not see this
        # gradient again
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())


def check_alternating(config: TrainConfig) -> None:
    """Refuse the training settings the alternating teacher step cannot follow, in one line."""
    why = (
        "--grad-accum > 1 (the teacher would step on every batch, the student every "
        f"{config.grad_accum})"
        if config.grad_accum > 1
        else "--resume (the teacher's own optimiser is not in the saved state)"
        if config.resume
        else "--mixed-precision fp16 (its step has no gradient scaler; use bf16 or no)"
        if config.mixed_precision == "fp16"
        else "several processes (its step is not averaged across them)"
        if world_size() > 1
        else None
    )
    if why is not None:
        raise SlimbertError(f"--joint-update alternating cannot run with {why}; use summed")


def batch_step(
    terms: list[LossTerm],
    targets: SoftTargets | None,
    joint_teacher: nn.Module | None,
    isolated: bool,
    penalty_weight: float = 0.0,
    teacher_step: TeacherStep | None = None,
):
    """The loop's step(student, batch) -> (loss, logged terms). With `teacher_step` (the
    alternating update) the teacher steps first and the loss is the student's alone; otherwise
    a joint teacher's CE is added to it (summed)."""

    def step(model, batch):
        before = teacher_step(batch) if teacher_step is not None else None
        loss, teacher_loss, logged = student_losses(
            model, batch, terms, targets, joint_teacher, isolated, penalty_weight
        )
        if before is not None:
            # the CE the teacher stepped on, as summed logs the CE its gradient came from
            return loss, {**logged, "teacher_hard": before}
        return (loss if teacher_loss is None else loss + teacher_loss), logged

    return step
