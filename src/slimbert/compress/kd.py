"""Hinton logit distillation into a DistilBERT-style student built from the teacher's layers.

    loss = alpha · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 − alpha) · CE(student, gold)

(regression: MSE to the teacher's output in place of the soft term, MSE to the gold score in
place of CE). The student keeps `layers` of the teacher's layers chosen by `pick_layers`, plus
the teacher's embeddings and classifier. Teacher logits on the training set come from the cache.

References: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015);
Sanh et al., "DistilBERT" (2019), for initialising the student from the teacher's layers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from slimbert.compress.losses import LossTerm, combine, hard_loss, kd_loss
from slimbert.compress.outputs import Outputs, forward
from slimbert.compress.trainer import TrainConfig, TrainResult, train
from slimbert.evaluate import make_loader
from slimbert.models import (
    load_model_dir,
    make_student,
    model_label_map,
    model_task,
    pick_layers,
    save_model,
    seed_everything,
)
from slimbert.task import DataSpec, evaluator, prepare, teacher_logits


@dataclass
class KDConfig:
    """temperature: softens both distributions; alpha: weight of the soft term (1 − alpha on the
    hard labels); layers: student depth."""

    layers: int = 3
    temperature: float = 2.0
    alpha: float = 0.5


def loss_terms(config: KDConfig) -> list[LossTerm]:
    return [
        LossTerm("soft", config.alpha, kd_loss(config.temperature)),
        LossTerm("hard", 1.0 - config.alpha, hard_loss),
    ]


def run(teacher_dir: Path, spec: DataSpec, out: Path, kd: KDConfig, config: TrainConfig) -> tuple[TrainResult, dict]:
    teacher, tokenizer, teacher_meta = load_model_dir(teacher_dir)
    task = model_task(teacher)
    data = prepare(spec, tokenizer, label_map=model_label_map(teacher), task=task)
    cached = teacher_logits(teacher, teacher_dir, data)  # (N, C)
    teacher_metrics = evaluator(data)(teacher)
    seed_everything(config.seed)
    layers = pick_layers(teacher.config.num_hidden_layers, kd.layers)
    student = make_student(teacher, kd.layers, layers)
    del teacher
    terms = loss_terms(kd)

    def step(model, batch):
        student_out = forward(model, batch)
        teacher_out = Outputs(logits=cached[batch["idx"].cpu()].to(student_out.logits.device), attention_mask=batch["attention_mask"])
        return combine(terms, student_out, teacher_out, batch)

    loader = make_loader(data.train_set, config.batch_size, shuffle=True, seed=config.seed)
    result = train(student, loader, step, evaluator(data), config, description=f"kd-{kd.layers}L")
    metadata = {
        "role": "student",
        "method": "kd",
        "teacher": str(teacher_dir),
        "teacher_metric": teacher_metrics.values,
        "layer_map": layers,
        "kd_config": asdict(kd),
        "data": data.describe(),
        "metric": result.best.values if result.best else {},
        "metric_name": result.best.name if result.best else None,
        "best_step": result.best_step,
        "steps": result.steps,
        "train_config": asdict(config),
        "history": result.history,
        "first_losses": result.losses[:5],
        "teacher_meta": {k: teacher_meta.get(k) for k in ("method", "base", "metric")},
    }
    save_model(student, tokenizer, out, metadata)
    return result, metadata
