"""Latency and quality of each model, PyTorch eager and its ONNX export, over a sweep.

Protocol (../shared/BENCHMARKS.md): one request per `batch_size` eval examples in file order;
`warmup` requests first, not counted; then every request `repeats` times over, and each figure
is the median over the repeats with half their range as its spread. Tokenisation is timed apart
from the model. PyTorch runs under `torch.inference_mode()` with the same intra-op threads as
ONNX Runtime. Each model runs in a fresh process by default so that its peak memory is its own
and earlier models leave nothing behind.

The sweep, every combination timed as its own row:

    models × runtimes (pytorch, onnx) × batch sizes × lengths × intra-op threads [× IO binding]

    length "own"  each request padded to its own longest example: input (B, L_request)
    length L      every request padded (and truncated) to L:       input (B, L)

On CUDA, ONNX models are timed twice: fed from host arrays, and through IO binding with input
and output buffers allocated once per request shape on the device (`BoundSession`).

Each transformer row also carries its matmul FLOPs per request (slimbert.flops) and the share
of the machine's measured matmul peak it reaches, at the row's precision and thread count.
"""

from __future__ import annotations

import concurrent.futures as futures
import json
import multiprocessing
import os
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from slimbert.bench.flops import Peak, measure_peak, precision_of, transformer_shape
from slimbert.bench.report import Report, Row, Slo, environment, recommend, relate_to_teacher
from slimbert.data import Columns, read_examples
from slimbert.errors import SlimbertError
from slimbert.export.onnx import MANIFEST_FILE, ONNX_FILE, Tolerances, export
from slimbert.export.runtime import OnnxClassifier, check_provider
from slimbert.provenance import METADATA_FILE, read_metadata

RUNTIMES = ("pytorch", "onnx")


@dataclass
class BenchConfig:
    """What to time and how. The first eight fields keep their order for positional callers.

    provider:      cpu or cuda (never a silent fallback)
    batch_sizes:   examples per request, each a row
    threads:       intra-op threads when `thread_counts` is empty (None = all cores)
    warmup:        uncounted requests before timing
    limit:         only the first N eval examples
    max_length:    truncation for own-length requests (None = each model's training length)
    isolate:       a fresh process per row
    runtimes:      pytorch and/or onnx
    lengths:       None = each request's own length; an int L = every request padded to L
    thread_counts: intra-op thread counts to sweep (empty = [threads])
    repeats:       passes over all requests after warm-up; figures are medians over passes
    io_binding:    on CUDA, also time ONNX models through IO binding with pre-allocated buffers
    peak:          measure the matmul peak for the physical-limit column
    slo:           e.g. "p99<=10ms": marks the recommended model together with max_f1_drop
    max_f1_drop:   metric points a recommended model may lose against the teacher
    """

    provider: str = "cpu"
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    threads: int | None = None
    warmup: int = 20
    limit: int | None = None
    max_length: int | None = None
    isolate: bool = True
    runtimes: tuple[str, ...] = RUNTIMES
    lengths: list[int | None] = field(default_factory=lambda: [None])
    thread_counts: list[int] = field(default_factory=list)
    repeats: int = 3
    io_binding: bool = True
    peak: bool = True
    slo: str | None = None
    max_f1_drop: float | None = None

    def threads_to_sweep(self) -> list[int]:
        return list(self.thread_counts) or [self.threads or os.cpu_count() or 1]

    def check(self) -> None:
        """Raise SlimbertError on a value a user gave wrong, before anything is timed."""
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise SlimbertError(f"--batch-sizes {self.batch_sizes}: give whole numbers ≥ 1")
        if not self.lengths or any(n is not None and n < 4 for n in self.lengths):
            raise SlimbertError(
                f"--lengths {self.lengths}: give 'own' or whole numbers ≥ 4 (room for [CLS] and [SEP])"
            )
        if any(t < 1 for t in self.threads_to_sweep()):
            raise SlimbertError(f"--threads {self.threads_to_sweep()}: give whole numbers ≥ 1")
        if self.repeats < 1:
            raise SlimbertError(f"--repeats {self.repeats}: give at least 1")
        unknown = set(self.runtimes) - set(RUNTIMES)
        if not self.runtimes or unknown:
            raise SlimbertError(
                f"--runtime {sorted(unknown) or '(none)'}: choose from {', '.join(RUNTIMES)}"
            )
        if self.max_f1_drop is not None and self.max_f1_drop < 0:
            raise SlimbertError(f"--max-f1-drop {self.max_f1_drop}: give points ≥ 0")
        if self.slo is not None:
            Slo.parse(self.slo)


