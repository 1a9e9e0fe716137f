"""BERT-of-Theseus: progressive module replacement (Xu et al. 2020).

The frozen predecessor (the teacher) is cut into as many modules as the successor (the student)
has layers (`compress.students.split_modules`). At every training step each module is,
independently and with probability p, replaced by its successor layer; the successor learns on
the task loss alone, inside a network whose other parts are still the teacher's:

    6-layer teacher, 3-layer student, one training step with draws (successor, teacher, successor):

    embeddings ─► [prd 0-1]   [prd 2-3] ─► [prd 4-5]   ─► pooler ─► classifier ─► CE(gold)
                      ╳           │            ╳
                  [scc 0] ──────►─┘        [scc 2] ──►                (╳: replaced this step)

    uneven split, 6 → 4 (module i ends at the teacher layer `pick_layers` keeps for kd):
        [0] [1 2] [3] [4 5]

    stage 1  module replacing: p constant, or the curriculum p(t) = min(1, k·t + b), t = step
             (k left unset reaches p = 1 on the stage's last step); only successor layers train,
             the embeddings, pooler and classifier stay the teacher's, frozen
    stage 2  successor fine-tuning: the student alone, every weight trainable, on the task loss,
             until the eval metric stops improving (--patience evaluations) or --finetune-epochs

In evaluation mode the hybrid runs the successor layers only, so every evaluation scores the
student that will be saved. Successor layer i starts as a copy of the top layer of module i
(the layers kd keeps) or, with --init first, of teacher layer i as in the paper's code.

Each layer of a family is called with the same arguments whichever module runs it, so the hybrid
works for every family in `slimbert.families` whose layers are separate modules; ModernBERT's
teacher layers keep their own attention kind (global or sliding window) inside the hybrid, and
successor layer i has the kind of layer i. ALBERT shares one layer across its depth and is
refused.

The paper's main comparison, the teacher's first k layers fine-tuned on the labels without a
teacher, is `compress kd --layers k --layer-map bottom --alpha 0` (recipes/kd-first-layers.yaml):
the same start as `--init first`, the same task loss, no replacing stage.

Reference: Xu et al., "BERT-of-Theseus: Compressing BERT by Progressive Module Replacing",
EMNLP 2020.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from slimbert.batches import evaluator
from slimbert.compress.method import Job, Method, open_job, stage_record, student_record
from slimbert.compress.students import StudentShape, build_student, split_modules
from slimbert.errors import SlimbertError
from slimbert.families import family_of
from slimbert.models import device, save_model, seed_everything
from slimbert.record import ModelRecord
from slimbert.settings import setting
from slimbert.training.config import TrainConfig, TrainResult, planned_steps, train_loader
from slimbert.training.loop import train
from slimbert.training.losses import LossTerm, combine, hard_loss
from slimbert.training.outputs import forward
from slimbert.training.state import RunFiles

INITS = ("module-top", "first")


@dataclass
class TheseusConfig:
    """Stage 1 replaces modules with probability p (constant, or p(t) = min(1, k·t + b)) for
    --epochs; stage 2 fine-tunes the successor alone; --max-steps caps both."""

    layers: int = setting(3, "Successor depth; the teacher is split into this many modules.", min=1)
    replace_rate: float = setting(
        0.5,
        "Replacement probability p (constant) or its start b (linear).",
        min=0,
        max=1,
        min_open=True,
    )
    schedule: str = setting(
        "constant",
        "constant: p = --replace-rate at every step (the paper's main runs, p = 0.5); linear: "
        "the curriculum p(t) = min(1, k·t + b), b = --replace-rate, few modules replaced early "
        "and all of them by the end of the stage.",
        choices=("constant", "linear"),
    )
    linear_k: float | None = setting(
        None,
        "k of the linear curriculum (default: reach p = 1 on the last replacing step).",
        min=0,
        min_open=True,
    )
    finetune_epochs: float = setting(
        10.0,
        "Most epochs of successor-only fine-tuning; it stops when the metric stops improving "
        "(--patience).",
        min=0,
        min_open=True,
    )
    init: str = setting(
        "module-top",
        "Successor layer i copies the top layer of module i, or teacher layer i.",
        choices=INITS,
    )

    def __post_init__(self) -> None:
        if not 0.0 < self.replace_rate <= 1.0:
            raise SlimbertError(f"--replace-rate {self.replace_rate}: give a probability in (0, 1]")
        if self.schedule not in ("constant", "linear"):
            raise SlimbertError(f"--schedule {self.schedule!r}: give 'constant' or 'linear'")
        if self.init not in INITS:
            raise SlimbertError(f"--init {self.init!r}: give one of {', '.join(INITS)}")

    @classmethod
    def curriculum(cls, layers: int = 3) -> TheseusConfig:
        """The paper's curriculum replacement: b = 0.3, rising linearly to 1 over stage 1."""
        return cls(layers=layers, replace_rate=0.3, schedule="linear")


