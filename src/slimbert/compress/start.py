"""Where a student starts: the teacher's mapped layers, or a pre-trained student's encoder
(`--student-init`: a distill-general or pretrain-student folder of the teacher's family), which
then also gives the student its shape, or another pre-trained model cut to depth
(`--student-base`: any family, reading its own tokenizer).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from slimbert.batches import EncodedDataset, TaskData
from slimbert.compress.aligned import aligned_sets
from slimbert.compress.pretrain import encoder_keys
from slimbert.compress.students import InitReport, StudentShape, build_student, map_layers
from slimbert.errors import SlimbertError
from slimbert.families import family_of
from slimbert.hub import load_weights, weights_sha256
from slimbert.models import load_classifier, load_tokenizer, resolve_base
from slimbert.record import read_record
from slimbert.settings import setting


def init_shape(init_dir: str | Path, teacher: nn.Module, asked: StudentShape) -> StudentShape:
    """The shape of the pre-trained student at `init_dir` (distill-general, pretrain-student),
    which a student started from it takes. `asked.layers` must be its depth, and a width, head
    count or FFN size given on the command line must be its own: one line names the fix."""
    init_dir = resolve_base(init_dir, "--student-init")
    config = json.loads((init_dir / "config.json").read_text())
    family = family_of(teacher.config)
    if config.get("model_type") != teacher.config.model_type:
        raise SlimbertError(
            f"--student-init {init_dir}: a {config.get('model_type')!r} model but the teacher is "
            f"{teacher.config.model_type!r}; distil or pre-train a student from this teacher's "
            "family (or use compress kd --student-base for another family)"
        )
    found = StudentShape(
        int(config[family.depth]),
        int(config[family.width]),
        int(config[family.heads]),
        int(config[family.ffn]),
    )
    if asked.layers != found.layers:
        raise SlimbertError(
            f"--student-init {init_dir} has {found.layers} layers; give --layers {found.layers}"
        )
    for flag, given, value in (
        ("--hidden-size", asked.hidden, found.hidden),
        ("--heads", asked.heads, found.heads),
        ("--ffn-size", asked.ffn, found.ffn),
    ):
        if given is not None and given != value:
            raise SlimbertError(
                f"{flag} {given}: --student-init {init_dir} has {value}; drop {flag} "
                "(the student takes the pre-trained student's shape)"
            )
    return found


def start_student(
    teacher: nn.Module,
    shape: StudentShape,
    layer_map: list[int],
    seed: int | None,
    student_init: str | Path | None = None,
) -> tuple[nn.Module, InitReport, dict | None]:
    """The student every transformer method trains: built from the teacher's mapped layers
    (`build_student`), or, with `student_init`, of that pre-trained student's shape with its
    embeddings and encoder. Returns the student, what was copied from the teacher, and the
    record of the pre-trained start (None without one)."""
    if student_init is not None:
        shape = init_shape(student_init, teacher, shape)
    student, report = build_student(teacher, shape, layer_map, seed=seed)
    started = init_student(student, student_init) if student_init is not None else None
    return student, report, started


def init_student(student: nn.Module, init_dir: str | Path) -> dict:
    """Overwrite `student`'s embeddings and encoder with a pre-trained student's (from
    pretrain-student), key by key with shape asserts; its pooler and classifier stay as they
    are (the teacher's). Returns what was copied, for the student's metadata."""
    init_dir = resolve_base(init_dir, "--student-init")
    config = json.loads((init_dir / "config.json").read_text())
    family = family_of(student.config)
    if config.get("model_type") != student.config.model_type:
        raise SlimbertError(
            f"--student-init {init_dir}: a {config.get('model_type')!r} model but this student "
            f"is {student.config.model_type!r}; pre-train a student from the same teacher"
        )
    for name in (family.depth, family.width, "vocab_size"):
        if config.get(name) != getattr(student.config, name):
            raise SlimbertError(
                f"--student-init {init_dir}: {name} {config.get(name)} "
                f"but this student has {getattr(student.config, name)}; "
                "pre-train a student of the same depth from the same teacher"
            )
    saved = load_weights(init_dir)
    state = student.state_dict()
    wanted = encoder_keys(student, state)
    missing = [k for k in wanted if k not in saved]
    if missing:
        raise SlimbertError(
            f"--student-init {init_dir}: no weight {missing[0]!r} ({len(missing)} missing); "
            "give a directory written by `slimbert distill-general` or `slimbert pretrain-student`"
        )
    for key in wanted:
        assert saved[key].shape == state[key].shape, (key, saved[key].shape, state[key].shape)
        state[key] = saved[key].to(state[key].dtype)
    student.load_state_dict(state, strict=True)
    start = read_record(init_dir)
    return {
        "path": str(init_dir),
        "role": start.role,
        "method": start.method,
        "weights_sha256": weights_sha256(init_dir),
        "copied_tensors": len(wanted),
        "layer_map": start.layer_map,
        "source": start.source,
        "mlm_loss": start.metric.get("mlm_loss"),
        "distill_loss": start.metric.get("distill_loss"),
    }


def retokenized(data: TaskData, tokenizer) -> TaskData:
    """The same rows, targets and order as `data`, encoded by another tokenizer: the cached
    teacher logits, looked up by row index, still belong to each row."""
    return dataclasses.replace(
        data,
        train_set=EncodedDataset(tokenizer, data.train, data.max_length, data.train_set.labels),
        eval_set=EncodedDataset(tokenizer, data.eval, data.max_length, data.eval_targets),
    )


def base_student(base: str, layers: int, data: TaskData, seed: int, layer_map: str = "uniform"):
    """A `layers`-layer classifier cut from the pre-trained `base` (its layers chosen by
    `layer_map`), with a fresh head for the task's labels, and its tokenizer."""
    source = load_classifier(base, data.label_map, data.task, flag="--student-base")
    family = family_of(source.config)
    picked = map_layers(family.size(source.config, "depth"), layers, layer_map)
    student, _ = build_student(source, StudentShape(layers), picked, seed=seed)
    return student, load_tokenizer(base, "--student-base"), picked


def student_base_record(base: str) -> dict:
    folder = resolve_base(base, "--student-base")
    return {"name": base, "path": str(folder), "weights_sha256": weights_sha256(folder)}


def aligned_base_setting():
    """The --student-base field of a method whose losses compare tokens (minilm, tinybert)."""
    return setting(
        None,
        "Cut the student from this pre-trained model instead of the teacher (a directory, a Hub "
        "name or 'minilm-l6'), reading its own tokenizer: --layers of its layers picked evenly. "
        "The layer losses compare tokens, so both tokenizers must cut every row into the same "
        "word pieces (special tokens may differ: MPNet's and BERT's uncased do); else use kd.",
    )


def refuse_shape_beside_base(config) -> None:
    """--student-base brings the student's shape and weights: one line when a ShapeSettings
    flag or --student-init is given beside it."""
    if config.student_base is None:
        return
    given = [
        flag
        for flag, value in (
            ("--student-init", config.student_init),
            ("--hidden-size", config.hidden_size),
            ("--heads", config.heads),
            ("--ffn-size", config.ffn_size),
        )
        if value is not None
    ]
    if given:
        raise SlimbertError(
            f"--student-base brings the student's shape and weights, so {given[0]} has "
            "nothing to set; drop one"
        )


@dataclass
class Start:
    """The student, the tokenizer it reads, its task data and the two sets the layer stages
    read (with --student-base each row carries the teacher's reading and the alignment)."""

    student: nn.Module
    tokenizer: object
    data: TaskData
    sets: tuple[EncodedDataset, EncodedDataset]
    init: object = None  # how the teacher's layers started it (InitReport)
    started: dict | None = None  # --student-init's record
    base: dict | None = None  # --student-base's record


def start_of(
    method, teacher: nn.Module, tokenizer, layer_map: list[int], data: TaskData,
    train_data: TaskData, seed: int,
) -> Start:  # fmt: skip
    """The student of a method whose settings are ShapeSettings plus `student_base` (minilm,
    tinybert): from the teacher's layers at `layer_map` (or --student-init), or cut from
    --student-base and reading its own tokenizer, each row then aligned with the teacher's
    reading. `train_data`: the training rows the layer stage reads (`data` with any
    augmentation joined)."""
    if method.student_base is None:
        student, init, started = start_student(
            teacher, method.shape(), layer_map, seed, method.student_init
        )
        sets = (train_data.train_set, data.eval_set)
        return Start(student, tokenizer, train_data, sets, init, started)
    student, own, init_map = base_student(method.student_base, method.layers, data, seed)
    student_data = retokenized(train_data, own)
    aligned = aligned_sets(train_data, student_data, own, tokenizer)
    base = {
        **student_base_record(method.student_base),
        "layers": init_map,
        "aligned": aligned.describe(),
    }
    return Start(student, own, student_data, (aligned.train, aligned.eval), base=base)
