"""`slimbert experiment RECIPE.yaml`: teacher → professor → student, as a resumable matrix.

One recipe runs four ways of teaching each student depth, over several seeds:

    TS            teacher ──kd──▶ student (layers copied from the teacher)
    PS-Boosting   teacher + K−1 boosted rounds = ensemble professor ──kd──▶ student
    PS-DA         professor fine-tuned on pairs augmented by symmetry / transitivity ──kd──▶ student
    PS-DA*        as PS-DA, but the student is first masked-LM pre-trained on the task's text

and writes the table the source reports, F1 as mean ± sample std over the seeds:

    | Model | Requests | Total ms | Avg ms | TS-F1 | PS-Boosting-F1 | PS-DA-F1 | PS-DA*-F1 | vs Teacher |

The teacher row holds the teacher's F1 under TS and each professor's under its column; "vs
Teacher" is the row's best mean minus the teacher's F1, naming the column. Latency is timed
once per architecture (a student of each depth, and the teacher), one request per dev example.

Every unit of work is a *cell*: its result is a JSON file under `<out>/cells/` holding a key
of everything it depends on (data hashes, settings, upstream cells' keys). A rerun reads back
every cell whose key still matches and whose model is still on disk, so an interrupted run
continues where it stopped, and a changed setting recomputes exactly the cells that depend on it.

Students are trained on the original training set with one step budget whatever their teacher
(../shared/BENCHMARKS.md: compare students at the same data and budget); `da_student_data:
augmented` distils PS-DA students on the augmented pairs instead.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from slimbert.batches import DataSpec
from slimbert.compress.pretrain import PretrainConfig
from slimbert.data import Columns
from slimbert.errors import SlimbertError
from slimbert.files import sha256_file, write_json_atomic, write_text_atomic
from slimbert.teachers.pair_augment import PairAugmentConfig
from slimbert.training.loop import TrainConfig

METHODS = ("TS", "PS-Boosting", "PS-DA", "PS-DA*")
SLUGS = {"TS": "ts", "PS-Boosting": "ps-boosting", "PS-DA": "ps-da", "PS-DA*": "ps-da-star"}
RUNTIMES = ("pytorch", "onnx")


@dataclass
class KDSettings:
    """Hinton distillation for every student: temperature T and the soft term's weight."""

    temperature: float = 2.0
    alpha: float = 0.5


@dataclass
class BoostSettings:
    """rounds: K members at most; shrinkage: ν on every α; weighting: loss or resample;
    reuse_teacher: the TS teacher is round 1 (it was trained on uniform weights) instead of
    fine-tuning another copy; combine: logits or probabilities (see professor.boost)."""

    rounds: int = 3
    shrinkage: float = 1.0
    weighting: str = "loss"
    reuse_teacher: bool = True
    combine: str = "logits"


@dataclass
class PretrainSettings:
    """mlm_probability, holdout: as pretrain-student's; texts: extra unlabelled files beside
    the task's training text."""

    mlm_probability: float = 0.15
    holdout: float = 0.05
    texts: list[Path] = field(default_factory=list)


@dataclass
class BenchSettings:
    """Latency protocol: runtime (pytorch or onnx), provider, intra-op threads (None = all
    cores), uncounted warm-up requests, timed passes, and only the first `limit` dev rows."""

    runtime: str = "pytorch"
    provider: str = "cpu"
    threads: int | None = None
    warmup: int = 20
    repeats: int = 3
    limit: int | None = None


def _default_student() -> TrainConfig:
    return TrainConfig(epochs=10.0, lr=1e-4, patience=3)


def _default_pretrain() -> TrainConfig:
    return TrainConfig(epochs=10.0, lr=1e-4, patience=3)


