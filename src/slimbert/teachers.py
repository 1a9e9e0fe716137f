"""Load whatever `--teacher` names: one fine-tuned classifier, or a professor ensemble.

Every distillation method needs two things from its teacher, and they are not always the same
module:

    Teacher.model    logits (B, C) for the on-disk logit cache and the eval figure
                     ─ a classifier directory: the classifier itself
                     ─ an ensemble (professor boost): Σ_k w_k · logits_k over its members
    Teacher.layers   the HF classifier a student copies embeddings, layers and head from,
                     and whose hidden states / attentions layer-matching losses read
                     ─ a classifier directory: the classifier itself
                     ─ an ensemble: its best member on the eval set (recorded in ensemble.json)

A method calls `load_teacher(dir)` once, passes `teacher.model` and `teacher.fingerprint` to
`slimbert.task.teacher_logits`, and builds its student from `teacher.layers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from slimbert.data import LabelMap
from slimbert.errors import SlimbertError
from slimbert.models import load_model_dir, model_label_map, model_task

ENSEMBLE_FILE = "ensemble.json"


@dataclass
class Teacher:
    """A loaded teacher.

    model:       callable as model(**inputs).logits -> (B, C); a classifier or an ensemble
    layers:      the HF classifier students are built from (== model for a single classifier)
    tokenizer:   the tokenizer every member shares
    metadata:    the directory's slimbert.json
    fingerprint: cache key of the weights (a single model's equals task.model_fingerprint)
    path:        the directory it came from
    members:     1 for a classifier, K for an ensemble
    """

    model: nn.Module
    layers: nn.Module
    tokenizer: Any
    metadata: dict
    fingerprint: str
    path: Path
    members: int = 1

    @property
    def task(self) -> str:
        return model_task(self.layers)

    @property
    def label_map(self) -> LabelMap:
        return model_label_map(self.layers)

    @property
    def is_ensemble(self) -> bool:
        return self.model is not self.layers


def is_ensemble(path: str | Path) -> bool:
    return (Path(path) / ENSEMBLE_FILE).is_file()


def load_teacher(path: str | Path) -> Teacher:
    """A classifier directory (train-teacher, compress, professor augment's PS-DA) or an
    ensemble directory (professor boost); both in eval mode on the CPU."""
    from slimbert.task import model_fingerprint

    path = Path(path)
    if not path.is_dir():
        raise SlimbertError(f"--teacher {path}: no such directory; give a directory written by train-teacher or professor boost")
    if is_ensemble(path):
        from slimbert.professor.boost import load_ensemble

        return load_ensemble(path)
    model, tokenizer, metadata = load_model_dir(path)
    return Teacher(model=model, layers=model, tokenizer=tokenizer, metadata=metadata, fingerprint=model_fingerprint(path), path=path)
