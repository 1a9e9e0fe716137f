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
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from slimbert.metrics import Metrics
from slimbert.training.checkpoint import (
    Progress,
    Stage,
    open_epoch,
    restore_finished,
    resume_running,
    save_finished,
    save_running,
)
from slimbert.training.config import (
    SAME_RUN,
    TrainConfig,
    TrainResult,
    better,
    planned_steps,
    steps_per_epoch,
)
from slimbert.training.prepare import Prepared, prepare
from slimbert.training.records import (
    batch_rows,
    evaluation_row,
    figures_line,
    mean_terms,
    over_processes,
    world_size,
)
from slimbert.training.state import (
    RngState,
    RunFiles,
    SavedState,
    check_same_run,
    loader_generators,
    read_state,
    stage_key,
)
from slimbert.training.tracking import start_trackers, tracker_figures

StepFn = Callable[[nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]
EvalFn = Callable[[nn.Module], Metrics]
OnStepFn = Callable[
    [int, int, nn.Module], None
]  # (step, total_steps, unwrapped model) after each optimiser step


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
    key = stage_key(description)
    saved = None
    if run is not None:
        run.start()
        saved = read_state(run.state_dir(key)) if run.resume else None
    # this process's batches in an epoch: Accelerate deals the loader's batches out over the
    # processes (`torchrun --nproc_per_node N`, `accelerate launch --num_processes N`), each
    # getting ceil(n / N); an optimiser step takes one (or --grad-accum) from every process
    batches_per_epoch = max(1, math.ceil(len(loader) / world_size()))
    total_steps = planned_steps(config, batches_per_epoch)
    identity = {
        **{k: getattr(config, k) for k in SAME_RUN},
        "batches_per_epoch": batches_per_epoch,
        "total_steps": total_steps,
    }
    if saved is not None:
        check_same_run(saved.record["identity"], identity, run.state_dir(key))
        if saved.record["finished"]:
            generators = [*loader_generators(loader), *(rngs or [])]
            return restore_finished(saved, model, extra_modules, generators, description)

    prepared, autocast = prepare(model, loader, config, run, extra_modules, extra_lrs, total_steps)
    loop = _Loop(
        stage=Stage(description, key, identity),
        prepared=prepared,
        autocast=autocast,
        step=step,
        evaluate=evaluate,
        on_step=on_step,
        config=config,
        run=run,
        generators=[*loader_generators(loader, prepared.loader), *(rngs or [])],
        total_steps=total_steps,
        eval_every=config.eval_every or steps_per_epoch(config, batches_per_epoch),
    )
    resume_rng = loop.resume(saved) if saved is not None else None
    loop.run_epochs(resume_rng)
    return loop.finish()


@dataclass
class _Loop:
    """One `train` call from the step it starts (or resumes) at to its last: the optimiser
    steps, the evaluations that keep the best weights, early stop, the log and the saved
    states."""

    stage: Stage
    prepared: Prepared
    autocast: Callable
    step: StepFn
    evaluate: EvalFn
    on_step: OnStepFn | None
    config: TrainConfig
    run: RunFiles | None
    generators: list[torch.Generator]  # saved and restored with every state
    total_steps: int
    eval_every: int
    progress: Progress = field(init=False)
    epoch_batches: int = field(init=False)  # this process's share of an epoch
    epoch_steps: int = field(init=False)
    bar: tqdm = field(init=False)

    def __post_init__(self) -> None:
        result = TrainResult(best=None, best_step=0, steps=0, precision=self.prepared.precision)
        self.progress = Progress(result)
        self.epoch_batches = max(1, len(self.prepared.loader))
        self.epoch_steps = math.ceil(self.epoch_batches / self.config.grad_accum)

    def resume(self, saved: SavedState) -> dict[str, RngState]:
        """Continue an interrupted stage from its saved state; the generators it saved."""
        self.progress, resume_rng = resume_running(saved, self.prepared)
        self.run.truncate_log(self.stage.key, self.progress.result.steps)
        if self.on_step is not None:
            self.on_step(self.progress.result.steps, self.total_steps, self._unwrapped())
        return resume_rng

    def run_epochs(self, resume_rng: dict[str, RngState] | None) -> None:
        """Epoch after epoch until the last step or early stop, under one progress bar."""
        config, result, run = self.config, self.progress.result, self.run
        accelerator, description = self.prepared.accelerator, self.stage.description
        self.bar = tqdm(
            total=self.total_steps,
            initial=result.steps,
            desc=description,
            disable=not (config.progress and accelerator.is_main_process),
            dynamic_ncols=True,
        )
        where = run.state_dir(self.stage.key) if run is not None else None
        if resume_rng is not None:
            self.bar.write(f"[{description}] resuming at step {result.steps} from {where}")
        elif run is not None and run.resume:
            self.bar.write(f"[{description}] no saved state in {where}; starting at step 0")
            run.truncate_log(self.stage.key, 0)  # rows of a start that saved no state
        if run is not None:
            start_trackers(accelerator, config, run, self.stage.key)
        done = result.steps >= self.total_steps or self._patience_spent()
        try:
            while not done:
                skip = (result.steps % self.epoch_steps) * config.grad_accum if resume_rng else 0
                loader = self.prepared.loader
                batches, epoch_rng = open_epoch(loader, self.generators, resume_rng, skip)
                resume_rng = None
                done = self._epoch(batches, epoch_rng, skip)
        finally:
            self.bar.close()
            if config.report_to != "none":
                accelerator.end_training()

    def finish(self) -> TrainResult:
        """Leave the best weights in the model and save the finished stage's state."""
        progress, accelerator = self.progress, self.prepared.accelerator
        if progress.best_state is not None:
            self._unwrapped().load_state_dict(progress.best_state)
        if self.run is not None and self.config.save_state and accelerator.is_main_process:
            save_finished(self.run, self.stage, progress.result, self.prepared, self.generators)
        return progress.result

    def _epoch(self, batches, epoch_rng: RngState, micro: int) -> bool:
        """Train on an epoch's batches from batch `micro` on; whether training is done (its
        last step taken, or stopped early)."""
        config, result = self.config, self.progress.result
        rows: list[dict[str, float]] = []
        examples, started = 0, time.perf_counter()
        while True:
            # the generators as this batch is fetched, for a state saved after its step
            fetch_rng = RngState.capture(self.generators) if self.run is not None else None
            batch = next(batches, None)
            if batch is None:
                return False
            if micro % config.grad_accum == 0:
                group = min(config.grad_accum, self.epoch_batches - micro)
                rows, examples = [], 0
            micro += 1
            stepping = micro % config.grad_accum == 0 or micro == self.epoch_batches
            rows.append(self._forward_backward(batch, group, stepping))
            examples += batch_rows(batch)
            if not stepping:
                continue
            lr = self._optimizer_step()
            figures = self._step_figures(rows, examples, lr, started)
            last = result.steps >= self.total_steps
            stop = False
            if result.steps % self.eval_every == 0 or last:
                stop = self._evaluate(figures)
            self._log(figures)
            if "eval/improved" in figures:
                self._save_state(epoch_rng, fetch_rng)
            if last or stop:
                return True
            started = time.perf_counter()

    def _forward_backward(self, batch: dict, group: int, stepping: bool) -> dict[str, float]:
        """One batch's loss and its gradients, as a share of the mean over the `group` batches
        of one optimiser step; the loss and each term, unweighted, for the log."""
        prepared = self.prepared
        accelerator, model, scaler = prepared.accelerator, prepared.model, prepared.scaler
        model.train()
        sync = contextlib.nullcontext() if stepping else accelerator.no_sync(model)
        with sync:
            with self.autocast():
                loss, terms = self.step(model, batch)
            part = loss if group == 1 else loss / group
            accelerator.backward(part if scaler is None else scaler.scale(part))
        return {"loss": float(loss.detach()), **terms}

    def _optimizer_step(self) -> float:
        """Clip, step the optimiser and the schedule, count the step; the learning rate used."""
        prepared, config = self.prepared, self.config
        optimizer, scaler = prepared.optimizer, prepared.scaler
        if scaler is not None:
            scaler.unscale_(optimizer)  # clip the true gradients
        if config.max_grad_norm:
            prepared.accelerator.clip_grad_norm_(
                [p for _, p in prepared.named if p.requires_grad], config.max_grad_norm
            )
        lr = optimizer.param_groups[0]["lr"]
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)  # skipped when the scaled gradients overflowed
            scaler.update()
        prepared.scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        self.progress.result.steps += 1
        return lr

    def _step_figures(
        self, rows: list[dict[str, float]], examples: int, lr: float, started: float
    ) -> dict:
        """Record the step's losses (averaged over its batches and the processes), call on_step,
        move the bar; the step's figures for the log and the trackers."""
        result, accelerator = self.progress.result, self.prepared.accelerator
        logged = over_processes(accelerator, mean_terms(rows))
        result.losses.append({"step": result.steps, **logged})
        if self.on_step is not None:
            self.on_step(result.steps, self.total_steps, self._unwrapped())
        self.bar.update(1)
        self.bar.set_postfix(
            loss=f"{logged['loss']:.4f}",
            **({"best": f"{result.best.main:.2f}"} if result.best else {}),
        )
        seconds = max(time.perf_counter() - started, 1e-9)
        return {
            "loss": logged["loss"],
            **{f"loss/{k}": v for k, v in logged.items() if k != "loss"},
            "lr": lr,
            "examples_per_s": examples * accelerator.num_processes / seconds,
        }

    def _evaluate(self, figures: dict) -> bool:
        """Evaluate, keep the weights when they are the best so far and add the metrics to
        `figures`; whether early stop ends training."""
        progress, config = self.progress, self.config
        result, description = progress.result, self.stage.description
        unwrapped = self._unwrapped()
        metrics = self.evaluate(unwrapped)
        improved = better(metrics, result.best, config.tie_margin)
        result.history.append(evaluation_row(result.steps, metrics, improved))
        if improved:
            result.best, result.best_step, progress.stale = metrics, result.steps, 0
            progress.best_state = {
                k: v.detach().to("cpu", copy=True) for k, v in unwrapped.state_dict().items()
            }
        else:
            progress.stale += 1
        figures.update({f"eval/{k}": v for k, v in metrics.values.items()})
        figures["eval/improved"] = improved
        self._say(f"[{description}] step {result.steps}: {figures_line(metrics, improved)}")
        if self._patience_spent():
            self._say(f"[{description}] early stop: no improvement in {progress.stale} evaluations")
            return True
        return False

    def _log(self, figures: dict) -> None:
        """The step's row of train_log.jsonl and its figures to the tracker."""
        steps, accelerator = self.progress.result.steps, self.prepared.accelerator
        if self.run is not None and accelerator.is_main_process:
            epoch = round(steps / self.epoch_steps, 4)
            self.run.log({"stage": self.stage.key, "step": steps, "epoch": epoch, **figures})
        if self.config.report_to != "none":
            accelerator.log(tracker_figures(figures), step=steps)

    def _save_state(self, epoch_rng: RngState, fetch_rng: RngState) -> None:
        run, config = self.run, self.config
        if run is None or not config.save_state or not self.prepared.accelerator.is_main_process:
            return
        save_running(
            run, self.stage, self.prepared, self.progress, self.generators, epoch_rng, fetch_rng
        )

    def _patience_spent(self) -> bool:
        return bool(self.config.patience and self.progress.stale >= self.config.patience)

    def _unwrapped(self) -> nn.Module:
        return self.prepared.accelerator.unwrap_model(self.prepared.model)

    def _say(self, line: str) -> None:  # one process speaks for all of them
        if self.prepared.accelerator.is_main_process:
            self.bar.write(line)
