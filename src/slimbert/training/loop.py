"""The one training loop: Accelerate for devices, autocast for precision, progress, evaluation,
early stop.

Every method (and train-teacher) hands it a model, a loader and a `step` callable that returns
the weighted loss plus each unweighted term; the loop keeps the best checkpoint by the eval
metric and restores it at the end.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from slimbert.batches import EncodedDataset, make_loader
from slimbert.errors import SlimbertError
from slimbert.metrics import Metrics
from slimbert.settings import setting

StepFn = Callable[[nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]
EvalFn = Callable[[nn.Module], Metrics]
OnStepFn = Callable[
    [int, int, nn.Module], None
]  # (step, total_steps, unwrapped model) after each optimiser step


PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16}


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX): where bf16 autocast
    trains faster instead of slower. Read from /proc/cpuinfo; False where it cannot be read."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(requested: str, device: torch.device) -> str:
    """"auto" as the precision it means on `device`: bf16 on a GPU that supports it and on a
    CPU with AVX-512 BF16 or AMX, fp32 ("no") elsewhere; any other value as given."""
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "no"


def autocast_for(mixed_precision: str, device: torch.device):
    """The autocast context of one training step: bf16 or fp16 on `device`, or nothing.

    The loop applies it around the step alone, so evaluation (and the best checkpoint it picks)
    always runs the fp32 weights as they will be saved and served; Accelerate is given no
    precision, which also lets one process train under several settings (slimbert experiment).
    """
    if mixed_precision == "no":
        return contextlib.nullcontext
    if mixed_precision == "fp16" and device.type == "cpu":
        raise SlimbertError(
            "--mixed-precision fp16 needs a GPU; on a CPU use bf16 (fast with AVX-512 BF16 or AMX)"
        )
    dtype = PRECISIONS[mixed_precision]
    return lambda: torch.autocast(device.type, dtype=dtype)


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
    mixed_precision: "no", "fp16" or "bf16", passed to Accelerate; bf16 also on CPUs with
                     AVX-512 BF16 or AMX (about 2× faster training on such a CPU)
    group_by_length: batch training rows of similar length together (less padding)
    max_grad_norm:   gradient clipping
    progress:        show a progress bar
    """

    epochs: float = setting(3.0, "Passes over the training set.", min=0, min_open=True)
    max_steps: int | None = setting(
        None, "Stop after N optimiser steps (overrides --epochs).", min=1
    )
    batch_size: int = setting(32, "Examples per optimiser step.", min=1)
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
        "no",
        "Mixed precision: fp16 on GPUs; bf16 on GPUs and on CPUs with AVX-512 BF16 or AMX; "
        "auto picks bf16 where the hardware computes it, fp32 elsewhere.",
        choices=("auto", "no", "fp16", "bf16"),
    )
    group_by_length: bool = setting(
        False,
        "Batch training rows of similar length together: less padding, a third less compute "
        "on MRPC.",
    )
    max_grad_norm: float = setting(1.0, "Gradient clipping norm; 0 = no clipping.", min=0)
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
    """The fields every saved model's slimbert.json carries about the run that trained it."""
    from dataclasses import asdict

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


def _param_groups(
    params: list[tuple[str, nn.Parameter]], weight_decay: float, lr: float | None = None
) -> list[dict]:
    decay, no_decay = [], []
    for name, param in params:
        if not param.requires_grad:
            continue
        (
            no_decay if param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay
        ).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [{**g, "lr": lr} for g in groups] if lr is not None else groups


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


def planned_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """Optimiser steps `train` runs unless it stops early: max_steps, else epochs × batches."""
    return config.max_steps or max(1, math.ceil(config.epochs * max(1, steps_per_epoch)))


