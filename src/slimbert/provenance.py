"""What every saved model says about itself beside its record (slimbert.record): parameter
counts, library versions."""

from __future__ import annotations

import importlib.metadata as md
import platform

from torch import nn


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
