"""Layer maps (uniform, top, bottom, explicit, uneven) and the Theseus module split."""

from __future__ import annotations

import pytest

from slimbert.compress.students import map_layers, pick_layers, split_modules
from slimbert.errors import SlimbertError


@pytest.mark.parametrize(
    ("strategy", "teacher", "student", "expected"),
    [
        ("uniform", 6, 3, [1, 3, 5]),
        ("uniform", 12, 4, [2, 5, 8, 11]),  # TinyBERT-4's g(m) = 3m
        ("uniform", 6, 4, [0, 2, 3, 5]),  # uneven: steps of 2, 1, 2
        ("uniform", 5, 2, [1, 4]),
        ("uniform", 6, 6, [0, 1, 2, 3, 4, 5]),
        ("top", 6, 3, [3, 4, 5]),
        ("top", 6, 4, [2, 3, 4, 5]),
        ("bottom", 6, 3, [0, 1, 2]),
        ("bottom", 5, 2, [0, 1]),
        ("0:0,1:2,2:5", 6, 3, [0, 2, 5]),
        ("2:5, 0:0, 1:2", 6, 3, [0, 2, 5]),  # pairs in any order
        ("1,3,5", 6, 3, [1, 3, 5]),
    ],
)
def test_layer_maps(strategy, teacher, student, expected):
    assert map_layers(teacher, student, strategy) == expected


def test_uniform_is_the_kd_choice_for_every_depth():
    for teacher in range(1, 13):
        for student in range(1, teacher + 1):
            mapped = map_layers(teacher, student, "uniform")
            assert mapped == pick_layers(teacher, student)
            assert mapped[-1] == teacher - 1 and mapped == sorted(set(mapped))


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        ("0:1,0:3,1:5", "appears twice"),
        ("0:1,1:3", "cover student layers 0..2"),
        ("1,3", "names 2 teacher layers"),
        ("1,3,6", "run from 0 to 5"),
        ("middle", "not a layer map"),
    ],
)
def test_bad_layer_maps_name_the_fix(strategy, message):
    with pytest.raises(SlimbertError, match=message):
        map_layers(6, 3, strategy)


def test_student_deeper_than_teacher_is_refused():
    with pytest.raises(SlimbertError, match="between 1 and 4"):
        map_layers(4, 5, "top")


@pytest.mark.parametrize(
    ("teacher", "student", "expected"),
    [
        (6, 3, [[0, 1], [2, 3], [4, 5]]),
        (6, 2, [[0, 1, 2], [3, 4, 5]]),
        (6, 4, [[0], [1, 2], [3], [4, 5]]),  # uneven: 6 = 1·4 + 2, sizes 1, 2, 1, 2
        (5, 2, [[0, 1], [2, 3, 4]]),
        (4, 3, [[0], [1], [2, 3]]),
        (12, 5, [[0, 1], [2, 3], [4, 5, 6], [7, 8], [9, 10, 11]]),
        (3, 3, [[0], [1], [2]]),
    ],
)
def test_theseus_split(teacher, student, expected):
    assert split_modules(teacher, student) == expected


def test_theseus_split_covers_the_teacher_once_and_ends_where_kd_picks():
    for teacher in range(1, 13):
        for student in range(1, teacher + 1):
            modules = split_modules(teacher, student)
            assert [layer for module in modules for layer in module] == list(range(teacher))
            sizes = {len(module) for module in modules}
            assert sizes <= {teacher // student, -(-teacher // student)}
            assert [module[-1] for module in modules] == pick_layers(teacher, student)
