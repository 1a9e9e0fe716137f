"""The distillation-methods table (benchmarks/results/methods-glue/README.md) from the runs.

    python benchmarks/summarize_methods.py [--runs runs/methods] [--experiment runs/professor-mrpc]
        [--bench runs/methods/bench] [--out benchmarks/results/methods-glue]

Reads every model's slimbert.json (dev metrics of the best checkpoint), counts parameters from
model.safetensors, takes latency from one bench run (benchmarks/methods_glue.sh's bench stage:
one model per architecture, CPU ONNX, batch 1, MRPC dev) and maps every student onto the
benched model of the same architecture (same config.json sizes ⇒ same graph). Writes the table
with MRPC F1 as mean ± sample std over the seeds, the per-seed figures, and whether each
expectation of the issue holds. Nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from safetensors import safe_open

# (method label, model folder under <task>/seed<N>/, how the student is described)
ROWS = [
    ("kd (Hinton, T=2, α=0.5)", "kd-3L"),
    ("kd (Hinton, T=2, α=0.5)", "kd-2L"),
    ("kd + teacher route (2 checkpoints)", "kd-route-3L"),
    ("tinybert (layer + prediction)", "tinybert-3L"),
    ("tinybert (layer + prediction)", "tinybert-2L"),
    ("tinybert (layer + prediction)", "tinybert-3L-h192"),
    ("theseus (linear p(t), b=0.3)", "theseus-3L"),
    ("theseus (linear p(t), b=0.3)", "theseus-2L"),
    ("minilm (Q/K/V relations, last layer)", "minilm-3L"),
    ("minilm (Q/K/V relations, last layer)", "minilm-2L"),
    ("TextCNN, hard labels", "textcnn-hard"),
    ("TextCNN, distilled", "textcnn-kd"),
    ("TextCNN, distilled (logit MSE, α=1)", "textcnn-mse"),
    ("BiLSTM, hard labels", "bilstm-hard"),
    ("BiLSTM, distilled", "bilstm-kd"),
    ("soft tree, hard labels", "tree-hard"),
    ("soft tree, distilled", "tree-kd"),
]
VOLATILE = {
    "_name_or_path",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "id2label",
    "label2id",
    "architectures",
    "problem_type",
}


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def parameters(model: Path) -> int:
    with safe_open(str(model / "model.safetensors"), framework="pt") as weights:
        total = 0
        for name in weights.keys():
            count = 1
            for size in weights.get_slice(name).get_shape():
                count *= size
            total += count
    return total


def architecture(model: Path) -> str:
    config = json.loads((model / "config.json").read_text())
    return json.dumps(
        {k: v for k, v in sorted(config.items()) if k not in VOLATILE}, sort_keys=True
    )


def describe(model: Path) -> str:
    config = json.loads((model / "config.json").read_text())
    kind = config.get("slimbert_architecture")
    if kind is None:
        return (
            f"{config['num_hidden_layers']}L × {config['hidden_size']}, "
            f"{config['num_attention_heads']} heads, FFN {config['intermediate_size']}"
        )
    if kind == "textcnn":
        return (
            f"TextCNN E={config['embedding_dim']}, "
            f"widths {','.join(map(str, config['kernel_sizes']))} × {config['filters']}"
        )
    if kind == "bilstm":
        return f"BiLSTM E={config['embedding_dim']}, U={config['hidden_size']}"
    if kind == "tree":
        return f"soft tree depth {config['depth']}, E={config['embedding_dim']}"
    return kind


class Runs:
    def __init__(self, runs: Path, experiment: Path):
        self.runs, self.experiment = runs, experiment

    def model(self, task: str, name: str, seed: int) -> Path:
        if task == "mrpc" and name in ("kd-3L", "kd-2L"):  # the professor experiment's TS students
            return self.experiment / "models" / "students" / f"student-ts-{name[3]}L-seed{seed}"
        return self.runs / task / f"seed{seed}" / name

    def teacher(self, task: str) -> Path:
        return (
            self.experiment / "models" / "teacher"
            if task == "mrpc"
            else self.runs / "sst2" / "teacher"
        )

    def metric(self, model: Path) -> dict | None:
        meta = read_json(model / "slimbert.json")
        return meta["metric"] if meta else None


def majority_baseline(dev: Path) -> tuple[float, float]:
    """F1 and accuracy (percent) of always answering the positive class on a GLUE dev file."""
    from slimbert.data import Columns, read_examples

    labels = read_examples(dev, Columns()).labels
    positives = sum(1 for label in labels if label == "1")
    return 100 * 2 * positives / (2 * positives + (len(labels) - positives)), 100 * positives / len(
        labels
    )


def fmt(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f} (1 seed)"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/methods"))
    parser.add_argument("--experiment", type=Path, default=Path("runs/professor-mrpc"))
    parser.add_argument("--bench", type=Path, default=Path("runs/methods/bench"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/methods-glue"))
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--glue", type=Path, default=Path("../shared/data/glue"))
    parser.add_argument(
        "--notes", type=Path, help="A markdown file of findings, placed after the table"
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = Runs(args.runs, args.experiment)

    report = read_json(args.bench / "report.json")
    latency: dict[
        str, dict
    ] = {}  # architecture → bench row (ONNX, batch 1); bench names rows by folder
    candidates = {
        p.name: p
        for p in [runs.teacher("mrpc")] + [runs.model("mrpc", name, seeds[0]) for _, name in ROWS]
        if p.is_dir()
    }
    for row in (report or {}).get("rows", []):
        if (
            row["runtime"] == "onnx"
            and row["batch_size"] == 1
            and row["padding"] == "own"
            and row["model"] in candidates
        ):
            latency[architecture(candidates[row["model"]])] = row

    teacher = {task: runs.metric(runs.teacher(task)) for task in ("mrpc", "sst2")}
    table = [
        "| Method | Student | Params | CPU ONNX avg ms (batch 1) | SST-2 acc "
        "| MRPC F1 (mean ± std) | MRPC acc (mean ± std) | vs Teacher (MRPC F1 / SST-2 acc) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    per_seed = [
        "| Model | "
        + " | ".join(f"MRPC F1 seed {s}" for s in seeds)
        + " | MRPC acc (mean) | SST-2 F1 |",
        "|---|" + "---|" * (len(seeds) + 2),
    ]
    summary: dict[str, dict] = {}

    def ms(model: Path) -> str:
        row = latency.get(architecture(model)) if model.is_dir() else None
        return f"{row['avg_ms']:.2f}" if row else "–"

    teacher_dir = runs.teacher("mrpc")
    if teacher_dir.is_dir():
        t_mrpc, t_sst2 = teacher["mrpc"] or {}, teacher["sst2"] or {}
        table.append(
            f"| teacher (MiniLM-L6 fine-tuned) | {describe(teacher_dir)} "
            f"| {parameters(teacher_dir):,} | {ms(teacher_dir)} | "
            f"{t_sst2.get('accuracy', float('nan')):.2f} | {t_mrpc.get('f1', float('nan')):.2f} "
            f"| {t_mrpc.get('accuracy', float('nan')):.2f} | – |"
        )
    for method, name in ROWS:
        mrpc = [m for m in (runs.metric(runs.model("mrpc", name, s)) for s in seeds) if m]
        sst2 = runs.metric(runs.model("sst2", name, 1))
        some = next(
            (
                runs.model(t, name, s)
                for t, s in [("mrpc", s) for s in seeds] + [("sst2", 1)]
                if runs.model(t, name, s).is_dir()
            ),
            None,
        )
        if some is None:
            continue
        f1s = [m["f1"] for m in mrpc]
        summary[name] = {"mrpc_f1": f1s, "sst2": sst2}
        gap_mrpc = (
            f"{statistics.mean(f1s) - teacher['mrpc']['f1']:+.2f}"
            if f1s and teacher["mrpc"]
            else "–"
        )
        gap_sst2 = (
            f"{sst2['accuracy'] - teacher['sst2']['accuracy']:+.2f}"
            if sst2 and teacher["sst2"]
            else "–"
        )
        sst2_acc = f"{sst2['accuracy']:.2f}" if sst2 else "–"
        accs = [m["accuracy"] for m in mrpc]
        table.append(
            f"| {method} | {describe(some)} | {parameters(some):,} | {ms(some)} | {sst2_acc} "
            f"| {fmt(f1s)} | {fmt(accs)} | {gap_mrpc} / {gap_sst2} |"
        )
        by_seed = [runs.metric(runs.model("mrpc", name, s)) for s in seeds]
        cells = [f"{m['f1']:.2f}" if m else "–" for m in by_seed]
        cells += [
            f"{statistics.mean(accs):.2f}" if accs else "–",
            f"{sst2['f1']:.2f}" if sst2 else "–",
        ]
        per_seed.append(f"| {name} | " + " | ".join(cells) + " |")

    def mean(name: str) -> float | None:
        f1s = summary.get(name, {}).get("mrpc_f1") or []
        return statistics.mean(f1s) if len(f1s) == len(seeds) else None

    checks = []
    for layers in (3, 2):
        kd, tb, th = mean(f"kd-{layers}L"), mean(f"tinybert-{layers}L"), mean(f"theseus-{layers}L")
        if None not in (kd, tb, th):
            best = max(tb, th)
            checks.append(
                f"- tinybert or theseus ≥ kd at {layers} layers on MRPC: "
                f"best of them {best:.2f} vs kd {kd:.2f} → {'met' if best >= kd else 'missed'}"
            )
    for kind in ("textcnn", "bilstm", "tree"):
        hard, soft = mean(f"{kind}-hard"), mean(f"{kind}-kd")
        if None not in (hard, soft):
            target = " (target: +2)" if kind == "textcnn" else ""
            verdict = (" → met" if soft >= hard + 2 else " → missed") if kind == "textcnn" else ""
            checks.append(
                f"- distilled {kind} vs hard labels on MRPC: "
                f"{soft:.2f} vs {hard:.2f} = {soft - hard:+.2f}{target}{verdict}"
            )
            s_hard, s_soft = summary[f"{kind}-hard"]["sst2"], summary[f"{kind}-kd"]["sst2"]
            if s_hard and s_soft:
                checks.append(
                    f"  - on SST-2 (1 seed): accuracy {s_soft['accuracy']:.2f} "
                    f"vs {s_hard['accuracy']:.2f} = {s_soft['accuracy'] - s_hard['accuracy']:+.2f}"
                )
    mse, hard = mean("textcnn-mse"), mean("textcnn-hard")
    if None not in (mse, hard):
        checks.append(
            "- TextCNN distilled by logit MSE (α=1) vs hard labels on MRPC: "
            f"{mse:.2f} vs {hard:.2f} = {mse - hard:+.2f} (target: +2) "
            f"→ {'met' if mse >= hard + 2 else 'missed'}"
        )
    route, plain = mean("kd-route-3L"), mean("kd-3L")
    if None not in (route, plain):
        checks.append(
            "- kd with the teacher's route vs without, 3 layers, MRPC: "
            f"{route:.2f} vs {plain:.2f} = {route - plain:+.2f}"
        )

    precision = []  # dev figures of the benched models: at training (bf16 autocast) vs ONNX fp32
    for row in (report or {}).get("rows", []):
        if row["runtime"] == "onnx" and row["batch_size"] == 1 and row["model"] in candidates:
            trained = runs.metric(candidates[row["model"]])
            if trained and row.get("metric") is not None:
                precision.append(
                    f"| {row['model']} | {trained['f1']:.2f} | {row['metric']:.2f} "
                    f"| {row['metric'] - trained['f1']:+.2f} |"
                )

    baseline = majority_baseline(args.glue / "MRPC" / "dev.tsv")
    environment = (report or {}).get("environment", {})
    lines = [
        "# Distillation methods on MRPC and SST-2",
        "",
        "Produced by `bash benchmarks/methods_glue.sh` "
        "(training; see its header for every setting) after "
        "`slimbert experiment benchmarks/recipes/professor-mrpc-cpu.yaml` "
        "(the MRPC teacher and the kd rows), then "
        "`python benchmarks/summarize_methods.py`.",
        "",
        f"Latency run: `{environment.get('command', '–')}` "
        f"at {environment.get('git_revision', '–')}, {environment.get('date', '–')}; "
        f"{environment.get('cpu', '–')}, {environment.get('cores', '–')} cores, "
        f"{environment.get('memory_gb', '–')} GB, threads {environment.get('threads', '–')}, "
        f"onnxruntime {environment.get('versions', {}).get('onnxruntime', '–')}, "
        f"torch {environment.get('versions', {}).get('torch', '–')}.",
        "",
        *table,
        "",
        'A model that answers "paraphrase" for every pair scores '
        f"MRPC dev F1 {baseline[0]:.2f} at accuracy {baseline[1]:.2f}: "
        "F1 alone flatters a weak MRPC student, so the accuracy column is shown too.",
        "",
        *([args.notes.read_text(), ""] if args.notes else []),
        "## Against the issue's expectations",
        "",
        *(checks or ["- not enough finished runs to check"]),
        "",
        "## bf16 during training, fp32 at inference",
        "",
        "Training ran under bf16 autocast, and so did the dev evaluations that chose each best "
        "checkpoint and that the table reports "
        "(since 5ff1181 evaluation inside training runs on the fp32 weights). "
        "The benched models' ONNX fp32 exports give these MRPC dev F1 figures (seed 1):",
        "",
        "| Model | F1 at training (bf16) | F1 of the ONNX fp32 export | Δ |",
        "|---|---|---|---|",
        *precision,
        "",
        "## Per seed (MRPC dev F1 of each seed's best checkpoint)",
        "",
        *per_seed,
        "",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "README.md").write_text("\n".join(lines))
    (args.out / "methods.json").write_text(
        json.dumps({"teacher": teacher, "models": summary, "seeds": seeds}, indent=2)
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
