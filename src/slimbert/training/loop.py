"""The one training loop: Accelerate for devices and trackers, autocast for precision, gradient
accumulation, progress, evaluation, early stop, the per-step log and resumable state.

Every method (and train-teacher) hands it a model, a loader and a `step` callable that returns
the weighted loss plus each unweighted term; the loop keeps the best checkpoint by the eval
metric and restores it at the end. Given the command's `RunFiles` (training/state.py), it also
writes a row per optimiser step to out/train_log.jsonl and, at every evaluation, the state a
`--resume` continues from.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from slimbert.errors import SlimbertError
from slimbert.metrics import Metrics
from slimbert.training.config import (
    SAME_RUN,
    TrainConfig,
    TrainResult,
    better,
    planned_steps,
    steps_per_epoch,
)
from slimbert.training.records import (
    batch_rows,
    evaluation_row,
    figures_line,
    mean_terms,
    metrics_from,
    metrics_record,
    over_processes,
    world_size,
)
from slimbert.training.state import (
    RngState,
    RunFiles,
    check_same_run,
    loader_generators,
    optimizer_flat,
    optimizer_unflat,
    read_state,
    stage_key,
    write_state,
)
from slimbert.training.tracking import make_accelerator, start_trackers, tracker_figures

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
    """ "auto" as the precision it means on `device`: bf16 on a GPU that supports it and on a
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
    run: RunFiles | None = None,
    rngs: list[torch.Generator] | None = None,
) -> TrainResult:
    """Train `model` (and `extra_modules`, e.g. projections) and leave the best weights in it.

    extra_lrs: a learning rate per extra module (None: config.lr), e.g. a teacher trained
    jointly with a student. on_step: called after every optimiser step, e.g. to keep checkpoints,
    and once when a run resumes, with the step it resumes at.
    run: the command's output files; with it every step is logged to train_log.jsonl, the state
    is saved at every evaluation under training-state/<stage> (the stage named by
    `description`), and with config.resume a finished stage is restored and an interrupted one
    continues where its state was saved. rngs: generators the step function draws from (beyond
    torch's, python's, numpy's and the loader's), saved and restored with the state.
    """
    extra_modules = extra_modules or []
    stage = stage_key(description)
    saved = None
    if run is not None:
        run.start()
        saved = read_state(run.state_dir(stage)) if run.resume else None
    # this process's batches in an epoch: Accelerate deals the loader's batches out over the
    # processes (`torchrun --nproc_per_node N`, `accelerate launch --num_processes N`), each
    # getting ceil(n / N); an optimiser step takes one (or --grad-accum) from every process
    batches_per_epoch = max(1, math.ceil(len(loader) / world_size()))
    per_epoch = steps_per_epoch(config, batches_per_epoch)
    total_steps = planned_steps(config, batches_per_epoch)
    identity = {
        **{k: getattr(config, k) for k in SAME_RUN},
        "batches_per_epoch": batches_per_epoch,
        "total_steps": total_steps,
    }
    if saved is not None:
        check_same_run(saved.record["identity"], identity, run.state_dir(stage))
        if saved.record["finished"]:
            generators = [*loader_generators(loader), *(rngs or [])]
            return _restore_finished(saved, model, extra_modules, generators, description)

    # Accelerate places the model and shards the batches over processes (`accelerate launch`);
    # precision is the loop's own (autocast_for).
    accelerator = make_accelerator(config, run)
    precision = resolve_precision(config.mixed_precision, accelerator.device)
    autocast = autocast_for(precision, accelerator.device)
    scaler = torch.amp.GradScaler(accelerator.device.type) if precision == "fp16" else None
    torch.manual_seed(config.seed)
    extra_lrs = extra_lrs or [None] * len(extra_modules)
    named = list(model.named_parameters())
    groups = _param_groups(named, config.weight_decay)
    for i, module in enumerate(extra_modules):
        extra = [(f"extra{i}.{n}", p) for n, p in module.named_parameters()]
        named += extra
        groups += _param_groups(extra, config.weight_decay, extra_lrs[i])
    # The fused kernel updates every tensor in one pass: on a 2-core CPU it steps the MiniLM's
    # 22.7M parameters in a fifth of the time of the per-tensor loop (benchmarks/train_speed.py).
    optimizer = torch.optim.AdamW(groups, lr=config.lr, fused=config.fused_adamw or None)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(config.warmup_ratio * total_steps), total_steps
    )
    original_loader = loader
    # The scheduler is not handed to Accelerate: its schedule counts optimiser steps, which
    # Accelerate's wrapper would step once per process.
    prepared = accelerator.prepare(model, optimizer, loader, *extra_modules)
    model, optimizer, loader = prepared[:3]
    extras = list(prepared[3:])
    generators = [*loader_generators(original_loader, loader), *(rngs or [])]
    eval_every = config.eval_every or per_epoch
    epoch_batches = max(1, len(loader))  # this process's share of an epoch
    epoch_steps = math.ceil(epoch_batches / config.grad_accum)

    result = TrainResult(best=None, best_step=0, steps=0, precision=precision)
    best_state: dict[str, torch.Tensor] | None = None
    stale = 0
    resume_rng: dict[str, RngState] | None = None  # epoch start, last fetch, saved
    if saved is not None:
        record = saved.record
        accelerator.unwrap_model(model).load_state_dict(_part(saved.model, "model"))
        for i, module in enumerate(extras):
            accelerator.unwrap_model(module).load_state_dict(_part(saved.model, f"extra{i}"))
        optimizer.load_state_dict(optimizer_unflat(saved.optimizer, record["optimizer"]))
        scheduler.load_state_dict(record["scheduler"])
        if scaler is not None and record.get("scaler"):
            scaler.load_state_dict(record["scaler"])
        result = TrainResult(
            best=metrics_from(record["best"]),
            best_step=record["best_step"],
            steps=record["steps"],
            history=record["history"],
            losses=record["losses"],
            precision=precision,
        )
        best_state, stale = saved.best, record["stale"]
        resume_rng = {
            name: RngState.unflat(saved.rng, name, record["rng"][name])
            for name in ("epoch", "fetch", "current")
        }
        run.truncate_log(stage, result.steps)
        if on_step is not None:
            on_step(result.steps, total_steps, accelerator.unwrap_model(model))

    def save_state(epoch_rng: RngState, fetch_rng: RngState) -> None:
        if run is None or not config.save_state or not accelerator.is_main_process:
            return
        epoch_tensors, epoch_json = epoch_rng.flat("epoch")
        fetch_tensors, fetch_json = fetch_rng.flat("fetch")
        now_tensors, now_json = RngState.capture(generators).flat("current")
        optimizer_tensors, optimizer_json = optimizer_flat(optimizer.state_dict())
        record = {
            "stage": stage,
            "description": description,
            "finished": False,
            "identity": identity,
            "steps": result.steps,
            "best": metrics_record(result.best),
            "best_step": result.best_step,
            "stale": stale,
            "history": result.history,
            "losses": result.losses,
            "optimizer": optimizer_json,
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": {"epoch": epoch_json, "fetch": fetch_json, "current": now_json},
        }
        write_state(
            run.state_dir(stage),
            record,
            _weights(accelerator, model, extras),
            optimizer_tensors,
            best_state,
            {**epoch_tensors, **fetch_tensors, **now_tensors},
        )

    def say(line: str) -> None:  # one process speaks for all of them
        if accelerator.is_main_process:
            bar.write(line)

    bar = tqdm(
        total=total_steps,
        initial=result.steps,
        desc=description,
        disable=not (config.progress and accelerator.is_main_process),
        dynamic_ncols=True,
    )
    if saved is not None:
        bar.write(f"[{description}] resuming at step {result.steps} from {run.state_dir(stage)}")
    elif run is not None and run.resume:
        bar.write(f"[{description}] no saved state in {run.state_dir(stage)}; starting at step 0")
    if run is not None:
        start_trackers(accelerator, config, run, stage)
    done = result.steps >= total_steps or bool(config.patience and stale >= config.patience)
    try:
        while not done:
            skip = (result.steps % epoch_steps) * config.grad_accum if resume_rng else 0
            batches, epoch_rng = _open_epoch(loader, generators, resume_rng, skip)
            resume_rng = None
            micro = skip
            rows: list[dict[str, float]] = []
            examples, started = 0, time.perf_counter()
            while True:
                # the generators as this batch is fetched, for a state saved after its step
                fetch_rng = RngState.capture(generators) if run is not None else None
                batch = next(batches, None)
                if batch is None:
                    break
                if micro % config.grad_accum == 0:
                    group = min(config.grad_accum, epoch_batches - micro)
                    rows, examples = [], 0
                micro += 1
                stepping = micro % config.grad_accum == 0 or micro == epoch_batches
                model.train()
                sync = contextlib.nullcontext() if stepping else accelerator.no_sync(model)
                with sync:
                    with autocast():
                        loss, terms = step(model, batch)
                    part = loss if group == 1 else loss / group
                    accelerator.backward(part if scaler is None else scaler.scale(part))
                rows.append({"loss": float(loss.detach()), **terms})
                examples += batch_rows(batch)
                if not stepping:
                    continue
                if scaler is not None:
                    scaler.unscale_(optimizer)  # clip the true gradients
                if config.max_grad_norm:
                    accelerator.clip_grad_norm_(
                        [p for _, p in named if p.requires_grad], config.max_grad_norm
                    )
                lr = optimizer.param_groups[0]["lr"]
                if scaler is None:
                    optimizer.step()
                else:
                    scaler.step(optimizer)  # skipped when the scaled gradients overflowed
                    scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                result.steps += 1
                logged = over_processes(accelerator, mean_terms(rows))
                result.losses.append({"step": result.steps, **logged})
                if on_step is not None:
                    on_step(result.steps, total_steps, accelerator.unwrap_model(model))
                bar.update(1)
                bar.set_postfix(
                    loss=f"{logged['loss']:.4f}",
                    **({"best": f"{result.best.main:.2f}"} if result.best else {}),
                )
                seconds = max(time.perf_counter() - started, 1e-9)
                figures = {
                    "loss": logged["loss"],
                    **{f"loss/{k}": v for k, v in logged.items() if k != "loss"},
                    "lr": lr,
                    "examples_per_s": examples * accelerator.num_processes / seconds,
                }

                last = result.steps >= total_steps
                if result.steps % eval_every == 0 or last:
                    unwrapped = accelerator.unwrap_model(model)
                    metrics = evaluate(unwrapped)
                    improved = better(metrics, result.best, config.tie_margin)
                    result.history.append(evaluation_row(result.steps, metrics, improved))
                    if improved:
                        result.best, result.best_step, stale = metrics, result.steps, 0
                        best_state = {
                            k: v.detach().to("cpu", copy=True)
                            for k, v in unwrapped.state_dict().items()
                        }
                    else:
                        stale += 1
                    figures.update({f"eval/{k}": v for k, v in metrics.values.items()})
                    figures["eval/improved"] = improved
                    say(f"[{description}] step {result.steps}: {figures_line(metrics, improved)}")
                    if config.patience and stale >= config.patience:
                        say(f"[{description}] early stop: no improvement in {stale} evaluations")
                        done = True
                if run is not None and accelerator.is_main_process:
                    epoch = round(result.steps / epoch_steps, 4)
                    run.log({"stage": stage, "step": result.steps, "epoch": epoch, **figures})
                if config.report_to != "none":
                    accelerator.log(tracker_figures(figures), step=result.steps)
                if "eval/improved" in figures:
                    save_state(epoch_rng, fetch_rng)
                if last or done:
                    done = True
                    break
                started = time.perf_counter()
    finally:
        bar.close()
        if config.report_to != "none":
            accelerator.end_training()
    unwrapped = accelerator.unwrap_model(model)
    if best_state is not None:
        unwrapped.load_state_dict(best_state)
    if run is not None and config.save_state and accelerator.is_main_process:
        _save_finished(run, stage, description, identity, result, accelerator, model, extras,
                       generators)  # fmt: skip
    return result


