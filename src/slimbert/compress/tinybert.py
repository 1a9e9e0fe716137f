"""TinyBERT: layer-to-layer distillation, then prediction-layer distillation (Jiao et al. 2020).

    stage 0 (optional)  general distillation on unlabeled text (--general-text FILE)
    stage 1             intermediate-layer distillation on the (augmented) training set
    stage 2             prediction-layer distillation: T² · KL(teacher/T ‖ student/T)

Stages 0 and 1 minimise, for the layer map g (see `compress.students.map_layers`),

    w_emb · MSE(E_s·W_e, E_t)                                    embedding outputs
  + w_att · Σ_m MSE(A_s^m, A_t^g(m))                             pre-softmax attention scores
  + w_hid · Σ_m MSE(H_s^m·W_h, H_t^g(m))                         hidden states

where A = Q·Kᵀ/√d per head, recomputed from the layers' projections (`capture`) because
Hugging Face only returns the softmaxed maps. With relative positions the model's own terms are
added back, caught where it computes them: DeBERTa-v2/v3's disentangled content→position and
position→content scores (A = Q·Kᵀ/√(3d) + c2p + p2c) and MPNet's relative-position bias, so A is
the score the model softmaxes there too. Positions involving padding are zeroed on both
sides and left out of the mean. W_e and W_h are learned linear maps (H_s → H_t) used only when the
student is narrower; they are thrown away afterwards. When student and teacher head counts
differ, the attention term compares head-averaged scores. Stages 0 and 1 keep the checkpoint
with the lowest distillation loss on the eval set; stage 2 keeps the best eval metric.

The student may be shallower and narrower (hidden size, heads, FFN size); it is initialised from
the mapped teacher layers wherever a tensor's shape matches and randomly otherwise, and stays a
plain classifier of the teacher's family, so it exports and benches like a kd student. With
--student-base it is cut from another pre-trained model instead and reads that model's tokenizer;
the layer losses then compare each student token with its teacher token (compress/aligned.py:
both tokenizers must cut every row into the same word pieces), and W_e, W_h project its width. The
attention term is refused in one line for rotary positions (ModernBERT: its Q and K are rotated
after the projections) unless --attention-weight is 0; see `slimbert.families`.

Reference: Jiao et al., "TinyBERT: Distilling BERT for Natural Language Understanding",
Findings of EMNLP 2020.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from slimbert.batches import EncodedDataset, TaskData, evaluator, label_targets, make_loader
from slimbert.compress.method import Job, Method, open_job, stage_record, student_record
from slimbert.compress.start import aligned_base_setting, refuse_shape_beside_base, start_of
from slimbert.compress.students import ShapeSettings, map_layers
from slimbert.data import Examples, concat
from slimbert.errors import SlimbertError
from slimbert.families import family_of
from slimbert.models import device, save_model, seed_everything
from slimbert.record import ModelRecord
from slimbert.settings import setting
from slimbert.teachers.word_augment import AugmentConfig, augment
from slimbert.texts import read_text_file
from slimbert.training.capture import (
    TransformerOutputs,
    check_attention_scores,
    distill_loss_evaluator,
    forward_internals,
    teacher_internals,
)
from slimbert.training.config import TrainResult, train_loader
from slimbert.training.logits_cache import teacher_logits
from slimbert.training.loop import train
from slimbert.training.losses import (
    LossTerm,
    TermFn,
    cached_logits_step,
    combine,
    hard_loss,
    hint_loss,
    kd_loss,
)
from slimbert.training.outputs import Outputs
from slimbert.training.route import describe as describe_route
from slimbert.training.route import soft_targets, train_stages
from slimbert.training.state import RunFiles


@dataclass
class TinyBERTConfig(ShapeSettings):
    """The student's shape (None keeps the teacher's), the layer map, the loss weights and the
    stages: 0 general distillation on a text file (optional), 1 intermediate-layer distillation,
    2 prediction-layer distillation (--epochs); --max-steps caps every stage."""

    layer_map: str = setting(
        "uniform",
        "uniform, top, bottom, or explicit student:teacher pairs like 0:1,1:3,2:5 (0-based).",
    )
    temperature: float = setting(
        1.0, "Temperature of the prediction-layer soft loss.", min=0, min_open=True
    )
    prediction_loss: str = setting(
        "soft",
        "The last stage's loss: soft (prediction-layer distillation, the teacher's logits at "
        "--temperature) or labels (cross-entropy on the gold labels: the paper's 'w/o Pred' "
        "ablation, the intermediate stage's student fine-tuned as it is).",
        choices=("soft", "labels"),
    )
    embedding_weight: float = setting(1.0, "Weight of the embedding-output MSE.", min=0)
    attention_weight: float = setting(1.0, "Weight of the pre-softmax attention-score MSE.", min=0)
    hidden_weight: float = setting(1.0, "Weight of the hidden-state MSE.", min=0)
    intermediate_epochs: float = setting(
        10.0,
        "Epochs of intermediate-layer distillation (--epochs is the prediction stage's).",
        min=0,
        min_open=True,
    )
    intermediate_lr: float | None = setting(
        None,
        "Learning rate of the layer-distillation stages (default: --lr).",
        min=0,
        min_open=True,
    )
    general_text: Path | None = setting(
        None, "Plain text file, one text per line: general distillation on it first."
    )
    general_epochs: float = setting(1.0, "Epochs of general distillation.", min=0, min_open=True)
    augment: bool = setting(
        False,
        "Add TinyBERT-style augmented copies of the training set, labelled by the teacher.",
    )
    augment_copies: int = setting(20, "N augmented copies per training example.", min=1)
    augment_prob: float = setting(
        0.4, "Chance p that each replaceable word is replaced.", min=0, max=1, min_open=True
    )
    augment_top_k: int = setting(15, "Replacement candidates per word.", min=1)
    augment_mlm: str | None = setting(
        None,
        "Base model with a masked-LM head for replacements, a directory or a Hub name "
        "(default: the teacher's embedding neighbours).",
    )
    teacher_route: Path | None = setting(
        None,
        "The teacher's route (train-teacher --save-route): the prediction stage distils from "
        "its checkpoints in order, splitting its step budget, before the teacher.",
    )

    student_base: str | None = aligned_base_setting()

    def __post_init__(self) -> None:
        refuse_shape_beside_base(self)
        if self.student_base is not None and (self.augment or self.general_text is not None):
            flag = "--augment" if self.augment else "--general-text"
            raise SlimbertError(
                f"{flag} encodes its rows with the teacher's tokenizer, but --student-base reads "
                "its own; make a transfer set (slimbert augment) and give it as --transfer"
            )
        if self.prediction_loss == "labels" and self.teacher_route is not None:
            raise SlimbertError(
                "--teacher-route splits the prediction stage over the teacher's checkpoints' "
                "soft labels; with --prediction-loss labels there are none to walk: drop one"
            )

    @classmethod
    def tinybert4(cls) -> TinyBERTConfig:
        """The paper's TinyBERT-4 shape (4 layers, H 312, 12 heads, FFN 1200), for a 12-head
        teacher."""
        return cls(layers=4, hidden_size=312, heads=12, ffn_size=1200)


def attention_score_mse(layer_map: list[int]) -> TermFn:
    """Σ over student layers m of MSE(scores_s^m, scores_t^g(m)) on pre-softmax scores
    (B, nh, T, T).

    Entries whose query or key is padding are zeroed on both sides and not counted in the mean.
    """

    def term(
        student: Outputs, teacher: Outputs | None, batch: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        assert isinstance(student, TransformerOutputs) and isinstance(
            teacher, TransformerOutputs
        ), "attention_score_mse needs forward_internals outputs"
        mask = student.attention_mask.to(student.logits.dtype)  # (B, T)
        valid = mask[:, None, :, None] * mask[:, None, None, :]  # (B, 1, T, T)
        total = student.logits.new_zeros(())
        for s, t in enumerate(layer_map):
            student_scores = student.attention_parts[s].scores()  # (B, nh_s, T, T)
            teacher_scores = teacher.attention_parts[t].scores()  # (B, nh_t, T, T)
            if student_scores.shape[1] != teacher_scores.shape[1]:
                student_scores, teacher_scores = (
                    student_scores.mean(1, keepdim=True),
                    teacher_scores.mean(1, keepdim=True),
                )
            squared = ((student_scores - teacher_scores) * valid).pow(2)  # (B, nh, T, T)
            total = total + squared.sum() / (valid.sum() * squared.shape[1]).clamp_min(1.0)
        return total

    return term


@dataclass
class Projections:
    """W_e and W_h (H_s → H_t); None when the student is as wide as the teacher."""

    embedding: nn.Linear | None
    hidden: nn.Linear | None

    @classmethod
    def between(cls, student_width: int, teacher_width: int) -> Projections:
        if student_width == teacher_width:
            return cls(None, None)
        return cls(nn.Linear(student_width, teacher_width), nn.Linear(student_width, teacher_width))

    def modules(self) -> list[nn.Module]:
        return [m for m in (self.embedding, self.hidden) if m is not None]


def intermediate_terms(
    config: TinyBERTConfig, layer_map: list[int], projections: Projections, scores: bool = True
) -> list[LossTerm]:
    """The stage 0/1 terms; `scores` False (a family whose scores capture cannot rebuild, with
    --attention-weight 0) leaves the attention term out."""
    hidden_pairs = [
        (s + 1, t + 1) for s, t in enumerate(layer_map)
    ]  # hidden_states[0] is the embedding output
    terms = [
        LossTerm("embedding", config.embedding_weight, hint_loss([(0, 0)], projections.embedding)),
        LossTerm("attention", config.attention_weight, attention_score_mse(layer_map)),
        LossTerm("hidden", config.hidden_weight, hint_loss(hidden_pairs, projections.hidden)),
    ]
    return terms if scores else [term for term in terms if term.name != "attention"]


def prediction_terms(config: TinyBERTConfig) -> list[LossTerm]:
    if config.prediction_loss == "labels":
        return [LossTerm("hard", 1.0, hard_loss)]
    return [LossTerm("soft", 1.0, kd_loss(config.temperature))]


def with_training_examples(data: TaskData, examples: Examples, tokenizer) -> TaskData:
    targets = label_targets(examples, data.label_map, data.task)
    return dataclasses.replace(
        data,
        train=examples,
        train_set=EncodedDataset(tokenizer, examples, data.max_length, targets),
    )


def augmented(data: TaskData, teacher, tokenizer, fingerprint, tiny: TinyBERTConfig, seed: int):
    """The task data with --augment's teacher-labelled copies joined to the training rows (and
    the augmentation's record), or as it is."""
    if not tiny.augment:
        return data, None
    augment_config = AugmentConfig(
        tiny.augment_copies,
        tiny.augment_prob,
        tiny.augment_top_k,
        tiny.augment_mlm,
        max_length=data.max_length,
        seed=seed,
    )
    augmentation = augment(data.train, teacher, tokenizer, fingerprint, augment_config)
    examples = concat(data.train, augmentation.examples)
    return with_training_examples(data, examples, tokenizer), augmentation


