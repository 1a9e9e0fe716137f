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


SLO_EXAMPLES = '"p99<=10ms" (statistics avg, p50, p90, p99) or "speedup>=10x"'


@dataclass(frozen=True)
class Slo:
    """A latency objective: absolute, `statistic` of a request's latency ≤ `limit_ms` (e.g.
    `p99<=10ms`), or relative to the teacher, its Avg ms over the row's ≥ `speedup` with both
    timed in one run (e.g. `speedup>=10x`: what a target such as "ten times faster" means on a
    machine whose absolute speed drifts between runs)."""

    statistic: str  # avg, p50, p90 or p99 (a relative SLO compares averages)
    limit_ms: float | None = None
    speedup: float | None = None

    @classmethod
    def parse(cls, text: str) -> Slo:
        relative = re.fullmatch(
            r"\s*speed-?up\s*(>=|≥|>)\s*([0-9]*\.?[0-9]+)\s*[x×]?\s*", text or "", re.IGNORECASE
        )
        if relative:
            if float(relative[2]) <= 0:
                raise SlimbertError(f"--slo {text!r}: give a speed-up above zero, e.g. 10x")
            return cls("avg", speedup=float(relative[2]))
        match = re.fullmatch(
            r"\s*(avg|mean|median|p50|p90|p99)\s*(<=|≤|<)\s*([0-9]*\.?[0-9]+)\s*(ms|s|us|µs)?\s*",
            text or "",
            re.IGNORECASE,
        )
        if not match:
            raise SlimbertError(
                f"--slo {text!r}: write a statistic, <= and a time, or a speed-up over the "
                f"teacher, e.g. {SLO_EXAMPLES}"
            )
        statistic = {"mean": "avg", "median": "p50"}.get(match[1].lower(), match[1].lower())
        scale = {"s": 1000.0, "us": 1e-3, "µs": 1e-3}.get((match[4] or "ms").lower(), 1.0)
        return cls(statistic, float(match[3]) * scale)

    @property
    def relative(self) -> bool:
        return self.speedup is not None

    def __str__(self) -> str:
        if self.relative:
            return f"≥ {self.speedup:g}× the teacher's speed (avg)"
        return f"{self.statistic} ≤ {self.limit_ms:.4g} ms"

    def met(self, row: Row) -> bool:
        """A relative SLO reads the row's `speedup` (relate_to_teacher's, from the same run):
        a row with none is not taken to meet it."""
        if self.relative:
            return row.speedup is not None and row.speedup >= self.speedup * (1 - 1e-9)
        return row.latency(self.statistic) <= self.limit_ms

    def against(self, teacher: Row) -> Slo:
        """The absolute SLO this one is at `teacher`'s timing: a relative SLO's limit is the
        teacher's Avg ms over the speed-up (what is known before a student and the teacher are
        timed together: the search's guide, not its verdict)."""
        if not self.relative:
            return self
        return Slo("avg", teacher.avg_ms / self.speedup)

    def miss(self, row: Row) -> str:
        """How `row` misses the SLO, in words: "avg 2.31 ms > 2 ms" or "7.3× the teacher"."""
        if self.relative:
            got = f"{row.speedup:.1f}× the teacher" if row.speedup else "not timed with the teacher"
            return f"{got}, under {self.speedup:g}×"
        return f"{self.statistic} {row.latency(self.statistic):.2f} ms > {self.limit_ms:g} ms"

    def shown(self, row: Row) -> str:
        """The row's figure the SLO reads: "p99 1.84 ms" or "avg 2.01 ms, 12.9× the teacher"."""
        text = f"{self.statistic} {row.latency(self.statistic):.2f} ms"
        if self.relative and row.speedup:
            text += f", {row.speedup:.1f}× the teacher"
        return text


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


@dataclass(frozen=True)
class _Criteria:
    """The SLO and the metric budget that rows at one batch size are held to, and the words
    a recommendation names them with."""

    slo: Slo | None
    max_f1_drop: float | None
    batch: int
    metric_name: str
    reference: str  # what a drop is counted from: "the teacher" or "the best model here"
    best_metric: float  # the drop's reference for rows not related to a teacher

    @classmethod
    def among(cls, candidates: list[Row], slo: Slo | None, max_f1_drop: float | None) -> _Criteria:
        reference = (
            "the teacher"
            if any(r.vs_teacher is not None for r in candidates)
            else "the best model here"
        )
        return cls(
            slo,
            max_f1_drop,
            candidates[0].batch_size,
            candidates[0].metric_name,
            reference,
            max(r.metric for r in candidates),
        )

    def __str__(self) -> str:
        return " and ".join(
            part
            for part in (
                f"{self.slo} at batch {self.batch}" if self.slo else None,
                f"{self.metric_name} at most {self.max_f1_drop:.2f} points under {self.reference}"
                if self.max_f1_drop is not None
                else None,
            )
            if part
        )

    @property
    def statistic(self) -> str:
        return self.slo.statistic if self.slo else "avg"

    def drop(self, row: Row) -> float:
        return -row.vs_teacher if row.vs_teacher is not None else self.best_metric - row.metric

    def fits_f1(self, row: Row) -> bool:
        return self.max_f1_drop is None or self.drop(row) <= self.max_f1_drop + 1e-9

    def fits_slo(self, row: Row) -> bool:
        return self.slo is None or self.slo.met(row)

    def met(self, row: Row) -> bool:
        return self.fits_f1(row) and self.fits_slo(row)

    def speed(self, row: Row) -> tuple[float, float]:
        return (row.latency(self.statistic), row.avg_ms)

    def ms(self, row: Row) -> str:
        if self.slo is not None:
            return self.slo.shown(row)
        return f"{self.statistic} {row.latency(self.statistic):.2f} ms"


