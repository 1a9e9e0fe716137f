"""The end of a search: every trial in one table, bench's report of the timed students (the
seed-format request table, the latency-vs-metric plot with its Pareto front), the winner copied
to OUT/winner, and one line saying what to ship and why, or that nothing met the SLO and what
came closest.

    OUT/trials.md        every trial: Method | Model | Requests | Total ms | Avg ms | F1 |
                         vs Teacher | Accuracy | <SLO statistic> ms | × teacher | State
    OUT/report/          report.md/.html/.json/.csv, pareto.png (bench/render.py)
    OUT/winner/          the winning export folder as the trial wrote it: model.onnx, tokenizer,
                         slimbert.json, manifest.json with its parity figures; ready for
                         `slimbert serve --model OUT/winner`
    OUT/winner-triton/   a Triton model repository of it (export/triton.py: clients send text;
                         its client.py --smoke checks a server against the winner's logits)
    OUT/summary.json     the verdict, the winner's row, the wall-clock used

Each trial was timed as it finished, beside whatever the machine did then; before the verdict
the teacher and every timed student are timed once more in one alternating run, so that the
figures the verdict compares come from one measurement (each trial's own stays in its
result.json).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from slimbert.auto.probe import Timing, onnx_target, teacher_target
from slimbert.auto.trial import export_folder, read_choice, read_outcome
from slimbert.bench.decide import Slo, recommend, relate_to_teacher
from slimbert.bench.environment import environment
from slimbert.bench.render import Table, write_report
from slimbert.bench.report import Report, Row
from slimbert.data import read_examples
from slimbert.export import triton
from slimbert.export.manifest import MANIFEST_FILE
from slimbert.export.triton_config import TritonConfig
from slimbert.files import ONNX_FILE, atomic_dir, write_json_atomic, write_text_atomic
from slimbert.models import load_tokenizer

WINNER_DIR = "winner"
TRITON_DIR = "winner-triton"


@dataclass
class Finished:
    """A trial as the report reads it from its folder."""

    number: int
    name: str
    state: str
    rows: list[Row]  # one per precision that exported and was timed
    best: float | None  # best evaluation while it trained (pruned trials have only that)


def read_trials(out: Path) -> list[Finished]:
    found = []
    folders = (out / "trials").iterdir() if (out / "trials").is_dir() else []
    for folder in sorted(folders, key=lambda f: int(f.name) if f.name.isdigit() else -1):
        outcome = read_outcome(folder)
        if outcome is None or not folder.name.isdigit():
            continue
        choice = read_choice(folder)
        rows = []
        for row in outcome.rows.values():
            rows.append(Row(**row))
        best = max(outcome.evaluations) if outcome.evaluations else None
        found.append(
            Finished(int(folder.name), f"#{folder.name} {choice.key}", outcome.state, rows, best)
        )
    return found


def trial_table(trials: list[Finished], teacher: Row, slo: Slo) -> Table:
    """Every trial, one line per timed precision (a pruned or failed trial gets one line)."""
    stat = slo.statistic
    cells = [
        [
            teacher.method,
            "teacher (pytorch)",
            str(teacher.requests),
            f"{teacher.total_ms:.1f}",
            f"{teacher.avg_ms:.2f}",
            _fmt(teacher.f1),
            "–",
            _fmt(teacher.accuracy),
            f"{teacher.latency(stat):.2f}",
            "1.0×",
            "teacher",
        ]
    ]
    for trial in trials:
        for row in trial.rows:
            meets = "meets SLO" if slo.met(row) else "over SLO"
            cells.append(
                [
                    row.method,
                    row.label(),
                    str(row.requests),
                    f"{row.total_ms:.1f}",
                    f"{row.avg_ms:.2f}",
                    _fmt(row.f1),
                    _signed(row.vs_teacher),
                    _fmt(row.accuracy),
                    f"{row.latency(stat):.2f}",
                    f"{row.speedup:.1f}×" if row.speedup else "–",
                    f"{trial.state}, {meets}",
                ]
            )
        if not trial.rows:
            method = trial.name.split()[1].split("/")[0]
            best = f"best eval {trial.best:.2f}" if trial.best is not None else "no evaluation"
            cells.append([method, trial.name, *["–"] * 8, f"{trial.state} ({best})"])
    headers = [
        "Method",
        "Model",
        "Requests",
        "Total ms",
        "Avg ms",
        "F1",
        "vs Teacher",
        "Accuracy",
        f"{stat} ms",
        "× teacher",
        "State",
    ]
    return Table("Every trial", headers, cells)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}"


def closest(rows: list[Row], slo: Slo, max_drop: float) -> str:
    """One line when no student meets both: the one nearest to doing so, and by how much."""
    stat = slo.statistic
    students = [r for r in rows if r.role != "teacher"]
    if not students:
        return "no trial produced a timed student; nothing to ship"
    within = [r for r in students if -(r.vs_teacher or 0.0) <= max_drop + 1e-9]
    fast = [r for r in students if slo.met(r)]
    if within:
        near = min(within, key=lambda r: r.latency(stat))
        why = f"{slo.miss(near)}, at {near.vs_teacher:+.2f} points"
    elif fast:
        near = max(fast, key=lambda r: r.metric)
        why = f"meets the SLO but loses {-near.vs_teacher:.2f} points ({max_drop:g} allowed)"
    else:
        near = min(students, key=lambda r: r.latency(stat))
        why = f"the fastest: {slo.shown(near)}, {near.vs_teacher:+.2f} points"
    return (
        f"No candidate met {slo} with at most {max_drop:g} points lost; closest: "
        f"{near.label(full=False)}, {why}."
    )


def copy_winner(out: Path, row: Row) -> Path:
    """The winning export folder, copied whole to OUT/winner."""
    number = row.model.split()[0].lstrip("#")
    source = out / "trials" / number / export_folder(row.method, row.precision)
    with atomic_dir(out / WINNER_DIR) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True)
    return out / WINNER_DIR


def triton_repository(out: Path, timing: Timing) -> Path:
    """OUT/winner as a Triton model repository in OUT/winner-triton, its smoke test the
    winner's own logits on the first eval rows (on the provider the search timed)."""
    winner = out / WINNER_DIR
    manifest = json.loads((winner / MANIFEST_FILE).read_text())
    smoke = triton.smoke_logits(
        winner / ONNX_FILE,
        load_tokenizer(winner, "--out"),
        read_examples(timing.eval_path, timing.columns),
        manifest["max_length"],
        timing.provider,
        manifest.get("runtime") or {},
        manifest["precision"],
        TritonConfig(out).smoke_examples,
    )
    kind = "gpu" if timing.provider == "cuda" else "cpu"
    config = TritonConfig(out / TRITON_DIR, kind=kind)
    return triton.write_repository(config, winner, manifest, smoke)


