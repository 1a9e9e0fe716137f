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


# Student layer i keeps teacher layer ⌊(i + 1) · T / S⌋ − 1, worked out by hand for every depth
# of a 6- and a 12-layer teacher.
UNIFORM = {
    6: {
        1: [5],
        2: [2, 5],
        3: [1, 3, 5],
        4: [0, 2, 3, 5],
        5: [0, 1, 2, 3, 5],
        6: [0, 1, 2, 3, 4, 5],
    },
    12: {
        1: [11],
        2: [5, 11],
        3: [3, 7, 11],
        4: [2, 5, 8, 11],
        5: [1, 3, 6, 8, 11],
        6: [1, 3, 5, 7, 9, 11],
        7: [0, 2, 4, 5, 7, 9, 11],
        8: [0, 2, 3, 5, 6, 8, 9, 11],
        9: [0, 1, 3, 4, 5, 7, 8, 9, 11],
        10: [0, 1, 2, 3, 5, 6, 7, 8, 9, 11],
        11: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11],
        12: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    },
}


@pytest.mark.parametrize(
    ("teacher", "student"), [(t, s) for t, depths in UNIFORM.items() for s in depths]
)
def test_uniform_map_and_kd_pick_keep_the_hand_computed_layers(teacher, student):
    expected = UNIFORM[teacher][student]
    assert map_layers(teacher, student, "uniform") == expected
    assert pick_layers(teacher, student) == expected


def test_uniform_keeps_the_top_layer_and_never_repeats_one():
    for teacher in range(1, 13):
        for student in range(1, teacher + 1):
            mapped = map_layers(teacher, student, "uniform")
            assert len(mapped) == student
            assert mapped[-1] == teacher - 1
            assert all(a < b for a, b in zip(mapped, mapped[1:], strict=False))


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
    """Every module ends at the layer the uniform map keeps (pinned above for 6 and 12 layers)."""
    for teacher in range(1, 13):
        for student in range(1, teacher + 1):
            modules = split_modules(teacher, student)
            assert [layer for module in modules for layer in module] == list(range(teacher))
            sizes = {len(module) for module in modules}
            assert sizes <= {teacher // student, -(-teacher // student)}
            if teacher in UNIFORM:
                assert [module[-1] for module in modules] == UNIFORM[teacher][student]
