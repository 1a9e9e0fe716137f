"""The relation losses of MiniLM (Wang et al. 2020) and MiniLMv2 (Wang et al. 2021), between
one teacher layer and the student's last layer:

    X ∈ {Q, K, V}: (B, T, A)  ──split into R relation heads──►  (B, R, T, A/R)
    relation(X) = softmax(X·Xᵀ / √(A/R)) over keys            →  (B, R, T, T)

    v2:  Σ_{X ∈ Q,K,V} KL(relation_teacher(X) ‖ relation_student(X))
    v1:  KL(softmax(scores_teacher) ‖ softmax(scores_student)) + KL(relation_t(V) ‖ relation_s(V))

(summed over keys, mean over heads and real query tokens; padded keys masked). Width and head
count are free in v2 (R divides both widths); v1 matches each head's distribution, so it needs
the teacher's head count and the model's own scores. When the student reads another tokenizer
whose word pieces align with the teacher's (compress/aligned.py), the teacher's outputs arrive
gathered at each student token's teacher position (`training.capture.teacher_internals`).
`compress minilm` (task data) and `distill-general --objective minilm` (unlabelled text) both
use these terms.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from slimbert.errors import SlimbertError
from slimbert.families import family_of
from slimbert.training.capture import TransformerOutputs, check_attention_scores, split_heads
from slimbert.training.losses import LossTerm, TermFn
from slimbert.training.outputs import Outputs

RELATIONS = ("query", "key", "value")
RELATION_SETS = ("v2", "v1")
RELATIONS_HELP = (
    "v2: Q-Q, K-K and V-V relations split into R relation heads (MiniLMv2; any head count). "
    "v1: each attention head's distribution softmax(Q·Kᵀ/√d), the model's own scores, and the "
    "V-V relation (MiniLM; the student needs the teacher's head count; not for rotary positions)."
)


def masked_kl(
    student_scores: torch.Tensor, teacher_scores: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """KL(softmax(teacher) ‖ softmax(student)) over keys, for scores (B, n, T, T) of n heads and
    attention_mask (B, T) → scalar: padded keys masked, the mean over the n heads and the real
    query tokens."""
    keys_padded = attention_mask[:, None, None, :] == 0  # (B, 1, 1, T)
    log_student, log_teacher = (
        F.log_softmax(x.masked_fill(keys_padded, torch.finfo(x.dtype).min).float(), dim=-1)
        for x in (student_scores, teacher_scores)
    )
    kl = (
        (log_teacher.exp() * (log_teacher - log_student)).masked_fill(keys_padded, 0.0).sum(-1)
    )  # (B, n, T)
    rows = attention_mask[:, None, :].to(kl.dtype)  # (B, 1, T)
    return (kl * rows).sum() / (rows.sum() * kl.shape[1]).clamp_min(1.0)


def relation_kl(
    student_x: torch.Tensor,
    teacher_x: torch.Tensor,
    attention_mask: torch.Tensor,
    relation_heads: int,
) -> torch.Tensor:
    """KL(teacher relation ‖ student relation) for one of Q, K, V.

    student_x: (B, T, A_s), teacher_x: (B, T, A_t), attention_mask: (B, T) → scalar;
    R must divide A_s and A_t.
    """
    for name, x in (("student", student_x), ("teacher", teacher_x)):
        if x.shape[-1] % relation_heads:
            raise SlimbertError(
                f"--relation-heads {relation_heads} does not divide the {name}'s attention width "
                f"{x.shape[-1]}; pick a common divisor"
            )
    relations = []
    for x in (student_x, teacher_x):
        heads = split_heads(x, relation_heads)  # (B, R, T, d)
        relations.append(heads @ heads.transpose(-1, -2) / math.sqrt(heads.shape[-1]))
    return masked_kl(*relations, attention_mask)  # relations: (B, R, T, T)


def attention_term(teacher_layer: int) -> TermFn:
    """MiniLM's attention transfer: KL between each head's attention distribution in the
    student's last layer and in `teacher_layer`, from the scores as the model computes them."""

    def term(
        student: Outputs, teacher: Outputs | None, batch: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        assert isinstance(student, TransformerOutputs) and isinstance(
            teacher, TransformerOutputs
        ), "the attention term needs forward_internals outputs"
        return masked_kl(
            student.attention_parts[-1].scores(),
            teacher.attention_parts[teacher_layer].scores(),
            student.attention_mask,
        )

    return term


def relation_term(kind: str, teacher_layer: int, relation_heads: int) -> TermFn:
    """The `kind` ∈ {query, key, value} relation of the student's last layer against
    `teacher_layer`."""

    def term(
        student: Outputs, teacher: Outputs | None, batch: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        assert isinstance(student, TransformerOutputs) and isinstance(
            teacher, TransformerOutputs
        ), "relation terms need forward_internals outputs"
        student_parts, teacher_parts = (
            student.attention_parts[-1],
            teacher.attention_parts[teacher_layer],
        )
        return relation_kl(
            getattr(student_parts, kind),
            getattr(teacher_parts, kind),
            student.attention_mask,
            relation_heads,
        )

    return term


def relation_terms(
    teacher_layer: int, relation_heads: int, relations: str = "v2"
) -> list[LossTerm]:
    """v2: the Q-Q, K-K and V-V relations; v1: the attention distributions and V-V."""
    if relations == "v1":
        return [
            LossTerm("attention", 1.0, attention_term(teacher_layer)),
            LossTerm("vv", 1.0, relation_term("value", teacher_layer, relation_heads)),
        ]
    return [
        LossTerm(f"{kind[0]}{kind[0]}", 1.0, relation_term(kind, teacher_layer, relation_heads))
        for kind in RELATIONS
    ]


def minilm_terms(
    relations: str,
    teacher_layer: int,
    relation_heads: int | None,
    teacher: nn.Module,
    student: nn.Module,
) -> tuple[list[LossTerm], dict]:
    """The relation terms between `teacher` and `student`, checked (R divides both widths; v1:
    the same head count, scores the model's own), and what the metadata records of them."""
    family = family_of(teacher.config)
    layer = resolve_teacher_layer(teacher_layer, family.size(teacher.config, "depth"))
    widths = [family_of(m.config).size(m.config, "width") for m in (teacher, student)]
    heads = relation_heads or default_relation_heads(family.size(teacher.config, "heads"), *widths)
    _check_relation_heads(heads, teacher, student)
    if relations == "v1":
        check_attention_scores(teacher)
        check_attention_scores(student)
        own, theirs = (family_of(m.config).size(m.config, "heads") for m in (student, teacher))
        if own != theirs:
            raise SlimbertError(
                f"--relations v1 matches each attention head's distribution, so the student "
                f"needs the teacher's {theirs} heads (it has {own}); use --relations v2, whose "
                "relation heads need no match"
            )
    record = {
        "relations": relations,
        "teacher_layer": layer,
        "student_layer": family_of(student.config).size(student.config, "depth") - 1,
        "relation_heads": heads,
    }
    return relation_terms(layer, heads, relations), record


def default_relation_heads(teacher_heads: int, teacher_width: int, student_width: int) -> int:
    """R when none is given: the teacher's head count, or where it does not divide the
    student's width (a 256-wide student of a 12-head, 384-wide teacher) the largest common
    divisor of both widths below it (8 there), so that every searched width trains."""
    common = math.gcd(teacher_width, student_width)
    return max(r for r in range(1, teacher_heads + 1) if common % r == 0)


def resolve_teacher_layer(index: int, teacher_layers: int) -> int:
    resolved = index + teacher_layers if index < 0 else index
    if not 0 <= resolved < teacher_layers:
        raise SlimbertError(
            f"--teacher-layer {index}: the teacher has layers 0..{teacher_layers - 1} "
            "(or −1 for the last)"
        )
    return resolved


def _check_relation_heads(relation_heads: int, teacher: nn.Module, student: nn.Module) -> None:
    """Refuse a relation-head count R that does not divide both hidden sizes."""
    for name, model in (("teacher", teacher), ("student", student)):
        width = family_of(model.config).size(model.config, "width")
        if width % relation_heads:
            raise SlimbertError(
                f"--relation-heads {relation_heads} does not divide the {name}'s hidden size "
                f"{width}; pick a common divisor"
            )