def clear_winner(out: Path) -> None:
    """No winner this time: an earlier report's is not left to be served."""
    for name in (WINNER_DIR, TRITON_DIR):
        shutil.rmtree(out / name, ignore_errors=True)


def retime(
    out: Path, trials: list[Finished], teacher_dir: Path, timing: Timing
) -> tuple[list[Finished], Row]:
    """The teacher and every timed student of `trials` timed again in one alternating run;
    the trials with their rows replaced, and the teacher's row."""
    targets = [teacher_target(teacher_dir)]
    for trial in trials:
        for row in trial.rows:
            folder = out / "trials" / str(trial.number) / export_folder(row.method, row.precision)
            targets.append(onnx_target(row.model, folder, row.method, row.precision))
    rows = iter(timing.time_alternating(targets))
    teacher = next(rows)
    retimed = [replace(trial, rows=[next(rows) for _ in trial.rows]) for trial in trials]
    return retimed, teacher


def finish(
    out: Path,
    teacher: Row,
    slo: Slo,
    max_drop: float,
    seconds: float,
    stopped: str | None = None,
    retime_with: tuple[Path, Timing] | None = None,
    triton_with: Timing | None = None,
    promotion: str | None = None,
) -> str:
    """Write trials.md, the bench report and OUT/winner; return the one-line verdict.
    `stopped`: why the search ended before its trials ran out (the budget), if it did;
    `retime_with` (the teacher's folder, how trials are timed): time the teacher and every
    timed student again in one alternating run first, and judge on those figures;
    `triton_with` (how trials are timed): write OUT/winner-triton for the winner too;
    `promotion`: what the search's last step did with its leader (auto/promote.py)."""
    trials = read_trials(out)
    retimed = retime_with is not None and any(trial.rows for trial in trials)
    if retimed:
        trials, teacher = retime(out, trials, *retime_with)
    rows = [teacher, *(row for trial in trials for row in trial.rows)]
    relate_to_teacher(rows)
    students = rows[1:]
    # the teacher is the yardstick, not a candidate
    recommendation = recommend(students, slo, max_drop) if students else None
    chosen = recommendation.chosen if recommendation else None
    winner = None
    if chosen is None:
        clear_winner(out)
        line = closest(rows, slo, max_drop)
    else:
        winner = copy_winner(out, chosen)
        if triton_with is not None:
            triton_repository(out, triton_with)
        meets = (
            f"{chosen.speedup:.1f}× the teacher ≥ {slo.speedup:g}× (avg {chosen.avg_ms:.2f} "
            f"ms against {teacher.avg_ms:.2f})"
            if slo.relative
            else f"{slo.statistic} {chosen.latency(slo.statistic):.2f} ms ≤ {slo.limit_ms:g} ms"
        )
        line = (
            f"Ship {winner} ({chosen.label()}): {meets}, {chosen.metric_name} "
            f"{chosen.vs_teacher:+.2f} points against the teacher; the fastest of the trained "
            f"students within {max_drop:g} points."
        )
    extra = {"recommendation": recommendation.to_dict()} if recommendation else {}
    report = Report(f"slimbert auto: {slo}", rows, environment(), [line], extra)
    write_report(report, out / "report")
    table = trial_table(trials, teacher, slo)
    note = f"Search {stopped}.\n\n" if stopped else ""
    note += f"Promotion: {promotion}.\n\n" if promotion else ""
    if retimed:
        note += (
            "Latencies: the teacher and every timed student, timed again in one alternating "
            f"run before the verdict ({retime_with[1].repeats} round(s); each trial's timing "
            "as it finished is in trials/<n>/result.json).\n\n"
        )
    write_text_atomic(out / "trials.md", f"# slimbert auto\n\n{line}\n\n{note}{table.markdown()}")
    write_json_atomic(
        out / "summary.json",
        {
            "verdict": line,
            "winner": str(winner) if winner else None,
            "row": asdict(chosen) if chosen else None,
            "seconds": seconds,
            "stopped": stopped,
            "promotion": promotion,
            "retimed": retimed,
            "trials": {t.name: t.state for t in trials},
        },
    )
    return line
