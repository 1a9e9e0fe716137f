"""The MRPC full-budget page (benchmarks/results/quality-mrpc/README.md) from the committed cells.

    python benchmarks/summarize_quality_mrpc.py [--results benchmarks/results/quality-mrpc]
        [--recipe benchmarks/recipes/quality-mrpc-cpu.yaml]

Reads every `cells/<name>.json` that `slimbert experiment` wrote (copied by
benchmarks/quality_mrpc.sh as they finished): the teacher, the professors, and each student
(`student-<path>-<depth>L-seed<n>`). For every student: dev F1 and accuracy, retention (% of the
teacher's figure), and its budget — steps, epochs (steps × batch ÷ training rows), the step of
its chosen checkpoint, wall-clock and examples/s. Then the issue's targets for the 3-layer
students, means over seeds. The seed-format latency table and the plot are the experiment's own
(`experiment.md`, `report/`). Nothing is typed in by hand; a missing cell is "pending".

Then the 3-layer students on a teacher-labelled transfer set (benchmarks/students_transfer_mrpc.sh,
cells under `transfer/cells/`: `<method>-3L-transfer-<set>-seed<n>.json` is the student's
slimbert.json, `.budget.json` its wall-clock), each beside the TS student of its seed, and the
retention target again over them.

The training rows are counted by slimbert's own reader from the recipe's training file, so run
this from the repository root where that path resolves.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import yaml

from slimbert.data import read_examples
from slimbert.experiment.recipe import SLUGS, TEACHING_PATHS, student_name

TARGET_DA_GAIN = 1.0  # PS-DA 3L ≥ TS 3L + 1 F1 (mean of seeds)
TARGET_F1_KEPT = 98.0  # the best 3-layer student keeps ≥ 98% of the teacher's F1 ...
TARGET_ACCURACY_GAP = 2.0  # ... with accuracy no more than 2 points under the teacher's


def mean_std(values: list[float]) -> str:
    if not values:
        return "pending"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def da_student_rows(recipe: dict, cells: dict[str, dict]) -> int | None:
    """The augmented set's rows when PS-DA's students train on it (`da_student_data: augmented`)."""
    if recipe.get("da_student_data") != "augmented" or "augment" not in cells:
        return None
    return cells["augment"]["result"]["report"]["output_rows"]


def read_cells(folder: Path) -> dict[str, dict]:
    """A transfer folder's students: `<name>.json` is the student's slimbert.json."""
    return {
        path.stem: json.loads(path.read_text())
        for path in sorted((folder / "cells").glob("*-seed*.json"))
        if not path.stem.endswith(".budget")
    }


def transfer_section(
    folder: Path,
    teacher: dict | None,
    matrix: dict[str, dict],
    recipe: dict,
    versus: Path | None = None,
) -> list[str]:
    """The transfer-set students' table, their means and the retention target over them.

    `versus`: another transfer folder whose students of the same names (same set, same seed)
    learned from another teacher; each row also gets its Δ against that one.
    """
    cells = read_cells(folder)
    if not cells or not teacher:
        return []
    others = read_cells(versus) if versus else {}
    taught_by = sorted({Path(c["teacher"]).name for c in cells.values()})
    other_by = sorted({Path(c["teacher"]).name for c in others.values()})
    lines = [
        "",
        "## 3-layer students on a teacher-labelled transfer set",
        "",
        "`bash benchmarks/students_transfer_mrpc.sh` (its header gives every setting; "
        f"`{folder.name}/runs.log` each start and stop). Taught by the experiment's "
        f"`{'`, `'.join(taught_by)}`; student settings as the "
        "matrix, plus the rows of one set from `slimbert augment` — `cN-pP`: N word-replaced "
        "copies of every training pair (whole words, each replaced with probability P by one "
        "of the teacher's embedding neighbours) and the pairs symmetry and transitivity imply, "
        "every row labelled by the teacher, no dev sentence in it"
        + (
            ""
            if taught_by == ["teacher"]
            else " (the soft targets on every row are the professor's, from its own logits; the "
            "hard labels of the set's rows stay the teacher's, which built the set)"
        )
        + ". Evaluated every 230 steps (the "
        "matrix: every epoch, 115 steps, patience 3), "
        "patience 4, about 4,500 steps at most; chosen on dev accuracy. Δ is against the TS "
        "student of the same seed (no transfer set)"
        + (
            f"; Δ set is against the student of the same set and seed taught by "
            f"`{'`, `'.join(other_by)}` (`{versus}`)."
            if others
            else "."
        ),
        "",
        "| Student | Dev F1 | Dev accuracy | MCC | F1 kept | Accuracy kept | Δ F1 / Δ acc vs TS "
        + ("| Δ F1 / Δ acc vs set " if others else "")
        + "| Budget |",
        "|---|---|---|---|---|---|---|" + ("---|" if others else "") + "---|",
    ]
    t = teacher["metric"]
    ts = {  # the matrix's TS student of each seed: (F1, accuracy)
        seed: (m["f1"], m["accuracy"])
        for seed in recipe["seeds"]
        if (cell := matrix.get(student_name("TS", 3, seed)))
        for m in [cell["result"]["metric"]]
    }
    groups: dict[str, list[dict]] = {}
    for name, result in cells.items():
        m = result["metric"]
        group, seed = name.rsplit("-seed", 1)
        groups.setdefault(group, []).append(m)
        budget_file = folder / "cells" / f"{name}.budget.json"
        rows = result["data"]["train"]["rows"]
        batch = result["train_config"]["batch_size"]
        steps = result["steps"]
        budget = (
            f"{rows:,} rows; {steps} steps ({steps * batch / rows:.1f} epochs), best at "
            f"{result['best_step']}"
        )
        # a method in stages (TinyBERT: intermediate, then prediction) trained every stage's
        # steps in its wall-clock; `steps` above is the last stage's
        stages = result.get("stages") or {}
        trained = sum(stage["steps"] for stage in stages.values()) or steps
        if stages:
            budget += " (" + " + ".join(f"{s['steps']} {n}" for n, s in stages.items()) + ")"
        if budget_file.is_file():
            seconds = json.loads(budget_file.read_text())["wall_seconds"]
            budget += f", {seconds / 60:.1f} min, {trained * batch / seconds:.0f} ex/s"
        base = ts.get(int(seed))
        delta = f"{m['f1'] - base[0]:+.2f} / {m['accuracy'] - base[1]:+.2f}" if base else "–"
        if others:
            other = others.get(name, {}).get("metric")
            delta += " | " + (
                f"{m['f1'] - other['f1']:+.2f} / {m['accuracy'] - other['accuracy']:+.2f}"
                if other
                else "–"
            )
        lines.append(
            f"| {name} | {m['f1']:.2f} | {m['accuracy']:.2f} | {m['mcc']:.2f} | "
            f"{100 * m['f1'] / t['f1']:.2f}% | {100 * m['accuracy'] / t['accuracy']:.2f}% | "
            f"{delta} | {budget} |"
        )
    lines += [
        "",
        "| Student | Seeds | Dev F1 | Dev accuracy | MCC |",
        "|---|---|---|---|---|",
    ]
    for group, metrics in groups.items():
        lines.append(
            f"| {group} | {len(metrics)} | {mean_std([m['f1'] for m in metrics])} | "
            f"{mean_std([m['accuracy'] for m in metrics])} | "
            f"{mean_std([m['mcc'] for m in metrics])} |"
        )
    seeds = len(recipe["seeds"])
    done = {g: ms for g, ms in groups.items() if len(ms) == seeds}
    lines += ["", "| Target | Measured | Met |", "|---|---|---|"]
    if done:
        best = max(done, key=lambda g: statistics.fmean(m["accuracy"] for m in done[g]))
        f1 = statistics.fmean(m["f1"] for m in done[best])
        accuracy = statistics.fmean(m["accuracy"] for m in done[best])
        kept, gap = 100 * f1 / t["f1"], t["accuracy"] - accuracy
        lines.append(
            f"| best 3L student on a transfer set ({best}, mean of {seeds} seeds) keeps ≥ "
            f"{TARGET_F1_KEPT:g}% of the teacher's F1, accuracy ≤ {TARGET_ACCURACY_GAP:g} points "
            f"under | {kept:.2f}% F1; accuracy {accuracy:.2f} vs {t['accuracy']:.2f} "
            f"({-gap:+.2f}) | "
            f"{'yes' if kept >= TARGET_F1_KEPT and gap <= TARGET_ACCURACY_GAP else 'no'} |"
        )
    else:
        lines.append(
            f"| best 3L student on a transfer set, all {seeds} seeds | pending (one seed so "
            "far: see the rows above) | |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/quality-mrpc"))
    parser.add_argument(
        "--recipe", type=Path, default=Path("benchmarks/recipes/quality-mrpc-cpu.yaml")
    )
    parser.add_argument(
        "--transfer",
        type=Path,
        help="folder of transfer-set students (default: RESULTS/transfer)",
    )
    parser.add_argument(
        "--versus",
        type=Path,
        help="another transfer folder: each student's Δ against the one of the same name there",
    )
    args = parser.parse_args()
    recipe = yaml.safe_load(args.recipe.read_text())
    cells = {
        path.stem: json.loads(path.read_text()) for path in (args.results / "cells").glob("*.json")
    }
    rows = len(read_examples(Path(recipe["train"])))
    batch = recipe["student"]["batch_size"]
    steps_per_epoch = math.ceil(rows / batch)
    teacher = cells.get("teacher", {}).get("result")

    notes = "NOTES.md" if (args.results / "NOTES.md").is_file() else "../NOTES.md"
    lines = [
        "# MRPC at the students' own budget",
        "",
        "```bash",
        f"RECIPE={args.recipe} RESULTS={args.results} bash benchmarks/quality_mrpc.sh",
        f"python benchmarks/summarize_quality_mrpc.py --results {args.results} "
        f"--recipe {args.recipe}"
        + (f" --transfer {args.transfer}" if args.transfer else "")
        + (f" --versus {args.versus}" if args.versus else "")
        + "   # this page",
        "```",
        "",
        f"The seed-000 matrix ({', '.join(recipe['methods'])}) × "
        f"{', '.join(f'{d}-layer' for d in recipe['depths'])} students × seeds "
        f"{', '.join(map(str, recipe['seeds']))}; the recipe's header gives every setting, "
        "`runs.log` each start and stop with its machine and revision. The seed-format table "
        "with latency and the latency-vs-F1 plot: [experiment.md](experiment.md). The reading "
        f"of the figures: [NOTES.md]({notes}).",
        "",
    ]
    if teacher:
        t = teacher["metric"]
        lines += [
            f"Teacher: dev accuracy {t['accuracy']:.2f}, F1 {t['f1']:.2f}, MCC {t['mcc']:.2f} "
            f"(best at step {teacher['best_step']} of {teacher['steps']}, "
            f"{cells['teacher']['seconds'] / 60:.0f} min).",
            "",
        ]
    for name, label in (("professor-boost", "PS-Boosting"), ("professor-da", "PS-DA")):
        professor = cells.get(name, {}).get("result")
        if professor:
            m = professor["metric"]
            lines.append(
                f"- {label} professor: dev accuracy {m['accuracy']:.2f}, F1 {m['f1']:.2f} "
                f"({cells[name]['seconds'] / 60:.0f} min)."
            )
    lines += [
        "",
        f"Students: {rows:,} training rows, batch {batch} ({steps_per_epoch} steps an epoch), "
        f"at most {recipe['student']['epochs']} epochs, patience {recipe['student']['patience']}"
        ", checkpoint chosen on dev accuracy."
        + (
            f" PS-DA's students train on the {augmented_rows:,} augmented pairs instead "
            f"({math.ceil(augmented_rows / batch)} steps an epoch)."
            if (augmented_rows := da_student_rows(recipe, cells))
            else ""
        ),
        "",
        "| Student | Dev F1 | Dev accuracy | F1 kept | Accuracy kept | Budget |",
        "|---|---|---|---|---|---|",
    ]
    f1s: dict[tuple[str, int], list[float]] = {}
    accuracies: dict[tuple[str, int], list[float]] = {}
    for depth in recipe["depths"]:
        for path in [p for p in TEACHING_PATHS if p in recipe["methods"]]:
            for seed in recipe["seeds"]:
                name = student_name(path, depth, seed)
                cell = cells.get(name)
                if cell is None:
                    lines.append(f"| {name} | pending | | | | |")
                    continue
                result = cell["result"]
                m = result["metric"]
                f1s.setdefault((path, depth), []).append(m["f1"])
                accuracies.setdefault((path, depth), []).append(m["accuracy"])
                kept = (
                    (
                        f"{100 * m['f1'] / teacher['metric']['f1']:.2f}%",
                        f"{100 * m['accuracy'] / teacher['metric']['accuracy']:.2f}%",
                    )
                    if teacher
                    else ("–", "–")
                )
                steps = result["steps"]
                epoch = steps_per_epoch
                if path.startswith("PS-DA") and (augmented_rows := da_student_rows(recipe, cells)):
                    epoch = math.ceil(augmented_rows / batch)  # they train on the augmented pairs
                budget = (
                    f"{steps} steps ({steps / epoch:.1f} epochs), best at "
                    f"{result['best_step']}, {cell['seconds'] / 60:.1f} min, "
                    f"{steps * batch / cell['seconds']:.0f} ex/s"
                )
                lines.append(
                    f"| {name} | {m['f1']:.2f} | {m['accuracy']:.2f} | {kept[0]} | {kept[1]} "
                    f"| {budget} |"
                )
    lines += [
        "",
        "Means over seeds (± sample standard deviation):",
        "",
        "| Path | Depth | Seeds | Dev F1 | Dev accuracy | F1 / accuracy − TS (seeds) |",
        "|---|---|---|---|---|---|",
    ]
    for (path, depth), values in f1s.items():
        versus = "–"
        pairs = [  # (this path's metrics, TS's) on every seed both have
            (cells[a]["result"]["metric"], cells[b]["result"]["metric"])
            for seed in recipe["seeds"]
            if (a := student_name(path, depth, seed)) in cells
            and (b := student_name("TS", depth, seed)) in cells
        ]
        if path != "TS" and pairs:
            f1_gap = statistics.fmean(m["f1"] - t["f1"] for m, t in pairs)
            accuracy_gap = statistics.fmean(m["accuracy"] - t["accuracy"] for m, t in pairs)
            versus = f"{f1_gap:+.2f} / {accuracy_gap:+.2f} ({len(pairs)})"
        lines.append(
            f"| {path} | {depth}L | {len(values)} | {mean_std(values)} | "
            f"{mean_std(accuracies[(path, depth)])} | {versus} |"
        )
    lines += ["", "## Targets (3 layers)", "", "| Target | Measured | Met |", "|---|---|---|"]
    seeds = len(recipe["seeds"])
    ts, da = f1s.get(("TS", 3), []), f1s.get(("PS-DA", 3), [])
    if len(ts) == seeds and len(da) == seeds:
        gain = statistics.fmean(da) - statistics.fmean(ts)
        lines.append(
            f"| PS-DA 3L ≥ TS 3L + {TARGET_DA_GAIN:g} F1 (mean of {seeds} seeds) | "
            f"{statistics.fmean(da):.2f} − {statistics.fmean(ts):.2f} = {gain:+.2f} | "
            f"{'yes' if gain >= TARGET_DA_GAIN else 'no'} |"
        )
    else:
        lines.append(f"| PS-DA 3L ≥ TS 3L + {TARGET_DA_GAIN:g} F1 | pending | |")
    done = {path: v for (path, depth), v in f1s.items() if depth == 3 and len(v) == seeds}
    if teacher and done:
        best = max(done, key=lambda p: statistics.fmean(done[p]))
        f1 = statistics.fmean(done[best])
        accuracy = statistics.fmean(accuracies[(best, 3)])
        kept = 100 * f1 / teacher["metric"]["f1"]
        gap = teacher["metric"]["accuracy"] - accuracy
        lines.append(
            f"| best 3L student ({best}) keeps ≥ {TARGET_F1_KEPT:g}% of the teacher's F1, "
            f"accuracy ≤ {TARGET_ACCURACY_GAP:g} points under | {kept:.2f}% F1; accuracy "
            f"{accuracy:.2f} vs {teacher['metric']['accuracy']:.2f} ({-gap:+.2f}) | "
            f"{'yes' if kept >= TARGET_F1_KEPT and gap <= TARGET_ACCURACY_GAP else 'no'} |"
        )
    else:
        lines.append("| best 3L student ≥ 98% of the teacher's F1, accuracy within 2 | pending | |")
    lines += transfer_section(
        args.transfer or args.results / "transfer", teacher, cells, recipe, args.versus
    )
    lines.append("")
    lines.append(
        "Student paths: "
        + "; ".join(f"`{slug}` = {path}" for path, slug in SLUGS.items())
        + ". PS-DA* students start from the masked-LM pre-trained student."
    )
    (args.results / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
