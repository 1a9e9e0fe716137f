"""The TextCNN-with-a-transfer-set table (benchmarks/results/textcnn-transfer-mrpc/README.md).

    python benchmarks/summarize_textcnn_transfer.py [--results DIR]

Reads every `cells/<name>.json` (the model's slimbert.json, copied by
benchmarks/textcnn_transfer_mrpc.sh as it finished) and `cells/<name>.budget.json`. Rows are the
student kinds (hard labels, distilled, distilled with the transfer set), each the mean ± sample
standard deviation of its seeds' dev F1 and accuracy; the target compares the transfer row with
the hard-label row. Nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

KINDS = {  # cell-name prefix: what the row is (transfer rows are named by their set)
    "hard": "TextCNN, hard labels (--alpha 0)",
    "kd": "TextCNN, distilled",
}
ENCODINGS = {  # cell-name prefix → how the TextCNN read a pair
    "": "packed: the pair as one sequence",
    "siamese-": "siamese: each sentence through the convolutions apart, [a, b, a⊙b, |a−b|]",
}


def transfer_label(variant: str, manifest: dict | None) -> str:
    """What a transfer set holds, from its manifest: word-replaced copies and implied pairs."""
    if manifest is None:
        return f"TextCNN, distilled + transfer set {variant}"
    settings = manifest.get("settings", {})
    copies = settings.get("copies", 0)
    words = f"{copies} word-replaced copies (p {settings.get('prob')})" if copies else ""
    pairs = "implied pairs" if settings.get("pair_rules") else ""
    what = " + ".join(part for part in (words, pairs) if part)
    return f"TextCNN, distilled + transfer `{variant}`: {what}, {manifest['rows']:,} rows"


TARGET_F1_GAIN = 2.0


def spread(values: list[float]) -> str:
    if not values:
        return "pending"
    mean = statistics.fmean(values)
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--results", type=Path, default=Path("benchmarks/results/textcnn-transfer-mrpc")
    )
    args = parser.parse_args()
    cells = {
        path.name.removesuffix(".json"): json.loads(path.read_text())
        for path in sorted((args.results / "cells").glob("*.json"))
        if not path.name.endswith((".budget.json", ".manifest.json"))
    }
    budgets = {
        path.name.removesuffix(".budget.json"): json.loads(path.read_text())
        for path in (args.results / "cells").glob("*.budget.json")
    }
    manifests = {
        path.name.removesuffix(".manifest.json").removeprefix("transfer-"): json.loads(
            path.read_text()
        )
        for path in (args.results / "cells").glob("transfer-*.manifest.json")
    }
    lines = [
        "# A distilled TextCNN on MRPC with a teacher-labelled transfer set",
        "",
        "Made by `bash benchmarks/textcnn_transfer_mrpc.sh` (resumable) and "
        "`python benchmarks/summarize_textcnn_transfer.py` (this page). Each model's command, "
        "machine and wall-clock: `cells/<name>.budget.json`; its training record: "
        "`cells/<name>.json`; the transfer set's manifest: `cells/transfer-c*.manifest.json`.",
        "",
    ]
    teacher = cells.get("teacher")
    if teacher:
        lines.append(
            f"Teacher (MiniLM, 6 layers): dev F1 {teacher['metric']['f1']:.2f}, accuracy "
            f"{teacher['metric']['accuracy']:.2f}, {teacher['steps']} steps."
        )
        lines.append("")
    targets = ["## Target", "", "| Target | Measured | Met |", "|---|---|---|"]
    for prefix, encoding in ENCODINGS.items():
        labels = dict(KINDS)
        rows: dict[str, list[tuple[str, dict]]] = {kind: [] for kind in KINDS}
        for name, meta in cells.items():
            match = re.fullmatch(r"(siamese-)?(hard|kd|kd-transfer-(.+))-seed(\d+)", name)
            if not match or (match.group(1) or "") != prefix:
                continue
            kind = match.group(2)
            if kind not in labels:
                labels[kind] = transfer_label(match.group(3), manifests.get(match.group(3)))
            rows.setdefault(kind, []).append((name, meta))
        if not any(rows.values()):
            continue
        lines += [
            f"### Pairs read {encoding}",
            "",
            "| Student | Seeds | Dev F1 | Dev accuracy | Dev MCC | Per seed (F1 / accuracy, steps, "
            "wall) |",
            "|---|---|---|---|---|---|",
        ]
        means: dict[str, float] = {}
        for kind, label in labels.items():
            found = rows[kind]
            f1 = [meta["metric"]["f1"] for _, meta in found]
            accuracy = [meta["metric"]["accuracy"] for _, meta in found]
            mcc = [meta["metric"]["mcc"] for _, meta in found if "mcc" in meta["metric"]]
            if f1:
                means[kind] = statistics.fmean(f1)
            detail = "; ".join(
                f"{name}: {meta['metric']['f1']:.2f} / {meta['metric']['accuracy']:.2f}, "
                f"{meta['steps']} steps"
                + (f", {budgets[name]['wall_seconds'] / 60:.1f} min" if name in budgets else "")
                for name, meta in found
            )
            lines.append(
                f"| {label} | {len(found)} | {spread(f1)} | {spread(accuracy)} | {spread(mcc)} "
                f"| {detail or '–'} |"
            )
        lines.append("")
        reading = encoding.split(":")[0]
        transfers = [kind for kind in means if kind.startswith("kd-transfer-")]
        for kind in transfers if "hard" in means else []:
            gain = means[kind] - means["hard"]
            targets.append(
                f"| {reading}: distilled TextCNN with `{kind.removeprefix('kd-transfer-')}` ≥ "
                f"hard labels + {TARGET_F1_GAIN:.0f} F1 (mean of {len(rows[kind])} seed(s) "
                f"against {len(rows['hard'])}) | {means[kind]:.2f} − {means['hard']:.2f} = "
                f"{gain:+.2f} | {'yes' if gain >= TARGET_F1_GAIN else 'no'} |"
            )
        if not transfers or "hard" not in means:
            targets.append(f"| {reading}: transfer ≥ hard + {TARGET_F1_GAIN:.0f} F1 | pending | |")
    lines += targets
    (args.results / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
