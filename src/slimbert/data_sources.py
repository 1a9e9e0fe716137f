"""Where examples are read from, opened as column names and rows for slimbert/data.py to pick
columns from: TSV, CSV and JSONL files, read with the standard library; and, through the
`datasets` extra, Arrow tables of which only the columns picked are read: parquet files, folders
written by `save_to_disk` and cached Hub datasets (`hf:NAME[:CONFIG]:SPLIT`). Each source's
sha256 is that of its files.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from slimbert.errors import SlimbertError
from slimbert.files import sha256_file

HF_PREFIX = "hf:"
DATASETS_EXTRA = "run `pip install -e .[datasets]`"


def datasets_library(path: Path | str, what: str):
    """The `datasets` library, or one line naming the extra that installs it."""
    try:
        import datasets
    except ImportError:
        raise SlimbertError(
            f"{path}: reading {what} needs the datasets extra; {DATASETS_EXTRA}"
        ) from None
    return datasets


def files_sha256(files: Sequence[str | Path]) -> str:
    """sha256 of one file; of several, sha256 over each one's name and sha256 in order."""
    if len(files) == 1:
        return sha256_file(files[0])
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{Path(file).name}:{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def dataset_sha256(dataset) -> str:
    """sha256 of the Arrow files behind a `datasets.Dataset` (load_from_disk and load_dataset
    both memory-map files, so there always are some)."""
    files = [entry["filename"] for entry in dataset.cache_files]
    return files_sha256(files) if files else ""


def open_parquet(path: Path):
    """A parquet file as an Arrow table, read with pyarrow (installed by the datasets extra) so
    that no copy lands in the datasets cache."""
    datasets_library(path, "parquet")
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(str(path))
    except Exception as exc:  # pyarrow raises several types for one broken file
        raise SlimbertError(f"{path}: unreadable parquet ({exc}); re-write the file") from None
    return list(table.column_names), table, sha256_file(path)


def open_saved_dataset(path: Path):
    """A folder written by `Dataset.save_to_disk` (a DatasetDict's split folder included)."""
    datasets = datasets_library(path, "a save_to_disk folder")
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
    return list(dataset.column_names), dataset, dataset_sha256(dataset)


def open_hub_dataset(source: str):
    """`hf:NAME[:CONFIG]:SPLIT`, loaded with `datasets.load_dataset` from the Hugging Face
    datasets cache (HF_DATASETS_CACHE); fetched first unless HF_HUB_OFFLINE is set."""
    parts = source[len(HF_PREFIX) :].split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise SlimbertError(
            f"{source}: give a Hub dataset as hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT, "
            "e.g. hf:nyu-mll/glue:sst2:validation"
        )
    name, config, split = parts[0], (parts[1] if len(parts) == 3 else None), parts[-1]
    datasets = datasets_library(source, "a Hub dataset")
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
    return list(dataset.column_names), dataset, dataset_sha256(dataset)


def table_rows(table, wanted: list[str], limit: int | None) -> list[tuple[int, dict]]:
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


@dataclass
class Source:
    """One source opened: its column names, and its rows (a text file, read whole) or its Arrow
    table (read once the columns are picked)."""

    names: list[str]
    rows: list[tuple[int, dict]]  # (1-based line or row, {column: value})
    table: object | None  # a pyarrow.Table or a datasets.Dataset
    sha256: str
    unit: str  # what an error's number counts: a file's lines, a dataset's rows (1-based)

    def read(self, wanted: list[str], limit: int | None) -> list[tuple[int, dict]]:
        """The rows, the first `limit` only when given; of a table, the `wanted` columns only."""
        rows = self.rows if self.table is None else table_rows(self.table, wanted, limit)
        return rows[:limit] if limit is not None else rows


def open_source(path: str | Path, header: bool) -> Source:
    """A data file, a save_to_disk folder or `hf:NAME[:CONFIG]:SPLIT`, opened by its kind (a
    headerless TSV or CSV names its columns by 0-based position)."""
    source = str(path)
    path = Path(path)
    unit = "row"
    if source.startswith(HF_PREFIX):
        names, table, sha256 = open_hub_dataset(source)
    elif path.is_dir():
        names, table, sha256 = open_saved_dataset(path)
    elif not path.is_file():
        raise SlimbertError(f"{path}: no such file; check the path")
    elif path.suffix.lower() == ".parquet":
        names, table, sha256 = open_parquet(path)
    else:
        table, sha256, unit = None, sha256_file(path), "line"
    suffix = path.suffix.lower()
    if table is not None:
        rows = []  # filled once the columns are known: only those are read
    elif suffix in (".jsonl", ".json", ".ndjson"):
        names, records = read_jsonl(path)
        rows = [(line, {k: v for k, v in rec.items()}) for line, rec in records]
    elif suffix in (".tsv", ".csv", ".txt"):
        delimiter = "," if suffix == ".csv" else "\t"
        quoting = csv.QUOTE_MINIMAL if suffix == ".csv" else csv.QUOTE_NONE
        names, records = read_table(path, delimiter, quoting, header)
        rows = []
        for line, record in records:
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
    return Source(names, rows, table, sha256, unit)


def read_table(
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


def read_jsonl(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
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
