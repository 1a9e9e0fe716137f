"""The SST-2 full-budget table (benchmarks/results/quality-sst2/README.md) from the committed cells.

    python benchmarks/summarize_quality.py [--results benchmarks/results/quality-sst2]

Reads every `cells/<name>.json` (the model's slimbert.json, copied by benchmarks/quality_sst2.sh
as the cell finished) and `cells/<name>.budget.json` (its wall-clock and command), and the bench
report under `bench/` when that stage ran. Retention = the student's dev figure ÷ the teacher's,
in %; the transfer-set rows are set beside the same students without it. Nothing is typed in
by hand; rows not yet trained are listed as pending.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

STUDENTS = [
    f"{method}-{layers}L{{}}-seed1" for layers in (3, 2) for method in ("kd", "tinybert", "minilm")
]
# every seed-1 row, then each with the transfer set, is listed (pending until its cell is in);
# other seeds follow when trained
EXPECTED = (
    ["teacher"] + [s.format("") for s in STUDENTS] + [s.format("-transfer") for s in STUDENTS]
)
ORDER = EXPECTED + [
    f"{method}-{layers}L-seed2" for layers in (3, 2) for method in ("kd", "tinybert", "minilm")
]


def budget_line(meta: dict, budget: dict | None) -> str:
    config = meta.get("train_config", {})
    rows = meta["data"]["train"]["rows"]
    steps, best = meta.get("steps"), meta.get("best_step")
    epochs = steps * config.get("batch_size", 32) / rows if steps else float("nan")
    stopped = "early stop" if meta["history"] and steps < _planned(meta) else "ran its budget"
    transfer = (meta["data"].get("transfer") or {}).get("rows", 0)  # counted in rows too
    shown = f"{rows - transfer:,} + {transfer:,} transfer rows" if transfer else f"{rows:,} rows"
    # a method in stages (tinybert: intermediate, then prediction; minilm: relation, then
    # prediction) trains every stage: `steps` is the last stage's, the rate counts them all
    stages = meta.get("stages") or {}
    trained = sum(stage["steps"] for stage in stages.values()) or steps
    if stages:
        parts = " + ".join(f"{stage['steps']} {name}" for name, stage in stages.items())
        shown_steps = f"{trained} steps ({parts}; the last {epochs:.2f} epochs)"
    else:
        shown_steps = f"{steps} steps ({epochs:.2f} epochs)"
    text = f"{shown}, {shown_steps}, best at {best}, {stopped}"
    if budget:
        seconds = budget["wall_seconds"]
        if budget.get("resumed"):  # the wall-clock of the last run alone: no rate from it
            text += f", resumed: {seconds / 60:.0f} min wall after the stop"
        else:
            rate = trained * config.get("batch_size", 32) / seconds
            text += f", {seconds / 60:.0f} min wall, {rate:.0f} ex/s"
    return text


def plain_of(name: str) -> str:
    """The same student without the transfer set: kd-2L-transfer[-variant]-seed1 → kd-2L-seed1."""
    return re.sub(r"-transfer(-[A-Za-z0-9.]+)?(?=-seed)", "", name)


def transfer_lines(metas: dict, budgets: dict, manifest: dict | None) -> list[str]:
    """Each student with the transfer set beside the same student without it."""
    named = ORDER + sorted(set(metas) - set(ORDER))
    pairs = [
        (plain_of(name), name)
        for name in named
        if "-transfer" in name and name in metas and plain_of(name) in metas
    ]
    if not pairs:
        return []
    out = ["", "## With the transfer set against without it (same method, depth and seed)", ""]
    if manifest:
        words = manifest.get("counts", {}).get("words", {})
        settings = manifest.get("settings", {})
        out += [
            f"The set (`cells/transfer.manifest.json`): {settings.get('copies')} word-replaced "
            f"copy per training row (teacher embedding neighbours, p {settings.get('prob')}, "
            f"top {settings.get('top_k')}), labelled by the teacher: {words.get('made', 0):,} "
            f"made, {words.get('in_train', 0):,} equal to a training row, "
            f"{words.get('eval_leak', 0):,} holding a dev sentence and "
            f"{words.get('duplicate', 0):,} duplicates dropped: {manifest['rows']:,} rows.",
            "",
        ]
    out += [
        "| Student with the set | Accuracy without → with | F1 without → with | Δ accuracy | Δ F1 "
        "| Wall-clock |",
        "|---|---|---|---|---|---|",
    ]
    for plain, transfer in pairs:
        a, b = metas[plain]["metric"], metas[transfer]["metric"]
        walls = [budgets.get(n, {}).get("wall_seconds") for n in (plain, transfer)]
        resumed = any(budgets.get(n, {}).get("resumed") for n in (plain, transfer))
        wall = (
            f"{walls[0] / 60:.0f} → {walls[1] / 60:.0f} min" if all(walls) and not resumed else "–"
        )
        out.append(
            f"| {transfer} | {a['accuracy']:.2f} → {b['accuracy']:.2f} | "
            f"{a['f1']:.2f} → {b['f1']:.2f} | {b['accuracy'] - a['accuracy']:+.2f} | "
            f"{b['f1'] - a['f1']:+.2f} | {wall} |"
        )
    return out


def quantization(manifest: dict) -> str:
    """How an export was quantized: dynamic, or static with its calibration."""
    for step in manifest.get("optimizations", []):
        if step.get("mode") == "dynamic":
            return "dynamic" + ("" if step["config"].get("per_channel", True) else ", per tensor")
        if step.get("mode") == "static":
            return f"static, {step['config']['method']}, {step['calibration_examples']} rows"
    return "–"


def int8_lines(cells: Path) -> list[str]:
    """Every int8 export's validation on the whole dev file (its manifest.json)."""
    manifests = sorted(cells.glob("*-int8*.manifest.json"))
    if not manifests:
        return []
    out = [
        "",
        "## int8 exports, validated against PyTorch on the whole dev file",
        "",
        "| Artifact | Quantization | Examples | PyTorch F1 | ONNX int8 F1 | Δ F1 "
        "| Label agreement | Max Δ logit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path in manifests:
        manifest = json.loads(path.read_text())
        v = manifest.get("validation", {})
        nan = float("nan")
        out.append(
            f"| {path.name[: -len('.manifest.json')]} | {quantization(manifest)} | "
            f"{v.get('examples')} | "
            f"{v.get('torch_metric', nan):.2f} | {v.get('onnx_metric', nan):.2f} | "
            f"{v.get('delta_metric', nan):+.2f} | {v.get('label_agreement', nan):.2f}% | "
            f"{v.get('max_abs_diff', nan):.3f} |"
        )
    return out


def _planned(meta: dict) -> int:
    config = meta.get("train_config", {})
    if config.get("max_steps"):
        return config["max_steps"]
    per_epoch = -(-meta["data"]["train"]["rows"] // config.get("batch_size", 32))
    # two-stage methods: `steps` sums the stages, so an early stop shows against the sum only
    # when the last stage stopped; the per-stage records are in the cell's "stages"
    return int(per_epoch * config.get("epochs", 0))


def target_lines(report: dict) -> list[str]:
    """The issue's SST-2 3-layer targets, read off one bench report."""
    rows = report["rows"]
    eager = next(r for r in rows if r["role"] == "teacher" and r["runtime"] == "pytorch")
    out = ["| Target | Measured | Met |", "|---|---|---|"]
    for row in rows:
        if row["role"] == "teacher" or row["runtime"] != "onnx":
            continue
        acc = 100 * row["accuracy"] / eager["accuracy"]
        f1 = 100 * row["f1"] / eager["f1"]
        speed = eager["avg_ms"] / row["avg_ms"]
        goal = 99.0 if row.get("precision") == "int8" else 99.5
        met = "yes" if min(acc, f1) >= goal else "no"
        out.append(
            f"| {row['model']} ({row.get('precision')}) keeps ≥ {goal}% of the teacher's "
            f"accuracy and F1 | {acc:.2f}% / {f1:.2f}% | {met} |"
        )
        if row.get("precision") == "int8":
            out.append(
                f"| {row['model']} ≥ 10× faster than the teacher in PyTorch eager | "
                f"{eager['avg_ms']:.2f} / {row['avg_ms']:.2f} ms = {speed:.1f}× | "
                f"{'yes' if speed >= 10 else 'no'} |"
            )
    return out


def span(values: list[float], spec: str) -> str:
    """`low–high`, or the one value when they are equal."""
    low, high = f"{min(values):{spec}}", f"{max(values):{spec}}"
    return low if low == high else f"{low}–{high}"


def speedup_lines(results: Path) -> list[str]:
    """The ≥ 10× ratio in every committed bench run: both of its sides move between runs."""
    runs = []
    for path in sorted(results.glob("*/report.json")):
        report = json.loads(path.read_text())
        threads = max(r["threads"] for r in report["rows"])
        eager = [
            r
            for r in report["rows"]
            if r["role"] == "teacher" and r["runtime"] == "pytorch" and r["threads"] == threads
        ]
        int8 = [
            r
            for r in report["rows"]
            if r.get("precision") == "int8"
            and r["threads"] == threads
            and "static" not in r["model"]
        ]
        if eager and int8:
            runs.append((report["environment"]["date"], path.parent.name, eager[0], int8, report))
    if not runs:
        return []
    out = [
        "",
        "## The ≥ 10× target in every bench run (dynamic int8, batch 1, threads = cores)",
        "",
        "| Run | Folder | Rounds | Teacher eager ms | int8 ms | Speed-up "
        "| fp32 matmul peak GFLOP/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for date, folder, eager, int8, report in sorted(runs, key=lambda run: run[0]):
        ms = [r["avg_ms"] for r in int8]
        ratios = [eager["avg_ms"] / m for m in ms]
        peaks = [
            p["gflops"]
            for p in report["extra"].get("peaks", [])
            if p.get("precision") == "fp32" and p.get("threads") == eager["threads"]
        ]
        out.append(
            f"| {date} | {folder}/ | {eager['repeats']} | {eager['avg_ms']:.2f} | "
            f"{span(ms, '.2f')} ({len(ms)}) | {span(ratios, '.1f')}× | "
            f"{f'{peaks[0]:.0f}' if peaks else '–'} |"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/quality-sst2"))
    args = parser.parse_args()
    cells = args.results / "cells"
    metas = {
        p.stem: json.loads(p.read_text())
        for p in sorted(cells.glob("*.json"))
        if not p.name.endswith((".budget.json", ".manifest.json"))
    }
    budgets = {
        p.name[: -len(".budget.json")]: json.loads(p.read_text())
        for p in cells.glob("*.budget.json")
    }
    teacher = metas.get("teacher")
    lines = [
        "# Students that keep the teacher's quality: SST-2 at full budget",
        "",
        "Made by `bash benchmarks/quality_sst2.sh` (cells, resumable) and "
        "`python benchmarks/summarize_quality.py` (this table). Every cell's command and machine "
        "are in `cells/<name>.budget.json`; its full training record in `cells/<name>.json`.",
        "",
        "| Model | Dev accuracy | Dev F1 | MCC | Accuracy kept | F1 kept | Budget |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ORDER + sorted(set(metas) - set(ORDER)):
        meta = metas.get(name)
        if meta is None:
            if name in EXPECTED:
                lines.append(f"| {name} | pending | | | | | |")
            continue
        m = meta["metric"]
        kept = (
            (
                f"{100 * m['accuracy'] / teacher['metric']['accuracy']:.2f}%",
                f"{100 * m['f1'] / teacher['metric']['f1']:.2f}%",
            )
            if teacher
            else ("–", "–")
        )
        lines.append(
            f"| {name} | {m['accuracy']:.2f} | {m['f1']:.2f} | {m.get('mcc', float('nan')):.2f} | "
            f"{kept[0]} | {kept[1]} | {budget_line(meta, budgets.get(name))} |"
        )
    machines = {b.get("machine") for b in budgets.values()}
    lines += ["", f"Machines: {', '.join(sorted(m for m in machines if m))}; 2 cores."]
    transfer_manifest = cells / "transfer.manifest.json"
    lines += transfer_lines(
        metas,
        budgets,
        json.loads(transfer_manifest.read_text()) if transfer_manifest.is_file() else None,
    )
    lines += int8_lines(cells)
    report = args.results / "bench" / "report.json"
    if report.is_file():
        bench = json.loads(report.read_text())
        date = bench["environment"]["date"]
        lines += ["", f"## Targets (3 layers, batch 1, one bench run: bench/, {date})", ""]
        lines += target_lines(bench)
        lines += ["", "Every bench run's speed-up, this one included: the last table."]
        lines += ["", "The whole latency table: [bench/report.md](bench/report.md)."]
    static = args.results / "static-int8" / "report.json"
    if static.is_file():  # STAGES=static: the best student's static int8 beside its dynamic
        lines += ["", "## Static int8 against dynamic int8 (batch 1, one bench run)", ""]
        lines += target_lines(json.loads(static.read_text()))
        lines += ["", "The whole latency table: [static-int8/report.md](static-int8/report.md)."]
    lines += speedup_lines(args.results)
    if (args.results / "NOTES.md").is_file():
        lines += ["", "The reading of these figures: [NOTES.md](NOTES.md)."]
    (args.results / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
