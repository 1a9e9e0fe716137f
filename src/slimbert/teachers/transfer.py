"""A teacher-labelled transfer set: more rows, beyond the labelled ones, for any method to learn
the teacher's soft labels on (Hinton's transfer set; Tang et al. for TextCNN/BiLSTM students;
TinyBERT's augmentation).

    training file ─┬─► words   word-replaced copies (teachers/word_augment: masked-LM or the
                   │           teacher's embedding neighbours, whole words; optionally Tang et
                   │           al.'s masking and n-gram sampling on top)
                   └─► symmetry, transitivity-similar, transitivity-dissimilar
                               the pairs the training labels imply (teachers/pair_graph;
                               sentence pairs only)
    --text FILE ─────► text    unlabelled rows, as they are
                          │
                          ▼    the guard, counted per source, in this order:
                               eval_leak   the text, or either side of a pair, is in the eval
                                           file (case- and space-insensitively); for a word
                                           copy, also when the row it was copied from is
                               in_train    the row is a row of the training file
                               duplicate   made before (pair rules: also a training pair in
                                           the other order)
                          ▼    the teacher labels every row: its label and its logits
    OUT.jsonl            {text, text_pair (pairs), label, logits, source}, one row a line
    OUT.manifest.json    the teacher's fingerprint, the files' sha256, settings, counts

`--transfer OUT.jsonl` on any training command appends the rows to the training rows
(batches.prepare); the methods read the teacher's logits on them from the logit cache, where
this module leaves them (training/logits_cache.seed), so the stored logits are a record, not
an input. The pair rules also count `conflict` and `cap` (teachers/pair_graph.py); the label a
rule implies is not used, the teacher's is.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from slimbert.batches import DataSpec, EncodedDataset, make_loader, predict_logits
from slimbert.data import REGRESSION, Examples, text_key
from slimbert.errors import SlimbertError
from slimbert.files import write_json_atomic, write_text_atomic
from slimbert.models import device
from slimbert.provenance import library_versions
from slimbert.settings import check_ranges, setting
from slimbert.teachers.load import Teacher, load_teacher
from slimbert.teachers.pair_graph import RULES, PairAugmentConfig, derive
from slimbert.teachers.transfer_files import TransferFiles, read_transfer_files
from slimbert.teachers.word_augment import AugmentConfig, augment
from slimbert.training.logits_cache import seed as seed_logits

FORMAT = 1
WORDS, TEXT = "words", "text"
SOURCES = (WORDS, *RULES, TEXT)


@dataclass
class TransferConfig:
    """Where the rows come from and how they are made; each field is the `slimbert augment`
    flag of the same name (word replacement: teachers/word_augment.py; pair rules:
    teachers/pair_graph.py)."""

    copies: int = setting(4, "Word-replaced copies of every training row (0: none).", min=0)
    prob: float = setting(
        0.4, "Chance p that each word of a copy is replaced.", min=0, max=1, min_open=True
    )
    top_k: int = setting(15, "Replacement candidates per word.", min=1)
    mlm: str | None = setting(
        None,
        "Base model with a masked-LM head whose predictions replace words, a directory or a "
        "Hub name (default: the teacher's embedding neighbours).",
    )
    pair_rules: bool = setting(
        False,
        "Sentence pairs: add the pairs that symmetry and transitivity of the training labels "
        "imply.",
    )
    max_path: int = setting(
        2, "Pair rules: most training pairs one new pair composes.", min=2, max=4
    )
    per_pair: int = setting(
        4, "Pair rules: most transitive pairs credited to one training pair.", min=0
    )
    max_transitive: int | None = setting(
        None, "Pair rules: most transitive pairs in all (default: no cap; 0: symmetry only).", min=0
    )
    similar_label: str | None = setting(
        None, "Pair rules: the label meaning similar (default: the positive class, '1' in GLUE)."
    )
    mask_prob: float = setting(
        0.0, "Tang et al.'s masking: chance that a word a copy did not replace becomes the "
        "teacher's mask token (the paper's 0.1).", min=0, max=1,
    )  # fmt: skip
    ngram_prob: float = setting(
        0.0, "Tang et al.'s n-gram sampling: chance that a copy keeps only n consecutive words "
        "of each text, n drawn from 1..5 (the paper's 0.25).", min=0, max=1,
    )  # fmt: skip
    seed: int = setting(42, "Seed of the word choices.")
    batch_size: int = setting(64, "Rows per teacher (and masked-LM) forward pass.", min=1)

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass
class SourceCount:
    """What happened to the rows one source made (see the module docstring)."""

    made: int = 0
    eval_leak: int = 0
    in_train: int = 0
    duplicate: int = 0
    conflict: int = 0
    cap: int = 0
    kept: int = 0


@dataclass
class _Row:
    text: str
    text_pair: str | None
    source: str
    copied_from: tuple[str, ...] = ()  # a word copy's training row, for the eval guard


def manifest_path(out: Path) -> Path:
    return Path(out).with_name(Path(out).stem + ".manifest.json")


def _sides(text: str, pair: str | None) -> tuple[str, ...]:
    return (text,) if pair is None else (text, pair)


def _keys(examples: Examples) -> set[tuple[str, ...]]:
    pairs = examples.text_pairs or [None] * len(examples)
    return {
        tuple(text_key(s) for s in _sides(t, p)) for t, p in zip(examples.texts, pairs, strict=True)
    }


def _word_copies(
    train: Examples, teacher: Teacher, config: TransferConfig, max_length: int
) -> tuple[list[_Row], dict | None]:
    if config.copies == 0:
        return [], None
    settings = AugmentConfig(
        config.copies,
        config.prob,
        config.top_k,
        config.mlm,
        batch_size=config.batch_size,
        max_length=max_length,
        seed=config.seed,
        mask_prob=config.mask_prob,
        ngram_prob=config.ngram_prob,
    )
    made = augment(train, teacher.layers, teacher.tokenizer, teacher.fingerprint, settings)
    copies = made.examples
    rows = [
        _Row(
            copies.texts[k],
            copies.text_pairs[k] if copies.is_pair else None,
            WORDS,
            _sides(train.texts[i], train.text_pairs[i] if train.is_pair else None),
        )
        for k, i in enumerate(made.sources)
    ]
    return rows, made.describe()


def _pair_rule_rows(
    train: Examples,
    teacher: Teacher,
    eval_keys: set[str],
    config: TransferConfig,
    counts: dict[str, SourceCount],
) -> list[_Row]:
    """The pairs the training labels imply (teachers/pair_graph.derive), its drops counted."""
    where = f"--pair-rules: {train.path}"
    if not train.is_pair:
        raise SlimbertError(f"{where} has single texts; the pair rules need sentence pairs")
    if teacher.task == REGRESSION or train.labels is None:
        raise SlimbertError(f"{where}: the pair rules need class labels (similar / dissimilar)")
    present = sorted(set(train.labels))
    if len(present) != 2:
        raise SlimbertError(
            f"{where}: the pair rules need exactly two labels (similar / dissimilar), "
            f"found {len(present)}: {', '.join(present[:5])}"
        )
    label_map = teacher.label_map
    similar = config.similar_label or label_map.id2label[label_map.positive_id() or 1]
    if similar not in present:
        raise SlimbertError(
            f"--similar-label {similar!r}: not a label of {train.path} ({', '.join(present)})"
        )
    labelled = [
        (a, b, label == similar)
        for a, b, label in zip(train.texts, train.text_pairs, train.labels, strict=True)
    ]
    rules = PairAugmentConfig(
        max_path=config.max_path,
        per_pair=config.per_pair,
        max_transitive=config.max_transitive,
        similar_label=similar,
    )
    derivation = derive(labelled, eval_keys, rules)
    for rule, count in derivation.counts.items():
        counts[rule] = SourceCount(
            made=count.derived,
            eval_leak=count.eval_leak,
            duplicate=count.duplicate,
            conflict=count.conflict,
            cap=count.cap,
        )
    sentences = derivation.sentences
    return [_Row(sentences[p.first], sentences[p.second], p.rule) for p in derivation.pairs]


def _text_rows(extra: list[Examples]) -> list[_Row]:
    return [
        _Row(examples.texts[i], examples.text_pairs[i] if examples.is_pair else None, TEXT)
        for examples in extra
        for i in range(len(examples))
    ]


def _guard(
    rows: list[_Row],
    eval_keys: set[str],
    train_keys: set[tuple[str, ...]],
    counts: dict[str, SourceCount],
) -> list[_Row]:
    """Rows that pass the eval, training-row and duplicate checks, in order; each drop counted."""
    kept, seen = [], set()
    for row in rows:
        count = counts.setdefault(row.source, SourceCount())
        if row.source in (WORDS, TEXT):
            count.made += 1  # the pair rules' `made` comes from the derivation
        key = tuple(text_key(side) for side in _sides(row.text, row.text_pair))
        if any(k in eval_keys for k in key) or any(
            text_key(side) in eval_keys for side in row.copied_from
        ):
            count.eval_leak += 1
        elif key in train_keys:
            count.in_train += 1
        elif key in seen:
            count.duplicate += 1
        else:
            seen.add(key)
            count.kept += 1
            kept.append(row)
    return kept


def _examples(teacher: Teacher, rows: list[_Row], pair: bool) -> Examples:
    return Examples(
        texts=[row.text for row in rows],
        text_pairs=[row.text_pair for row in rows] if pair else None,
        labels=None,
        task=teacher.task,
        path=Path("<transfer set>"),
    )


def _teacher_logits(
    teacher: Teacher, examples: Examples, max_length: int, batch_size: int
) -> np.ndarray:
    """The teacher's logits on every row, (N, C), in row order."""
    dataset = EncodedDataset(teacher.tokenizer, examples, max_length)
    loader = make_loader(dataset, batch_size, shuffle=False, group_by_length=True)
    dev = device()
    model = teacher.model.to(dev)
    return predict_logits(model, loader, dev, progress=sys.stderr.isatty())  # (N, C)


