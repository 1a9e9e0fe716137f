"""What the loop saves of a stage and restores from it: the weights of the model and its extra
modules, AdamW's moments, the schedule, the gradient scaler, the best weights so far, the
evaluations since them and the generators — and, for a finished stage, the weights it ends with
and its result (training/state.py writes and reads the files).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from slimbert.training.config import TrainResult
from slimbert.training.prepare import Prepared
from slimbert.training.records import metrics_from, metrics_record
from slimbert.training.state import (
    RngState,
    RunFiles,
    SavedState,
    optimizer_flat,
    optimizer_unflat,
    write_state,
)


@dataclass
class Stage:
    """One `train` call's names and the settings a resumed run must share with it."""

    description: str  # as the progress bar and the messages show it
    key: str  # its folder under training-state/ (state.stage_key)
    identity: dict  # config.SAME_RUN's settings and the step counts

    def record(self, finished: bool) -> dict:
        return {
            "stage": self.key,
            "description": self.description,
            "finished": finished,
            "identity": self.identity,
        }


@dataclass
class Progress:
    """How far a stage has come: its result so far, the best weights and the evaluations since
    them (early stop counts these)."""

    result: TrainResult
    best_state: dict[str, torch.Tensor] | None = None
    stale: int = 0


def part(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors keyed `prefix`.*, without the prefix."""
    start = prefix + "."
    return {k[len(start) :]: v for k, v in tensors.items() if k.startswith(start)}


def save_running(
    run: RunFiles,
    stage: Stage,
    prepared: Prepared,
    progress: Progress,
    generators: list[torch.Generator],
    epoch_rng: RngState,
    fetch_rng: RngState,
) -> None:
    """The state a `--resume` continues from: everything the next step reads, and the generators
    as the epoch began and as the last batch was fetched (to draw the epoch's batches again)."""
    epoch_tensors, epoch_json = epoch_rng.flat("epoch")
    fetch_tensors, fetch_json = fetch_rng.flat("fetch")
    now_tensors, now_json = RngState.capture(generators).flat("current")
    optimizer_tensors, optimizer_json = optimizer_flat(prepared.optimizer.state_dict())
    result, scaler = progress.result, prepared.scaler
    record = {
        **stage.record(finished=False),
        "steps": result.steps,
        "best": metrics_record(result.best),
        "best_step": result.best_step,
        "stale": progress.stale,
        "history": result.history,
        "losses": result.losses,
        "optimizer": optimizer_json,
        "scheduler": prepared.scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": {"epoch": epoch_json, "fetch": fetch_json, "current": now_json},
    }
    write_state(
        run.state_dir(stage.key),
        record,
        prepared.weights(),
        optimizer_tensors,
        progress.best_state,
        {**epoch_tensors, **fetch_tensors, **now_tensors},
    )


def resume_running(saved: SavedState, prepared: Prepared) -> tuple[Progress, dict[str, RngState]]:
    """Load an interrupted stage's state into `prepared`: its progress, and the generators as
    its epoch began ("epoch"), as its last batch was fetched ("fetch") and as saved ("current")."""
    record, unwrap = saved.record, prepared.accelerator.unwrap_model
    unwrap(prepared.model).load_state_dict(part(saved.model, "model"))
    for i, module in enumerate(prepared.extras):
        unwrap(module).load_state_dict(part(saved.model, f"extra{i}"))
    prepared.optimizer.load_state_dict(optimizer_unflat(saved.optimizer, record["optimizer"]))
    prepared.scheduler.load_state_dict(record["scheduler"])
    if prepared.scaler is not None and record.get("scaler"):
        prepared.scaler.load_state_dict(record["scaler"])
    result = TrainResult(
        best=metrics_from(record["best"]),
        best_step=record["best_step"],
        steps=record["steps"],
        history=record["history"],
        losses=record["losses"],
        precision=prepared.precision,
    )
    rngs = {
        name: RngState.unflat(saved.rng, name, record["rng"][name])
        for name in ("epoch", "fetch", "current")
    }
    return Progress(result, saved.best, record["stale"]), rngs


def save_finished(
    run: RunFiles,
    stage: Stage,
    result: TrainResult,
    prepared: Prepared,
    generators: list[torch.Generator],
) -> None:
    """A finished stage's state: the weights it ends with (the best, restored), its result and
    the generators as the next stage finds them; no optimizer."""
    rng_tensors, rng_json = RngState.capture(generators).flat("current")
    record = {
        **stage.record(finished=True),
        "steps": result.steps,
        "best": metrics_record(result.best),
        "best_step": result.best_step,
        "history": result.history,
        "losses": result.losses,
        "precision": result.precision,
        "rng": {"current": rng_json},
    }
    write_state(run.state_dir(stage.key), record, prepared.weights(), None, None, rng_tensors)


def restore_finished(
    saved: SavedState,
    model: nn.Module,
    extra_modules: list[nn.Module],
    generators: list[torch.Generator],
    description: str,
) -> TrainResult:
    """A stage an earlier run finished, as that run left it: weights, result, generators."""
    record = saved.record
    model.load_state_dict(part(saved.model, "model"))
    for i, module in enumerate(extra_modules):
        module.load_state_dict(part(saved.model, f"extra{i}"))
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


def open_epoch(
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
