"""The real work behind each kind of experiment cell, as plain callables (tests swap in fakes
that count calls). Each returns the JSON-ready figures its cell stores."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from slimbert.batches import DataSpec
from slimbert.bench.config import BenchConfig
from slimbert.bench.run import bench
from slimbert.compress.method import Job
from slimbert.compress.pretrain import PretrainConfig, pretrain_student
from slimbert.compress.registry import get_method
from slimbert.data import Columns
from slimbert.experiment.recipe import BenchSettings
from slimbert.teachers.boost import BoostConfig, boost
from slimbert.teachers.pair_augment import PairAugmentConfig, augment_pairs
from slimbert.teachers.train import train_teacher
from slimbert.training.config import TrainConfig


def teacher_stage(
    base: str, spec: DataSpec, out: Path, config: TrainConfig, save_route: int = 0
) -> dict:
    result, record = train_teacher(base, spec, out, config, save_route=save_route)
    return {
        "dir": str(out),
        "metric": record.metric,
        "metric_name": record.metric_name,
        "best_step": result.best_step,
        "steps": result.steps,
    }


def boost_stage(
    base: str,
    spec: DataSpec,
    out: Path,
    settings: BoostConfig,
    first_member: Path | None,
    config: TrainConfig,
) -> dict:
    record = boost(
        base,
        spec,
        out,
        replace(settings, first_member=first_member),
        config,
    )
    keys = ("round", "seed", "weighted_error", "alpha", "train_errors", "eval_main", "kept")
    rounds = [
        {k: r.get(k) for k in keys}
        # why a round was not kept, where that applies
        | {
            k: r[k]
            for k in ("degenerate", "retried", "out_of_bag_rows", "out_of_bag_errors")
            if k in r
        }
        for r in record.details["rounds"]
    ]
    return {
        "dir": str(out),
        "metric": record.metric,
        "metric_name": record.metric_name,
        "members": record.members,
        "stopped": record.details["stopped"],
        "rounds": rounds,
    }


def augment_stage(
    spec: DataSpec, out: Path, config: PairAugmentConfig, teacher: Path | None
) -> dict:
    report = augment_pairs(spec, out, config, teacher=teacher)
    return {"file": str(out), "report": report.to_dict()}


def pretrain_stage(
    teacher: Path,
    texts: list[Path],
    out: Path,
    settings: PretrainConfig,
    config: TrainConfig,
    spec: DataSpec,
) -> dict:
    result, record = pretrain_student(
        teacher, texts, out, settings, config, spec.columns, spec.limit, spec.sample_seed
    )
    return {
        "dir": str(out),
        "mlm_loss_before": record.details["mlm_loss_before"],
        "metric": record.metric,
        "best_step": result.best_step,
        "steps": result.steps,
    }


def distil_stage(
    method: str, teacher: Path, spec: DataSpec, out: Path, settings: Any, config: TrainConfig
) -> dict:
    """One student by the registered `method`, with its settings (depth and init already set)."""
    result, record = get_method(method).run(Job((teacher,), spec, out, config), settings)
    return {
        "dir": str(out),
        "metric": record.metric,
        "metric_name": record.metric_name,
        "teacher_metric": record.teacher_metric,
        "best_step": result.best_step,
        "steps": result.steps,
    }


def bench_stage(
    model: Path, eval_path: Path, out: Path, columns: Columns, settings: BenchSettings
) -> dict:
    config = BenchConfig(
        provider=settings.provider,
        batch_sizes=[1],
        threads=settings.threads,
        warmup=settings.warmup,
        limit=settings.limit,
        isolate=True,
        runtimes=(settings.runtime,),
        repeats=settings.repeats,
        peak=False,
    )
    report = bench([model], eval_path, out, columns, config)
    rows = [r for r in report.rows if r.runtime == settings.runtime]
    return {"row": asdict(rows[0]), "environment": report.environment}


@dataclass
class Stages:
    """The work behind each kind of cell, as plain callables."""

    train_teacher: Callable[..., dict] = teacher_stage
    boost: Callable[..., dict] = boost_stage
    augment: Callable[..., dict] = augment_stage
    pretrain: Callable[..., dict] = pretrain_stage
    distil: Callable[..., dict] = distil_stage
    bench: Callable[..., dict] = bench_stage
