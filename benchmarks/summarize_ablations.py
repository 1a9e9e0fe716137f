"""The papers' own ablations (benchmarks/results/ablations/TABLES.md) from the committed cells.

    python benchmarks/summarize_ablations.py [--results benchmarks/results/ablations]
        [--seeds 1,2,3]

Reads every `cells/<name>.json` (the model's slimbert.json, copied by benchmarks/ablations.sh as
the cell finished) and `cells/<name>.budget.json` (wall-clock, peak memory, command, machine),
the transfer sets' manifests and `cells/distilbert-teachers.txt` (each candidate masked-LM
teacher's answer). One table per paper ablation and task: each row's dev accuracy and F1 as
mean ± std over the seeds that finished, retention (the student's figure ÷ its teacher's, in %,
per seed, then the mean), Δ accuracy against the table's reference row of the same seed (mean
over the seeds both have), the steps it trained and its wall-clock per cell. A row with no
finished seed is "pending"; one the CLI cannot express says why. Beside each table, the
paper's own finding as the paper states it, or where to read it, and for each row the paper
places above or below the reference, whether it lands there here (its mean Δ outside one
standard deviation over the seeds) or not, or within noise. Nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

TASKS = {"mrpc": "MRPC (3,668 pairs, 128 tokens)", "sst2": "SST-2 10k (sample seed 0, 64 tokens)"}


@dataclass(frozen=True)
class Row:
    """One row of a table: the cell stem (`<task>-<stem>-seed<n>`) and what it changes."""

    stem: str
    label: str
    blocked: str = ""  # why the row cannot run; empty for a row the script runs
    # where the paper puts this row against the reference: -1 below, +1 above, 0 no paper row
    paper: int = 0


@dataclass(frozen=True)
class Table:
    title: str
    paper: str  # the paper's finding, as it states it, or where to read it
    rows: tuple[Row, ...]
    reference: str  # the stem every Δ is taken against
    tasks: tuple[str, ...] = ("mrpc", "sst2")
    previous: bool = False  # add the agreement with the previous model (TextCNN schemes)
    teacher: str = "teacher"  # the cell `<task>-<teacher>` that retention is taken against
    note: bool = False  # DistilBERT: what each candidate masked-LM teacher answered


TINYBERT = "Jiao et al. 2020, TinyBERT"
TABLES = (
    Table(
        "TinyBERT: the distillation objectives (3-layer students)",
        f"{TINYBERT}, Table 6 (TinyBERT-4 on MNLI, MRPC, CoLA): removing any objective lowers "
        "the average; without the Transformer-layer losses (attention and hidden states "
        "together) the drop is the largest. Paper figure: see that table.",
        (
            Row("tinybert-full", "all four losses, uniform map (reference)"),
            Row("tinybert-no-emb", "without the embedding loss (weight 0)", paper=-1),
            Row("tinybert-no-att", "without the attention-score loss", paper=-1),
            Row("tinybert-no-hid", "without the hidden-state loss", paper=-1),
            Row("tinybert-no-trm", "without attention and hidden (the paper's w/o Trm)", paper=-1),
            Row(
                "tinybert-no-pred",
                "without the prediction-layer loss (the last stage on the labels)",
                paper=-1,
            ),
        ),
        "tinybert-full",
    ),
    Table(
        "TinyBERT: the layer map",
        f"{TINYBERT}, Table 7: the uniform map is best on average; top is better than bottom "
        "on MNLI, worse on MRPC and CoLA. Paper figure: see that table.",
        (
            Row("tinybert-full", "uniform: teacher layers 2, 4, 6 (reference)"),
            Row("tinybert-top", "top: teacher layers 4, 5, 6", paper=-1),
            Row("tinybert-bottom", "bottom: teacher layers 1, 2, 3", paper=-1),
        ),
        "tinybert-full",
    ),
    Table(
        "TinyBERT: the general step and augmentation",
        f"{TINYBERT}, Table 5: removing general distillation, task distillation or data "
        "augmentation each lowers the average. Paper figure: see that table. Here the "
        "reference has neither, and each row adds one.",
        (
            Row("tinybert-full", "the 3-layer cut of the fine-tuned teacher, no augmentation"),
            Row("tinybert-general", "from the general step (general-3L, --student-init)", paper=1),
            Row(
                "tinybert-transfer", "with the teacher-labelled transfer set (same steps)", paper=1
            ),
        ),
        "tinybert-full",
    ),
    Table(
        "BERT-of-Theseus against its baselines (3-layer students)",
        "Xu et al. 2020, BERT-of-Theseus: Theseus (6 layers) above fine-tuning the teacher's "
        "first 6 layers and above vanilla KD on the GLUE dev average. Paper figure: see its "
        "Table 1.",
        (
            Row("theseus-constant", "theseus, p = 0.5 throughout, --init first (reference)"),
            Row("first3", "the teacher's first 3 layers fine-tuned on the labels", paper=-1),
            Row("kd", "kd: uniform cut, T 2, alpha 0.5", paper=-1),
        ),
        "theseus-constant",
    ),
    Table(
        "BERT-of-Theseus: constant p against the curriculum p(t)",
        "Xu et al. 2020: the curriculum replacement rate p(t) = min(1, kt + b) is above a "
        "constant p on average. Paper figure: see its curriculum-replacement table.",
        (
            Row("theseus-constant", "constant p = 0.5 (reference)"),
            Row("theseus-linear", "curriculum p(t) from b = 0.3 to 1 at the stage's end", paper=1),
        ),
        "theseus-constant",
    ),
    Table(
        "MiniLM: which relations, which teacher layer, how many relation heads (3-layer students)",
        "Wang et al. 2021, MiniLMv2: its Q-Q, K-K, V-V relations above MiniLM's (Wang et al. "
        "2020) attention and value transfer; it also studies which teacher layer to distil (an "
        "upper-middle one for large teachers) and how many relation heads. Paper figures: see "
        "its ablation tables.",
        (
            Row("minilm-v2", "Q-Q, K-K, V-V of the teacher's last layer, 12 heads (reference)"),
            Row("minilm-v1", "MiniLM's attention distributions and V-V (--relations v1)", paper=-1),
            Row("minilm-layer-2", "the teacher's second-to-last layer (--teacher-layer -2)"),
            Row("minilm-heads24", "24 relation heads (--relation-heads 24)"),
        ),
        "minilm-v2",
    ),
    Table(
        "BERT→TextCNN: the training schemes",
        "No figure to set beside: the five schemes are the ones docs/papers.md §7b defines; no "
        "published table of them is restated here, so this one stands on its own.",
        (
            Row("textcnn-hard", "the labels alone (alpha 0, reference)"),
            Row("textcnn-s1", "1: the teacher's cached logits"),
            Row("textcnn-s2", "2: joint, alternating, isolated"),
            Row("textcnn-s3", "3: joint, alternating, not isolated"),
            Row("textcnn-s4", "4: joint, one summed step, isolated"),
            Row("textcnn-s5", "5: the teacher and the previous model, mean logits"),
        ),
        "textcnn-hard",
        previous=True,
    ),
    Table(
        "DistilBERT: the triple loss against each term",
        "Sanh et al. 2019, DistilBERT. Paper figure: see its Table 4 (the triple loss with "
        "each term removed, GLUE macro-score).",
        (
            Row("distilbert-triple", "5 · soft targets + 2 · masked LM + 1 · cosine (reference)"),
            Row("distilbert-no-soft", "without the soft-target term", paper=-1),
            Row("distilbert-no-mlm", "without the masked-LM term", paper=-1),
            Row("distilbert-no-cos", "without the cosine term", paper=-1),
            Row("distilbert-soft", "soft targets alone"),
            Row("distilbert-mlm", "masked LM alone"),
            Row("distilbert-cos", "cosine alone"),
        ),
        "distilbert-triple",
        teacher="mlm-teacher",
        note=True,
    ),
)


def load(folder: Path, name: str, suffix: str = ".json") -> dict | None:
    path = folder / "cells" / f"{name}{suffix}"
    return json.loads(path.read_text()) if path.is_file() else None


def mean_std(values: list[float]) -> str:
    if not values:
        return "pending"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def wall(seconds: list[float]) -> str:
    if not seconds:
        return "—"
    mean = statistics.fmean(seconds)
    return f"{mean:.0f} s" if mean < 120 else f"{mean / 60:.1f} min"


def budget_seconds(folder: Path, names: list[str]) -> list[float]:
    """The wall-clock of each named cell that has a budget (benchmarks/cells.sh)."""
    return [b["wall_seconds"] for name in names if (b := load(folder, name, ".budget.json"))]


def trained(meta: dict) -> str:
    """Steps per stage, epochs of the training rows, and whether early stopping cut it."""
    config = meta.get("train_config", {})
    rows = meta.get("train_rows") or meta["data"]["train"]["rows"]
    stages = meta.get("stages") or {}
    steps = [stage["steps"] for stage in stages.values()] or [meta["steps"]]
    epochs = sum(steps) * config.get("batch_size", 32) * config.get("grad_accum", 1) / rows
    # early stopping fired when a stage ended before its planned steps: --max-steps, or (a
    # one-stage run without it, the teachers) its epochs over the training rows
    per_epoch = math.ceil(rows / (config.get("batch_size", 32) * config.get("grad_accum", 1)))
    cap = config.get("max_steps") or (
        math.ceil(config.get("epochs", 0) * per_epoch) if len(steps) == 1 else None
    )
    stopped = " (early stop)" if cap and any(s < cap for s in steps) else ""
    return f"{' + '.join(map(str, steps))} steps{stopped}, {epochs:.1f} epochs of {rows:,} rows"


def retention(values: list[float], teacher: dict, key: str) -> str:
    """The mean over seeds of a student's figure ÷ the teacher's, in %."""
    base = teacher["metric"][key]
    return f"{statistics.fmean(v / base * 100 for v in values):.1f}%" if base else "—"


def seeds_of(folder: Path, task: str, stem: str, seeds: list[int]) -> dict[int, dict]:
    return {seed: meta for seed in seeds if (meta := load(folder, f"{task}-{stem}-seed{seed}"))}


def table_lines(folder: Path, table: Table, seeds: list[int]) -> list[str]:
    lines = [f"## {table.title}", "", f"*The paper:* {table.paper}", ""]
    skipped = ""
    if table.note:
        note, skipped = distilbert_note(folder)
        lines += note
    for task in table.tasks:
        teacher = load(folder, f"{task}-{table.teacher}")
        lines += [f"### {TASKS[task]}", ""]
        if teacher:
            t = teacher["metric"]
            lines.append(
                f"Teacher (`{task}-{table.teacher}`): accuracy {t['accuracy']:.2f}, "
                f"F1 {t['f1']:.2f}; {trained(teacher)}, "
                f"{wall(budget_seconds(folder, [f'{task}-{table.teacher}']))}."
            )
        else:
            lines.append(f"Teacher (`{task}-{table.teacher}`): pending.")
        if table.previous:
            lines.append(previous_line(folder, task))
        lines.append("")
        columns = ["Row", "Cell", "Seeds", "Accuracy", "F1", "Kept acc / F1", "Δ acc vs ref"]
        if table.previous:
            columns += ["Agreement / recall / kept correct vs previous"]
        columns += ["Steps, epochs", "Wall per cell"]
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        reference = seeds_of(folder, task, table.reference, seeds)
        for row in table.rows:
            lines.append(row_line(folder, task, row, table, seeds, reference, teacher, skipped))
        lines += ["", *here_line(folder, task, table, seeds, reference)]
        lines += paper_line(folder, task, table, seeds, reference)
    return lines


def row_line(
    folder: Path,
    task: str,
    row: Row,
    table: Table,
    seeds: list[int],
    reference: dict[int, dict],
    teacher: dict | None,
    skipped: str = "",
) -> str:
    cell = f"`{task}-{row.stem}-seed*`"
    blank = ["", "", "", "", ""] + ([""] if table.previous else []) + ["", ""]
    if row.blocked:
        blank[2] = row.blocked
        return "| " + " | ".join([row.label, cell, *blank]) + " |"
    done = seeds_of(folder, task, row.stem, seeds)
    if not done:
        blank[0], blank[1] = f"0/{len(seeds)}", skipped or "pending"
        return "| " + " | ".join([row.label, cell, *blank]) + " |"
    metric = {seed: meta["metric"] for seed, meta in done.items()}
    accuracy = [m["accuracy"] for m in metric.values()]
    f1 = [m["f1"] for m in metric.values()]
    kept = "—"
    if teacher:
        kept = f"{retention(accuracy, teacher, 'accuracy')} / {retention(f1, teacher, 'f1')}"
    paired = paired_delta(done, reference)
    delta = "—" if row.stem == table.reference or paired is None else f"{paired:+.2f}"
    cells = [
        row.label,
        cell,
        f"{len(done)}/{len(seeds)}",
        mean_std(accuracy),
        mean_std(f1),
        kept,
        delta,
    ]
    if table.previous:
        records = [meta["previous_model"] for meta in done.values() if meta.get("previous_model")]
        cells.append(" / ".join(previous_figure(records, key) for key in PREVIOUS_FIGURES))
    names = [f"{task}-{row.stem}-seed{seed}" for seed in done]
    cells += [trained(next(iter(done.values()))), wall(budget_seconds(folder, names))]
    return "| " + " | ".join(cells) + " |"


PREVIOUS_FIGURES = ("agreement", "recall", "kept_correct")


def previous_figure(records: list[dict], key: str) -> str:
    """The mean of one comparison figure over seeds; recall is None where the previous model
    called no dev row positive."""
    values = [r[key] for r in records if r.get(key) is not None]
    return f"{statistics.fmean(values):.1f}%" if values else "—"


def paired_delta(done: dict[int, dict], reference: dict[int, dict]) -> float | None:
    """Mean over the seeds both rows finished of (row − reference) dev accuracy."""
    deltas = paired_deltas(done, reference)
    return statistics.fmean(deltas) if deltas else None


def here_line(
    folder: Path, task: str, table: Table, seeds: list[int], reference: dict[int, dict]
) -> list[str]:
    """The rows ordered by their mean Δ accuracy against the reference, to set beside the
    paper's finding; written only once a row besides the reference has a seed."""
    found = []
    for row in table.rows:
        if row.blocked or row.stem == table.reference:
            continue
        done = seeds_of(folder, task, row.stem, seeds)
        delta = paired_delta(done, reference)
        if delta is not None:
            found.append((delta, f"{row.stem.split('-', 1)[-1]} {delta:+.2f} (n={len(done)})"))
    if not found:
        return []
    ordered = "; ".join(text for _, text in sorted(found))
    return [f"*Here:* Δ accuracy against the reference, lowest first: {ordered}.", ""]


