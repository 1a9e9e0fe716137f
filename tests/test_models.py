"""Student construction from the teacher's own layers, checked weight by weight."""

from __future__ import annotations

import pytest
import torch

from slimbert.compress.students import StudentShape, build_student, pick_layers
from slimbert.errors import SlimbertError
from slimbert.models import load_classifier, resolve_base


@pytest.mark.parametrize(
    ("teacher", "student", "expected"),
    [
        (6, 3, [1, 3, 5]),
        (6, 2, [2, 5]),
        (6, 1, [5]),
        (12, 6, [1, 3, 5, 7, 9, 11]),
        (6, 4, [0, 2, 3, 5]),
        (4, 4, [0, 1, 2, 3]),
    ],
)
def test_pick_layers(teacher, student, expected):
    assert pick_layers(teacher, student) == expected


def test_pick_layers_rejects_impossible_depth():
    with pytest.raises(SlimbertError, match="between 1 and 4"):
        pick_layers(4, 5)


def test_student_copies_teacher_layers_weight_by_weight(tiny_teacher):
    teacher = load_classifier(tiny_teacher)
    student = build_student(
        teacher, StudentShape(2), pick_layers(teacher.config.num_hidden_layers, 2), seed=None
    )[0]
    assert student.config.num_hidden_layers == 2
    assert student.config.slimbert_layer_map == [1, 3]
    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    for key, value in student_state.items():
        if ".encoder.layer." in key:
            prefix, rest = key.split(".encoder.layer.")
            index, tail = rest.split(".", 1)
            source = f"{prefix}.encoder.layer.{[1, 3][int(index)]}.{tail}"
        else:
            source = key
        assert torch.equal(value, teacher_state[source]), key
    assert sum(p.numel() for p in student.parameters()) < sum(
        p.numel() for p in teacher.parameters()
    )


def test_base_without_head_gets_labels(tiny_base):
    from slimbert.data import LabelMap

    model = load_classifier(tiny_base, LabelMap.from_labels(["neg", "neu", "pos"]))
    assert model.config.num_labels == 3
    assert model.config.id2label == {0: "neg", 1: "neu", 2: "pos"}


def test_resolve_base_errors(tmp_path):
    with pytest.raises(SlimbertError, match="not a model directory"):
        resolve_base(tmp_path)
