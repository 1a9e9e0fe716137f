"""PS-DA's data: the training pairs plus the pairs their labels imply, written as a TSV.

teachers/pair_graph.py derives the new pairs and drops duplicates, eval leaks, conflicts and
pairs over the caps; here an optional teacher vetoes more:

    filtered    the teacher gives the opposite label at least `filter_confidence` probability

The output is a TSV the readers take: the original pairs first, then the new ones, with the
text, pair and label columns named as in the input (GLUE defaults: sentence1, sentence2, label)
and two more, `rule` and `source` (the training file's line of the pair it came from); beside
it `<stem>.report.json` counts what each rule derived, dropped (and why) and added.
Single-sentence tasks have no pair graph; their augmentation is TinyBERT's word replacement
(`compress tinybert --augment`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from slimbert.batches import DataSpec, EncodedDataset, make_loader, predict_logits
from slimbert.data import (
    CLASSIFICATION,
    Columns,
    Examples,
    LabelMap,
    read_examples,
    read_subset,
    text_key,
)
from slimbert.errors import SlimbertError
from slimbert.files import write_json_atomic, write_text_atomic
from slimbert.models import device
from slimbert.teachers.load import load_teacher
from slimbert.teachers.pair_graph import (
    Derivation,
    NewPair,
    PairAugmentConfig,
    RuleCount,
    derive,
)

__all__ = [
    "AugmentReport",
    "PairAugmentConfig",
    "augment_pairs",
    "derive",
    "report_path",
    "teacher_contradicts",
]


@dataclass
class AugmentReport:
    """How many pairs each rule derived, dropped (and why) and added; label counts around it."""

    train: str
    eval: str
    out: str
    source_pairs: int
    sentences: int
    similar_label: str
    dissimilar_label: str
    rules: dict[str, RuleCount]
    labels_before: dict[str, int]
    labels_after: dict[str, int]
    output_rows: int
    config: dict = field(default_factory=dict)
    teacher: str | None = None

    def to_dict(self) -> dict:
        payload = asdict(self)
        payload["added"] = sum(c.added for c in self.rules.values())
        return payload

    def lines(self) -> list[str]:
        """A fixed-width table for the terminal."""
        header = f"{'rule':<24}" + "".join(f"{name:>10}" for name in RuleCount.__dataclass_fields__)
        rows = [header] + [
            f"{rule:<24}" + "".join(f"{v:>10}" for v in asdict(count).values())
            for rule, count in self.rules.items()
        ]
        rows.append(
            f"{self.source_pairs} training pairs over {self.sentences} sentences → "
            f"{self.output_rows} rows; labels {self.labels_before} → {self.labels_after}"
        )
        return rows


def _clean(text: str) -> str:
    return " ".join(text.replace("\t", " ").replace("\r", " ").replace("\n", " ").split())


def _render_tsv(columns: Columns, rows: list[tuple[str, str, str, str, int]]) -> str:
    """TSV with the input's column names (or positions, for a headerless input)."""
    if columns.header:
        names = [
            columns.text or "sentence1",
            columns.text_pair or "sentence2",
            columns.label or "label",
            "rule",
            "source",
        ]
        if len(set(names)) != len(names):
            raise SlimbertError(
                f"column names {names} collide; name the text, pair and label columns differently"
            )
        lines = ["\t".join(names)]
        lines += [
            "\t".join((_clean(a), _clean(b), label, rule, str(source)))
            for a, b, label, rule, source in rows
        ]
    else:
        positions = [int(columns.text), int(columns.text_pair), int(columns.label)]
        width = max(positions) + 3
        lines = []
        for a, b, label, rule, source in rows:
            cells = ["-"] * width
            for position, value in zip(positions, (_clean(a), _clean(b), label), strict=True):
                cells[position] = value
            cells[-2:] = [rule, str(source)]
            lines.append("\t".join(cells))
    return "\n".join(lines) + "\n"


def report_path(out: Path) -> Path:
    return out.with_name(out.stem + ".report.json")


def teacher_contradicts(
    teacher_dir: Path,
    first: list[str],
    second: list[str],
    similar: list[bool],
    similar_label: str,
    dissimilar_label: str,
    confidence: float,
    max_length: int | None = None,
) -> np.ndarray:
    """(N,) True where the teacher (a classifier or an ensemble) gives the opposite label at
    least `confidence` probability."""
    if not first:
        return np.zeros(0, dtype=bool)
    teacher = load_teacher(teacher_dir)
    lookup = teacher.label_map.label2id
    missing = [label for label in (similar_label, dissimilar_label) if label not in lookup]
    if missing:
        raise SlimbertError(
            f"--filter-teacher {teacher_dir}: it does not know the label(s) "
            f"{', '.join(missing)} (it knows {', '.join(lookup)}); "
            "give a teacher trained on this task"
        )
    length = max_length or teacher.record.max_length or 128
    examples = Examples(
        texts=first,
        text_pairs=second,
        labels=None,
        task=CLASSIFICATION,
        path=Path("<augmented pairs>"),
    )
    dev = device()
    model = teacher.model.to(dev)
    logits = predict_logits(
        model,
        make_loader(EncodedDataset(teacher.tokenizer, examples, length), 64, shuffle=False),
        dev,
    )  # (N, C)
    probabilities = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()  # (N, C)
    opposite = np.where(
        np.asarray(similar), lookup[dissimilar_label], lookup[similar_label]
    )  # (N,)
    return probabilities[np.arange(len(first)), opposite] >= confidence