@dataclass
class Target:
    """One thing to time: a model directory on a runtime."""

    name: str
    path: Path  # HF model dir (pytorch) or export dir (onnx)
    runtime: str
    method: str
    role: str
    precision: str = "fp32"
    config: dict = field(default_factory=dict)  # the model's config.json


@dataclass(frozen=True)
class Job:
    """One row of the sweep."""

    target: Target
    batch_size: int
    length: int | None  # None: own length
    threads: int
    io_binding: bool = False


class BoundSession:
    """An ONNX Runtime session fed through IO binding.

    Input buffers (B, L) int64 and the output buffer (B, C) are allocated on `device` the first
    time a request shape is seen and reused for every later request of that shape, so a request
    costs one host→device copy per input, the run, and one device→host copy of the logits.
    """

    def __init__(self, session, device: str = "cuda", num_labels: int | None = None):
        self.session = session
        self.device = device
        self.input_names = [i.name for i in session.get_inputs()]
        output = session.get_outputs()[0]
        self.output_name = output.name
        self.output_dtype = {
            "tensor(float)": np.float32,
            "tensor(float16)": np.float16,
            "tensor(double)": np.float64,
        }.get(output.type, np.float32)
        width = output.shape[-1] if isinstance(output.shape[-1], int) else num_labels
        if width is None:
            raise SlimbertError(
                f"{self.output_name}: the graph does not fix the number of labels; give num_labels"
            )
        self.num_labels = width
        self.bindings: dict[tuple[int, int], tuple] = {}

    def _allocate(self, shape: tuple[int, int]):
        import onnxruntime as ort

        buffers = {
            name: ort.OrtValue.ortvalue_from_shape_and_type(list(shape), np.int64, self.device, 0)
            for name in self.input_names
        }
        logits = ort.OrtValue.ortvalue_from_shape_and_type(
            [shape[0], self.num_labels], self.output_dtype, self.device, 0
        )  # (B, C)
        binding = self.session.io_binding()
        for name, value in buffers.items():
            binding.bind_ortvalue_input(name, value)
        binding.bind_ortvalue_output(self.output_name, logits)
        return binding, buffers

    def __call__(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """features: tokenizer output, each (B, L); returns logits (B, C) on the host."""
        shape = tuple(features[self.input_names[0]].shape)
        if shape not in self.bindings:
            self.bindings[shape] = self._allocate(shape)
        binding, buffers = self.bindings[shape]
        for name, value in buffers.items():
            value.update_inplace(np.ascontiguousarray(features[name], dtype=np.int64))
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


def _percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def _tokenize_requests(
    tokenizer, examples, batch_size: int, max_length: int, pad_to: int | None = None
) -> tuple[list[dict], list[float]]:
    """Tokenise each request (batch_size consecutive examples) on its own, timing each call.
    Requests are padded to their longest example, or to `pad_to` (truncating longer ones)."""
    requests, timings = [], []
    padding = "max_length" if pad_to else True
    for start in range(0, len(examples), batch_size):
        texts = examples.texts[start : start + batch_size]
        pairs = examples.text_pairs[start : start + batch_size] if examples.is_pair else None
        began = time.perf_counter()
        encoded = tokenizer(
            texts,
            pairs,
            truncation=True,
            max_length=pad_to or max_length,
            padding=padding,
            return_tensors="np",
        )
        timings.append((time.perf_counter() - began) * 1000)
        requests.append({k: v.astype(np.int64) for k, v in encoded.items()})  # each (B, L)
    return requests, timings


@dataclass
class _Loaded:
    infer: Callable[[dict], np.ndarray]  # features (B, L) -> logits (B, C)
    task: str
    label_map: object
    parameters: int | None
    file_mb: float


def _load(target: Target, provider: str, threads: int, io_binding: bool) -> _Loaded:
    import torch

    from slimbert.data import LabelMap
    from slimbert.models import load_classifier, model_label_map, model_task
    from slimbert.provenance import count_parameters

    torch.set_num_threads(threads)
    if target.runtime == "pytorch":
        model = load_classifier(target.path)
        model.eval()
        device = "cuda" if provider == "cuda" else "cpu"
        model.to(device)

        def infer(features: dict) -> np.ndarray:
            with torch.inference_mode():
                inputs = {k: torch.from_numpy(v).to(device) for k, v in features.items()}  # (B, L)
                logits = model(**inputs).logits  # (B, C)
                if device == "cuda":
                    torch.cuda.synchronize()
                return logits.float().cpu().numpy()

        file_mb = (target.path / "model.safetensors").stat().st_size / 2**20
        return _Loaded(
            infer, model_task(model), model_label_map(model), count_parameters(model), file_mb
        )
    if not target.config.get("id2label"):
        raise SlimbertError(
            f"{target.path}: config.json has no id2label; re-export the model with `slimbert export`"
        )
    label_map = LabelMap.from_config(target.config["id2label"])
    task = "regression" if len(label_map.id2label) == 1 else "classification"
    session = OnnxClassifier(target.path / ONNX_FILE, provider, threads)
    infer = (
        BoundSession(session.session, "cuda", len(label_map.id2label)) if io_binding else session
    )
    file_mb = (target.path / ONNX_FILE).stat().st_size / 2**20
    return _Loaded(infer, task, label_map, read_metadata(target.path).get("parameters"), file_mb)


def _median_and_spread(values: list[float]) -> tuple[float, float]:
    """Median over the repeats, and half their range (0 with one repeat)."""
    array = np.asarray(values)
    return float(np.median(array)), float((array.max() - array.min()) / 2)


def _measure(
    job: Job, eval_path: Path, columns: Columns, config: BenchConfig, peak_gflops: float | None
) -> dict:
    """Time one job over the eval set; returns a Row as a dict."""
    from slimbert.batches import label_targets
    from slimbert.metrics import compute_metrics
    from slimbert.models import load_tokenizer

    target = job.target
    loaded = _load(target, config.provider, job.threads, job.io_binding)
    tokenizer = load_tokenizer(target.path)
    max_length = (
        config.max_length or read_metadata(target.path).get("data", {}).get("max_length") or 128
    )
    examples = read_examples(eval_path, columns, task=loaded.task)
    if config.limit:
        examples = examples.subset(range(min(config.limit, len(examples))))
    targets = label_targets(examples, loaded.label_map, loaded.task)
    requests, tokenize_ms = _tokenize_requests(
        tokenizer, examples, job.batch_size, max_length, job.length
    )

    for i in range(config.warmup):
        loaded.infer(requests[i % len(requests)])
    passes, outputs = [], []
    for repeat in range(config.repeats):
        latencies = []
        for features in requests:
            began = time.perf_counter()
            logits = loaded.infer(features)
            latencies.append((time.perf_counter() - began) * 1000)
            if repeat == 0:
                outputs.append(logits)
        passes.append(np.asarray(latencies))
    metrics = compute_metrics(np.concatenate(outputs), targets, loaded.task, loaded.label_map)

    figures = {
        "total_ms": [float(p.sum()) for p in passes],
        "avg_ms": [float(p.mean()) for p in passes],
        "p50_ms": [_percentile(p, 50) for p in passes],
        "p90_ms": [_percentile(p, 90) for p in passes],
        "p99_ms": [_percentile(p, 99) for p in passes],
    }
    summary = {}
    for name, values in figures.items():
        summary[name], summary[f"{name}_spread"] = _median_and_spread(values)

    shape = transformer_shape(target.config)
    flops = (
        None if shape is None else sum(shape.request_flops(*r["input_ids"].shape) for r in requests)
    )
    achieved = None if flops is None else flops / (summary["total_ms"] / 1000) / 1e9
    row = Row(
        method=target.method,
        model=target.name,
        runtime=target.runtime,
        provider=config.provider,
        batch_size=job.batch_size,
        requests=len(requests),
        qps=len(examples) / (summary["total_ms"] / 1000) if summary["total_ms"] else float("nan"),
        metric_name=metrics.name,
        metric=metrics.main,
        accuracy=metrics.values.get("accuracy"),
        tokenize_avg_ms=float(np.mean(tokenize_ms)),
        tokenize_p99_ms=_percentile(np.asarray(tokenize_ms), 99),
        mean_tokens=float(np.mean([r["input_ids"].shape[1] for r in requests])),
        parameters=loaded.parameters,
        file_mb=loaded.file_mb,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        threads=job.threads,
        role=target.role,
        padding="own" if job.length is None else "fixed",
        seq_length=job.length,
        precision=target.precision,
        io_binding=job.io_binding,
        repeats=config.repeats,
        gflops_per_request=None if flops is None else flops / len(requests) / 1e9,
        achieved_gflops=achieved,
        peak_gflops=peak_gflops,
        peak_share=None if achieved is None or not peak_gflops else achieved / peak_gflops * 100,
        **summary,
    )
    return asdict(row)


def _read_config(folder: Path) -> dict:
    path = folder / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _targets_for(
    model_dir: Path, out: Path, eval_path: Path, columns: Columns, config: BenchConfig
) -> list[Target]:
    """An HF directory gives a PyTorch target and, exported and validated, an ONNX target;
    an export folder (model.onnx) gives an ONNX target only."""
    if not model_dir.is_dir():
        raise SlimbertError(f"--model {model_dir}: no such directory")
    meta = read_metadata(model_dir)
    name = meta.get("name") or model_dir.name
    method = meta.get("method", "model")
    role = meta.get("role", "student")
    if (model_dir / ONNX_FILE).is_file():
        manifest = (
            json.loads((model_dir / MANIFEST_FILE).read_text())
            if (model_dir / MANIFEST_FILE).is_file()
            else {}
        )
        return [
            Target(
                name,
                model_dir,
                "onnx",
                method,
                role,
                precision_of(manifest),
                _read_config(model_dir),
            )
        ]
    if not (model_dir / "model.safetensors").is_file():
        raise SlimbertError(
            f"--model {model_dir}: neither model.safetensors nor {ONNX_FILE}; give a model or export directory"
        )
    targets = []
    if "pytorch" in config.runtimes:
        targets.append(
            Target(name, model_dir, "pytorch", method, role, "fp32", _read_config(model_dir))
        )
    if "onnx" in config.runtimes:
        export_dir = out / "exports" / name
        existing = export_dir / MANIFEST_FILE
        if (
            not existing.is_file()
            or not (export_dir / METADATA_FILE).is_file()
            or read_metadata(export_dir).get("weights_sha256") != meta.get("weights_sha256")
        ):
            export(
                model_dir,
                eval_path,
                export_dir,
                columns,
                config.max_length,
                Tolerances(),
                provider="cpu",
            )
        manifest = json.loads((export_dir / MANIFEST_FILE).read_text())
        targets.append(
            Target(
                name,
                export_dir,
                "onnx",
                method,
                role,
                precision_of(manifest),
                _read_config(export_dir),
            )
        )
    return targets


def _check_lengths(targets: list[Target], lengths: list[int | None]) -> None:
    fixed = [n for n in lengths if n is not None]
    for target in targets:
        limit = target.config.get("max_position_embeddings")
        if fixed and isinstance(limit, int) and max(fixed) > limit:
            raise SlimbertError(
                f"--lengths {max(fixed)}: {target.name} takes at most {limit} tokens; give lengths up to {limit}"
            )


def _distinct_names(targets: list[Target]) -> None:
    """Exports of one model (fp32, int8, fused) carry its metadata name; where two targets on
    the same runtime share a name, each is named by its folder instead (folders are distinct)."""
    counts: dict[tuple[str, str], int] = {}
    for target in targets:
        counts[(target.name, target.runtime)] = counts.get((target.name, target.runtime), 0) + 1
    for target in targets:
        if counts[(target.name, target.runtime)] > 1:
            target.name = target.path.name
    named = [(t.name, t.runtime) for t in targets]
    for name, runtime in named:
        if named.count((name, runtime)) > 1:
            raise SlimbertError(
                f"two --model directories give {runtime} models named {name!r}; rename one directory"
            )


def _measure_peaks(jobs: list[Job], config: BenchConfig) -> dict[tuple[str, int], Peak]:
    """The matmul peak for every (precision, threads) a transformer row runs at."""
    wanted = dict.fromkeys(
        (j.target.precision, j.threads)
        for j in jobs
        if transformer_shape(j.target.config) is not None
    )
    peaks = {}
    for precision, threads in wanted:
        peak = measure_peak(precision, config.provider, threads)
        if peak is not None:
            peaks[(precision, threads)] = peak
    return peaks


def bench(
    model_dirs: list[Path],
    eval_path: Path,
    out: Path,
    columns: Columns = Columns(),
    config: BenchConfig | None = None,
    title: str | None = None,
) -> Report:
    """Time every model over the sweep; return the report (rendered by report.py)."""
    from tqdm.auto import tqdm

    config = config or BenchConfig()
    check_provider(config.provider)
    config.check()
    if not eval_path.is_file():
        raise SlimbertError(f"--eval {eval_path}: no such file")
    names = [Path(m).name for m in model_dirs]
    if len(set(names)) != len(names):
        raise SlimbertError(
            "two --model directories share a name; give each model a distinct directory name"
        )
    targets: list[Target] = []
    for model_dir in model_dirs:
        targets += _targets_for(Path(model_dir), out, eval_path, columns, config)
    _check_lengths(targets, config.lengths)
    _distinct_names(targets)
    bindings = (False, True) if config.provider == "cuda" and config.io_binding else (False,)
    jobs = [
        Job(t, b, n, threads, bound)
        for t in targets
        for bound in (bindings if t.runtime == "onnx" else (False,))
        for b in config.batch_sizes
        for n in config.lengths
        for threads in config.threads_to_sweep()
    ]
    peaks = _measure_peaks(jobs, config) if config.peak else {}
    rows: list[Row] = []
    progress = tqdm(jobs, desc="bench", dynamic_ncols=True)
    for job in progress:
        progress.set_postfix(
            model=job.target.name,
            runtime=job.target.runtime,
            batch=job.batch_size,
            length=job.length or "own",
            threads=job.threads,
        )
        peak = peaks.get((job.target.precision, job.threads))
        arguments = (job, eval_path, columns, config, peak.gflops if peak else None)
        if config.isolate:
            context = multiprocessing.get_context("spawn")
            with futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                payload = pool.submit(_measure, *arguments).result()
        else:
            payload = _measure(*arguments)
        rows.append(Row(**payload))

    teacher = relate_to_teacher(rows)
    notes = []
    if teacher is not None:
        notes.append(
            f"vs Teacher: {teacher.metric_name} points against {teacher.model} at the same length; speed-up: the teacher's Avg ms in PyTorch over the row's, at the same batch, length and threads."
        )
    if rows and rows[0].metric_name != "f1":
        notes.append(f"The F1 column holds {rows[0].metric_name}, this task's main metric.")
    notes.append(
        f"Avg ms is model time per request; tokenisation is timed apart (Tokenize ms). {config.warmup} warm-up requests, then {config.repeats} passes over all requests: each figure is the median over the passes ± half their range."
    )
    if any(n is not None for n in config.lengths):
        notes.append(
            "Rows 'padded to L' pad every request to L and truncate longer examples, so their F1 can differ from own-length rows."
        )
    if peaks:
        notes.append(
            "Physical limit: matmul FLOPs per request counted from each model's config (embeddings, norms and softmax left out; padding counted), achieved FLOP/s over the timed requests as a share of this machine's measured matmul peak at the row's precision and threads."
        )
    if config.provider == "cuda" and config.io_binding:
        notes.append(
            "ONNX rows on CUDA are timed fed from host arrays and again through IO binding with buffers allocated once per request shape."
        )
    elif config.provider != "cuda":
        notes.append(
            "IO binding applies on CUDA only; on the CPU the session reads the numpy inputs in place."
        )
    extra: dict = {
        "sweep": {
            "batch_sizes": config.batch_sizes,
            "lengths": ["own" if n is None else n for n in config.lengths],
            "threads": config.threads_to_sweep(),
            "repeats": config.repeats,
            "warmup": config.warmup,
            "limit": config.limit,
        },
        "peaks": [asdict(p) for p in peaks.values()],
    }
    recommendation = recommend(
        rows, Slo.parse(config.slo) if config.slo else None, config.max_f1_drop
    )
    if recommendation is not None:
        extra["recommendation"] = recommendation.to_dict()
    threads = config.threads_to_sweep()
    return Report(
        title or f"slimbert bench on {eval_path.name}",
        rows,
        environment(threads[0] if len(threads) == 1 else threads),
        notes,
        extra,
    )