def run(job: Job, tiny: TinyBERTConfig) -> tuple[TrainResult, ModelRecord]:
    """Stages 0 (optional), 1 and 2 on one student; the teacher may be an ensemble, whose best
    member gives the layers the student matches."""
    config, spec = job.train, job.data
    opening = open_job(job)
    loaded, data = opening.teacher, opening.data
    teacher, tokenizer, fingerprint = loaded.layers, loaded.tokenizer, loaded.fingerprint
    family = family_of(teacher.config)
    layer_map = map_layers(family.size(teacher.config, "depth"), tiny.layers, tiny.layer_map)
    scores = family.scores_readable(teacher.config)
    if tiny.attention_weight > 0:
        check_attention_scores(teacher)
    general = read_text_file(tiny.general_text, "--general-text") if tiny.general_text else None

    train_data, augmentation = augmented(data, teacher, tokenizer, fingerprint, tiny, config.seed)
    cached = teacher_logits(
        loaded.model, job.teacher, train_data, fingerprint=fingerprint, device=device(config.device)
    )
    del loaded, opening.teacher  # (N, C) logits above, originals first

    seed_everything(config.seed)
    start = start_of(tiny, teacher, tokenizer, layer_map, data, train_data, config.seed)
    student, tokenizer, layer_sets = start.student, start.tokenizer, start.sets
    student_family = family_of(student.config)
    projections = Projections.between(
        student_family.size(student.config, "width"), family.size(teacher.config, "width")
    )
    teacher_heads = family.size(teacher.config, "heads")
    teacher.to(device(config.device))
    teacher.requires_grad_(False)
    terms = intermediate_terms(tiny, layer_map, projections, scores)

    def distill_step(model, batch):
        with torch.no_grad():
            teacher_out = teacher_internals(teacher, batch)
        return combine(terms, forward_internals(model, batch), teacher_out, batch)

    distill_config = dataclasses.replace(config, lr=tiny.intermediate_lr or config.lr)
    stages: dict[str, dict] = {}
    run = RunFiles(job.out, config.resume)

    def layer_stage(loader, epochs: float, name: str) -> dict:
        """One stage of the layer losses (general or intermediate)."""
        result = train(
            student,
            loader,
            distill_step,
            distill_loss_evaluator(teacher, terms, make_loader(layer_sets[1], 64, shuffle=False)),
            dataclasses.replace(distill_config, epochs=epochs),
            projections.modules(),
            description=f"tinybert-{name}",
            run=run,
        )
        return stage_record(result)

    if general is not None:
        general_set = EncodedDataset(tokenizer, general, spec.max_length)
        stages["general"] = {
            **layer_stage(train_loader(general_set, config), tiny.general_epochs, "general"),
            "text": str(tiny.general_text),
            "texts": len(general),
        }
    loader = train_loader(layer_sets[0], config)  # the prediction stage's too
    stages["intermediate"] = layer_stage(loader, tiny.intermediate_epochs, "intermediate")
    teacher.to("cpu")  # stage 2 reads cached logits; free the device for the student

    prediction = prediction_terms(tiny)

    route_stages = soft_targets(
        tiny.teacher_route, job.teacher, teacher, train_data, cached, config, len(loader)
    )
    results = train_stages(
        student,
        loader,
        route_stages,
        cached_logits_step(prediction),
        evaluator(start.data),
        "tinybert-prediction",
        run=run,
    )
    result = results[-1]
    stages["prediction"] = stage_record(result)
    details = {
        "init": start.init.describe() if start.init is not None else None,
        "student_init": start.started,
        "student_base": start.base,
        "projection": projections.embedding is not None,
        "attention_heads": "per-head"
        if student_family.size(student.config, "heads") == teacher_heads
        else "head-mean",
        "augmentation": augmentation.describe() if augmentation else None,
        "route": describe_route([stage for stage, _ in route_stages], results)
        if tiny.teacher_route is not None
        else None,
        "train_rows": len(train_data.train),
    }
    record = student_record(
        "tinybert", job, opening, tiny, result, details, stages, layer_map=layer_map
    )
    return result, save_model(student, tokenizer, job.out, record)


METHOD = Method(
    name="tinybert",
    config=TinyBERTConfig,
    run=run,
    summary="TinyBERT: embedding, attention-score and hidden-state distillation, then soft logits.",
    stages=("general", "intermediate", "prediction"),
)
