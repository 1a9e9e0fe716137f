"""Timing one row of the sweep: one model on one runtime at one batch size, length and thread
count, over the eval set.

Protocol (../shared/BENCHMARKS.md): one request per `batch_size` eval examples in file order;
`warmup` requests first, not counted; then every request `repeats` times over, and each figure
is the median over the repeats with half their range as its spread. Tokenisation is timed apart
from the model. PyTorch runs under `torch.inference_mode()` with the same intra-op threads as
ONNX Runtime. The quality figures come from the first pass's logits.

On CUDA an ONNX model may be fed through IO binding (`BoundSession`): input and output buffers
allocated once per request shape on the device.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from slimbert.batches import label_targets
from slimbert.bench.config import BenchConfig
from slimbert.bench.flops import transformer_shape
from slimbert.bench.report import Row
from slimbert.bench.targets import Target
from slimbert.data import Columns, LabelMap, read_examples
from slimbert.errors import SlimbertError
from slimbert.export.runtime import OnnxClassifier
from slimbert.families import forward_inputs
from slimbert.files import ONNX_FILE
from slimbert.hub import weights_bytes
from slimbert.metrics import Scoring, compute_metrics
from slimbert.models import load_classifier, load_tokenizer, model_label_map, model_task
from slimbert.provenance import count_parameters
from slimbert.record import read_record


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


# the timed figures of a row, each a median over passes with its spread (`<name>_spread`)
FIGURES = ("total_ms", "avg_ms", "p50_ms", "p90_ms", "p99_ms")
# figures that are a rate over the total time: scaled with it when passes are merged
RATES = ("qps", "achieved_gflops", "peak_share")


def merge_passes(payloads: list[dict]) -> dict:
    """One row from passes timed apart (one a round when rows alternate): each timed figure the
    median over the passes ± half their range, the rates over the median total; quality,
    tokenisation and sizes from the first pass, peak memory the largest."""
    if len(payloads) == 1:
        return payloads[0]
    first = payloads[0]
    merged = dict(first)
    for name in FIGURES:
        merged[name], merged[f"{name}_spread"] = _median_and_spread([p[name] for p in payloads])
    scale = first["total_ms"] / merged["total_ms"] if merged["total_ms"] else float("nan")
    for name in RATES:
        if first.get(name) is not None:
            merged[name] = first[name] * scale
    merged["peak_rss_mb"] = max(p["peak_rss_mb"] for p in payloads)
    merged["repeats"] = sum(p["repeats"] for p in payloads)
    merged["avg_ms_rounds"] = [p["avg_ms"] for p in payloads]
    return merged


def _median_and_spread(values: list[float]) -> tuple[float, float]:
    """Median over the repeats, and half their range (0 with one repeat)."""
    array = np.asarray(values)
    return float(np.median(array)), float((array.max() - array.min()) / 2)


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
    torch.set_num_threads(threads)
    if target.runtime == "pytorch":
        model = load_classifier(target.path)
        model.eval()
        device = "cuda" if provider == "cuda" else "cpu"
        model.to(device, torch.float16 if target.precision == "fp16" else torch.float32)
        taken = forward_inputs(model)  # a tokenizer may make inputs the model does not read

        def infer(features: dict) -> np.ndarray:
            with torch.inference_mode():
                inputs = {
                    k: torch.from_numpy(v).to(device) for k, v in features.items() if k in taken
                }  # (B, L)
                logits = model(**inputs).logits  # (B, C)
                if device == "cuda":
                    torch.cuda.synchronize()
                return logits.float().cpu().numpy()

        file_mb = weights_bytes(target.path) / 2**20
        return _Loaded(
            infer, model_task(model), model_label_map(model), count_parameters(model), file_mb
        )
    if not target.config.get("id2label"):
        raise SlimbertError(
            f"{target.path}: config.json has no id2label; "
            "re-export the model with `slimbert export`"
        )
    label_map = LabelMap.from_config(target.config["id2label"])
    task = "regression" if len(label_map.id2label) == 1 else "classification"
    session = OnnxClassifier(target.path / ONNX_FILE, provider, threads)
    infer = (
        BoundSession(session.session, "cuda", len(label_map.id2label)) if io_binding else session
    )
    file_mb = (target.path / ONNX_FILE).stat().st_size / 2**20
    return _Loaded(infer, task, label_map, read_record(target.path).parameters, file_mb)


def _time_passes(
    infer: Callable[[dict], np.ndarray], requests: list[dict], warmup: int, repeats: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`warmup` requests untimed, then `repeats` passes over every request: each pass's
    latencies in ms, one per request, and the first pass's logits, each (B, C)."""
    for i in range(warmup):
        infer(requests[i % len(requests)])
    passes, outputs = [], []
    for repeat in range(repeats):
        latencies = []
        for features in requests:
            began = time.perf_counter()
            logits = infer(features)
            latencies.append((time.perf_counter() - began) * 1000)
            if repeat == 0:
                outputs.append(logits)
        passes.append(np.asarray(latencies))
    return passes, outputs


def _summarize(passes: list[np.ndarray]) -> dict[str, float]:
    """Each of FIGURES over the passes' latencies: its median, and half its range as
    `<name>_spread`."""
    figures = {
        "total_ms": [float(p.sum()) for p in passes],
        "avg_ms": [float(p.mean()) for p in passes],
        "p50_ms": [_percentile(p, 50) for p in passes],
        "p90_ms": [_percentile(p, 90) for p in passes],
        "p99_ms": [_percentile(p, 99) for p in passes],
    }
    assert tuple(figures) == FIGURES
    summary = {}
    for name, values in figures.items():
        summary[name], summary[f"{name}_spread"] = _median_and_spread(values)
    return summary


def measure(
    job: Job, eval_path: Path, columns: Columns, config: BenchConfig, peak_gflops: float | None
) -> dict:
    """Time one job over the eval set; returns a Row as a dict (it crosses a process boundary
    when rows run isolated)."""
    target = job.target
    loaded = _load(target, config.provider, job.threads, job.io_binding)
    tokenizer = load_tokenizer(target.path)
    max_length = config.max_length or read_record(target.path).max_length or 128
    examples = read_examples(eval_path, columns, task=loaded.task)
    if config.limit:
        examples = examples.subset(range(min(config.limit, len(examples))))
    targets = label_targets(examples, loaded.label_map, loaded.task)
    requests, tokenize_ms = _tokenize_requests(
        tokenizer, examples, job.batch_size, max_length, job.length
    )

    passes, outputs = _time_passes(loaded.infer, requests, config.warmup, config.repeats)
    scoring = Scoring(config.metric, config.positive_label)
    metrics = compute_metrics(
        np.concatenate(outputs), targets, loaded.task, loaded.label_map, scoring
    )
    summary = _summarize(passes)

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
        f1=metrics.values.get("f1"),
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
