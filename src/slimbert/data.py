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
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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


def _read_table(
    path: Path, delimiter: str, quoting: int, header: bool
) -> tuple[list[str], list[tuple[int, list[str]]]]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
            records = [(reader.line_num, record) for record in reader]
    except UnicodeDecodeError as exc:
        raise SlimbertError(
            f"{path}: not valid UTF-8 near byte {exc.start}; re-save the file as UTF-8"
        ) from None
    except csv.Error as exc:
        raise SlimbertError(
            f"{path}: unreadable table ({exc}); check the delimiter and quoting"
        ) from None
    records = [(line, rec) for line, rec in records if any(cell.strip() for cell in rec)]
    if not records:
        raise SlimbertError(f"{path}: the file is empty; give a file with at least one example")
    if header:
        names = [name.strip() for name in records[0][1]]
        return names, records[1:]
    width = max(len(rec) for _, rec in records)
    return [str(i) for i in range(width)], records


def _read_jsonl(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    rows: list[tuple[int, dict]] = []
    names: dict[str, None] = {}
    with open(path, encoding="utf-8-sig") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SlimbertError(
                    f"{path}, line {line_no}: not valid JSON ({exc.msg}); "
                    "each line must be one JSON object"
                ) from None
            if not isinstance(record, dict):
                raise SlimbertError(f"{path}, line {line_no}: expected a JSON object per line")
            names.update(dict.fromkeys(record))
            rows.append((line_no, record))
    if not rows:
        raise SlimbertError(f"{path}: the file is empty; give a file with at least one example")
    return list(names), rows


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


HF_PREFIX = "hf:"
DATASETS_EXTRA = "run `pip install -e .[datasets]`"


def _datasets(path: Path | str, what: str):
    """The `datasets` library, or one line naming the extra that installs it."""
    try:
        import datasets
    except ImportError:
        raise SlimbertError(
            f"{path}: reading {what} needs the datasets extra; {DATASETS_EXTRA}"
        ) from None
    return datasets


def _files_sha256(files: Sequence[str | Path]) -> str:
    """sha256 of one file; of several, sha256 over each one's name and sha256 in order."""
    if len(files) == 1:
        return sha256_file(files[0])
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{Path(file).name}:{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def _dataset_sha256(dataset) -> str:
    """sha256 of the Arrow files behind a `datasets.Dataset` (load_from_disk and load_dataset
    both memory-map files, so there always are some)."""
    files = [entry["filename"] for entry in dataset.cache_files]
    return _files_sha256(files) if files else ""


def _open_parquet(path: Path):
    """A parquet file as an Arrow table, read with pyarrow (installed by the datasets extra) so
    that no copy lands in the datasets cache."""
    _datasets(path, "parquet")
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(str(path))
    except Exception as exc:  # pyarrow raises several types for one broken file
        raise SlimbertError(f"{path}: unreadable parquet ({exc}); re-write the file") from None
    return list(table.column_names), table, sha256_file(path)


def _open_saved_dataset(path: Path):
    """A folder written by `Dataset.save_to_disk` (a DatasetDict's split folder included)."""
    datasets = _datasets(path, "a save_to_disk folder")
    try:
        dataset = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise SlimbertError(
            f"{path}: a folder but not one written by datasets' save_to_disk; give a data file "
            "or such a folder"
        ) from None
    if isinstance(dataset, datasets.DatasetDict):
        raise SlimbertError(
            f"{path}: holds the splits {', '.join(dataset)}; give one of them, "
            f"e.g. {path / next(iter(dataset))}"
        )
    return list(dataset.column_names), dataset, _dataset_sha256(dataset)


def _open_hub_dataset(source: str):
    """`hf:NAME[:CONFIG]:SPLIT`, loaded with `datasets.load_dataset` from the Hugging Face
    datasets cache (HF_DATASETS_CACHE); fetched first unless HF_HUB_OFFLINE is set."""
    parts = source[len(HF_PREFIX) :].split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise SlimbertError(
            f"{source}: give a Hub dataset as hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT, "
            "e.g. hf:nyu-mll/glue:sst2:validation"
        )
    name, config, split = parts[0], (parts[1] if len(parts) == 3 else None), parts[-1]
    datasets = _datasets(source, "a Hub dataset")
    try:
        dataset = datasets.load_dataset(
            name, config, split=split, cache_dir=os.environ.get("HF_DATASETS_CACHE") or None
        )
    except (ConnectionError, FileNotFoundError, datasets.exceptions.DatasetNotFoundError):
        raise SlimbertError(
            f"{source}: dataset {name!r} is not in the datasets cache and the Hub was not "
            f"reached; load it once online (datasets.load_dataset({name!r}"
            + (f", {config!r}" if config else "")
            + ")) with HF_DATASETS_CACHE pointing at this cache"
        ) from None
    except ValueError as exc:  # an unknown split or config
        first = str(exc).strip().splitlines()[0]
        raise SlimbertError(f"{source}: {first}; fix the split or config") from None
    return list(dataset.column_names), dataset, _dataset_sha256(dataset)


def _table_rows(table, wanted: list[str], limit: int | None) -> list[tuple[int, dict]]:
    """(1-based row, {column: value}) for the `wanted` columns of an Arrow table or a
    `datasets.Dataset`, the first `limit` rows only when given."""
    if hasattr(table, "select_columns"):  # datasets.Dataset
        table = table.select_columns(wanted)
        if limit is not None:
            table = table.select(range(min(limit, len(table))))
        values = table.to_dict()
    else:  # pyarrow.Table
        table = table.select(wanted)
        if limit is not None:
            table = table.slice(0, limit)
        values = table.to_pydict()
    count = len(values[wanted[0]]) if wanted else 0
    return [(i + 1, {c: values[c][i] for c in wanted}) for i in range(count)]


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
            return _files_sha256(files)
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
    source = str(path)
    path = Path(path)
    unit = "row"  # what an error's number counts: a file's lines, a dataset's rows (1-based)
    if source.startswith(HF_PREFIX):
        names, table, sha256 = _open_hub_dataset(source)
    elif path.is_dir():
        names, table, sha256 = _open_saved_dataset(path)
    elif not path.is_file():
        raise SlimbertError(f"{path}: no such file; check the path")
    elif path.suffix.lower() == ".parquet":
        names, table, sha256 = _open_parquet(path)
    else:
        table, sha256, unit = None, sha256_file(path), "line"
    suffix = path.suffix.lower()
    if table is not None:
        rows = []  # filled once the columns are known: only those are read
    elif suffix in (".jsonl", ".json", ".ndjson"):
        names, records = _read_jsonl(path)
        rows = [(line, {k: v for k, v in rec.items()}) for line, rec in records]
    elif suffix in (".tsv", ".csv", ".txt"):
        delimiter = "," if suffix == ".csv" else "\t"
        quoting = csv.QUOTE_MINIMAL if suffix == ".csv" else csv.QUOTE_NONE
        names, table_rows = _read_table(path, delimiter, quoting, columns.header)
        rows = []
        for line, record in table_rows:
            if len(record) > len(names):
                raise SlimbertError(
                    f"{path}, line {line}: {len(record)} fields but the header has {len(names)}; "
                    "fix the row (a stray delimiter?)"
                )
            rows.append((line, dict(zip(names, record, strict=False))))
    else:
        raise SlimbertError(
            f"{path}: unknown file type {suffix!r}; use .tsv, .csv, .jsonl or .parquet, a "
            "save_to_disk folder, or hf:NAME[:CONFIG]:SPLIT"
        )

    text_col = _pick(names, columns.text, TEXT_COLUMNS, "text", "--text-column", path, True)
    pair_col = _pick(
        names, columns.text_pair, PAIR_COLUMNS, "second text", "--text-pair-column", path, False
    )
    label_col = _pick(
        names, columns.label, LABEL_COLUMNS, "label", "--label-column", path, require_labels
    )

    if table is not None:
        wanted = [c for c in dict.fromkeys((text_col, pair_col, label_col)) if c is not None]
        rows = _table_rows(table, wanted, limit)
    if limit is not None:
        rows = rows[:limit]
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
            values = []
            for line, label in zip(lines, raw_labels, strict=True):
                try:
                    value = float(label)
                except ValueError:
                    raise SlimbertError(
                        f"{path}, {unit} {line}: label {label!r} is not a number; "
                        "this is a regression task"
                    ) from None
                if not math.isfinite(value):
                    raise SlimbertError(f"{path}, {unit} {line}: label {label!r} is not finite")
                values.append(value)
            labels = values
        else:
            labels = raw_labels
    return Examples(
        texts=texts,
        text_pairs=pairs if pair_col is not None else None,
        labels=labels,
        task=resolved_task,
        path=path,
        rows=lines,
        sha256=sha256,
    )


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
