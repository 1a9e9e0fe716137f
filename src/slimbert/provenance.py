"""What every saved model says about itself: slimbert.json, parameter counts, library versions."""

from __future__ import annotations

import importlib.metadata as md
import json
import platform
from dataclasses import dataclass
from pathlib import Path

from torch import nn

METADATA_FILE = "slimbert.json"


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in (
        "slimbert",
        "torch",
        "transformers",
        "tokenizers",
        "accelerate",
        "optimum-onnx",
        "onnx",
        "onnxruntime",
        "onnxruntime-gpu",
        "numpy",
    ):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return versions


@dataclass
class SavedModel:
    path: Path
    metadata: dict


def read_metadata(path: str | Path) -> dict:
    file = Path(path) / METADATA_FILE
    if not file.is_file():
        return {}
    return json.loads(file.read_text())
