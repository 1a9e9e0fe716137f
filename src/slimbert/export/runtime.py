"""ONNX Runtime sessions with explicit providers: asking for CUDA never falls back to CPU."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from slimbert.errors import SlimbertError
from slimbert.files import MANIFEST_FILE

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def available_providers() -> list[str]:
    # onnxruntime loads on first use: PROVIDERS and runtime_hints are read without it
    import onnxruntime as ort

    return ort.get_available_providers()


def check_provider(provider: str) -> str:
    if provider not in PROVIDERS:
        raise SlimbertError(f"--provider {provider!r}: choose one of {', '.join(PROVIDERS)}")
    name = PROVIDERS[provider]
    if name not in available_providers():
        raise SlimbertError(
            f"--provider {provider}: {name} is not available in this onnxruntime "
            f"({', '.join(available_providers())}); install onnxruntime-gpu "
            "(`pip install -e .[gpu]`) on a machine with CUDA, or use --provider cpu"
        )
    return name


def runtime_hints(model_path: str | Path, provider: str) -> dict:
    """Session settings the export's manifest asks for on `provider` (its "runtime" entry), e.g.
    {"disabled_optimizers": ["SkipLayerNormFusion"]}: see export/optimize.py for why."""
    manifest = Path(model_path).parent / MANIFEST_FILE
    if not manifest.is_file():
        return {}
    try:
        hints = json.loads(manifest.read_text()).get("runtime") or {}
    except (OSError, ValueError):
        return {}
    return hints.get(provider) or {}


class OnnxClassifier:
    """A sequence classifier exported to ONNX: feed tokenizer output, get logits (B, C).

    disabled_optimizers: ONNX Runtime online optimizers to turn off; None reads them from the
    manifest.json beside the model (what `slimbert export --optimize` measured to be faster).
    """

    def __init__(
        self,
        model_path: str | Path,
        provider: str = "cpu",
        threads: int | None = None,
        disabled_optimizers: Sequence[str] | None = None,
    ):
        import onnxruntime as ort  # see available_providers

        name = check_provider(provider)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if disabled_optimizers is None:
            disabled_optimizers = runtime_hints(model_path, provider).get("disabled_optimizers", ())
        self.disabled_optimizers = list(disabled_optimizers)
        extra = (
            {"disabled_optimizers": self.disabled_optimizers} if self.disabled_optimizers else {}
        )
        # CUDA's fp32 matmuls default to TF32 (10-bit mantissa): fp32 would then miss the 1e-4
        # parity gate and be timed at a precision it does not claim. fp32 means fp32 here.
        providers = [(name, {"use_tf32": "0"})] if provider == "cuda" else [name]
        self.session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=providers, **extra
        )
        active = self.session.get_providers()
        if active[0] != name:
            raise SlimbertError(
                f"onnxruntime placed the model on {active[0]}, not {name}; "
                "refusing to run on another provider"
            )
        self.provider = provider
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name

    def __call__(self, features: dict[str, np.ndarray]) -> np.ndarray:
        feeds = {name: np.asarray(features[name], dtype=np.int64) for name in self.input_names}
        return self.session.run([self.output_name], feeds)[0]
