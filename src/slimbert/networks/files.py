"""Students without attention on disk: build one from a teacher, save it, load it back.

A student directory holds config.json (with `slimbert_architecture`, id2label and every size),
model.safetensors, the teacher's tokenizer files and slimbert.json; `load_student` reads it back
and `slimbert.models.load_classifier` dispatches to it."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from pathlib import Path

from torch import nn

from slimbert.cards import write_card
from slimbert.data import REGRESSION, LabelMap
from slimbert.errors import SlimbertError
from slimbert.files import CONFIG_FILE, WEIGHTS_FILE, atomic_dir, sha256_file, write_json_atomic
from slimbert.networks.configs import (
    ARCHITECTURE_KEY,
    BiLSTMConfig,
    StudentConfig,
    TextCNNConfig,
    TreeConfig,
)
from slimbert.networks.modules import BiLSTM, TextCNN
from slimbert.networks.tree import SoftTree
from slimbert.provenance import count_parameters, library_versions
from slimbert.record import ModelRecord, write_record

ARCHITECTURES: dict[str, tuple[type[StudentConfig], type[nn.Module]]] = {
    TextCNNConfig.architecture: (TextCNNConfig, TextCNN),
    BiLSTMConfig.architecture: (BiLSTMConfig, BiLSTM),
    TreeConfig.architecture: (TreeConfig, SoftTree),
}


def build_network(
    config: StudentConfig, teacher: nn.Module, tokenizer, label_map: LabelMap, task: str, pair: bool
) -> nn.Module:
    """A student of `config`'s architecture sized from the teacher: its vocabulary, embedding
    width, labels and padding id; embeddings initialised from the teacher's table."""
    table = teacher.get_input_embeddings().weight.detach().to("cpu")  # (V, H)
    splits = "token_type_ids" in tokenizer.model_input_names
    encoding = getattr(config, "pair_encoding", "siamese")  # only TextCNN can read packed pairs
    if encoding == "auto":
        encoding = "siamese" if splits else "packed"
    if pair and encoding == "siamese" and not splits:
        raise SlimbertError(
            "the teacher's tokenizer gives no token_type_ids, which a "
            f"{config.architecture} student needs to split sentence pairs; "
            + (
                "use --pair-encoding packed"
                if config.architecture == "textcnn"
                else "use textcnn for this teacher"
            )
        )
    extra = {"pair_encoding": encoding} if hasattr(config, "pair_encoding") else {}
    sized = dataclasses.replace(
        config,
        vocab_size=table.shape[0],
        source_dim=table.shape[1],
        num_labels=1 if task == REGRESSION else label_map.num_labels,
        id2label={0: "score"} if task == REGRESSION else dict(label_map.id2label),
        problem_type="regression" if task == REGRESSION else "single_label_classification",
        pad_token_id=tokenizer.pad_token_id or 0,
        pair=pair and encoding == "siamese",
        **extra,
    )
    _, module = ARCHITECTURES[config.architecture]
    student = module(sized)
    student.embeddings.initialise(table)
    return student


def student_config(path: str | Path) -> StudentConfig:
    """Read config.json back into its typed config; unknown architectures and keys are errors."""
    file = Path(path) / CONFIG_FILE
    payload = json.loads(file.read_text())
    name = payload.pop(ARCHITECTURE_KEY)
    if name not in ARCHITECTURES:
        raise SlimbertError(
            f"{file}: unknown {ARCHITECTURE_KEY} {name!r}; "
            f"this slimbert knows {', '.join(ARCHITECTURES)} (upgrade slimbert?)"
        )
    config_type, _ = ARCHITECTURES[name]
    known = {f.name for f in dataclasses.fields(config_type)}
    payload.pop("label2id", None)
    payload.pop("model_type", None)  # AutoConfig's name for it; students before it lack one
    unknown = sorted(set(payload) - known)
    if unknown:
        raise SlimbertError(
            f"{file}: unknown keys {unknown} for a {name} student; "
            "it was written by another slimbert version"
        )
    payload["id2label"] = {int(k): v for k, v in payload["id2label"].items()}
    return config_type(**payload)


def load_student(path: str | Path) -> nn.Module:
    """A saved student in eval mode, weights from model.safetensors (every key must match)."""
    from safetensors.torch import load_file

    path = Path(path)
    config = student_config(path)
    _, module = ARCHITECTURES[config.architecture]
    student = module(config)
    student.load_state_dict(load_file(str(path / WEIGHTS_FILE)), strict=True)
    student.eval()
    return student


def save_student(
    student: nn.Module, tokenizer, out: str | Path, record: ModelRecord
) -> ModelRecord:
    """Write config.json, model.safetensors, the tokenizer, slimbert.json and the card,
    atomically; returns the record as written, with the student's architecture, config, size,
    weights hash and library versions filled in."""
    from safetensors.torch import save_file

    student = student.to("cpu")
    with atomic_dir(out) as staging:
        write_json_atomic(staging / CONFIG_FILE, student.config.to_json())
        state = {k: v.detach().contiguous() for k, v in student.state_dict().items()}
        save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        tokenizer.save_pretrained(str(staging))
        trainable = sum(p.numel() for p in student.parameters() if p.requires_grad)
        full = replace(
            record,
            architecture=student.config.architecture,
            parameters=count_parameters(student),
            layers=None,
            hidden_size=student.config.embedding_dim,
            weights_sha256=sha256_file(staging / WEIGHTS_FILE),
            versions=library_versions(),
            details={
                **record.details,
                "student_config": student.config.to_json(),
                "trainable_parameters": trainable,
            },
        )
        write_record(staging, full)
        write_card(staging, full)
    return full
