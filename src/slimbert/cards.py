"""README.md model cards: what a model or export folder is, told to people and to the Hub.

Every folder slimbert saves a model into (teacher, professor, students of every method,
pre-trained students) and every export folder gets one, written by `write_card` from what is
already recorded beside it:

    slimbert.json   role, method and its settings, base or teacher, data hashes, dev metrics
    config.json     labels, model type, layers
    manifest.json   (exports) exporter, precision, each step's ONNX parity on the eval set
    bench           (optional) the latest bench figures over the folder, `add_bench`

The card's YAML header is `huggingface_hub.ModelCardData` (library_name, pipeline_tag,
base_model, tags, datasets, metrics), so the Hub and model registries index it; the body is
plain markdown tables.
"""

from __future__ import annotations

import json
from pathlib import Path

from slimbert.files import write_text_atomic
from slimbert.hub import hub_id

CARD_FILE = "README.md"
_BENCH_MARK = "<!-- slimbert bench -->"


def _fmt(value, digits: int = 2) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "–" if value is None else str(value)


def _small(value) -> str:
    """A difference that may be 1e-8 or 0.3, in three significant digits."""
    return "–" if value is None else f"{value:.3g}"


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in rows]
    return lines


def _json_block(payload: dict) -> list[str]:
    return ["```json", json.dumps(payload, indent=2, sort_keys=True, default=str), "```"]


def _teacher(metadata: dict) -> str | None:
    return metadata.get("teacher") or metadata.get("source")


def _base_model(metadata: dict, manifest: dict | None) -> str | None:
    """The Hub repository this model derives from, where one is known: the teacher or source
    named by its Hub name, else the base the teacher was fine-tuned from."""
    candidates = [
        manifest.get("source") if manifest else None,
        _teacher(metadata),
        metadata.get("base_dir"),
        metadata.get("base"),
        (metadata.get("teacher_meta") or {}).get("base"),
    ]
    for name in candidates:
        if name and (found := hub_id(name)):
            return found
    return None


def _datasets(metadata: dict) -> list[str] | None:
    data = metadata.get("data") or {}
    names = []
    for split in ("train", "eval"):
        path = str((data.get(split) or {}).get("path", ""))
        if path.startswith("hf:"):
            name = path[3:].split(":")[0]
            if name not in names:
                names.append(name)
    return names or None


def _library(metadata: dict, config: dict) -> str:
    """transformers for Hugging Face models (and their exports); slimbert for the TextCNN,
    BiLSTM and tree students only slimbert loads."""
    if metadata.get("architecture") or config.get("slimbert_architecture"):
        return "slimbert"
    return "transformers"


def _title(metadata: dict, manifest: dict | None) -> str:
    role = metadata.get("role", "model")
    method = metadata.get("method")
    if role == "student":
        architecture = metadata.get("architecture")
        if architecture:
            kind = architecture if architecture == method else f"{architecture} {method}"
        else:
            kind = f"{metadata.get('layers', '?')}-layer {method}"
        title = f"{kind} student of {_teacher(metadata)}"
    elif role in ("teacher", "route"):
        title = f"Teacher fine-tuned from {metadata.get('base')}"
        if role == "route":
            title += f" (step {metadata.get('step')} of {metadata.get('total_steps')})"
    elif role == "professor":
        title = f"Boosted professor ensemble of {metadata.get('members')} members"
    elif role == "pretrained-student":
        title = f"Masked-LM pre-trained student of {metadata.get('source')}"
    else:
        title = f"{role} ({method})" if method else str(role)
    if manifest is not None:
        title = f"ONNX export ({manifest.get('precision')}) of {manifest.get('source')}: " + title
    return title


def card_data(metadata: dict, config: dict | None = None, manifest: dict | None = None):
    """The card's YAML header as `huggingface_hub.ModelCardData`."""
    from huggingface_hub import ModelCardData

    config = config or {}
    method = metadata.get("method")
    pretrained = metadata.get("role") == "pretrained-student"
    tags = ["slimbert"]
    if metadata.get("role") in ("student", "pretrained-student"):
        tags.append("distillation")
    if method and method not in tags:
        tags.append(method)
    if metadata.get("architecture"):
        tags.append(metadata["architecture"])
    if manifest is not None:
        tags += ["onnx", manifest.get("precision", "fp32")]
    metric = metadata.get("metric") or {}
    return ModelCardData(
        library_name=_library(metadata, config),
        pipeline_tag="fill-mask" if pretrained else "text-classification",
        base_model=_base_model(metadata, manifest),
        tags=tags,
        datasets=_datasets(metadata),
        metrics=sorted(metric) or None,
        model_name=_title(metadata, manifest),
    )


