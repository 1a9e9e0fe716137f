"""The experiment's table, details, latency-vs-F1 report and files, from its cells' results."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from pathlib import Path

from slimbert.bench.environment import environment, machine_lines
from slimbert.bench.render import Table, write_report
from slimbert.bench.report import Report, Row
from slimbert.experiment.recipe import TEACHING_PATHS, ExperimentConfig, key_payload, student_name
from slimbert.files import CONFIG_FILE, write_json_atomic, write_text_atomic
from slimbert.teachers.boost import round_error


class Matrix:
    """The (teaching path × depth) matrix of one experiment's results."""

    def __init__(self, config: ExperimentConfig, results: dict[str, dict], out: Path):
        self.config, self.results, self.out = config, results, out

    def model_dir(self, name: str) -> Path:
        return self.out / "models" / name

    def f1(self, name: str, key: str = "f1") -> float | None:
        result = self.results.get(name)
        return None if result is None else result["metric"].get(key)

    def student_values(self, method: str, depth: int, key: str = "f1") -> list[float]:
        values = [self.f1(student_name(method, depth, seed), key) for seed in self.config.seeds]
        return [v for v in values if v is not None]

    def matrix(self, key: str = "f1") -> list[dict]:
        """Rows of the matrix: label, latency figures, per-method (mean, std, n), vs teacher."""
        c = self.config
        teacher = self.f1("teacher", key)
        professors = {
            "TS": teacher,
            "PS-Boosting": self.f1("professor-boost", key),
            "PS-DA": self.f1("professor-da", key),
            "PS-DA*": None,
        }
        rows = [
            {
                "model": self.teacher_label(),
                "bench": self.results.get("bench-teacher"),
                "cells": {m: None if v is None else (v, None, 1) for m, v in professors.items()},
            }
        ]
        for depth in c.depths:
            cells = {}
            for method in TEACHING_PATHS:
                values = self.student_values(method, depth, key) if method in c.methods else []
                cells[method] = (
                    (
                        statistics.mean(values),
                        statistics.stdev(values) if len(values) > 1 else None,
                        len(values),
                    )
                    if values
                    else None
                )
            rows.append(
                {
                    "model": f"Student {depth}L",
                    "bench": self.results.get(f"bench-{depth}L"),
                    "cells": cells,
                }
            )
        for row in rows:
            # The teacher row compares the professors with the teacher; a student row, every method.
            candidates = [
                (cell[0], m)
                for m, cell in row["cells"].items()
                if cell is not None and not (row is rows[0] and m == "TS")
            ]
            best = max(candidates, default=None)
            row["vs_teacher"] = (
                None if best is None or teacher is None else (best[0] - teacher, best[1])
            )
        return rows

    def teacher_label(self) -> str:
        config = self.model_dir("teacher") / CONFIG_FILE
        layers = (
            json.loads(config.read_text()).get("num_hidden_layers") if config.is_file() else None
        )
        return f"Teacher ({layers}L)" if layers else "Teacher"

    def table(self, key: str = "f1", title: str | None = None):
        name = "F1" if key == "f1" else key.capitalize()
        headers = [
            "Model",
            "Requests",
            "Total ms",
            "Avg ms",
            *[f"{m}-{name}" for m in TEACHING_PATHS],
            "vs Teacher",
        ]
        cells = []
        for row in self.matrix(key):
            bench = (row["bench"] or {}).get("row")
            latency = (
                [str(bench["requests"]), f"{bench['total_ms']:.1f}", f"{bench['avg_ms']:.2f}"]
                if bench
                else ["–", "–", "–"]
            )
            figures = []
            for method in TEACHING_PATHS:
                cell = row["cells"][method]
                if cell is None:
                    figures.append("–")
                else:
                    mean, std, n = cell
                    figures.append(f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}")
            vs = row["vs_teacher"]
            cells.append(
                [row["model"], *latency, *figures, "–" if vs is None else f"{vs[0]:+.2f} ({vs[1]})"]
            )
        return Table(title, headers, cells)

    def details(self) -> list[str]:
        c, r = self.config, self.results
        lines = []
        teacher = r.get("teacher")
        if teacher:
            lines.append(
                f"Teacher: {c.base} fine-tuned on {c.train} "
                f"({'first ' + str(c.limit) + ' rows' if c.limit else 'all rows'}), "
                f"best at step {teacher['best_step']} of {teacher['steps']}; dev "
                + ", ".join(f"{k} {v:.2f}" for k, v in teacher["metric"].items())
                + "."
            )
        boost = r.get("professor-boost")
        if boost:
            rounds = "; ".join(
                f"round {x['round'] + 1}: {round_error(x)}, "
                f"α {x['alpha']:.3f}, member dev {x['eval_main']:.2f}"
                + (f" ({x['degenerate']})" if x.get("degenerate") else "")
                + ("" if x["kept"] else " (retried)" if x.get("retried") else " (dropped)")
                for x in boost["rounds"]
            )
            lines.append(
                f"PS-Boosting professor: {boost['members']} "
                f"member{'s' if boost['members'] != 1 else ''} ({boost['stopped']}); "
                f"{rounds}; ensemble dev "
                + ", ".join(f"{k} {v:.2f}" for k, v in boost["metric"].items())
                + f". Its latency is about {boost['members']}× the teacher's (not timed)."
            )
        augment = r.get("augment")
        if augment:
            report = augment["report"]
            rules = "; ".join(
                f"{rule}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
                for rule, counts in report["rules"].items()
            )
            lines.append(
                f"Augmentation: {report['source_pairs']} training pairs → "
                f"{report['output_rows']} rows ({report['added']} new); {rules}; "
                f"labels {report['labels_before']} → {report['labels_after']}."
            )
        da = r.get("professor-da")
        if da:
            lines.append(
                f"PS-DA professor: {c.base} fine-tuned on the augmented pairs, "
                f"best at step {da['best_step']} of {da['steps']}; dev "
                + ", ".join(f"{k} {v:.2f}" for k, v in da["metric"].items())
                + "."
            )
        for depth in c.depths:
            pre = r.get(f"pretrain-{depth}L")
            if pre:
                lines.append(
                    f"Pre-trained {depth}L student: held-out masked-LM loss "
                    f"{pre['mlm_loss_before']:.3f} → "
                    f"{pre['metric'].get('mlm_loss', float('nan')):.3f} "
                    f"(best at step {pre['best_step']} of {pre['steps']})."
                )
        for depth in c.depths:
            for method in (m for m in TEACHING_PATHS if m in c.methods):
                per_seed = ", ".join(
                    f"seed {seed}: {self.f1(student_name(method, depth, seed)) or float('nan'):.2f}"
                    for seed in c.seeds
                )
                lines.append(f"{method} {depth}L F1 per seed — {per_seed}.")
        return lines

    def report(self):
        """Rows for report.py's latency-vs-F1 plot: the teacher and each method's mean per depth."""
        rows = []
        fields_ = set(Row.__dataclass_fields__)
        teacher_f1 = self.f1("teacher")
        for row in self.matrix():
            bench = (row["bench"] or {}).get("row")
            if not bench:
                continue
            for method, cell in row["cells"].items():
                is_teacher = row["model"].startswith("Teacher")
                if cell is None or (is_teacher and method != "TS"):
                    continue
                payload = {k: v for k, v in bench.items() if k in fields_}
                payload.update(
                    method="teacher" if is_teacher else method,
                    model="teacher" if is_teacher else f"{method} {row['model'].split()[-1]}",
                    metric=cell[0],
                    metric_name="f1",
                    accuracy=None,
                    role="teacher" if is_teacher else "student",
                    vs_teacher=None if teacher_f1 is None else cell[0] - teacher_f1,
                )
                rows.append(Row(**payload))
        environment_ = next(
            (r["environment"] for name, r in self.results.items() if name.startswith("bench-")),
            None,
        ) or environment(self.config.bench.threads)
        return Report(
            f"Teacher → professor → student: {Path(self.config.train).parent.name} dev, "
            f"mean F1 over {len(self.config.seeds)} seeds",
            rows,
            environment_,
            [
                "F1 is the mean over seeds; "
                "latency is one student per depth (all methods share the architecture)."
            ],
        )

    def write(self) -> Path:
        c = self.config
        env = environment(c.bench.threads)
        bench_env = next(
            (r["environment"] for name, r in self.results.items() if name.startswith("bench-")),
            None,
        )
        title = (
            f"Teacher → professor → student on {Path(c.train).parent.name} ({Path(c.eval).name})"
        )
        lines = [f"# {title}", ""]
        lines += [f"- {line}" for line in machine_lines(env)]
        if bench_env:
            lines.append(
                f"- Latency measured on: {bench_env.get('cpu')}, {bench_env.get('cores')} cores, "
                f"threads {bench_env.get('threads')}, runtime {c.bench.runtime}, "
                f"provider {c.bench.provider}, batch 1, each request at its own length, "
                f"{c.bench.warmup} warm-up requests"
            )
        budget = (
            f"{c.student.max_steps} steps"
            if c.student.max_steps
            else f"{c.student.epochs:g} epochs"
        )
        method, template = c.student_method()
        method_line = f"{method.name} " + ", ".join(
            f"{k}={v}" for k, v in asdict(template).items() if k != "layers" and v is not None
        )
        trained_on = (
            "original training set"
            if c.da_student_data == "original"
            else "original (TS, PS-Boosting) or augmented (PS-DA, PS-DA*) training set"
        )
        lines.append(
            f"- Students: depths {c.depths}, seeds {c.seeds}, {method_line}, at most {budget} "
            f"at lr {c.student.lr:g}, batch {c.student.batch_size}, best checkpoint on dev "
            f"(patience {c.student.patience}); every method's students train on the {trained_on}"
        )
        lines += [
            "",
            self.table(
                "f1", "F1 of the positive class (students: mean ± sample std over seeds)"
            ).markdown(),
            self.table("accuracy", "Accuracy (mean ± sample std)").markdown(),
            "## Details",
            "",
        ]
        lines += [f"- {line}" for line in self.details()]
        lines += [
            "",
            "The teacher row: TS-F1 is the teacher's; PS-Boosting-F1 and PS-DA-F1 are the "
            "professors' own dev figures. vs Teacher: the row's best mean minus the teacher's F1.",
            "",
            "![latency vs F1](report/pareto.png)",
            "",
        ]
        write_report(self.report(), self.out / "report")
        write_json_atomic(
            self.out / "experiment.json",
            {
                "config": key_payload(c),
                "matrix": self.matrix(),
                "cells": self.results,
                "environment": env,
            },
        )
        path = self.out / "experiment.md"
        write_text_atomic(path, "\n".join(lines))
        return path
