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

The terms live in compress/relations.py. `--student-base` starts the student from another
pre-trained model cut to depth (as `kd --student-base` does), reading its own tokenizer: the
relations compare the two token by token, so every row must be cut into the same word pieces
by both tokenizers (MPNet's and BERT's uncased are; only their special tokens differ), and the
teacher's Q/K/V are gathered at each student token's teacher position (compress/aligned.py).
Another vocabulary is refused in one line.

References: Wang et al., "MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression
of Pre-Trained Transformers", NeurIPS 2020; Wang et al., "MiniLMv2: Multi-Head Self-Attention
Relation Distillation for Compressing Pretrained Transformers", Findings of ACL 2021.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from slimbert.batches import EncodedDataset, evaluator, make_loader
from slimbert.compress.method import Job, Method, open_job, stage_record, student_record
from slimbert.compress.relations import RELATION_SETS, RELATIONS_HELP, minilm_terms
from slimbert.compress.start import aligned_base_setting, refuse_shape_beside_base, start_of
from slimbert.compress.students import ShapeSettings, map_layers
from slimbert.families import family_of
from slimbert.models import device, save_model, seed_everything
from slimbert.record import ModelRecord
from slimbert.settings import setting
from slimbert.training.capture import distill_loss_evaluator, forward_internals, teacher_internals
from slimbert.training.config import TrainConfig, TrainResult, train_loader
from slimbert.training.logits_cache import teacher_logits
from slimbert.training.loop import train
from slimbert.training.losses import LossTerm, cached_logits_step, combine, hard_loss, kd_loss
from slimbert.training.route import describe as describe_route
from slimbert.training.route import soft_targets, train_stages
from slimbert.training.state import RunFiles


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
        "Relation heads R; must divide both hidden sizes (default: the teacher's head count, "
        "or the largest common divisor of both widths below it when that does not divide).",
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
    student_base: str | None = aligned_base_setting()

    def __post_init__(self) -> None:
        refuse_shape_beside_base(self)


def prediction_terms(config: MiniLMConfig) -> list[LossTerm]:
    return [
        LossTerm("soft", config.alpha, kd_loss(config.temperature)),
        LossTerm("hard", 1.0 - config.alpha, hard_loss),
    ]


def relation_evaluator(teacher, terms: list[LossTerm], eval_set: EncodedDataset):
    """Stage 1 scores the relation loss on the eval set (lower is better)."""
    loader = make_loader(eval_set, 64, shuffle=False)
    return distill_loss_evaluator(teacher, terms, loader, "relation_loss", hidden_states=False)


def _distil_relations(
    student: nn.Module,
    teacher: nn.Module,
    terms: list[LossTerm],
    eval_set: EncodedDataset,
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
            teacher_out = teacher_internals(teacher, batch, hidden_states=False)
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
        relation_evaluator(teacher, terms, eval_set),
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
    seed_everything(config.seed)
    depth = family_of(teacher.config).size(teacher.config, "depth")
    uniform = map_layers(depth, minilm.layers, "uniform")
    start = start_of(minilm, teacher, tokenizer, uniform, data, data, config.seed)
    student, tokenizer, relation_sets = start.student, start.tokenizer, start.sets
    init_map = start.base["layers"] if start.base else uniform
    terms, relation_record = minilm_terms(
        minilm.relations, minilm.teacher_layer, minilm.relation_heads, teacher, student
    )
    # one loader for both stages (the student's inputs of an aligned batch are its own tokens)
    loader = train_loader(relation_sets[0], config)
    run = RunFiles(job.out, config.resume)
    relation = _distil_relations(
        student, teacher, terms, relation_sets[1], loader, minilm, config, run
    )
    route_stages = soft_targets(
        minilm.teacher_route, job.teacher, teacher, data, cached, config, len(loader)
    )
    results = train_stages(
        student,
        loader,
        route_stages,
        cached_logits_step(prediction_terms(minilm)),
        evaluator(start.data),
        f"minilm-{minilm.layers}L-prediction",
        run=run,
    )
    result = results[-1]
    stages = {"relation": stage_record(relation), "prediction": stage_record(result)}
    details = {
        "relation": relation_record,
        "init": start.init.describe() if start.init is not None else None,
        "student_init": start.started,
        "student_base": start.base,
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
