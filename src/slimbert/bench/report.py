"""The one Report type and what is decided from it: renderers (Markdown, JSON, CSV, HTML, plots),
the teacher-relative figures, the recommendation under an SLO, and the comparison of two runs.

Every stage that measures something returns a `Report`; only this module turns it into files.
Markdown and HTML are drawn from the same `Table`s, so the two never disagree.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from slimbert.errors import SlimbertError
from slimbert.files import write_json_atomic, write_text_atomic

STATISTICS = ("avg", "p50", "p90", "p99")


@dataclass
class Row:
    """One model on one runtime at one point of the sweep. Latencies in milliseconds, F1 in
    percent. A figure's `_spread` is half the range of that figure over the repeats."""

    method: str
    model: str
    runtime: str  # "pytorch" or "onnx"
    provider: str
    batch_size: int
    requests: int
    total_ms: float
    avg_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    qps: float
    metric_name: str
    metric: float
    accuracy: float | None = None
    vs_teacher: float | None = None  # metric points against the teacher at the same length
    tokenize_avg_ms: float | None = None
    mean_tokens: float | None = None  # mean L of the (B, L) requests, padding included
    parameters: int | None = None
    file_mb: float | None = None
    peak_rss_mb: float | None = None
    threads: int | None = None
    role: str = "student"
    padding: str = (
        "own"  # "own": each request padded to its longest example; "fixed": to seq_length
    )
    seq_length: int | None = None
    precision: str = "fp32"
    io_binding: bool = False
    repeats: int = 1
    total_ms_spread: float | None = None
    avg_ms_spread: float | None = None
    p50_ms_spread: float | None = None
    p90_ms_spread: float | None = None
    p99_ms_spread: float | None = None
    tokenize_p99_ms: float | None = None
    speedup: float | None = None  # the teacher's PyTorch Avg ms over this row's, same sweep point
    gflops_per_request: float | None = None  # matmul GFLOPs of a mean request (slimbert.flops)
    achieved_gflops: float | None = None  # GFLOP/s over the timed requests
    peak_gflops: float | None = None  # measured matmul peak at this precision and thread count
    peak_share: float | None = None  # achieved as a percent of peak

    def key(self) -> tuple:
        """What a row is, apart from what was measured: rows of two runs match on this."""
        return (
            self.model,
            self.runtime,
            self.provider,
            self.batch_size,
            self.padding,
            self.seq_length,
            self.threads,
            self.precision,
            self.io_binding,
        )

    def length_label(self) -> str:
        return f"padded to {self.seq_length}" if self.padding == "fixed" else "own length"

    def label(self, full: bool = False) -> str:
        """'kd-2L (onnx, batch 4, padded to 64, 2 threads)'; `full` names every coordinate."""
        parts = [self.runtime]
        if full or self.provider != "cpu":
            parts.append(self.provider)
        if full or self.precision != "fp32":
            parts.append(self.precision)
        if full or self.batch_size != 1:
            parts.append(f"batch {self.batch_size}")
        if full or self.padding != "own":
            parts.append(self.length_label())
        if full and self.threads:
            parts.append(f"{self.threads} thread{'s' if self.threads != 1 else ''}")
        if self.io_binding:
            parts.append("IO binding")
        return f"{self.model} ({', '.join(parts)})"

    def latency(self, statistic: str) -> float:
        return getattr(self, f"{statistic}_ms")

    def spread(self, statistic: str) -> float:
        return getattr(self, f"{statistic}_ms_spread") or 0.0


def _gpu_record() -> dict | None:
    """GPU model, driver and memory from nvidia-smi, CUDA from torch; None without a GPU."""
    gpu = None
    if shutil.which("nvidia-smi"):
        try:
            line = (
                subprocess.run(
                    [
                        "nvidia-smi",
                        "--query-gpu=name,driver_version,memory.total",
                        "--format=csv,noheader",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=10,
                )
                .stdout.strip()
                .splitlines()
            )
            if line:
                name, driver, memory = (part.strip() for part in line[0].split(",", 2))
                gpu = {"name": name, "driver": driver, "memory": memory, "count": len(line)}
        except (OSError, subprocess.SubprocessError, ValueError):
            gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = {**(gpu or {"name": torch.cuda.get_device_name(0)}), "cuda": torch.version.cuda}
    except Exception:  # pragma: no cover - a broken CUDA install must not stop a CPU report
        pass
    return gpu


CPU_FLAGS = {
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "sve",
}
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "ORT_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
)


