"""TinyBERT-style data augmentation: N noisy copies of every training example, cached on disk.

Each alphabetic word is, with probability p, replaced by a candidate drawn uniformly from its
top-K list (Jiao et al. 2020, section 3.2 / appendix):

    "the plot was very good"           candidates for "plot" and "good" (top-K, K = 15)
          │      ▲        ▲            ┌──────────────────────────────────────────────────┐
          │      └────────┴────────────┤ mlm:       mask the word in its own sentence and  │
          │                            │            take a masked LM's top-K predictions   │
          ▼                            │ embedding: the K nearest input embeddings of the  │
    "the story was very great"         │            teacher (cosine), excluding the word   │
                                       └──────────────────────────────────────────────────┘

The masked-LM source needs a base model with its MLM head (`--augment-mlm DIR`); slimbert's
bundled MiniLM ships without one, so the default is the teacher's own input embeddings.
Words are replaced whole, however many pieces they have ("unwatchable" → un ##watch ##able):
the masked LM fills one [MASK] put in place of the word; the embedding source takes neighbours
of the mean of its pieces' embeddings (TinyBERT used GloVe; slimbert has no word vectors
offline). Candidates are whole-word tokens of any vocabulary kind (`whole_words`: never
WordPiece's ##pieces nor BPE/SentencePiece mid-word pieces), inserted as the words they spell;
a word with an unknown piece stays.
Sentence pairs: each sentence on its own. The source used is recorded in the student's metadata.

Two rules of Tang et al. 2019 (BERT → BiLSTM) may follow, each off by default and drawn from a
stream of its own, so that with both off the copies are the same as without them:

    masking      every word the copy did not replace becomes the teacher's mask token
                 ("[MASK]") with probability p_mask (--mask-prob; the paper's 0.1)
    n-gram       with probability p_ng (--ngram-prob; the paper's 0.25) the copy keeps only
                 n consecutive words of each text, n drawn from 1..5, and what lies between them

The paper's third rule, POS-guided replacement, needs a part-of-speech tagger, which no
dependency of slimbert carries: the word replacement above takes its place.

The copies are labelled by the teacher where they are used (`slimbert.training.logits_cache`,
which caches the logits); this module caches the texts, keyed by the training texts, the
source model's weights and every setting, so a rerun reads them back.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from slimbert.data import Examples
from slimbert.errors import SlimbertError
from slimbert.files import write_text_atomic
from slimbert.models import resolve_base
from slimbert.teachers.word_candidates import (
    EmbeddingNeighbours,
    Slot,
    fields,
    load_mlm,
    mlm_candidates,
)
from slimbert.training.logits_cache import cache_dir, model_fingerprint

WORD = re.compile(r"[^\W\d_]+")
NGRAM_WORD = re.compile(r"\S+")  # a word of an n-gram: what lies between spaces
FORMAT = 4  # bump when the algorithm changes, so old caches are not reused


@dataclass
class AugmentConfig:
    """copies:     N augmented copies per training example (the originals are kept besides)
    prob:       p, the chance that each replaceable word is replaced in a copy
    top_k:      candidates per word
    mlm:        base model directory (or bundled name) with a masked-LM head;
                None = teacher embeddings
    batch_size: sequences per masked-LM forward pass
    max_length: tokens per masked sentence
    seed:       word choice seed
    mask_prob:  p_mask, the chance that a word not replaced becomes the mask token (Tang et al.)
    ngram_prob: p_ng, the chance that a copy keeps only an n-gram of each text (n in 1..5)"""

    copies: int = 20
    prob: float = 0.4
    top_k: int = 15
    mlm: str | None = None
    batch_size: int = 64
    max_length: int = 128
    seed: int = 42
    mask_prob: float = 0.0
    ngram_prob: float = 0.0

    def __post_init__(self) -> None:
        if self.copies < 1:
            raise SlimbertError(f"--augment-copies {self.copies}: give at least 1 copy per example")
        if not 0.0 < self.prob <= 1.0:
            raise SlimbertError(
                f"--augment-prob {self.prob}: give a replacement probability in (0, 1]"
            )
        if self.top_k < 1:
            raise SlimbertError(f"--augment-top-k {self.top_k}: give at least 1 candidate")
        for flag, value in (("--mask-prob", self.mask_prob), ("--ngram-prob", self.ngram_prob)):
            if not 0.0 <= value <= 1.0:
                raise SlimbertError(f"{flag} {value}: give a probability in [0, 1]")


@dataclass
class Augmented:
    """The copies (N per original, grouped by original), where they came from, and how."""

    examples: Examples
    sources: list[int]  # index of the original example for each copy
    mode: str  # "mlm" or "embedding"
    source_model: str
    cache_file: Path
    from_cache: bool
    replaced_words: int

    def describe(self) -> dict:
        return {
            "mode": self.mode,
            "source_model": self.source_model,
            "copies": len(self.sources),
            "replaced_words": self.replaced_words,
            "cache_file": str(self.cache_file),
            "from_cache": self.from_cache,
        }


class _Vocabulary:
    """Each word's vocabulary pieces as it reads after a space (mid-sentence, where most words
    are), None with an unknown one (memoised: texts repeat words)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.unk = tokenizer.unk_token_id
        self.ids: dict[str, tuple[int, ...] | None] = {}

    def pieces(self, word: str) -> tuple[int, ...] | None:
        if word not in self.ids:
            pieces = tuple(self.tokenizer(" " + word, add_special_tokens=False)["input_ids"])
            self.ids[word] = pieces if pieces and self.unk not in pieces else None
        return self.ids[word]


