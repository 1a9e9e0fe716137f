"""PS-DA's data: new sentence pairs that the training pairs' own labels imply.

Read the training pairs as a graph: one node per sentence, one edge per labelled pair, similar
(~) or dissimilar (≁). Similarity is symmetric and transitive; dissimilarity is symmetric and
carries across similar sentences. So the graph implies pairs nobody labelled:

    symmetry                  a ~ b           ⇒  b ~ a            a ≁ b  ⇒  b ≁ a
    transitivity-similar      a ~ b,  b ~ c   ⇒  a ~ c
    transitivity-dissimilar   a ~ b,  b ≁ c   ⇒  a ≁ c

        a ───~─── b ───~─── c             a ───~─── b ───≁─── c
         ╲· · · · ~ · · · · ╱              ╲· · · · ≁ · · · · ╱        (dotted: derived)

A longer path composes the same way: only similar edges give a similar pair, exactly one
dissimilar edge a dissimilar pair, two or more nothing (a ≁ b ≁ c says nothing of a, c).

What keeps the new pairs honest, applied in this order and counted per rule in the report:

    duplicate   the pair (either order) is already a training pair, or was derived before
    eval_leak   either sentence is in the eval set (compared case- and space-insensitively),
                so no augmented pair lets the professor see an eval sentence
    conflict    paths derive the pair with both labels (noisy annotations); dropped entirely
    cap         more than `per_pair` transitive pairs credited to one source pair (the pair
                whose edge starts the path; shortest paths first), or past `max_transitive`
    filtered    the teacher gives the opposite label at least `filter_confidence` probability

The output is a TSV the readers take: the original pairs first, then the new ones, with the
text, pair and label columns named as in the input (GLUE defaults: sentence1, sentence2, label)
and two more, `rule` and `source` (the training file's line of the pair it came from).
Single-sentence tasks have no pair graph; their augmentation is TinyBERT's word replacement
(`compress tinybert --augment`).
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from slimbert.batches import DataSpec
from slimbert.data import CLASSIFICATION, Columns, Examples, LabelMap, read_examples
from slimbert.errors import SlimbertError
from slimbert.files import write_json_atomic, write_text_atomic

RULES = ("symmetry", "transitivity-similar", "transitivity-dissimilar")
MAX_PATH = 4  # longer paths multiply candidates combinatorially and compound label noise


@dataclass
class PairAugmentConfig:
    """symmetry:          add b–a for every training pair a–b, with its label
    transitivity:      compose paths of training pairs into new pairs
    max_path:          most training pairs one derived pair composes (2 = the rules as written)
    per_pair:          most transitive pairs credited to one source pair (None: no cap)
    max_transitive:    most transitive pairs in all (None: no cap)
    similar_label:     the label that means "similar" (default: the positive class, GLUE's '1')
    filter_confidence: with a teacher, drop a new pair it labels the other way with at least
                       this probability (None: keep every pair)"""

    symmetry: bool = True
    transitivity: bool = True
    max_path: int = 2
    per_pair: int | None = 4
    max_transitive: int | None = None
    similar_label: str | None = None
    filter_confidence: float | None = None

    def __post_init__(self) -> None:
        if not 2 <= self.max_path <= MAX_PATH:
            raise SlimbertError(
                f"--max-path {self.max_path}: give 2 to {MAX_PATH} (2 composes two training pairs)"
            )
        if self.per_pair is not None and self.per_pair < 0:
            raise SlimbertError(
                f"--per-pair {self.per_pair}: give 0 or more new pairs per source pair"
            )
        if self.max_transitive is not None and self.max_transitive < 0:
            raise SlimbertError(f"--max-transitive {self.max_transitive}: give 0 or more")
        if self.filter_confidence is not None and not 0.5 <= self.filter_confidence <= 1.0:
            raise SlimbertError(
                f"--filter-confidence {self.filter_confidence}: give a probability in [0.5, 1]"
            )


@dataclass(frozen=True)
class NewPair:
    """A derived pair of sentence ids (into Derivation.sentences), its label and provenance."""

    first: int
    second: int
    similar: bool
    rule: str
    source: int  # index of the training pair it was derived from


@dataclass
class RuleCount:
    """What happened to the pairs one rule derived (distinct pairs, not paths)."""

    derived: int = 0
    duplicate: int = 0
    eval_leak: int = 0
    conflict: int = 0
    cap: int = 0
    filtered: int = 0
    added: int = 0


@dataclass
class Derivation:
    sentences: list[str]  # surface form of each sentence id (its first occurrence)
    pairs: list[NewPair]  # survivors of duplicate, eval_leak, conflict and cap, in derivation order
    counts: dict[str, RuleCount]


def sentence_key(text: str) -> str:
    """Two spellings of one sentence that differ only in case or spacing are one node."""
    return " ".join(text.split()).casefold()


def derive(
    pairs: list[tuple[str, str, bool]], eval_sentences: set[str], config: PairAugmentConfig
) -> Derivation:
    """New pairs implied by labelled pairs (first, second, similar); eval_sentences are keys
    (`sentence_key`) that no new pair may contain."""
    ids: dict[str, int] = {}
    sentences: list[str] = []

    def node(text: str) -> int:
        key = sentence_key(text)
        if key not in ids:
            ids[key] = len(sentences)
            sentences.append(text)
        return ids[key]

    edges = [(node(a), node(b), similar) for a, b, similar in pairs]
    trained_labels: dict[frozenset, set[bool]] = defaultdict(set)
    for a, b, similar in edges:
        trained_labels[frozenset((a, b))].add(similar)
    ordered = {(a, b) for a, b, _ in edges}
    leaked = {i for i, text in enumerate(sentences) if sentence_key(text) in eval_sentences}
    counts = {rule: RuleCount() for rule in RULES}
    kept: list[NewPair] = []

    if config.symmetry:
        seen: set[tuple[int, int]] = set()
        tally = counts["symmetry"]
        for i, (a, b, similar) in enumerate(edges):
            if a == b:  # a sentence paired with itself is its own mirror
                continue
            tally.derived += 1
            if (b, a) in ordered or (b, a) in seen:
                tally.duplicate += 1
            elif a in leaked or b in leaked:
                tally.eval_leak += 1
            elif len(trained_labels[frozenset((a, b))]) > 1:
                tally.conflict += 1
            else:
                kept.append(NewPair(b, a, similar, "symmetry", i))
            seen.add((b, a))

    if config.transitivity:
        kept += _transitive(edges, trained_labels, leaked, counts, config)
    return Derivation(sentences, kept, counts)


def _rule(similar: bool) -> str:
    return "transitivity-similar" if similar else "transitivity-dissimilar"


def _transitive(
    edges: list[tuple[int, int, bool]],
    trained_labels: dict[frozenset, set[bool]],
    leaked: set[int],
    counts: dict[str, RuleCount],
    config: PairAugmentConfig,
) -> list[NewPair]:
    """Breadth-first over simple paths that start with each training pair (in file order, both
    orientations), so each derived pair is credited to the first source pair that reaches it
    by a shortest path."""
    adjacency: dict[int, list[tuple[int, bool]]] = defaultdict(list)
    for a, b, similar in edges:
        adjacency[a].append((b, similar))
        adjacency[b].append((a, similar))
    labels: dict[frozenset, set[bool]] = defaultdict(set)
    first: dict[frozenset, NewPair] = {}
    for i, (a, b, similar) in enumerate(edges):
        for start, via in ((a, b), (b, a)):
            if start == via:
                continue
            queue = deque(
                [(via, 0 if similar else 1, 1, (start, via))]
            )  # node, dissimilar edges, edges, path
            while queue:
                here, dissimilar, length, path = queue.popleft()
                for there, edge_similar in adjacency[here]:
                    if there in path:
                        continue
                    crossed = dissimilar + (0 if edge_similar else 1)
                    if crossed > 1:
                        continue
                    key = frozenset((start, there))
                    labels[key].add(crossed == 0)
                    if key not in first:
                        first[key] = NewPair(start, there, crossed == 0, _rule(crossed == 0), i)
                    if length + 1 < config.max_path:
                        queue.append((there, crossed, length + 1, (*path, there)))

    kept: list[NewPair] = []
    per_source: Counter[int] = Counter()
    for key, pair in first.items():
        rules = [_rule(similar) for similar in sorted(labels[key], reverse=True)]
        for rule in rules:
            counts[rule].derived += 1
        if key in trained_labels:
            reason = "duplicate"
        elif pair.first in leaked or pair.second in leaked:
            reason = "eval_leak"
        elif len(rules) > 1:
            reason = "conflict"
        elif (config.per_pair is not None and per_source[pair.source] >= config.per_pair) or (
            config.max_transitive is not None and len(kept) >= config.max_transitive
        ):
            reason = "cap"
        else:
            per_source[pair.source] += 1
            kept.append(pair)
            continue
        for rule in rules:
            setattr(counts[rule], reason, getattr(counts[rule], reason) + 1)
    return kept


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
            f"{self.source_pairs} training pairs over {self.sentences} sentences → {self.output_rows} rows; labels {self.labels_before} → {self.labels_after}"
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
    import torch

    from slimbert.batches import EncodedDataset, make_loader, predict_logits
    from slimbert.models import device
    from slimbert.teachers.load import load_teacher

    if not first:
        return np.zeros(0, dtype=bool)
    teacher = load_teacher(teacher_dir)
    lookup = teacher.label_map.label2id
    missing = [label for label in (similar_label, dissimilar_label) if label not in lookup]
    if missing:
        raise SlimbertError(
            f"--filter-teacher {teacher_dir}: it does not know the label(s) {', '.join(missing)} (it knows {', '.join(lookup)}); give a teacher trained on this task"
        )
    length = max_length or teacher.metadata.get("data", {}).get("max_length") or 128
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


def augment_pairs(
    spec: DataSpec, out: Path, config: PairAugmentConfig, teacher: Path | None = None
) -> AugmentReport:
    """Write spec's training pairs (cut by its limit / sample_seed) plus the pairs they imply
    to `out` (.tsv), and the report beside it (`<stem>.report.json`); returns the report. The
    teacher filter tokenises at spec.max_length."""
    from slimbert.compress.pretrain import read_subset

    out = Path(out)
    train, eval_path, columns = spec.train, spec.eval, spec.columns
    if out.suffix.lower() != ".tsv":
        raise SlimbertError(
            f"--out {out}: the augmented pairs are written as TSV; give a path ending in .tsv"
        )
    if (config.filter_confidence is None) != (teacher is None):
        raise SlimbertError("give --filter-teacher and --filter-confidence together (or neither)")
    examples = read_subset(train, columns, spec.limit, spec.sample_seed, task=CLASSIFICATION)
    if not examples.is_pair:
        raise SlimbertError(
            f"{train}: single sentences have no pair graph to augment; use TinyBERT-style augmentation (`slimbert compress tinybert --augment`), or name the second column with --text-pair-column"
        )
    present = sorted(set(examples.labels))
    if len(present) != 2:
        raise SlimbertError(
            f"{train}: pair augmentation needs exactly two labels (similar / dissimilar), found {len(present)}: {', '.join(present[:5])}"
        )
    label_map = LabelMap.from_labels(examples.labels)
    similar_label = config.similar_label or label_map.id2label[label_map.positive_id()]
    if similar_label not in present:
        raise SlimbertError(
            f"--similar-label {similar_label!r}: not a label of {train} ({', '.join(present)})"
        )
    dissimilar_label = next(label for label in present if label != similar_label)
    evaluation = read_examples(eval_path, columns, require_labels=False)
    eval_keys = {sentence_key(t) for t in evaluation.texts} | {
        sentence_key(t) for t in (evaluation.text_pairs or [])
    }

    labelled = [
        (a, b, label == similar_label)
        for a, b, label in zip(examples.texts, examples.text_pairs, examples.labels, strict=True)
    ]
    derivation = derive(labelled, eval_keys, config)
    pairs = derivation.pairs
    if teacher is not None and pairs:
        dropped = teacher_contradicts(
            teacher,
            [derivation.sentences[p.first] for p in pairs],
            [derivation.sentences[p.second] for p in pairs],
            [p.similar for p in pairs],
            similar_label,
            dissimilar_label,
            config.filter_confidence,
            spec.max_length,
        )
        for pair, drop in zip(pairs, dropped, strict=True):
            if drop:
                derivation.counts[pair.rule].filtered += 1
        pairs = [p for p, drop in zip(pairs, dropped, strict=True) if not drop]
    for pair in pairs:
        derivation.counts[pair.rule].added += 1

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
