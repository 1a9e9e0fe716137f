"""The base-size teacher's tables (benchmarks/results/base-teacher/README.md) from the committed
cells.

    python benchmarks/summarize_base_teacher.py [--results benchmarks/results/base-teacher]

Reads every `cells/<name>.json` (the model's slimbert.json, copied by benchmarks/base_teacher.sh
as the cell finished), `cells/<name>.budget.json` (wall-clock, peak memory, command),
`cells/<name>.config.json` (the shape the FLOPs come from), the int8 manifests and, when the
bench ran, `bench-<task>/report.json`. Retention = the student's dev figure ÷ the teacher's, in
%. FLOPs share = the student's matmul FLOPs per example over the teacher's at 32 tokens (the
count `slimbert bench` uses; the bench rows give it at each request's own length). Nothing is
typed in by hand; rows not yet trained are listed as pending.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from slimbert.bench.flops import transformer_shape

TASKS = {"sst2": "SST-2", "mrpc": "MRPC"}
SHAPES = ("6x384", "4x312")
# every row the script plans, in the order the tables show them (seed 1)


def planned(task: str) -> list[str]:
    """Every seed-1 cell the script plans for `task`, in table order."""
    cuts = (9, 6, 3) if task == "sst2" else (6, 3)
    narrow = [
        f"{task}-{kind}-{shape}-{start}-seed1"
        for shape in SHAPES
        for kind, start in (
            ("kd", "general"),
            ("kd", "random"),
            ("minilm", "general"),
            ("minilm", "random"),
        )
    ]
    return (
        [f"{task}-teacher"]
        + [f"{task}-kd-{n}L-seed1" for n in cuts]
        + [f"{task}-kd-minilm{n}L-seed1" for n in (6, 3)]
        + narrow
    )


LENGTH = 32


def header(*names: str) -> list[str]:
    return ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]


def load(folder: Path, name: str, suffix: str = ".json") -> dict | None:
    path = folder / "cells" / f"{name}{suffix}"
    return json.loads(path.read_text()) if path.is_file() else None


def flops(config: dict | None) -> int | None:
    shape = transformer_shape(config) if config else None
    return shape.flops(LENGTH) if shape else None


def start_of(name: str, meta: dict) -> str:
    """How the student began: the teacher's layers, the general step, random, or MiniLM."""
    if meta.get("role") == "teacher":
        return "MPNet-base, fine-tuned"
    if meta.get("student_base"):
        return f"MiniLM-L6 layers {meta.get('layer_map')} (own tokenizer)"
    init = meta.get("student_init")
    if init:
        return f"general step `{init['weights_sha256'][:12]}`"
    if "-random-" in name:
        return "random"
    return f"teacher layers {meta.get('layer_map')}"


def budget_text(meta: dict, budget: dict | None) -> str:
    config = meta.get("train_config", {})
    rows = meta["data"]["train"]["rows"]
    stages = meta.get("stages") or {}
    steps = sum(s["steps"] for s in stages.values()) or meta.get("steps") or 0
    parts = " + ".join(f"{stage['steps']} {n}" for n, stage in stages.items())
    parts = f" ({parts})" if parts else ""
    last = meta.get("steps") or 0
    epochs = last * config.get("batch_size", 32) * config.get("grad_accum", 1) / rows
    stage = "the last stage " if stages else ""
    text = f"{rows:,} rows, {steps} steps{parts}, {stage}{epochs:.2f} epochs"
    text += f", best at {meta.get('best_step')}"
    if budget:
        minutes = budget["wall_seconds"] / 60
        resumed = ", resumed" if budget.get("resumed") else ""
        peak = budget.get("peak_rss_mib", 0) / 1024
        # one thread: the cell shared the two cores with another job (OMP_NUM_THREADS=1)
        threads = budget.get("threads", budget.get("cores"))
        alone = f", {threads} thread" if threads == 1 else ""
        text += f", {minutes:.0f} min wall{resumed}{alone}, peak {peak:.1f} GiB"
    return text