def verdict(deltas: list[float], sign: int) -> str:
    """Whether seeds' paired Δ accuracies reproduce a paper's direction (`sign`: −1 below the
    reference, +1 above): a mean inside one standard deviation of zero is noise; outside it,
    the mean's sign agrees with the paper's or it does not."""
    mean, std = statistics.fmean(deltas), statistics.stdev(deltas)
    if abs(mean) <= std:
        return "within noise"
    return "reproduces" if math.copysign(1, mean) == sign else "does not reproduce"


def paper_line(
    folder: Path, task: str, table: Table, seeds: list[int], reference: dict[int, dict]
) -> list[str]:
    """Each row the paper places against the reference, with where it lands here and whether
    that reproduces the paper; written once a row has two seeds beside the reference's."""
    found, counts = [], {}
    for row in table.rows:
        if not row.paper or row.blocked:
            continue
        deltas = paired_deltas(seeds_of(folder, task, row.stem, seeds), reference)
        if len(deltas) < 2:
            continue
        said = verdict(deltas, row.paper)
        counts[said] = counts.get(said, 0) + 1
        where = "below" if row.paper < 0 else "above"
        found.append(
            f"{row.stem.split('-', 1)[-1]} (the paper: {where}) "
            f"{statistics.fmean(deltas):+.2f} ± {statistics.stdev(deltas):.2f}, {said}"
        )
    if not found:
        return []
    tally = ", ".join(f"{n} {said}" for said, n in sorted(counts.items()))
    return [f"*Against the paper:* {'; '.join(found)} — {tally}.", ""]


