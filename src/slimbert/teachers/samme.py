"""The SAMME arithmetic of PS-Boosting (teachers/boost.py) and how sample weights reach a
member's training: as per-example loss weights, by weighted resampling, or as one weighted bag
whose left-out rows score the member."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, SubsetRandomSampler, WeightedRandomSampler

from slimbert.batches import EncodedDataset, LengthGroupedBatches, collate
from slimbert.training.config import TrainConfig, train_loader
from slimbert.training.losses import TermFn
from slimbert.training.outputs import Outputs


@dataclass(frozen=True)
class SammeStep:
    """One SAMME update: the member's weighted error, its vote and the next sample weights (n,)."""

    error: float
    alpha: float
    weights: np.ndarray
    chance: bool  # err ≥ 1 − 1/K: no better than guessing; the member is dropped
    perfect: bool  # no training errors: nothing left to reweight


def samme_step(
    weights: np.ndarray,
    miss: np.ndarray,
    num_classes: int,
    shrinkage: float = 1.0,
    scored: np.ndarray | None = None,
) -> SammeStep:
    """SAMME's update for sample weights (n,) given which examples (n,) the member got wrong.

    err = Σ w·miss / Σ w over the `scored` rows (n,) bool, every row when None (clipped below at
    half an example, 0.5 / the scored rows), α = ν(log((1 − err)/err) + log(K − 1)),
    w ← w · exp(α · miss) on every row, renormalised. A chance-level member leaves the weights
    unchanged.
    """
    weights = np.asarray(weights, dtype=np.float64)
    miss = np.asarray(miss, dtype=bool)
    if weights.shape != miss.shape or weights.ndim != 1:
        raise ValueError(
            f"weights {weights.shape} and miss {miss.shape} must be the same 1-D shape"
        )
    if num_classes < 2:
        raise ValueError("SAMME needs at least two classes")
    scored = np.ones_like(miss) if scored is None else np.asarray(scored, dtype=bool)
    if scored.shape != miss.shape or not scored.any():
        raise ValueError(f"scored {scored.shape} must be a 1-D mask like miss with a row set")
    total = weights.sum()
    raw_error = float((weights * miss * scored).sum() / (weights * scored).sum())
    floor = 0.5 / int(scored.sum())
    error = max(raw_error, floor)
    alpha = shrinkage * (math.log((1.0 - error) / error) + math.log(num_classes - 1))
    if error >= 1.0 - 1.0 / num_classes:
        return SammeStep(raw_error, alpha, weights / total, chance=True, perfect=False)
    updated = weights * np.exp(alpha * miss)
    return SammeStep(
        raw_error, alpha, updated / updated.sum(), chance=False, perfect=not miss.any()
    )


def weighted_hard_loss(sample_weights: torch.Tensor) -> TermFn:
    """Cross-entropy of each example times n · w_i (B,), mean over the batch.

    n · w has mean 1 over the training set, so uniform weights give plain fine-tuning's loss.
    """
    scaled = sample_weights.float() * len(sample_weights)  # (N,)

    def term(
        student: Outputs, teacher: Outputs | None, batch: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        weight = scaled[batch["idx"].cpu()].to(student.logits.device)  # (B,)
        per_example = F.cross_entropy(student.logits, batch["labels"], reduction="none")  # (B,)
        return (weight * per_example).mean()

    return term


def draw_bag(weights: np.ndarray, seed: int) -> np.ndarray:
    """n row indices (n,) drawn with replacement in proportion to the weights (n,): one member's
    training bag; the rows never drawn are its out-of-bag rows."""
    weights = np.asarray(weights, dtype=np.float64)
    rng = np.random.default_rng(seed)
    return rng.choice(len(weights), size=len(weights), replace=True, p=weights / weights.sum())


def weighted_loader(
    dataset: EncodedDataset,
    weights: np.ndarray,
    weighting: str,
    config: TrainConfig,
    bag: np.ndarray | None = None,
) -> DataLoader:
    """A member's training batches: plain shuffled batches when the weights go into the loss
    ("loss"); batches drawn with replacement in proportion to the weights, anew every epoch
    ("resample"); or every epoch the same `bag` of row indices (draw_bag), shuffled ("bag").
    With config.group_by_length the drawn rows are batched with rows of similar length
    (LengthGroupedBatches), as plain training is."""
    if weighting == "loss":
        return train_loader(dataset, config)
    if weighting == "bag" and bag is None:
        raise ValueError('weighting "bag" needs the bag of row indices (draw_bag)')
    generator = torch.Generator().manual_seed(config.seed)
    collate_fn = lambda items: collate(items, dataset.pad_id)  # noqa: E731
    if config.group_by_length:
        batches = LengthGroupedBatches(
            [len(f["input_ids"]) for f in dataset.features],
            config.batch_size,
            generator,
            pool=bag.tolist() if weighting == "bag" else None,
            weights=np.asarray(weights, dtype=np.float64).tolist() if weighting != "bag" else None,
        )
        return DataLoader(dataset, batch_sampler=batches, collate_fn=collate_fn)
    if weighting == "bag":
        sampler = SubsetRandomSampler(bag.tolist(), generator=generator)
    else:
        sampler = WeightedRandomSampler(
            torch.as_tensor(weights, dtype=torch.double),
            num_samples=len(dataset),
            replacement=True,
            generator=generator,
        )
    return DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, collate_fn=collate_fn)