def task_table(folder: Path, task: str) -> list[str]:
    teacher = load(folder, f"{task}-teacher")
    names = planned(task) + sorted(
        p.name[: -len(".json")]
        for p in (folder / "cells").glob(f"{task}-*.json")
        if p.name.count(".") == 1 and p.name[: -len(".json")] not in planned(task)
    )
    out = [
        f"## {TASKS[task]}",
        "",
        *header(
            "Cell",
            "Method",
            "Shape",
            "FLOPs share",
            "Start",
            "Accuracy",
            "F1",
            "Retention acc / F1",
            "Budget",
        ),
    ]
    teacher_flops = flops(load(folder, f"{task}-teacher", ".config.json"))
    for name in names:
        meta = load(folder, name)
        if meta is None:
            out.append(f"| {name} | pending | | | | | | | |")
            continue
        config = load(folder, name, ".config.json")
        shape = transformer_shape(config) if config else None
        shape_text = (
            f"{shape.layers} × {shape.hidden}"
            if shape
            else f"{meta.get('layers')} × {meta.get('hidden_size')}"
        )
        mine = flops(config)
        share = f"1/{teacher_flops / mine:.1f}" if mine and teacher_flops else "?"
        share = "1" if share == "1/1.0" else share
        metric = meta["metric"]
        if teacher and meta.get("role") != "teacher":
            base = teacher["metric"]
            retention = (
                f"{metric['accuracy'] / base['accuracy'] * 100:.2f}% / "
                f"{metric['f1'] / base['f1'] * 100:.2f}%"
            )
        else:
            retention = "—"
        out.append(
            f"| {name} | {meta.get('method')} | {shape_text} | {share} | {start_of(name, meta)} | "
            f"{metric['accuracy']:.2f} | {metric['f1']:.2f} | {retention} | "
            f"{budget_text(meta, load(folder, name, '.budget.json'))} |"
        )
    return out + [""]


def seeds_lines(folder: Path, task: str) -> list[str]:
    """Every row trained with more than one seed: each seed's figures, their mean ± std, and the
    worst seed's retention and accuracy gap (a target holds for the seeds only if it holds for
    the worst)."""
    teacher = load(folder, f"{task}-teacher")
    groups: dict[str, list[tuple[int, dict]]] = {}
    for path in sorted((folder / "cells").glob(f"{task}-*-seed*.json")):
        stem = path.name[: -len(".json")]
        family, _, seed = stem.rpartition("-seed")
        if seed.isdigit():
            groups.setdefault(family, []).append((int(seed), json.loads(path.read_text())))
    rows = []
    for family, seeds in groups.items():
        if len(seeds) < 2 or teacher is None:
            continue
        base = teacher["metric"]
        acc = [m["metric"]["accuracy"] for _, m in seeds]
        f1 = [m["metric"]["f1"] for _, m in seeds]
        kept = [x / base["f1"] * 100 for x in f1]
        gaps = [x - base["accuracy"] for x in acc]
        each = ", ".join(
            f"{n}: {a:.2f} / {f:.2f}" for (n, _), a, f in zip(seeds, acc, f1, strict=True)
        )
        rows.append(
            f"| {family} | {len(seeds)} | {each} | {mean_std(acc)} | {mean_std(f1)} | "
            f"{statistics.mean(kept):.2f}% (worst {min(kept):.2f}%) | "
            f"{statistics.mean(gaps):+.2f} (worst {min(gaps):+.2f}) |"
        )
    if not rows:
        return []
    return [
        f"### {TASKS[task]}: rows with several seeds",
        "",
        *header(
            "Row",
            "Seeds",
            "Accuracy / F1 per seed",
            "Accuracy",
            "F1",
            "F1 kept (mean, worst seed)",
            "Δ accuracy vs teacher (mean, worst)",
        ),
        *rows,
        "",
    ]


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def general_table(folder: Path) -> list[str]:
    out = [
        "## The general step (once per shape, for both tasks)",
        "",
        *header(
            "Cell",
            "Shape",
            "Objective",
            "Texts",
            "Train texts / tokens",
            "Held-out loss before → best",
            "Steps",
            "Wall",
            "s per M tokens",
            "Peak",
            "Weights",
        ),
    ]
    for shape in SHAPES:
        name = f"general-{shape}"
        meta = load(folder, name)
        if meta is None:
            out.append(f"| {name} | pending | | | | | | | | | |")
            continue
        budget = load(folder, name, ".budget.json") or {}
        s, cost, examples = meta["shape"], meta["cost"], meta["examples"]
        best = meta["metric"].get("distill_loss", float("nan"))
        objective = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in meta["objective"].items())
        peak = budget.get("peak_rss_mib", 0) / 1024
        texts = ", ".join(
            f"{Path(t['path']).parent.name}/{Path(t['path']).name} ({t['distinct']:,})"
            for t in meta["texts"]
        )
        out.append(
            f"| {name} | {s['depth']} × {s['width']}, {s['heads']} heads, FFN {s['ffn']} | "
            f"{meta['method']}: {objective} | {texts} | "
            f"{examples['train']:,} / {examples['train_tokens']:,} | "
            f"{meta['distill_loss_before']:.4f} → {best:.4f} | "
            f"{meta['steps']} (best {meta['best_step']}) | {cost['wall_seconds'] / 60:.0f} min | "
            f"{cost['seconds_per_million_tokens']} | {peak:.1f} GiB | "
            f"`{meta['weights_sha256'][:12]}` |"
        )
    return out + [""]