def _styled(candidate: str, original: str) -> str:
    return candidate[:1].upper() + candidate[1:] if original[:1].isupper() else candidate


def cache_key(examples: Examples, source_id: str, config: AugmentConfig) -> str:
    settings = {k: v for k, v in asdict(config).items() if k not in ("batch_size", "mlm")}
    for rule in ("mask_prob", "ngram_prob"):  # off: the key copies made before the rules had
        if not settings[rule]:
            del settings[rule]
    payload = json.dumps(
        {"format": FORMAT, "source": source_id, "texts": examples.fingerprint(), **settings},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def augment(
    examples: Examples, teacher, teacher_tokenizer, teacher_fingerprint: str, config: AugmentConfig
) -> Augmented:
    """N copies of every example with words replaced (see module docstring), read from the cache
    when present.

    teacher: the classifier whose input embeddings give neighbours when `config.mlm` is None.
    """
    mode, source_model, source_id = _source(config, teacher_fingerprint)
    path = cache_dir() / "augment" / f"{cache_key(examples, source_id, config)}.jsonl"
    if path.is_file():
        cached = _read_cache(path, examples)
        if cached is not None:
            copies, sources, replaced = cached
            return Augmented(copies, sources, mode, source_model, path, True, replaced)

    mask = _mask_token(teacher_tokenizer, config)
    tokenizer = teacher_tokenizer
    mlm = None
    if mode == "mlm":
        mlm, tokenizer, _ = load_mlm(config.mlm)
    vocabulary = _Vocabulary(tokenizer)
    rng = random.Random(config.seed)
    tang = random.Random(f"tang:{config.seed}")  # masking and n-grams: a stream of their own

    # Pass 1: which words each copy replaces. Only those words need candidates.
    spans, plans, slots = _plan(examples, vocabulary, config, rng)

    # Candidates for every needed slot, in batches.
    if mode == "mlm":
        candidates = mlm_candidates(mlm, tokenizer, examples, spans, slots, config)
    else:
        candidates = _neighbours(teacher, tokenizer, vocabulary, spans, slots, config.top_k)

    # Pass 2: draw each replacement and rebuild the texts around the word spans.
    texts: list[str] = []
    pairs: list[str] | None = [] if examples.text_pairs is not None else None
    sources: list[int] = []
    replaced = 0
    for i, example_plan in enumerate(plans):
        for chosen in example_plan:
            by_field: dict[int, dict[int, str]] = {}
            for slot in chosen:
                options = candidates.get(slot) or []
                if options:
                    by_field.setdefault(slot[1], {})[slot[2]] = rng.choice(options)
                    replaced += 1
            new_fields = []
            cut = config.ngram_prob > 0 and tang.random() < config.ngram_prob
            for field, text in enumerate(fields(examples, i)):
                swaps = by_field.get(field, {})
                matches = spans[(i, field)]
                if config.mask_prob > 0:
                    _mask_words(swaps, len(matches), mask, config.mask_prob, tang)
                new = _rebuilt(text, matches, swaps, mask)
                new_fields.append(_ngram(new, tang) if cut else new)
            texts.append(new_fields[0])
            if pairs is not None:
                pairs.append(new_fields[1])
            sources.append(i)
    copies = _examples(examples, texts, pairs, sources)
    _write_cache(
        path,
        copies,
        sources,
        {
            "mode": mode,
            "source_model": source_model,
            "replaced_words": replaced,
            "originals": len(examples),
        },
    )
    return Augmented(copies, sources, mode, source_model, path, False, replaced)


def _source(config: AugmentConfig, teacher_fingerprint: str) -> tuple[str, str, str]:
    """Where the candidates come from: the mode, the model as recorded, and its cache key."""
    if config.mlm:
        mlm_path = resolve_base(config.mlm, "--augment-mlm")
        return "mlm", str(config.mlm), "mlm:" + model_fingerprint(mlm_path)
    return "embedding", "teacher input embeddings", "embedding:" + teacher_fingerprint


def _neighbours(teacher, tokenizer, vocabulary: _Vocabulary, spans, slots: list[Slot], top_k: int):
    """Each slot's candidates: the top-k whole-word neighbours of its word among the teacher's
    input embeddings (the mean of its pieces')."""
    embeddings = teacher.get_input_embeddings().weight.detach().cpu()  # (V, H)
    neighbours = EmbeddingNeighbours(embeddings, tokenizer, top_k)
    pieces_of = {slot: vocabulary.pieces(spans[slot[:2]][slot[2]].group()) for slot in slots}
    neighbours.candidates([w for w in pieces_of.values() if w is not None])
    return {slot: neighbours.cache[pieces_of[slot]] for slot in slots}


def _plan(
    examples: Examples, vocabulary: _Vocabulary, config: AugmentConfig, rng: random.Random
) -> tuple[dict[tuple[int, int], list[re.Match]], list[list[list[Slot]]], list[Slot]]:
    """Each field's word spans, the words each copy replaces (example → copy → slots), and
    every slot some copy replaces (the ones that need candidates)."""
    spans: dict[tuple[int, int], list[re.Match]] = {}
    plans: list[list[list[Slot]]] = []
    needed: dict[Slot, None] = {}
    for i in range(len(examples)):
        replaceable: list[Slot] = []
        for field, text in enumerate(fields(examples, i)):
            matches = list(WORD.finditer(text))
            spans[(i, field)] = matches
            replaceable += [
                (i, field, w)
                for w, m in enumerate(matches)
                if vocabulary.pieces(m.group()) is not None
            ]
        example_plan = []
        for _ in range(config.copies):
            chosen = [slot for slot in replaceable if rng.random() < config.prob]
            needed.update(dict.fromkeys(chosen))
            example_plan.append(chosen)
        plans.append(example_plan)
    return spans, plans, list(needed)


def _mask_words(
    swaps: dict[int, str], words: int, mask: str, prob: float, rng: random.Random
) -> None:
    """Tang et al.'s masking: each word a copy does not replace becomes `mask` with `prob`."""
    for w in range(words):
        if w not in swaps and rng.random() < prob:
            swaps[w] = mask


def _rebuilt(text: str, matches: list[re.Match], swaps: dict[int, str], mask: str | None) -> str:
    """`text` with the words at `swaps`' indices replaced (styled as the word they replace;
    the mask token as it is) and everything between them kept."""
    pieces, last = [], 0
    for w, match in enumerate(matches):
        if w in swaps:
            word = swaps[w] if swaps[w] == mask else _styled(swaps[w], match.group())
            pieces += [text[last : match.start()], word]
            last = match.end()
    pieces.append(text[last:])
    return "".join(pieces)


def _mask_token(tokenizer, config: AugmentConfig) -> str | None:
    if config.mask_prob > 0 and not tokenizer.mask_token:
        raise SlimbertError(
            f"--mask-prob {config.mask_prob}: the teacher's tokenizer has no mask token to put "
            "in place of a word; give --mask-prob 0"
        )
    return tokenizer.mask_token if config.mask_prob > 0 else None


def _ngram(text: str, rng: random.Random) -> str:
    """n consecutive words of `text` (n drawn from 1..5: words as spaces part them, the mask
    token one of them) and what lies between them. A text of n words or fewer is kept whole."""
    words = list(NGRAM_WORD.finditer(text))
    n = rng.randint(1, 5)
    if len(words) <= n:
        return text
    start = rng.randrange(len(words) - n + 1)
    return text[words[start].start() : words[start + n - 1].end()]


def _examples(
    examples: Examples, texts: list[str], pairs: list[str] | None, sources: list[int]
) -> Examples:
    return Examples(
        texts=texts,
        text_pairs=pairs,
        labels=None if examples.labels is None else [examples.labels[i] for i in sources],
        task=examples.task,
        path=examples.path,
        rows=[examples.rows[i] for i in sources] if examples.rows else [],
        sha256=examples.sha256,
    )


def _write_cache(path: Path, copies: Examples, sources: list[int], header: dict) -> None:
    lines = [json.dumps(header)]
    for k, source in enumerate(sources):
        record = {"source": source, "text": copies.texts[k]}
        if copies.text_pairs is not None:
            record["text_pair"] = copies.text_pairs[k]
        lines.append(json.dumps(record, ensure_ascii=False))
    write_text_atomic(path, "\n".join(lines) + "\n")


def _read_cache(path: Path, examples: Examples) -> tuple[Examples, list[int], int] | None:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    if header.get("originals") != len(examples):
        return None
    records = [json.loads(line) for line in lines[1:]]
    sources = [r["source"] for r in records]
    pairs = [r["text_pair"] for r in records] if examples.text_pairs is not None else None
    return (
        _examples(examples, [r["text"] for r in records], pairs, sources),
        sources,
        int(header.get("replaced_words", 0)),
    )