@dataclass
class ReplacementSchedule:
    """p(t) = min(1, k·t + b); k = 0 is the constant schedule p(t) = b."""

    base: float
    k: float = 0.0

    @classmethod
    def from_config(cls, config: TheseusConfig, total_steps: int) -> ReplacementSchedule:
        if config.schedule == "constant":
            return cls(config.replace_rate)
        k = (
            config.linear_k
            if config.linear_k is not None
            else (1.0 - config.replace_rate) / max(1, total_steps - 1)
        )
        return cls(config.replace_rate, k)

    def at(self, step: int) -> float:
        return min(1.0, self.k * step + self.base)


class ReplaceableModule(nn.Module):
    """One predecessor module (frozen teacher layers) and the successor layer that replaces it.

    Called like the layer it stands for (BertLayer, DistilBERT's TransformerBlock, ...):
    (hidden_states (B, T, H), mask, ...) → (hidden_states, ...).
    In training it runs the successor when `use_successor` is True, the predecessor otherwise;
    in evaluation it always runs the successor.
    """

    def __init__(self, predecessor: list[nn.Module], successor: nn.Module):
        super().__init__()
        self.predecessor = nn.ModuleList(predecessor)
        self.successor = successor
        self.use_successor = True

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        if not self.training or self.use_successor:
            return self.successor(hidden_states, *args, **kwargs)
        outputs = None
        for layer in self.predecessor:
            outputs = layer(hidden_states, *args, **kwargs)
            # transformers 4 layers return a tuple, transformers 5 layers the tensor itself
            hidden_states = outputs[0] if isinstance(outputs, tuple) else outputs  # (B, T, H)
        return outputs


def hybrid_encoder(
    student: nn.Module, teacher: nn.Module, modules: list[list[int]]
) -> nn.ModuleList:
    """The student's encoder layer list swapped for ReplaceableModules; the original list is
    returned.

    The teacher's layers are frozen. Put the returned list back with `restore_encoder`.
    """
    family = family_of(student.config)
    successors = family.layer_list(student)
    teacher_layers = family.layer_list(teacher)
    for layer in teacher_layers:
        layer.requires_grad_(False)
    family.set_layer_list(
        student,
        nn.ModuleList(
            ReplaceableModule([teacher_layers[k] for k in module], successors[i])
            for i, module in enumerate(modules)
        ),
    )
    return successors


def restore_encoder(student: nn.Module, successors: nn.ModuleList) -> None:
    family_of(student.config).set_layer_list(student, successors)


def check_replaceable(teacher: nn.Module) -> None:
    """Refuse a family without one module per layer to replace (ALBERT shares one layer)."""
    family = family_of(teacher.config)
    if family.shared_layers:
        raise SlimbertError(
            f"compress theseus: {family.name} runs one shared layer at every depth, so there are "
            "no per-layer modules to replace; use compress kd, tinybert or minilm, which run the "
            "shared layer fewer times"
        )
    # transformers 5's ModernBERT hands each layer the mask and rotary table of its own
    # attention type (global or sliding window), read off the layer; a module standing in for a
    # group that mixes both types cannot take both.
    kinds = {getattr(layer, "attention_type", None) for layer in family.layer_list(teacher)}
    if len(kinds) > 1:
        raise SlimbertError(
            f"compress theseus: {family.name} alternates {' and '.join(sorted(map(str, kinds)))} "
            "layers, each fed its own mask by the model, so one module cannot stand in for a "
            "group of them; use compress kd, tinybert or minilm"
        )


def set_draws(hybrid: nn.ModuleList, p: float, generator: torch.Generator) -> list[bool]:
    """Draw, for every module, whether its successor runs this step (probability p each)."""
    draws = (torch.rand(len(hybrid), generator=generator) < p).tolist()
    for module, use_successor in zip(hybrid, draws, strict=True):
        module.use_successor = use_successor
    return draws


def task_terms() -> list[LossTerm]:
    return [LossTerm("task", 1.0, hard_loss)]


def _build_successor(
    teacher: nn.Module, theseus: TheseusConfig, seed: int
) -> tuple[nn.Module, list[list[int]], list[int]]:
    """The successor, layer i copied from the top of teacher module i or from teacher layer i
    (`theseus.init`). Returns it, the teacher's modules and the teacher layers it copied."""
    check_replaceable(teacher)
    teacher_layers = family_of(teacher.config).size(teacher.config, "depth")
    modules = split_modules(teacher_layers, theseus.layers)
    init_layers = (
        [module[-1] for module in modules]
        if theseus.init == "module-top"
        else list(range(theseus.layers))
    )
    seed_everything(seed)
    student, _ = build_student(teacher, StudentShape(theseus.layers), init_layers, seed=None)
    return student, modules, init_layers


