"""The one Report type and its renderers: Markdown, JSON, CSV and the latency-vs-F1 plot.

Every stage that measures something returns a `Report`; only this module turns it into files.
"""

from __future__ import annotations

import csv
import io
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from slimbert.io import write_json_atomic, write_text_atomic


@dataclass
class Row:
    """One model on one runtime at one batch size. Latencies in milliseconds, F1 in percent."""

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
    vs_teacher: float | None = None  # metric points against the teacher's PyTorch row
    tokenize_avg_ms: float | None = None
    mean_tokens: float | None = None
    parameters: int | None = None
    file_mb: float | None = None
    peak_rss_mb: float | None = None
    threads: int | None = None
    role: str = "student"


def environment(threads: int | None = None) -> dict:
    """Machine, libraries and revision: what every result file must start with."""
    from slimbert.models import library_versions

    cpu_model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu_model in ("unknown", "", platform.machine()):
                cpu_model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    memory_gb = None
    try:
        memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = {"name": torch.cuda.get_device_name(0), "cuda": torch.version.cuda}
    except Exception:  # pragma: no cover - a broken CUDA install must not stop a CPU report
        gpu = None
    try:
        revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        revision, dirty = None, False
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["slimbert" if i == 0 else a for i, a in enumerate(sys.argv)]),
        "git_revision": (revision + ("-dirty" if dirty else "")) if revision else None,
        "cpu": cpu_model,
        "cpu_flags": sorted(f for f in flags if f in {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "fma"}),
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "gpu": gpu,
        "threads": threads,
        "versions": library_versions(),
    }


@dataclass
class Report:
    title: str
    rows: list[Row]
    environment: dict
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"title": self.title, "environment": self.environment, "rows": [asdict(r) for r in self.rows], "notes": self.notes, "extra": self.extra}

    @classmethod
    def from_dict(cls, payload: dict) -> Report:
        return cls(payload["title"], [Row(**r) for r in payload["rows"]], payload["environment"], payload.get("notes", []), payload.get("extra", {}))


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:+.{digits}f}" if digits < 0 else f"{value:.{digits}f}"
    return str(value)


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}"


def render_markdown(report: Report) -> str:
    env = report.environment
    out = io.StringIO()
    out.write(f"# {report.title}\n\n")
    out.write(f"- Command: `{env.get('command')}`\n- Git revision: {env.get('git_revision')}\n- Date: {env.get('date')}\n")
    out.write(f"- Machine: {env.get('cpu')} ({', '.join(env.get('cpu_flags') or []) or 'no AVX-512'}), {env.get('cores')} cores, {env.get('memory_gb')} GiB")
    out.write(f", GPU: {env['gpu']['name'] if env.get('gpu') else 'none'}\n")
    out.write(f"- Threads: {env.get('threads')}; libraries: " + ", ".join(f"{k} {v}" for k, v in (env.get("versions") or {}).items()) + "\n\n")
    out.write("| Method | Model | Requests | Total ms | Avg ms | F1 | vs Teacher |\n|---|---|---|---|---|---|---|\n")
    for r in report.rows:
        name = f"{r.model} ({r.runtime}{'' if r.batch_size == 1 else f', batch {r.batch_size}'})"
        out.write(f"| {r.method} | {name} | {r.requests} | {r.total_ms:.1f} | {r.avg_ms:.2f} | {r.metric:.2f} | {_signed(r.vs_teacher)} |\n")
    out.write("\n## Details\n\n")
    out.write("| Model | Runtime | Provider | Batch | p50 ms | p90 ms | p99 ms | QPS | Tokenize ms | Tokens | Accuracy | Params | File MB | Peak RSS MB |\n")
    out.write("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    for r in report.rows:
        out.write(
            f"| {r.model} | {r.runtime} | {r.provider} | {r.batch_size} | {r.p50_ms:.2f} | {r.p90_ms:.2f} | {r.p99_ms:.2f} | {r.qps:.1f} | "
            f"{_fmt(r.tokenize_avg_ms, 3)} | {_fmt(r.mean_tokens, 1)} | {_fmt(r.accuracy)} | {r.parameters or '–'} | {_fmt(r.file_mb, 1)} | {_fmt(r.peak_rss_mb, 0)} |\n"
        )
    if report.notes:
        out.write("\n## Notes\n\n" + "".join(f"- {n}\n" for n in report.notes))
    out.write("\n![latency vs F1](pareto.png)\n")
    return out.getvalue()


def render_csv(report: Report) -> str:
    buffer = io.StringIO()
    names = list(asdict(report.rows[0]).keys()) if report.rows else list(Row.__dataclass_fields__)
    writer = csv.DictWriter(buffer, fieldnames=names)
    writer.writeheader()
    for r in report.rows:
        writer.writerow(asdict(r))
    return buffer.getvalue()


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated by another (lower latency and higher metric is better)."""
    front = []
    for i, (lat, metric) in enumerate(points):
        dominated = any(
            (l2 <= lat and m2 >= metric) and (l2 < lat or m2 > metric) for j, (l2, m2) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return front


def render_pareto(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.rows if r.batch_size == 1] or report.rows
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    points = [(r.avg_ms, r.metric) for r in rows]
    front = set(pareto_front(points))
    for i, r in enumerate(rows):
        marker = "o" if r.runtime == "onnx" else "s"
        ax.scatter(r.avg_ms, r.metric, marker=marker, s=60, color="tab:red" if i in front else "tab:gray", zorder=3)
        ax.annotate(f"{r.model} ({r.runtime})", (r.avg_ms, r.metric), textcoords="offset points", xytext=(5, 4), fontsize=7)
    ordered = sorted((points[i] for i in front))
    if ordered:
        ax.plot([p[0] for p in ordered], [p[1] for p in ordered], "--", color="tab:red", lw=1, label="Pareto front")
    ax.set_xlabel("average latency per request, ms (batch 1)")
    ax.set_ylabel(rows[0].metric_name if rows else "F1")
    ax.set_title(report.title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def write_report(report: Report, out: str | Path) -> Path:
    """report.md, report.json, report.csv and pareto.png in `out`; returns report.md's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "report.json", report.to_dict())
    write_text_atomic(out / "report.csv", render_csv(report))
    render_pareto(report, out / "pareto.png")
    write_text_atomic(out / "report.md", render_markdown(report))
    return out / "report.md"
