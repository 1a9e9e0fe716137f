"""The record of a model folder: what slimbert.json says about the model beside it.

Every folder slimbert saves a model into (teacher, route checkpoint, professor and its members,
students of every method, pre-trained and general students) carries one `ModelRecord`, written
by `write_record` and read by `read_record`; nothing else opens slimbert.json. The JSON keys
are the field names, so a file reads the same to a person, a script or `jq`:

    {"schema_version": 1, "role": "student", "method": "kd", "teacher": "runs/teacher",
     "data": {...}, "metric": {"f1": 88.1, ...}, ..., "layer_map": [0, 5, 11],
     <the method's own keys: route, stages, student_init, ...>}

Every field is written, None included, so every slimbert.json has the same keys; what a method
adds of its own (TinyBERT's stages, Theseus's schedule, a professor's rounds) goes in
`details`, written beside the fields at the top level of the JSON.

Schema versions: 0 is every file written before the version was recorded (no
`schema_version` key); `migrate` brings it to 1 (the method's settings under `method_config`
whatever the method, where version 0 had `kd_config`, `boost_config`, `pretrain_config` or
`general_config`). A key the code does not know is kept in `details`, never dropped; a file
newer than the code is refused in one line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from slimbert.errors import SlimbertError
from slimbert.files import RECORD_FILE, write_json_atomic

SCHEMA_VERSION = 1

# version 0's names of the method's settings, by the method that wrote them
_V0_SETTINGS = ("kd_config", "boost_config", "pretrain_config", "general_config")


@dataclass(frozen=True)
class DataFile:
    """One data file a model was trained or scored on, as `TaskData.describe` records it."""

    path: str
    sha256: str | None = None
    rows: int | None = None
    subset_sha256: str | None = None  # the train rows actually used (a --max-train subset)


@dataclass(frozen=True)
class ModelRecord:
    """slimbert.json. Every field may be None where the role has no such thing (a professor
    has no teacher, a teacher no layer map); `details` holds what one method adds."""

    schema_version: int = SCHEMA_VERSION
    role: str | None = None  # teacher, route, professor, professor-member, student, ...
    method: str | None = None  # teacher, boost, kd, tinybert, mlm, general-minilm, ...
    # what it was made from
    base: str | None = None  # teachers and professors: the --base fine-tuned, as named
    base_dir: str | None = None  # ... and the directory it resolved to
    teacher: str | None = None  # students: the primary teacher
    teachers: list[str] | None = None  # students taught by several: all of them, primary first
    source: str | None = None  # pre-trained and general students: the model they learnt from
    teacher_meta: dict | None = None  # the primary teacher's method, base and metric
    teacher_metric: dict[str, float] | None = None  # the primary teacher on the eval set
    # what it learnt from and how well it does
    data: dict = field(default_factory=dict)  # batches.TaskData.describe()
    texts: list[dict] | None = None  # unlabelled texts: path, sha256, distinct
    metric: dict[str, float] = field(default_factory=dict)  # the kept checkpoint's eval figures
    metric_name: str | None = None  # the one that picked it
    degenerate: str | None = None  # "predicts only X" when it gives one class for every row
    # how it was trained
    precision: str | None = None  # the autocast the steps ran under
    steps: int | None = None
    best_step: int | None = None
    history: list[dict] | None = None  # one row per evaluation
    first_losses: list[dict] | dict[str, list[dict]] | None = None  # per stage, if several
    train_config: dict | None = None  # training.config.TrainConfig
    method_config: dict | None = None  # the method's settings dataclass
    teaching: dict | None = None  # non-transformer students: how the teachers were combined
    layer_map: list[int] | None = None  # the teacher layer each student layer started from
    # what a professor and a route checkpoint add
    members: int | None = None
    step: int | None = None
    total_steps: int | None = None
    # what it is (models.save_model fills these from the saved weights)
    architecture: str | None = None  # a non-transformer student: textcnn, bilstm, tree
    parameters: int | None = None
    layers: int | None = None
    hidden_size: int | None = None
    weights_sha256: str | None = None
    versions: dict[str, str] | None = None  # python and library versions that wrote it
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clash = set(self.details) & FIELDS
        if clash:
            raise ValueError(f"details {sorted(clash)} are fields of ModelRecord; set them")

    # the data it was trained on, read from `data`

    @property
    def task(self) -> str | None:
        return self.data.get("task")

    @property
    def max_length(self) -> int | None:
        return self.data.get("max_length")

    @property
    def pair(self) -> bool | None:
        """Whether it reads text pairs; None where the data did not say (unlabelled texts)."""
        return self.data.get("pair")

    def data_file(self, split: str) -> DataFile | None:
        """The "train", "eval" or "transfer" file, where it had one."""
        part = self.data.get(split)
        if not part:
            return None
        return DataFile(
            str(part.get("path")), part.get("sha256"), part.get("rows"), part.get("subset_sha256")
        )

    def text_files(self) -> list[DataFile]:
        """The unlabelled text files it learnt from (pre-trained and general students); `rows`
        counts their distinct texts."""
        return [
            DataFile(str(t.get("path")), t.get("sha256"), t.get("distinct"))
            for t in self.texts or []
        ]

    @property
    def teacher_base(self) -> str | None:
        """The base the primary teacher was fine-tuned from."""
        return (self.teacher_meta or {}).get("base")

    @property
    def empty(self) -> bool:
        """A folder without slimbert.json (any Hugging Face model) reads as an empty record."""
        return self == ModelRecord()

    def to_json(self) -> dict:
        """The record as slimbert.json holds it: the fields, then `details`' keys beside them."""
        payload = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "details"}
        return {**payload, **self.details}

    @classmethod
    def from_json(cls, payload: dict, where: str | Path = RECORD_FILE) -> ModelRecord:
        """A record from slimbert.json's content, of any version this code knows (`migrate`)."""
        payload = migrate(payload, where)
        known = {k: v for k, v in payload.items() if k in FIELDS}
        details = {k: v for k, v in payload.items() if k not in FIELDS}
        return cls(**known, details=details)


FIELDS = frozenset(f.name for f in fields(ModelRecord)) - {"details"}


def migrate(payload: dict, where: str | Path = RECORD_FILE) -> dict:
    """slimbert.json's content brought to SCHEMA_VERSION, key by key; nothing is dropped."""
    version = payload.get("schema_version", 0)
    if not isinstance(version, int) or version < 0:
        raise SlimbertError(f"{where}: schema_version {version!r} is not a version number")
    if version > SCHEMA_VERSION:
        raise SlimbertError(
            f"{where}: schema_version {version} is newer than this slimbert reads "
            f"({SCHEMA_VERSION}); upgrade slimbert to read it"
        )
    payload = dict(payload)
    if version == 0:
        for old in _V0_SETTINGS:
            if old in payload and payload.get("method_config") is None:
                payload["method_config"] = payload.pop(old)
        payload["schema_version"] = 1
    return payload


def read_record(folder: str | Path) -> ModelRecord:
    """The record in `folder`/slimbert.json; an empty record where there is none."""
    file = Path(folder) / RECORD_FILE
    if not file.is_file():
        return ModelRecord()
    try:
        payload = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SlimbertError(f"{file}: not JSON ({error}); save the model again") from None
    if not isinstance(payload, dict):
        raise SlimbertError(f"{file}: not a JSON object; save the model again")
    return ModelRecord.from_json(payload, file)


def write_record(folder: str | Path, record: ModelRecord) -> Path:
    """Write `folder`/slimbert.json atomically."""
    path = Path(folder) / RECORD_FILE
    write_json_atomic(path, record.to_json())
    return path
