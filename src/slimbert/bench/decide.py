"""What a benchmark's rows decide: each row against the teacher, the Pareto front of latency
against quality, and the one configuration to ship under a latency objective (SLO) and an F1
budget, with a sentence per passed-over model saying why."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from slimbert.bench.report import Row, threads_vary
from slimbert.errors import SlimbertError

# ---------------------------------------------------------------------------------------------
# Figures against the teacher


def _sweep_point(row: Row) -> tuple:
    return (row.provider, row.batch_size, row.padding, row.seq_length, row.threads)


def relate_to_teacher(rows: list[Row]) -> Row | None:
    """Fill `vs_teacher` (metric points) and `speedup` (teacher Avg ms / row Avg ms) of every
    row against the teacher's row at the same provider, batch, length and threads, PyTorch in
    fp32 first: the teacher as it runs before slimbert. Returns the teacher row that batch-1
    rows are measured against (None without a teacher)."""
    teachers = [r for r in rows if r.role == "teacher"]
    if not teachers:
        return None
    ranked = sorted(
        teachers, key=lambda r: (r.runtime != "pytorch", r.precision != "fp32", r.io_binding)
    )
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
        if teacher is not None and teacher.avg_ms_rounds and row.avg_ms_rounds:
            row.speedup_rounds = [
                t / r
                for t, r in zip(teacher.avg_ms_rounds, row.avg_ms_rounds, strict=True)
                if r > 0
            ]
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
                f'--slo {text!r}: write a statistic, <= and a time, e.g. "p99<=10ms" '
                "(statistics: avg, p50, p90, p99)"
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

    def ms(row: Row) -> str:
        return f"{statistic} {row.latency(statistic):.2f} ms"

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
    threads = threads_vary(candidates)

    if chosen is not None:
        count = len(qualifying)
        gained = 0.0 - drop(chosen) + 0.0  # not -drop: a drop of 0 prints +0.00, not -0.00
        summary = (
            f"{chosen.label(full=True)} is recommended: {ms(chosen)}, "
            f"{metric_name} {gained:+.2f} points against {reference}; "
            f"the fastest of {count} configuration{'s' if count != 1 else ''} "
            f"that meet {criteria}."
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
                f"{model} meets {criteria}, but its fastest such configuration "
                f"({fits[0].label(threads=threads)}) has {ms(fits[0])} "
                f"against {chosen.model}'s {chosen.latency(statistic):.2f} ms."
            )
        elif not any(fits_f1(r) for r in own) and not any(fits_slo(r) for r in own):
            passed_over[model] = (
                f"{model} misses both: it loses {drop(least_drop):.2f} {metric_name} points "
                f"(more than {max_f1_drop:.2f}) and even its fastest configuration "
                f"({fastest.label(threads=threads)}) has {ms(fastest)} > {slo.limit_ms:g} ms."
            )
        elif not any(fits_f1(r) for r in own):
            passed_over[model] = (
                f"{model} loses {drop(least_drop):.2f} {metric_name} points against "
                f"{reference}, more than the {max_f1_drop:.2f} allowed."
            )
        elif not any(fits_slo(r) for r in own):
            passed_over[model] = (
                f"{model} misses the SLO: even its fastest configuration "
                f"({fastest.label(threads=threads)}) has {ms(fastest)} > {slo.limit_ms:g} ms."
            )
        else:
            quick = min((r for r in own if fits_slo(r)), key=speed)
            passed_over[model] = (
                f"{model} meets the SLO only where it loses {drop(quick):.2f} {metric_name} "
                f"points ({quick.label(threads=threads)}), "
                f"more than the {max_f1_drop:.2f} allowed."
            )
    return Recommendation(criteria, chosen, summary, passed_over)