def _labels(metadata: dict, config: dict, manifest: dict | None) -> dict[str, str]:
    found = (manifest or {}).get("id2label") or config.get("id2label") or {}
    return {str(k): str(v) for k, v in sorted(found.items(), key=lambda kv: int(kv[0]))}


def _task_section(metadata: dict, config: dict, manifest: dict | None) -> list[str]:
    data = metadata.get("data") or {}
    task = (manifest or {}).get("task") or data.get("task") or config.get("problem_type")
    pair = data.get("pair")
    labels = _labels(metadata, config, manifest)
    rows = [
        ("task", f"{task}" + ("" if pair is None else (" of text pairs" if pair else ""))),
        ("labels", ", ".join(f"{k}: {v}" for k, v in labels.items()) or "–"),
        ("max length", (manifest or {}).get("max_length") or data.get("max_length")),
    ]
    return ["## Task", "", *_table(("", ""), rows)]


def _making_section(metadata: dict) -> list[str]:
    rows = [("role", metadata.get("role")), ("method", metadata.get("method"))]
    for key in ("base", "teacher", "source"):
        if metadata.get(key):
            rows.append((key, metadata[key]))
    if len(metadata.get("teachers") or []) > 1:
        rows.append(("teachers", ", ".join(metadata["teachers"])))
    teacher_meta = metadata.get("teacher_meta") or {}
    if teacher_meta.get("base"):
        rows.append(("teacher's base", teacher_meta["base"]))
    for key, label in (
        ("architecture", "architecture"),
        ("layers", "layers"),
        ("hidden_size", "hidden size"),
        ("parameters", "parameters"),
        ("steps", "steps"),
        ("best_step", "best step"),
        ("precision", "training precision"),
        ("weights_sha256", "weights sha256"),
    ):
        if metadata.get(key) is not None:
            rows.append((label, metadata[key]))
    lines = ["## How it was made", "", *_table(("", ""), rows)]
    for key, label in (
        ("method_config", "Method settings"),
        ("boost_config", "Boosting settings"),
        ("pretrain_config", "Pre-training settings"),
        ("teaching", "Teaching"),
        ("train_config", "Training settings"),
    ):
        if metadata.get(key):
            lines += ["", f"{label}:", "", *_json_block(metadata[key])]
    return lines


def _data_section(metadata: dict) -> list[str]:
    data = metadata.get("data") or {}
    rows = []
    for split in ("train", "eval", "transfer"):
        part = data.get(split)
        if part:
            rows.append((split, f"`{part.get('path')}`", part.get("rows"), part.get("sha256")))
    if data.get("train", {}).get("subset_sha256"):
        rows.append(("train rows used", "", "", data["train"]["subset_sha256"]))
    for text in metadata.get("texts") or []:
        rows.append(("texts", f"`{text.get('path')}`", text.get("distinct"), text.get("sha256")))
    if not rows:
        return []
    return ["## Data", "", *_table(("", "source", "rows", "sha256"), rows)]


def _metrics_section(metadata: dict) -> list[str]:
    metric = metadata.get("metric") or {}
    if not metric:
        return []
    teacher = metadata.get("teacher_metric") or {}
    main = metadata.get("metric_name")
    header = ("metric", "this model", "teacher") if teacher else ("metric", "this model")
    rows = []
    for name, value in metric.items():
        label = f"**{name}**" if name == main else name
        rows.append((label, value, teacher.get(name)) if teacher else (label, value))
    return [
        "## Dev metrics",
        "",
        f"On the eval set (main metric: {main}); percent, except losses.",
        "",
        *_table(header, rows),
    ]


def _export_section(manifest: dict) -> list[str]:
    validation = manifest.get("validation") or {}
    steps = [s.get("step", "?") for s in manifest.get("optimizations") or []]
    rows = [
        ("source", f"`{manifest.get('source')}`"),
        ("exporter", manifest.get("exporter")),
        ("precision", manifest.get("precision")),
        ("steps after export", ", ".join(steps) or "none"),
        ("opset", manifest.get("opset")),
        ("validated on", f"`{validation.get('eval_file')}` ({validation.get('examples')} rows)"),
        ("eval sha256", validation.get("eval_sha256")),
    ]
    parity = [
        (
            stage.get("step"),
            stage.get("precision"),
            _small(stage.get("max_abs_diff")),
            stage.get("label_agreement"),
            stage.get("torch_metric"),
            stage.get("onnx_metric"),
            stage.get("delta_metric"),
        )
        for stage in manifest.get("stages") or []
    ]
    metric = validation.get("metric_name", "metric")
    return [
        "## ONNX export",
        "",
        *_table(("", ""), rows),
        "",
        f"Parity with PyTorch on every eval row ({metric}, label agreement in percent):",
        "",
        *_table(
            (
                "step",
                "precision",
                "max abs Δ logit",
                "label agreement",
                f"PyTorch {metric}",
                f"ONNX {metric}",
                "Δ",
            ),
            parity,
        ),
    ]


