"""The report's plots as PNG bytes: latency against F1 with the Pareto front, speed-up over the
teacher, and size against F1. bench/render.py writes them beside report.md and embeds them in
report.html.

matplotlib is imported when a plot is drawn, not with this module: it is slow to import, and
the tables and `slimbert bench compare` need none of it.
"""

from __future__ import annotations

import io

from slimbert.bench.decide import pareto_front
from slimbert.bench.report import Report, Row, threads_vary

# file name -> what the plot shows (the caption in report.html, the alt text in report.md)
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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", bbox_inches="tight")  # a key beside a panel stays in
    _pyplot().close(fig)
    return buffer.getvalue()


# more points than this in one panel: only the Pareto front's are named beside the point; the
# others get a number that the key beside the panel spells out
CROWDED = 8


def point_names(group: list[Row], front: set[int], threads: bool) -> tuple[list[str], list[str]]:
    """The text beside each point of a panel, and the panel's key (empty when not crowded)."""
    labels = [r.label(threads=threads) for r in group]
    if len(group) <= CROWDED:
        return labels, []
    beside, key = [], []
    for i, label in enumerate(labels):
        if i in front:
            beside.append(label)
        else:
            beside.append(str(len(key) + 1))
            key.append(f"{len(key) + 1}: {label}")
    return beside, key


def plot_latency_vs_metric(report: Report) -> bytes:
    """Avg ms (with its spread) against the metric, one panel per provider, each with its own
    Pareto front: the configurations nothing else beats on both."""
    plt = _pyplot()
    rows = _headline_rows(report)
    threads = threads_vary(rows)
    providers = list(dict.fromkeys(r.provider for r in rows)) or ["cpu"]
    crowded = any(sum(r.provider == p for r in rows) > CROWDED for p in providers)
    width = 11 if crowded else 7  # room for the key beside each panel
    fig, axes = plt.subplots(
        1, len(providers), figsize=(width * len(providers), 4.5), dpi=120, squeeze=False
    )
    for ax, provider in zip(axes[0], providers, strict=True):
        group = [r for r in rows if r.provider == provider]
        points = [(r.avg_ms, r.metric) for r in group]
        front = set(pareto_front(points))
        beside, key = point_names(group, front, threads)
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
                beside[i],
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
        if key:
            ax.text(1.02, 1.0, "\n".join(key), transform=ax.transAxes, fontsize=6, va="top")
    fig.suptitle(report.title, fontsize=9)
    return _png(fig)


def plot_speedup(report: Report) -> bytes | None:
    """One bar per headline row with a speed-up; None without a teacher to measure against."""
    rows = [r for r in _headline_rows(report) if r.speedup is not None]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.5), dpi=120)
    threads = threads_vary(rows)
    ax.barh(
        range(len(rows)),
        [r.speedup for r in rows],
        color=["tab:orange" if r.role == "teacher" else "tab:blue" for r in rows],
    )
    ax.set_yticks(range(len(rows)), [r.label(threads=threads) for r in rows], fontsize=7)
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
        "speed-up over the teacher in PyTorch\n"
        "(its Avg ms over the row's, same batch, length and threads)"
    )
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def plot_size_vs_metric(report: Report) -> bytes | None:
    """File size against the metric, one point per model, runtime and precision; None when no
    row knows its file size."""
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
        precision = f", {r.precision}" if r.precision != "fp32" else ""
        ax.annotate(
            f"{r.model} ({r.runtime}{precision})",
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
