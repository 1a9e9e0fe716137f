#!/usr/bin/env python3
"""SUMMARY.md of a GPU run: the phases, the CUDA proof, training, parity, latency, and the
issue's targets measured against what the run wrote. Reads only run.sh's results folder (and,
for the CPU reference, benchmarks/results/foundation-sst2/ in the tree); missing parts say so.

    python benchmarks/gpu/summarize.py RESULTS/gpu [REPO_ROOT] > RESULTS/gpu/SUMMARY.md
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def environment_lines(results: Path) -> list[str]:
    text = (
        (results / "environment.txt").read_text() if (results / "environment.txt").is_file() else ""
    )
    lines = text.splitlines()
    picked = []
    for index, line in enumerate(lines):
        if line.startswith("name, driver_version") and index + 1 < len(lines):
            picked.append(f"GPU: {lines[index + 1]}")
        elif line.startswith("# GPU host environment, "):
            picked.append(f"date: {line.rsplit(', ', 1)[-1]}")
        elif line.split(" ")[0] in {
            "python",
            "torch",
            "transformers",
            "onnxruntime",
            "slimbert",
        } or line.startswith(
            ("torch.version.cuda", "cuda device", "onnxruntime device", "git revision")
        ):
            picked.append(" ".join(line.split()))
    return picked


def commands(results: Path) -> list[str]:
    """The slimbert command lines run.sh ran, as its logs recorded them (`+ slimbert ...`)."""
    lines = []
    for phase in ("train", "export", "bench", "serve"):
        log = results / "logs" / f"{phase}.log"
        if log.is_file():
            lines += [
                line[2:] for line in log.read_text().splitlines() if line.startswith("+ slimbert ")
            ]
    return ["```", *lines, "```"] if lines else ["(no slimbert command ran)"]


def phases(results: Path) -> list[str]:
    path = results / "phases.tsv"
    if not path.is_file():
        return ["(no phases.tsv)"]
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if line.strip()]
    return [
        "| phase | status | seconds | ended (UTC) |",
        "|---|---|---|---|",
        *(f"| {' | '.join(r)} |" for r in rows),
    ]


def tests(results: Path) -> str:
    path = results / "tests" / "junit.xml"
    if not path.is_file():
        return "pytest -m gpu: not run"
    root = ElementTree.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return "pytest -m gpu: unreadable junit.xml"
    get = suite.attrib.get
    names = [case.attrib.get("name") for case in suite.iter("testcase")]
    counts = f"{get('tests')} tests, {get('failures')} failures, {get('errors')} errors"
    return f"pytest -m gpu: {counts}, {get('skipped')} skipped ({', '.join(n for n in names if n)})"


# The CPU runs on the same full training set (benchmarks/quality_sst2.sh): the teacher, and the
# 3-layer kd students of every seed run so far (their mean). The foundation recipe's figures are
# on a 10,000-row subset, so they are no yardstick for a model trained on all 67,349 rows.
CPU_CELLS = {"teacher": "teacher.json", "kd-3L": "kd-3L-seed*.json"}


def cpu_reference(root: Path | None, name: str) -> float | None:
    if root is None:
        return None
    cells = sorted((root / "benchmarks/results/quality-sst2/cells").glob(CPU_CELLS[name]))
    values = [
        accuracy
        for cell in cells
        if (accuracy := ((read_json(cell) or {}).get("metric") or {}).get("accuracy")) is not None
    ]
    return sum(values) / len(values) if values else None


def training(results: Path, root: Path | None) -> tuple[list[str], dict]:
    timings = {}
    path = results / "train" / "timings.tsv"
    if path.is_file():
        for line in path.read_text().splitlines():
            name, ms = line.split("\t")
            timings[name] = int(ms) / 1000
    lines = [
        row(
            "model",
            "dev accuracy",
            "dev F1",
            "steps (best)",
            "wall s",
            "examples/s",
            "CPU accuracy (full set)",
        ),
        "|---|---|---|---|---|---|---|",
    ]
    figures = {}
    for name in ("teacher", "kd-3L"):
        meta = read_json(results / "train" / f"{name}-slimbert.json")
        if meta is None:
            lines.append(f"| {name} | not trained | | | | | |")
            continue
        metric = meta.get("metric") or {}
        config = meta.get("train_config") or {}
        steps = meta.get("steps")
        wall = timings.get(name)
        rate = steps * config.get("batch_size", 32) / wall if steps and wall else None
        cpu_accuracy = cpu_reference(root, name)
        figures[name] = {
            "accuracy": metric.get("accuracy"),
            "f1": metric.get("f1"),
            "cpu_accuracy": cpu_accuracy,
        }
        lines.append(
            row(
                name,
                fmt(metric.get("accuracy")),
                fmt(metric.get("f1")),
                f"{steps} ({meta.get('best_step')})",
                fmt(wall, 0),
                fmt(rate, 0),
                fmt(cpu_accuracy),
            )
        )
    return lines, figures


def parity(results: Path) -> tuple[list[str], dict]:
    lines = [
        "| export | step | provider | label agreement % | max abs Δlogit | ΔF1 |",
        "|---|---|---|---|---|---|",
    ]
    fp16 = None
    for name in ("kd-3L-onnx", "kd-3L-onnx-fp16"):
        manifest = read_json(results / "export" / f"manifest-{name}.json")
        if manifest is None:
            lines.append(f"| {name} | not exported | | | | |")
            continue
        for stage in manifest.get("stages") or [manifest.get("validation") or {}]:
            lines.append(
                row(
                    name,
                    f"{stage.get('step', '?')} ({stage.get('precision', '?')})",
                    stage.get("provider"),
                    fmt(stage.get("label_agreement")),
                    fmt(stage.get("max_abs_diff"), 5),
                    fmt(stage.get("delta_metric")),
                )
            )
        if name.endswith("fp16"):
            fp16 = manifest.get("validation")
    return lines, fp16 or {}


def pick(
    rows: list[dict],
    batch: int,
    runtime: str,
    precision: str,
    io_binding: bool | None = None,
    role: str = "student",
) -> dict | None:
    for row in rows:
        if (
            row.get("batch_size") == batch
            and row.get("runtime") == runtime
            and row.get("precision") == precision
            and row.get("role") == role
            and (io_binding is None or bool(row.get("io_binding")) == io_binding)
        ):
            return row
    return None


def latency(results: Path) -> tuple[list[str], dict]:
    report = read_json(results / "bench-cuda" / "report.json") or {}
    rows = report.get("rows") or []
    cpu_rows = (read_json(results / "bench-cpu" / "report.json") or {}).get("rows") or []
    lines = [
        row(
            "batch",
            "PyTorch eager fp32 (GPU)",
            "PyTorch eager fp16 (GPU)",
            "ORT CUDA fp32",
            "ORT CUDA fp16",
            "ORT CUDA fp16, IO binding",
            "ORT CPU fp32",
        ),
        "|---|---|---|---|---|---|---|",
    ]
    batches = sorted({r.get("batch_size") for r in rows if r.get("batch_size")})
    for batch in batches:
        cells = [
            pick(rows, batch, "pytorch", "fp32"),
            pick(rows, batch, "pytorch", "fp16"),
            pick(rows, batch, "onnx", "fp32", False),
            pick(rows, batch, "onnx", "fp16", False),
            pick(rows, batch, "onnx", "fp16", True),
            pick(cpu_rows, batch, "onnx", "fp32"),
        ]
        lines.append(
            f"| {batch} | "
            + " | ".join(f"{fmt(c.get('avg_ms'), 3)} ms" if c else "n/a" for c in cells)
            + " |"
        )
    figures: dict = {}
    eager = pick(rows, 1, "pytorch", "fp32")
    fp16 = [
        r for r in (pick(rows, 1, "onnx", "fp16", False), pick(rows, 1, "onnx", "fp16", True)) if r
    ]
    if eager and fp16:
        best = min(fp16, key=lambda r: r["avg_ms"])
        figures["batch1_ratio"] = best["avg_ms"] / eager["avg_ms"]
        figures["batch1_text"] = (
            f"{best['avg_ms']:.3f} / {eager['avg_ms']:.3f} ms = {figures['batch1_ratio']:.2f}× "
            f"(fp16{' IO binding' if best.get('io_binding') else ''})"
        )
    big = [
        r
        for r in (pick(rows, 128, "onnx", "fp16", False), pick(rows, 128, "onnx", "fp16", True))
        if r
    ]
    if big:
        best = max(big, key=lambda r: r.get("qps") or 0)
        figures["batch128_text"] = (
            f"{best.get('qps') or 0:,.0f} examples/s, "
            f"{fmt(best.get('achieved_gflops'), 0)} GFLOP/s = {fmt(best.get('peak_share'), 1)}% "
            f"of the measured fp16 matmul peak ({fmt(best.get('peak_gflops'), 0)} GFLOP/s)"
        )
    return lines, figures


def proof(results: Path) -> list[str]:
    lines = []
    exported = sorted((results / "export").glob("cuda-proof-*.json"))
    for path in [results / "check" / "cuda-proof-synthetic.json", *exported]:
        data = read_json(path)
        if data is None:
            lines.append(f"- {path.name}: not run")
            continue
        lines.append(
            f"- {path.name}: onnxruntime {data.get('onnxruntime')} ({data.get('device')}), "
            f"session providers {data.get('session_providers')}, "
            f"node runs by provider {data.get('node_runs_by_provider')}, "
            f"off the GPU {data.get('ops_elsewhere') or 'none'}, "
            f"builds with CPU fallback disabled: {data.get('builds_with_cpu_fallback_disabled')}"
            + (
                f"; fp32 |CUDA − CPU| max {fmt(data.get('max_abs_diff_vs_cpu_tf32_default'), 6)} "
                f"(TF32 default), {fmt(data.get('max_abs_diff_vs_cpu_tf32_off'), 6)} (use_tf32=0)"
                if "max_abs_diff_vs_cpu_tf32_default" in data
                else ""
            )
            + (f"; failures: {data['failures']}" if data.get("failures") else "")
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="run.sh's results folder")
    parser.add_argument(
        "root",
        nargs="?",
        type=Path,
        default=None,
        help="the repository root, for the CPU reference figures",
    )
    args = parser.parse_args()
    results, root = args.results, args.root
    train_lines, train = training(results, root)
    parity_lines, fp16 = parity(results)
    latency_lines, speed = latency(results)
    agreement, delta = fp16.get("label_agreement"), fp16.get("delta_metric")
    fp16_ok = (
        None if agreement is None or delta is None else agreement >= 99.5 and abs(delta) <= 0.2
    )
    ratio = speed.get("batch1_ratio")
    accuracy_ok = None
    if all(
        train.get(n, {}).get("accuracy") is not None
        and train.get(n, {}).get("cpu_accuracy") is not None
        for n in ("teacher", "kd-3L")
    ):
        accuracy_ok = all(
            abs(train[n]["accuracy"] - train[n]["cpu_accuracy"]) <= 0.5
            for n in ("teacher", "kd-3L")
        )
    out = [
        "# slimbert on the GPU host: summary",
        "",
        "Written by benchmarks/gpu/summarize.py from the results of benchmarks/gpu/run.sh.",
        "",
        *(f"- {line}" for line in environment_lines(results)),
        "",
        "## Phases",
        "",
        *phases(results),
        "",
        "Commands (paths under the run's work folder on the GPU host):",
        "",
        *commands(results),
        "",
        tests(results),
        "",
        "## CUDA provider, from ONNX Runtime's own profile",
        "",
        *proof(results),
        "",
        "## Training (full SST-2 train, max length 64, bf16 through Accelerate)",
        "",
        *train_lines,
        "",
        "## Export parity on the whole dev set (against PyTorch fp32)",
        "",
        *parity_lines,
        "",
        "## Avg ms per request (3-layer student; SST-2 dev; a request holds one batch)",
        "",
        *latency_lines,
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        row(
            "fp16 on CUDA: label agreement ≥ 99.5% and abs ΔF1 ≤ 0.2 vs fp32",
            f"{fmt(agreement)}%, ΔF1 {fmt(delta)}",
            verdict(fp16_ok),
        ),
        row(
            "ORT CUDA fp16, 3-layer, batch 1 ≤ 0.5× PyTorch eager fp32 on the GPU",
            speed.get("batch1_text", "n/a"),
            verdict(None if ratio is None else ratio <= 0.5),
        ),
        row(
            "batch 128 throughput and its share of the fp16 peak",
            speed.get("batch128_text", "n/a"),
            "reported" if "batch128_text" in speed else "n/a",
        ),
        row(
            "teacher and student dev accuracy within 0.5 of the CPU runs on the full set",
            ", ".join(
                f"{n} {fmt(figures.get('accuracy'))} vs {fmt(figures.get('cpu_accuracy'))}"
                for n, figures in ((n, train.get(n, {})) for n in ("teacher", "kd-3L"))
            ),
            verdict(accuracy_ok),
        ),
        "",
    ]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
