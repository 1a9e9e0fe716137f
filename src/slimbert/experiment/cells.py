"""`slimbert experiment RECIPE.yaml`: teacher → professor → student, as a resumable matrix.

One recipe runs four ways of teaching each student depth, over several seeds:

    TS            teacher ──kd──▶ student (layers copied from the teacher)
    PS-Boosting   teacher + K−1 boosted rounds = ensemble professor ──kd──▶ student
    PS-DA         professor fine-tuned on pairs augmented by symmetry / transitivity ──kd──▶ student
    PS-DA*        as PS-DA, but the student is first masked-LM pre-trained on the task's text

and writes the table the source reports, F1 as mean ± sample std over the seeds, with the
columns

    Model, Requests, Total ms, Avg ms, TS-F1, PS-Boosting-F1, PS-DA-F1, PS-DA*-F1, vs Teacher

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
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from slimbert.compress.pretrain import PretrainConfig
from slimbert.data import data_exists, data_sha256
from slimbert.errors import SlimbertError
from slimbert.experiment.recipe import TEACHING_PATHS, ExperimentConfig, read_recipe, student_name
from slimbert.experiment.stages import Stages
from slimbert.experiment.tables import Matrix
from slimbert.files import sha256_file, write_json_atomic


@dataclass
class Cell:
    """One unit of work: its result is stored as <out>/cells/<name>.json with `key`."""

    name: str
    key: str
    run: Callable[[], dict]
    artifact: Path | None = None  # must still exist for a stored result to be read back


def _unkeyed(name: str, value: Any) -> bool:
    """Settings that change how a cell is watched, where it runs, whether it resumes or which
    kernel computes the same update (fused AdamW), not what it computes; and --grad-accum at 1,
    so that folders planned before it still resume."""
    return name in ("progress", "resume", "save_state", "report_to", "device", "fused_adamw") or (
        name == "grad_accum" and value == 1
    )


def _key(*parts: Any) -> str:
    def plain(value: Any) -> Any:
        if is_dataclass(value):
            return {k: plain(v) for k, v in asdict(value).items() if not _unkeyed(k, v)}
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

    # Plan --------------------------------------------------------------------------------

    def plan(self) -> list[Cell]:
        c, s = self.config, self.stages
        for path, what in ((c.train, "train"), (c.eval, "eval")):
            if not data_exists(path):
                raise SlimbertError(
                    f"recipe key {what!r}: {path} is no file or folder; "
                    "paths are relative to where the command runs"
                )
        spec, student_data = c.spec(), c.spec(students=True)
        # scoring keys the cells only when set, so older folders still resume
        extras = {"metric": c.metric, "positive_label": c.positive_label}
        data_key = _key(
            data_sha256(c.train),
            data_sha256(c.eval),
            c.columns,
            c.max_length,
            c.limit,
            c.sample_seed,
            *([{k: v for k, v in extras.items() if v is not None}] if any(extras.values()) else []),
        )
        # the transfer set keys the students alone: the teacher and professors never see it
        student_key = (
            _key(data_key, {"transfer": sha256_file(c.transfer)}) if c.transfer else data_key
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
            first = teacher_dir if c.boost_from_teacher else None
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

        student_method, template = c.student_method()
        first_student: dict[int, tuple[Path, str]] = {}
        for seed in c.seeds:
            for depth in c.depths:
                for method in (m for m in TEACHING_PATHS if m in wanted):
                    teacher, source_key = sources[method]
                    init, init_key = (
                        pretrained.get(depth, (None, None)) if method == "PS-DA*" else (None, None)
                    )
                    student_spec = (
                        c.spec(self.augmented_file, students=True)
                        if method in ("PS-DA", "PS-DA*") and c.da_student_data == "augmented"
                        else student_data
                    )
                    train_config = replace(c.student, seed=seed)
                    settings = replace(template, layers=depth)
                    if init is not None:
                        settings = replace(settings, student_init=init)
                    name = student_name(method, depth, seed)
                    out = self.model_dir(f"students/{name}")
                    key = _key(
                        "student",
                        source_key,
                        init_key,
                        student_key,
                        c.da_student_data if method.startswith("PS-DA") else None,
                        student_method.name,
                        settings,
                        train_config,
                    )
                    cells.append(
                        Cell(
                            name,
                            key,
                            partial(
                                s.distil,
                                student_method.name,
                                teacher,
                                student_spec,
                                out,
                                settings,
                                train_config,
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
                f"[experiment] {cell.name}: its inputs changed or its output is gone; "
                "computing it again"
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
        return Matrix(self.config, self.results, self.out).write()

    def table(self, key: str = "f1", title: str | None = None):
        return Matrix(self.config, self.results, self.out).table(key, title)


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