def _replace_modules(
    student: nn.Module,
    teacher: nn.Module,
    modules: list[list[int]],
    schedule: ReplacementSchedule,
    loader,
    evaluate,
    config: TrainConfig,
    run: RunFiles,
) -> TrainResult:
    """Stage 1: the successor layers train inside the hybrid, each module replaced with
    probability p(t); the encoder is the student's own again when it returns."""
    # The student's embeddings, pooler and classifier are the teacher's (copied) and frozen.
    student.requires_grad_(False)
    successors = hybrid_encoder(student, teacher, modules)
    successors.requires_grad_(True)
    hybrid = family_of(student.config).layer_list(student)
    generator = torch.Generator().manual_seed(config.seed)
    terms = task_terms()
    counter = {"step": 0}

    def replacing_step(model, batch):
        p = schedule.at(counter["step"])
        draws = set_draws(hybrid, p, generator)
        loss, logged = combine(terms, forward(model, batch), None, batch)
        if not any(draws):
            # Every module was the frozen teacher's, so nothing trainable ran. A zero-weighted tie
            # to the successors gives them zero gradients, which backward and fp16's grad scaler
            # need (AdamW's momentum still moves them a little on such a step).
            loss = loss + 0.0 * sum(w.sum() for w in successors.parameters())
        return loss, {**logged, "p": p, "replaced": float(sum(draws))}

    def count(done: int, total: int, model) -> None:
        counter["step"] = done  # optimiser steps, whatever --grad-accum; set again on --resume

    teacher.to(device(config.device))  # the predecessor layers run inside the hybrid
    replacing = train(
        student,
        loader,
        replacing_step,
        evaluate,
        config,
        description=f"theseus-{len(modules)}L-replace",
        on_step=count,
        run=run,
        rngs=[generator],
    )
    restore_encoder(student, successors)
    teacher.to("cpu")
    return replacing


def _finetune_successor(
    student: nn.Module,
    loader,
    evaluate,
    theseus: TheseusConfig,
    config: TrainConfig,
    run: RunFiles,
) -> TrainResult:
    """Stage 2: the successor alone, every weight trainable, on the task loss for at most
    `theseus.finetune_epochs`."""
    student.requires_grad_(True)
    terms = task_terms()

    def finetune_step(model, batch):
        return combine(terms, forward(model, batch), None, batch)

    return train(
        student,
        loader,
        finetune_step,
        evaluate,
        dataclasses.replace(config, epochs=theseus.finetune_epochs),
        description=f"theseus-{theseus.layers}L-finetune",
        run=run,
    )


def run(job: Job, theseus: TheseusConfig) -> tuple[TrainResult, ModelRecord]:
    """Module replacing, then successor-only fine-tuning; the teacher may be an ensemble, whose
    best member is the predecessor."""
    config = job.train
    opening = open_job(job)
    teacher, tokenizer, data = opening.teacher.layers, opening.teacher.tokenizer, opening.data
    evaluate = evaluator(data)
    del opening.teacher
    student, modules, init_layers = _build_successor(teacher, theseus, config.seed)
    loader = train_loader(data.train_set, config)
    total_steps = planned_steps(config, len(loader))
    schedule = ReplacementSchedule.from_config(theseus, total_steps)
    run = RunFiles(job.out, config.resume)
    replacing = _replace_modules(student, teacher, modules, schedule, loader, evaluate, config, run)
    result = _finetune_successor(student, loader, evaluate, theseus, config, run)
    stages = {"replace": stage_record(replacing), "finetune": stage_record(result)}
    details = {
        "modules": modules,
        "schedule": {"base": schedule.base, "k": schedule.k, "total_steps": total_steps},
    }
    record = student_record(
        "theseus", job, opening, theseus, result, details, stages, layer_map=init_layers
    )
    return result, save_model(student, tokenizer, job.out, record)


METHOD = Method(
    name="theseus",
    config=TheseusConfig,
    run=run,
    summary="BERT-of-Theseus: progressive module replacement, then successor-only fine-tuning.",
    stages=("replace", "finetune"),
    notes=(
        "Constant p or the curriculum p(t): --schedule. The paper's baseline, the teacher's first "
        "k layers fine-tuned on the labels alone, is `slimbert compress kd --layers k "
        "--layer-map bottom --alpha 0` (recipes/kd-first-layers.yaml); compare it with "
        "`--init first`, which starts the successor from those same layers."
    ),
)
