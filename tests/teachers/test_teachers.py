"""Loading a teacher (teachers/load.py); its cached training-set logits are tested in
tests/training/test_logits_cache.py.

Ensembles, boosting and pair augmentation are tested in test_professor.py.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from slimbert.errors import SlimbertError
from slimbert.teachers.load import is_ensemble, load_teacher
from slimbert.training.logits_cache import model_fingerprint


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