def paired_deltas(done: dict[int, dict], reference: dict[int, dict]) -> list[float]:
    return [
        meta["metric"]["accuracy"] - reference[seed]["metric"]["accuracy"]
        for seed, meta in done.items()
        if seed in reference
    ]


def digest_lines(folder: Path, seeds: list[int]) -> list[str]:
    """One line per choice the tables make: its Δ accuracy against its table's reference on
    each task (mean ± std over the seeds both finished: a Δ inside its std is noise) and its
    wall-clock per cell as a multiple of the reference's, so a reader can pick at a glance."""
    lines = [
        "## At a glance: what each choice buys, and what it costs",
        "",
        "Δ accuracy against the table's reference row (mean ± std over paired seeds, n seeds); "
        "wall = the row's mean wall-clock per cell ÷ the reference's, over both tasks.",
        "",
        *header("Table", "Choice", *(TASKS[t].split(" (")[0] for t in TASKS), "Wall"),
    ]
    for table in TABLES:
        for row in table.rows:
            if row.blocked or row.stem == table.reference:
                continue
            cells, walls = [], []
            for task in TASKS:
                reference = seeds_of(folder, task, table.reference, seeds)
                done = seeds_of(folder, task, row.stem, seeds)
                deltas = paired_deltas(done, reference)
                cells.append(signed(deltas) if deltas else "pending")
                ours = budget_seconds(folder, [f"{task}-{row.stem}-seed{s}" for s in done])
                theirs = budget_seconds(
                    folder, [f"{task}-{table.reference}-seed{s}" for s in reference]
                )
                if ours and theirs:
                    walls.append(statistics.fmean(ours) / statistics.fmean(theirs))
            if all(c == "pending" for c in cells):
                continue
            wall_text = f"{statistics.fmean(walls):.1f}×" if walls else "—"
            title = table.title.split(" (")[0]
            lines.append(f"| {title} | {row.label} | {' | '.join(cells)} | {wall_text} |")
    return [*lines, ""]