def environment(threads: int | list[int] | None = None) -> dict:
    """Machine, libraries, thread settings and revision: what every result file must start with."""
    from slimbert.provenance import library_versions

    cpu_model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu_model in ("unknown", "", platform.machine()):
                cpu_model = line.split(":", 1)[1].strip()
            if line.startswith(("flags", "Features")):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    memory_gb = None
    try:
        memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    try:
        revision = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).parent,
            ).stdout.strip()
            or None
        )
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).parent,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        revision, dirty = None, False
    try:
        import onnxruntime

        providers = onnxruntime.get_available_providers()
    except ImportError:  # pragma: no cover
        providers = []
    try:
        import torch

        torch_threads = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        torch_threads = None
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["slimbert" if i == 0 else a for i, a in enumerate(sys.argv)]),
        "git_revision": (revision + ("-dirty" if dirty else "")) if revision else None,
        "cpu": cpu_model,
        "cpu_flags": sorted(flags & CPU_FLAGS),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "memory_gb": memory_gb,
        "gpu": _gpu_record(),
        "threads": threads,
        "thread_settings": {
            "torch": torch_threads,
            **{name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ},
        },
        "onnxruntime_providers": providers,
        "versions": library_versions(),
    }


@dataclass
class Report:
    title: str
    rows: list[Row]
    environment: dict
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # peaks, sweep, recommendation: plain JSON

    def to_dict(self) -> dict:
        return {
            "title": self.title,
            "environment": self.environment,
            "rows": [asdict(r) for r in self.rows],
            "notes": self.notes,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, payload: dict) -> Report:
        """Reads reports of this and earlier versions; fields a later version adds are ignored."""
        known = {f.name for f in fields(Row)}
        rows = [Row(**{k: v for k, v in r.items() if k in known}) for r in payload["rows"]]
        return cls(
            payload["title"],
            rows,
            payload["environment"],
            payload.get("notes", []),
            payload.get("extra", {}),
        )

    @classmethod
    def read(cls, path: str | Path) -> Report:
        """A report.json, or a report folder holding one."""
        import json

        path = Path(path)
        if path.is_dir():
            path = path / "report.json"
        try:
            payload = json.loads(path.read_text())
            return cls.from_dict(payload)
        except FileNotFoundError:
            raise SlimbertError(
                f"{path}: no such file; give the report.json that `slimbert bench` wrote"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise SlimbertError(
                f"{path}: not a slimbert bench report ({exc}); give the report.json that `slimbert bench` wrote"
            ) from None


# ---------------------------------------------------------------------------------------------
# Figures against the teacher


def _sweep_point(row: Row) -> tuple:
    return (row.provider, row.batch_size, row.padding, row.seq_length, row.threads)


def relate_to_teacher(rows: list[Row]) -> Row | None:
    """Fill `vs_teacher` (metric points) and `speedup` (teacher Avg ms / row Avg ms) of every
    row against the teacher's row at the same provider, batch, length and threads, PyTorch
    first: the teacher as it runs before slimbert. Returns the teacher row that batch-1 rows
    are measured against (None without a teacher)."""
    teachers = [r for r in rows if r.role == "teacher"]
    if not teachers:
        return None
    ranked = sorted(teachers, key=lambda r: (r.runtime != "pytorch", r.io_binding))
    by_point: dict[tuple, Row] = {}
    for teacher in ranked:
        by_point.setdefault(_sweep_point(teacher), teacher)
    for row in rows:
        teacher = by_point.get(_sweep_point(row))
        same_length = [
            t for t in ranked if (t.padding, t.seq_length) == (row.padding, row.seq_length)
        ]
        metric_teacher = teacher or (same_length[0] if same_length else ranked[0])
        row.vs_teacher = row.metric - metric_teacher.metric
        row.speedup = (
            teacher.avg_ms / row.avg_ms if teacher is not None and row.avg_ms > 0 else None
        )
    return ranked[0]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points (latency, metric) that no other point beats on both: lower latency and
    higher metric is better; a point equal to another on both stays on the front."""
    front = []
    for i, (latency, metric) in enumerate(points):
        dominated = any(
            (l2 <= latency and m2 >= metric) and (l2 < latency or m2 > metric)
            for j, (l2, m2) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


# ---------------------------------------------------------------------------------------------
# Choosing for the user


@dataclass(frozen=True)
class Slo:
    """A latency objective such as `p99<=10ms`: `statistic` of a request's latency ≤ `limit_ms`."""

    statistic: str  # avg, p50, p90 or p99
    limit_ms: float

    @classmethod
    def parse(cls, text: str) -> Slo:
        match = re.fullmatch(
            r"\s*(avg|mean|median|p50|p90|p99)\s*(<=|≤|<)\s*([0-9]*\.?[0-9]+)\s*(ms|s|us|µs)?\s*",
            text or "",
            re.IGNORECASE,
        )
        if not match:
            raise SlimbertError(
                f'--slo {text!r}: write a statistic, <= and a time, e.g. "p99<=10ms" (statistics: avg, p50, p90, p99)'
            )
        statistic = {"mean": "avg", "median": "p50"}.get(match[1].lower(), match[1].lower())
        scale = {"s": 1000.0, "us": 1e-3, "µs": 1e-3}.get((match[4] or "ms").lower(), 1.0)
        return cls(statistic, float(match[3]) * scale)

    def __str__(self) -> str:
        return f"{self.statistic} ≤ {self.limit_ms:g} ms"

    def met(self, row: Row) -> bool:
        return row.latency(self.statistic) <= self.limit_ms


@dataclass
class Recommendation:
    """The fastest configuration meeting the SLO and the F1 budget, and one sentence per other
    model on why it was passed over."""

    criteria: str
    chosen: Row | None
    summary: str
    passed_over: dict[str, str]  # model name -> sentence

    def to_dict(self) -> dict:
        return {
            "criteria": self.criteria,
            "model": self.chosen.model if self.chosen else None,
            "row": asdict(self.chosen) if self.chosen else None,
            "summary": self.summary,
            "passed_over": self.passed_over,
        }


def recommend(rows: list[Row], slo: Slo | None, max_f1_drop: float | None) -> Recommendation | None:
    """Among rows at the smallest batch size (an SLO is on one request), the fastest by the
    SLO's own statistic (Avg ms without an SLO) whose latency meets `slo` and whose metric is at
    most `max_f1_drop` points under the teacher's (under the best row's without a teacher)."""
    if (slo is None and max_f1_drop is None) or not rows:
        return None
    batch = min(r.batch_size for r in rows)
    candidates = [r for r in rows if r.batch_size == batch]
    statistic = slo.statistic if slo else "avg"
    best_metric = max(r.metric for r in candidates)

    def drop(row: Row) -> float:
        return -row.vs_teacher if row.vs_teacher is not None else best_metric - row.metric

    def fits_f1(row: Row) -> bool:
        return max_f1_drop is None or drop(row) <= max_f1_drop + 1e-9

    def fits_slo(row: Row) -> bool:
        return slo is None or slo.met(row)

    def speed(row: Row) -> tuple[float, float]:
        return (row.latency(statistic), row.avg_ms)

    metric_name = candidates[0].metric_name
    reference = (
        "the teacher"
        if any(r.vs_teacher is not None for r in candidates)
        else "the best model here"
    )
    criteria = " and ".join(
        part
        for part in (
            f"{slo} at batch {batch}" if slo else None,
            f"{metric_name} at most {max_f1_drop:.2f} points under {reference}"
            if max_f1_drop is not None
            else None,
        )
        if part
    )
    qualifying = sorted((r for r in candidates if fits_f1(r) and fits_slo(r)), key=speed)
    chosen = qualifying[0] if qualifying else None

    def ms(row: Row) -> str:
        return f"{statistic} {row.latency(statistic):.2f} ms"

    threads = _threads_vary(candidates)

    if chosen is not None:
        summary = (
            f"{chosen.label(full=True)} is recommended: {ms(chosen)}, {metric_name} {0.0 - drop(chosen) + 0.0:+.2f} points against {reference}; "
            f"the fastest of {len(qualifying)} configuration{'s' if len(qualifying) != 1 else ''} that meet {criteria}."
        )
    else:
        summary = f"No configuration meets {criteria}; the reasons per model follow."
    passed_over: dict[str, str] = {}
    for model in dict.fromkeys(r.model for r in candidates):
        if chosen is not None and model == chosen.model:
            continue
        own = [r for r in candidates if r.model == model]
        fits = sorted((r for r in own if fits_f1(r) and fits_slo(r)), key=speed)
        fastest = min(own, key=speed)
        least_drop = min(own, key=drop)
        if fits:
            passed_over[model] = (
                f"{model} meets {criteria}, but its fastest such configuration ({_name(fits[0], threads)}) has {ms(fits[0])} against {chosen.model}'s {chosen.latency(statistic):.2f} ms."
            )
        elif not any(fits_f1(r) for r in own) and not any(fits_slo(r) for r in own):
            passed_over[model] = (
                f"{model} misses both: it loses {drop(least_drop):.2f} {metric_name} points (more than {max_f1_drop:.2f}) "
                f"and even its fastest configuration ({_name(fastest, threads)}) has {ms(fastest)} > {slo.limit_ms:g} ms."
            )
        elif not any(fits_f1(r) for r in own):
            passed_over[model] = (
                f"{model} loses {drop(least_drop):.2f} {metric_name} points against {reference}, more than the {max_f1_drop:.2f} allowed."
            )
        elif not any(fits_slo(r) for r in own):
            passed_over[model] = (
                f"{model} misses the SLO: even its fastest configuration ({_name(fastest, threads)}) has {ms(fastest)} > {slo.limit_ms:g} ms."
            )
        else:
            quick = min((r for r in own if fits_slo(r)), key=speed)
            passed_over[model] = (
                f"{model} meets the SLO only where it loses {drop(quick):.2f} {metric_name} points ({_name(quick, threads)}), more than the {max_f1_drop:.2f} allowed."
            )
    return Recommendation(criteria, chosen, summary, passed_over)


# ---------------------------------------------------------------------------------------------
# Comparing two runs


@dataclass(frozen=True)
class Threshold:
    """What counts as a regression between two runs of the same rows.

    latency: "5%" (relative to OLD) or "0.5ms" (absolute); a row is slower only when NEW − OLD
      exceeds this plus the spread of both runs, so run-to-run noise never trips it.
    metric_points: metric points NEW may lose against OLD.
    statistic: which latency figure is compared (p50: the median, the steadiest).
    """

    latency: str = "5%"
    metric_points: float = 0.5
    statistic: str = "p50"

    def allowed_ms(self, old_ms: float) -> float:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(%|ms)?\s*", self.latency)
        if not match:
            raise SlimbertError(
                f"--threshold {self.latency!r}: give a percentage such as 5% or a time such as 0.5ms"
            )
        value = float(match[1])
        return value if match[2] == "ms" else old_ms * value / 100


@dataclass(frozen=True)
class Change:
    """One row's difference between OLD and NEW that is beyond the threshold (or a row that
    appears in only one of them)."""

    label: str
    kind: str  # slower, less accurate, faster, more accurate, missing, new
    old: float | None = None
    new: float | None = None
    allowed: float | None = None
    unit: str = "ms"

    @property
    def regressed(self) -> bool:
        return self.kind in ("slower", "less accurate")

    def sentence(self) -> str:
        if self.kind in ("missing", "new"):
            return f"{self.kind.upper()}: {self.label} is only in {'OLD' if self.kind == 'missing' else 'NEW'}"
        delta = self.new - self.old
        relative = f" ({delta / self.old * 100:+.1f}%)" if self.unit == "ms" and self.old else ""
        return f"{self.kind.upper()}: {self.label}: {self.old:.2f} → {self.new:.2f} {self.unit}{relative}, beyond the {self.allowed:.2f} {self.unit} allowed"


def compare_reports(old: Report, new: Report, threshold: Threshold = Threshold()) -> list[Change]:
    """Rows of NEW against the rows of OLD with the same key: regressions first."""
    if threshold.statistic not in STATISTICS:
        raise SlimbertError(
            f"--statistic {threshold.statistic!r}: choose one of {', '.join(STATISTICS)}"
        )
    threshold.allowed_ms(1.0)  # a malformed threshold fails before anything is listed
    statistic = threshold.statistic
    old_rows, new_rows = {r.key(): r for r in old.rows}, {r.key(): r for r in new.rows}
    changes: list[Change] = []
    for key, before in old_rows.items():
        after = new_rows.get(key)
        label = (
            f"{before.label(full=True)} {statistic}"
            if after is not None
            else before.label(full=True)
        )
        if after is None:
            changes.append(Change(label, "missing"))
            continue
        allowed = (
            threshold.allowed_ms(before.latency(statistic))
            + before.spread(statistic)
            + after.spread(statistic)
        )
        delta = after.latency(statistic) - before.latency(statistic)
        if abs(delta) > allowed:
            changes.append(
                Change(
                    label,
                    "slower" if delta > 0 else "faster",
                    before.latency(statistic),
                    after.latency(statistic),
                    allowed,
                )
            )
        lost = before.metric - after.metric
        if abs(lost) > threshold.metric_points + 1e-9:
            metric_label = f"{before.label(full=True)} {before.metric_name}"
            changes.append(
                Change(
                    metric_label,
                    "less accurate" if lost > 0 else "more accurate",
                    before.metric,
                    after.metric,
                    threshold.metric_points,
                    "points",
                )
            )
    changes += [
        Change(r.label(full=True), "new") for key, r in new_rows.items() if key not in old_rows
    ]
    order = {
        "slower": 0,
        "less accurate": 1,
        "missing": 2,
        "new": 3,
        "faster": 4,
        "more accurate": 5,
    }
    return sorted(changes, key=lambda c: order[c.kind])


def machine_differences(old: Report, new: Report) -> list[str]:
    """Environment entries that differ between two runs; latency from two machines is not a regression."""
    differences = []
    for name in ("cpu", "cores", "gpu", "threads"):
        a, b = old.environment.get(name), new.environment.get(name)
        if a != b:
            differences.append(f"{name}: OLD {a} vs NEW {b}")
    return differences


# ---------------------------------------------------------------------------------------------
# Tables: one description, two renderers


@dataclass
class Table:
    title: str | None
    headers: list[str]
    cells: list[list[str]]

    def markdown(self) -> str:
        lines = [] if self.title is None else [f"## {self.title}", ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "---|" * len(self.headers))
        lines += [
            "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.cells
        ]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
            for row in self.cells
        )
        title = "" if self.title is None else f"<h2>{html.escape(self.title)}</h2>"
        return f"{title}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}"


