"""Latency first: every candidate shape is timed on this machine before anything trains.

For each shape, cheapest first, a student of that shape is built from the teacher, or from its
starting point (--student-base, --student-init) with that model's tokenizer (the one builder,
compress/students.py; its weights do not matter to latency), exported the way a trial's
student will be (export/onnx.py, at each precision of the provider: fp32 and dynamic int8 on the
CPU, fp32 and fp16 on CUDA) and timed by bench's own `measure` on the first eval rows at the
SLO's batch size. One PyTorch training step of the shape is timed too, for the plan's estimate.

A shape whose every precision misses the SLO makes every shape at least as deep and as wide
miss it too: those are dropped without a probe. The results are cached in OUT/probe.json,
keyed by what they depend on (provider, batch, threads, max length, the teacher's weights, the
eval rows), so a resumed or repeated `auto` probes nothing twice.

    OUT/probe.json   {"context": {...}, "teacher": Row, "shapes": {"4x384": Probe, ...}}
    OUT/teacher.json {"context": {...}, "row": Row}: the teacher on the rows trained students
                     are scored on (what --max-drop is held to while the search runs)
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from slimbert.auto.space import Shape
from slimbert.bench.config import BenchConfig
from slimbert.bench.decide import Slo
from slimbert.bench.report import Row
from slimbert.bench.targets import Target
from slimbert.bench.timing import Job, measure, merge_passes
from slimbert.compress.students import StudentShape, build_student, pick_layers
from slimbert.data import Columns, read_examples
from slimbert.export.onnx import ExportOptions, export
from slimbert.export.optimize import OptimizeConfig
from slimbert.export.quantize import DynamicQuantConfig
from slimbert.export.validate import Tolerances
from slimbert.families import family_of
from slimbert.files import CONFIG_FILE, MANIFEST_FILE, write_json_atomic
from slimbert.hub import weights_sha256
from slimbert.models import load_classifier, load_tokenizer, save_model
from slimbert.record import ModelRecord, read_record

PROBE_FILE = "probe.json"
TEACHER_FILE = "teacher.json"
# a random-weight student's logits mean nothing: its exports are not gated
UNGATED = Tolerances(None, 0.0, 100.0)


def precisions(provider: str) -> tuple[str, ...]:
    """What each trained student is exported at: int8 runs on the CPU, fp16 on CUDA."""
    return ("fp32", "fp16") if provider == "cuda" else ("fp32", "int8")


def export_options(precision: str, provider: str, optimize: bool) -> ExportOptions:
    fusion = OptimizeConfig.for_provider(provider) if optimize else None
    if precision == "int8":
        return ExportOptions(optimize=fusion, quantize=DynamicQuantConfig())
    return ExportOptions(optimize=fusion, precision=precision)


@dataclass(frozen=True)
class Timing:
    """How one shape or student is timed: where, at which batch, over how many requests."""

    eval_path: Path
    columns: Columns
    provider: str
    batch: int
    requests: int | None
    repeats: int
    warmup: int
    max_length: int
    statistic: str  # the SLO's: avg, p50, p90 or p99
    metric: str | None = None  # what vs Teacher compares (None: f1, regression pearson)
    positive_label: str | None = None
    threads: int | None = None  # intra-op threads (None: all cores)

    def config(self) -> BenchConfig:
        return BenchConfig(
            threads=self.threads,
            metric=self.metric,
            positive_label=self.positive_label,
            provider=self.provider,
            batch_sizes=[self.batch],
            warmup=self.warmup,
            limit=self.requests,
            max_length=self.max_length,
            isolate=False,
            repeats=self.repeats,
            peak=False,
        )

    def time(self, target: Target) -> Row:
        config = self.config()
        threads = config.threads_to_sweep()[0]
        job = Job(target, self.batch, None, threads)
        return Row(**measure(job, self.eval_path, self.columns, config, None))

    def time_alternating(self, targets: list[Target]) -> list[Row]:
        """Every target timed in one run, in rounds (the benchmark protocol): each round times
        one pass of every target in turn, so that what the machine does meanwhile reaches them
        all alike; a row's figures are the medians over its rounds."""
        one = replace(self, repeats=1)
        passes: list[list[dict]] = [[] for _ in targets]
        for _ in range(self.repeats):
            for target, done in zip(targets, passes, strict=True):
                done.append(asdict(one.time(target)))
        return [Row(**merge_passes(done)) for done in passes]


def export_once(model: Path, exported: Path, timing: Timing, precision: str, optimize: bool):
    """Export a trained student at `precision`, gated against PyTorch on the eval rows, unless
    an earlier run wrote it (an export is written whole or not at all)."""
    if (exported / MANIFEST_FILE).is_file():
        return
    export(
        model,
        timing.eval_path,
        exported,
        timing.columns,
        timing.max_length,
        None,
        None,
        timing.provider,
        export_options(precision, timing.provider, optimize),
    )