def signed(deltas: list[float]) -> str:
    spread = f" ± {statistics.stdev(deltas):.2f}" if len(deltas) > 1 else ""
    return f"{statistics.fmean(deltas):+.2f}{spread} (n={len(deltas)})"


def header(*names: str) -> list[str]:
    return ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]


def previous_line(folder: Path, task: str) -> str:
    meta = load(folder, f"{task}-textcnn-previous")
    if not meta:
        return "Previous model (a TextCNN on the labels alone, seed 100): pending."
    m = meta["metric"]
    return (
        f"Previous model (`{task}-textcnn-previous`, a TextCNN on the labels alone, seed 100): "
        f"accuracy {m['accuracy']:.2f}, F1 {m['f1']:.2f}. Agreement: % of dev rows with its "
        "label; recall: % of the rows it calls positive that the student calls positive; kept "
        "correct: % of its right answers the student keeps right."
    )


def weights(meta: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in meta["objective"]["weights"].items())


def distilbert_note(folder: Path) -> tuple[list[str], str]:
    """What the distilbert stage found when it asked each teacher for its masked-LM head, and
    the words its rows show when none had one."""
    path = folder / "cells" / "distilbert-teachers.txt"
    if not path.is_file():
        return [
            "The distilbert stage has not run yet (it asks each candidate teacher first).",
            "",
        ], ""
    answers = [line for line in path.read_text().splitlines() if line.strip()]
    ran = any(line.startswith("[ablations] distilbert: masked-LM teacher") for line in answers)
    head = (
        "The masked-LM teacher the rows below use, and each candidate's answer:"
        if ran
        else "**Not run: no teacher with a masked-LM head is available offline.** DistilBERT's "
        "soft-target and masked-LM terms read the teacher's MLM distribution; each candidate "
        "teacher was asked (`distill-general --objective distilbert`) and answered:"
    )
    general = [
        f"- `{path.stem}` (the general step, weights {weights(meta)}): held-out "
        f"loss {meta['distill_loss_before']:.4f} → {meta['metric']['distill_loss']:.4f} in "
        f"{meta['steps']} steps"
        for path in sorted((folder / "cells").glob("distilbert-*.json"))
        if not path.name.endswith((".budget.json", ".config.json"))
        for meta in [json.loads(path.read_text())]
    ]
    lines = [head, "", *(f"- {line}" for line in answers), ""]
    teacher = load(folder, "mlm-teacher")
    if teacher:
        lines += [
            f"The masked-LM teacher (`mlm-teacher`, {teacher['method']} from "
            f"{teacher.get('source')}): held-out masked-LM loss "
            f"{teacher['mlm_loss_before']:.3f} → {teacher['metric']['mlm_loss']:.3f} "
            f"(perplexity {teacher['metric']['perplexity']:.1f}), {teacher['steps']} steps, "
            f"{wall(budget_seconds(folder, ['mlm-teacher']))}.",
            "",
        ]
    if general:
        lines += ["The general-step students the task rows start from:", "", *general, ""]
    return lines, "" if ran else "not run: no masked-LM teacher"