@dataclass
class ExperimentConfig:
    """One recipe. Keys map one-to-one onto these fields; nested sections onto their dataclasses.

    train, eval:      the task's files (paths relative to where the command runs)
    out:              the experiment folder (cells, models, tables); --out overrides
    base:             checkpoint every teacher and professor is fine-tuned from
    *_column, no_header, max_length, limit, sample_seed: as the training commands' flags
    depths:           student depths (layers picked from the teacher by pick_layers)
    seeds:            one student per seed, method and depth
    methods:          which of TS, PS-Boosting, PS-DA, PS-DA* to run (the teacher always is)
    da_student_data:  "original" (default, same data for every student) or "augmented"
    teacher:          TrainConfig of the teacher, the boosted members and the PS-DA professor
    teacher_route:    K > 0 keeps K checkpoints along the teacher's training under
                      models/teacher/route (train-teacher --save-route), for route-constrained
                      distillation from the same teacher (compress kd --teacher-route)
    student:          TrainConfig of every student (its seed is replaced by each of `seeds`)
    kd, boost, augment, pretrain: the methods' settings
    pretrain_train:   TrainConfig of masked-LM pre-training
    bench:            latency protocol
    """

    train: Path
    eval: Path
    out: Path = Path("runs/experiment")
    base: str = "minilm-l6"
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    no_header: bool = False
    max_length: int = 128
    limit: int | None = None
    sample_seed: int | None = None
    depths: list[int] = field(default_factory=lambda: [3, 2, 1])
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    da_student_data: str = "original"
    teacher: TrainConfig = field(default_factory=TrainConfig)
    teacher_route: int = 0
    student: TrainConfig = field(default_factory=_default_student)
    kd: KDSettings = field(default_factory=KDSettings)
    boost: BoostSettings = field(default_factory=BoostSettings)
    augment: PairAugmentConfig = field(default_factory=PairAugmentConfig)
    pretrain: PretrainSettings = field(default_factory=PretrainSettings)
    pretrain_train: TrainConfig = field(default_factory=_default_pretrain)
    bench: BenchSettings = field(default_factory=BenchSettings)

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise SlimbertError(f"methods {self.methods}: choose from {', '.join(METHODS)}")
        if (
            not self.depths
            or any(d < 1 for d in self.depths)
            or len(set(self.depths)) != len(self.depths)
        ):
            raise SlimbertError(
                f"depths {self.depths}: give distinct student depths ≥ 1, e.g. [3, 2, 1]"
            )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise SlimbertError(f"seeds {self.seeds}: give at least one seed, each once")
        if self.da_student_data not in ("original", "augmented"):
            raise SlimbertError(
                f"da_student_data {self.da_student_data!r}: choose original or augmented"
            )
        if self.teacher_route < 0:
            raise SlimbertError(
                f"teacher_route {self.teacher_route}: give the number of checkpoints to keep, 0 for none"
            )
        if self.bench.runtime not in RUNTIMES:
            raise SlimbertError(
                f"bench.runtime {self.bench.runtime!r}: choose {' or '.join(RUNTIMES)}"
            )

    @property
    def columns(self) -> Columns:
        return Columns(
            self.text_column, self.text_pair_column, self.label_column, header=not self.no_header
        )

    def spec(self, train: Path | None = None) -> DataSpec:
        """The task's DataSpec; an augmented file replaces `train` (already cut, so no limit)."""
        if train is None:
            return DataSpec(
                train=self.train,
                eval=self.eval,
                columns=self.columns,
                max_length=self.max_length,
                limit=self.limit,
                sample_seed=self.sample_seed,
            )
        return DataSpec(
            train=train, eval=self.eval, columns=self.columns, max_length=self.max_length
        )


# ---------------------------------------------------------------------------------------------
# Recipe reading: unknown keys and wrong types are errors, naming the key.


