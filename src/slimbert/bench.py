"""Latency and quality of each model, PyTorch eager and its ONNX export, one request at a time.

Protocol (benchmarks/ and ../shared/BENCHMARKS.md): one request per eval example in file order;
each request padded to its own length; `warmup` requests first, not counted; intra-op threads =
the machine's cores unless set; PyTorch under `torch.inference_mode()` with the same threads.
Tokenisation is timed apart from the model. Each model runs in a fresh process by default so
that its peak memory is its own and earlier models leave nothing behind.
"""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from slimbert.data import Columns, read_examples
from slimbert.errors import SlimbertError
from slimbert.export.onnx import MANIFEST_FILE, ONNX_FILE, Tolerances, export
from slimbert.export.runtime import OnnxClassifier, check_provider
from slimbert.models import METADATA_FILE, read_metadata
from slimbert.report import Report, Row, environment


@dataclass
class BenchConfig:
    """provider: cpu or cuda (never a silent fallback); batch_sizes: request sizes to measure;
    threads: intra-op threads (None = all cores); warmup: uncounted requests first;
    limit: only the first N eval examples; max_length: truncation; isolate: a process per model."""

    provider: str = "cpu"
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    threads: int | None = None
    warmup: int = 20
    limit: int | None = None
    max_length: int | None = None
    isolate: bool = True
    runtimes: tuple[str, ...] = ("pytorch", "onnx")


@dataclass
class Target:
    """One thing to time: a model directory on a runtime."""

    name: str
    path: Path  # HF model dir (pytorch) or export dir (onnx)
    runtime: str
    method: str
    role: str


def _percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def _tokenize_requests(tokenizer, examples, batch_size: int, max_length: int) -> tuple[list[dict], list[float]]:
    """Tokenise each request (batch_size consecutive examples) on its own, timing each call."""
    requests, timings = [], []
    for start in range(0, len(examples), batch_size):
        texts = examples.texts[start : start + batch_size]
        pairs = examples.text_pairs[start : start + batch_size] if examples.is_pair else None
        began = time.perf_counter()
        encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=True, return_tensors="np")
        timings.append((time.perf_counter() - began) * 1000)
        requests.append({k: v.astype(np.int64) for k, v in encoded.items()})
    return requests, timings


def _measure(target: Target, eval_path: Path, columns: Columns, config: BenchConfig, batch_size: int) -> dict:
    """Run one target over the eval set; returns a Row as a dict plus the logits."""
    import torch

    from slimbert.evaluate import compute_metrics, label_targets
    from slimbert.models import count_parameters, load_classifier, load_tokenizer, model_label_map, model_task

    threads = config.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    tokenizer = load_tokenizer(target.path)
    if target.runtime == "pytorch":
        model = load_classifier(target.path)
        model.eval()
        device = "cuda" if config.provider == "cuda" else "cpu"
        model.to(device)
        task, label_map = model_task(model), model_label_map(model)
        parameters = count_parameters(model)
        file_mb = (target.path / "model.safetensors").stat().st_size / 2**20

        def infer(features: dict) -> np.ndarray:
            with torch.inference_mode():
                inputs = {k: torch.from_numpy(v).to(device) for k, v in features.items()}
                logits = model(**inputs).logits
                if device == "cuda":
                    torch.cuda.synchronize()
                return logits.float().cpu().numpy()
    else:
        from transformers import AutoConfig

        config_hf = AutoConfig.from_pretrained(str(target.path))
        session = OnnxClassifier(target.path / ONNX_FILE, config.provider, threads)
        task = "regression" if config_hf.num_labels == 1 else "classification"
        from slimbert.data import LabelMap

        label_map = LabelMap.from_config(config_hf.id2label)
        meta = read_metadata(target.path)
        parameters = meta.get("parameters")
        file_mb = (target.path / ONNX_FILE).stat().st_size / 2**20

        def infer(features: dict) -> np.ndarray:
            return session(features)

    max_length = config.max_length or read_metadata(target.path).get("data", {}).get("max_length") or 128
    examples = read_examples(eval_path, columns, task=task)
    if config.limit:
        examples = examples.subset(range(min(config.limit, len(examples))))
    targets = label_targets(examples, label_map, task)
    requests, tokenize_ms = _tokenize_requests(tokenizer, examples, batch_size, max_length)

    for i in range(min(config.warmup, len(requests)) if config.warmup else 0):
        infer(requests[i % len(requests)])
    latencies, outputs = [], []
    for features in requests:
        began = time.perf_counter()
        logits = infer(features)
        latencies.append((time.perf_counter() - began) * 1000)
        outputs.append(logits)
    latencies_arr = np.asarray(latencies)
    logits = np.concatenate(outputs)
    metrics = compute_metrics(logits, targets, task, label_map)
    total = float(latencies_arr.sum())
    row = Row(
        method=target.method,
        model=target.name,
        runtime=target.runtime,
        provider=config.provider,
        batch_size=batch_size,
        requests=len(requests),
        total_ms=total,
        avg_ms=total / len(requests),
        p50_ms=_percentile(latencies_arr, 50),
        p90_ms=_percentile(latencies_arr, 90),
        p99_ms=_percentile(latencies_arr, 99),
        qps=len(examples) / (total / 1000) if total else float("nan"),
        metric_name=metrics.name,
        metric=metrics.main,
        accuracy=metrics.values.get("accuracy"),
        tokenize_avg_ms=float(np.mean(tokenize_ms)),
        mean_tokens=float(np.mean([r["input_ids"].shape[1] for r in requests])),
        parameters=parameters,
        file_mb=file_mb,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        threads=threads,
        role=target.role,
    )
    return asdict(row)


