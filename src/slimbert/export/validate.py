"""Parity gates: every exported artifact is run against the PyTorch model it came from.

Both models see the same padded batches of the whole eval file; what is compared:

    max, mean |Δlogit|     over every logit (N, C); NaN or Inf always fails
    label agreement        share of rows whose argmax is the same, in percent
    Δmetric                ONNX metric − PyTorch metric (F1 or Pearson), in points

`Tolerances` says how far each may move (presets per artifact kind), `Validator` holds the
PyTorch reference logits and checks one artifact after another, keeping a `Stage` per step for
the manifest.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from slimbert.batches import EncodedDataset, make_loader, model_inputs
from slimbert.compress.fake_quant import Int8Target, attach
from slimbert.errors import SlimbertError
from slimbert.export.runtime import OnnxClassifier
from slimbert.metrics import compute_metrics


@dataclass(frozen=True)
class Tolerances:
    """Gates an artifact must pass on the eval set, else nothing is written.

    max_abs_diff:   largest allowed |ONNX logit − PyTorch logit| (None: not gated, as for int8)
    min_agreement:  smallest allowed share of equal predicted labels, in percent
    max_f1_drop:    largest allowed drop of the main metric, in points
    """

    max_abs_diff: float | None = 1e-4
    min_agreement: float = 100.0
    max_f1_drop: float = 0.0

    @classmethod
    def preset(cls, precision: str) -> Tolerances:
        """Default gates per artifact: fp32 (plain export), fused (fp32 after the optimizer:
        kernels sum in another order), fp16, int8 (logits move; labels and F1 are what count)."""
        presets = {
            "fp32": cls(1e-4, 100.0, 0.0),
            "fused": cls(1e-3, 99.5, 0.1),
            "fp16": cls(5e-2, 99.0, 0.5),
            "int8": cls(None, 97.0, 1.0),
        }
        if precision not in presets:
            raise SlimbertError(
                f"no tolerance preset for {precision!r}; choose one of {', '.join(presets)}"
            )
        return presets[precision]

    def override(
        self,
        max_abs_diff: float | None = None,
        min_agreement: float | None = None,
        max_f1_drop: float | None = None,
    ) -> Tolerances:
        """These gates with any given value replacing the preset's."""
        return Tolerances(
            self.max_abs_diff if max_abs_diff is None else max_abs_diff,
            self.min_agreement if min_agreement is None else min_agreement,
            self.max_f1_drop if max_f1_drop is None else max_f1_drop,
        )


@dataclass
class Parity:
    examples: int
    max_abs_diff: float
    mean_abs_diff: float
    label_agreement: float
    metric_name: str
    torch_metric: float
    onnx_metric: float
    delta_metric: float
    provider: str

    def failures(self, tolerances: Tolerances) -> list[str]:
        problems = []
        if not np.isfinite(self.max_abs_diff) or not np.isfinite(self.onnx_metric):
            problems.append("the ONNX model produced NaN or Inf")
        if tolerances.max_abs_diff is not None and self.max_abs_diff > tolerances.max_abs_diff:
            problems.append(f"max |Δlogit| {self.max_abs_diff:.3g} > {tolerances.max_abs_diff:.3g}")
        if self.label_agreement < tolerances.min_agreement:
            problems.append(
                f"label agreement {self.label_agreement:.2f}% < {tolerances.min_agreement:.2f}%"
            )
        if -self.delta_metric > tolerances.max_f1_drop + 1e-9:
            problems.append(
                f"{self.metric_name} drop {-self.delta_metric:.2f} points"
                f" > {tolerances.max_f1_drop:.2f}"
            )
        return problems


def torch_logits(model, dataset: EncodedDataset, batch_size: int = 32) -> np.ndarray:
    """PyTorch logits (N, C) over `dataset` in order, batches padded to their own longest row."""
    model.eval()
    chunks = []
    with torch.inference_mode():
        for batch in make_loader(dataset, batch_size, shuffle=False):
            chunks.append(model(**model_inputs(batch, model)).logits.float().numpy())
    return np.concatenate(chunks)


def onnx_logits(
    onnx_model: OnnxClassifier, dataset: EncodedDataset, batch_size: int = 32
) -> np.ndarray:
    """ONNX logits (N, C) over the same padded batches as `torch_logits`."""
    chunks = []
    for batch in make_loader(dataset, batch_size, shuffle=False):
        chunks.append(
            onnx_model({k: v.numpy() for k, v in model_inputs(batch).items()}).astype(np.float32)
        )
    return np.concatenate(chunks)


