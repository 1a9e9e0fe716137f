"""Training speed on this CPU: examples/s of a training step, and the dev metric after a fixed
number of steps, for each precision and batching setting (benchmarks/results/train-speed/).

    python benchmarks/train_speed.py [--glue ../shared/data/glue]
        [--out benchmarks/results/train-speed]
        [--timed-steps 30] [--quality-steps 200]

Speed: the teacher (the bundled MiniLM, 6 layers, fresh head) and a 3-layer student cut from it
(compress.students.build_student), at the SST-2 setting (64 tokens) and the MRPC setting (128),
batch 32, through slimbert's own training loop (training.loop.train): fp32 or bf16 autocast,
batches in random order or grouped by length, AdamW's per-tensor loop or its fused kernel, at 1
thread and at all cores. "fp32" is the loop's default before this benchmark (fp32, random
batches, per-tensor AdamW); "default" is today's (`--mixed-precision auto`, grouping, fused
AdamW: bf16 on a CPU with AVX-512 BF16 or AMX). Each cell runs warm-up steps, then times
`--timed-steps` optimiser steps (the loop's on_step timestamps); examples/s = batch × steps ÷
seconds.

Where the time goes: the median of 5 steps per precision and optimizer, split into forward,
backward and optimizer step, at the SST-2 teacher setting with grouping.

Quality: the teacher trained for `--quality-steps` steps from the same seed in fp32 / random
batches and in each faster setting, then scored on the whole dev file with the fp32 weights.

Every finished cell is appended to <out>/speed.jsonl or <out>/quality.jsonl at once (with the
CPU it ran on) and skipped by a rerun, so the script resumes where it stopped; README.md is
written from those files after each task.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from slimbert.batches import DataSpec, evaluator, prepare
from slimbert.bench.environment import environment, machine_lines
from slimbert.compress.students import StudentShape, build_student, pick_layers
from slimbert.data import Columns
from slimbert.files import write_json_atomic, write_text_atomic
from slimbert.models import load_classifier, load_tokenizer, resolve_base
from slimbert.training.config import TrainConfig, train_loader
from slimbert.training.loop import train
from slimbert.training.losses import LossTerm, combine, hard_loss
from slimbert.training.outputs import forward
from slimbert.training.precision import resolve_precision

SETTINGS = {  # name: (mixed_precision, group_by_length, fused AdamW)
    "fp32": ("no", False, False),
    "fp32 + grouping": ("no", True, False),
    "bf16": ("bf16", False, False),
    "bf16 + grouping": ("bf16", True, False),
    "default": ("auto", True, True),
}
PROFILES = {  # name: (precision, fused AdamW)
    "fp32, AdamW loop": ("no", False),
    "bf16, AdamW loop": ("bf16", False),
    "bf16, fused AdamW": ("bf16", True),
}
TASKS = {  # name: (folder, max_length, training rows read for timing and quality)
    "SST-2": ("SST-2", 64, 8000),
    "MRPC": ("MRPC", 128, 3668),
}


def step_fn():
    terms = [LossTerm("hard", 1.0, hard_loss)]
    return lambda model, batch: combine(terms, forward(model, batch), None, batch)


def model_for(data, layers: int | None):
    """A fresh-head MiniLM classifier, or a student of `layers` cut from it."""
    teacher = load_classifier(resolve_base("minilm-l6"), data.label_map, data.task)
    if layers is None:
        return teacher
    picked = pick_layers(teacher.config.num_hidden_layers, layers)
    return build_student(teacher, StudentShape(layers), picked, seed=0)[0]


def examples_per_second(data, layers, precision, grouping, fused, threads, warmup, timed) -> float:
    torch.set_num_threads(threads)
    model = model_for(data, layers)
    stamps: list[float] = []
    config = TrainConfig(
        max_steps=warmup + timed,
        batch_size=32,
        lr=1e-4,
        seed=0,
        eval_every=10**9,  # the only evaluation is the loop's last; it is not timed
        mixed_precision=precision,
        group_by_length=grouping,
        fused_adamw=fused,
        save_state=False,
        progress=False,
    )
    train(
        model,
        train_loader(data.train_set, config),
        step_fn(),
        lambda m: _no_score(),
        config,
        on_step=lambda step, total, m: stamps.append(time.perf_counter()),
    )
    seconds = stamps[-1] - stamps[warmup - 1]
    return 32 * timed / seconds


def _no_score():
    from slimbert.metrics import Metrics

    return Metrics(0.0, {}, "none")


def profile_step(data, precision: str, fused: bool) -> dict[str, float]:
    """Milliseconds of one step's forward, backward and optimizer (median of 5 steps)."""
    torch.set_num_threads(torch.get_num_threads())
    model = model_for(data, None).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused or None)
    config = TrainConfig(batch_size=32, seed=0, group_by_length=True)
    step = step_fn()
    parts: dict[str, list[float]] = {"forward": [], "backward": [], "optimizer": []}
    dtype = torch.bfloat16 if precision == "bf16" else None
    for i, batch in enumerate(train_loader(data.train_set, config)):
        if i == 7:
            break
        began = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            loss, _ = step(model, batch)
        forward_done = time.perf_counter()
        loss.backward()
        backward_done = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = time.perf_counter()
        if i >= 2:  # warm-up
            parts["forward"].append((forward_done - began) * 1000)
            parts["backward"].append((backward_done - forward_done) * 1000)
            parts["optimizer"].append((done - backward_done) * 1000)
    return {k: sorted(v)[len(v) // 2] for k, v in parts.items()}


def quality(data, precision, grouping, fused, steps) -> dict[str, float]:
    model = model_for(data, None)
    config = TrainConfig(
        max_steps=steps,
        batch_size=32,
        lr=1e-4,
        seed=0,
        eval_every=steps,
        mixed_precision=precision,
        group_by_length=grouping,
        fused_adamw=fused,
        save_state=False,
        progress=False,
    )
    started = time.perf_counter()
    result = train(model, train_loader(data.train_set, config), step_fn(), evaluator(data), config)
    return {**result.best.values, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glue", type=Path, default=Path("../shared/data/glue"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train-speed"))
    parser.add_argument("--timed-steps", type=int, default=30)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--quality-steps", type=int, default=200)
    parser.add_argument(
        "--render-only", action="store_true", help="Write README.md from the finished cells."
    )
    args = parser.parse_args()
    cores = torch.get_num_threads()
    threads = sorted({1, cores})
    args.out.mkdir(parents=True, exist_ok=True)
    env = environment(threads)
    results: dict = {
        "speed": read_cells(args.out / "speed.jsonl"),
        "profile": {},
        "quality": read_cells(args.out / "quality.jsonl"),
    }
    profile_file = args.out / "profile.json"
    if profile_file.is_file():
        results["profile"] = json.loads(profile_file.read_text())

    if args.render_only:
        results["environment"] = env
        write_text_atomic(args.out / "README.md", render(results, args))
        return

    def done(kind: str, **key) -> bool:
        return any(all(row.get(k) == v for k, v in key.items()) for row in results[kind])

    def record(kind: str, row: dict) -> None:
        row = {**row, "cpu": env.get("cpu")}
        print(json.dumps(row), flush=True)
        results[kind].append(row)
        with open(args.out / f"{kind}.jsonl", "a") as handle:
            handle.write(json.dumps(row) + "\n")

    for task, (folder, max_length, rows) in TASKS.items():
        spec = DataSpec(
            args.glue / folder / "train.tsv",
            args.glue / folder / "dev.tsv",
            Columns(),
            max_length=max_length,
            limit=rows,
            sample_seed=0,
        )
        data = prepare(spec, load_tokenizer(resolve_base("minilm-l6")))
        for model_name, layers in (("teacher 6L", None), ("student 3L", 3)):
            for setting, (precision, grouping, fused) in SETTINGS.items():
                for n in threads:
                    key = {"task": task, "model": model_name, "setting": setting, "threads": n}
                    if done("speed", **key):
                        continue
                    speed = examples_per_second(
                        data,
                        layers,
                        precision,
                        grouping,
                        fused,
                        n,
                        args.warmup_steps,
                        args.timed_steps,
                    )
                    resolved = resolve_precision(precision, torch.device("cpu"))
                    record("speed", {**key, "examples_per_s": speed, "precision": resolved})
        torch.set_num_threads(cores)
        if task == "SST-2" and set(results["profile"]) != set(PROFILES):
            for name, (precision, fused) in PROFILES.items():
                results["profile"][name] = profile_step(data, precision, fused)
            write_json_atomic(profile_file, results["profile"])
        for setting, (precision, grouping, fused) in SETTINGS.items():
            if done("quality", task=task, setting=setting, steps=args.quality_steps):
                continue
            figures = quality(data, precision, grouping, fused, args.quality_steps)
            record(
                "quality",
                {"task": task, "setting": setting, "steps": args.quality_steps, **figures},
            )
        results["environment"] = env
        write_text_atomic(args.out / "README.md", render(results, args))


def read_cells(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def render(results: dict, args) -> str:
    lines = ["# Training speed on a CPU: precision and batching", ""]
    lines += [
        f"- {line}"
        for line in machine_lines(results["environment"])
        if not line.startswith("Command")
    ]
    lines += [
        f"- Command: `python benchmarks/train_speed.py --timed-steps {args.timed_steps} "
        f"--quality-steps {args.quality_steps}`",
        "",
        f"- Cells finished: {len(results['speed'])} of {len(TASKS) * 2 * len(SETTINGS) * 2} "
        f"speed, {len(results['quality'])} of {len(TASKS) * len(SETTINGS)} quality "
        "(the script resumes; rows below are the finished ones)",
        "",
        "## Examples per second (batch 32, slimbert's training loop)",
        "",
        "fp32: the loop's default before this benchmark (fp32, random batches, AdamW's "
        "per-tensor loop). default: today's (--mixed-precision auto, grouping by length, fused "
        f"AdamW; auto is {resolve_precision('auto', torch.device('cpu'))} on this CPU).",
        "",
        "| Task | Model | Setting | Threads | Examples/s | × fp32 |",
        "|---|---|---|---|---|---|",
    ]
    base = {
        (r["task"], r["model"], r["threads"]): r["examples_per_s"]
        for r in results["speed"]
        if r["setting"] == "fp32"
    }
    for r in results["speed"]:
        reference = base.get((r["task"], r["model"], r["threads"]))
        ratio = r["examples_per_s"] / reference if reference else float("nan")
        lines.append(
            f"| {r['task']} | {r['model']} | {r['setting']} | {r['threads']} | "
            f"{r['examples_per_s']:.1f} | {ratio:.2f}× |"
        )
    lines += ["", "## Where a step's time goes (SST-2 teacher, ms, median of 5 steps)", ""]
    lines += ["| Precision, optimizer | Forward | Backward | Optimizer |", "|---|---|---|---|"]
    for name, parts in results["profile"].items():
        lines.append(
            f"| {name} | {parts['forward']:.0f} | {parts['backward']:.0f} | "
            f"{parts['optimizer']:.0f} |"
        )
    lines += ["", f"## Dev figures after {args.quality_steps} steps (same seed, fp32 weights)", ""]
    lines += ["| Task | Setting | Accuracy | F1 | MCC | Seconds |", "|---|---|---|---|---|---|"]
    for r in results["quality"]:
        lines.append(
            f"| {r['task']} | {r['setting']} | {r['accuracy']:.2f} | {r['f1']:.2f} | "
            f"{r['mcc']:.2f} | {r['seconds']:.0f} |"
        )
    lines += _targets(results)
    return "\n".join(lines) + "\n"


def _targets(results: dict) -> list[str]:
    """The issue's training targets: the default against the old fp32 default at all cores, on
    the teacher at each task's setting, and the dev figures of both after the same steps."""
    speed = {(r["task"], r["model"], r["setting"], r["threads"]): r for r in results["speed"]}
    quality = {(r["task"], r["setting"]): r for r in results["quality"]}
    cores = max((r["threads"] for r in results["speed"]), default=1)
    lines = ["", "## Targets (teacher, all cores)", "", "| Target | Measured | Met |"]
    lines.append("|---|---|---|")
    for task, goal in (("SST-2", 1.5), ("MRPC", 2.0)):
        old = speed.get((task, "teacher 6L", "fp32", cores))
        new = speed.get((task, "teacher 6L", "default", cores))
        if not (old and new):
            lines.append(f"| {task}: default ≥ {goal}× fp32 | pending | |")
            continue
        ratio = new["examples_per_s"] / old["examples_per_s"]
        lines.append(
            f"| {task}: default ≥ {goal}× the examples/s of fp32 | {new['examples_per_s']:.1f} / "
            f"{old['examples_per_s']:.1f} = {ratio:.2f}× | {'yes' if ratio >= goal else 'no'} |"
        )
        before, after = quality.get((task, "fp32")), quality.get((task, "default"))
        if before and after:
            lines.append(
                f"| {task}: no dev cost after the same steps | accuracy {after['accuracy']:.2f} "
                f"vs {before['accuracy']:.2f}, F1 {after['f1']:.2f} vs {before['f1']:.2f} | "
                f"{'yes' if after['accuracy'] >= before['accuracy'] - 0.5 else 'no'} |"
            )
    return lines


if __name__ == "__main__":
    main()
