"""Fine-tune a base checkpoint into the teacher every student learns from."""

from __future__ import annotations

import copy
import os
from dataclasses import replace
from pathlib import Path

from slimbert.batches import DataSpec, evaluator, prepare
from slimbert.files import atomic_dir
from slimbert.models import (
    load_classifier,
    load_tokenizer,
    resolve_base,
    save_model,
    seed_everything,
)
from slimbert.record import ModelRecord
from slimbert.training.config import (
    TrainConfig,
    TrainResult,
    planned_steps,
    train_loader,
    training_record,
)
from slimbert.training.loop import train
from slimbert.training.losses import LossTerm, combine, hard_loss
from slimbert.training.outputs import forward
from slimbert.training.route import ROUTE_DIR, route_steps, step_dir_name
from slimbert.training.state import RunFiles

ROUTE_STATE = "teacher-route"


def train_teacher(
    base: str, spec: DataSpec, out: Path, config: TrainConfig, save_route: int = 0
) -> tuple[TrainResult, ModelRecord]:
    """Fine-tune `base` (a directory or a bundled name) on spec.train; keep the best on spec.eval.

    save_route K > 0 also keeps K checkpoints at evenly spaced steps (`route_steps`) as HF
    directories under out/route/step-N, for route-constrained distillation (`--teacher-route`).
    """
    base_dir = resolve_base(base)
    tokenizer = load_tokenizer(base_dir)
    data = prepare(spec, tokenizer)
    seed_everything(config.seed)
    model = load_classifier(base_dir, data.label_map, data.task)
    terms = [LossTerm("hard", 1.0, hard_loss)]

    def step(model, batch):
        return combine(terms, forward(model, batch), None, batch)

    loader = train_loader(data.train_set, config)
    keep = route_steps(planned_steps(config, len(loader)), save_route)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    run = RunFiles(out, config.resume)
    # the route's checkpoints wait in the training state, so a --resume keeps those it saved
    route = run.state_dir(ROUTE_STATE) if keep else None

    def keep_checkpoint(done: int, total: int, trained) -> None:
        if route is not None and done in keep:
            # a CPU copy: save_model moves what it saves to the CPU, and training goes on
            record = ModelRecord(
                role="route",
                method="teacher",
                base=str(base),
                step=done,
                total_steps=total,
                data=data.describe(),
            )
            save_model(
                copy.deepcopy(trained).to("cpu"), tokenizer, route / step_dir_name(done), record
            )

    result = train(
        model,
        loader,
        step,
        evaluator(data),
        config,
        description="teacher",
        on_step=keep_checkpoint if keep else None,
        run=run,
    )
    return _save_teacher(model, tokenizer, out, base, base_dir, data, result, config, route)


def _save_teacher(
    model,
    tokenizer,
    out: Path,
    base: str,
    base_dir: Path,
    data,
    result: TrainResult,
    config: TrainConfig,
    route: Path | None,
) -> tuple[TrainResult, ModelRecord]:
    record = ModelRecord(
        role="teacher",
        method="teacher",
        base=str(base),
        base_dir=str(base_dir),
        **training_record(result, config, data),
    )
    if route is None:
        return result, save_model(model, tokenizer, out, record)
    # training may stop early, before every planned checkpoint was reached
    route.mkdir(parents=True, exist_ok=True)
    kept = sorted(route.iterdir(), key=lambda p: int(p.name.split("-")[1]))
    record = replace(record, details={"route": [f"{ROUTE_DIR}/{p.name}" for p in kept]})
    with atomic_dir(out) as staging:
        record = save_model(model, tokenizer, staging, record)
        os.replace(route, staging / ROUTE_DIR)
    return result, record
