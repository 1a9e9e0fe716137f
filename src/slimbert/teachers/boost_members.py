"""PS-Boosting's member training (teachers/boost.py weighs the members into a professor): one
round fine-tunes a fresh copy of the base on the current sample weights (or reuses an already
fine-tuned first member), scores it on the training rows (or on the rows left out of its bag)
and on the eval set, and takes SAMME's update (teachers/samme.py). A member no better than
chance, or one answering a single class everywhere, is fine-tuned again with the next seed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slimbert.batches import TaskData, evaluator, make_loader, predict_logits
from slimbert.data import LabelMap
from slimbert.errors import SlimbertError
from slimbert.metrics import Metrics, compute_metrics
from slimbert.models import device, load_classifier, seed_everything
from slimbert.teachers.samme import (
    SammeStep,
    draw_bag,
    samme_step,
    weighted_hard_loss,
    weighted_loader,
)
from slimbert.training.config import TrainConfig
from slimbert.training.loop import train
from slimbert.training.losses import LossTerm, combine, hard_loss
from slimbert.training.outputs import forward
from slimbert.training.state import RunFiles


@dataclass
class Member:
    """One fine-tune of a round: the member, the settings it trained with, SAMME's update from
    its training answers, its eval logits and metrics, and the round's record for slimbert.json."""

    model: nn.Module
    config: TrainConfig
    reused: bool  # the given first member, not trained here
    update: SammeStep
    eval_logits: np.ndarray  # (N_eval, C)
    metrics: Metrics
    degenerate: str | None  # "predicts only X on ..." for a member answering one class
    record: dict

    @property
    def failed(self) -> bool:
        """No better than chance, or degenerate: not kept."""
        return self.update.chance or self.degenerate is not None


@dataclass
class MemberTraining:
    """What every round of one boosting shares: the base, the data, the settings, the run's
    files and, when given, the already fine-tuned first member and its folder."""

    base_dir: Path
    data: TaskData
    config: TrainConfig
    weighting: str
    shrinkage: float
    rounds: int
    run: RunFiles  # each member's state, so --resume restores those done
    first: nn.Module | None = None
    first_dir: Path | None = None
    targets: np.ndarray = field(init=False)  # (N,)
    train_batches: object = field(init=False)
    eval_loader: object = field(init=False)
    device: torch.device = field(init=False)

    def __post_init__(self) -> None:
        self.targets = np.asarray(self.data.train_set.labels)
        self.train_batches = make_loader(self.data.train_set, 64, shuffle=False)
        self.eval_loader = make_loader(self.data.eval_set, 64, shuffle=False)
        self.device = device(self.config.device)

    def fit_round(
        self, m: int, weights: np.ndarray, member_dir: Path, retries: int, rounds: list[dict]
    ) -> Member:
        """Round `m`'s member, fine-tuned again with the next seed while it is chance-level or
        degenerate, up to `retries` times; each attempt retried is recorded in `rounds`."""
        attempt = 0
        member = self.fit(m, attempt, weights, member_dir)
        while member.failed and not member.reused and attempt < retries:
            rounds.append({**member.record, "kept": False, "retried": True})
            attempt += 1
            member = self.fit(m, attempt, weights, member_dir)
        return member

    def fit(self, m: int, attempt: int, weights: np.ndarray, member_dir: Path) -> Member:
        """One attempt at round `m` on the sample weights (N,): the member trained (or the first
        member reused), scored, and SAMME's update from its answers."""
        data, n = self.data, len(self.targets)
        # a chance-level or degenerate fine-tune is tried again with the next seeds
        # (100 apart per try)
        member_config = replace(self.config, seed=self.config.seed + m + 100 * attempt)
        reused = m == 0 and self.first is not None and attempt == 0
        # "bag": the rows this member never sees score it (None: every row does)
        bag = draw_bag(weights, member_config.seed) if self.weighting == "bag" else None
        scored = None
        if bag is not None:
            scored = np.ones(n, dtype=bool)
            scored[bag] = False
            if not scored.any():
                raise SlimbertError(
                    f"professor boost round {m + 1}: its bag drew every one of the "
                    f"{n} training rows, none is left out to score it; use --weighting "
                    "resample on so small a training set"
                )
        if reused:
            member = self.first
            shutil.copytree(self.first_dir, member_dir)
        else:
            retry = f" retry {attempt}" if attempt else ""
            description = f"boost {m + 1}/{self.rounds}{retry}"
            member = train_member(
                self.base_dir,
                data,
                weights,
                self.weighting,
                member_config,
                description=description,
                run=self.run,
                bag=bag,
            )
        member.to(self.device)
        train_pred = predict_logits(member, self.train_batches, self.device).argmax(axis=-1)  # (N,)
        member_eval = predict_logits(member, self.eval_loader, self.device)  # (N_eval, C)
        miss = train_pred != self.targets
        update = samme_step(weights, miss, data.label_map.num_labels, self.shrinkage, scored)
        metrics = compute_metrics(
            member_eval, data.eval_targets, data.task, data.label_map, data.scoring
        )
        degenerate = degenerate_reason(train_pred, metrics.degenerate, data.label_map)
        record = {
            "round": m,
            "attempt": attempt,
            "member": member_dir.name,
            "trained": not reused,
            "seed": None if reused else member_config.seed,
            "weighted_error": update.error,
            "alpha": update.alpha,
            "train_errors": int(miss.sum()),
            **(
                {
                    "out_of_bag_rows": int(scored.sum()),
                    "out_of_bag_errors": int((miss & scored).sum()),
                }
                if scored is not None
                else {}
            ),
            "largest_weight_x_n": float(weights.max() * n),  # the weights this member trained on
            "eval": metrics.values,
            "eval_main": metrics.main,
            **({"degenerate": degenerate} if degenerate else {}),
        }
        return Member(
            member, member_config, reused, update, member_eval, metrics, degenerate, record
        )


def train_member(
    base_dir: Path,
    data: TaskData,
    weights: np.ndarray,
    weighting: str,
    config: TrainConfig,
    description: str,
    run: RunFiles,
    bag: np.ndarray | None = None,
) -> nn.Module:
    """A fresh copy of the base fine-tuned on the sample weights (N,): in its loss, its sampling
    or its bag, as `weighting` says."""
    seed_everything(config.seed)
    member = load_classifier(base_dir, data.label_map, data.task)
    if weighting == "loss":
        terms = [LossTerm("weighted_hard", 1.0, weighted_hard_loss(torch.as_tensor(weights)))]
    else:
        terms = [LossTerm("hard", 1.0, hard_loss)]

    def step(model, batch):
        return combine(terms, forward(model, batch), None, batch)

    train(
        member,
        weighted_loader(data.train_set, weights, weighting, config, bag),
        step,
        evaluator(data),
        config,
        description=description,
        run=run,
    )
    return member


def degenerate_reason(
    train_pred: np.ndarray, eval_degenerate: str | None, label_map: LabelMap
) -> str | None:
    """ "predicts only X on the training set" (or on the eval set) for a member that answers
    one class everywhere there, else None."""
    if len(train_pred) > 1 and np.all(train_pred == train_pred[0]):
        return f"predicts only {label_map.id2label[int(train_pred[0])]} on the training set"
    if eval_degenerate:
        return f"{eval_degenerate} on the eval set"
    return None
