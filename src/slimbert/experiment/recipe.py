"""An experiment recipe: one YAML file, checked key by key against ExperimentConfig.

Keys map one-to-one onto the dataclasses below (nested sections onto their own); unknown keys
and wrong types are errors naming the key. The students' method is any registered method
(`distil: {method: NAME, ...its settings}`), checked against that method's settings.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from slimbert.batches import DataSpec
from slimbert.bench.config import RUNTIMES
from slimbert.compress.method import Method
from slimbert.compress.pretrain import PretrainConfig
from slimbert.compress.registry import get_method
from slimbert.data import Columns
from slimbert.errors import SlimbertError
from slimbert.metrics import METRICS
from slimbert.settings import from_mapping
from slimbert.teachers.boost import BoostConfig
from slimbert.teachers.pair_augment import PairAugmentConfig
from slimbert.training.config import TrainConfig

TEACHING_PATHS = ("TS", "PS-Boosting", "PS-DA", "PS-DA*")
SLUGS = {"TS": "ts", "PS-Boosting": "ps-boosting", "PS-DA": "ps-da", "PS-DA*": "ps-da-star"}


def student_name(path: str, depth: int, seed: int) -> str:
    """The cell and folder name of one student: student-ts-3L-seed1."""
    return f"student-{SLUGS[path]}-{depth}L-seed{seed}"


@dataclass
class PretrainSettings:
    """mlm_probability, holdout: as pretrain-student's; texts: extra unlabelled files beside
    the task's training text."""

    mlm_probability: float = PretrainConfig.mlm_probability
    holdout: float = PretrainConfig.holdout
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
    *_column, no_header, max_length, limit, sample_seed, metric, positive_label:
                      as the training commands' flags (metric picks every checkpoint)
    transfer:         a teacher-labelled transfer set (`slimbert augment`) for the students
                      only; the teacher and professors train on the labelled rows alone
    depths:           student depths (layers picked from the teacher by pick_layers)
    seeds:            one student per seed, method and depth
    methods:          which teaching paths of TS, PS-Boosting, PS-DA, PS-DA* to run (the
                      teacher always is)
    da_student_data:  "original" (default, same data for every student) or "augmented"
    teacher:          TrainConfig of the teacher, the boosted members and the PS-DA professor
    teacher_route:    K > 0 keeps K checkpoints along the teacher's training under
                      models/teacher/route (train-teacher --save-route), for route-constrained
                      distillation from the same teacher (compress kd --teacher-route)
    student:          TrainConfig of every student (its seed is replaced by each of `seeds`)
    distil:           the students' method, `method: NAME` (default kd) and its settings
                      (layers comes from `depths`; PS-DA* sets student_init)
    boost, augment, pretrain: the professors' and pre-training's settings (boost: as
                      `professor boost`'s flags; first_member is the experiment's to set)
    boost_from_teacher: round 1 of PS-Boosting is the TS teacher itself (it was trained on
                      uniform weights) instead of fine-tuning another copy (not with
                      boost.weighting bag: the teacher has no left-out rows to score it)
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
    metric: str | None = None
    positive_label: str | None = None
    transfer: Path | None = None
    depths: list[int] = field(default_factory=lambda: [3, 2, 1])
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    methods: list[str] = field(default_factory=lambda: list(TEACHING_PATHS))
    da_student_data: str = "original"
    teacher: TrainConfig = field(default_factory=TrainConfig)
    teacher_route: int = 0
    student: TrainConfig = field(default_factory=_default_student)
    distil: dict[str, Any] = field(default_factory=lambda: {"method": "kd"})
    boost: BoostConfig = field(default_factory=BoostConfig)
    boost_from_teacher: bool = True
    augment: PairAugmentConfig = field(default_factory=PairAugmentConfig)
    pretrain: PretrainSettings = field(default_factory=PretrainSettings)
    pretrain_train: TrainConfig = field(default_factory=_default_pretrain)
    bench: BenchSettings = field(default_factory=BenchSettings)

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in TEACHING_PATHS]
        if unknown or not self.methods:
            raise SlimbertError(f"methods {self.methods}: choose from {', '.join(TEACHING_PATHS)}")
        self.student_method()  # the distil section names a method and fits its settings
        if self.boost.first_member is not None:
            raise SlimbertError(
                "boost.first_member: the experiment sets it (boost_from_teacher); drop the key"
            )
        if self.boost.weighting == "bag" and self.boost_from_teacher:
            raise SlimbertError(
                "boost.weighting bag with boost_from_teacher: the teacher trained on every row, "
                "so no left-out rows can score it as round 1; set boost_from_teacher: false"
            )
        if self.metric is not None and self.metric not in METRICS:
            raise SlimbertError(f"metric {self.metric!r}: choose one of {', '.join(METRICS)}")
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
                f"teacher_route {self.teacher_route}: "
                "give the number of checkpoints to keep, 0 for none"
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

    def spec(self, train: Path | None = None, students: bool = False) -> DataSpec:
        """The task's DataSpec; an augmented file replaces `train` (already cut, so no limit).

        The transfer set is the students' alone (`students=True`): its rows are labelled by the
        teacher, so the teacher, the professors and pre-training never train on them.
        """
        transfer = self.transfer if students else None
        if train is None:
            return DataSpec(
                train=self.train,
                eval=self.eval,
                columns=self.columns,
                max_length=self.max_length,
                limit=self.limit,
                sample_seed=self.sample_seed,
                metric=self.metric,
                positive_label=self.positive_label,
                transfer=transfer,
            )
        return DataSpec(
            train=train,
            eval=self.eval,
            columns=self.columns,
            max_length=self.max_length,
            metric=self.metric,
            positive_label=self.positive_label,
            transfer=transfer,
        )

    def student_method(self) -> tuple[Method, Any]:
        """The registered method of the `distil` section and its settings (depth unset)."""
        settings = dict(self.distil)
        method = get_method(str(settings.pop("method", "kd")))
        config = from_mapping(method.config, settings, "distil")
        names = set(config.__dataclass_fields__)
        if "layers" not in names:
            raise SlimbertError(
                f"distil.method {method.name!r} has no depth (no `layers` setting); an experiment "
                "varies the student depth, so pick a transformer method such as kd or tinybert"
            )
        if "layers" in settings:
            raise SlimbertError("distil.layers: the depth comes from `depths`; drop the key")
        if "PS-DA*" in self.methods and "student_init" not in names:
            raise SlimbertError(
                f"methods includes PS-DA* but distil.method {method.name!r} cannot start from a "
                "pre-trained student (no student_init setting); use kd or drop PS-DA*"
            )
        return method, config


def read_recipe(path: str | Path, out: Path | None = None) -> ExperimentConfig:
    """An ExperimentConfig from a YAML recipe; `out` (the --out flag) replaces the recipe's."""
    import yaml  # only experiments read YAML this way

    path = Path(path)
    try:
        payload = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SlimbertError(
            f"{path}: cannot read the recipe ({exc}); check the path and the YAML"
        ) from None
    if not isinstance(payload, dict):
        raise SlimbertError(f"{path}: a recipe is a mapping of keys to values")
    config = from_mapping(ExperimentConfig, payload)
    return replace(config, out=out) if out is not None else config


def key_payload(config: ExperimentConfig) -> dict:
    return json.loads(json.dumps(asdict(config), default=str))
