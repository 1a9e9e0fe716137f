"""Unlabelled text for the steps that need no labels: masked-LM pre-training (pretrain-student),
TinyBERT's general stage and task-agnostic distillation (distill-general).

A source is a plain `.txt` file (one text per non-blank line) or any file the data reader takes
(`.tsv`, `.csv`, `.jsonl`, `.parquet`, a transfer set), whose texts are read with the usual
column flags and whose labels, if any, are ignored; sentence pairs stay pairs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from slimbert.data import Columns, Examples, read_examples, read_subset
from slimbert.errors import SlimbertError
from slimbert.files import sha256_file


def read_text_file(path: Path, flag: str = "--text") -> Examples:
    """One text per non-blank line of a UTF-8 file."""
    if not Path(path).is_file():
        raise SlimbertError(
            f"{flag} {path}: no such file; give a plain text file with one text per line"
        )
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise SlimbertError(f"{flag} {path}: not valid UTF-8; re-save the file as UTF-8") from None
    rows = [(n, line.strip()) for n, line in enumerate(lines, start=1) if line.strip()]
    if not rows:
        raise SlimbertError(f"{flag} {path}: the file has no text; give one text per line")
    return Examples(
        [t for _, t in rows],
        None,
        None,
        "classification",
        Path(path),
        [n for n, _ in rows],
        sha256_file(path),
    )


def unlabelled_texts(
    paths: list[Path], columns: Columns, limit: int | None = None, sample_seed: int | None = None
) -> list[Examples]:
    """Each source's texts (pairs kept as pairs), duplicates dropped within and across sources;
    `limit` and `sample_seed` cut the first source (the task's training file) only. A `.txt`
    source is read line by line."""
    seen: set[tuple[str, str | None]] = set()
    sources = []
    for n, path in enumerate(paths):
        if Path(path).suffix == ".txt":
            examples = read_text_file(path)
        elif n == 0:
            examples = read_subset(path, columns, limit, sample_seed, require_labels=False)
        else:
            examples = read_examples(path, columns, require_labels=False)
        keep = []
        for i, text in enumerate(examples.texts):
            key = (text, examples.text_pairs[i] if examples.is_pair else None)
            if key not in seen:
                seen.add(key)
                keep.append(i)
        # texts only: a labelled training file and an unlabelled text file merge as one kind
        sources.append(dataclasses.replace(examples.subset(keep), labels=None))
    return sources


def describe_texts(paths: list[Path], sources: list[Examples]) -> list[dict]:
    """What a model's record keeps of the texts it learnt from: each file's path, sha256 and
    distinct texts."""
    return [
        {"path": str(p), "sha256": s.sha256, "distinct": len(s)}
        for p, s in zip(paths, sources, strict=True)
    ]