def general_lines(folder: Path) -> list[str]:
    meta = load(folder, "general-3L")
    if not meta:
        return ["The general step (`general-3L`): pending.", ""]
    best = meta["metric"].get("distill_loss", float("nan"))
    return [
        f"The general step (`general-3L`, {meta['method']} from {meta.get('source')}): held-out "
        f"loss {meta['distill_loss_before']:.4f} → {best:.4f}, {meta['steps']} steps, "
        f"{wall(budget_seconds(folder, ['general-3L']))}.",
        "",
    ]


def transfer_lines(folder: Path) -> list[str]:
    lines = []
    for task in TASKS:
        path = folder / "cells" / f"{task}-transfer.manifest.json"
        if not path.is_file():
            lines.append(f"- {task} transfer set: pending")
            continue
        manifest = json.loads(path.read_text())
        settings = manifest["settings"]
        lines.append(
            f"- {task} transfer set: {manifest['rows']:,} rows from {manifest['train']['rows']:,} "
            f"training rows (copies {settings['copies']}, p {settings['prob']}"
            f"{', pair rules' if settings.get('pair_rules') else ''}; "
            f"{manifest['word_replacement']['mode']} replacements)"
        )
    return [*lines, ""]


def machine_line(budget: dict) -> str:
    """The machine a cell ran on: its cores, and the threads the command had when recorded."""
    line = f"{budget['machine']}, {budget['cores']} cores"
    if "threads" in budget and budget["threads"] != budget["cores"]:
        line += f" ({budget['threads']} thread{'s' * (budget['threads'] > 1)} per cell)"
    return line


