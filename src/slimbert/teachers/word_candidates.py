"""Where word_augment.py's replacement words come from: the whole-word tokens of a vocabulary,
a masked LM's predictions for a word masked in its own sentence, or the nearest whole-word
tokens to a word in a teacher's input-embedding matrix.
"""

from __future__ import annotations

import re

import torch

from slimbert.data import Examples
from slimbert.errors import SlimbertError
from slimbert.models import device, load_masked_lm, load_tokenizer

# (example index, field: 0 = text, 1 = text pair, word index within the field)
Slot = tuple[int, int, int]


def fields(examples: Examples, i: int) -> list[str]:
    return [examples.texts[i]] + (
        [examples.text_pairs[i]] if examples.text_pairs is not None else []
    )


def whole_words(tokenizer, ids: list[int]) -> dict[int, str]:
    """The tokens among `ids` that are whole words, as the words they spell: alphabetic, longer
    than one letter ("his" → "s" reads as noise), and what the tokenizer makes of that word on
    its own, at a sentence's start or after a space. The rule holds for every vocabulary kind:
    WordPiece's "##ing" spells no alphabetic word, while byte-level BPE's "Ġgreat" and
    SentencePiece's "▁great" spell "great" (their word-start pieces qualify) and a mid-word
    piece such as "ing" tokenizes as "▁ing", another token."""
    special = set(tokenizer.all_special_ids)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    spelled = {
        i: tokenizer.convert_tokens_to_string([token]).strip()
        for i, token in zip(ids, tokens, strict=True)
        if token and i not in special
    }
    spelled = {i: w for i, w in spelled.items() if w.isalpha() and len(w) > 1}
    order = list(spelled)
    if not order:
        return {}
    alone = tokenizer([spelled[i] for i in order], add_special_tokens=False)["input_ids"]
    spaced = tokenizer([" " + spelled[i] for i in order], add_special_tokens=False)["input_ids"]
    return {
        i: spelled[i] for i, a, b in zip(order, alone, spaced, strict=True) if a == [i] or b == [i]
    }


class EmbeddingNeighbours:
    """A word's top-K cosine neighbours among the whole-word tokens of an input-embedding matrix
    (V, H): from the mean of its pieces' unit embeddings, its own pieces excluded."""

    def __init__(self, embeddings: torch.Tensor, tokenizer, top_k: int):
        spelled = whole_words(tokenizer, list(range(min(embeddings.shape[0], len(tokenizer)))))
        self.words = list(spelled)
        if not self.words:
            raise SlimbertError(
                "the teacher's vocabulary has no whole-word tokens to draw replacements from; "
                "give --augment-mlm"
            )
        self.spelled = spelled
        self.matrix = torch.nn.functional.normalize(embeddings.float(), dim=-1)  # (V, H)
        self.top_k = top_k
        self.cache: dict[tuple[int, ...], list[str]] = {}

    def candidates(self, words: list[tuple[int, ...]], batch_size: int = 1024) -> None:
        todo = sorted({w for w in words if w not in self.cache})
        pool = self.matrix[self.words]  # (W, H)
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            # cosine ranking ignores the query's norm, so the mean need not be renormalised
            queries = torch.stack([self.matrix[list(w)].mean(0) for w in chunk])  # (b, H)
            similarity = queries @ pool.T  # (b, W)
            k = min(self.top_k + max(len(w) for w in chunk), len(self.words))
            best = similarity.topk(k, dim=-1).indices  # (b, k)
            for row, word in zip(best.tolist(), chunk, strict=True):
                self.cache[word] = [
                    self.spelled[self.words[j]] for j in row if self.words[j] not in word
                ][: self.top_k]


def load_mlm(name: str):
    """A masked LM and its tokenizer; a model without its MLM head is refused, not silently
    random."""
    model, path = load_masked_lm(
        name,
        "--augment-mlm",
        "give a base model saved with its MLM head, or leave --augment-mlm out to use the "
        "teacher's embedding neighbours",
    )
    return model, load_tokenizer(path), path


@torch.inference_mode()
def mlm_candidates(
    model,
    tokenizer,
    examples: Examples,
    spans: dict[tuple[int, int], list[re.Match]],
    slots: list[Slot],
    config,
) -> dict[Slot, list[str]]:
    """For each slot, mask its word in its own sentence and keep the top-K whole-word
    predictions. `config`: word_augment's AugmentConfig (its mlm, batch_size, max_length and
    top_k)."""
    if tokenizer.mask_token is None:
        raise SlimbertError(
            f"--augment-mlm {config.mlm}: the tokenizer has no mask token; "
            "give a masked-LM base model"
        )
    dev = device()
    model.to(dev)
    spelled = whole_words(tokenizer, list(range(len(tokenizer))))
    found: dict[Slot, list[str]] = {}
    for start in range(0, len(slots), config.batch_size):
        chunk = slots[start : start + config.batch_size]
        masked = []
        for i, field, w in chunk:
            text = fields(examples, i)[field]
            match = spans[(i, field)][w]
            masked.append(text[: match.start()] + tokenizer.mask_token + text[match.end() :])
        encoded = tokenizer(
            masked, truncation=True, max_length=config.max_length, padding=True, return_tensors="pt"
        ).to(dev)
        logits = model(**encoded).logits  # (b, T, V)
        rows, cols = (encoded["input_ids"] == tokenizer.mask_token_id).nonzero(as_tuple=True)
        best = (
            logits[rows, cols]
            .topk(min(config.top_k * 3, logits.shape[-1]), dim=-1)
            .indices.tolist()
        )  # (m, 3K)
        for row, ids in zip(rows.tolist(), best, strict=True):
            i, field, w = chunk[row]
            original = spans[(i, field)][w].group().lower()
            words = [spelled[t] for t in ids if t in spelled and spelled[t].lower() != original]
            found[chunk[row]] = words[: config.top_k]
    model.to("cpu")
    return found