def compare(
    model,
    onnx_model: OnnxClassifier,
    dataset: EncodedDataset,
    targets: list,
    task: str,
    label_map,
    batch_size: int = 32,
    reference: np.ndarray | None = None,
) -> Parity:
    """Run PyTorch and ONNX on the same padded batches and compare logits, labels and metric.

    `reference`: PyTorch logits (N, C) already computed on `dataset` (then `model` is not run)."""
    torch_out = reference if reference is not None else torch_logits(model, dataset, batch_size)
    onnx_out = onnx_logits(onnx_model, dataset, batch_size)
    finite = bool(np.isfinite(onnx_out).all())
    diff = np.abs(torch_out - onnx_out)
    if task == "regression":
        agreement = 100.0
    else:
        agreement = float((torch_out.argmax(-1) == onnx_out.argmax(-1)).mean() * 100)
    torch_metric = compute_metrics(torch_out, targets, task, label_map)
    onnx_metric = compute_metrics(onnx_out, targets, task, label_map) if finite else None
    return Parity(
        examples=len(dataset),
        max_abs_diff=float(diff.max()) if finite else float("inf"),
        mean_abs_diff=float(diff.mean()) if finite else float("inf"),
        label_agreement=agreement,
        metric_name=torch_metric.name,
        torch_metric=torch_metric.main,
        onnx_metric=onnx_metric.main if onnx_metric else float("nan"),
        delta_metric=(onnx_metric.main - torch_metric.main) if onnx_metric else float("-inf"),
        provider=onnx_model.provider,
    )


@dataclass
class Stage:
    """One validated artifact of the pipeline."""

    name: str  # export, optimize, quantize, fp16
    precision: str  # fp32, fused, int8, fp16: the tolerance preset it is held to
    tolerances: Tolerances
    parity: Parity
    onnx_bytes: int
    reference: str = "pytorch"  # what the artifact is compared with (see Validator.check)

    def to_dict(self) -> dict:
        return {
            "step": self.name,
            "precision": self.precision,
            "onnx_bytes": self.onnx_bytes,
            "tolerances": asdict(self.tolerances),
            "reference": self.reference,
            **asdict(self.parity),
        }


class Validator:
    """Holds the PyTorch reference logits so every step is compared on the same batches."""

    def __init__(
        self,
        model,
        dataset: EncodedDataset,
        targets: list,
        task: str,
        label_map,
        provider: str,
        source: Path,
        eval_path: Path,
    ):
        self.model = model
        self.dataset = dataset
        self.targets = targets
        self.task = task
        self.label_map = label_map
        self.provider, self.source, self.eval_path = provider, source, eval_path
        self.reference = torch_logits(model, dataset)  # (N, C)
        self.stages: list[Stage] = []

    def simulated(self, target: Int8Target) -> np.ndarray:
        """The model's logits (N, C) with every linear layer fake-quantized for `target`."""
        model = copy.deepcopy(self.model)
        attach(model, target)
        return torch_logits(model, self.dataset)

    def check(
        self,
        name: str,
        onnx_path: Path,
        precision: str,
        tolerances: Tolerances,
        runtime: dict | None = None,
        int8_target: Int8Target | None = None,
    ) -> Stage:
        """Validate one artifact; raise SlimbertError naming the step and every failed gate.

        `int8_target`: the model was tuned for this int8 graph (compress qat), so its int8
        artifact is compared with the model's simulated-int8 forward, which it was trained to
        compute and which the graph reproduces batch for batch, not with its fp32 forward."""
        hints = (runtime or {}).get(self.provider, {})
        session = OnnxClassifier(
            onnx_path, self.provider, disabled_optimizers=hints.get("disabled_optimizers", ())
        )
        parity = compare(
            self.model,
            session,
            self.dataset,
            self.targets,
            self.task,
            self.label_map,
            reference=self.reference if int8_target is None else self.simulated(int8_target),
        )
        problems = parity.failures(tolerances)
        if problems:
            raise SlimbertError(
                f"{self.source}: the {name} step's ONNX model fails validation on "
                f"{self.eval_path}: "
                + "; ".join(problems)
                + " (nothing written; loosen the gate with --max-abs-diff/--min-agreement/"
                "--max-f1-drop only if that is acceptable)"
            )
        basis = "pytorch" if int8_target is None else "pytorch, simulated int8 (compress qat)"
        stage = Stage(name, precision, tolerances, parity, onnx_path.stat().st_size, basis)
        self.stages.append(stage)
        return stage