def _summary(chosen: Row | None, qualifying: int, criteria: _Criteria) -> str:
    """The recommendation's first sentence: the chosen row and how it meets the criteria."""
    if chosen is None:
        return f"No configuration meets {criteria}; the reasons per model follow."
    gained = 0.0 - criteria.drop(chosen) + 0.0  # not -drop: a drop of 0 prints +0.00, not -0.00
    return (
        f"{chosen.label(full=True)} is recommended: {criteria.ms(chosen)}, "
        f"{criteria.metric_name} {gained:+.2f} points against {criteria.reference}; "
        f"the fastest of {qualifying} configuration{'s' if qualifying != 1 else ''} "
        f"that meet {criteria}."
    )


def _why_passed_over(
    model: str, own: list[Row], chosen: Row | None, criteria: _Criteria, threads: bool
) -> str:
    """One sentence on why `model` (its rows `own`) was not chosen."""
    metric, budget = criteria.metric_name, criteria.max_f1_drop
    fits = sorted((r for r in own if criteria.met(r)), key=criteria.speed)
    fastest = min(own, key=criteria.speed)
    least_drop = min(own, key=criteria.drop)
    if fits:
        return (
            f"{model} meets {criteria}, but its fastest such configuration "
            f"({fits[0].label(threads=threads)}) has {criteria.ms(fits[0])} "
            f"against {chosen.model}'s {chosen.latency(criteria.statistic):.2f} ms."
        )
    fits_f1 = any(criteria.fits_f1(r) for r in own)
    fits_slo = any(criteria.fits_slo(r) for r in own)
    if not fits_f1 and not fits_slo:
        return (
            f"{model} misses both: it loses {criteria.drop(least_drop):.2f} {metric} points "
            f"(more than {budget:.2f}) and even its fastest configuration "
            f"({fastest.label(threads=threads)}) has {criteria.slo.miss(fastest)}."
        )
    if not fits_f1:
        return (
            f"{model} loses {criteria.drop(least_drop):.2f} {metric} points against "
            f"{criteria.reference}, more than the {budget:.2f} allowed."
        )
    if not fits_slo:
        return (
            f"{model} misses the SLO: even its fastest configuration "
            f"({fastest.label(threads=threads)}) has {criteria.slo.miss(fastest)}."
        )
    quick = min((r for r in own if criteria.fits_slo(r)), key=criteria.speed)
    return (
        f"{model} meets the SLO only where it loses {criteria.drop(quick):.2f} {metric} "
        f"points ({quick.label(threads=threads)}), more than the {budget:.2f} allowed."
    )


def recommend(rows: list[Row], slo: Slo | None, max_f1_drop: float | None) -> Recommendation | None:
    """Among rows at the smallest batch size (an SLO is on one request), the fastest by the
    SLO's own statistic (Avg ms without an SLO) whose latency meets `slo` and whose metric is at
    most `max_f1_drop` points under the teacher's (under the best row's without a teacher)."""
    if (slo is None and max_f1_drop is None) or not rows:
        return None
    batch = min(r.batch_size for r in rows)
    candidates = [r for r in rows if r.batch_size == batch]
    if slo is not None and slo.relative and not any(r.speedup for r in candidates):
        raise SlimbertError(
            f"--slo {slo}: a speed-up is over the teacher, timed in the same run; bench the "
            f'teacher\'s model folder too (--model), or give a latency such as "p99<=10ms"'
        )
    criteria = _Criteria.among(candidates, slo, max_f1_drop)
    qualifying = sorted((r for r in candidates if criteria.met(r)), key=criteria.speed)
    chosen = qualifying[0] if qualifying else None
    threads = threads_vary(candidates)
    summary = _summary(chosen, len(qualifying), criteria)
    passed_over = {
        model: _why_passed_over(
            model, [r for r in candidates if r.model == model], chosen, criteria, threads
        )
        for model in dict.fromkeys(r.model for r in candidates)
        if chosen is None or model != chosen.model
    }
    return Recommendation(str(criteria), chosen, summary, passed_over)