def _spread(value: float, spread: float | None, digits: int = 2) -> str:
    return f"{value:.{digits}f} ± {spread:.{digits}f}" if spread else f"{value:.{digits}f}"


def _threads_vary(rows: list[Row]) -> bool:
    return len({r.threads for r in rows}) > 1


def _name(row: Row, threads: bool) -> str:
    name = row.label()
    if threads and row.threads:
        name = name[:-1] + f", {row.threads} threads)"
    return name


def request_table(report: Report) -> Table:
    """The table a team reads first: Method | Model | Requests | Total ms | Avg ms | F1 | vs Teacher."""
    threads = _threads_vary(report.rows)
    cells = [
        [
            r.method,
            _name(r, threads),
            str(r.requests),
            _spread(r.total_ms, r.total_ms_spread, 1),
            _spread(r.avg_ms, r.avg_ms_spread),
            f"{r.metric:.2f}",
            _signed(r.vs_teacher),
        ]
        for r in report.rows
    ]
    return Table(
        None, ["Method", "Model", "Requests", "Total ms", "Avg ms", "F1", "vs Teacher"], cells
    )


def limit_table(report: Report) -> Table | None:
    rows = [r for r in report.rows if r.gflops_per_request is not None]
    if not rows:
        return None
    threads = _threads_vary(report.rows)
    cells = [
        [
            _name(r, threads),
            r.precision,
            _fmt(r.mean_tokens, 1),
            _fmt(r.gflops_per_request, 4),
            _fmt(r.achieved_gflops, 1),
            _fmt(r.peak_gflops, 1),
            "–" if r.peak_share is None else f"{r.peak_share:.1f}%",
        ]
        for r in rows
    ]
    return Table(
        "Physical limit",
        [
            "Model",
            "Precision",
            "Mean L",
            "GFLOPs / request",
            "Achieved GFLOP/s",
            "Peak GFLOP/s",
            "Share of peak",
        ],
        cells,
    )


