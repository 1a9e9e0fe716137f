"""Which models a benchmark times: each `--model` directory becomes one or two `Target`s.

    HF model directory (model.safetensors)   -> pytorch target, and an onnx target exported
                                                 and validated into OUT/exports/NAME
    export directory   (model.onnx)          -> onnx target only, at the export's precision
    Hub name (org/name, in the local cache)  -> as its cached HF model directory, named NAME

An export is reused while its recorded weights hash matches the model's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from slimbert.bench.config import BenchConfig
from slimbert.bench.flops import precision_of
from slimbert.data import Columns
from slimbert.errors import SlimbertError
from slimbert.export.onnx import export
from slimbert.export.validate import Tolerances
from slimbert.files import CONFIG_FILE, MANIFEST_FILE, ONNX_FILE, RECORD_FILE
from slimbert.hub import resolve_model, weight_files
from slimbert.record import read_record


@dataclass
class Target:
    """One thing to time: a model directory on a runtime."""

    name: str
    path: Path  # HF model dir (pytorch) or export dir (onnx)
    runtime: str
    method: str
    role: str
    precision: str = "fp32"
    config: dict = field(default_factory=dict)  # the model's config.json


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _targets_for(
    model_dir: Path, out: Path, eval_path: Path, columns: Columns, config: BenchConfig
) -> list[Target]:
    """An HF directory gives a PyTorch target and, exported and validated, an ONNX target;
    an export folder (model.onnx) gives an ONNX target only."""
    given = model_dir
    if not model_dir.is_dir():  # a Hub name, read from the local cache (one line if absent)
        model_dir = resolve_model(str(model_dir), "--model")
    record = read_record(model_dir)
    name = record.details.get("name") or given.name  # a hand-written record may name it
    method = record.method or "model"
    role = record.role or "student"
    if (model_dir / ONNX_FILE).is_file():
        manifest = _read_json(model_dir / MANIFEST_FILE)
        config_json = _read_json(model_dir / CONFIG_FILE)
        return [Target(name, model_dir, "onnx", method, role, precision_of(manifest), config_json)]
    if not weight_files(model_dir):
        raise SlimbertError(
            f"--model {model_dir}: neither model.safetensors nor {ONNX_FILE}; "
            "give a model or export directory"
        )
    targets = []
    if "pytorch" in config.runtimes:
        config_json = _read_json(model_dir / CONFIG_FILE)
        targets += [
            Target(name, model_dir, "pytorch", method, role, precision, config_json)
            for precision in config.torch_precisions
        ]
    if "onnx" in config.runtimes:
        export_dir = out / "exports" / name
        if (
            not (export_dir / MANIFEST_FILE).is_file()
            or not (export_dir / RECORD_FILE).is_file()
            or read_record(export_dir).weights_sha256 != record.weights_sha256
        ):
            export(
                model_dir,
                eval_path,
                export_dir,
                columns,
                config.max_length,
                Tolerances(),
                provider="cpu",
            )
        manifest = json.loads((export_dir / MANIFEST_FILE).read_text())
        config_json = _read_json(export_dir / CONFIG_FILE)
        targets.append(
            Target(name, export_dir, "onnx", method, role, precision_of(manifest), config_json)
        )
    return targets


def _check_lengths(targets: list[Target], lengths: list[int | None]) -> None:
    fixed = [n for n in lengths if n is not None]
    for target in targets:
        limit = target.config.get("max_position_embeddings")
        if fixed and isinstance(limit, int) and max(fixed) > limit:
            raise SlimbertError(
                f"--lengths {max(fixed)}: {target.name} takes at most {limit} tokens; "
                f"give lengths up to {limit}"
            )


def _distinct_names(targets: list[Target]) -> None:
    """Exports of one model (fp32, int8, fused) carry its metadata name; where two targets on
    the same runtime share a name, each is named by its folder instead (folders are distinct).
    One model's PyTorch rows at several precisions (--torch-precision) keep its name."""

    def key(t: Target) -> tuple[str, str, str]:
        return (t.name, t.runtime, t.precision if t.runtime == "pytorch" else "")

    counts: dict[tuple[str, str, str], int] = {}
    for target in targets:
        counts[key(target)] = counts.get(key(target), 0) + 1
    for target in targets:
        if counts[key(target)] > 1:
            target.name = target.path.name
    named = [key(t) for t in targets]
    for name, runtime, precision in named:
        if named.count((name, runtime, precision)) > 1:
            raise SlimbertError(
                f"two --model directories give {runtime} models named {name!r}; "
                "rename one directory"
            )


def find_targets(
    model_dirs: list[Path], out: Path, eval_path: Path, columns: Columns, config: BenchConfig
) -> list[Target]:
    """Every target of every model directory, in the order given, exporting HF directories to
    ONNX under `out` where the ONNX runtime is wanted; raises SlimbertError on directories
    that share a name or on a fixed length longer than a model takes."""
    names = [Path(m).name for m in model_dirs]
    if len(set(names)) != len(names):
        raise SlimbertError(
            "two --model directories share a name; give each model a distinct directory name"
        )
    targets: list[Target] = []
    for model_dir in model_dirs:
        targets += _targets_for(Path(model_dir), out, eval_path, columns, config)
    _check_lengths(targets, config.lengths)
    _distinct_names(targets)
    return targets
