"""A `Report` as files: report.md, a self-contained report.html, report.csv, report.json and the
plots. Markdown and HTML are drawn from the same `Table`s, so the two never disagree.

    report.md / report.html
      machine lines           bench/environment.py
      request table           Method | Model | Requests | Total ms | Avg ms | F1 | vs Teacher
      recommendation          bench/decide.py, when an SLO or F1 budget was given
      physical limit          FLOPs per request against the measured matmul peak
      details, peaks, notes
      plots                   bench/plots.py: linked from the Markdown, embedded in the HTML
"""

from __future__ import annotations

import base64
import csv
import html
import io
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from slimbert.bench.environment import machine_lines
from slimbert.bench.plots import PLOTS, render_plots
from slimbert.bench.report import Report, Row, threads_vary
from slimbert.files import write_json_atomic, write_text_atomic

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


METRIC_TITLES = {
    "mcc": "MCC",
    "macro-f1": "Macro-F1",
    "accuracy": "Accuracy",
    "pearson": "Pearson",
    "spearman": "Spearman",
}


def request_table(report: Report) -> Table:
    """The table a team reads first:
    Method | Model | Requests | Total ms | Avg ms | F1 | vs Teacher."""
    threads = threads_vary(report.rows)
    # The F1 column stays; a chosen metric other than F1 gets its own column beside it.
    chosen = sorted({r.metric_name for r in report.rows} - {"f1"})
    cells = [
        [
            r.method,
            r.label(threads=threads),
            str(r.requests),
            _spread(r.total_ms, r.total_ms_spread, 1),
            _spread(r.avg_ms, r.avg_ms_spread),
            _fmt(r.f1 if r.f1 is not None else r.metric if r.metric_name == "f1" else None),
            *[_fmt(r.metric if r.metric_name == name else None) for name in chosen],
            _signed(r.vs_teacher),
        ]
        for r in report.rows
    ]
    headers = ["Method", "Model", "Requests", "Total ms", "Avg ms", "F1"]
    headers += [METRIC_TITLES.get(name, name) for name in chosen] + ["vs Teacher"]
    return Table(None, headers, cells)


def limit_table(report: Report) -> Table | None:
    """FLOPs per request, achieved FLOP/s and their share of the measured peak; None when no
    row is a transformer whose FLOPs could be counted."""
    rows = [r for r in report.rows if r.gflops_per_request is not None]
    if not rows:
        return None
    threads = threads_vary(report.rows)
    cells = [
        [
            r.label(threads=threads),
            r.precision,
            _fmt(r.mean_tokens, 1),
            _fmt(r.gflops_per_request, 4),
            _fmt(r.achieved_gflops, 1),
            _fmt(r.peak_gflops, 1),
            "–" if r.peak_share is None else f"{r.peak_share:.1f}%",
        ]
        for r in rows
    ]
    headers = [
        "Model",
        "Precision",
        "Mean L",
        "GFLOPs / request",
        "Achieved GFLOP/s",
        "Peak GFLOP/s",
        "Share of peak",
    ]
    return Table("Physical limit", headers, cells)


def detail_table(report: Report) -> Table:
    """Every coordinate and figure of every row."""
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


def _recommendation_lines(report: Report) -> list[str]:
    payload = report.extra.get("recommendation")
    if not payload:
        return []
    return [payload["summary"], *payload["passed_over"].values()]


# ---------------------------------------------------------------------------------------------
# Renderers


def render_markdown(report: Report, plots: dict[str, bytes] | None = None) -> str:
    """The request table first, then recommendation, physical limit, details, peaks and notes;
    plots are linked as files beside the Markdown."""
    out = io.StringIO()
    out.write(f"# {report.title}\n\n")
    out.write("".join(f"- {line}\n" for line in machine_lines(report.environment)) + "\n")
    out.write(request_table(report).markdown())
    recommendation = _recommendation_lines(report)
    if recommendation:
        criteria = report.extra["recommendation"]["criteria"]
        out.write(f"\n## Recommendation ({criteria})\n\n**{recommendation[0]}**\n\n")
        out.write("".join(f"- {line}\n" for line in recommendation[1:]))
    for table in (limit_table(report), detail_table(report), peak_table(report)):
        if table is not None:
            out.write("\n" + table.markdown())
    if report.notes:
        out.write("\n## Notes\n\n" + "".join(f"- {n}\n" for n in report.notes))
    for name in plots if plots is not None else ["pareto.png"]:
        out.write(f"\n![{PLOTS.get(name, name)}]({name})\n")
    return out.getvalue()


PAGE_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em;
  color: #222; }
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
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(report.title)}</title><style>{PAGE_CSS}</style></head><body>"
    ]
    parts.append(
        f"<h1>{e(report.title)}</h1><ul>"
        + "".join(f"<li>{e(line)}</li>" for line in machine_lines(report.environment))
        + "</ul>"
    )
    parts.append("<h2>Requests and latency</h2>" + request_table(report).html())
    recommendation = _recommendation_lines(report)
    if recommendation:
        criteria = e(report.extra["recommendation"]["criteria"])
        parts.append(
            f'<h2>Recommendation ({criteria})</h2><p class="recommended">{e(recommendation[0])}</p>'
        )
        parts.append(
            "<ul>" + "".join(f"<li>{e(line)}</li>" for line in recommendation[1:]) + "</ul>"
        )
    for name, data in plots.items():
        encoded = base64.b64encode(data).decode("ascii")
        caption = e(PLOTS.get(name, name))
        parts.append(
            f'<figure><img alt="{caption}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{caption}</figcaption></figure>"
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
    """One line per row, one column per `Row` field."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[f.name for f in fields(Row)])
    writer.writeheader()
    for r in report.rows:
        writer.writerow(asdict(r))
    return buffer.getvalue()


def _write_bytes_atomic(path: Path, data: bytes) -> None:
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
        _write_bytes_atomic(out / name, data)
    write_text_atomic(out / "report.html", render_html(report, plots))
    write_text_atomic(out / "report.md", render_markdown(report, plots))
    return out / "report.md"
