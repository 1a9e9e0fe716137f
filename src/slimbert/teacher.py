"""Fine-tune a base checkpoint into the teacher every student learns from."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from slimbert.compress.losses import LossTerm, combine, hard_loss
from slimbert.compress.outputs import forward
from slimbert.compress.trainer import TrainConfig, TrainResult, train
from slimbert.evaluate import make_loader
from slimbert.models import (
    load_classifier,
    load_tokenizer,
    resolve_base,
    save_model,
    seed_everything,
)
from slimbert.task import DataSpec, evaluator, prepare


def train_teacher(base: str, spec: DataSpec, out: Path, config: TrainConfig) -> tuple[TrainResult, dict]:
    """Fine-tune `base` (a directory or a bundled name) on spec.train; keep the best on spec.eval."""
    base_dir = resolve_base(base)
    tokenizer = load_tokenizer(base_dir)
    data = prepare(spec, tokenizer)
    seed_everything(config.seed)
    model = load_classifier(base_dir, data.label_map, data.task)
    terms = [LossTerm("hard", 1.0, hard_loss)]

    def step(model, batch):
        return combine(terms, forward(model, batch), None, batch)

    loader = make_loader(data.train_set, config.batch_size, shuffle=True, seed=config.seed)
    result = train(model, loader, step, evaluator(data), config, description="teacher")
    metadata = {
        "role": "teacher",
        "method": "teacher",
        "base": str(base),
        "base_dir": str(base_dir),
        "data": data.describe(),
        "metric": result.best.values if result.best else {},
        "metric_name": result.best.name if result.best else None,
        "best_step": result.best_step,
        "steps": result.steps,
        "train_config": asdict(config),
        "history": result.history,
    }
    save_model(model, tokenizer, out, metadata)
    return result, metadata
