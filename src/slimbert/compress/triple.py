"""DistilBERT's triple loss (Sanh et al. 2019) for `distill-general --objective distilbert`.

The teacher is a masked-LM model (its MLM head intact: a base checkpoint such as a
BertForMaskedLM directory, not a fine-tuned classifier, which drops the head). Each batch of
unlabelled text is masked as BERT masks it (a share p of the real, non-special tokens; of those
80 % become the mask token, 10 % a random token, 10 % stay), both models read the same masked
batch, and the student, a masked-LM model of the teacher's family cut to its shape, minimises

    w_soft · T² · mean over real tokens of KL(softmax(z_t/T) ‖ softmax(z_s/T))   soft targets
  + w_mlm  · mean over masked tokens of −log softmax(z_s)[original token]       its own MLM loss
  + w_cos  · mean over real tokens of 1 − cos(W·h_s, h_t)                        last hidden states

z: (B, T, V) MLM logits; h: the last hidden states; W a learned linear map (H_s → H_t) only for a
narrower student (DistilBERT keeps the width). The soft term covers every real token, as the
DistilBERT code's default does (not only the masked ones); the KL differs from the soft-target
cross-entropy only by the teacher's entropy, a constant for the student, so it has the same
gradient and is 0 at a match. Defaults are DistilBERT's: T 2, weights 5 / 2 / 1, p 0.15.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from slimbert.errors import SlimbertError
from slimbert.models import load_masked_lm, load_tokenizer
from slimbert.training.logits_cache import model_fingerprint
from slimbert.training.losses import LossTerm, TermFn, hidden_cosine_loss, soft_cross_entropy
from slimbert.training.outputs import Outputs


def mlm_teacher(teacher: str | Path):
    """The teacher as a masked-LM model, its tokenizer and fingerprint; one line where its
    weights hold no MLM head (naming the teacher and a missing head weight)."""
    model, path = load_masked_lm(
        teacher,
        "--teacher",
        "--objective distilbert distils MLM logits, so give the base checkpoint saved with its "
        "head, or use --objective minilm or tinybert",
    )
    tokenizer = load_tokenizer(path)
    if tokenizer.mask_token_id is None:
        raise SlimbertError(
            f"--teacher {teacher}: its tokenizer has no mask token; --objective distilbert masks "
            "tokens, so give a masked-LM checkpoint's tokenizer"
        )
    return model, tokenizer, model_fingerprint(path)


def mask_tokens(
    batch: dict[str, torch.Tensor],
    tokenizer,
    probability: float,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """BERT's masking of a padded batch: each real, non-special token is picked with chance
    `probability`; a picked token becomes the mask token (80 %), a uniformly random token
    (10 %) or stays (10 %). Returns the batch with masked input_ids and labels (B, T): the
    original id where picked, −100 elsewhere. Draws from `generator` (default: torch's global
    generator of the batch's device)."""
    ids = batch["input_ids"]  # (B, T)
    device = ids.device if generator is None else generator.device
    special = torch.tensor(sorted(tokenizer.all_special_ids), device=ids.device)
    eligible = (batch["attention_mask"] == 1) & ~torch.isin(ids, special)

    def draw() -> torch.Tensor:  # (B, T) uniform in [0, 1)
        return torch.rand(ids.shape, generator=generator, device=device).to(ids.device)

    picked = (draw() < probability) & eligible
    kind = draw()  # < 0.8 mask token, 0.8–0.9 random token, ≥ 0.9 kept
    random_ids = torch.randint(len(tokenizer), ids.shape, generator=generator, device=device).to(
        ids.device
    )
    masked = torch.where(picked & (kind < 0.8), torch.full_like(ids, tokenizer.mask_token_id), ids)
    masked = torch.where(picked & (kind >= 0.8) & (kind < 0.9), random_ids, masked)
    return {**batch, "input_ids": masked, "labels": ids.masked_fill(~picked, -100)}


def soft_mlm_loss(temperature: float) -> TermFn:
    """T² · KL(teacher ‖ student) of the MLM distributions at temperature T, mean over the real
    tokens of the batch."""

    def term(student: Outputs, teacher: Outputs | None, batch) -> torch.Tensor:
        assert teacher is not None, "soft_mlm_loss needs the teacher's MLM logits"
        real = student.attention_mask.bool()  # (B, T)
        return soft_cross_entropy(student.logits[real], teacher.logits[real], temperature)

    return term


def student_mlm_loss(student: Outputs, teacher: Outputs | None, batch) -> torch.Tensor:
    """Cross-entropy of the student's MLM logits at the masked tokens, mean per masked token (0
    for a batch where no token was picked)."""
    labels = batch["labels"]  # (B, T)
    picked = labels != -100
    logits = student.logits[picked].float()  # (M, V)
    total = F.cross_entropy(logits, labels[picked], reduction="sum")
    return total / picked.sum().clamp_min(1)


def triple_terms(
    temperature: float,
    soft_weight: float,
    mlm_weight: float,
    cosine_weight: float,
    projection: torch.nn.Module | None = None,
) -> list[LossTerm]:
    """The three terms, logged as soft, mlm and cosine."""
    return [
        LossTerm("soft", soft_weight, soft_mlm_loss(temperature)),
        LossTerm("mlm", mlm_weight, student_mlm_loss),
        LossTerm("cosine", cosine_weight, hidden_cosine_loss(-1, -1, projection)),
    ]
