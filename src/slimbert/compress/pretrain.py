"""`slimbert pretrain-student`: continued masked-LM pre-training of a layer-truncated student.

The student is the teacher's encoder cut to `layers` layers (`compress.students.build_student` with
`pick_layers`), wrapped in a masked-LM model and trained on in-domain unlabelled text — by
default the task's own training text, pairs kept as pairs so segment embeddings see what they
will see in fine-tuning. `compress kd --student-init DIR` then starts from its embeddings and
encoder (PS-DA* in the professor experiment):

    teacher classifier (T layers)                     <Family>ForMaskedLM (S layers)
    ┌──────────────────────┐    build_student         ┌──────────────────────────┐
    │ embeddings           │ ───────────────────────▶ │ embeddings               │ ◀─┐ tied
    │ encoder.layer[0..T)  │  layers pick_layers(T,S) │ encoder.layer[0..S)      │   │
    │ pooler, classifier   │    (not copied)          │ cls.predictions: dense,  │   │
    └──────────────────────┘                          │  LayerNorm, bias (fresh),│   │
                                                      │  decoder = word emb. ────┼───┘
                                                      └──────────────────────────┘

The bundled MiniLM ships without its MLM head, so the head's transform and bias start fresh
and the decoder is tied to the input embeddings (as BERT's was in pre-training). Masking is
BERT's (15 % of tokens; of those 80 % [MASK], 10 % random, 10 % kept) through transformers'
DataCollatorForLanguageModeling, drawn from torch's generator as seeded by the trainer. A
held-out share of the texts, masked once with a fixed seed, picks the best checkpoint by its
masked-LM loss.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from slimbert.compress.students import (
    StudentShape,
    build_student,
    ffn_size_setting,
    heads_setting,
    hidden_size_setting,
    pick_layers,
)
from slimbert.data import Columns, Examples
from slimbert.errors import SlimbertError
from slimbert.families import family_of, forward_inputs
from slimbert.metrics import Metrics
from slimbert.models import (
    load_classifier,
    load_tokenizer,
    resolve_base,
    save_model,
    seed_everything,
)
from slimbert.record import ModelRecord
from slimbert.settings import setting
from slimbert.teachers.load import load_teacher
from slimbert.texts import describe_texts, unlabelled_texts
from slimbert.training.config import TrainConfig, TrainResult
from slimbert.training.logits_cache import model_fingerprint
from slimbert.training.loop import train
from slimbert.training.state import RunFiles

ROLE = "pretrained-student"


@dataclass
class PretrainConfig:
    """layers:         student depth (teacher layers kept by pick_layers)
    hidden_size, heads, ffn_size: a narrower student from fresh weights (Turc et al.'s
                     pre-trained compact model: masked-LM pre-training of the small shape
                     itself); None keeps the teacher's
    mlm_probability: share of tokens masked
    holdout:         share of the texts held out to pick the best checkpoint (at least one)
    max_length:      tokens per text (or pair) after truncation"""

    layers: int = setting(
        3, "Student depth (teacher layers picked as compress kd picks them).", min=1
    )
    hidden_size: int | None = hidden_size_setting(
        "Student hidden size (default: the teacher's): narrower, the student starts from "
        "fresh weights and learns the masked LM at its own size."
    )
    heads: int | None = heads_setting()
    ffn_size: int | None = ffn_size_setting()
    mlm_probability: float = setting(
        0.15, "Share of tokens masked.", min=0, max=1, min_open=True, max_open=True
    )
    holdout: float = setting(
        0.05,
        "Share of texts held out to pick the best checkpoint.",
        min=0,
        max=0.5,
        min_open=True,
        max_open=True,
    )
    max_length: int = setting(128, "Tokens per text (or pair) after truncation.", min=8, max=4096)

    def __post_init__(self) -> None:
        if not 0.0 < self.mlm_probability < 1.0:
            raise SlimbertError(
                f"--mlm-probability {self.mlm_probability}: give a share in (0, 1), e.g. 0.15"
            )
        if not 0.0 < self.holdout < 0.5:
            raise SlimbertError(f"--holdout {self.holdout}: give a share in (0, 0.5), e.g. 0.05")


def source_model(teacher: str | Path) -> tuple[nn.Module, object, str]:
    """The classifier whose encoder the student copies: a teacher or professor directory (an
    ensemble gives its best member), or a base checkpoint (a directory or a bundled name)."""
    path = Path(str(teacher))
    if path.is_dir():
        loaded = load_teacher(path)
        return loaded.layers, loaded.tokenizer, loaded.fingerprint
    base_dir = resolve_base(teacher, "--teacher")
    return load_classifier(base_dir), load_tokenizer(base_dir), model_fingerprint(base_dir)


def encoder_keys(model: nn.Module, keys) -> list[str]:
    """The keys of `keys` under the model's base (embeddings, layers, final norm), less a
    pooler: what a masked-LM student shares with its classifier."""
    prefix = f"{model.base_model_prefix}."
    return [k for k in keys if k.startswith(prefix) and not k.startswith(f"{prefix}pooler")]


def mlm_student(
    source: nn.Module, layers: int, shape: StudentShape | None = None
) -> tuple[nn.Module, list[int]]:
    """A masked-LM model of `layers` layers whose embeddings and encoder are `source`'s picked
    layers, key by key with shape asserts (a narrower `shape`: fresh weights of that size, from
    torch's seeded state); the MLM head is fresh, its decoder tied to the word embeddings."""
    from transformers import AutoModelForMaskedLM

    family = family_of(source.config)
    picked = pick_layers(family.size(source.config, "depth"), layers)
    student, _ = build_student(source, shape or StudentShape(layers), picked, seed=None)
    config = copy.deepcopy(student.config)
    config.architectures = None
    config.is_decoder = False
    config.tie_word_embeddings = True
    mlm = AutoModelForMaskedLM.from_config(config)
    copied_from = student.state_dict()
    state = mlm.state_dict()
    for key in encoder_keys(student, copied_from):
        if key not in state:
            raise SlimbertError(
                f"{type(mlm).__name__} has no weight {key!r}; masked-LM pre-training needs the "
                f"{family.name} masked-LM model to share its classifier's encoder"
            )
        assert state[key].shape == copied_from[key].shape, (
            key,
            state[key].shape,
            copied_from[key].shape,
        )
        state[key] = copied_from[key].clone()
    mlm.load_state_dict(state, strict=True)
    mlm.tie_weights()
    decoder = mlm.get_output_embeddings().weight
    assert decoder.data_ptr() == mlm.get_input_embeddings().weight.data_ptr(), (
        "MLM decoder is not tied to the word embeddings"
    )
    return mlm, picked


def _held_out_and_training(
    tokenizer, sources: list[Examples], pretrain: PretrainConfig, seed: int, first: Path
) -> tuple[list[dict], list[dict]]:
    """The texts tokenised and shuffled: a `pretrain.holdout` share (at least one) held out to
    pick the best checkpoint, and the rest to train on. `first` is the task's training file."""
    features = []
    for examples in sources:
        if not len(examples):
            continue
        pairs = (examples.text_pairs,) if examples.is_pair else ()
        encoded = tokenizer(
            examples.texts,
            *pairs,
            truncation=True,
            max_length=pretrain.max_length,
            return_special_tokens_mask=True,
        )
        features += [{k: encoded[k][i] for k in encoded} for i in range(len(examples))]
    if len(features) < 2:
        raise SlimbertError(
            f"{first}: {len(features)} distinct text(s); "
            "masked-LM pre-training needs at least two (one is held out)"
        )
    order = list(range(len(features)))
    random.Random(seed).shuffle(order)
    held_count = max(1, round(pretrain.holdout * len(features)))
    return [features[i] for i in order[:held_count]], [features[i] for i in order[held_count:]]


def masked_lm_loss(model, batch: dict[str, torch.Tensor], reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over the masked tokens only, running the vocabulary head on those alone.

    A masked-LM model's own loss projects every token to the vocabulary (MiniLM: 384 × 30,522
    multiply-adds a token, more than six encoder layers' worth) and then ignores the ~85% that
    are not masked; selecting the masked positions first gives the same loss for a fraction of
    the compute. A family without one head module (`families.Family.mlm_head`: DistilBERT,
    ELECTRA, ModernBERT) and a model wrapped for data-parallel training run their own loss.
    """
    labels = batch["labels"]
    inner = getattr(model, "module", model)
    head = family_of(inner.config).mlm_head if inner is model else None
    inputs = {k: v for k, v in batch.items() if k in forward_inputs(inner)}
    if head is None:  # wrapped for data-parallel training, or a family without one head module
        loss = model(**inputs, labels=labels).loss
        return loss * int((labels != -100).sum()) if reduction == "sum" else loss
    mask = labels != -100  # (B, T)
    hidden = model.base_model(**inputs).last_hidden_state  # (B, T, H)
    logits = getattr(model, head)(hidden[mask])  # (M, V)
    return torch.nn.functional.cross_entropy(logits.float(), labels[mask], reduction=reduction)


def mlm_evaluator(batches: list[dict[str, torch.Tensor]]):
    """Masked-LM loss over fixed, pre-masked held-out batches: mean cross-entropy per masked
    token (not per batch), so batch sizes do not tilt it. Metrics.main is −loss (higher wins)."""

    @torch.no_grad()
    def evaluate(model) -> Metrics:
        model.eval()
        dev = next(model.parameters()).device
        total, count = 0.0, 0
        for batch in batches:
            batch = {k: v.to(dev) for k, v in batch.items()}
            total += float(masked_lm_loss(model, batch, reduction="sum"))
            count += int((batch["labels"] != -100).sum())
        loss = total / max(count, 1)
        return Metrics(
            -loss, {"mlm_loss": loss, "perplexity": math.exp(min(loss, 50.0))}, "mlm_loss"
        )

    return evaluate


def pretrain_student(
    teacher: str | Path,
    texts: list[Path],
    out: Path,
    pretrain: PretrainConfig,
    config: TrainConfig,
    columns: Columns = Columns(),
    limit: int | None = None,
    sample_seed: int | None = None,
) -> tuple[TrainResult, ModelRecord]:
    """Masked-LM pre-train a `pretrain.layers`-layer student of `teacher` on `texts` (the first
    is the task's training file) and save it as an HF masked-LM directory at `out`."""
    from transformers import DataCollatorForLanguageModeling

    if not texts:
        raise SlimbertError("give at least one text file (--train, the task's training file)")
    source, tokenizer, fingerprint = source_model(teacher)
    seed_everything(config.seed)
    shape = StudentShape(pretrain.layers, pretrain.hidden_size, pretrain.heads, pretrain.ffn_size)
    mlm, picked = mlm_student(source, pretrain.layers, shape)
    del source
    sources = unlabelled_texts(texts, columns, limit, sample_seed)
    held, training = _held_out_and_training(tokenizer, sources, pretrain, config.seed, texts[0])

    # The collator draws masks from torch's global generator (its own `seed` refuses to run in
    # a child process); held-out masks are drawn once under a forked, fixed seed.
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=pretrain.mlm_probability)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 1)
        eval_batches = [dict(collator(held[i : i + 64])) for i in range(0, len(held), 64)]
    evaluate = mlm_evaluator(eval_batches)
    before = evaluate(mlm)

    loader = DataLoader(
        training,
        batch_size=config.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(config.seed),
        collate_fn=collator,
    )

    def step(model, batch):
        loss = masked_lm_loss(model, batch)
        return loss, {"mlm": float(loss.detach())}

    result = train(
        mlm,
        loader,
        step,
        evaluate,
        config,
        description=f"mlm-{pretrain.layers}L",
        run=RunFiles(out, config.resume),
    )
    record = ModelRecord(
        role=ROLE,
        method="mlm",
        source=str(teacher),
        layer_map=picked,
        texts=describe_texts(texts, sources),
        metric=result.best.values if result.best else {},
        metric_name="mlm_loss",
        best_step=result.best_step,
        steps=result.steps,
        method_config=asdict(pretrain),
        train_config=asdict(config),
        history=result.history,
        first_losses=result.losses[:5],
        data={"max_length": pretrain.max_length},
        details={
            "source_fingerprint": fingerprint,
            "examples": {"train": len(training), "holdout": len(held)},
            "mlm_loss_before": before.values["mlm_loss"],
        },
    )
    return result, save_model(mlm, tokenizer, out, record)