def onnx_target(name: str, folder: Path, method: str, precision: str) -> Target:
    config = json.loads((folder / CONFIG_FILE).read_text())
    return Target(name, folder, "onnx", method, "student", precision, config)


@dataclass
class Probe:
    """One shape's measured latency per precision (ms, the SLO's statistic and the average),
    a training step's seconds, and an export's; or the larger shape that made it unneeded."""

    shape: Shape
    latency_ms: dict[str, float] = field(default_factory=dict)
    avg_ms: dict[str, float] = field(default_factory=dict)
    step_s: float | None = None
    export_s: float | None = None
    skipped_because: str | None = None
    # the teacher's Avg ms over each precision's, timed in the same rounds (None: a probe
    # cached by an earlier version)
    speedup: dict[str, float] | None = None

    def fastest(self) -> tuple[str, float] | None:
        if not self.latency_ms:
            return None
        return min(self.latency_ms.items(), key=lambda item: item[1])

    def meets(self, slo: Slo, teacher: Row | None = None) -> bool:
        """A relative SLO reads the speed-up over the teacher timed in the same rounds (or,
        for a probe without it, the limit at `teacher`'s row)."""
        if slo.relative and self.speedup:
            return max(self.speedup.values()) >= slo.speedup * (1 - 1e-9)
        if slo.relative:
            slo = slo.against(teacher)
        best = self.fastest()
        return best is not None and best[1] <= slo.limit_ms

    @classmethod
    def from_dict(cls, payload: dict) -> Probe:
        return cls(**{**payload, "shape": Shape(**payload["shape"])})


def teacher_target(teacher: Path) -> Target:
    method = read_record(teacher).method or "teacher"
    config = json.loads((teacher / CONFIG_FILE).read_text())
    return Target("teacher", teacher, "pytorch", method, "teacher", "fp32", config)


def step_seconds(
    student, tokenizer, train_path: Path, columns: Columns, timing: Timing, batch_size: int
) -> float:
    """Seconds of one training step (forward, backward, no optimiser) of `student` on the
    first `batch_size` training rows: the plan's estimate of a trial's time."""
    examples = read_examples(train_path, columns)
    rows = range(min(batch_size, len(examples)))
    texts = [examples.texts[i] for i in rows]
    pairs = [examples.text_pairs[i] for i in rows] if examples.is_pair else None
    batch = tokenizer(
        texts,
        pairs,
        truncation=True,
        max_length=timing.max_length,
        padding=True,
        return_tensors="pt",
    )
    labels = torch.zeros(len(texts), dtype=torch.long)
    student.train()
    seconds = []
    for _ in range(3):  # the first pays for allocation
        began = time.perf_counter()
        student(**batch, labels=labels).loss.backward()
        seconds.append(time.perf_counter() - began)
        student.zero_grad(set_to_none=True)
    return min(seconds[1:])


def source_of(shape: Shape, loaded: dict[str, tuple]) -> tuple:
    """The model a shape's student is cut from and its tokenizer: the teacher (under "") or
    the shape's starting point, loaded on first use."""
    if shape.start not in loaded:
        flag = f"--student-{shape.kind}"
        loaded[shape.start] = (
            load_classifier(shape.source, flag=flag).eval(),
            load_tokenizer(shape.source, flag),
        )
    return loaded[shape.start]


def probe_shape(
    teacher_model,
    tokenizer,
    shape: Shape,
    timing: Timing,
    train_path: Path,
    batch_size: int,
    optimize: bool,
    teacher: Target | None = None,
) -> Probe:
    """Build, export and time one shape at every precision of the provider; `teacher_model`
    is the model the shape is cut from (the teacher, or its starting point). With `teacher`
    (the teacher's target), the exports are timed in rounds with it, and the probe keeps each
    precision's speed-up over it from the same rounds: a relative SLO's verdict on a machine
    whose speed drifts while the probes run."""
    depth = family_of(teacher_model.config).size(teacher_model.config, "depth")
    layers = pick_layers(depth, shape.layers)
    size = StudentShape(
        shape.layers,
        *((shape.hidden, shape.heads, shape.ffn) if shape.narrow else (None, None, None)),
    )
    student, _ = build_student(teacher_model, size, layers, seed=0)
    probe = Probe(shape)
    probe.step_s = step_seconds(student, tokenizer, train_path, timing.columns, timing, batch_size)
    with tempfile.TemporaryDirectory(prefix="slimbert-probe-") as scratch:
        folder = Path(scratch) / "student"
        record = ModelRecord(role="probe", method="probe", data={"max_length": timing.max_length})
        save_model(student.eval(), tokenizer, folder, record)
        targets = {}
        for precision in precisions(timing.provider):
            began = time.perf_counter()
            exported = Path(scratch) / precision
            export(
                folder,
                timing.eval_path,
                exported,
                timing.columns,
                timing.max_length,
                UNGATED,
                None,
                timing.provider,
                export_options(precision, timing.provider, optimize),
            )
            if precision == "fp32":
                probe.export_s = time.perf_counter() - began
            targets[precision] = onnx_target(shape.name, exported, "probe", precision)
        if teacher is None:
            rows = {precision: timing.time(target) for precision, target in targets.items()}
        else:
            teacher_row, *timed = timing.time_alternating([teacher, *targets.values()])
            rows = dict(zip(targets, timed, strict=True))
            probe.speedup = {p: teacher_row.avg_ms / row.avg_ms for p, row in rows.items()}
        for precision, row in rows.items():
            probe.latency_ms[precision] = row.latency(timing.statistic)
            probe.avg_ms[precision] = row.avg_ms
    return probe