def _usage_section(library: str, manifest: dict | None, pretrained: bool) -> list[str]:
    if manifest is not None:
        lines = ["```bash", "slimbert serve --model PATH_TO_THIS_FOLDER", "```"]
        if library == "transformers":
            lines += [
                "",
                "```python",
                "from optimum.onnxruntime import ORTModelForSequenceClassification",
                'model = ORTModelForSequenceClassification.from_pretrained("PATH_TO_THIS_FOLDER")',
                "```",
            ]
    elif pretrained:
        lines = [
            "```bash",
            "slimbert compress kd --teacher TEACHER --student-init PATH_TO_THIS_FOLDER ...",
            "```",
        ]
    elif library == "transformers":
        lines = [
            "```python",
            "from transformers import pipeline",
            'classify = pipeline("text-classification", model="PATH_TO_THIS_FOLDER")',
            "```",
        ]
    else:
        lines = ["```bash", "slimbert export --model PATH_TO_THIS_FOLDER ...", "```"]
    return ["## Use", "", *lines]


def render_card(metadata: dict, config: dict | None = None, manifest: dict | None = None):
    """The model card (`huggingface_hub.ModelCard`) of a model folder, or of an export folder
    when `manifest` is given."""
    from huggingface_hub import ModelCard

    config = config or {}
    data = card_data(metadata, config, manifest)
    sources = "slimbert.json" + (" and manifest.json" if manifest else "")
    body = [f"# {data.model_name}", ""]
    body += [f"Made with slimbert. Every figure below is copied from {sources} beside it.", ""]
    body += _task_section(metadata, config, manifest) + [""]
    if manifest is not None:
        body += _export_section(manifest) + [""]
    if metadata:
        body += _making_section(metadata) + [""]
        body += _data_section(metadata) + [""]
        body += _metrics_section(metadata) + [""]
    body += _usage_section(
        data.library_name, manifest, metadata.get("role") == "pretrained-student"
    ) + [""]
    versions = (manifest or {}).get("versions") or metadata.get("versions") or {}
    if versions:
        body += ["## Versions", "", ", ".join(f"{k} {v}" for k, v in versions.items()), ""]
    text = "\n".join(body)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{text}")


def write_card(
    folder: str | Path,
    metadata: dict,
    config: dict | None = None,
    manifest: dict | None = None,
) -> Path:
    """Write folder/README.md atomically; `config` defaults to folder/config.json."""
    folder = Path(folder)
    if config is None and (folder / "config.json").is_file():
        config = json.loads((folder / "config.json").read_text())
    card = render_card(metadata, config, manifest)
    path = folder / CARD_FILE
    write_text_atomic(path, str(card))
    return path


def _bench_section(rows: list[dict], eval_path: str, when: str) -> str:
    table = _table(
        ("runtime", "provider", "precision", "batch", "length", "threads", "p50 ms", "p99 ms",
         "requests/s", "metric"),
        [
            (
                row["runtime"],
                row["provider"],
                row.get("precision"),
                row["batch_size"],
                row.get("seq_length") or "own",
                row.get("threads"),
                row["p50_ms"],
                row["p99_ms"],
                row["qps"],
                f"{row['metric_name']} {row['metric']:.2f}",
            )
            for row in rows
        ],
    )  # fmt: skip
    lines = [
        _BENCH_MARK,
        "## Latest bench",
        "",
        f"`slimbert bench` on `{eval_path}`, {when} (bench's report.md has the machine).",
        "",
        *table,
        _BENCH_MARK,
    ]
    return "\n".join(lines)


def add_bench(folder: str | Path, rows: list[dict], eval_path: str | Path, when: str) -> bool:
    """Put the latest bench figures over `folder` (rows as `bench.report.Row` dicts) into its
    card, replacing earlier ones, atomically. A folder without a card is left alone; returns
    whether a card was written."""
    path = Path(folder) / CARD_FILE
    if not rows or not path.is_file() or hub_id(folder) is not None:
        return False  # a snapshot in the Hugging Face cache is the Hub's, not ours to edit
    text = path.read_text(encoding="utf-8")
    start = text.find(_BENCH_MARK)
    if start >= 0:
        end = text.find(_BENCH_MARK, start + len(_BENCH_MARK))
        end = len(text) if end < 0 else end + len(_BENCH_MARK)
        text = text[:start].rstrip("\n") + "\n" + text[end:].lstrip("\n")
    section = _bench_section(rows, str(eval_path), when)
    write_text_atomic(path, text.rstrip("\n") + "\n\n" + section + "\n")
    return True