def _render(rows: list[_Row], logits: np.ndarray, labels: list) -> str:
    lines = []
    for row, row_logits, label in zip(rows, logits, labels, strict=True):
        record: dict = {"text": row.text}
        if row.text_pair is not None:
            record["text_pair"] = row.text_pair
        record |= {"label": label, "logits": [float(v) for v in row_logits], "source": row.source}
        lines.append(json.dumps(record, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def _guarded_rows(
    files: TransferFiles,
    teacher: Teacher,
    config: TransferConfig,
    max_length: int,
) -> tuple[list[_Row], dict[str, SourceCount], dict | None]:
    """(the rows of every source that pass the guard: words, then the pair rules, then the
    texts; what happened to each source's rows; the word replacement's description)."""
    train, eval_keys = files.train, files.eval_keys()
    counts: dict[str, SourceCount] = {}
    # the pair rules run first, so that their label errors stop before any word copy is made
    pairs = _pair_rule_rows(train, teacher, eval_keys, config, counts) if config.pair_rules else []
    candidates, words = _word_copies(train, teacher, config, max_length)
    candidates += pairs + _text_rows(files.extra)
    rows = _guard(candidates, eval_keys, _keys(files.whole), counts)
    if not rows:
        raise SlimbertError(
            "no row is left for the transfer set: each was an eval text, a training row or a "
            "duplicate; give more --copies, --pair-rules or --text"
        )
    return rows, counts, words


def _teacher_labels(teacher: Teacher, logits: np.ndarray) -> list:
    """The teacher's label of each row: its value (regression) or its top class's name."""
    if teacher.task == REGRESSION:
        return [float(row[0]) for row in logits]
    id2label = teacher.label_map.id2label
    return [id2label[int(i)] for i in logits.argmax(axis=-1)]


def build_transfer(
    teacher_dir: Path,
    spec: DataSpec,
    texts: Sequence[Path],
    out: Path,
    config: TransferConfig,
) -> dict:
    """Write the transfer set made from spec's training rows (cut by its limit / sample_seed)
    and the `texts` files to `out` (.jsonl), every row labelled by the teacher at
    spec.max_length, and its manifest beside it (`<stem>.manifest.json`); returns the
    manifest. Nothing is written when anything fails."""
    out = Path(out)
    if out.suffix.lower() != ".jsonl":
        raise SlimbertError(f"--out {out}: a transfer set is written as JSONL; end it in .jsonl")
    if config.copies == 0 and not config.pair_rules and not texts:
        raise SlimbertError(
            "nothing to make a transfer set from; give --copies N, --pair-rules or --text FILE"
        )
    teacher = load_teacher(teacher_dir)
    files = read_transfer_files(spec, texts, teacher.task, require_labels=config.pair_rules)
    rows, counts, words = _guarded_rows(files, teacher, config, spec.max_length)

    pair = files.train.is_pair
    examples = _examples(teacher, rows, pair)
    logits = _teacher_logits(teacher, examples, spec.max_length, config.batch_size)
    labels = _teacher_labels(teacher, logits)
    text = _render(rows, logits, labels)
    manifest = {
        "format": FORMAT,
        "file": out.name,
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "rows": len(rows),
        "pair": pair,
        "teacher": {
            "path": str(teacher_dir),
            "fingerprint": teacher.fingerprint,
            "members": teacher.members,
            "task": teacher.task,
            "labels": {str(i): label for i, label in teacher.label_map.id2label.items()},
        },
        **files.describe(),
        "settings": {
            **asdict(config),
            "max_length": spec.max_length,
            "limit": spec.limit,
            "sample_seed": spec.sample_seed,
            "columns": asdict(spec.columns),
        },
        "word_replacement": words,
        "counts": {source: asdict(counts[source]) for source in SOURCES if source in counts},
        "labels": dict(sorted(Counter(map(str, labels)).items()))
        if teacher.task != REGRESSION
        else None,
        "versions": library_versions(),
    }
    write_text_atomic(out, text)
    try:
        write_json_atomic(manifest_path(out), manifest)
    except BaseException:
        out.unlink(missing_ok=True)  # a set without its manifest is not reusable
        raise
    # the rows' logits where a `--transfer` run on this teacher and max length reads them
    seed_logits(teacher.fingerprint, examples, spec.max_length, logits)
    return manifest


def summary_lines(manifest: dict) -> list[str]:
    """A fixed-width table of the per-source counts, for the terminal."""
    header = f"{'source':<26}" + "".join(f"{name:>10}" for name in SourceCount.__dataclass_fields__)
    lines = [header]
    for source, count in manifest["counts"].items():
        lines.append(f"{source:<26}" + "".join(f"{v:>10}" for v in count.values()))
    labels = f"; labels {manifest['labels']}" if manifest["labels"] else ""
    lines.append(f"{manifest['rows']} rows labelled by {manifest['teacher']['path']}{labels}")
    return lines
