"""What every training command shares: read the data, tokenise it, score a model, cache logits."""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from slimbert.data import REGRESSION, Columns, Examples, LabelMap, read_examples
from slimbert.errors import SlimbertError
from slimbert.evaluate import (
    EncodedDataset,
    Metrics,
    compute_metrics,
    label_targets,
    make_loader,
    predict_logits,
)
from slimbert.io import sha256_file


@dataclass(frozen=True)
class DataSpec:
    """Where the examples come from and how they are cut.

    train/eval:  files (TSV, CSV, JSONL)
    columns:     which columns hold text, second text and label (found from GLUE headers if unset)
    task:        "classification" or "regression"; inferred from the training labels if None
    max_length:  tokens per example after truncation
    limit:       use only the first N training rows
    sample_seed: shuffle the training rows with this seed before taking `limit` (a seeded subset)
    """

    train: Path
    eval: Path
    columns: Columns = Columns()
    task: str | None = None
    max_length: int = 128
    limit: int | None = None
    sample_seed: int | None = None


@dataclass
class TaskData:
    train: Examples
    eval: Examples
    label_map: LabelMap
    task: str
    train_set: EncodedDataset
    eval_set: EncodedDataset
    eval_targets: list
    max_length: int

    def describe(self) -> dict:
        return {
            "train": {"path": str(self.train.path), "sha256": self.train.sha256, "rows": len(self.train), "subset_sha256": self.train.fingerprint()},
            "eval": {"path": str(self.eval.path), "sha256": self.eval.sha256, "rows": len(self.eval)},
            "task": self.task,
            "max_length": self.max_length,
            "pair": self.train.is_pair,
        }


def prepare(spec: DataSpec, tokenizer, label_map: LabelMap | None = None, task: str | None = None) -> TaskData:
    """Read both files; the label map comes from the model if it has one, else from the train set."""
    if spec.sample_seed is None:
        train = read_examples(spec.train, spec.columns, task=task or spec.task, limit=spec.limit)
    else:
        train = read_examples(spec.train, spec.columns, task=task or spec.task)
        order = np.random.default_rng(spec.sample_seed).permutation(len(train))
        train = train.subset(order[: spec.limit] if spec.limit else order)
    resolved = task or train.task
    evaluation = read_examples(spec.eval, spec.columns, task=resolved)
    if train.is_pair != evaluation.is_pair:
        raise SlimbertError(f"{spec.eval}: has {'pairs' if evaluation.is_pair else 'single texts'} but {spec.train} has {'pairs' if train.is_pair else 'single texts'}; name the same columns for both")
    if resolved == REGRESSION:
        label_map = LabelMap({0: "score"})
    elif label_map is None:
        label_map = LabelMap.from_labels(train.labels)
        if label_map.num_labels < 2:
            raise SlimbertError(f"{spec.train}: only one label ({label_map.id2label[0]!r}) in the training data; a classifier needs at least two")
    train_targets = label_targets(train, label_map, resolved)
    eval_targets = label_targets(evaluation, label_map, resolved)
    return TaskData(
        train=train,
        eval=evaluation,
        label_map=label_map,
        task=resolved,
        train_set=EncodedDataset(tokenizer, train, spec.max_length, train_targets),
        eval_set=EncodedDataset(tokenizer, evaluation, spec.max_length, eval_targets),
        eval_targets=eval_targets,
        max_length=spec.max_length,
    )


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def evaluator(data: TaskData, batch_size: int = 64):
    loader = make_loader(data.eval_set, batch_size, shuffle=False, group_by_length=True)

    def evaluate(model) -> Metrics:
        dev = next(model.parameters()).device
        logits = predict_logits(model, loader, dev)
        return compute_metrics(logits, data.eval_targets, data.task, data.label_map)

    return evaluate


def cache_dir() -> Path:
    return Path(os.environ.get("SLIMBERT_CACHE", Path.home() / ".cache" / "slimbert"))


def model_fingerprint(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        digest.update(sha256_file(model_dir / name).encode())
    return digest.hexdigest()


def teacher_logits(teacher, teacher_dir: Path | str, data: TaskData, batch_size: int = 64, fingerprint: str | None = None) -> torch.Tensor:
    """The teacher's logits on the training set, (N, C), computed once and cached on disk.

    The key covers the teacher's weights and config, the exact training texts used and the max
    length, so a rerun or a later method on the same data reads them back.
    """
    from safetensors.torch import load_file, save_file

    key_source = "|".join([fingerprint or model_fingerprint(Path(teacher_dir)), data.train.fingerprint(), str(data.max_length)])
    key = hashlib.sha256(key_source.encode()).hexdigest()[:32]
    path = cache_dir() / "logits" / f"{key}.safetensors"
    if path.is_file():
        logits = load_file(str(path))["logits"]
        if logits.shape[0] == len(data.train):
            return logits
    loader = make_loader(data.train_set, batch_size, shuffle=False, group_by_length=True)
    dev = next(teacher.parameters()).device
    logits = torch.from_numpy(np.ascontiguousarray(predict_logits(teacher, loader, dev, progress=sys.stderr.isatty())))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({"logits": logits.contiguous()}, str(tmp))
    os.replace(tmp, path)
    return logits
