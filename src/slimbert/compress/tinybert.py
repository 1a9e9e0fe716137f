"""TinyBERT: layer-to-layer distillation, then prediction-layer distillation (Jiao et al. 2020).

    stage 0 (optional)  general distillation on unlabeled text (--general-text FILE)
    stage 1             intermediate-layer distillation on the (augmented) training set
    stage 2             prediction-layer distillation: T² · KL(teacher/T ‖ student/T)

Stages 0 and 1 minimise, for the layer map g (see `layermap`),

    w_emb · MSE(E_s·W_e, E_t)                                    embedding outputs
  + w_att · Σ_m MSE(A_s^m, A_t^g(m))                             pre-softmax attention scores
  + w_hid · Σ_m MSE(H_s^m·W_h, H_t^g(m))                         hidden states

where A = Q·Kᵀ/√d per head, recomputed from the layers' projections (`capture`) because
Hugging Face only returns the softmaxed maps; positions involving padding are zeroed on both
sides and left out of the mean. W_e and W_h are learned linear maps (H_s → H_t) used only when the
student is narrower; they are thrown away afterwards. When student and teacher head counts
differ, the attention term compares head-averaged scores. Stages 0 and 1 keep the checkpoint
with the lowest distillation loss on the eval set; stage 2 keeps the best eval metric.

The student may be shallower and narrower (hidden size, heads, FFN size); it is initialised from
the mapped teacher layers wherever a tensor's shape matches and randomly otherwise, and stays a
plain `BertForSequenceClassification`, so it exports and benches like a kd student.

Reference: Jiao et al., "TinyBERT: Distilling BERT for Natural Language Understanding",
Findings of EMNLP 2020.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from slimbert.batches import DataSpec, EncodedDataset, TaskData, label_targets, make_loader, prepare
from slimbert.compress.students import StudentShape, build_student, map_layers
from slimbert.compress.word_augment import AugmentConfig, augment
from slimbert.data import Examples
from slimbert.errors import SlimbertError
from slimbert.metrics import Metrics, evaluator
from slimbert.models import device, save_model, seed_everything
from slimbert.teachers.load import load_teacher
from slimbert.teachers.logits import teacher_logits
from slimbert.training.capture import TransformerOutputs, forward_internals
from slimbert.training.loop import TrainConfig, TrainResult, train, train_loader, training_record
from slimbert.training.losses import (
    LossTerm,
    TermFn,
    cached_logits_step,
    combine,
    hint_loss,
    kd_loss,
)
from slimbert.training.outputs import Outputs
from slimbert.training.route import describe as describe_route
from slimbert.training.route import soft_targets, train_stages


@dataclass
class TinyBERTConfig:
    """layers / hidden_size / heads / ffn_size: the student's shape (None keeps the teacher's)
    layer_map:            uniform, top, bottom, or explicit pairs "s:t,..." (see `layermap`)
    temperature:          T of the prediction-layer soft loss
    embedding_weight, attention_weight, hidden_weight: weights of the intermediate terms
    intermediate_epochs:  epochs of stage 1 (stage 2 uses --epochs); --max-steps caps every stage
    intermediate_lr:      learning rate of stages 0 and 1 (default: --lr)
    general_text:         plain text file, one text per line, for stage 0 (None skips it)
    general_epochs:       epochs of stage 0
    augment:              add TinyBERT-style augmented copies to stages 1 and 2
    augment_copies / augment_prob / augment_top_k: N copies per example, replacement chance p, candidates per word
    augment_mlm:          base model with a masked-LM head for replacements (None: teacher embedding neighbours)"""

    layers: int = 3
    hidden_size: int | None = None
    heads: int | None = None
    ffn_size: int | None = None
    layer_map: str = "uniform"
    temperature: float = 1.0
    embedding_weight: float = 1.0
    attention_weight: float = 1.0
    hidden_weight: float = 1.0
    intermediate_epochs: float = 10.0
    intermediate_lr: float | None = None
    general_text: Path | None = None
    general_epochs: float = 1.0
    augment: bool = False
    augment_copies: int = 20
    augment_prob: float = 0.4
    augment_top_k: int = 15
    augment_mlm: str | None = None

    @classmethod
    def tinybert4(cls) -> TinyBERTConfig:
        """The paper's TinyBERT-4 shape (4 layers, H 312, 12 heads, FFN 1200), for a 12-head teacher."""
        return cls(layers=4, hidden_size=312, heads=12, ffn_size=1200)

    def shape(self) -> StudentShape:
        return StudentShape(self.layers, self.hidden_size, self.heads, self.ffn_size)


