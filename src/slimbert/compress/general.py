"""`slimbert distill-general`: task-agnostic distillation of a teacher's encoder into a student of
any depth × width × heads, on unlabelled text, once per teacher and student shape.

A student narrower than its teacher cannot copy the teacher's weights, and trained from random
weights on one task's labelled rows it learns little (the 3 × 192 TinyBERT student on MRPC
answered the majority class). Both papers that make narrow students work first teach the student
to *be an encoder like the teacher's* on plain text, with no task in sight:

    teacher encoder (12 × 768, frozen)          student encoder (6 × 384, trained)
    ┌──────────────────────────┐                ┌──────────────────────────┐
    │ layer 11: Q K V, H_11    │── relations ──▶│ layer 5: Q K V  (minilm) │
    │   ...                    │                │   ...                    │
    │ layer g(m): A, H ────────┼── W_h, MSE ───▶│ layer m: A, H (tinybert) │
    │ embeddings E ────────────┼── W_e, MSE ───▶│ embeddings E             │
    └──────────────────────────┘                └──────────────────────────┘

- `--objective minilm` (MiniLMv2, Wang et al. 2021): KL between the teacher's and the student's
  Q-Q, K-K and V-V self-attention relations, one teacher layer (default: the last) against the
  student's last layer, each split into R relation heads. Relations are T × T, so no projection
  is learned and any width works as long as R divides both widths; they are read from the
  projections' outputs, so they hold for relative positions (MPNet, DeBERTa) too.
  `--relations v1` takes MiniLM's (Wang et al. 2020) attention distributions and V-V relation
  instead (`compress.minilm`): the student then needs the teacher's head count.
- `--objective tinybert` (TinyBERT's general distillation, Jiao et al. 2020): MSE of the
  embedding outputs and of each mapped layer's hidden states through learned projections
  W_e, W_h (H_s → H_t, thrown away afterwards), plus MSE of pre-softmax attention scores (with
  DeBERTa's and MPNet's relative-position terms caught as the model computes them; rotary
  positions, ModernBERT, need --attention-weight 0).
- `--objective distilbert` (DistilBERT's triple loss, Sanh et al. 2019; `compress.triple`): the
  teacher must be a masked-LM model with its head (a base checkpoint, not a fine-tuned
  classifier: refused in one line naming the missing head weights). Text is masked as BERT
  masks it, and the student, the teacher's masked-LM model cut to its shape (the MLM head
  copied where the width matches), learns T²·KL of the teacher's MLM distributions at every
  real token + its own masked-LM loss + 1 − cos of the last hidden states (through a learned
  W_h for a narrower student). It is saved with its MLM head, so it also serves as
  --augment-mlm; --student-init reads its encoder. Held-out texts are masked once, with the
  seed, so the checkpoint's loss is comparable across evaluations.

The student starts from the mapped teacher layers where a tensor's shape matches and from random
weights elsewhere (a narrow student: everywhere). A held-out share of the texts, drawn once with
the seed, picks the checkpoint with the lowest distillation loss. The result is a plain
classifier folder of the teacher's family (its head untrained) with the teacher's tokenizer, and
every method's `--student-init` starts from it: its shape, its embeddings and its encoder. Its
slimbert.json records the texts' hashes, the tokens seen and the wall-clock per million tokens.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from slimbert.batches import EncodedDataset, make_loader
from slimbert.compress.method import plain
from slimbert.compress.pretrain import source_model
from slimbert.compress.relations import RELATION_SETS, RELATIONS_HELP, minilm_terms
from slimbert.compress.students import ShapeSettings, build_student, map_layers
from slimbert.compress.tinybert import Projections, intermediate_terms
from slimbert.compress.triple import mask_tokens, mlm_teacher, triple_terms
from slimbert.data import Columns, concat
from slimbert.errors import SlimbertError
from slimbert.families import family_of
from slimbert.models import device, save_model, seed_everything
from slimbert.record import ModelRecord
from slimbert.settings import setting
from slimbert.texts import describe_texts, unlabelled_texts
from slimbert.training.capture import (
    check_attention_scores,
    distill_loss_evaluator,
    forward_internals,
)
from slimbert.training.config import TrainConfig, TrainResult, train_loader
from slimbert.training.loop import train
from slimbert.training.losses import LossTerm, combine
from slimbert.training.state import RunFiles

ROLE = "general-student"
OBJECTIVES = ("minilm", "tinybert", "distilbert")


@dataclass
class GeneralConfig(ShapeSettings):
    """The student's shape (None keeps the teacher's), the objective and its settings."""

    objective: str = setting(
        "minilm",
        "minilm: Q-Q, K-K, V-V attention relations of one teacher layer in the student's last "
        "(no projection, any width); tinybert: embedding and hidden-state MSE through learned "
        "projections, plus pre-softmax attention scores (not for rotary positions); "
        "distilbert: DistilBERT's triple loss on masked text (soft MLM targets at "
        "--temperature, the student's own MLM loss, hidden-state cosine) from a teacher "
        "saved with its masked-LM head.",
        choices=OBJECTIVES,
    )
    teacher_layer: int = setting(
        -1, "minilm: 0-based teacher layer whose relations are distilled; -1 = the last."
    )
    relations: str = setting("v2", "minilm: " + RELATIONS_HELP, choices=RELATION_SETS)
    relation_heads: int | None = setting(
        None,
        "minilm: relation heads R; must divide both widths (default: the teacher's head count, "
        "or the largest common divisor of both widths below it when that does not divide).",
        min=1,
    )
    layer_map: str = setting(
        "uniform",
        "tinybert: uniform, top, bottom, or student:teacher pairs like 0:1,1:3,2:5 (0-based).",
    )
    embedding_weight: float = setting(1.0, "tinybert: weight of the embedding MSE.", min=0)
    attention_weight: float = setting(
        1.0,
        "tinybert: weight of the attention-score MSE (0 for rotary positions: ModernBERT).",
        min=0,
    )
    hidden_weight: float = setting(1.0, "tinybert: weight of the hidden-state MSE.", min=0)
    temperature: float = setting(
        2.0,
        "distilbert: temperature T of the soft MLM targets (the term is scaled by T²); "
        "higher spreads the teacher's probability over more candidate words.",
        min=0,
        min_open=True,
    )
    soft_weight: float = setting(
        5.0, "distilbert: weight of the soft-target term (DistilBERT's alpha_ce).", min=0
    )
    mlm_weight: float = setting(
        2.0,
        "distilbert: weight of the student's own masked-LM loss (alpha_mlm); 0 leaves it out.",
        min=0,
    )
    cosine_weight: float = setting(
        1.0,
        "distilbert: weight of 1 − cos between the last hidden states (alpha_cos).",
        min=0,
    )
    mlm_probability: float = setting(
        0.15,
        "distilbert: share of real tokens masked (of those 80% [MASK], 10% random, 10% kept).",
        min=0,
        max=1,
        min_open=True,
        max_open=True,
    )
    max_length: int = setting(128, "Tokens per text (or pair) after truncation.", min=8, max=4096)
    holdout: float = setting(
        0.02,
        "Share of the texts held out to pick the checkpoint (at least one text, at most 2,000).",
        min=0,
        max=0.5,
        min_open=True,
        max_open=True,
    )


def objective_terms(
    general: GeneralConfig, teacher: torch.nn.Module, student: torch.nn.Module
) -> tuple[list[LossTerm], Projections, dict]:
    """The loss terms of `general.objective` between `teacher` and `student`, the projections
    they train (tinybert on a narrower student) and what the metadata records of them."""
    family = family_of(teacher.config)
    teacher_width = family.size(teacher.config, "width")
    student_width = family.size(student.config, "width")
    if general.objective == "minilm":
        terms, record = minilm_terms(
            general.relations, general.teacher_layer, general.relation_heads, teacher, student
        )
        return terms, Projections(None, None), record
    if general.objective == "distilbert":
        projections = Projections.between(student_width, teacher_width)
        terms = triple_terms(
            general.temperature,
            general.soft_weight,
            general.mlm_weight,
            general.cosine_weight,
            projections.hidden,
        )
        record = {
            "layer_map": student.config.slimbert_layer_map,
            "projection": projections.hidden is not None,
            "temperature": general.temperature,
            "weights": {
                "soft": general.soft_weight,
                "mlm": general.mlm_weight,
                "cosine": general.cosine_weight,
            },
            "mlm_probability": general.mlm_probability,
        }
        return terms, Projections(None, projections.hidden), record
    layer_map = map_layers(
        family.size(teacher.config, "depth"),
        family.size(student.config, "depth"),
        general.layer_map,
    )
    scores = family.scores_readable(teacher.config)
    if general.attention_weight > 0:
        check_attention_scores(teacher)
    projections = Projections.between(student_width, teacher_width)
    terms = intermediate_terms(general, layer_map, projections, scores)
    return (
        terms,
        projections,
        {"layer_map": layer_map, "projection": projections.hidden is not None},
    )


def _split(sources, seed: int, holdout: float):
    """The texts as one Examples per kind (singles, pairs), split into training and held-out
    rows."""
    singles = [s for s in sources if not s.is_pair and len(s)]
    pairs = [s for s in sources if s.is_pair and len(s)]
    groups = []
    for group in (singles, pairs):
        if group:
            merged = group[0]
            for more in group[1:]:
                merged = concat(merged, more)
            groups.append(merged)
    total = sum(len(g) for g in groups)
    if total < 2:
        raise SlimbertError(
            f"{total} distinct text(s) in --text; general distillation needs at least two "
            "(one is held out)"
        )
    held_count = min(2000, max(1, round(holdout * total)))
    order = list(range(total))
    random.Random(seed).shuffle(order)
    held = set(order[:held_count])
    train_parts, held_parts, offset = [], [], 0
    for group in groups:
        indices = range(offset, offset + len(group))
        train_parts.append(group.subset([i - offset for i in indices if i not in held]))
        held_parts.append(group.subset([i - offset for i in indices if i in held]))
        offset += len(group)
    return train_parts, held_parts


class _Texts(torch.utils.data.Dataset):
    """Encoded single texts and pairs as one dataset (make_loader reads `features` for the
    lengths and `pad_id` for padding)."""

    def __init__(self, parts: list[EncodedDataset]):
        self.features = [f for part in parts for f in part.features]
        self.pad_id = parts[0].pad_id if parts else 0

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        return {**self.features[index], "idx": index}


@dataclass
class _Corpus:
    """The texts as read (one Examples per source) and encoded for training and held out."""

    sources: list
    train_set: _Texts
    held_set: _Texts

    @property
    def tokens(self) -> int:
        """Tokens of the training texts, padding excluded."""
        return sum(len(f["input_ids"]) for f in self.train_set.features)


def _corpus(texts, columns, limit, sample_seed, tokenizer, general, seed) -> _Corpus:
    sources = unlabelled_texts(texts, columns, limit, sample_seed)
    train_parts, held_parts = _split(sources, seed, general.holdout)

    def encoded(parts):
        return _Texts([EncodedDataset(tokenizer, p, general.max_length) for p in parts if len(p)])

    return _Corpus(sources, encoded(train_parts), encoded(held_parts))


def distill_general(
    teacher: str | Path,
    texts: list[Path],
    out: Path,
    general: GeneralConfig,
    config: TrainConfig,
    columns: Columns = Columns(),
    limit: int | None = None,
    sample_seed: int | None = None,
) -> tuple[TrainResult, ModelRecord]:
    """Distil `teacher`'s encoder into a student of `general`'s shape on `texts` and save it as
    a classifier folder (head untrained) at `out`."""
    if not texts:
        raise SlimbertError("give at least one --text file of unlabelled text")
    triple = general.objective == "distilbert"
    source, tokenizer, fingerprint = (mlm_teacher if triple else source_model)(teacher)
    depth = family_of(source.config).size(source.config, "depth")
    seed_everything(config.seed)
    student, init = build_student(
        source, general.shape(), map_layers(depth, general.layers, "uniform"), seed=config.seed
    )
    terms, projections, described = objective_terms(general, source, student)
    hidden_states = general.objective in ("tinybert", "distilbert")
    corpus = _corpus(texts, columns, limit, sample_seed, tokenizer, general, config.seed)
    held = make_loader(corpus.held_set, 64, shuffle=False)
    if triple:  # masked once, with the seed: every evaluation reads the same masks
        masks = torch.Generator().manual_seed(config.seed + 1)
        held = [mask_tokens(batch, tokenizer, general.mlm_probability, masks) for batch in held]
    evaluate = distill_loss_evaluator(source, terms, held, hidden_states=hidden_states)
    source.to(device(config.device))
    source.requires_grad_(False)
    before = evaluate(student)

    def step(model, batch):
        if triple:  # fresh masks every step, from torch's generator as the trainer seeded it
            batch = mask_tokens(batch, tokenizer, general.mlm_probability)
        with torch.no_grad():
            teacher_out = forward_internals(source, batch, hidden_states=hidden_states)
        return combine(
            terms, forward_internals(model, batch, hidden_states=hidden_states), teacher_out, batch
        )

    started = time.perf_counter()
    result = train(
        student,
        train_loader(corpus.train_set, config),
        step,
        evaluate,
        config,
        projections.modules(),
        description=f"general-{general.objective}",
        run=RunFiles(out, config.resume),
    )
    seconds = time.perf_counter() - started
    record = ModelRecord(
        role=ROLE,
        method=f"general-{general.objective}",
        source=str(teacher),
        texts=describe_texts(texts, corpus.sources),
        metric=result.best.values if result.best else {},
        metric_name="distill_loss",
        best_step=result.best_step,
        steps=result.steps,
        method_config=asdict(general),
        train_config=plain(asdict(config)),
        history=result.history,
        first_losses=result.losses[:5],
        data={"max_length": general.max_length},
        details={
            "source_fingerprint": fingerprint,
            "objective": described,
            "init": init.describe(),
            "distill_loss_before": before.values["distill_loss"],
            **_details(student, corpus, result, seconds, config),
        },
    )
    return result, save_model(student.to("cpu"), tokenizer, out, record)


def _details(student, corpus, result, seconds, config) -> dict:
    """The shape, examples, tokens and cost the record keeps of a general student."""
    family = family_of(student.config)
    train_rows = max(len(corpus.train_set), 1)
    seen = corpus.tokens * result.steps * config.batch_size * config.grad_accum / train_rows
    return {
        "shape": {w: family.size(student.config, w) for w in ("depth", "width", "heads", "ffn")},
        "examples": {
            "train": len(corpus.train_set),
            "holdout": len(corpus.held_set),
            "train_tokens": corpus.tokens,
        },
        "cost": {
            "wall_seconds": round(seconds, 1),
            "tokens_seen": round(seen),
            "seconds_per_million_tokens": round(seconds / seen * 1e6, 1) if seen else None,
        },
    }
