"""Loading and saving Hugging Face format models, and building students from a teacher.

Weights are read from safetensors only and remote code is never trusted.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimbert.cards import write_card
from slimbert.data import REGRESSION, LabelMap
from slimbert.errors import SlimbertError
from slimbert.files import CONFIG_FILE, atomic_dir
from slimbert.hub import resolve_model, weights_sha256
from slimbert.networks.files import load_student
from slimbert.provenance import count_parameters, library_versions
from slimbert.record import ModelRecord, read_record, write_record


def resolve_base(name_or_dir: str | Path, flag: str = "--base") -> Path:
    """The local directory of a model named by a directory, a bundled short name or a Hub
    name (`slimbert.hub.resolve_model`); every model slimbert loads is found through it."""
    return resolve_model(name_or_dir, flag)


def load_masked_lm(name: str | Path, flag: str, instead: str) -> tuple[nn.Module, Path]:
    """A masked LM (safetensors) and its folder, in eval mode. A checkpoint that does not load
    or holds no MLM head (a fine-tuned classifier drops it) is refused in one line that names
    `flag` and ends with `instead`: never a silently random head."""
    from transformers import AutoModelForMaskedLM

    path = resolve_base(name, flag)
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(
            str(path), use_safetensors=True, trust_remote_code=False, output_loading_info=True
        )
    except (OSError, ValueError) as exc:
        raise SlimbertError(f"{flag} {name}: cannot load a masked LM ({exc}); {instead}") from None
    missing = sorted(info.get("missing_keys") or ())  # a list in transformers 4, a set in 5
    if missing:
        raise SlimbertError(
            f"{flag} {name} has no masked-LM head ({len(missing)} {type(model).__name__} head "
            f"weights missing, e.g. {missing[0]}; a fine-tuned classifier drops it): {instead}"
        )
    return model.eval(), path


def load_tokenizer(path: str | Path, flag: str = "--base"):
    """The tokenizer in a directory (a model's, or an ensemble's that holds no weights), or of
    a bundled or Hub model by its name."""
    from transformers import AutoTokenizer

    folder = Path(path) if Path(path).is_dir() else resolve_base(path, flag)
    return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)


def student_architecture(path: str | Path) -> str | None:
    """`slimbert_architecture` from config.json of a non-transformer student, else None."""
    config = Path(path) / CONFIG_FILE
    return json.loads(config.read_text()).get("slimbert_architecture") if config.is_file() else None


def load_classifier(
    path: str | Path,
    label_map: LabelMap | None = None,
    task: str | None = None,
    attn_implementation: str = "eager",
    flag: str = "--base",
) -> nn.Module:
    """Load a sequence classifier from the model `path` names (a directory, bundled or Hub
    name; one or several safetensors files). A base encoder gets a fresh head sized by
    `label_map`.

    Eager attention is the default: it exposes attention maps for distillation and exports to
    an ONNX graph that ONNX Runtime's attention fusion recognises. A non-transformer student
    (compress textcnn, bilstm, tree) loads as it was saved.
    """
    path = resolve_base(path, flag)
    if student_architecture(path) is not None:
        return load_student(path)
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(str(path), trust_remote_code=False)
    kwargs: dict[str, Any] = {}
    if label_map is not None:
        num_labels = 1 if task == REGRESSION else label_map.num_labels
        kwargs.update(num_labels=num_labels)
        if task != REGRESSION:
            kwargs.update(id2label=label_map.id2label, label2id=label_map.label2id)
        else:
            kwargs.update(id2label={0: "score"}, label2id={"score": 0})
    if task == REGRESSION:
        kwargs["problem_type"] = "regression"
    elif label_map is not None:
        kwargs["problem_type"] = "single_label_classification"
    config.update(kwargs)
    return AutoModelForSequenceClassification.from_pretrained(
        str(path),
        config=config,
        use_safetensors=True,
        trust_remote_code=False,
        attn_implementation=attn_implementation,
    )


def model_task(model: nn.Module) -> str:
    return (
        REGRESSION
        if model.config.problem_type == "regression" or model.config.num_labels == 1
        else "classification"
    )


def model_label_map(model: nn.Module) -> LabelMap:
    return LabelMap.from_config(model.config.id2label)


def save_model(model: nn.Module, tokenizer, out: str | Path, record: ModelRecord) -> ModelRecord:
    """Write an HF model directory (config, safetensors, tokenizer), its slimbert.json and its
    card, atomically; returns the record as written, with the model's size, weights hash and
    library versions filled in.

    Under `accelerate launch` with several processes only the main process writes.
    """
    from accelerate import PartialState

    state = PartialState()
    state.wait_for_everyone()
    if not state.is_main_process:
        return record
    model = model.to("cpu")
    with atomic_dir(out) as staging:
        model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        full = replace(
            record,
            parameters=count_parameters(model),
            layers=model.config.num_hidden_layers,
            hidden_size=model.config.hidden_size,
            weights_sha256=weights_sha256(staging),
            versions=library_versions(),
        )
        write_record(staging, full)
        write_card(staging, full)
    return full


def load_model_dir(path: str | Path, flag: str = "--model") -> tuple[nn.Module, Any, ModelRecord]:
    """Load a classifier with its tokenizer and record (slimbert.json): a directory saved by
    slimbert, any HF classifier directory (an empty record), or a Hub name (`resolve_base`)."""
    path = resolve_base(path, flag)
    model = load_classifier(path, flag=flag)
    model.eval()
    return model, load_tokenizer(path, flag), read_record(path)


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


DEVICES = ("auto", "cpu", "cuda", "mps", "xpu")


def device_available(kind: str) -> bool:
    """Whether this torch build and machine can run on `kind` ("cpu", "cuda", "mps", "xpu")."""
    if kind == "cpu":
        return True
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return torch.backends.mps.is_available()
    if kind == "xpu":
        return hasattr(torch, "xpu") and torch.xpu.is_available()
    raise SlimbertError(f"--device {kind}: choose one of {', '.join(DEVICES)}")


def device(requested: str = "auto") -> torch.device:
    """Where models train and run: `requested`, or for "auto" the first of CUDA, Apple-silicon
    MPS and Intel XPU that is present, else the CPU. A requested device that is absent is an
    error, never a silent fall back to the CPU."""
    if requested == "auto":
        kind = next((k for k in ("cuda", "mps", "xpu") if device_available(k)), "cpu")
        return torch.device(kind)
    if not device_available(requested):
        present = ", ".join(k for k in DEVICES[1:] if device_available(k))
        raise SlimbertError(
            f"--device {requested}: no {requested.upper()} device is available to this torch "
            f"build (available: {present}); pick one of those or --device auto"
        )
    return torch.device(requested)
