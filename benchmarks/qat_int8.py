"""Distillation-aware int8 against plain dynamic int8, on a real student: fp32, the student's
dynamic int8, and the dynamic int8 of the same student tuned by `slimbert compress qat`, with
label agreement and ΔF1 against the fp32 student on the whole eval file, and latency of the
three graphs timed in one alternating `slimbert bench` run.

    python benchmarks/qat_int8.py \\
        --teacher ~/slimbert-runs/base-teacher/sst2-teacher \\
        --student ~/slimbert-runs/base-teacher/sst2-kd-minilm6L-seed1 \\
        --train /work/shared/data/glue/SST-2/train.tsv \\
        --eval /work/shared/data/glue/SST-2/dev.tsv \\
        --max-length 64 --work /tmp/qat-bench --out benchmarks/results/qat

What it builds under --work (each step skipped when its output is already there, so a rerun
only times again):

    qat-model/    slimbert compress qat --student STUDENT (--steps, --lr, --batch-size, --seed)
    fp32/         slimbert export STUDENT --optimize              (fused fp32, the reference graph)
    int8-dynamic/ slimbert export STUDENT --optimize --quantize dynamic          (today's int8)
    int8-qat/     slimbert export qat-model --optimize --quantize dynamic (the same graph, tuned
                  weights; its parity gate is the export's own, against the tuned fp32 weights)
    control-model/, int8-control/  the same tuning with --no-simulate-int8 (fp32 steps), and its
                  int8: what more distillation alone gives, without the int8 awareness
    bench/        slimbert bench --runtime onnx --alternate over the three folders

Quality is measured against the fp32 student in PyTorch (what the int8 graphs stand in for):
label agreement, and each graph's F1 minus the student's. Writes <out>/README.md and
<out>/qat.json headed by the command, git revision, date and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from slimbert.batches import EncodedDataset, label_targets
from slimbert.bench.environment import environment
from slimbert.data import Columns, read_examples
from slimbert.errors import SlimbertError
from slimbert.export.manifest import MANIFEST_FILE
from slimbert.export.onnx import ExportOptions, export
from slimbert.export.optimize import OptimizeConfig
from slimbert.export.quantize import DynamicQuantConfig
from slimbert.export.runtime import OnnxClassifier
from slimbert.export.validate import Tolerances, onnx_logits, torch_logits
from slimbert.files import RECORD_FILE
from slimbert.metrics import compute_metrics
from slimbert.models import load_model_dir, model_label_map, model_task

GRAPHS = ("fp32", "int8-dynamic", "int8-qat", "int8-control")
QUALITY_BATCHES = (1, 32)
# the fp32 model each graph was exported from, under --work (None: --student)
SOURCES = {"int8-qat": "qat-model", "int8-control": "control-model"}


def slimbert(*args) -> None:
    """Run a slimbert command as a person would; its output goes to this script's."""
    command = [sys.executable, "-m", "slimbert", *map(str, args)]
    print("$ " + shlex.join(command), flush=True)
    subprocess.run(command, check=True)


def tune(args, folder: Path, *extra: str) -> float | None:
    """`compress qat` into `folder` unless it is there; the seconds it took (None: reused)."""
    if (folder / RECORD_FILE).is_file():
        return None
    started = time.monotonic()
    slimbert(
        "compress", "qat", "--teacher", args.teacher, "--student", args.student,
        "--train", args.train, "--eval", args.eval, "--max-length", args.max_length,
        "--out", folder, "--max-steps", args.steps, "--eval-every", args.eval_every,
        "--lr", args.lr, "--batch-size", args.batch_size, "--seed", args.seed, "--no-progress",
        *extra,
    )  # fmt: skip
    return time.monotonic() - started


# an int8 graph the default gate refuses is still measured: exported again under a gate that
# passes anything, its refusal kept beside the figures (what int8 costs is the question asked)
UNGATED = Tolerances(max_abs_diff=None, min_agreement=0.0, max_f1_drop=100.0)


