"""What `slimbert bench` is asked to time: the config's checks and the targets found in model
and export folders (export folders are faked here: nothing is loaded or timed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slimbert.bench.config import BenchConfig
from slimbert.bench.targets import Target, find_targets
from slimbert.data import Columns
from slimbert.errors import SlimbertError


def fake_export(folder: Path, name: str, manifest: dict, max_positions: int = 64) -> Path:
    """An export folder as `slimbert export` leaves it, with an empty model.onnx."""
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": max_positions}))
    (folder / "slimbert.json").write_text(
        json.dumps({"name": name, "method": "kd", "role": "student"})
    )
    return folder


def find(folders: list[Path], tmp_path: Path, **config) -> list[Target]:
    eval_file = tmp_path / "dev.tsv"
    return find_targets(folders, tmp_path / "out", eval_file, Columns(), BenchConfig(**config))


def test_export_folders_give_one_onnx_target_each_at_their_precision(tmp_path):
    fp32 = fake_export(tmp_path / "kd-fp32", "kd-2L", {"precision": "fp32"})
    int8 = fake_export(
        tmp_path / "kd-int8", "kd-2L", {"optimizations": [{"step": "quantize_dynamic"}]}
    )
    targets = find([fp32, int8], tmp_path)
    assert [(t.runtime, t.precision, t.method, t.role) for t in targets] == [
        ("onnx", "fp32", "kd", "student"),
        ("onnx", "int8", "kd", "student"),
    ]
    # both carry the model's name, so each is named by its folder instead
    assert [t.name for t in targets] == ["kd-fp32", "kd-int8"]
    assert targets[0].config == {"max_position_embeddings": 64}
    one = find([fp32], tmp_path)
    assert [t.name for t in one] == ["kd-2L"]


def test_target_errors_name_the_directory_and_the_fix(tmp_path):
    export = fake_export(tmp_path / "a" / "kd", "kd-2L", {}, max_positions=32)
    twin = fake_export(tmp_path / "b" / "kd", "kd-3L", {})
    with pytest.raises(SlimbertError, match="two --model directories share a name"):
        find([export, twin], tmp_path)
    with pytest.raises(SlimbertError, match=r"--lengths 48: kd-2L takes at most 32 tokens"):
        find([export], tmp_path, lengths=[None, 48])
    assert len(find([export], tmp_path, lengths=[32])) == 1
    with pytest.raises(SlimbertError, match="--model .*missing: no such directory"):
        find([tmp_path / "missing"], tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SlimbertError, match="neither model.safetensors nor model.onnx"):
        find([tmp_path / "empty"], tmp_path)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"batch_sizes": [1, 0]}, r"--batch-sizes \[1, 0\]: give whole numbers ≥ 1"),
        ({"lengths": [None, 3]}, r"--lengths \[None, 3\]: give 'own' or whole numbers ≥ 4"),
        ({"thread_counts": [2, 0]}, r"--threads \[2, 0\]: give whole numbers ≥ 1"),
        ({"repeats": 0}, "--repeats 0: give at least 1"),
        ({"runtimes": ("tensorrt",)}, r"--runtime \['tensorrt'\]: choose from pytorch, onnx"),
        ({"max_f1_drop": -1.0}, "--max-f1-drop -1.0: give points ≥ 0"),
        ({"slo": "fast"}, "--slo 'fast': write a statistic"),
    ],
)
def test_config_checks_each_value_a_user_gives(fields, message):
    with pytest.raises(SlimbertError, match=message):
        BenchConfig(**fields).check()


def test_thread_sweep_defaults_to_the_single_thread_count():
    assert BenchConfig(threads=3).threads_to_sweep() == [3]
    assert BenchConfig(threads=3, thread_counts=[1, 2]).threads_to_sweep() == [1, 2]
    BenchConfig(slo="p99<=10ms", max_f1_drop=0.0).check()  # valid values pass silently