def probe_context(teacher: Path, timing: Timing, optimize: bool) -> dict:
    """What a cached probe depends on: a change in any of it probes again."""
    return {
        "teacher_sha256": weights_sha256(teacher),
        "provider": timing.provider,
        "batch": timing.batch,
        "requests": timing.requests,
        "max_length": timing.max_length,
        "statistic": timing.statistic,
        "eval": str(timing.eval_path),
        "optimize": optimize,
        "threads": timing.config().threads_to_sweep()[0],
    }


def read_cache(out: Path, context: dict) -> tuple[dict[str, Probe], dict | None]:
    path = out / PROBE_FILE
    if not path.is_file():
        return {}, None
    payload = json.loads(path.read_text())
    if payload.get("context") != context:
        return {}, None
    shapes = {name: Probe.from_dict(p) for name, p in payload.get("shapes", {}).items()}
    return shapes, payload.get("teacher")


def write_cache(out: Path, context: dict, probes: dict[str, Probe], teacher: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "context": context,
        "teacher": teacher,
        "shapes": {name: asdict(p) for name, p in probes.items()},
    }
    write_json_atomic(out / PROBE_FILE, payload)


def dominated_by(shape: Shape, missing: list[Shape]) -> Shape | None:
    """A shape no deeper and no wider than `shape` that already misses the SLO."""
    return next((m for m in missing if m.layers <= shape.layers and m.hidden <= shape.hidden), None)


def probe_all(
    teacher: Path,
    shapes: list[Shape],
    slo: Slo,
    timing: Timing,
    train_path: Path,
    batch_size: int,
    out: Path,
    optimize: bool,
    say=print,
) -> tuple[list[Probe], Row]:
    """Every shape's probe (from the cache where it holds one) and the teacher's PyTorch row,
    timed over the same requests; under a relative `slo` each probe is timed in rounds with
    the teacher and judged on its speed-up in them."""
    context = probe_context(teacher, timing, optimize)
    cached, teacher_row = read_cache(out, context)
    if teacher_row is None:
        say("timing the teacher (PyTorch, fp32)")
        teacher_row = asdict(timing.time(teacher_target(teacher)))
        write_cache(out, context, cached, teacher_row)
    row = Row(**teacher_row)
    alongside = teacher_target(teacher) if slo.relative else None
    model, tokenizer = load_classifier(teacher).eval(), load_tokenizer(teacher, "--teacher")
    sources: dict[str, tuple] = {"": (model, tokenizer)}  # each start's model, loaded once
    results, missing = [], []
    for shape in shapes:
        probe = cached.get(shape.name)
        larger_than = dominated_by(shape, missing)
        if probe is None and larger_than is not None:
            probe = Probe(
                shape, skipped_because=f"no smaller than {larger_than.name}, which misses the SLO"
            )
        elif probe is None:
            say(f"probing {shape.name} ({', '.join(precisions(timing.provider))})")
            source, reader = source_of(shape, sources)
            probe = probe_shape(
                source, reader, shape, timing, train_path, batch_size, optimize, alongside
            )
            cached[shape.name] = probe
            write_cache(out, context, cached, teacher_row)
        if probe.skipped_because is None and not probe.meets(slo, row):
            missing.append(shape)
        results.append(probe)
    return results, Row(**teacher_row)


def score_teacher(teacher: Path, timing: Timing, out: Path, optimize: bool, say=print) -> Row:
    """The teacher's row on the rows every trained student is timed and scored on: the probes'
    row covers only --probe-requests rows, too few to hold a student's metric to (on SST-2 the
    first 100 dev rows read 90.00 accuracy, all 872 read 88.88). One pass, cached in
    OUT/teacher.json under the same kind of key as the probes."""
    context = probe_context(teacher, timing, optimize)
    path = out / TEACHER_FILE
    if path.is_file():
        payload = json.loads(path.read_text())
        if payload.get("context") == context:
            return Row(**payload["row"])
    say("scoring the teacher on the rows students are scored on (PyTorch, fp32)")
    row = replace(timing, repeats=1).time(teacher_target(teacher))
    write_json_atomic(path, {"context": context, "row": asdict(row)})
    return row
