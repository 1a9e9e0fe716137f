"""Summarise the foundation's SST-2 run against its targets, from the files the run wrote.

    python benchmarks/summarize_foundation.py benchmarks/results/foundation-sst2

Reads training-*.json (slimbert.json of each model), manifest-*.json (export parity) and
report.json (the bench run), and writes SUMMARY.md beside them. Every figure comes from those
files; nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MODELS = ("teacher", "kd-3L", "kd-2L", "kd-1L")


def load(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text())


def main(folder: Path) -> None:
    training = {m: load(folder, f"training-{m}.json") for m in MODELS}
    manifests = {m: load(folder, f"manifest-{m}.json") for m in MODELS}
    report = load(folder, "report.json")
    rows = report["rows"]

    def row(model: str, runtime: str, batch: int = 1) -> dict:
        return next(
            r
            for r in rows
            if r["model"] == model
            and r["runtime"] == runtime
            and r["batch_size"] == batch
            and r.get("length") in (None, "own")
        )

    teacher = training["teacher"]
    data = teacher["data"]
    config = teacher["train_config"]
    last_evals = ", ".join(
        "{:.2f} (step {})".format(h["f1"], h["step"]) for h in teacher["history"][-4:]
    )
    lines = [
        "# Foundation on SST-2: targets",
        "",
        f"Bench run: `{report['environment'].get('command')}` "
        f"at {report['environment'].get('git_revision')}, {report['environment'].get('date')}, "
        f"{report['environment'].get('cpu')} with {report['environment'].get('cores')} cores. "
        "Training commands: `benchmarks/foundation_sst2.sh`.",
        "",
        "Teacher: bundled MiniLM (6 layers, hidden 384) fine-tuned on "
        f"{data['train']['rows']:,} rows of SST-2 train "
        "(seeded shuffle, seed 0, then the first 10,000), "
        f"max length {data['max_length']}, batch {config['batch_size']}, lr {config['lr']}, "
        f"up to {config['epochs']:g} epochs with evaluation every {config['eval_every']} steps "
        "on the whole dev set and early stopping "
        f"(patience {config['patience']}); "
        f"best dev checkpoint at step {teacher['best_step']} of {teacher['steps']}. "
        f"Dev F1 at the last evaluations: {last_evals}.",
        "",
        "## Quality on the whole dev set (872 examples)",
        "",
        "| Model | Layers | Params | Dev accuracy | Dev F1 | F1 kept vs teacher | Layer map "
        "| Steps (best) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    teacher_f1 = teacher["metric"]["f1"]
    for model in MODELS:
        meta = training[model]
        kept = 100 * meta["metric"]["f1"] / teacher_f1
        lines.append(
            f"| {model} | {meta['layers']} | {meta['parameters']:,} "
            f"| {meta['metric']['accuracy']:.2f} | {meta['metric']['f1']:.2f} | {kept:.1f}% | "
            f"{meta.get('layer_map') or '–'} | {meta['steps']} ({meta['best_step']}) |"
        )
    kept3 = 100 * training["kd-3L"]["metric"]["f1"] / teacher_f1
    lines += [
        "",
        "## ONNX parity on the whole dev set",
        "",
        "| Model | Label agreement | max abs Δlogit | mean abs Δlogit | ΔF1 |",
        "|---|---|---|---|---|",
    ]
    parity_ok = True
    for model in MODELS:
        v = manifests[model]["validation"]
        parity_ok &= v["label_agreement"] == 100.0 and v["max_abs_diff"] <= 1e-4
        lines.append(
            f"| {model} | {v['label_agreement']:.2f}% | {v['max_abs_diff']:.2e} "
            f"| {v['mean_abs_diff']:.2e} | {v['delta_metric']:+.2f} |"
        )
    eager = row("teacher", "pytorch")
    student_onnx = row("kd-3L", "onnx")
    ratio = student_onnx["avg_ms"] / eager["avg_ms"]
    lines += [
        "",
        "## Targets",
        "",
        "| Target | Measured | Met |",
        "|---|---|---|",
        "| 3-layer student keeps ≥ 97% of the teacher's F1 "
        f"| {training['kd-3L']['metric']['f1']:.2f} / {teacher_f1:.2f} = {kept3:.1f}% "
        f"| {'yes' if kept3 >= 97 else 'no'} |",
        "| ONNX parity: label agreement 100%, max abs Δlogit ≤ 1e-4 (all four models) "
        f"| see the table above | {'yes' if parity_ok else 'no'} |",
        "| batch 1, CPU: 3-layer ONNX avg ms ≤ 0.5 × teacher PyTorch eager avg ms (same run) "
        f"| {student_onnx['avg_ms']:.2f} / {eager['avg_ms']:.2f} ms = {ratio:.2f}× "
        f"| {'yes' if ratio <= 0.5 else 'no'} |",
        "",
        "The full latency table (Requests, Total ms, Avg ms, F1, vs Teacher, p50/p90/p99, QPS, "
        "sizes, memory) is in report.md / report.html.",
    ]
    (folder / "SUMMARY.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "folder",
        nargs="?",
        type=Path,
        default=Path("benchmarks/results/foundation-sst2"),
        help="the run's folder (SUMMARY.md is written into it)",
    )
    main(parser.parse_args().folder)
