"""What a training step and an evaluation leave in the log and the state: a step's terms averaged
over its batches and over the processes, an evaluation's history row and log line, the metrics
as the saved state keeps them, and how many processes train together."""

from __future__ import annotations

import os
from dataclasses import asdict

import torch
from accelerate import Accelerator

from slimbert.metrics import Metrics


def batch_rows(batch) -> int:
    """How many examples a collated batch holds."""
    values = batch.values() if isinstance(batch, dict) else batch
    first = next((v for v in values if isinstance(v, torch.Tensor)), None)
    return int(first.shape[0]) if first is not None else 0


def metrics_record(metrics: Metrics | None) -> dict | None:
    return None if metrics is None else asdict(metrics)


def metrics_from(record: dict | None) -> Metrics | None:
    return None if record is None else Metrics(**record)


def mean_terms(rows: list[dict[str, float]]) -> dict[str, float]:
    """Each term's mean over the batches of one optimiser step (the row itself for one)."""
    if len(rows) == 1:
        return rows[0]
    names = dict.fromkeys(k for row in rows for k in row)  # in order, a term some batches lack
    return {k: sum(r[k] for r in rows if k in r) / sum(k in r for r in rows) for k in names}


def world_size() -> int:
    """How many processes train together, as the launcher (torchrun, accelerate launch) says,
    read before the Accelerator exists: creating Accelerate's state here would fix it before
    the loop's Accelerator chooses its device."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def over_processes(accelerator: Accelerator, logged: dict[str, float]) -> dict[str, float]:
    """A step's logged terms as the mean over every process's batches (as the gradient is)."""
    if accelerator.num_processes == 1:
        return logged
    names = list(logged)
    values = torch.tensor([logged[n] for n in names], device=accelerator.device)
    return dict(zip(names, accelerator.reduce(values, "mean").tolist(), strict=True))


def evaluation_row(step: int, metrics: Metrics, improved: bool) -> dict:
    """One evaluation as TrainResult.history keeps it."""
    degenerate = {"degenerate": metrics.degenerate} if metrics.degenerate else {}
    return {"step": step, **metrics.values, "improved": improved, **degenerate}


def figures_line(metrics: Metrics, improved: bool) -> str:
    """'accuracy 89.20, f1 89.50 *': an evaluation as the log line shows it."""
    return (
        ", ".join(f"{k} {v:.2f}" for k, v in metrics.values.items())
        + (f" (degenerate: {metrics.degenerate})" if metrics.degenerate else "")
        + (" *" if improved else "")
    )