def detail_table(report: Report) -> Table:
    cells = [
        [
            r.model,
            r.runtime + (" + IO binding" if r.io_binding else ""),
            r.provider,
            str(r.batch_size),
            r.length_label(),
            str(r.threads or "–"),
            r.precision,
            _spread(r.p50_ms, r.p50_ms_spread),
            _spread(r.p90_ms, r.p90_ms_spread),
            _spread(r.p99_ms, r.p99_ms_spread),
            f"{r.qps:.1f}",
            _fmt(r.tokenize_avg_ms, 3),
            _fmt(r.tokenize_p99_ms, 3),
            _fmt(r.mean_tokens, 1),
            _fmt(r.accuracy),
            "–" if r.speedup is None else f"{r.speedup:.2f}×",
            str(r.parameters or "–"),
            _fmt(r.file_mb, 1),
            _fmt(r.peak_rss_mb, 0),
            str(r.repeats),
        ]
        for r in report.rows
    ]
    headers = [
        "Model",
        "Runtime",
        "Provider",
        "Batch",
        "Length",
        "Threads",
        "Precision",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "QPS",
        "Tokenize ms",
        "Tokenize p99 ms",
        "Mean L",
        "Accuracy",
        "Speed-up",
        "Params",
        "File MB",
        "Peak RSS MB",
        "Repeats",
    ]
    return Table("Details", headers, cells)


