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

from slimbert.batches import DataSpec, prepare
from slimbert.compress.students import make_student, pick_layers
from slimbert.metrics import evaluator
from slimbert.models import model_label_map, model_task, save_model, seed_everything
from slimbert.teachers.load import load_teacher
from slimbert.teachers.logits import teacher_logits
from slimbert.training.loop import TrainConfig, TrainResult, train_loader, training_record
from slimbert.training.losses import LossTerm, cached_logits_step, hard_loss, kd_loss
from slimbert.training.route import describe as describe_route
from slimbert.training.route import soft_targets, train_stages


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


def run(
    teacher_dir: Path,
    spec: DataSpec,
    out: Path,
    kd: KDConfig,
    config: TrainConfig,
    student_init: Path | None = None,
    route: Path | None = None,
) -> tuple[TrainResult, dict]:
    """`teacher_dir` may be a professor ensemble: its logits teach, its best member gives the
    student's layers. `student_init` (from pretrain-student) replaces the student's embeddings
    and encoder before training. `route` (train-teacher --save-route) splits the step budget
    over the teacher's checkpoints, easy to hard, before the teacher itself (compress/route.py)."""
    loaded = load_teacher(teacher_dir)
    teacher, tokenizer, teacher_meta = loaded.layers, loaded.tokenizer, loaded.metadata
    task = model_task(teacher)
    data = prepare(spec, tokenizer, label_map=model_label_map(teacher), task=task)
    cached = teacher_logits(
        loaded.model, teacher_dir, data, fingerprint=loaded.fingerprint
    )  # (N, C)
    teacher_metrics = evaluator(data)(loaded.model)
    seed_everything(config.seed)
    layers = pick_layers(teacher.config.num_hidden_layers, kd.layers)
    student = make_student(teacher, kd.layers, layers)
    init = None
    if student_init is not None:
        from slimbert.compress.pretrain import init_student

        init = init_student(student, student_init)
    loader = train_loader(data.train_set, config)
    stages = soft_targets(
        route, Path(teacher_dir), teacher, data, cached, config, len(loader)
    )  # (stage, (N, C) logits)
    del teacher, loaded
    terms = loss_terms(kd)

    results = train_stages(
        student, loader, stages, cached_logits_step(terms), evaluator(data), f"kd-{kd.layers}L"
    )
    result = results[-1]
    metadata = {
        "role": "student",
        "method": "kd",
        "teacher": str(teacher_dir),
        "teacher_metric": teacher_metrics.values,
        "layer_map": layers,
        "kd_config": asdict(kd),
        **training_record(result, config, data),
        "steps": sum(r.steps for r in results),
        "first_losses": results[0].losses[:5],
        "route": describe_route([stage for stage, _ in stages], results)
        if route is not None
        else None,
        "teacher_meta": {k: teacher_meta.get(k) for k in ("method", "base", "metric")},
        "student_init": init,
    }
    save_model(student, tokenizer, out, metadata)
    return result, metadata
