"""Distillation-aware int8: a trained student fine-tuned for a few hundred steps under simulated
int8 (compress/fake_quant.py: every Linear rounds its input and weight as ONNX Runtime's dynamic
int8 kernels will), the teacher's soft labels as the target:

    loss = alpha · T² · KL(softmax(teacher / T) ‖ softmax(int8 student / T))
           + (1 − alpha) · CE(int8 student, gold)

The saved model is an ordinary fp32 folder; its int8 graph is made and gated as any other's:

    slimbert compress qat --teacher runs/teacher --student runs/kd6 --train train.tsv \\
        --eval dev.tsv --out runs/kd6-qat
    slimbert export --model runs/kd6-qat --eval dev.tsv --out runs/kd6-qat-int8 \\
        --optimize --quantize dynamic

The int8 graph is the dynamic one of today (same ops, same speed); only the weights differ, and
the simulated model computes that graph's logits to float rounding, so every evaluation during
training, and the checkpoint kept, is the int8 model's figure. Why a `compress` step rather than
an export flag: it trains (a teacher, a training file, steps, a learning rate, evaluations,
--resume), which is what `compress` commands take and what `slimbert auto` runs as a child
process; `export` stays the one place a model becomes a validated graph.

slimbert.json records the parent (path, method, metric, weights hash) and the eval figures of
the parent in fp32 and in simulated int8 before tuning, beside the tuned model's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from slimbert.batches import evaluator
from slimbert.compress.fake_quant import Int8Target, attach, detach
from slimbert.compress.method import Job, Method, open_job, student_record
from slimbert.compress.start import retokenized
from slimbert.cpu import int8_weights_saturate
from slimbert.errors import SlimbertError
from slimbert.hub import weights_sha256
from slimbert.models import (
    device,
    load_model_dir,
    model_label_map,
    save_model,
    seed_everything,
    student_architecture,
)
from slimbert.record import ModelRecord
from slimbert.settings import setting
from slimbert.training.config import TrainResult, train_loader
from slimbert.training.logits_cache import teacher_logits
from slimbert.training.loop import train
from slimbert.training.losses import LossTerm, cached_logits_step, hard_loss, kd_loss
from slimbert.training.state import RunFiles


@dataclass
class QATConfig:
    """student: the fp32 model to tune; temperature and alpha: the soft loss, as kd's;
    per_channel and reduce_range: the int8 export the weights are trained for."""

    student: Path | None = setting(
        None,
        "The trained fp32 student to make robust to int8 (a model folder: compress's output or "
        "any transformer classifier reading the teacher's labels). Required.",
    )
    temperature: float = setting(
        2.0, "Softmax temperature T of the soft loss (scaled by T²).", min=0, min_open=True
    )
    alpha: float = setting(
        1.0,
        "Weight of the soft loss (the teacher's labels); 1 − alpha goes to the gold labels.",
        min=0,
        max=1,
    )
    per_channel: bool = setting(
        True,
        "Train for the export's --per-channel int8 weights (one scale per output row), or "
        "--per-tensor (one per weight; under export --optimize ONNX Runtime then gives Q, K "
        "and V one scale together, which this does not simulate).",
        flag="--per-channel/--per-tensor",
    )
    reduce_range: bool = setting(
        help="Train for the export's --reduce-range (7-bit weights) or --full-range (8-bit); "
        "default, as export's: 7-bit on an x86 CPU without VNNI, 8-bit elsewhere.",
        factory=int8_weights_saturate,
        flag="--reduce-range/--full-range",
    )
    simulate_int8: bool = setting(
        True,
        "Train under simulated int8 (the method). --no-simulate-int8 runs the same tuning in "
        "fp32: a control that shows how much of what qat recovers is the int8 awareness and "
        "how much is more distillation from the teacher.",
    )

    def target(self) -> Int8Target:
        return Int8Target(per_channel=self.per_channel, reduce_range=self.reduce_range)


def open_student(config: QATConfig, label_map):
    """The student to tune, its tokenizer and slimbert.json; one line for a folder qat cannot
    tune."""
    if config.student is None:
        raise SlimbertError("compress qat needs --student DIR: the trained fp32 student to tune")
    if not Path(config.student).is_dir():
        raise SlimbertError(f"--student {config.student}: no such directory")
    architecture = student_architecture(config.student)
    if architecture is not None:
        raise SlimbertError(
            f"--student {config.student} is a {architecture} student; qat tunes transformer "
            "classifiers (export a textcnn, bilstm or tree student with --quantize dynamic)"
        )
    student, tokenizer, record = load_model_dir(config.student, flag="--student")
    if model_label_map(student).id2label != label_map.id2label:
        raise SlimbertError(
            f"--student {config.student} predicts labels {model_label_map(student).id2label}, "
            f"the teacher {label_map.id2label}; tune a student of this teacher's task"
        )
    return student, tokenizer, record


def parent_record(config: QATConfig, record: ModelRecord) -> dict:
    return {
        "path": str(config.student),
        "method": record.method,
        "metric": record.metric or None,
        "weights_sha256": weights_sha256(Path(config.student)),
    }


def run(job: Job, qat: QATConfig) -> tuple[TrainResult, dict]:
    """Tune `qat.student` under simulated int8 towards the teacher's cached logits; the best
    checkpoint by the simulated int8 eval metric is saved, in fp32, to job.out."""
    config = job.train
    opening = open_job(job)
    loaded, data = opening.teacher, opening.data
    student, tokenizer, parent = open_student(qat, data.label_map)
    cached = teacher_logits(  # (N, C) on the teacher's tokens, looked up by row index
        loaded.model,
        job.teacher,
        data,
        fingerprint=loaded.fingerprint,
        device=device(config.device),
    )
    del loaded, opening.teacher
    student_data = retokenized(data, tokenizer)
    evaluate = evaluator(student_data)
    before = {"fp32": evaluate(student).values}
    linears = attach(student, qat.target()) if qat.simulate_int8 else {}
    if linears:
        before["int8"] = evaluate(student).values
    seed_everything(config.seed)
    terms = [
        LossTerm("soft", qat.alpha, kd_loss(qat.temperature)),
        LossTerm("hard", 1.0 - qat.alpha, hard_loss),
    ]
    result = train(
        student,
        train_loader(student_data.train_set, config),
        cached_logits_step(terms)(cached),
        evaluate,
        config,
        description="qat",
        run=RunFiles(job.out, config.resume),
    )
    detach(student)  # nothing to undo without --simulate-int8
    record = student_record(
        "qat",
        job,
        opening,
        qat,
        result,
        details={
            "parent": parent_record(qat, parent),
            "int8": {
                "simulated": qat.simulate_int8,
                "target": asdict(qat.target()),
                "linears": len(linears),
                "before": before,
                "after": result.best.values if result.best else {},
            },
        },
        layers=parent.layers,
        first_losses=result.losses[:5],
    )
    return result, save_model(student, tokenizer, job.out, record)


METHOD = Method(
    name="qat",
    config=QATConfig,
    run=run,
    summary="Distillation-aware int8: tune a trained student under simulated int8 towards the "
    "teacher's soft labels, for export --quantize dynamic.",
    stages=("int8 tune",),
    notes=(
        "Use it when export --quantize dynamic loses more than you accept: the int8 graph is "
        "the same (same speed); its weights are trained for the rounding. --student names the "
        "fp32 student; export the output with the int8 flags it was tuned for, e.g. "
        "`slimbert export --model runs/kd6-qat --eval dev.tsv --out runs/kd6-qat-int8 "
        "--optimize --quantize dynamic`."
    ),
    # fp32 steps: under bf16 autocast the simulated int8 products would round again
    train_defaults={"lr": 1e-5, "max_steps": 300, "eval_every": 100, "mixed_precision": "no"},
)