def peak_table(report: Report) -> Table | None:
    peaks = report.extra.get("peaks") or []
    if not peaks:
        return None
    cells = [
        [p["precision"], p["provider"], str(p["threads"]), f"{p['gflops']:.1f}", p["method"]]
        for p in peaks
    ]
    return Table(
        "Measured peak matrix-multiply throughput",
        ["Precision", "Provider", "Threads", "GFLOP/s", "How (best of repeats)"],
        cells,
    )


def _machine_lines(env: dict) -> list[str]:
    gpu = env.get("gpu")
    gpu_text = (
        "none"
        if not gpu
        else f"{gpu.get('name')}"
        + (f", driver {gpu['driver']}" if gpu.get("driver") else "")
        + (f", CUDA {gpu['cuda']}" if gpu.get("cuda") else "")
    )
    settings = env.get("thread_settings") or {}
    return [
        f"Command: `{env.get('command')}`",
        f"Git revision: {env.get('git_revision')}",
        f"Date: {env.get('date')}",
        f"Machine: {env.get('cpu')} ({', '.join(env.get('cpu_flags') or []) or 'no AVX-512'}), {env.get('cores')} cores"
        + (
            f" ({env['usable_cores']} usable)"
            if env.get("usable_cores") not in (None, env.get("cores"))
            else ""
        )
        + f", {env.get('memory_gb')} GiB, GPU: {gpu_text}",
        f"Threads: {env.get('threads')}"
        + ("; " + ", ".join(f"{k}={v}" for k, v in settings.items()) if settings else ""),
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in (env.get("versions") or {}).items()),
    ]