def _similar_and_dissimilar(
    examples: Examples, config: PairAugmentConfig, train: Path
) -> tuple[str, str]:
    """The label meaning similar (config's, else the positive class) and the other one."""
    present = sorted(set(examples.labels))
    if len(present) != 2:
        raise SlimbertError(
            f"{train}: pair augmentation needs exactly two labels (similar / dissimilar), "
            f"found {len(present)}: {', '.join(present[:5])}"
        )
    label_map = LabelMap.from_labels(examples.labels)
    similar_label = config.similar_label or label_map.id2label[label_map.positive_id()]
    if similar_label not in present:
        raise SlimbertError(
            f"--similar-label {similar_label!r}: not a label of {train} ({', '.join(present)})"
        )
    return similar_label, next(label for label in present if label != similar_label)


def _unvetoed_pairs(
    derivation: Derivation,
    teacher: Path | None,
    similar_label: str,
    dissimilar_label: str,
    confidence: float | None,
    max_length: int | None,
) -> list[NewPair]:
    """The derived pairs the teacher (if any) does not contradict, in order; each rule's
    `filtered` and `added` counted."""
    pairs = derivation.pairs
    if teacher is not None and pairs:
        dropped = teacher_contradicts(
            teacher,
            [derivation.sentences[p.first] for p in pairs],
            [derivation.sentences[p.second] for p in pairs],
            [p.similar for p in pairs],
            similar_label,
            dissimilar_label,
            confidence,
            max_length,
        )
        for pair, drop in zip(pairs, dropped, strict=True):
            if drop:
                derivation.counts[pair.rule].filtered += 1
        pairs = [p for p, drop in zip(pairs, dropped, strict=True) if not drop]
    for pair in pairs:
        derivation.counts[pair.rule].added += 1
    return pairs


def _output_rows(
    examples: Examples,
    derivation: Derivation,
    pairs: list[NewPair],
    similar_label: str,
    dissimilar_label: str,
) -> list[tuple[str, str, str, str, int]]:
    """(first, second, label, rule, source line): the training pairs, then the new ones."""
    line = examples.rows or list(range(2, len(examples) + 2))
    rows = [
        (a, b, label, "original", line[i])
        for i, (a, b, label) in enumerate(
            zip(examples.texts, examples.text_pairs, examples.labels, strict=True)
        )
    ]
    rows += [
        (
            derivation.sentences[p.first],
            derivation.sentences[p.second],
            similar_label if p.similar else dissimilar_label,
            p.rule,
            line[p.source],
        )
        for p in pairs
    ]
    return rows


def augment_pairs(
    spec: DataSpec, out: Path, config: PairAugmentConfig, teacher: Path | None = None
) -> AugmentReport:
    """Write spec's training pairs (cut by its limit / sample_seed) plus the pairs they imply
    to `out` (.tsv), and the report beside it (`<stem>.report.json`); returns the report. The
    teacher filter tokenises at spec.max_length. A transfer set (spec.transfer) is refused: its
    rows carry a teacher's labels, and the pairs here follow from the gold labels alone."""
    out = Path(out)
    train, eval_path, columns = spec.train, spec.eval, spec.columns
    if spec.transfer is not None:
        raise SlimbertError(
            f"--transfer {spec.transfer}: professor augment derives pairs from the training "
            "file's gold labels alone and reads no transfer set; drop it here and give it to "
            "the command that trains (train-teacher, compress ...)"
        )
    if out.suffix.lower() != ".tsv":
        raise SlimbertError(
            f"--out {out}: the augmented pairs are written as TSV; give a path ending in .tsv"
        )
    if (config.filter_confidence is None) != (teacher is None):
        raise SlimbertError("give --filter-teacher and --filter-confidence together (or neither)")
    examples = read_subset(train, columns, spec.limit, spec.sample_seed, task=CLASSIFICATION)
    if not examples.is_pair:
        raise SlimbertError(
            f"{train}: single sentences have no pair graph to augment; use TinyBERT-style "
            "augmentation (`slimbert compress tinybert --augment`), or name the second column "
            "with --text-pair-column"
        )
    similar_label, dissimilar_label = _similar_and_dissimilar(examples, config, train)
    evaluation = read_examples(eval_path, columns, require_labels=False)
    eval_keys = {text_key(t) for t in evaluation.texts} | {
        text_key(t) for t in (evaluation.text_pairs or [])
    }

    labelled = [
        (a, b, label == similar_label)
        for a, b, label in zip(examples.texts, examples.text_pairs, examples.labels, strict=True)
    ]
    derivation = derive(labelled, eval_keys, config)
    pairs = _unvetoed_pairs(
        derivation,
        teacher,
        similar_label,
        dissimilar_label,
        config.filter_confidence,
        spec.max_length,
    )
    rows = _output_rows(examples, derivation, pairs, similar_label, dissimilar_label)
    report = AugmentReport(
        train=str(train),
        eval=str(eval_path),
        out=str(out),
        source_pairs=len(examples),
        sentences=len(derivation.sentences),
        similar_label=similar_label,
        dissimilar_label=dissimilar_label,
        rules=derivation.counts,
        labels_before=dict(sorted(Counter(examples.labels).items())),
        labels_after=dict(sorted(Counter(row[2] for row in rows).items())),
        output_rows=len(rows),
        config=asdict(config),
        teacher=str(teacher) if teacher else None,
    )
    write_text_atomic(out, _render_tsv(columns, rows))
    write_json_atomic(report_path(out), report.to_dict())
    return report