def attention_score_mse(layer_map: list[int]) -> TermFn:
    """Σ over student layers m of MSE(scores_s^m, scores_t^g(m)) on pre-softmax scores (B, nh, T, T).

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
    config: TinyBERTConfig, layer_map: list[int], projections: Projections
) -> list[LossTerm]:
    hidden_pairs = [
        (s + 1, t + 1) for s, t in enumerate(layer_map)
    ]  # hidden_states[0] is the embedding output
    return [
        LossTerm("embedding", config.embedding_weight, hint_loss([(0, 0)], projections.embedding)),
        LossTerm("attention", config.attention_weight, attention_score_mse(layer_map)),
        LossTerm("hidden", config.hidden_weight, hint_loss(hidden_pairs, projections.hidden)),
    ]


def prediction_terms(config: TinyBERTConfig) -> list[LossTerm]:
    return [LossTerm("soft", 1.0, kd_loss(config.temperature))]


def read_text_file(path: Path) -> Examples:
    """One text per non-blank line, for general distillation."""
    from slimbert.files import sha256_file

    if not Path(path).is_file():
        raise SlimbertError(
            f"--general-text {path}: no such file; give a plain text file with one text per line"
        )
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise SlimbertError(
            f"--general-text {path}: not valid UTF-8; re-save the file as UTF-8"
        ) from None
    rows = [(n, line.strip()) for n, line in enumerate(lines, start=1) if line.strip()]
    if not rows:
        raise SlimbertError(f"--general-text {path}: the file has no text; give one text per line")
    return Examples(
        [t for _, t in rows],
        None,
        None,
        "classification",
        Path(path),
        [n for n, _ in rows],
        sha256_file(path),
    )


def with_training_examples(data: TaskData, examples: Examples, tokenizer) -> TaskData:
    targets = label_targets(examples, data.label_map, data.task)
    return dataclasses.replace(
        data,
        train=examples,
        train_set=EncodedDataset(tokenizer, examples, data.max_length, targets),
    )


def concat(first: Examples, second: Examples) -> Examples:
    return Examples(
        texts=first.texts + second.texts,
        text_pairs=None
        if first.text_pairs is None
        else first.text_pairs + (second.text_pairs or []),
        labels=None if first.labels is None else list(first.labels) + list(second.labels or []),
        task=first.task,
        path=first.path,
        rows=first.rows + second.rows,
        sha256=first.sha256,
    )


def _distill_evaluator(
    teacher: nn.Module, terms: list[LossTerm], data: TaskData, batch_size: int = 64
):
    """Stages 0 and 1 score the weighted distillation loss on the eval set (lower is better)."""
    loader = make_loader(data.eval_set, batch_size, shuffle=False)

    @torch.no_grad()
    def evaluate(model) -> Metrics:
        model.eval()
        dev = next(model.parameters()).device
        total, count = 0.0, 0
        for batch in loader:
            batch = {k: v.to(dev) for k, v in batch.items()}
            loss, _ = combine(
                terms, forward_internals(model, batch), forward_internals(teacher, batch), batch
            )
            total += float(loss) * len(batch["input_ids"])
            count += len(batch["input_ids"])
        value = total / max(count, 1)
        return Metrics(-value, {"distill_loss": value}, "distill_loss")

    return evaluate


def _stage_record(result: TrainResult) -> dict:
    return {
        "steps": result.steps,
        "best_step": result.best_step,
        "best": result.best.values if result.best else {},
        "history": result.history,
        "first_losses": result.losses[:5],
    }


def run(
    teacher_dir: Path,
    spec: DataSpec,
    out: Path,
    tiny: TinyBERTConfig,
    config: TrainConfig,
    route: Path | None = None,
) -> tuple[TrainResult, dict]:
    loaded = load_teacher(
        teacher_dir
    )  # a classifier, or an ensemble whose best member has the layers
    teacher, tokenizer, teacher_meta, fingerprint = (
        loaded.layers,
        loaded.tokenizer,
        loaded.metadata,
        loaded.fingerprint,
    )
    data = prepare(spec, tokenizer, label_map=loaded.label_map, task=loaded.task)
    teacher_metrics = evaluator(data)(loaded.model)
    layer_map = map_layers(teacher.config.num_hidden_layers, tiny.layers, tiny.layer_map)
    general = read_text_file(tiny.general_text) if tiny.general_text else None

    train_data, augmentation = data, None
    if tiny.augment:
        augment_config = AugmentConfig(
            tiny.augment_copies,
            tiny.augment_prob,
            tiny.augment_top_k,
            tiny.augment_mlm,
            max_length=spec.max_length,
            seed=config.seed,
        )
        augmentation = augment(data.train, teacher, tokenizer, fingerprint, augment_config)
        train_data = with_training_examples(
            data, concat(data.train, augmentation.examples), tokenizer
        )
    cached = teacher_logits(
        loaded.model, teacher_dir, train_data, fingerprint=fingerprint
    )  # (N, C), originals first
    del loaded

    seed_everything(config.seed)
    student, init = build_student(teacher, tiny.shape(), layer_map, seed=config.seed)
    projections = Projections.between(student.config.hidden_size, teacher.config.hidden_size)
    teacher_heads = teacher.config.num_attention_heads
    teacher.to(device())
    teacher.requires_grad_(False)
    terms = intermediate_terms(tiny, layer_map, projections)

    def distill_step(model, batch):
        with torch.no_grad():
            teacher_out = forward_internals(teacher, batch)
        return combine(terms, forward_internals(model, batch), teacher_out, batch)

    distill_config = dataclasses.replace(config, lr=tiny.intermediate_lr or config.lr)
    stages: dict[str, dict] = {}
    if general is not None:
        general_set = EncodedDataset(tokenizer, general, spec.max_length)
        loader = train_loader(general_set, config)
        result = train(
            student,
            loader,
            distill_step,
            _distill_evaluator(teacher, terms, data),
            dataclasses.replace(distill_config, epochs=tiny.general_epochs),
            projections.modules(),
            description="tinybert-general",
        )
        stages["general"] = {
            **_stage_record(result),
            "text": str(tiny.general_text),
            "texts": len(general),
        }
    loader = train_loader(train_data.train_set, config)
    result = train(
        student,
        loader,
        distill_step,
        _distill_evaluator(teacher, terms, data),
        dataclasses.replace(distill_config, epochs=tiny.intermediate_epochs),
        projections.modules(),
        description="tinybert-intermediate",
    )
    stages["intermediate"] = _stage_record(result)
    teacher.to("cpu")  # stage 2 reads cached logits; free the device for the student

    prediction = prediction_terms(tiny)

    route_stages = soft_targets(
        route, Path(teacher_dir), teacher, train_data, cached, config, len(loader)
    )
    results = train_stages(
        student,
        loader,
        route_stages,
        cached_logits_step(prediction),
        evaluator(data),
        "tinybert-prediction",
    )
    result = results[-1]
    stages["prediction"] = _stage_record(result)
    metadata = {
        "role": "student",
        "method": "tinybert",
        "teacher": str(teacher_dir),
        "teacher_metric": teacher_metrics.values,
        "layer_map": layer_map,
        "tinybert_config": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(tiny).items()
        },
        "init": init.describe(),
        "projection": projections.embedding is not None,
        "attention_heads": "per-head"
        if student.config.num_attention_heads == teacher_heads
        else "head-mean",
        "augmentation": augmentation.describe() if augmentation else None,
        **training_record(result, config, data),
        "route": describe_route([stage for stage, _ in route_stages], results)
        if route is not None
        else None,
        "train_rows": len(train_data.train),
        "stages": stages,
        "first_losses": {name: stage["first_losses"] for name, stage in stages.items()},
        "teacher_meta": {k: teacher_meta.get(k) for k in ("method", "base", "metric")},
    }
    save_model(student, tokenizer, out, metadata)
    return result, metadata