def _recommendation_lines(report: Report) -> list[str]:
    payload = report.extra.get("recommendation")
    if not payload:
        return []
    return [payload["summary"], *payload["passed_over"].values()]


# ---------------------------------------------------------------------------------------------
# Plots


PLOTS = {
    "pareto.png": "latency vs F1 with the Pareto front per provider",
    "speedup.png": "speed-up over the teacher",
    "size.png": "size vs F1",
}


def _headline_rows(report: Report) -> list[Row]:
    """Rows at the smallest batch size: one request is what latency plots show."""
    if not report.rows:
        return []
    batch = min(r.batch_size for r in report.rows)
    return [r for r in report.rows if r.batch_size == batch]


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_latency_vs_metric(report: Report) -> bytes:
    """Avg ms (with its spread) against the metric, one panel per provider, each with its own
    Pareto front: the configurations nothing else beats on both."""
    plt = _pyplot()
    rows = _headline_rows(report)
    providers = list(dict.fromkeys(r.provider for r in rows)) or ["cpu"]
    fig, axes = plt.subplots(
        1, len(providers), figsize=(7 * len(providers), 4.5), dpi=120, squeeze=False
    )
    for ax, provider in zip(axes[0], providers, strict=True):
        group = [r for r in rows if r.provider == provider]
        points = [(r.avg_ms, r.metric) for r in group]
        front = set(pareto_front(points))
        for i, r in enumerate(group):
            color = "tab:red" if i in front else "tab:gray"
            ax.errorbar(
                r.avg_ms,
                r.metric,
                xerr=r.avg_ms_spread or 0,
                fmt="o" if r.runtime == "onnx" else "s",
                color=color,
                ms=6,
                capsize=2,
                zorder=3,
            )
            # alternately above and below the point, close enough to stay attached to it
            ax.annotate(
                _name(r, _threads_vary(rows)),
                (r.avg_ms, r.metric),
                textcoords="offset points",
                xytext=(6, 3 if i % 2 == 0 else -9),
                fontsize=6,
                color="black" if i in front else "dimgray",
            )
        ordered = sorted(points[i] for i in front)
        if ordered:
            ax.plot(
                [p[0] for p in ordered],
                [p[1] for p in ordered],
                "--",
                color="tab:red",
                lw=1,
                label="Pareto front",
            )
            ax.legend(loc="lower right", fontsize=8)
        if points and max(p[0] for p in points) > 20 * max(min(p[0] for p in points), 1e-9):
            ax.set_xscale("log")  # students and runtimes spread over orders of magnitude
        ax.set_xlabel(
            f"average latency per request, ms (batch {rows[0].batch_size if rows else 1})"
        )
        ax.set_ylabel(rows[0].metric_name if rows else "F1")
        ax.set_title(f"{provider}: ■ PyTorch, ● ONNX Runtime", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(report.title, fontsize=9)
    return _png(fig)


def plot_speedup(report: Report) -> bytes | None:
    rows = [r for r in _headline_rows(report) if r.speedup is not None]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.5), dpi=120)
    labels = [_name(r, _threads_vary(rows)) for r in rows]
    ax.barh(
        range(len(rows)),
        [r.speedup for r in rows],
        color=["tab:orange" if r.role == "teacher" else "tab:blue" for r in rows],
    )
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", lw=1, ls="--")
    ax.set_title("speed-up over the teacher", fontsize=9)
    for i, r in enumerate(rows):
        ax.annotate(
            f"{r.speedup:.2f}×",
            (r.speedup, i),
            textcoords="offset points",
            xytext=(3, -3),
            fontsize=7,
        )
    speedups = [r.speedup for r in rows]
    if max(speedups) > 20 * max(min(speedups), 1e-9):
        ax.set_xscale("log")
    ax.set_xlabel(
        "speed-up over the teacher in PyTorch\n(its Avg ms over the row's, same batch, length and threads)"
    )
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def plot_size_vs_metric(report: Report) -> bytes | None:
    seen, rows = set(), []
    for r in report.rows:
        if r.file_mb is not None and (r.model, r.runtime, r.precision) not in seen:
            seen.add((r.model, r.runtime, r.precision))
            rows.append(r)
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for r in rows:
        ax.scatter(
            r.file_mb,
            r.metric,
            marker="o" if r.runtime == "onnx" else "s",
            s=50,
            color="tab:orange" if r.role == "teacher" else "tab:blue",
            zorder=3,
        )
        ax.annotate(
            f"{r.model} ({r.runtime}{', ' + r.precision if r.precision != 'fp32' else ''})",
            (r.file_mb, r.metric),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=7,
        )
    ax.set_title("size against quality: ■ PyTorch, ● ONNX Runtime; teacher in orange", fontsize=9)
    ax.set_xlabel("model file size, MB")
    ax.set_ylabel(rows[0].metric_name)
    ax.grid(alpha=0.3)
    return _png(fig)


