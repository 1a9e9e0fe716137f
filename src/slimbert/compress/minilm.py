"""MiniLMv2 self-attention relation distillation (Wang et al. 2021), then prediction-layer KD.

Stage 1 matches, for one chosen teacher layer and the student's last layer, the relations
between the queries, between the keys and between the values of every pair of tokens:

    X ∈ {Q, K, V}: (B, T, A)  ──split into R relation heads──►  (B, R, T, A/R)
    relation(X) = softmax(X·Xᵀ / √(A/R)) over keys            →  (B, R, T, T)

    loss = Σ_{X ∈ Q,K,V} KL(relation_teacher(X) ‖ relation_student(X))
           (summed over keys, mean over relation heads and real query tokens; padded keys masked)

Because A is re-split into the same R relation heads on both sides and relations are T × T,
the student's hidden size and attention-head count need not match the teacher's: only R must
divide both widths. No projection is learned. Stage 2 trains the student's head (and the rest)
with Hinton KD on the cached teacher logits: alpha · T²·KL + (1 − alpha) · CE.

Stage 1 keeps the checkpoint with the lowest relation loss on the eval set; stage 2 the best
eval metric. The student is built like TinyBERT's (`compress.students.build_student`): copied
from the uniformly mapped teacher layers where shapes match, random otherwise. Relations use the
projections as they leave their Linear layers, so they apply to every family in
`slimbert.families`, relative and rotary positions included (ModernBERT's Q and K are read
before their rotation).

`--relations v1` is the first paper's pair of terms instead: each attention head's distribution
softmax(scores) — the model's own pre-softmax scores (`AttentionParts.scores`, relative-position
terms included), so the student needs the teacher's head count and rotary positions are refused
— and the V-V relation:

    loss = KL(softmax(scores_teacher) ‖ softmax(scores_student)) + KL(relation_t(V) ‖ relation_s(V))

References: Wang et al., "MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression
of Pre-Trained Transformers", NeurIPS 2020; Wang et al., "MiniLMv2: Multi-Head Self-Attention
Relation Distillation for Compressing Pretrained Transformers", Findings of ACL 2021.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from slimbert.batches import TaskData, evaluator, make_loader
from slimbert.compress.method import Job, Method, open_job, stage_record, student_record
from slimbert.compress.start import start_student
from slimbert.compress.students import ShapeSettings, map_layers
from slimbert.errors import SlimbertError
from slimbert.families import family_of
from slimbert.models import device, save_model, seed_everything
from slimbert.record import ModelRecord
from slimbert.settings import setting
from slimbert.training.capture import (
    TransformerOutputs,
    check_attention_scores,
    distill_loss_evaluator,
    forward_internals,
    split_heads,
)
from slimbert.training.config import TrainConfig, TrainResult, train_loader
from slimbert.training.logits_cache import teacher_logits
from slimbert.training.loop import train
from slimbert.training.losses import (
    LossTerm,
    TermFn,
    cached_logits_step,
    combine,
    hard_loss,
    kd_loss,
)
from slimbert.training.outputs import Outputs
from slimbert.training.route import describe as describe_route
from slimbert.training.route import soft_targets, train_stages
from slimbert.training.state import RunFiles

RELATIONS = ("query", "key", "value")
RELATION_SETS = ("v2", "v1")
RELATIONS_HELP = (
    "v2: Q-Q, K-K and V-V relations split into R relation heads (MiniLMv2; any head count). "
    "v1: each attention head's distribution softmax(Q·Kᵀ/√d), the model's own scores, and the "
    "V-V relation (MiniLM; the student needs the teacher's head count; not for rotary positions)."
)


@dataclass
class MiniLMConfig(ShapeSettings):
    """The student's shape (None keeps the teacher's; width and heads are free), the relation
    stage (stage 1) and the prediction stage's KD (stage 2, --epochs); --max-steps caps both."""

    teacher_layer: int = setting(
        -1, "0-based teacher layer whose Q/K/V relations are distilled; -1 = the last."
    )
    relations: str = setting("v2", RELATIONS_HELP, choices=RELATION_SETS)
    relation_heads: int | None = setting(
        None,
        "Relation heads R (default: the teacher's head count); must divide both hidden sizes.",
        min=1,
    )
    relation_epochs: float = setting(
        10.0,
        "Epochs of relation distillation (--epochs is the prediction stage's).",
        min=0,
        min_open=True,
    )
    relation_lr: float | None = setting(
        None, "Learning rate of relation distillation (default: --lr).", min=0, min_open=True
    )
    temperature: float = setting(
        2.0, "Temperature of the prediction-stage soft loss.", min=0, min_open=True
    )
    alpha: float = setting(
        0.5,
        "Weight of the prediction-stage soft loss; 1 − alpha goes to the hard labels.",
        min=0,
        max=1,
    )
    teacher_route: Path | None = setting(
        None,
        "The teacher's route (train-teacher --save-route): the prediction stage distils from "
        "its checkpoints in order, splitting its step budget, before the teacher.",
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
    heads = relation_heads or family.size(teacher.config, "heads")
    _check_relation_heads(heads, teacher, student)
    if relations == "v1":
        check_attention_scores(teacher)
        own, theirs = (family.size(m.config, "heads") for m in (student, teacher))
        if own != theirs:
            raise SlimbertError(
                f"--relations v1 matches each attention head's distribution, so the student "
                f"needs the teacher's {theirs} heads (it has {own}); use --relations v2, whose "
                "relation heads need no match"
            )
    record = {
        "relations": relations,
        "teacher_layer": layer,
        "student_layer": family.size(student.config, "depth") - 1,
        "relation_heads": heads,
    }
    return relation_terms(layer, heads, relations), record


def prediction_terms(config: MiniLMConfig) -> list[LossTerm]:
    return [
        LossTerm("soft", config.alpha, kd_loss(config.temperature)),
        LossTerm("hard", 1.0 - config.alpha, hard_loss),
    ]


def relation_evaluator(teacher, terms: list[LossTerm], data: TaskData):
    """Stage 1 scores the relation loss on the eval set (lower is better)."""
    loader = make_loader(data.eval_set, 64, shuffle=False)
    return distill_loss_evaluator(teacher, terms, loader, "relation_loss", hidden_states=False)


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
    family = family_of(teacher.config)
    for name, width in (
        ("teacher", family.size(teacher.config, "width")),
        ("student", family.size(student.config, "width")),
    ):
        if width % relation_heads:
            raise SlimbertError(
                f"--relation-heads {relation_heads} does not divide the {name}'s hidden size "
                f"{width}; pick a common divisor"
            )


def _distil_relations(
    student: nn.Module,
    teacher: nn.Module,
    terms: list[LossTerm],
    data: TaskData,
    loader,
    minilm: MiniLMConfig,
    config: TrainConfig,
    run: RunFiles,
) -> TrainResult:
    """Stage 1: the student's last-layer relations against the teacher's, the teacher run on
    every batch; the teacher is back on the CPU when it returns."""
    teacher.to(device(config.device))
    teacher.requires_grad_(False)

    def relation_step(model, batch):
        with torch.no_grad():
            teacher_out = forward_internals(teacher, batch, hidden_states=False)
        return combine(
            terms, forward_internals(model, batch, hidden_states=False), teacher_out, batch
        )

    relation_config = dataclasses.replace(
        config, epochs=minilm.relation_epochs, lr=minilm.relation_lr or config.lr
    )
    relation = train(
        student,
        loader,
        relation_step,
        relation_evaluator(teacher, terms, data),
        relation_config,
        description=f"minilm-{minilm.layers}L-relation",
        run=run,
    )
    teacher.to("cpu")  # stage 2 reads cached logits
    return relation


def run(job: Job, minilm: MiniLMConfig) -> tuple[TrainResult, ModelRecord]:
    """Relation distillation, then KD on the cached teacher logits; the teacher may be an
    ensemble, whose best member gives the layers."""
    config = job.train
    opening = open_job(job)
    loaded, data = opening.teacher, opening.data
    teacher, tokenizer = loaded.layers, loaded.tokenizer
    cached = teacher_logits(
        loaded.model,
        job.teacher,
        data,
        fingerprint=loaded.fingerprint,
        device=device(job.train.device),
    )
    del loaded, opening.teacher  # (N, C) logits above
    depth = family_of(teacher.config).size(teacher.config, "depth")
    init_map = map_layers(depth, minilm.layers, "uniform")
    seed_everything(config.seed)
    student, init, started = start_student(
        teacher, minilm.shape(), init_map, config.seed, minilm.student_init
    )
    terms, relation_record = minilm_terms(
        minilm.relations, minilm.teacher_layer, minilm.relation_heads, teacher, student
    )
    loader = train_loader(data.train_set, config)
    run = RunFiles(job.out, config.resume)
    relation = _distil_relations(student, teacher, terms, data, loader, minilm, config, run)

    route_stages = soft_targets(
        minilm.teacher_route, job.teacher, teacher, data, cached, config, len(loader)
    )
    results = train_stages(
        student,
        loader,
        route_stages,
        cached_logits_step(prediction_terms(minilm)),
        evaluator(data),
        f"minilm-{minilm.layers}L-prediction",
        run=run,
    )
    result = results[-1]
    stages = {"relation": stage_record(relation), "prediction": stage_record(result)}
    details = {
        "relation": relation_record,
        "init": init.describe(),
        "student_init": started,
        "route": describe_route([stage for stage, _ in route_stages], results)
        if minilm.teacher_route is not None
        else None,
    }
    record = student_record(
        "minilm", job, opening, minilm, result, details, stages, layer_map=init_map
    )
    return result, save_model(student, tokenizer, job.out, record)


METHOD = Method(
    name="minilm",
    config=MiniLMConfig,
    run=run,
    summary="MiniLMv2 Q-Q, K-K, V-V relations (or MiniLM's attention and V-V), then soft-logit KD.",
    stages=("relation", "prediction"),
)
