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
`training.logits_cache.teacher_logits`, and builds its student from `teacher.layers`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from slimbert.data import LabelMap
from slimbert.errors import SlimbertError
from slimbert.models import (
    load_model_dir,
    load_tokenizer,
    model_label_map,
    model_task,
    resolve_base,
)
from slimbert.record import ModelRecord, read_record
from slimbert.teachers.ensemble import (
    COMBINES,
    ENSEMBLE_FILE,
    ENSEMBLE_FORMAT,
    EnsembleClassifier,
    ensemble_fingerprint,
)
from slimbert.training.logits_cache import model_fingerprint


@dataclass
class Teacher:
    """A loaded teacher.

    model:       callable as model(**inputs).logits -> (B, C); a classifier or an ensemble
    layers:      the HF classifier students are built from (== model for a single classifier)
    tokenizer:   the tokenizer every member shares
    record:      the directory's slimbert.json (an empty record for a plain HF classifier)
    fingerprint: cache key of the weights (one model: training.logits_cache.model_fingerprint)
    path:        the directory it came from
    members:     1 for a classifier, K for an ensemble
    """

    model: nn.Module
    layers: nn.Module
    tokenizer: Any
    record: ModelRecord
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


def load_teacher(path: str | Path, flag: str = "--teacher") -> Teacher:
    """A classifier directory (train-teacher, compress, professor augment's PS-DA), an ensemble
    directory (professor boost), or a fine-tuned classifier by its Hub name (org/name, read
    from the Hugging Face cache); in eval mode on the CPU."""
    if Path(path).is_dir() and is_ensemble(path):
        return load_ensemble(path)
    path = resolve_base(path, flag)
    model, tokenizer, record = load_model_dir(path, flag)
    return Teacher(
        model=model,
        layers=model,
        tokenizer=tokenizer,
        record=record,
        fingerprint=model_fingerprint(path),
        path=path,
    )


def load_ensemble(path: str | Path) -> Teacher:
    """Read a professor boost directory into a Teacher: logits from all members, layers from
    the best one."""

    path = Path(path)
    try:
        ensemble = json.loads((path / ENSEMBLE_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SlimbertError(
            f"{path / ENSEMBLE_FILE}: unreadable ({exc}); "
            "rebuild it with `slimbert professor boost`"
        ) from None
    if ensemble.get("format") != ENSEMBLE_FORMAT:
        raise SlimbertError(
            f"{path / ENSEMBLE_FILE}: format {ensemble.get('format')!r}, "
            f"expected {ENSEMBLE_FORMAT!r}; rebuild it with this slimbert's `professor boost`"
        )
    members = []
    for name in ensemble["members"]:
        if not (path / name).is_dir():
            raise SlimbertError(
                f"{path / name}: member missing from the ensemble; "
                "rebuild it with `slimbert professor boost`"
            )
        model, _, _ = load_model_dir(path / name, "--teacher")
        members.append(model)
    labels = {json.dumps(m.config.id2label, sort_keys=True) for m in members}
    if len(labels) != 1:
        raise SlimbertError(
            f"{path}: the members disagree on their labels; "
            "rebuild the ensemble from one training set"
        )
    if ensemble.get("combine") not in COMBINES:
        raise SlimbertError(
            f"{path / ENSEMBLE_FILE}: combine {ensemble.get('combine')!r} is not one of "
            f"{', '.join(COMBINES)}; rebuild it with `slimbert professor boost`"
        )
    model = EnsembleClassifier(members, ensemble["weights"], ensemble["combine"])
    model.eval()
    return Teacher(
        model=model,
        layers=members[ensemble["best_member"]],
        tokenizer=load_tokenizer(path, "--teacher"),
        record=read_record(path),
        fingerprint=ensemble_fingerprint(path, ensemble),
        path=path,
        members=len(members),
    )