def render_plots(report: Report) -> dict[str, bytes]:
    """File name -> PNG bytes for every plot the report's rows can fill."""
    plots = {
        "pareto.png": plot_latency_vs_metric(report),
        "speedup.png": plot_speedup(report),
        "size.png": plot_size_vs_metric(report),
    }
    return {name: data for name, data in plots.items() if data is not None}


def render_pareto(report: Report, path: Path) -> None:
    """The latency-vs-F1 plot alone, as a PNG file."""
    write_bytes_atomic(Path(path), plot_latency_vs_metric(report))


# ---------------------------------------------------------------------------------------------
# Renderers


def render_markdown(report: Report, plots: dict[str, bytes] | None = None) -> str:
    """The request table first, then recommendation, physical limit, details, peaks and notes;
    plots are linked as files beside the Markdown."""
    out = io.StringIO()
    out.write(f"# {report.title}\n\n")
    out.write("".join(f"- {line}\n" for line in _machine_lines(report.environment)) + "\n")
    out.write(request_table(report).markdown())
    recommendation = _recommendation_lines(report)
    if recommendation:
        out.write(
            f"\n## Recommendation ({report.extra['recommendation']['criteria']})\n\n**{recommendation[0]}**\n\n"
        )
        out.write("".join(f"- {line}\n" for line in recommendation[1:]))
    for table in (limit_table(report), detail_table(report), peak_table(report)):
        if table is not None:
            out.write("\n" + table.markdown())
    if report.notes:
        out.write("\n## Notes\n\n" + "".join(f"- {n}\n" for n in report.notes))
    for name in plots if plots is not None else ["pareto.png"]:
        out.write(f"\n![{PLOTS.get(name, name)}]({name})\n")
    return out.getvalue()


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 12px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f2f2f2; } td:nth-child(-n+2) { text-align: left; }
.recommended { background: #eef8ee; border-left: 4px solid #2a2; padding: 0.5em 1em; }
figure { margin: 1em 0; } img { max-width: 100%; } code { background: #f4f4f4; padding: 0 3px; }
"""


def render_html(report: Report, plots: dict[str, bytes] | None = None) -> str:
    """One self-contained page: styles inline and every plot embedded as a base64 PNG, so it
    can be mailed or attached to a CI run and opened anywhere."""
    plots = render_plots(report) if plots is None else plots
    e = html.escape
    parts = [
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{e(report.title)}</title><style>{STYLE}</style></head><body>'
    ]
    parts.append(
        f"<h1>{e(report.title)}</h1><ul>"
        + "".join(f"<li>{e(line)}</li>" for line in _machine_lines(report.environment))
        + "</ul>"
    )
    parts.append("<h2>Requests and latency</h2>" + request_table(report).html())
    recommendation = _recommendation_lines(report)
    if recommendation:
        parts.append(
            f'<h2>Recommendation ({e(report.extra["recommendation"]["criteria"])})</h2><p class="recommended">{e(recommendation[0])}</p>'
        )
        parts.append(
            "<ul>" + "".join(f"<li>{e(line)}</li>" for line in recommendation[1:]) + "</ul>"
        )
    for name, data in plots.items():
        encoded = base64.b64encode(data).decode("ascii")
        parts.append(
            f'<figure><img alt="{e(PLOTS.get(name, name))}" src="data:image/png;base64,{encoded}"><figcaption>{e(PLOTS.get(name, name))}</figcaption></figure>'
        )
    for table in (limit_table(report), detail_table(report), peak_table(report)):
        if table is not None:
            parts.append(table.html())
    if report.notes:
        parts.append(
            "<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in report.notes) + "</ul>"
        )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def render_csv(report: Report) -> str:
    buffer = io.StringIO()
    names = [f.name for f in fields(Row)]
    writer = csv.DictWriter(buffer, fieldnames=names)
    writer.writeheader()
    for r in report.rows:
        writer.writerow(asdict(r))
    return buffer.getvalue()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_report(report: Report, out: str | Path) -> Path:
    """report.md, report.json, report.csv, report.html and the plots (pareto.png, speedup.png,
    size.png) in `out`; returns report.md's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = render_plots(report)
    write_json_atomic(out / "report.json", report.to_dict())
    write_text_atomic(out / "report.csv", render_csv(report))
    for name, data in plots.items():
        write_bytes_atomic(out / name, data)
    write_text_atomic(out / "report.html", render_html(report, plots))
    write_text_atomic(out / "report.md", render_markdown(report, plots))
    return out / "report.md"
