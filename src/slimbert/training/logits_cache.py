"""The teacher's logits on the training set, computed once and cached on disk."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from slimbert.batches import TaskData, make_loader, predict_logits
from slimbert.data import Examples
from slimbert.files import sha256_file
from slimbert.hub import weights_sha256


def cache_dir() -> Path:
    return Path(os.environ.get("SLIMBERT_CACHE", Path.home() / ".cache" / "slimbert"))


def model_fingerprint(model_dir: Path) -> str:
    """sha256 over config.json's and the weights' sha256 (one file or every shard)."""
    digest = hashlib.sha256()
    digest.update(sha256_file(Path(model_dir) / "config.json").encode())
    digest.update(weights_sha256(model_dir).encode())
    return digest.hexdigest()


def teacher_logits(
    teacher,
    teacher_dir: Path | str,
    data: TaskData,
    batch_size: int = 64,
    fingerprint: str | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """The teacher's logits on the training set, (N, C), computed once and cached on disk.

    The key covers the teacher's weights and config, the exact texts and the max length, so a
    rerun or a later method on the same data reads them back. A transfer set's rows (the last
    rows of `data.train`) are cached apart from the training rows: a student trained on the
    training file alone has already paid for the larger part of a later run with `--transfer`.
    `device`: where to compute them (the training device, so a GPU run does not make this pass
    on the CPU); the teacher goes back where it was afterwards.
    """
    fingerprint = fingerprint or model_fingerprint(Path(teacher_dir))
    total = len(data.train)
    first = total - (len(data.transfer) if data.transfer is not None else 0)
    parts = [(0, first), (first, total)] if 0 < first < total else [(0, total)]
    return torch.cat(
        [
            _cached_part(teacher, fingerprint, data, start, stop, batch_size, device)
            for start, stop in parts
        ]
    )


class _Rows(torch.utils.data.Dataset):
    """Rows start..stop of an encoded training set, numbered from 0 (what make_loader and
    predict_logits read: `features`, `pad_id`, each item's `idx`)."""

    def __init__(self, dataset, start: int, stop: int):
        self.features = dataset.features[start:stop]
        self.pad_id = dataset.pad_id

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        return {**self.features[index], "idx": index}


def _cached_part(
    teacher, fingerprint: str, data: TaskData, start: int, stop: int, batch_size: int, device
) -> torch.Tensor:
    """The logits of rows start..stop, (stop - start, C), from the cache or computed into it."""
    rows = (
        data.train
        if (start, stop) == (0, len(data.train))
        else data.train.subset(range(start, stop))
    )
    path = cache_path(fingerprint, rows, data.max_length)
    if path.is_file():
        logits = load_file(str(path))["logits"]
        if logits.shape[0] == stop - start:
            return logits
    dataset = _Rows(data.train_set, start, stop)
    loader = make_loader(dataset, batch_size, shuffle=False, group_by_length=True)
    home = next(teacher.parameters()).device
    on = home if device is None else torch.device(device)
    teacher.to(on)
    try:
        logits = torch.from_numpy(
            np.ascontiguousarray(predict_logits(teacher, loader, on, progress=sys.stderr.isatty()))
        )
    finally:
        teacher.to(home)
    _store(path, logits)
    return logits


def cache_path(fingerprint: str, rows: Examples, max_length: int) -> Path:
    """Where the logits of the teacher `fingerprint` names on `rows` at `max_length` are kept."""
    key_source = "|".join([fingerprint, rows.fingerprint(), str(max_length)])
    key = hashlib.sha256(key_source.encode()).hexdigest()[:32]
    return cache_dir() / "logits" / f"{key}.safetensors"


def seed(fingerprint: str, rows: Examples, max_length: int, logits: np.ndarray) -> Path:
    """Keep logits the teacher has just computed on `rows` (`slimbert augment` labelling a
    transfer set) where a later run with those rows as its transfer set looks them up, so the
    teacher does not pass over them twice."""
    path = cache_path(fingerprint, rows, max_length)
    _store(path, torch.from_numpy(np.ascontiguousarray(logits)))
    return path


def _store(path: Path, logits: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({"logits": logits.contiguous()}, str(tmp))
    os.replace(tmp, path)