def _open_epoch(
    loader, generators: list[torch.Generator], resume: dict[str, RngState] | None, skip: int
):
    """An iterator over an epoch's batches from batch `skip` on, and the generators as the epoch
    began (saved with every state, for a later resume within it).

    A resumed epoch draws its batches as they were drawn: its starting generators, the batches
    already trained on passed over, the last of them fetched from the generators as they were
    then (Accelerate collates one batch ahead, and a collator may draw, e.g. MLM masks), then
    the generators as saved."""
    if resume is not None and skip:
        resume["epoch"].restore(generators)
        batches = iter(loader)
        for _ in range(skip - 1):
            next(batches)
        resume["fetch"].restore(generators)
        next(batches)
        resume["current"].restore(generators)
        return batches, resume["epoch"]
    if resume is not None:
        resume["current"].restore(generators)
    return iter(loader), RngState.capture(generators)


def _part(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    start = prefix + "."
    return {k[len(start) :]: v for k, v in tensors.items() if k.startswith(start)}


def _weights(accelerator: Accelerator, model: nn.Module, extras: list[nn.Module]) -> dict:
    """The trained module's and every extra module's state, keyed model.* and extra<i>.*."""
    weights = {f"model.{k}": v for k, v in accelerator.unwrap_model(model).state_dict().items()}
    for i, module in enumerate(extras):
        state = accelerator.unwrap_model(module).state_dict()
        weights.update({f"extra{i}.{k}": v for k, v in state.items()})
    return weights


def _save_finished(
    run: RunFiles,
    stage: str,
    description: str,
    identity: dict,
    result: TrainResult,
    accelerator: Accelerator,
    model: nn.Module,
    extras: list[nn.Module],
    generators: list[torch.Generator],
) -> None:
    """A finished stage's state: the weights it ends with (the best, restored), its result and
    the generators as the next stage finds them; no optimizer."""
    rng_tensors, rng_json = RngState.capture(generators).flat("current")
    record = {
        "stage": stage,
        "description": description,
        "finished": True,
        "identity": identity,
        "steps": result.steps,
        "best": metrics_record(result.best),
        "best_step": result.best_step,
        "history": result.history,
        "losses": result.losses,
        "precision": result.precision,
        "rng": {"current": rng_json},
    }
    write_state(
        run.state_dir(stage), record, _weights(accelerator, model, extras), None, None, rng_tensors
    )


def _restore_finished(
    saved,
    model: nn.Module,
    extra_modules: list[nn.Module],
    generators: list[torch.Generator],
    description: str,
) -> TrainResult:
    """A stage an earlier run finished, as that run left it: weights, result, generators."""
    record = saved.record
    model.load_state_dict(_part(saved.model, "model"))
    for i, module in enumerate(extra_modules):
        module.load_state_dict(_part(saved.model, f"extra{i}"))
    RngState.unflat(saved.rng, "current", record["rng"]["current"]).restore(generators)
    tqdm.write(f"[{description}] finished in an earlier run: {record['steps']} steps, restored")
    return TrainResult(
        best=metrics_from(record["best"]),
        best_step=record["best_step"],
        steps=record["steps"],
        history=record["history"],
        losses=record["losses"],
        precision=record["precision"],
    )