def provenance(folder: Path) -> list[str]:
    budgets = [json.loads(p.read_text()) for p in sorted((folder / "cells").glob("*.budget.json"))]
    machines = sorted({machine_line(b) for b in budgets}) or ["none yet"]
    versions = next(
        (
            meta["versions"]
            for p in sorted((folder / "cells").glob("*-seed*.json"))
            if not p.name.endswith(".budget.json")
            and "versions" in (meta := json.loads(p.read_text()))
        ),
        {},
    )
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return [
        "Commands: `bash benchmarks/ablations.sh` (its header gives every setting), then "
        f"`python benchmarks/summarize_ablations.py --results {folder}`.",
        f"Summarized at {revision or 'unknown'} on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. "
        f"Cells trained on: {'; '.join(machines)}.",
        "Libraries: " + (", ".join(f"{k} {v}" for k, v in versions.items()) or "—") + ".",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/ablations"))
    parser.add_argument("--seeds", default="1,2,3", help="the seeds a row needs (comma list)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    lines = [
        "<!-- written by benchmarks/summarize_ablations.py from cells/; do not edit -->",
        "",
        "# The papers' own ablations",
        "",
        *provenance(args.results),
        "Retention (kept) is the student's dev figure ÷ its teacher's, per seed, then the mean; "
        "Δ acc is against the table's reference row of the same seed. Steps: per stage "
        "(two-stage methods: layer or replacing stage + prediction or fine-tuning stage), "
        "then the epochs they make of the training rows.",
        "",
        *general_lines(args.results),
        "Transfer sets (TinyBERT's augmentation rows):",
        "",
        *transfer_lines(args.results),
        *digest_lines(args.results, seeds),
    ]
    for table in TABLES:
        lines += table_lines(args.results, table, seeds)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "TABLES.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