def int8_lines(folder: Path) -> list[str]:
    """Every int8 export's validation on the whole dev file, against its PyTorch model."""
    rows = []
    for path in sorted((folder / "cells").glob("*-int8.manifest.json")):
        v = json.loads(path.read_text())["validation"]
        gate = v["tolerances"]
        rows.append(
            f"| {path.name.removesuffix('.manifest.json')} | {v['examples']} | "
            f"{v['label_agreement']:.2f}% (≥ {gate['min_agreement']}) | "
            f"{v['torch_metric']:.2f} → {v['onnx_metric']:.2f} ({v['delta_metric']:+.2f}, "
            f"≤ {gate['max_f1_drop']} allowed) | {v['max_abs_diff']:.3f} |"
        )
    refused = [
        f"- `{path.name.removesuffix('.refused.txt')}`: {path.read_text().strip()}"
        for path in sorted((folder / "cells").glob("*-int8.refused.txt"))
    ]
    if not rows and not refused:
        return []
    return [
        "## int8 exports (fused where the family fuses, dynamic, per channel)",
        "",
        *header("Export", "Dev rows", "Label agreement", "F1 PyTorch → int8", "max abs Δlogit"),
        *rows,
        "",
        *(
            ["Refused by the default gate (nothing written; the refusal as printed):", ""]
            if refused
            else []
        ),
        *refused,
        *([""] if refused else []),
    ]


def bench_lines(folder: Path) -> list[str]:
    out = []
    for task in TASKS:
        # bench-TASK, then bench-TASK-2, bench-TASK-3 ... (BENCH_RUN): each run its own table
        later = [p for p in folder.glob(f"bench-{task}-*") if p.name.rsplit("-", 1)[1].isdigit()]
        runs = [folder / f"bench-{task}"] + sorted(
            later, key=lambda p: int(p.name.rsplit("-", 1)[1])
        )
        for run in runs:
            out += bench_run_lines(task, run)
    return out


def bench_run_lines(task: str, run: Path) -> list[str]:
    path = run / "report.json"
    if not path.is_file():
        return []
    report = json.loads(path.read_text())
    rows, environment = report["rows"], report.get("environment", {})
    out = [
        f"## {TASKS[task]}: one alternating bench run (`{run.name}/`, "
        f"{environment.get('date', 'undated')})",
        "",
        *header(
            "Method",
            "Model",
            "Threads",
            "Requests",
            "Total ms",
            "Avg ms",
            "F1",
            "vs Teacher",
            "Accuracy",
            "Retention acc / F1",
            "Speed-up (median)",
            "Speed-up per round",
        ),
    ]
    # retention against the teacher's PyTorch row: the figures the cells report; a sweep of
    # threads lists each count's rows together (each speed-up is at its own count)
    teacher = next(r for r in rows if r.get("role") == "teacher")
    for row in sorted(rows, key=lambda r: r.get("threads") or 0):
        rounds = ", ".join(f"{r:.1f}" for r in row.get("speedup_rounds") or [])
        speedup = f"{row['speedup']:.1f}×" if row.get("speedup") else "—"
        kept = (
            f"{row['accuracy'] / teacher['accuracy'] * 100:.2f}% / "
            f"{row['f1'] / teacher['f1'] * 100:.2f}%"
        )
        out.append(
            f"| {row['method']} | {row['model']} ({row['runtime']}) | {row.get('threads', '?')} | "
            f"{row['requests']} | "
            f"{row['total_ms']:.0f} | {row['avg_ms']:.2f} | {row['f1']:.2f} | "
            f"{row['vs_teacher']:+.2f} | {row['accuracy']:.2f} | {kept} | {speedup} | "
            f"{rounds} |"
        )
    out.append("")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/base-teacher"))
    args = parser.parse_args()
    lines = [
        "<!-- written by benchmarks/summarize_base_teacher.py from cells/; do not edit -->",
        "",
        *general_table(args.results),
    ]
    for task in TASKS:
        lines += task_table(args.results, task) + seeds_lines(args.results, task)
    lines += int8_lines(args.results) + bench_lines(args.results)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "TABLES.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
