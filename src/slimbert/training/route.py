"""Route-constrained distillation (RCO): learn from the teacher's own checkpoints, easy to hard.

`train-teacher --save-route K` keeps K checkpoints at evenly spaced steps of the teacher's
training (never the last step: the final teacher is the end of the route). `--teacher-route DIR`
then splits a method's step budget S into K + 1 stages and distils from each checkpoint in
order, the final teacher last:

    step  0 ─────────── S/(K+1) ─────────── 2S/(K+1) ─── … ───────────── S
          │ route/step-a    │ route/step-b       │             │ teacher  │
          └─ soft targets of the early, easy checkpoint ... the final one ┘

Each stage is one `train` call (fresh optimiser and warm-up, the best weights on the eval set
carried into the next stage); route stages never stop early, the final stage keeps --patience.

Reference: Jin et al., "Knowledge Distillation via Route Constrained Optimization" (ICCV 2019).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from slimbert.errors import SlimbertError
from slimbert.files import CONFIG_FILE
from slimbert.models import device, load_model_dir
from slimbert.training import logits_cache
from slimbert.training.config import TrainConfig, planned_steps
from slimbert.training.loop import train
from slimbert.training.state import RunFiles

ROUTE_DIR = "route"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def route_steps(total_steps: int, keep: int) -> list[int]:
    """The K steps a teacher's route keeps: ⌊i · S / (K + 1)⌋ for i = 1 … K, all before step S.

    S=100, K=3 → [25, 50, 75]        S=10, K=4 → [2, 4, 6, 8]
    """
    if keep < 1:
        return []
    if total_steps < keep + 1:
        raise SlimbertError(
            f"--save-route {keep}: the teacher trains for only {total_steps} steps; "
            f"keep at most {total_steps - 1} checkpoints or train longer"
        )
    return [(i * total_steps) // (keep + 1) for i in range(1, keep + 1)]


def step_dir_name(step: int) -> str:
    return f"step-{step}"


def route_checkpoints(path: str | Path) -> list[Path]:
    """Checkpoint directories of a route, in training order. `path` is the route directory
    (OUT/route) or the teacher directory holding it."""
    path = Path(path)
    if (path / ROUTE_DIR).is_dir():
        path = path / ROUTE_DIR
    if not path.is_dir():
        raise SlimbertError(
            f"--teacher-route {path}: no such directory; "
            "give the route/ folder written by `train-teacher --save-route K`"
        )
    found = []
    for child in path.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / CONFIG_FILE).is_file():
            found.append((int(match.group(1)), child))
    if not found:
        raise SlimbertError(
            f"--teacher-route {path}: no step-N checkpoints in it; "
            "train the teacher with `train-teacher --save-route K`"
        )
    return [child for _, child in sorted(found)]


def split_budget(total_steps: int, stages: int) -> list[int]:
    """Steps per stage: equal shares, the remainder to the last (final-teacher) stage."""
    if total_steps < stages:
        raise SlimbertError(
            f"--teacher-route: {stages} stages need at least {stages} steps "
            f"but the budget is {total_steps}; raise --epochs or --max-steps"
        )
    share = total_steps // stages
    return [share] * (stages - 1) + [total_steps - share * (stages - 1)]


@dataclass(frozen=True)
class Stage:
    """One leg of the route: whose soft targets, for how many steps, under which settings."""

    name: str  # "route/step-N" or "teacher"
    teacher_dir: Path
    config: TrainConfig
    final: bool


def plan(
    route: str | Path | None, teacher_dir: Path, config: TrainConfig, steps_per_epoch: int
) -> list[Stage]:
    """Stages to train through: the route's checkpoints then the teacher, or the teacher alone."""
    if route is None:
        return [Stage("teacher", Path(teacher_dir), config, final=True)]
    checkpoints = route_checkpoints(route)
    budget = split_budget(planned_steps(config, steps_per_epoch), len(checkpoints) + 1)
    stages = [
        Stage(
            f"{ROUTE_DIR}/{checkpoint.name}",
            checkpoint,
            dataclasses.replace(config, max_steps=steps, patience=0),
            final=False,
        )
        for checkpoint, steps in zip(checkpoints, budget[:-1], strict=True)
    ]
    stages.append(
        Stage(
            "teacher",
            Path(teacher_dir),
            dataclasses.replace(config, max_steps=budget[-1]),
            final=True,
        )
    )
    return stages


def check_compatible(checkpoint: torch.nn.Module, teacher: torch.nn.Module, path: Path) -> None:
    """A route checkpoint must read the same token ids and predict the same labels as the
    teacher."""
    ours, theirs = (
        checkpoint.get_input_embeddings().weight.shape[0],
        teacher.get_input_embeddings().weight.shape[0],
    )
    if ours != theirs or dict(checkpoint.config.id2label) != dict(teacher.config.id2label):
        raise SlimbertError(
            f"--teacher-route {path}: this checkpoint has {ours} tokens and labels "
            f"{dict(checkpoint.config.id2label)}, "
            f"the teacher {theirs} and {dict(teacher.config.id2label)}; "
            "give the route saved by the same train-teacher run"
        )


def route_logits(
    stage: Stage, teacher: torch.nn.Module, data, device: torch.device | None = None
) -> torch.Tensor:
    """The stage's checkpoint's logits on the training set (N, C), through the on-disk cache,
    computed on `device` (default: where the checkpoint loads)."""
    checkpoint, _, _ = load_model_dir(stage.teacher_dir)
    check_compatible(checkpoint, teacher, stage.teacher_dir)
    return logits_cache.teacher_logits(checkpoint, stage.teacher_dir, data, device=device)


def soft_targets(
    route: str | Path | None,
    teacher_dir: Path,
    teacher: torch.nn.Module,
    data,
    cached: torch.Tensor,
    config: TrainConfig,
    steps_per_epoch: int,
) -> list[tuple[Stage, torch.Tensor]]:
    """Each stage with the soft targets (N, C) it distils from: the route's checkpoints' logits,
    then the teacher's `cached` ones. Without a route, one stage: the teacher's, whole budget."""
    stages = plan(route, Path(teacher_dir), config, steps_per_epoch)
    on = device(config.device)
    return [
        (stage, cached if stage.final else route_logits(stage, teacher, data, on))
        for stage in stages
    ]


def train_stages(
    student: torch.nn.Module,
    loader,
    stages: list[tuple[Stage, torch.Tensor]],
    step_for,
    evaluate,
    description: str,
    run: RunFiles | None = None,
) -> list:
    """Train through the stages in order; `step_for(targets)` builds a stage's step function.
    Returns every stage's TrainResult; the last is the final teacher's."""
    return [
        train(
            student,
            loader,
            step_for(targets),
            evaluate,
            stage.config,
            description=description + ("" if stage.final else f" {stage.name}"),
            run=run,
        )
        for stage, targets in stages
    ]


def describe(stages: list[Stage], results: list) -> list[dict]:
    """One metadata row per stage: whose targets, planned and run steps, best eval figures."""
    return [
        {
            "stage": stage.name,
            "teacher": str(stage.teacher_dir),
            "max_steps": stage.config.max_steps,
            "steps": result.steps,
            "best_step": result.best_step,
            "metric": result.best.values if result.best else {},
            "first_losses": result.losses[:3],
        }
        for stage, result in zip(stages, results, strict=True)
    ]
