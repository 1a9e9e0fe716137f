"""benchmarks/results/multiprocess/README.md from the cells of benchmarks/multiprocess_sst2.sh:
one process against two on the same cores, the same global batch (the figures are read from each
cell's slimbert.json, budget and train_log.jsonl summary, never typed in)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CELLS = {
    "sst2-kd-minilm3L-1proc": "1 process, 2 × 16 per step (--grad-accum 2), 2 threads",
    "sst2-kd-minilm3L-2proc": "2 processes (torchrun, gloo), 16 each, 1 thread each",
}
THRESHOLD = 0.5  # the issue's: the two-process dev metric within 0.5 points of the one-process


def row(cells: Path, name: str) -> dict | None:
    meta_path, budget_path = cells / f"{name}.json", cells / f"{name}.budget.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    budget = json.loads(budget_path.read_text()) if budget_path.is_file() else {}
    speed_path = cells / f"{name}.speed.json"
    speed = json.loads(speed_path.read_text()) if speed_path.is_file() else {}
    return {"meta": meta, "budget": budget, "speed": speed.get("median")}


def main(results: Path) -> None:
    cells = results / "cells"
    lines = ["# One process against two on the same CPU (SST-2, 3-layer kd student)", "",
             "Made by `bash benchmarks/multiprocess_sst2.sh`; this file by "
             "`python benchmarks/summarize_multiprocess.py`.", "",
             "| Cell | Processes | Dev accuracy | F1 | Steps | Examples/s (median step) | Wall | "
             "Peak RSS (launcher tree) |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    found = {}
    for name, what in CELLS.items():
        got = row(cells, name)
        if got is None:
            lines.append(f"| {name} | {what} | pending | | | | | |")
            continue
        meta, budget, speed = got["meta"], got["budget"], got["speed"]
        metrics = next(h for h in meta["history"] if h["step"] == meta["best_step"])
        found[name] = metrics["accuracy"]
        lines.append(
            f"| {name} | {what} | {metrics['accuracy']:.2f} | {metrics['f1']:.2f} | "
            f"{meta.get('steps', '')} | {'–' if speed is None else f'{speed:.0f}'} | "
            f"{budget.get('wall_seconds', 0) / 60:.0f} min | {budget.get('peak_rss_mib', 0)} MiB |"
        )
    budgets = [row(cells, name) for name in CELLS]
    for name, got in zip(CELLS, budgets, strict=True):
        if got and got["budget"]:
            budget = got["budget"]
            # budgets before cells.sh split cores from threads kept only nproc under
            # OMP_NUM_THREADS, the threads each process was given
            threads = budget.get("threads", budget["cores"])
            lines += ["", f"- `{name}`: `{budget['command']}` on {budget['machine']}, "
                      f"{threads} thread{'s' if threads != 1 else ''} per process"]  # fmt: skip
    if len(found) == 2:
        gap = found["sst2-kd-minilm3L-2proc"] - found["sst2-kd-minilm3L-1proc"]
        verdict = "within" if abs(gap) <= THRESHOLD else "outside"
        lines += ["", f"Two processes against one: {gap:+.2f} accuracy points, {verdict} the "
                  f"±{THRESHOLD} the issue allows."]  # fmt: skip
        speeds = [got["speed"] for got in budgets]
        if all(speeds):
            lines.append(
                f"Examples/s: two processes make {speeds[1] / speeds[0]:.2f}× one process's on "
                "the same cores (each of the pair on one thread, with every step's gradients "
                "all-reduced over gloo): on one machine the pair buys nothing; the launcher is "
                "for more machines or GPUs, where each process brings its own."
            )
    lines.append("")
    results.mkdir(parents=True, exist_ok=True)
    (results / "README.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "results",
        nargs="?",
        type=Path,
        default=Path("benchmarks/results/multiprocess"),
        help="the results folder (its cells/ is read, its README.md written)",
    )
    main(parser.parse_args().results)