def export_graphs(args, work: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """The graphs' export folders, and the default gate's refusal of any it refused (those
    folders are exported ungated, so that their figures are measured all the same)."""
    fusion, int8 = OptimizeConfig.for_provider("cpu"), DynamicQuantConfig()
    plan = {
        "fp32": (Path(args.student), ExportOptions(optimize=fusion)),
        "int8-dynamic": (Path(args.student), ExportOptions(optimize=fusion, quantize=int8)),
        "int8-qat": (work / "qat-model", ExportOptions(optimize=fusion, quantize=int8)),
        "int8-control": (work / "control-model", ExportOptions(optimize=fusion, quantize=int8)),
    }
    refused_file = work / "refused.json"
    refused = json.loads(refused_file.read_text()) if refused_file.is_file() else {}
    for name, (model_dir, options) in plan.items():
        if (work / name / MANIFEST_FILE).is_file():
            continue
        common = dict(max_length=args.max_length, options=options)
        try:
            export(model_dir, Path(args.eval), work / name, **common)
        except SlimbertError as exc:  # a failed parity gate is a result too
            refused[name] = str(exc)
            export(model_dir, Path(args.eval), work / name, tolerances=UNGATED, **common)
    refused_file.write_text(json.dumps(refused, indent=2))
    return {name: work / name for name in plan}, refused


def compare(logits, reference, targets, task, label_map, base) -> dict:
    """One graph's logits (N, C) against the fp32 student's on the same batches."""
    metrics = compute_metrics(logits, targets, task, label_map)
    return {
        "f1": metrics.values.get("f1"),
        "accuracy": metrics.values.get("accuracy"),
        "delta_f1": metrics.values.get("f1") - base.values.get("f1"),
        "label_agreement": float((logits.argmax(-1) == reference.argmax(-1)).mean() * 100),
        "flipped": int((logits.argmax(-1) != reference.argmax(-1)).sum()),
        "max_abs_diff": float(np.abs(logits - reference).max()),
    }


def quality(args, graphs: dict[str, Path]) -> dict[str, dict]:
    """Every graph against the fp32 student in PyTorch, and against the fp32 model it was
    exported from (the tuned ones for int8-qat and int8-control), on the whole eval file: in
    requests of one example (as served) and in the export gate's batches of 32 in file order.
    Dynamic int8 takes each activation's range over the whole (B, L, H) tensor, so its figures
    depend on which rows share a batch."""
    model, tokenizer, _ = load_model_dir(args.student)
    task, label_map = model_task(model), model_label_map(model)
    examples = read_examples(Path(args.eval), Columns(), task=task)
    targets = label_targets(examples, label_map, task)
    dataset = EncodedDataset(tokenizer, examples, args.max_length, targets)
    sources = {name: args.work / SOURCES[name] if SOURCES.get(name) else None for name in graphs}
    own = {folder: load_model_dir(folder)[0] for folder in sources.values() if folder}
    figures: dict[str, dict] = {name: {} for name in ("pytorch-fp32", *graphs)}
    for batch in QUALITY_BATCHES:
        key = f"batch{batch}"
        reference = torch_logits(model, dataset, batch)  # (N, C)
        base = compute_metrics(reference, targets, task, label_map)
        figures["pytorch-fp32"][key] = {"f1": base.values.get("f1")}
        for name, folder in graphs.items():
            logits = onnx_logits(OnnxClassifier(folder / "model.onnx", "cpu"), dataset, batch)
            figures[name][key] = compare(logits, reference, targets, task, label_map, base)
            source = sources[name]
            own_logits = torch_logits(own[source], dataset, batch) if source else reference
            own_base = compute_metrics(own_logits, targets, task, label_map)
            figures[name][f"{key}-own"] = {
                "own_f1": own_base.values.get("f1"),
                **compare(logits, own_logits, targets, task, label_map, own_base),
            }
    for name, folder in graphs.items():
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        figures[name]["gate"] = manifest["validation"]
        figures[name]["ops"] = manifest["optimizations"][-1].get("quantized_ops")
    return figures


def timing(args, graphs: dict[str, Path], work: Path) -> list[dict]:
    """One alternating `slimbert bench` run over the three graphs; its ONNX rows."""
    out = work / "bench"
    slimbert(
        "bench", *[a for folder in graphs.values() for a in ("--model", folder)],
        "--eval", args.eval, "--out", out, "--runtime", "onnx", "--alternate",
        "--batch-sizes", args.batch_sizes, "--threads", args.threads,
        "--repeats", args.repeats, "--no-peak", "--max-length", args.max_length,
    )  # fmt: skip
    rows = json.loads((out / "report.json").read_text())["rows"]
    keep = ("model", "batch_size", "threads", "avg_ms", "p50_ms", "p90_ms", "p99_ms",
            "p50_ms_spread", "p99_ms_spread", "repeats", "metric", "file_mb")  # fmt: skip
    return [{k: row.get(k) for k in keep} for row in rows if row.get("runtime") == "onnx"]


def render(result: dict) -> str:
    q, lines = result["quality"], []
    lines += [f"# {result['title']}", "", "```", result["command"], "```", ""]
    lines += [f"- {k}: {v}" for k, v in result["machine"].items()] + [""]
    tuned = result["qat"]
    lines += [
        f"QAT run: {tuned['steps']} steps, lr {tuned['lr']}, batch {tuned['batch_size']}, "
        + (f"{tuned['seconds']:.0f} s wall" if tuned["seconds"] else "reused from --work")
        + "; eval F1 under simulated int8 before "
        f"{tuned['before_int8'].get('f1', float('nan')):.2f}, after "
        f"{tuned['after'].get('f1', float('nan')):.2f} (fp32 student "
        f"{tuned['before_fp32'].get('f1', float('nan')):.2f})",
        "",
        "| graph | batch | F1 | ΔF1 vs fp32 student | label agreement | flipped | int8 ops |",
        "|---|---|---|---|---|---|---|",
    ]
    for batch in QUALITY_BATCHES:
        key = f"batch{batch}"
        lines.append(f"| PyTorch fp32 student | {batch} | {q['pytorch-fp32'][key]['f1']:.2f} |||||")
        for name in [g for g in GRAPHS if g in q]:
            row = q[name][key]
            ops = ", ".join(f"{k} {v}" for k, v in (q[name]["ops"] or {}).items()) or "none"
            lines.append(
                f"| {name} | {batch} | {row['f1']:.2f} | {row['delta_f1']:+.2f} | "
                f"{row['label_agreement']:.2f}% | {row['flipped']} | {ops} |"
            )
    lines += [
        "",
        "Each int8 graph against the fp32 model it was exported from (the student, or the "
        "tuned student for int8-qat and int8-control): what int8 alone costs that model.",
        "",
        "| graph | batch | fp32 F1 | int8 F1 | ΔF1 | label agreement | flipped |",
        "|---|---|---|---|---|---|---|",
    ]
    for batch in QUALITY_BATCHES:
        for name in [g for g in GRAPHS if g in q and g != "fp32"]:
            row = q[name][f"batch{batch}-own"]
            lines.append(
                f"| {name} | {batch} | {row['own_f1']:.2f} | {row['f1']:.2f} | "
                f"{row['delta_f1']:+.2f} | {row['label_agreement']:.2f}% | {row['flipped']} |"
            )
    lines += ["", "| graph | batch | threads | p50 ms | p99 ms | avg ms | MB |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in result["latency"]:
        lines.append(
            f"| {row['model']} | {row['batch_size']} | {row['threads']} | {row['p50_ms']:.2f} | "
            f"{row['p99_ms']:.2f} | {row['avg_ms']:.2f} | {row['file_mb'] or 0:.1f} |"
        )
    return "\n".join(lines + ["", *result.get("notes", [])]) + "\n"


def machine(threads: int) -> dict:
    """bench's environment, flat (its own command line is not this script's)."""
    found = environment(threads).items()
    return {k: v for k, v in found if not isinstance(v, dict) and k != "command"}


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--student", required=True)
    parser.add_argument("--train", required=True)
    parser.add_argument("--eval", required=True)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--lr", default="1e-5")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-sizes", default="1")
    parser.add_argument("--threads", default="1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, required=True, help="exports and the QAT model")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/qat"))
    parser.add_argument("--note", action="append", default=[], help="a line for the README")
    return parser.parse_args()


def main() -> None:
    args = parse()
    args.work.mkdir(parents=True, exist_ok=True)
    seconds = tune(args, args.work / "qat-model")
    tune(args, args.work / "control-model", "--no-simulate-int8")
    graphs, failed = export_graphs(args, args.work)
    tuned = json.loads((args.work / "qat-model" / RECORD_FILE).read_text())
    result = {
        "title": "Distillation-aware int8 (compress qat) against dynamic int8",
        "command": shlex.join([os.path.basename(sys.executable), *sys.argv]),
        "machine": machine(int(args.threads)),
        "student": str(args.student),
        "qat": {
            "steps": tuned["steps"],
            "lr": tuned["train_config"]["lr"],
            "batch_size": tuned["train_config"]["batch_size"],
            "seconds": seconds,
            "before_fp32": tuned["int8"]["before"]["fp32"],
            "before_int8": tuned["int8"]["before"]["int8"],
            "after": tuned["int8"]["after"],
        },
        "quality": quality(args, graphs),
        "latency": timing(args, graphs, args.work),
        "refused_by_the_default_gate": failed,
        "notes": args.note
        + [
            f"{name}, refused by the default gate (measured ungated): {why}"
            for name, why in failed.items()
        ],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "qat.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "README.md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