def _targets_for(model_dir: Path, out: Path, eval_path: Path, columns: Columns, config: BenchConfig) -> list[Target]:
    """An HF directory gives a PyTorch target and, exported and validated, an ONNX target;
    an export folder (model.onnx) gives an ONNX target only."""
    if not model_dir.is_dir():
        raise SlimbertError(f"--model {model_dir}: no such directory")
    meta = read_metadata(model_dir)
    name = meta.get("name") or model_dir.name
    method = meta.get("method", "model")
    role = meta.get("role", "student")
    targets = []
    if (model_dir / ONNX_FILE).is_file():
        return [Target(name, model_dir, "onnx", method, role)]
    if not (model_dir / "model.safetensors").is_file():
        raise SlimbertError(f"--model {model_dir}: neither model.safetensors nor {ONNX_FILE}; give a model or export directory")
    if "pytorch" in config.runtimes:
        targets.append(Target(name, model_dir, "pytorch", method, role))
    if "onnx" in config.runtimes:
        export_dir = out / "exports" / name
        existing = export_dir / MANIFEST_FILE
        if not existing.is_file() or not (export_dir / METADATA_FILE).is_file() or read_metadata(export_dir).get("weights_sha256") != meta.get("weights_sha256"):
            export(model_dir, eval_path, export_dir, columns, config.max_length, Tolerances(), provider="cpu")
        targets.append(Target(name, export_dir, "onnx", method, role))
    return targets


def bench(model_dirs: list[Path], eval_path: Path, out: Path, columns: Columns = Columns(), config: BenchConfig = BenchConfig(), title: str | None = None) -> Report:
    """Time every model on every runtime and batch size; return the report (rendered by report.py)."""
    from tqdm.auto import tqdm

    check_provider(config.provider)
    if not eval_path.is_file():
        raise SlimbertError(f"--eval {eval_path}: no such file")
    names = [Path(m).name for m in model_dirs]
    if len(set(names)) != len(names):
        raise SlimbertError("two --model directories share a name; give each model a distinct directory name")
    targets: list[Target] = []
    for model_dir in model_dirs:
        targets += _targets_for(Path(model_dir), out, eval_path, columns, config)
    jobs = [(t, b) for t in targets for b in config.batch_sizes]
    rows: list[Row] = []
    progress = tqdm(jobs, desc="bench", dynamic_ncols=True)
    for target, batch_size in progress:
        progress.set_postfix(model=target.name, runtime=target.runtime, batch=batch_size)
        if config.isolate:
            context = multiprocessing.get_context("spawn")
            with futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                payload = pool.submit(_measure, target, eval_path, columns, config, batch_size).result()
        else:
            payload = _measure(target, eval_path, columns, config, batch_size)
        rows.append(Row(**payload))
    teacher = next((r for r in rows if r.role == "teacher" and r.runtime == "pytorch"), None) or next((r for r in rows if r.role == "teacher"), None)
    notes = []
    if teacher is not None:
        for row in rows:
            row.vs_teacher = row.metric - teacher.metric
        notes.append(f"vs Teacher: {teacher.metric_name} points against {teacher.model} ({teacher.runtime}).")
    notes.append("Avg ms is model time per request; tokenisation is timed apart (Tokenize ms).")
    return Report(title or f"slimbert bench on {eval_path.name}", rows, environment(config.threads or os.cpu_count()), notes)
