"""What every training command shares before the loop runs: the optimisation settings
(`TrainConfig`, whose fields are every training command's flags), the result and the record a
saved model keeps of its run, the shuffled training batches, the step count a run plans, and
which checkpoint is better.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from torch.utils.data import DataLoader

from slimbert.batches import EncodedDataset, make_loader
from slimbert.metrics import Metrics
from slimbert.models import DEVICES
from slimbert.settings import setting

# --report-to NAME: the package Accelerate's tracker needs; the slimbert extra is named the same
TRACKERS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def train_loader(dataset: EncodedDataset, config: TrainConfig) -> DataLoader:
    """The shuffled training batches every method draws, seeded by config.seed."""
    return make_loader(
        dataset,
        config.batch_size,
        shuffle=True,
        seed=config.seed,
        group_by_length=config.group_by_length,
    )


@dataclass
class TrainConfig:
    """Optimisation settings shared by every command that trains.

    epochs:          passes over the training set (ignored when max_steps is set)
    max_steps:       stop after this many optimiser steps
    batch_size:      examples per step (per device)
    lr:              peak learning rate of AdamW, with linear warm-up and decay
    weight_decay:    AdamW weight decay (not applied to biases and LayerNorm)
    warmup_ratio:    share of the steps spent warming up
    eval_every:      evaluate every N steps; 0 evaluates once per epoch
    patience:        stop after this many evaluations without improvement; 0 never stops early
    seed:            shuffling and initialisation seed
    mixed_precision: "auto" (bf16 where the hardware computes it, else fp32), "no", "fp16" or
                     "bf16": the autocast of the training step
    group_by_length: batch training rows of similar length together (less padding)
    max_grad_norm:   gradient clipping
    grad_accum:      batches whose gradients add up to one optimiser step
    device:          "auto" (CUDA, MPS, XPU, else CPU) or the device to train on
    report_to:       an Accelerate tracker the per-step figures also go to, or "none"
    resume:          continue from the state saved in the output folder
    save_state:      save that state at every improving evaluation (off: nothing to resume from)
    progress:        show a progress bar
    """

    epochs: float = setting(3.0, "Passes over the training set.", min=0, min_open=True)
    max_steps: int | None = setting(
        None, "Stop after N optimiser steps (overrides --epochs).", min=1
    )
    batch_size: int = setting(
        32, "Examples per batch; an optimiser step takes --grad-accum batches.", min=1
    )
    lr: float = setting(
        5e-5, "Peak learning rate (AdamW, linear warm-up and decay).", min=0, min_open=True
    )
    weight_decay: float = setting(0.01, "AdamW weight decay (not on biases and LayerNorm).", min=0)
    warmup_ratio: float = setting(0.1, "Share of the steps spent warming up.", min=0, max=1)
    eval_every: int = setting(0, "Evaluate every N steps; 0 = once per epoch.", min=0)
    patience: int = setting(
        2, "Early stop after N evaluations without improvement; 0 = never.", min=0
    )
    seed: int = setting(42, "Shuffling and initialisation seed.")
    mixed_precision: str = setting(
        "auto",
        "Mixed precision of the training step (evaluation scores fp32 weights): auto picks "
        "bf16 where the hardware computes it (GPUs that support it, CPUs with AVX-512 BF16 or "
        "AMX) and fp32 elsewhere; no forces fp32; fp16 is for GPUs.",
        choices=("auto", "no", "fp16", "bf16"),
    )
    group_by_length: bool = setting(
        True,
        "Batch training rows of similar length together (batches in random order): less "
        "padding, about 2× the examples/s on SST-2 and MRPC; --no-group-by-length draws "
        "every batch at random.",
    )
    max_grad_norm: float = setting(1.0, "Gradient clipping norm; 0 = no clipping.", min=0)
    grad_accum: int = setting(
        1,
        "Accumulate gradients over N batches per optimiser step: the step of a batch N × "
        "--batch-size in the memory of one.",
        min=1,
    )
    device: str = setting(
        "auto",
        "Train on this device; auto picks CUDA, Apple-silicon MPS or Intel XPU when present, "
        "else the CPU. A device that is absent is an error.",
        choices=DEVICES,
    )
    report_to: str = setting(
        "none",
        "Also log every step to TensorBoard (files under --out/tracking), MLflow or Weights & "
        "Biases; each is an extra, e.g. pip install 'slimbert[tensorboard]'.",
        choices=("none", *TRACKERS),
    )
    resume: bool = setting(
        False,
        "Continue from the training state last saved in --out (at every evaluation) instead of "
        "starting over; finished stages are not trained again.",
        secondary=False,
    )
    save_state: bool = setting(
        True,
        "Save the training state at every improving evaluation so --resume can continue (the "
        "weights, the optimizer's moments and the best checkpoint: about 4× the weights' size "
        "each time); --no-save-state skips those writes for a run that will not be resumed.",
    )
    fused_adamw: bool = setting(
        True,
        "AdamW's fused kernel (same update, one pass over all tensors); off only to measure "
        "the per-tensor loop it replaced.",
        cli=False,
    )
    tie_margin: float = setting(
        0.5,
        "Metric points within which a checkpoint that predicts more than one class wins over "
        "one that predicts a single class for every eval row (flagged as degenerate).",
        min=0,
    )
    progress: bool = setting(True, "Show the progress bar.")


@dataclass
class TrainResult:
    best: Metrics | None
    best_step: int
    steps: int
    history: list[dict] = field(default_factory=list)  # one row per evaluation
    losses: list[dict] = field(default_factory=list)  # one row per step: total and every term
    precision: str = "no"  # the autocast the steps ran under ("auto" resolved)


def training_record(result: TrainResult, config: TrainConfig, data) -> dict:
    """The fields of a saved model's record (slimbert.record.ModelRecord, by name) about the run
    that trained it."""
    return {
        "data": data.describe(),
        "metric": result.best.values if result.best else {},
        "metric_name": result.best.name if result.best else None,
        "degenerate": result.best.degenerate if result.best else None,
        "precision": result.precision,
        "best_step": result.best_step,
        "steps": result.steps,
        "train_config": asdict(config),
        "history": result.history,
    }


def better(new: Metrics, best: Metrics | None, tie_margin: float) -> bool:
    """Whether `new` replaces `best` as the checkpoint to keep.

    Higher `main` wins, except that a degenerate checkpoint (one class for every eval row)
    must beat a non-degenerate best by more than `tie_margin` points, and a non-degenerate one
    replaces a degenerate best when it is no more than `tie_margin` points under it: a
    majority-class model's F1 looks good and means nothing.
    """
    if best is None:
        return True
    if new.degenerate and not best.degenerate:
        return new.main > best.main + tie_margin
    if best.degenerate and not new.degenerate:
        return new.main >= best.main - tie_margin
    return new.main > best.main


def steps_per_epoch(config: TrainConfig, batches_per_epoch: int) -> int:
    """Optimiser steps in one pass: a step per --grad-accum batches, the last one shorter."""
    return math.ceil(max(1, batches_per_epoch) / config.grad_accum)


def planned_steps(config: TrainConfig, batches_per_epoch: int) -> int:
    """Optimiser steps `train` runs unless it stops early: max_steps, else epochs × the steps of
    an epoch of `batches_per_epoch` batches."""
    per_epoch = steps_per_epoch(config, batches_per_epoch)
    return config.max_steps or max(1, math.ceil(config.epochs * per_epoch))


# The settings a saved state must share with the run that resumes it: those that change the
# arithmetic or the order of the batches.
SAME_RUN = (
    "epochs", "max_steps", "batch_size", "lr", "weight_decay", "warmup_ratio", "eval_every",
    "patience", "seed", "group_by_length", "max_grad_norm", "tie_margin", "grad_accum",
)  # fmt: skip
