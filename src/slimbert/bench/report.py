"""The one result type: a `Report` of `Row`s, one row per model, runtime and sweep point, with
the machine it ran on; and report.json read back.

Every stage that measures something returns a `Report`. bench/decide.py fills the figures
against the teacher and picks a model under an SLO, bench/compare.py lists what changed between
two reports, and only bench/render.py turns one into files.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from slimbert.errors import SlimbertError

# the latency figures every row carries, as `{statistic}_ms` and `{statistic}_ms_spread`
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
    f1: float | None = None  # kept beside `metric` when the chosen metric is another
    vs_teacher: float | None = None  # metric points against the teacher at the same length
    tokenize_avg_ms: float | None = None
    mean_tokens: float | None = None  # mean L of the (B, L) requests, padding included
    parameters: int | None = None
    file_mb: float | None = None
    peak_rss_mb: float | None = None
    threads: int | None = None
    role: str = "student"
    # "own": each request padded to its longest example; "fixed": to seq_length
    padding: str = "own"
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
    # with alternating passes: this row's Avg ms in each round, and the teacher's over it in the
    # same round (a ratio within one round cancels the machine's drift between rounds)
    avg_ms_rounds: list[float] | None = None
    speedup_rounds: list[float] | None = None
    gflops_per_request: float | None = None  # matmul GFLOPs of a mean request (bench/flops.py)
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

    def label(self, full: bool = False, threads: bool = False) -> str:
        """'kd-2L (onnx, batch 4, padded to 64)': what sets the row apart from the default.
        `full` names every coordinate; `threads` adds the thread count, for rows of a sweep
        over thread counts (see `threads_vary`)."""
        parts = [self.runtime]
        if full or self.provider != "cpu":
            parts.append(self.provider)
        if full or self.precision != "fp32":
            parts.append(self.precision)
        if full or self.batch_size != 1:
            parts.append(f"batch {self.batch_size}")
        if full or self.padding != "own":
            parts.append(self.length_label())
        named = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        if full and self.threads:
            parts.append(named)
        if self.io_binding:
            parts.append("IO binding")
        if threads and not full and self.threads:
            parts.append(named)
        return f"{self.model} ({', '.join(parts)})"

    def latency(self, statistic: str) -> float:
        return getattr(self, f"{statistic}_ms")

    def spread(self, statistic: str) -> float:
        return getattr(self, f"{statistic}_ms_spread") or 0.0


def threads_vary(rows: list[Row]) -> bool:
    """Whether the rows ran at more than one thread count: then their labels must name it."""
    return len({r.threads for r in rows}) > 1


@dataclass
class Report:
    title: str
    rows: list[Row]
    environment: dict  # bench/environment.py's record of the machine
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
                f"{path}: not a slimbert bench report ({exc}); "
                "give the report.json that `slimbert bench` wrote"
            ) from None