def train(
    model: nn.Module,
    loader: DataLoader,
    step: StepFn,
    evaluate: EvalFn,
    config: TrainConfig,
    extra_modules: list[nn.Module] | None = None,
    description: str = "train",
    extra_lrs: list[float | None] | None = None,
    on_step: OnStepFn | None = None,
) -> TrainResult:
    """Train `model` (and `extra_modules`, e.g. projections) and leave the best weights in it.

    extra_lrs: a learning rate per extra module (None: config.lr), e.g. a teacher trained
    jointly with a student. on_step: called after every optimiser step, e.g. to keep checkpoints.
    """
    # Accelerate places the model and shards the batches over processes (`accelerate launch`);
    # precision is the loop's own (autocast_for).
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    precision = resolve_precision(config.mixed_precision, accelerator.device)
    autocast = autocast_for(precision, accelerator.device)
    scaler = (
        torch.amp.GradScaler(accelerator.device.type) if precision == "fp16" else None
    )
    torch.manual_seed(config.seed)
    extra_modules = extra_modules or []
    extra_lrs = extra_lrs or [None] * len(extra_modules)
    named = list(model.named_parameters())
    groups = _param_groups(named, config.weight_decay)
    for i, module in enumerate(extra_modules):
        extra = [(f"extra{i}.{n}", p) for n, p in module.named_parameters()]
        named += extra
        groups += _param_groups(extra, config.weight_decay, extra_lrs[i])
    optimizer = torch.optim.AdamW(groups, lr=config.lr)

    steps_per_epoch = max(1, len(loader))
    total_steps = planned_steps(config, steps_per_epoch)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(config.warmup_ratio * total_steps), total_steps
    )
    prepared = accelerator.prepare(model, optimizer, loader, scheduler, *extra_modules)
    model, optimizer, loader, scheduler = prepared[:4]
    eval_every = config.eval_every or steps_per_epoch

    result = TrainResult(best=None, best_step=0, steps=0, precision=precision)
    best_state: dict[str, torch.Tensor] | None = None
    stale = 0
    bar = tqdm(
        total=total_steps,
        desc=description,
        disable=not (config.progress and accelerator.is_main_process),
        dynamic_ncols=True,
    )
    done = False
    while not done:
        for batch in loader:
            model.train()
            with autocast():
                loss, terms = step(model, batch)
            accelerator.backward(loss if scaler is None else scaler.scale(loss))
            if scaler is not None:
                scaler.unscale_(optimizer)  # clip the true gradients
            if config.max_grad_norm:
                accelerator.clip_grad_norm_(
                    [p for _, p in named if p.requires_grad], config.max_grad_norm
                )
            if scaler is None:
                optimizer.step()
            else:
                scaler.step(optimizer)  # skipped when the scaled gradients overflowed
                scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            result.steps += 1
            result.losses.append({"step": result.steps, "loss": float(loss.detach()), **terms})
            if on_step is not None:
                on_step(result.steps, total_steps, accelerator.unwrap_model(model))
            bar.update(1)
            bar.set_postfix(
                loss=f"{float(loss.detach()):.4f}",
                **({"best": f"{result.best.main:.2f}"} if result.best else {}),
            )

            last = result.steps >= total_steps
            if result.steps % eval_every == 0 or last:
                unwrapped = accelerator.unwrap_model(model)
                metrics = evaluate(unwrapped)
                improved = better(metrics, result.best, config.tie_margin)
                result.history.append(
                    {
                        "step": result.steps,
                        **metrics.values,
                        "improved": improved,
                        **({"degenerate": metrics.degenerate} if metrics.degenerate else {}),
                    }
                )
                if improved:
                    result.best, result.best_step, stale = metrics, result.steps, 0
                    best_state = {
                        k: v.detach().to("cpu", copy=True)
                        for k, v in unwrapped.state_dict().items()
                    }
                else:
                    stale += 1
                bar.write(
                    f"[{description}] step {result.steps}: "
                    + ", ".join(f"{k} {v:.2f}" for k, v in metrics.values.items())
                    + (f" (degenerate: {metrics.degenerate})" if metrics.degenerate else "")
                    + (" *" if improved else "")
                )
                if config.patience and stale >= config.patience:
                    bar.write(f"[{description}] early stop: no improvement in {stale} evaluations")
                    done = True
            if last or done:
                done = True
                break
    bar.close()
    unwrapped = accelerator.unwrap_model(model)
    if best_state is not None:
        unwrapped.load_state_dict(best_state)
    return result