class _Mismatch(Exception):
    pass


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except _Mismatch:
                continue
        raise _Mismatch(" or ".join(getattr(a, "__name__", str(a)) for a in args))
    if origin is list:
        if not isinstance(value, list):
            raise _Mismatch(f"a list of {getattr(args[0], '__name__', args[0])}")
        return [_coerce(item, args[0], f"{where}[{i}]") for i, item in enumerate(value)]
    if is_dataclass(hint):
        if not isinstance(value, dict):
            raise _Mismatch(f"a mapping of {hint.__name__} keys")
        return _build(hint, value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise _Mismatch("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Mismatch("a whole number")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Mismatch("a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _Mismatch("text")
        return value
    if hint is Path:
        if not isinstance(value, str):
            raise _Mismatch("a path")
        return Path(value)
    raise _Mismatch(str(hint))


def _build(cls, payload: dict, where: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    values = {}
    for key, value in payload.items():
        name = str(key).replace("-", "_")
        path = f"{where}.{name}" if where else name
        if name not in names:
            raise SlimbertError(
                f"recipe key {path!r} is unknown; valid keys{' under ' + where if where else ''}: {', '.join(sorted(names))}"
            )
        try:
            values[name] = _coerce(value, hints[name], path)
        except _Mismatch as exc:
            raise SlimbertError(f"recipe key {path!r}: expected {exc}, got {value!r}") from None
    try:
        return cls(**values)
    except TypeError as exc:
        raise SlimbertError(
            f"recipe{' section ' + where if where else ''}: {exc}; add the missing key"
        ) from None
    except SlimbertError as exc:
        if not where:
            raise
        raise SlimbertError(f"recipe section {where}: {exc}") from None


def read_recipe(path: str | Path, out: Path | None = None) -> ExperimentConfig:
    """An ExperimentConfig from a YAML recipe; `out` (the --out flag) replaces the recipe's."""
    import yaml

    path = Path(path)
    try:
        payload = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SlimbertError(
            f"{path}: cannot read the recipe ({exc}); check the path and the YAML"
        ) from None
    if not isinstance(payload, dict):
        raise SlimbertError(f"{path}: a recipe is a mapping of keys to values")
    config = _build(ExperimentConfig, payload)
    return replace(config, out=out) if out is not None else config


# ---------------------------------------------------------------------------------------------
# Stages: the real work behind each kind of cell. Tests swap in fakes that count calls.


def _train_teacher(
    base: str, spec: DataSpec, out: Path, config: TrainConfig, save_route: int = 0
) -> dict:
    from slimbert.teachers.train import train_teacher

    result, meta = train_teacher(base, spec, out, config, save_route=save_route)
    return {
        "dir": str(out),
        "metric": meta["metric"],
        "metric_name": meta["metric_name"],
        "best_step": result.best_step,
        "steps": result.steps,
    }


def _boost(
    base: str,
    spec: DataSpec,
    out: Path,
    settings: BoostSettings,
    first_member: Path | None,
    config: TrainConfig,
) -> dict:
    from slimbert.teachers.boost import BoostConfig, boost

    meta = boost(
        base,
        spec,
        out,
        BoostConfig(
            settings.rounds, settings.shrinkage, settings.weighting, first_member, settings.combine
        ),
        config,
    )
    rounds = [
        {
            k: r.get(k)
            for k in ("round", "weighted_error", "alpha", "train_errors", "eval_main", "kept")
        }
        for r in meta["rounds"]
    ]
    return {
        "dir": str(out),
        "metric": meta["metric"],
        "metric_name": meta["metric_name"],
        "members": meta["members"],
        "stopped": meta["stopped"],
        "rounds": rounds,
    }


def _augment(spec: DataSpec, out: Path, config: PairAugmentConfig, teacher: Path | None) -> dict:
    from slimbert.teachers.pair_augment import augment_pairs

    report = augment_pairs(spec, out, config, teacher=teacher)
    return {"file": str(out), "report": report.to_dict()}


def _pretrain(
    teacher: Path,
    texts: list[Path],
    out: Path,
    settings: PretrainConfig,
    config: TrainConfig,
    spec: DataSpec,
) -> dict:
    from slimbert.compress.pretrain import pretrain_student

    result, meta = pretrain_student(
        teacher, texts, out, settings, config, spec.columns, spec.limit, spec.sample_seed
    )
    return {
        "dir": str(out),
        "mlm_loss_before": meta["mlm_loss_before"],
        "metric": meta["metric"],
        "best_step": result.best_step,
        "steps": result.steps,
    }


def _distil(
    teacher: Path,
    spec: DataSpec,
    out: Path,
    settings: KDSettings,
    layers: int,
    config: TrainConfig,
    student_init: Path | None,
) -> dict:
    from slimbert.compress import kd

    result, meta = kd.run(
        teacher,
        spec,
        out,
        kd.KDConfig(layers, settings.temperature, settings.alpha),
        config,
        student_init=student_init,
    )
    return {
        "dir": str(out),
        "metric": meta["metric"],
        "metric_name": meta["metric_name"],
        "teacher_metric": meta["teacher_metric"],
        "best_step": result.best_step,
        "steps": result.steps,
    }


def _bench(
    model: Path, eval_path: Path, out: Path, columns: Columns, settings: BenchSettings
) -> dict:
    from slimbert.bench.run import BenchConfig, bench

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

    train_teacher: Callable[..., dict] = _train_teacher
    boost: Callable[..., dict] = _boost
    augment: Callable[..., dict] = _augment
    pretrain: Callable[..., dict] = _pretrain
    distil: Callable[..., dict] = _distil
    bench: Callable[..., dict] = _bench


# ---------------------------------------------------------------------------------------------
# Cells


@dataclass
class Cell:
    """One unit of work: its result is stored as <out>/cells/<name>.json with `key`."""

    name: str
    key: str
    run: Callable[[], dict]
    artifact: Path | None = None  # must still exist for a stored result to be read back


def _key(*parts: Any) -> str:
    def plain(value: Any) -> Any:
        if is_dataclass(value):
            return {k: plain(v) for k, v in asdict(value).items() if k != "progress"}
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items() if k != "progress"}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return hashlib.sha256(
        json.dumps([plain(p) for p in parts], sort_keys=True, default=str).encode()
    ).hexdigest()[:24]


class Experiment:
    """Plans the cells of one recipe, runs the ones not yet done, and writes the table."""

    def __init__(
        self,
        config: ExperimentConfig,
        stages: Stages | None = None,
        echo: Callable[[str], None] = print,
    ):
        self.config = config
        self.stages = stages or Stages()
        self.echo = echo
        self.out = Path(config.out)
        self.results: dict[str, dict] = {}
        self.computed: list[str] = []
        self.read_back: list[str] = []

    # Paths -------------------------------------------------------------------------------

    def model_dir(self, name: str) -> Path:
        return self.out / "models" / name

    @property
    def augmented_file(self) -> Path:
        return self.out / "data" / "train-augmented.tsv"

    def student_name(self, method: str, depth: int, seed: int) -> str:
        return f"student-{SLUGS[method]}-{depth}L-seed{seed}"

    # Plan --------------------------------------------------------------------------------

    def plan(self) -> list[Cell]:
        c, s = self.config, self.stages
        for path, what in ((c.train, "train"), (c.eval, "eval")):
            if not Path(path).is_file():
                raise SlimbertError(
                    f"recipe key {what!r}: {path} is no file; paths are relative to where the command runs"
                )
        spec = c.spec()
        data_key = _key(
            sha256_file(c.train),
            sha256_file(c.eval),
            c.columns,
            c.max_length,
            c.limit,
            c.sample_seed,
        )
        teacher_config = c.teacher
        cells: list[Cell] = []
        wanted = set(c.methods)

        teacher_dir = self.model_dir("teacher")
        teacher_key = _key("teacher", data_key, c.base, teacher_config, c.teacher_route)
        cells.append(
            Cell(
                "teacher",
                teacher_key,
                partial(
                    s.train_teacher, c.base, spec, teacher_dir, teacher_config, c.teacher_route
                ),
                teacher_dir,
            )
        )
        sources = {"TS": (teacher_dir, teacher_key)}

        if "PS-Boosting" in wanted:
            boost_dir = self.model_dir("professor-boost")
            first = teacher_dir if c.boost.reuse_teacher else None
            boost_key = _key(
                "boost", data_key, c.base, c.boost, teacher_config, teacher_key if first else None
            )
            cells.append(
                Cell(
                    "professor-boost",
                    boost_key,
                    partial(s.boost, c.base, spec, boost_dir, c.boost, first, teacher_config),
                    boost_dir,
                )
            )
            sources["PS-Boosting"] = (boost_dir, boost_key)

        da_dir = self.model_dir("professor-da")
        if wanted & {"PS-DA", "PS-DA*"}:
            filter_teacher = teacher_dir if c.augment.filter_confidence is not None else None
            augment_key = _key(
                "augment", data_key, c.augment, teacher_key if filter_teacher else None
            )
            cells.append(
                Cell(
                    "augment",
                    augment_key,
                    partial(s.augment, spec, self.augmented_file, c.augment, filter_teacher),
                    self.augmented_file,
                )
            )
            da_key = _key("professor-da", augment_key, c.base, teacher_config)
            cells.append(
                Cell(
                    "professor-da",
                    da_key,
                    partial(
                        s.train_teacher, c.base, c.spec(self.augmented_file), da_dir, teacher_config
                    ),
                    da_dir,
                )
            )
            sources["PS-DA"] = sources["PS-DA*"] = (da_dir, da_key)

        pretrained: dict[int, tuple[Path, str]] = {}
        if "PS-DA*" in wanted:
            texts = [c.train, *c.pretrain.texts]
            for depth in c.depths:
                settings = PretrainConfig(
                    depth, c.pretrain.mlm_probability, c.pretrain.holdout, c.max_length
                )
                out = self.model_dir(f"pretrain-{depth}L")
                key = _key(
                    "pretrain",
                    da_key,
                    data_key,
                    settings,
                    [sha256_file(t) if Path(t).is_file() else str(t) for t in texts],
                    c.pretrain_train,
                )
                cells.append(
                    Cell(
                        f"pretrain-{depth}L",
                        key,
                        partial(s.pretrain, da_dir, texts, out, settings, c.pretrain_train, spec),
                        out,
                    )
                )
                pretrained[depth] = (out, key)

        first_student: dict[int, tuple[Path, str]] = {}
        for seed in c.seeds:
            for depth in c.depths:
                for method in (m for m in METHODS if m in wanted):
                    teacher, source_key = sources[method]
                    init, init_key = (
                        pretrained.get(depth, (None, None)) if method == "PS-DA*" else (None, None)
                    )
                    student_spec = (
                        c.spec(self.augmented_file)
                        if method in ("PS-DA", "PS-DA*") and c.da_student_data == "augmented"
                        else spec
                    )
                    train_config = replace(c.student, seed=seed)
                    name = self.student_name(method, depth, seed)
                    out = self.model_dir(f"students/{name}")
                    key = _key(
                        "student",
                        source_key,
                        init_key,
                        data_key,
                        c.da_student_data if method.startswith("PS-DA") else None,
                        depth,
                        c.kd,
                        train_config,
                    )
                    cells.append(
                        Cell(
                            name,
                            key,
                            partial(
                                s.distil,
                                teacher,
                                student_spec,
                                out,
                                c.kd,
                                depth,
                                train_config,
                                init,
                            ),
                            out,
                        )
                    )
                    first_student.setdefault(depth, (out, key))

        for name, (model, model_key) in [("teacher", (teacher_dir, teacher_key))] + [
            (f"{d}L", first_student[d]) for d in c.depths
        ]:
            out = self.out / "bench" / name
            cells.append(
                Cell(
                    f"bench-{name}",
                    _key("bench", model_key, c.bench, data_key),
                    partial(s.bench, model, c.eval, out, c.columns, c.bench),
                    None,
                )
            )
        return cells

    # Run ---------------------------------------------------------------------------------

    def run_cell(self, cell: Cell) -> dict:
        stored_path = self.out / "cells" / f"{cell.name}.json"
        if stored_path.is_file():
            stored = json.loads(stored_path.read_text())
            if stored.get("key") == cell.key and (cell.artifact is None or cell.artifact.exists()):
                self.read_back.append(cell.name)
                return stored["result"]
            self.echo(
                f"[experiment] {cell.name}: its inputs changed or its output is gone; computing it again"
            )
        self.echo(f"[experiment] {cell.name}: computing")
        started = time.perf_counter()
        result = cell.run()
        seconds = time.perf_counter() - started
        write_json_atomic(
            stored_path,
            {
                "name": cell.name,
                "key": cell.key,
                "seconds": round(seconds, 1),
                "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                "result": result,
            },
        )
        self.computed.append(cell.name)
        return result

    def run(self) -> Path:
        """Compute what is missing and write experiment.md / experiment.json / report/; returns
        experiment.md's path."""
        cells = self.plan()
        for cell in cells:
            self.results[cell.name] = self.run_cell(cell)
        self.echo(
            f"[experiment] {len(self.computed)} cells computed, {len(self.read_back)} read back"
        )
        return self.write()

    # Table -------------------------------------------------------------------------------

    def f1(self, name: str, key: str = "f1") -> float | None:
        result = self.results.get(name)
        return None if result is None else result["metric"].get(key)

    def student_values(self, method: str, depth: int, key: str = "f1") -> list[float]:
        values = [
            self.f1(self.student_name(method, depth, seed), key) for seed in self.config.seeds
        ]
        return [v for v in values if v is not None]

    def matrix(self, key: str = "f1") -> list[dict]:
        """Rows of the matrix: label, latency figures, per-method (mean, std, n), vs teacher."""
        c = self.config
        teacher = self.f1("teacher", key)
        professors = {
            "TS": teacher,
            "PS-Boosting": self.f1("professor-boost", key),
            "PS-DA": self.f1("professor-da", key),
            "PS-DA*": None,
        }
        rows = [
            {
                "model": self.teacher_label(),
                "bench": self.results.get("bench-teacher"),
                "cells": {m: None if v is None else (v, None, 1) for m, v in professors.items()},
            }
        ]
        for depth in c.depths:
            cells = {}
            for method in METHODS:
                values = self.student_values(method, depth, key) if method in c.methods else []
                cells[method] = (
                    (
                        statistics.mean(values),
                        statistics.stdev(values) if len(values) > 1 else None,
                        len(values),
                    )
                    if values
                    else None
                )
            rows.append(
                {
                    "model": f"Student {depth}L",
                    "bench": self.results.get(f"bench-{depth}L"),
                    "cells": cells,
                }
            )
        for row in rows:
            # The teacher row compares the professors with the teacher; a student row, every method.
            candidates = [
                (cell[0], m)
                for m, cell in row["cells"].items()
                if cell is not None and not (row is rows[0] and m == "TS")
            ]
            best = max(candidates, default=None)
            row["vs_teacher"] = (
                None if best is None or teacher is None else (best[0] - teacher, best[1])
            )
        return rows

    def teacher_label(self) -> str:
        config = self.model_dir("teacher") / "config.json"
        layers = (
            json.loads(config.read_text()).get("num_hidden_layers") if config.is_file() else None
        )
        return f"Teacher ({layers}L)" if layers else "Teacher"

    def table(self, key: str = "f1", title: str | None = None):
        from slimbert.bench.report import Table

        name = "F1" if key == "f1" else key.capitalize()
        headers = [
            "Model",
            "Requests",
            "Total ms",
            "Avg ms",
            *[f"{m}-{name}" for m in METHODS],
            "vs Teacher",
        ]
        cells = []
        for row in self.matrix(key):
            bench = (row["bench"] or {}).get("row")
            latency = (
                [str(bench["requests"]), f"{bench['total_ms']:.1f}", f"{bench['avg_ms']:.2f}"]
                if bench
                else ["–", "–", "–"]
            )
            figures = []
            for method in METHODS:
                cell = row["cells"][method]
                if cell is None:
                    figures.append("–")
                else:
                    mean, std, n = cell
                    figures.append(f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}")
            vs = row["vs_teacher"]
            cells.append(
                [row["model"], *latency, *figures, "–" if vs is None else f"{vs[0]:+.2f} ({vs[1]})"]
            )
        return Table(title, headers, cells)

    def details(self) -> list[str]:
        c, r = self.config, self.results
        lines = []
        teacher = r.get("teacher")
        if teacher:
            lines.append(
                f"Teacher: {c.base} fine-tuned on {c.train} ({'first ' + str(c.limit) + ' rows' if c.limit else 'all rows'}), best at step {teacher['best_step']} of {teacher['steps']}; dev "
                + ", ".join(f"{k} {v:.2f}" for k, v in teacher["metric"].items())
                + "."
            )
        boost = r.get("professor-boost")
        if boost:
            rounds = "; ".join(
                f"round {x['round'] + 1}: weighted error {x['weighted_error']:.4f}, α {x['alpha']:.3f}, member dev {x['eval_main']:.2f}"
                + ("" if x["kept"] else " (dropped)")
                for x in boost["rounds"]
            )
            lines.append(
                f"PS-Boosting professor: {boost['members']} member{'s' if boost['members'] != 1 else ''} ({boost['stopped']}); {rounds}; ensemble dev "
                + ", ".join(f"{k} {v:.2f}" for k, v in boost["metric"].items())
                + f". Its latency is about {boost['members']}× the teacher's (not timed)."
            )
        augment = r.get("augment")
        if augment:
            report = augment["report"]
            rules = "; ".join(
                f"{rule}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
                for rule, counts in report["rules"].items()
            )
            lines.append(
                f"Augmentation: {report['source_pairs']} training pairs → {report['output_rows']} rows ({report['added']} new); {rules}; labels {report['labels_before']} → {report['labels_after']}."
            )
        da = r.get("professor-da")
        if da:
            lines.append(
                f"PS-DA professor: {c.base} fine-tuned on the augmented pairs, best at step {da['best_step']} of {da['steps']}; dev "
                + ", ".join(f"{k} {v:.2f}" for k, v in da["metric"].items())
                + "."
            )
        for depth in c.depths:
            pre = r.get(f"pretrain-{depth}L")
            if pre:
                lines.append(
                    f"Pre-trained {depth}L student: held-out masked-LM loss {pre['mlm_loss_before']:.3f} → {pre['metric'].get('mlm_loss', float('nan')):.3f} (best at step {pre['best_step']} of {pre['steps']})."
                )
        for depth in c.depths:
            for method in (m for m in METHODS if m in c.methods):
                per_seed = ", ".join(
                    f"seed {seed}: {self.f1(self.student_name(method, depth, seed)) or float('nan'):.2f}"
                    for seed in c.seeds
                )
                lines.append(f"{method} {depth}L F1 per seed — {per_seed}.")
        return lines

    def report(self):
        """Rows for report.py's latency-vs-F1 plot: the teacher and each method's mean per depth."""
        from slimbert.bench.report import Report, Row, environment

        rows = []
        fields_ = set(Row.__dataclass_fields__)
        teacher_f1 = self.f1("teacher")
        for row in self.matrix():
            bench = (row["bench"] or {}).get("row")
            if not bench:
                continue
            for method, cell in row["cells"].items():
                is_teacher = row["model"].startswith("Teacher")
                if cell is None or (is_teacher and method != "TS"):
                    continue
                payload = {k: v for k, v in bench.items() if k in fields_}
                payload.update(
                    method="teacher" if is_teacher else method,
                    model="teacher" if is_teacher else f"{method} {row['model'].split()[-1]}",
                    metric=cell[0],
                    metric_name="f1",
                    accuracy=None,
                    role="teacher" if is_teacher else "student",
                    vs_teacher=None if teacher_f1 is None else cell[0] - teacher_f1,
                )
                rows.append(Row(**payload))
        environment_ = next(
            (r["environment"] for name, r in self.results.items() if name.startswith("bench-")),
            None,
        ) or environment(self.config.bench.threads)
        return Report(
            f"Teacher → professor → student: {Path(self.config.train).parent.name} dev, mean F1 over {len(self.config.seeds)} seeds",
            rows,
            environment_,
            [
                "F1 is the mean over seeds; latency is one student per depth (all methods share the architecture)."
            ],
        )

    def write(self) -> Path:
        from slimbert.bench.report import _machine_lines, environment, write_report

        c = self.config
        env = environment(c.bench.threads)
        bench_env = next(
            (r["environment"] for name, r in self.results.items() if name.startswith("bench-")),
            None,
        )
        title = (
            f"Teacher → professor → student on {Path(c.train).parent.name} ({Path(c.eval).name})"
        )
        lines = [f"# {title}", ""]
        lines += [f"- {line}" for line in _machine_lines(env)]
        if bench_env:
            lines.append(
                f"- Latency measured on: {bench_env.get('cpu')}, {bench_env.get('cores')} cores, threads {bench_env.get('threads')}, runtime {c.bench.runtime}, provider {c.bench.provider}, batch 1, each request at its own length, {c.bench.warmup} warm-up requests"
            )
        budget = (
            f"{c.student.max_steps} steps"
            if c.student.max_steps
            else f"{c.student.epochs:g} epochs"
        )
        lines.append(
            f"- Students: depths {c.depths}, seeds {c.seeds}, kd T={c.kd.temperature:g} alpha={c.kd.alpha:g}, at most {budget} at lr {c.student.lr:g}, batch {c.student.batch_size}, best checkpoint on dev (patience {c.student.patience}); every method's students train on the {'original training set' if c.da_student_data == 'original' else 'original (TS, PS-Boosting) or augmented (PS-DA, PS-DA*) training set'}"
        )
        lines += [
            "",
            self.table(
                "f1", "F1 of the positive class (students: mean ± sample std over seeds)"
            ).markdown(),
            self.table("accuracy", "Accuracy (mean ± sample std)").markdown(),
            "## Details",
            "",
        ]
        lines += [f"- {line}" for line in self.details()]
        lines += [
            "",
            "The teacher row: TS-F1 is the teacher's; PS-Boosting-F1 and PS-DA-F1 are the professors' own dev figures. vs Teacher: the row's best mean minus the teacher's F1.",
            "",
            "![latency vs F1](report/pareto.png)",
            "",
        ]
        write_report(self.report(), self.out / "report")
        write_json_atomic(
            self.out / "experiment.json",
            {
                "config": _key_payload(c),
                "matrix": self.matrix(),
                "cells": self.results,
                "environment": env,
            },
        )
        path = self.out / "experiment.md"
        write_text_atomic(path, "\n".join(lines))
        return path


def _key_payload(config: ExperimentConfig) -> dict:
    return json.loads(json.dumps(asdict(config), default=str))


def run_experiment(
    recipe: str | Path,
    out: Path | None = None,
    stages: Stages | None = None,
    echo: Callable[[str], None] = print,
) -> Experiment:
    """Read the recipe, compute what is missing, write the tables; returns the Experiment."""
    experiment = Experiment(read_recipe(recipe, out), stages, echo)
    experiment.run()
    return experiment
