"""`slimbert bench`: latency and quality of each model, PyTorch eager and its ONNX export, over a
sweep, every combination timed as its own row:

    models × runtimes (pytorch, onnx) × batch sizes × lengths × intra-op threads [× IO binding]

    length "own"  each request padded to its own longest example: input (B, L_request)
    length L      every request padded (and truncated) to L:       input (B, L)

    --model dirs ─ targets.py ─ Targets ─┬─ timing.py, one fresh process per row ─ Rows
                                         └─ flops.py: matmul peak per precision and threads
    Rows ─ decide.py: vs teacher, speed-up, recommendation ─ Report ─ render.py: files

Each model runs in a fresh process by default so that its peak memory is its own and earlier
models leave nothing behind. On CUDA, ONNX models are timed twice: fed from host arrays, and
through IO binding. Each transformer row also carries its matmul FLOPs per request
(bench/flops.py) and the share of the machine's measured matmul peak it reaches, at the row's
precision and thread count.
"""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import time
from dataclasses import asdict, replace
from pathlib import Path

from tqdm.auto import tqdm

from slimbert.bench.config import BenchConfig
from slimbert.bench.decide import Slo, recommend, relate_to_teacher
from slimbert.bench.environment import environment
from slimbert.bench.flops import Peak, measure_peak, transformer_shape
from slimbert.bench.report import Report, Row
from slimbert.bench.targets import Target, find_targets
from slimbert.bench.timing import Job, measure, merge_passes
from slimbert.cards import add_bench
from slimbert.data import Columns, data_exists
from slimbert.errors import SlimbertError
from slimbert.export.runtime import check_provider


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


def _notes(rows: list[Row], teacher: Row | None, config: BenchConfig, peaks: dict) -> list[str]:
    """What a reader needs to read the tables right: the teacher measured against, what the
    figures are, and what the sweep's settings mean."""
    notes = []
    if teacher is not None:
        notes.append(
            f"vs Teacher: {teacher.metric_name} points against {teacher.model} at the same "
            "length; speed-up: the teacher's Avg ms in PyTorch over the row's, at the same "
            "batch, length and threads."
        )
    if rows and rows[0].metric_name != "f1":
        notes.append(
            f"The chosen metric is {rows[0].metric_name}: vs Teacher and the recommendation use "
            "it; the F1 column is kept beside it."
        )
    notes.append(
        "Avg ms is model time per request; tokenisation is timed apart (Tokenize ms). "
        f"{config.warmup} warm-up requests, then {config.repeats} passes over all requests: "
        "each figure is the median over the passes ± half their range."
        + (
            " The passes alternate: each round times one pass of every row in turn (warm-up "
            "again first), so the machine's drift within the run falls on every row alike."
            if config.alternate and config.repeats > 1
            else ""
        )
    )
    if any(n is not None for n in config.lengths):
        notes.append(
            "Rows 'padded to L' pad every request to L and truncate longer examples, "
            "so their F1 can differ from own-length rows."
        )
    if peaks:
        notes.append(
            "Physical limit: matmul FLOPs per request counted from each model's config "
            "(embeddings, norms and softmax left out; padding counted), achieved FLOP/s over "
            "the timed requests as a share of this machine's measured matmul peak at the row's "
            "precision and threads."
        )
    if config.provider == "cuda" and config.io_binding:
        notes.append(
            "ONNX rows on CUDA are timed fed from host arrays and again through IO binding "
            "with buffers allocated once per request shape."
        )
    elif config.provider != "cuda":
        notes.append(
            "IO binding applies on CUDA only; "
            "on the CPU the session reads the numpy inputs in place."
        )
    return notes


def _sweep_jobs(targets: list[Target], config: BenchConfig) -> list[Job]:
    """One job per row of the sweep, in the order they are timed; on CUDA with `io_binding`,
    each ONNX target runs twice: fed from host arrays and through IO binding."""
    bindings = (False, True) if config.provider == "cuda" and config.io_binding else (False,)
    return [
        Job(t, b, n, threads, bound)
        for t in targets
        for bound in (bindings if t.runtime == "onnx" else (False,))
        for b in config.batch_sizes
        for n in config.lengths
        for threads in config.threads_to_sweep()
    ]


def _time_rows(
    jobs: list[Job],
    eval_path: Path,
    columns: Columns,
    config: BenchConfig,
    peaks: dict[tuple[str, int], Peak],
) -> list[Row]:
    """Time every job for `config.repeats` passes; one row per job, in the jobs' order."""
    # Alternating (the protocol): round r times one pass of every row, so drift within the run
    # reaches every row alike; merge_passes makes each row's medians from its rounds.
    rounds = config.repeats if config.alternate else 1
    per_call = replace(config, repeats=1) if rounds > 1 else config
    passes: list[list[dict]] = [[] for _ in jobs]
    progress = tqdm(total=rounds * len(jobs), desc="bench", dynamic_ncols=True)
    for _ in range(rounds):
        for job, done in zip(jobs, passes, strict=True):
            progress.set_postfix(
                model=job.target.name,
                runtime=job.target.runtime,
                batch=job.batch_size,
                length=job.length or "own",
                threads=job.threads,
            )
            peak = peaks.get((job.target.precision, job.threads))
            arguments = (job, eval_path, columns, per_call, peak.gflops if peak else None)
            if config.isolate:
                context = multiprocessing.get_context("spawn")
                with futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                    done.append(pool.submit(measure, *arguments).result())
            else:
                done.append(measure(*arguments))
            progress.update()
    progress.close()
    return [Row(**merge_passes(done)) for done in passes]


def bench(
    model_dirs: list[Path],
    eval_path: Path,
    out: Path,
    columns: Columns = Columns(),
    config: BenchConfig | None = None,
    title: str | None = None,
) -> Report:
    """Time every model over the sweep; return the report (written by bench/render.py)."""
    config = config or BenchConfig()
    check_provider(config.provider)
    config.check()
    if not data_exists(eval_path):
        raise SlimbertError(f"--eval {eval_path}: no such file")
    targets = find_targets(model_dirs, out, eval_path, columns, config)
    jobs = _sweep_jobs(targets, config)
    peaks = _measure_peaks(jobs, config) if config.peak else {}
    rows = _time_rows(jobs, eval_path, columns, config, peaks)

    teacher = relate_to_teacher(rows)
    extra: dict = {
        "sweep": {
            "batch_sizes": config.batch_sizes,
            "lengths": ["own" if n is None else n for n in config.lengths],
            "threads": config.threads_to_sweep(),
            "repeats": config.repeats,
            "alternate": config.alternate,
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
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for target in targets:  # each model and export folder's card shows its latest figures
        mine = [asdict(row) for job, row in zip(jobs, rows, strict=True) if job.target is target]
        add_bench(target.path, mine, eval_path, when)
    threads = config.threads_to_sweep()
    return Report(
        title or f"slimbert bench on {eval_path.name}",
        rows,
        environment(threads[0] if len(threads) == 1 else threads),
        _notes(rows, teacher, config, peaks),
        extra,
    )
