"""README.md model cards: what a model or export folder is, told to people and to the Hub.

Every folder slimbert saves a model into (teacher, professor, students of every method,
pre-trained students) and every export folder gets one, written by `write_card` from what is
already recorded beside it:

    slimbert.json   the folder's record (slimbert.record.ModelRecord): role, method and its
                    settings, base or teacher, data hashes, dev metrics
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

from slimbert.files import CARD_FILE, CONFIG_FILE, MANIFEST_FILE, RECORD_FILE, write_text_atomic
from slimbert.hub import hub_id
from slimbert.record import ModelRecord

_PRETRAINED = "pretrained-student"  # compress/pretrain.py's ROLE
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


def _teacher(record: ModelRecord) -> str | None:
    return record.teacher or record.source


def _base_model(record: ModelRecord, manifest: dict | None) -> str | None:
    """The Hub repository this model derives from, where one is known: the teacher or source
    named by its Hub name, else the base the teacher was fine-tuned from."""
    candidates = [
        manifest.get("source") if manifest else None,
        _teacher(record),
        record.base_dir,
        record.base,
        record.teacher_base,
    ]
    for name in candidates:
        if name and (found := hub_id(name)):
            return found
    return None


def _datasets(record: ModelRecord) -> list[str] | None:
    names = []
    for split in ("train", "eval"):
        part = record.data_file(split)
        if part and part.path.startswith("hf:"):
            name = part.path[3:].split(":")[0]
            if name not in names:
                names.append(name)
    return names or None


def _library(record: ModelRecord, config: dict) -> str:
    """transformers for Hugging Face models (and their exports); slimbert for the TextCNN,
    BiLSTM and tree students only slimbert loads."""
    if record.architecture or config.get("slimbert_architecture"):
        return "slimbert"
    return "transformers"


def _title(record: ModelRecord, manifest: dict | None) -> str:
    role, method = record.role or "model", record.method
    if role == "student":
        architecture = record.architecture
        if architecture:
            kind = architecture if architecture == method else f"{architecture} {method}"
        else:
            kind = f"{'?' if record.layers is None else record.layers}-layer {method}"
        title = f"{kind} student of {_teacher(record)}"
    elif role in ("teacher", "route"):
        title = f"Teacher fine-tuned from {record.base}"
        if role == "route":
            title += f" (step {record.step} of {record.total_steps})"
    elif role == "professor":
        title = f"Boosted professor ensemble of {record.members} members"
    elif role == "pretrained-student":
        title = f"Masked-LM pre-trained student of {record.source}"
    else:
        title = f"{role} ({method})" if method else str(role)
    if manifest is not None:
        title = f"ONNX export ({manifest.get('precision')}) of {manifest.get('source')}: " + title
    return title


def card_data(record: ModelRecord, config: dict | None = None, manifest: dict | None = None):
    """The card's YAML header as `huggingface_hub.ModelCardData`."""
    from huggingface_hub import ModelCardData

    config = config or {}
    method = record.method
    tags = ["slimbert"]
    if record.role in ("student", "pretrained-student"):
        tags.append("distillation")
    if method and method not in tags:
        tags.append(method)
    if record.architecture:
        tags.append(record.architecture)
    if manifest is not None:
        tags += ["onnx", manifest.get("precision", "fp32")]
    return ModelCardData(
        library_name=_library(record, config),
        pipeline_tag="fill-mask" if record.role == _PRETRAINED else "text-classification",
        base_model=_base_model(record, manifest),
        tags=tags,
        datasets=_datasets(record),
        metrics=sorted(record.metric or {}) or None,
        model_name=_title(record, manifest),
    )


def _labels(config: dict, manifest: dict | None) -> dict[str, str]:
    found = (manifest or {}).get("id2label") or config.get("id2label") or {}
    return {str(k): str(v) for k, v in sorted(found.items(), key=lambda kv: int(kv[0]))}


