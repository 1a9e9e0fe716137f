"""The files a transfer set (teachers/transfer.py) is made from: the training file, the eval file
and the `--text` files, read once, checked to hold one kind of row (single texts or sentence
pairs), and described by path, sha256 and rows for the set's manifest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from slimbert.batches import DataSpec
from slimbert.data import Examples, read_examples, read_subset, text_key
from slimbert.errors import SlimbertError


@dataclass
class TransferFiles:
    """Each file's examples. `whole` is every training row (none of them is new to a student);
    `train` the rows spec's limit / sample_seed pick, which the new rows are made from."""

    spec: DataSpec
    whole: Examples
    train: Examples
    evaluation: Examples
    texts: list[Path]
    extra: list[Examples]  # one per `texts` file

    def eval_keys(self) -> set[str]:
        """The text_key of every eval text and pair side."""
        evaluation = self.evaluation
        return {text_key(t) for t in evaluation.texts + (evaluation.text_pairs or [])}

    def describe(self) -> dict:
        """The manifest's `train`, `eval` and `texts` entries."""
        spec, train, evaluation = self.spec, self.train, self.evaluation
        return {
            "train": {
                "path": str(spec.train),
                "sha256": train.sha256,
                "rows": len(train),
                "subset_sha256": train.fingerprint(),
            },
            "eval": {"path": str(spec.eval), "sha256": evaluation.sha256, "rows": len(evaluation)},
            "texts": [
                {"path": str(path), "sha256": examples.sha256, "rows": len(examples)}
                for path, examples in zip(self.texts, self.extra, strict=True)
            ],
        }


def _same_kind(examples: Examples, train: Examples) -> None:
    if examples.is_pair != train.is_pair:
        kinds = {True: "sentence pairs", False: "single texts"}
        raise SlimbertError(
            f"{examples.path}: has {kinds[examples.is_pair]} but {train.path} has "
            f"{kinds[train.is_pair]}; name the same columns for both"
        )


def read_transfer_files(
    spec: DataSpec, texts: Sequence[Path], task: str, require_labels: bool
) -> TransferFiles:
    """Read spec's training and eval files and the `texts` files with spec's columns, the
    training rows as `task`."""
    columns = spec.columns
    whole = read_examples(spec.train, columns, task=task, require_labels=require_labels)
    train = read_subset(
        spec.train,
        columns,
        spec.limit,
        spec.sample_seed,
        task=task,
        require_labels=require_labels,
    )
    evaluation = read_examples(spec.eval, columns, require_labels=False)
    extra = [read_examples(path, columns, require_labels=False) for path in texts]
    for examples in (evaluation, *extra):
        _same_kind(examples, train)
    return TransferFiles(spec, whole, train, evaluation, list(texts), extra)
