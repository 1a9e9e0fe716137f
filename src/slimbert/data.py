"""Reading labelled text from GLUE-style TSV, CSV and JSONL, parquet, `datasets` folders and
cached Hub datasets into one `Examples` type.

Columns are found from GLUE's own headers (SST-2, MRPC, STS-B, QQP, QNLI, ...) or named by the
user. A headerless file names its columns by 0-based position ("0", "1", ...).

Parquet files, folders written by `save_to_disk` and Hub datasets (`hf:NAME[:CONFIG]:SPLIT`,
from the Hugging Face datasets cache) are read through the `datasets` extra, and only the
columns picked are read; a ClassLabel column gives its integer ids, as GLUE's TSV files do.
Their errors count rows (1-based) where a text file's count lines.

Quirks of real files that this reader survives:
- MRPC starts with a UTF-8 byte-order mark and has unbalanced `"` inside sentences, so TSV is
  read with quoting disabled (otherwise rows silently merge).
- STS-B puts free-text metadata columns before the sentences, so columns are picked by name.

Each kind of source is opened in data_sources.py; this module picks the columns and checks the
rows.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slimbert.data_sources import HF_PREFIX, files_sha256, open_source
from slimbert.errors import SlimbertError
from slimbert.files import sha256_file

TEXT_COLUMNS = ("sentence", "sentence1", "#1 String", "question", "question1", "text", "premise")
PAIR_COLUMNS = ("sentence2", "#2 String", "question2", "hypothesis")
LABEL_COLUMNS = ("label", "Quality", "score", "sentiment", "gold_label")

CLASSIFICATION = "classification"
REGRESSION = "regression"


@dataclass(frozen=True)
class Columns:
    """Which columns hold the text, the optional second text and the label."""

    text: str | None = None
    text_pair: str | None = None
    label: str | None = None
    header: bool = True


@dataclass
class Examples:
    """Rows of one file: texts, optional second texts, raw labels (strings or floats)."""

    texts: list[str]
    text_pairs: list[str] | None
    labels: list[str] | list[float] | None
    task: str
    path: Path
    rows: list[int] = field(default_factory=list)  # 1-based line numbers in the file, for errors
    sha256: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def is_pair(self) -> bool:
        return self.text_pairs is not None

    def subset(self, indices: Sequence[int]) -> Examples:
        pick = list(indices)
        return Examples(
            texts=[self.texts[i] for i in pick],
            text_pairs=None if self.text_pairs is None else [self.text_pairs[i] for i in pick],
            labels=None if self.labels is None else [self.labels[i] for i in pick],
            task=self.task,
            path=self.path,
            rows=[self.rows[i] for i in pick] if self.rows else [],
            sha256=self.sha256,
        )

    def fingerprint(self) -> str:
        """Hash of the exact content used (file hash alone misses --limit and column choices)."""
        digest = hashlib.sha256()
        for i, text in enumerate(self.texts):
            digest.update(text.encode())
            digest.update(b"\x1f")
            if self.text_pairs is not None:
                digest.update(self.text_pairs[i].encode())
            digest.update(b"\x1e")
        return digest.hexdigest()


def concat(first: Examples, second: Examples) -> Examples:
    """`first`'s rows, then `second`'s, as one Examples that keeps `first`'s file, hash and
    task (training rows followed by augmented or transfer rows). Both must be pairs or both
    single texts, and both labelled or neither."""
    if first.is_pair != second.is_pair or (first.labels is None) != (second.labels is None):
        raise ValueError("concat: both sides must agree on pairs and on having labels")
    return Examples(
        texts=first.texts + second.texts,
        text_pairs=None if first.text_pairs is None else first.text_pairs + second.text_pairs,
        labels=None if first.labels is None else list(first.labels) + list(second.labels),
        task=first.task,
        path=first.path,
        rows=first.rows + second.rows,
        sha256=first.sha256,
    )


def _pick(
    names: list[str],
    wanted: str | None,
    candidates: Sequence[str],
    what: str,
    flag: str,
    path: Path,
    required: bool,
) -> str | None:
    if wanted is not None:
        if wanted not in names:
            raise SlimbertError(
                f"{path}: no column {wanted!r} (columns: {', '.join(names)}); fix {flag}"
            )
        return wanted
    for candidate in candidates:
        if candidate in names:
            return candidate
    if required:
        raise SlimbertError(
            f"{path}: cannot tell which column holds the {what} "
            f"(columns: {', '.join(names)}); name it with {flag}"
        )
    return None


def _infer_task(raw_labels: list[str]) -> str:
    """Regression when every label is a number written with a decimal point (STS-B's '3.800')."""
    for label in raw_labels:
        try:
            float(label)
        except ValueError:
            return CLASSIFICATION
    return REGRESSION if any("." in label for label in raw_labels) else CLASSIFICATION


def data_exists(path: str | Path) -> bool:
    """Whether `path` names a data source `read_examples` may read (a file, a folder, or a Hub
    dataset, which is looked up only when read)."""
    return str(path).startswith(HF_PREFIX) or Path(path).exists()


def data_sha256(path: str | Path) -> str:
    """The sha256 `read_examples` records for a file or save_to_disk folder, without parsing
    it (a Hub dataset: its name, as it is resolved only when read)."""
    path_text = str(path)
    if path_text.startswith(HF_PREFIX):
        return hashlib.sha256(path_text.encode()).hexdigest()
    folder = Path(path)
    if folder.is_dir():
        files = sorted(p for p in folder.glob("*.arrow"))
        if files:
            return files_sha256(files)
    return sha256_file(path)


def read_examples(
    path: str | Path,
    columns: Columns = Columns(),
    *,
    task: str | None = None,
    require_labels: bool = True,
    limit: int | None = None,
) -> Examples:
    """Read examples from a TSV, CSV, JSONL or parquet file, a `datasets` folder written by
    `save_to_disk`, or a cached Hub dataset (`hf:NAME[:CONFIG]:SPLIT`). `task` is inferred from
    the labels when None."""
    source = open_source(path, columns.header)
    path, names = Path(path), source.names
    text_col = _pick(names, columns.text, TEXT_COLUMNS, "text", "--text-column", path, True)
    pair_col = _pick(
        names, columns.text_pair, PAIR_COLUMNS, "second text", "--text-pair-column", path, False
    )
    label_col = _pick(
        names, columns.label, LABEL_COLUMNS, "label", "--label-column", path, require_labels
    )

    wanted = [c for c in dict.fromkeys((text_col, pair_col, label_col)) if c is not None]
    rows, unit = source.read(wanted, limit), source.unit
    texts: list[str] = []
    pairs: list[str] = []
    raw_labels: list[str] = []
    lines: list[int] = []
    for line, record in rows:
        text = record.get(text_col)
        if text is None or not str(text).strip():
            raise SlimbertError(
                f"{path}, {unit} {line}: empty or missing {text_col!r}; fix or remove the row"
            )
        texts.append(str(text).strip())
        if pair_col is not None:
            second = record.get(pair_col)
            if second is None or not str(second).strip():
                raise SlimbertError(
                    f"{path}, {unit} {line}: empty or missing {pair_col!r}; fix or remove the row"
                )
            pairs.append(str(second).strip())
        if label_col is not None:
            label = record.get(label_col)
            if label is None or str(label).strip() == "":
                raise SlimbertError(
                    f"{path}, {unit} {line}: empty or missing label {label_col!r}; "
                    "fix or remove the row"
                )
            raw_labels.append(str(label).strip())
        lines.append(line)
    if not texts:
        raise SlimbertError(
            f"{path}: no examples after reading (limit={limit}); give a non-empty file"
        )

    resolved_task = task or (_infer_task(raw_labels) if raw_labels else CLASSIFICATION)
    labels: list[str] | list[float] | None = None
    if label_col is not None:
        if resolved_task == REGRESSION:
            labels = _regression_labels(raw_labels, lines, path, unit)
        else:
            labels = raw_labels
    return Examples(
        texts=texts,
        text_pairs=pairs if pair_col is not None else None,
        labels=labels,
        task=resolved_task,
        path=path,
        rows=lines,
        sha256=source.sha256,
    )


def _regression_labels(
    raw_labels: list[str], lines: list[int], path: Path, unit: str
) -> list[float]:
    """The labels as finite numbers; one that is not stops with its line (or row)."""
    values = []
    for line, label in zip(lines, raw_labels, strict=True):
        try:
            value = float(label)
        except ValueError:
            raise SlimbertError(
                f"{path}, {unit} {line}: label {label!r} is not a number; this is a regression task"
            ) from None
        if not math.isfinite(value):
            raise SlimbertError(f"{path}, {unit} {line}: label {label!r} is not finite")
        values.append(value)
    return values


def read_subset(
    path: str | Path,
    columns: Columns = Columns(),
    limit: int | None = None,
    sample_seed: int | None = None,
    **kwargs,
) -> Examples:
    """The training rows a DataSpec with this `limit` and `sample_seed` uses: the first `limit`
    rows, or the first `limit` of a shuffle seeded with `sample_seed` (numpy's default_rng).
    Other keyword arguments go to `read_examples`."""
    if sample_seed is None:
        return read_examples(path, columns, limit=limit, **kwargs)
    examples = read_examples(path, columns, **kwargs)
    order = np.random.default_rng(sample_seed).permutation(len(examples))
    return examples.subset(order[:limit] if limit else order)


def _first_record(path: Path) -> dict:
    """The first JSON object of a JSONL file ({} when there is none; the reader says why)."""
    with open(path, encoding="utf-8-sig") as handle:
        for line in handle:
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    return {}
                return record if isinstance(record, dict) else {}
    return {}


def read_transfer(path: Path, evaluation: Examples, task: str) -> Examples:
    """The rows of a transfer set (`slimbert augment`'s JSONL: text, text_pair for pairs, the
    teacher's label), refused in one line when they are not the task's kind (pairs or single
    texts) or when any text is in the eval file."""
    path = Path(path)
    if not path.is_file():
        raise SlimbertError(f"--transfer {path}: no such file; make one with `slimbert augment`")
    if path.suffix.lower() != ".jsonl":
        raise SlimbertError(
            f"--transfer {path}: not a .jsonl file; give the file `slimbert augment` wrote"
        )
    pair, first = evaluation.is_pair, _first_record(path)
    missing = [name for name in ("text", "label") if first and name not in first]
    if missing:
        raise SlimbertError(
            f"--transfer {path}: its rows have no {' or '.join(missing)} field; give the file "
            "`slimbert augment` wrote"
        )
    if ("text_pair" in first) != pair:
        kinds = {True: "sentence pairs", False: "single texts"}
        raise SlimbertError(
            f"--transfer {path}: holds {kinds[not pair]} but the task has {kinds[pair]}; "
            "build it from this task's training file with `slimbert augment`"
        )
    columns = Columns("text", "text_pair" if pair else None, "label")
    transfer = read_examples(path, columns, task=task)
    eval_texts = {text_key(t) for t in evaluation.texts + (evaluation.text_pairs or [])}
    for i, text in enumerate(transfer.texts):
        sides = [text, transfer.text_pairs[i]] if pair else [text]
        leaked = next((side for side in sides if text_key(side) in eval_texts), None)
        if leaked is not None:
            shown = leaked if len(leaked) <= 60 else leaked[:57] + "..."
            raise SlimbertError(
                f"--transfer {path}, line {transfer.rows[i]}: {shown!r} is in the eval file "
                f"{evaluation.path}; rebuild the transfer set with `slimbert augment --eval "
                f"{evaluation.path}`"
            )
    return transfer


def _label_sort_key(label: str) -> tuple[int, float | str]:
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


@dataclass(frozen=True)
class LabelMap:
    """id ↔ label, built from training labels (numeric labels sort numerically: '0' → 0)."""

    id2label: dict[int, str]

    @classmethod
    def from_labels(cls, labels: Sequence[str]) -> LabelMap:
        ordered = sorted(set(labels), key=_label_sort_key)
        return cls({i: label for i, label in enumerate(ordered)})

    @classmethod
    def from_config(cls, id2label: dict) -> LabelMap:
        return cls({int(k): str(v) for k, v in id2label.items()})

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in self.id2label.items()}

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    def positive_id(self) -> int | None:
        """The class that binary F1 is reported for: '1' (GLUE), 'positive', or else id 1."""
        if self.num_labels != 2:
            return None
        lookup = self.label2id
        for name in ("1", "positive", "pos", "true", "yes"):
            if name in lookup:
                return lookup[name]
        return 1

    def encode(self, examples: Examples) -> list[int]:
        """Label ids for `examples`; an unknown label stops with the file and line."""
        if examples.labels is None:
            raise SlimbertError(f"{examples.path}: no label column; name it with --label-column")
        lookup = self.label2id
        ids = []
        for i, label in enumerate(examples.labels):
            if label not in lookup:
                line = examples.rows[i] if examples.rows else i + 1
                raise SlimbertError(
                    f"{examples.path}, line {line}: label {label!r} is unknown to the model "
                    f"(it knows {', '.join(lookup)}); fix the label or retrain on data that has it"
                )
            ids.append(lookup[label])
        return ids


def text_key(text: str) -> str:
    """Two spellings of one text that differ only in case or spacing are one text: how eval
    leakage and duplicates are recognised everywhere (pair augmentation, transfer sets)."""
    return " ".join(text.split()).casefold()