def _task_section(record: ModelRecord, config: dict, manifest: dict | None) -> list[str]:
    task = (manifest or {}).get("task") or record.task or config.get("problem_type")
    pair = record.pair
    labels = _labels(config, manifest)
    rows = [
        ("task", f"{task}" + ("" if pair is None else (" of text pairs" if pair else ""))),
        ("labels", ", ".join(f"{k}: {v}" for k, v in labels.items()) or "–"),
        ("max length", (manifest or {}).get("max_length") or record.max_length),
    ]
    return ["## Task", "", *_table(("", ""), rows)]


# what the method's settings are called in the card, by role
_SETTINGS = {"professor": "Boosting settings", _PRETRAINED: "Pre-training settings"}


def _making_section(record: ModelRecord) -> list[str]:
    rows = [("role", record.role), ("method", record.method)]
    rows += [(k, v) for k, v in (("base", record.base), ("teacher", record.teacher),
                                 ("source", record.source)) if v]  # fmt: skip
    if len(record.teachers or []) > 1:
        rows.append(("teachers", ", ".join(record.teachers)))
    if record.teacher_base:
        rows.append(("teacher's base", record.teacher_base))
    for label, value in (
        ("architecture", record.architecture),
        ("layers", record.layers),
        ("hidden size", record.hidden_size),
        ("parameters", record.parameters),
        ("steps", record.steps),
        ("best step", record.best_step),
        ("training precision", record.precision),
        ("weights sha256", record.weights_sha256),
    ):
        if value is not None:
            rows.append((label, value))
    lines = ["## How it was made", "", *_table(("", ""), rows)]
    for label, settings in (
        (_SETTINGS.get(record.role, "Method settings"), record.method_config),
        ("Teaching", record.teaching),
        ("Training settings", record.train_config),
    ):
        if settings:
            lines += ["", f"{label}:", "", *_json_block(settings)]
    return lines


def _data_section(record: ModelRecord) -> list[str]:
    rows = []
    for split in ("train", "eval", "transfer"):
        if part := record.data_file(split):
            rows.append((split, f"`{part.path}`", part.rows, part.sha256))
    train = record.data_file("train")
    if train and train.subset_sha256:
        rows.append(("train rows used", "", "", train.subset_sha256))
    for text in record.text_files():
        rows.append(("texts", f"`{text.path}`", text.rows, text.sha256))
    if not rows:
        return []
    return ["## Data", "", *_table(("", "source", "rows", "sha256"), rows)]


def _metrics_section(record: ModelRecord) -> list[str]:
    metric = record.metric or {}
    if not metric:
        return []
    teacher = record.teacher_metric or {}
    main = record.metric_name
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


def render_card(record: ModelRecord, config: dict | None = None, manifest: dict | None = None):
    """The model card (`huggingface_hub.ModelCard`) of a model folder, or of an export folder
    when `manifest` is given."""
    from huggingface_hub import ModelCard

    config = config or {}
    data = card_data(record, config, manifest)
    sources = RECORD_FILE + (f" and {MANIFEST_FILE}" if manifest else "")
    body = [f"# {data.model_name}", ""]
    body += [f"Made with slimbert. Every figure below is copied from {sources} beside it.", ""]
    body += _task_section(record, config, manifest) + [""]
    if manifest is not None:
        body += _export_section(manifest) + [""]
    if not record.empty:
        body += _making_section(record) + [""]
        body += _data_section(record) + [""]
        body += _metrics_section(record) + [""]
    body += _usage_section(data.library_name, manifest, record.role == _PRETRAINED) + [""]
    versions = (manifest or {}).get("versions") or record.versions or {}
    if versions:
        body += ["## Versions", "", ", ".join(f"{k} {v}" for k, v in versions.items()), ""]
    text = "\n".join(body)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{text}")


def write_card(
    folder: str | Path,
    record: ModelRecord,
    config: dict | None = None,
    manifest: dict | None = None,
) -> Path:
    """Write folder/README.md atomically; `config` defaults to folder/config.json."""
    folder = Path(folder)
    if config is None and (folder / CONFIG_FILE).is_file():
        config = json.loads((folder / CONFIG_FILE).read_text())
    card = render_card(record, config, manifest)
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
