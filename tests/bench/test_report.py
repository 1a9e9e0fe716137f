"""Report logic on hand-made rows: teacher-relative figures, Pareto front and the recommendation
under an SLO (bench/decide.py), comparing two runs (bench/compare.py), reading report.json
(bench/report.py) and the renderers (bench/render.py: the HTML must stand on its own)."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from slimbert.bench.compare import Threshold, compare_reports, machine_differences
from slimbert.bench.decide import Slo, pareto_front, recommend, relate_to_teacher
from slimbert.bench.environment import environment
from slimbert.bench.plots import CROWDED, point_names
from slimbert.bench.render import request_table, write_report
from slimbert.bench.report import Report, Row
from slimbert.errors import SlimbertError


def row(
    model: str,
    runtime: str = "onnx",
    p99: float = 10.0,
    metric: float = 90.0,
    role: str = "student",
    batch: int = 1,
    spread: float = 0.0,
    **fields,
) -> Row:
    """A row whose latencies follow from p99: p50 = p99 / 2, avg = 0.6 · p99."""
    values = dict(
        method="teacher" if role == "teacher" else "kd",
        model=model,
        runtime=runtime,
        provider="cpu",
        batch_size=batch,
        requests=100,
        total_ms=60 * p99,
        avg_ms=0.6 * p99,
        p50_ms=p99 / 2,
        p90_ms=0.8 * p99,
        p99_ms=p99,
        qps=1000 / (0.6 * p99),
        metric_name="f1",
        metric=metric,
        role=role,
        threads=1,
        repeats=3,
        p50_ms_spread=spread,
        avg_ms_spread=spread,
        file_mb=90.0 if role == "teacher" else 30.0,
    )
    values.update(fields)
    return Row(**values)


@pytest.fixture
def rows() -> list[Row]:
    rows = [
        row("teacher", "pytorch", p99=20, metric=90.0, role="teacher"),
        row("teacher", "onnx", p99=14, metric=90.0, role="teacher"),
        row("kd-3L", p99=6, metric=89.5),
        row("kd-3L", p99=1, metric=89.5, batch=8),  # fastest of all, but at batch 8
        row("kd-2L", p99=4, metric=89.2),
        row("kd-2L", "pytorch", p99=9, metric=89.2),
        row("kd-1L", p99=2, metric=86.0),
    ]
    relate_to_teacher(rows)
    return rows


def test_teacher_relative_figures(rows):
    assert [round(r.vs_teacher, 2) for r in rows] == [0.0, 0.0, -0.5, -0.5, -0.8, -0.8, -4.0]
    # speed-up against the teacher's PyTorch row at the same batch, length and threads
    assert [None if r.speedup is None else round(r.speedup, 2) for r in rows] == [
        1.0,
        1.43,
        3.33,
        None,
        5.0,
        2.22,
        10.0,
    ]


def test_pareto_front_keeps_what_nothing_beats_on_both():
    points = [(1.0, 80.0), (2.0, 85.0), (3.0, 84.0), (0.5, 70.0), (2.0, 85.0), (2.5, 85.0)]
    # (3, 84) loses to (2, 85) on both; (2.5, 85) ties on F1 but is slower; equal points both stay
    assert pareto_front(points) == [0, 1, 3, 4]
    assert pareto_front([]) == []


def test_a_crowded_plot_names_the_front_and_the_teacher_and_numbers_the_rest():
    """Past CROWDED points the labels overlap: the front's points keep their label beside the
    point, every other (the teacher's too) gets a number and one line of the key."""
    few = [row("teacher", "pytorch", p99=20, role="teacher"), row("kd-3L", p99=6, metric=89.5)]
    assert point_names(few, {1}, threads=False) == (["teacher (pytorch)", "kd-3L (onnx)"], [])
    many = [row("teacher", "pytorch", p99=20, role="teacher")]
    many += [row(f"kd-{n}L", p99=n, metric=80.0 + n) for n in range(1, CROWDED + 1)]
    beside, key = point_names(many, {1, CROWDED}, threads=False)
    assert beside[0] == "1" and key[0] == "1: teacher (pytorch)"
    assert beside[1] == "kd-1L (onnx)" and beside[CROWDED] == f"kd-{CROWDED}L (onnx)"
    assert beside[2:CROWDED] == [str(n) for n in range(2, CROWDED)]
    assert key[1:] == [f"{n}: kd-{n}L (onnx)" for n in range(2, CROWDED)]


def test_a_label_names_one_thread_in_the_singular():
    assert row("kd-3L", threads=1).label(threads=True) == "kd-3L (onnx, 1 thread)"
    assert row("kd-3L", threads=2).label(threads=True) == "kd-3L (onnx, 2 threads)"
    assert row("kd-3L", threads=2).label() == "kd-3L (onnx)"


def test_pareto_front_of_hand_rows(rows):
    """As the latency plot draws it: Avg ms against F1 over the batch-1 rows."""
    single = [r for r in rows if r.batch_size == 1]
    front = pareto_front([(r.avg_ms, r.metric) for r in single])
    # the teacher in PyTorch loses to its ONNX export on latency at the same F1, and kd-2L in
    # PyTorch (5.4 ms, 89.2) to kd-3L in ONNX Runtime (3.6 ms, 89.5) on both
    assert [single[i].label() for i in front] == [
        "teacher (onnx)",
        "kd-3L (onnx)",
        "kd-2L (onnx)",
        "kd-1L (onnx)",
    ]


def test_teacher_without_a_pytorch_row_and_rows_without_a_teacher_at_their_point():
    bound = row("teacher", p99=5, role="teacher", io_binding=True)
    plain = row("teacher", p99=10, role="teacher")
    student = row("kd-2L", p99=2, metric=89.0)
    padded = row("kd-2L", p99=3, metric=88.5, padding="fixed", seq_length=16)
    # ONNX Runtime fed from host arrays ranks before IO binding: it is how a teacher runs as is
    assert relate_to_teacher([bound, plain, student, padded]) is plain
    assert student.speedup == pytest.approx(6.0 / 1.2) and bound.speedup == pytest.approx(2.0)
    assert student.vs_teacher == pytest.approx(-1.0)
    # no teacher padded to 16: F1 against the first-ranked teacher, and no speed-up
    assert padded.vs_teacher == pytest.approx(-1.5) and padded.speedup is None
    assert relate_to_teacher([student]) is None and student.vs_teacher == pytest.approx(-1.0)


def test_slo_parsing():
    assert Slo.parse("p99<=10ms") == Slo("p99", 10.0)
    assert Slo.parse(" P50 < 2s ") == Slo("p50", 2000.0)
    assert Slo.parse("avg<=500us") == Slo("avg", 0.5)
    assert Slo.parse("median<=3") == Slo("p50", 3.0)
    with pytest.raises(SlimbertError, match=r"--slo 'latency<10': write a statistic"):
        Slo.parse("latency<10")


def test_relative_slo_parsing_and_its_absolute_form():
    assert Slo.parse("speedup>=10x") == Slo("avg", speedup=10.0)
    assert Slo.parse(" Speed-up > 2.5 ") == Slo("avg", speedup=2.5)
    assert str(Slo.parse("speedup>=10x")) == "≥ 10× the teacher's speed (avg)"
    teacher = row("teacher", "pytorch", p99=20, role="teacher")  # avg 12 ms
    assert Slo.parse("speedup>=4x").against(teacher) == Slo("avg", 3.0)
    assert Slo.parse("p99<=10ms").against(teacher) == Slo("p99", 10.0)
    with pytest.raises(SlimbertError, match="above zero"):
        Slo.parse("speedup>=0x")
    with pytest.raises(SlimbertError, match='or "speedup>=10x"'):
        Slo.parse("speedup<=10x")


def test_a_relative_slo_reads_the_speedup_of_the_same_run(rows):
    """speedup>=3x: kd-2L (5×, -0.8) and kd-1L (10×, -4.0) are fast enough, only kd-2L
    within a point; kd-3L (3.33×) qualifies too but is slower than kd-2L."""
    choice = recommend(rows, Slo.parse("speedup>=3x"), max_f1_drop=1.0)
    assert choice.chosen.model == "kd-2L" and choice.chosen.runtime == "onnx"
    assert "avg 2.40 ms, 5.0× the teacher" in choice.summary
    assert choice.passed_over["teacher"] == (
        "teacher misses the SLO: even its fastest configuration (teacher (onnx)) has 1.4× the "
        "teacher, under 3×."
    )
    # six times: only kd-1L (10×) is fast enough, and it loses 4 points
    assert recommend(rows, Slo.parse("speedup>=6x"), max_f1_drop=1.0).chosen is None
    # without the teacher in the run there is no speed-up to read: one line, not a guess
    students = [r for r in rows if r.role != "teacher"]
    for r in students:
        r.speedup = None
    with pytest.raises(SlimbertError, match="bench the teacher's model folder too"):
        recommend(students, Slo.parse("speedup>=3x"), max_f1_drop=1.0)


def test_recommends_the_fastest_that_meets_both_and_says_why_not_the_others(rows):
    choice = recommend(rows, Slo.parse("p99<=10ms"), max_f1_drop=1.0)
    assert (choice.chosen.model, choice.chosen.runtime, choice.chosen.batch_size) == (
        "kd-2L",
        "onnx",
        1,
    )
    assert choice.summary == (
        "kd-2L (onnx, cpu, fp32, batch 1, own length, 1 thread) is recommended: p99 4.00 ms, "
        "f1 -0.80 points against the teacher; the fastest of 3 configurations that meet "
        "p99 ≤ 10 ms at batch 1 and f1 at most 1.00 points under the teacher."
    )
    assert choice.passed_over == {
        "teacher": "teacher misses the SLO: even its fastest configuration (teacher (onnx)) "
        "has p99 14.00 ms > 10 ms.",
        "kd-3L": "kd-3L meets p99 ≤ 10 ms at batch 1 and f1 at most 1.00 points under the "
        "teacher, but its fastest such configuration (kd-3L (onnx)) has p99 6.00 ms against "
        "kd-2L's 4.00 ms.",
        "kd-1L": "kd-1L loses 4.00 f1 points against the teacher, more than the 1.00 allowed.",
    }
    assert choice.to_dict()["row"]["p99_ms"] == 4


def test_no_recommendation_when_nothing_qualifies(rows):
    choice = recommend(rows, Slo.parse("p99<=1.5ms"), max_f1_drop=1.0)
    assert choice.chosen is None and choice.summary.startswith(
        "No configuration meets p99 ≤ 1.5 ms at batch 1"
    )
    assert choice.passed_over["kd-1L"] == (
        "kd-1L misses both: it loses 4.00 f1 points (more than 1.00) and even its fastest "
        "configuration (kd-1L (onnx)) has p99 2.00 ms > 1.5 ms."
    )
    assert set(choice.passed_over) == {"teacher", "kd-3L", "kd-2L", "kd-1L"}
    # F1 budget alone: the fastest by Avg ms within 0.6 points
    assert recommend(rows, None, max_f1_drop=0.6).chosen.model == "kd-3L"
    assert recommend(rows, None, None) is None


def test_a_model_that_meets_the_slo_only_where_it_loses_too_much():
    """kd-2L is fast enough only padded to 16 at 2 threads, where it loses 2 points; labels name
    thread counts because the rows differ in them."""
    rows = [
        row("teacher", "pytorch", p99=20, metric=90.0, role="teacher"),
        row("teacher", "pytorch", p99=12, metric=90.0, role="teacher", threads=2),
        row("kd-2L", p99=12, metric=89.5),
        row("kd-2L", p99=4, metric=88.0, threads=2, padding="fixed", seq_length=16),
    ]
    relate_to_teacher(rows)
    choice = recommend(rows, Slo.parse("p99<=10ms"), max_f1_drop=1.0)
    assert choice.chosen is None
    assert choice.summary == (
        "No configuration meets p99 ≤ 10 ms at batch 1 and f1 at most 1.00 points under the "
        "teacher; the reasons per model follow."
    )
    assert choice.passed_over == {
        "teacher": "teacher misses the SLO: even its fastest configuration "
        "(teacher (pytorch, 2 threads)) has p99 12.00 ms > 10 ms.",
        "kd-2L": "kd-2L meets the SLO only where it loses 2.00 f1 points "
        "(kd-2L (onnx, padded to 16, 2 threads)), more than the 1.00 allowed.",
    }
    # with a 2-point budget the padded row qualifies and is chosen
    assert recommend(rows, Slo.parse("p99<=10ms"), max_f1_drop=2.0).chosen is rows[3]


def test_recommendation_without_a_teacher_uses_the_best_row():
    rows = [row("a", p99=5, metric=88.0), row("b", p99=3, metric=86.0)]
    choice = recommend(rows, Slo.parse("p99<=10ms"), max_f1_drop=1.0)
    assert choice.chosen.model == "a" and "under the best model here" in choice.criteria
    assert choice.passed_over == {
        "b": "b loses 2.00 f1 points against the best model here, more than the 1.00 allowed."
    }


def test_compare_flags_only_changes_beyond_threshold_and_noise():
    old = Report(
        "old",
        [
            row("kd-2L", p99=20, spread=0.1),
            row("kd-3L", p99=20, spread=0.1, metric=89.5),
            row("teacher", "pytorch", role="teacher"),
        ],
        {},
    )
    new = Report(
        "new",
        [
            row("kd-2L", p99=21.2, spread=0.1),
            row("kd-3L", p99=24, spread=0.1, metric=88.9),
            row("kd-1L", p99=2),
        ],
        {},
    )
    # p50 = p99 / 2: kd-2L 10 → 10.6 is within 5% (0.5 ms) + spreads (0.2 ms); kd-3L 10 → 12 is not
    changes = compare_reports(old, new, Threshold("5%", 0.5, "p50"))
    assert [(c.label.split(" (")[0], c.kind, c.regressed) for c in changes] == [
        ("kd-3L", "slower", True),
        ("kd-3L", "less accurate", True),
        ("teacher", "missing", False),
        ("kd-1L", "new", False),
    ]
    assert changes[0].sentence() == (
        "SLOWER: kd-3L (onnx, cpu, fp32, batch 1, own length, 1 thread) p50: "
        "10.00 → 12.00 ms (+20.0%), beyond the 0.70 ms allowed"
    )
    assert (
        changes[1].sentence().endswith("f1: 89.50 → 88.90 points, beyond the 0.50 points allowed")
    )
    # an absolute threshold of 2 ms lets both through; only the F1 loss remains
    assert [
        c.kind for c in compare_reports(old, new, Threshold("2ms", 0.5, "p50")) if c.regressed
    ] == ["less accurate"]
    assert compare_reports(old, old, Threshold("0%", 0.0, "p99")) == []
    with pytest.raises(SlimbertError, match="--threshold 'fast'"):
        compare_reports(old, new, Threshold("fast"))


def test_compare_counts_both_runs_spread_as_noise():
    """p50 10 → 10.8 ms: 0.8 ms against 5% of 10 ms (0.5) plus both runs' spread."""

    def runs(spread: float, new_p99: float = 21.6) -> tuple[Report, Report]:
        old = Report("old", [row("kd-2L", p99=20, spread=spread)], {"cpu": "A", "threads": 1})
        new = Report("new", [row("kd-2L", p99=new_p99, spread=spread)], {"cpu": "B", "threads": 1})
        return old, new

    noisy = compare_reports(*runs(spread=0.2), Threshold("5%", 0.5, "p50"))
    assert noisy == []  # 0.8 ≤ 0.5 + 0.2 + 0.2
    steady = compare_reports(*runs(spread=0.1), Threshold("5%", 0.5, "p50"))
    assert [(c.kind, c.regressed) for c in steady] == [("slower", True)]
    assert (steady[0].old, steady[0].new) == (10.0, 10.8)
    assert steady[0].allowed == pytest.approx(0.7)  # 0.5 + 0.1 + 0.1
    faster = compare_reports(*runs(spread=0.1, new_p99=18.4), Threshold("5%", 0.5, "p50"))
    assert [(c.kind, c.regressed) for c in faster] == [("faster", False)]
    assert machine_differences(*runs(spread=0.1)) == ["cpu: OLD A vs NEW B"]
    with pytest.raises(SlimbertError, match="--statistic 'p95': choose one of avg, p50"):
        compare_reports(*runs(spread=0.1), Threshold("5%", 0.5, "p95"))


def test_labels_name_thread_counts_only_where_they_vary():
    one = Report("t", [row("kd-2L", threads=2), row("kd-2L", "pytorch", threads=2)], {})
    assert [cells[1] for cells in request_table(one).cells] == ["kd-2L (onnx)", "kd-2L (pytorch)"]
    sweep = Report("t", [row("kd-2L", threads=2), row("kd-2L", threads=4, io_binding=True)], {})
    assert [cells[1] for cells in request_table(sweep).cells] == [
        "kd-2L (onnx, 2 threads)",
        "kd-2L (onnx, IO binding, 4 threads)",
    ]
    # a full label names every coordinate, with the right number
    assert row("kd-2L", batch=4).label(full=True) == (
        "kd-2L (onnx, cpu, fp32, batch 4, own length, 1 thread)"
    )


def test_reports_of_the_foundation_and_of_later_versions_still_read(tmp_path):
    foundation_row = {
        k: v
        for k, v in vars(row("kd-2L")).items()
        if k
        in {
            "method",
            "model",
            "runtime",
            "provider",
            "batch_size",
            "requests",
            "total_ms",
            "avg_ms",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "qps",
            "metric_name",
            "metric",
            "threads",
            "role",
        }
    }
    later_row = {**vars(row("kd-2L")), "energy_joules": 1.5}
    (tmp_path / "report.json").write_text(
        json.dumps({"title": "t", "environment": {}, "rows": [foundation_row, later_row]})
    )
    report = Report.read(tmp_path)
    assert (
        report.rows[0].padding == "own"
        and report.rows[0].repeats == 1
        and report.rows[0].key() == report.rows[1].key()
    )
    with pytest.raises(SlimbertError, match="no such file"):
        Report.read(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SlimbertError, match="not a slimbert bench report"):
        Report.read(tmp_path / "bad.json")


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.references: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.references += [
            value or ""
            for name, value in attrs
            if name in ("src", "href", "data", "srcset", "poster", "action")
        ]


def test_html_stands_on_its_own_and_markdown_leads_with_the_request_table(rows, tmp_path):
    report = Report(
        "hand-made",
        rows,
        environment(1),
        ["a note"],
        {"recommendation": recommend(rows, Slo.parse("p99<=10ms"), 1.0).to_dict()},
    )
    md = write_report(report, tmp_path).read_text()
    page = (tmp_path / "report.html").read_text()
    parser = _Links()
    parser.feed(page)
    assert not {"script", "link", "iframe", "object", "embed"} & set(parser.tags)
    assert len(parser.references) == 3 and all(
        ref.startswith("data:image/png;base64,") for ref in parser.references
    )
    assert all(
        base64.b64decode(ref.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
        for ref in parser.references
    )
    assert "http://" not in page and "https://" not in page and "url(" not in page
    assert "kd-2L (onnx, cpu, fp32, batch 1, own length, 1 thread) is recommended" in page
    assert (
        md.index("| Method | Model | Requests | Total ms | Avg ms | F1 | vs Teacher |")
        < md.index("## Recommendation")
        < md.index("## Details")
    )
    assert "| kd | kd-2L (onnx) | 100 | 240.0 | 2.40 | 89.20 | -0.80 |" in md
    assert "- teacher misses the SLO" in md
    assert sorted(p.name for p in Path(tmp_path).glob("*.png")) == [
        "pareto.png",
        "size.png",
        "speedup.png",
    ]
    assert (tmp_path / "report.csv").read_text().count("\n") == len(rows) + 1
