"""Loading a teacher (teachers/load.py) and its cached training-set logits
(training/logits_cache.py).

Ensembles, boosting and pair augmentation are tested in test_professor.py.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from slimbert.batches import DataSpec, make_loader, predict_logits, prepare
from slimbert.errors import SlimbertError
from slimbert.teachers.load import is_ensemble, load_teacher
from slimbert.training import logits_cache as teacher_cache
from slimbert.training.logits_cache import cache_dir, model_fingerprint, teacher_logits


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_a_classifier_directory_is_its_own_layers(tiny_teacher):
    teacher = load_teacher(tiny_teacher)
    assert teacher.model is teacher.layers and not teacher.is_ensemble
    assert teacher.members == 1 and teacher.path == tiny_teacher
    assert not teacher.model.training  # loaded for inference
    assert teacher.task == "classification"
    assert teacher.label_map.id2label == {0: "0", 1: "1"}
    assert teacher.tokenizer("good movie")["input_ids"] == [2, 5, 23, 3]
    assert not is_ensemble(tiny_teacher)


def test_fingerprint_hashes_the_config_and_the_weights(tiny_teacher):
    def sha(name: str) -> str:
        return hashlib.sha256((tiny_teacher / name).read_bytes()).hexdigest()

    expected = hashlib.sha256((sha("config.json") + sha("model.safetensors")).encode()).hexdigest()
    assert model_fingerprint(tiny_teacher) == expected
    assert load_teacher(tiny_teacher).fingerprint == expected


@pytest.mark.parametrize("make", ["missing", "file"])
def test_a_path_that_is_not_a_directory_is_one_clear_error(tmp_path, make):
    path = tmp_path / "teacher"
    if make == "file":
        path.write_text("not a model")
    with pytest.raises(SlimbertError) as excinfo:
        load_teacher(path)
    message = one_line_error(excinfo)
    assert message.startswith(f"--teacher {path}: no such directory")
    assert "train-teacher or professor boost" in message


def test_a_directory_without_a_model_is_one_clear_error(tmp_path):
    with pytest.raises(SlimbertError) as excinfo:
        load_teacher(tmp_path)
    assert "not a model directory (no config.json)" in one_line_error(excinfo)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "unreadable"),
        (json.dumps({"format": "slimbert-ensemble/0"}), "format 'slimbert-ensemble/0'"),
    ],
)
def test_a_broken_ensemble_file_asks_for_a_rebuild(tmp_path, content, message):
    (tmp_path / "ensemble.json").write_text(content)
    assert is_ensemble(tmp_path)
    with pytest.raises(SlimbertError) as excinfo:
        load_teacher(tmp_path)
    text = one_line_error(excinfo)
    assert message in text and "professor boost" in text


@pytest.fixture
def task_data(tiny_teacher, sst2_files):
    teacher = load_teacher(tiny_teacher)
    train, dev = sst2_files

    def at(max_length: int):
        return prepare(DataSpec(train, dev, max_length=max_length), teacher.tokenizer)

    return teacher, at


def cached_files():
    return sorted((cache_dir() / "logits").glob("*.safetensors"))


def test_logits_are_computed_once_then_read_back(task_data, monkeypatch):
    teacher, at = task_data
    data = at(16)
    first = teacher_logits(teacher.model, teacher.path, data)  # (N, C)
    assert first.shape == (64, 2) and len(cached_files()) == 1
    loader = make_loader(data.train_set, 64, shuffle=False)
    np.testing.assert_allclose(first.numpy(), predict_logits(teacher.model, loader), atol=1e-6)

    def must_not_run(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(teacher_cache, "predict_logits", must_not_run)
    again = teacher_logits(teacher.model, teacher.path, data)
    assert torch.equal(again, first)
    assert len(cached_files()) == 1


def test_logits_are_computed_on_the_training_device_and_the_teacher_goes_back(
    task_data, monkeypatch
):
    # CI has no GPU, so the moves are recorded instead of made: the pass runs where it is
    # asked to (a GPU run's training device), and the teacher returns to where it was
    teacher, at = task_data
    moves, passes = [], []
    monkeypatch.setattr(teacher.model, "to", lambda where: moves.append(where) or teacher.model)

    def record(model, loader, device="cpu", progress=False):
        passes.append(device)
        return np.zeros((len(loader.dataset), 2), dtype=np.float32)

    monkeypatch.setattr(teacher_cache, "predict_logits", record)
    logits = teacher_logits(teacher.model, teacher.path, at(16), device=torch.device("cuda", 0))
    assert logits.shape == (64, 2)
    assert passes == [torch.device("cuda", 0)]
    assert moves == [torch.device("cuda", 0), torch.device("cpu")]


def test_the_cache_key_covers_max_length_and_the_fingerprint(task_data):
    teacher, at = task_data
    long = teacher_logits(teacher.model, teacher.path, at(16))
    short = teacher_logits(teacher.model, teacher.path, at(4))
    assert len(cached_files()) == 2
    # 4 tokens cut every sentence to [CLS] w w [SEP]: other inputs, other logits
    assert not torch.allclose(long, short)
    teacher_logits(teacher.model, teacher.path, at(16), fingerprint="another teacher")
    assert len(cached_files()) == 3
