"""BERT-of-Theseus: the replacement schedule, the hybrid's two extremes, what trains, and the
real CLI's first losses on an uneven split."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from slimbert.cli import cli
from slimbert.compress.students import StudentShape, build_student, split_modules
from slimbert.compress.theseus import (
    ReplacementSchedule,
    TheseusConfig,
    hybrid_encoder,
    restore_encoder,
    set_draws,
)
from slimbert.errors import SlimbertError
from slimbert.models import load_classifier, load_model_dir, load_tokenizer


def test_constant_schedule():
    schedule = ReplacementSchedule.from_config(TheseusConfig(replace_rate=0.5), total_steps=100)
    assert [schedule.at(t) for t in (0, 1, 50, 99, 10_000)] == [0.5] * 5


def test_linear_schedule_with_given_k():
    schedule = ReplacementSchedule.from_config(
        TheseusConfig(replace_rate=0.3, schedule="linear", linear_k=0.1), total_steps=100
    )
    got = [schedule.at(t) for t in (0, 1, 2, 6, 7, 8, 50)]
    expected = [0.3, 0.4, 0.5, 0.9, 1.0, 1.0, 1.0]  # min(1, 0.1·t + 0.3)
    assert all(math.isclose(a, b, abs_tol=1e-12) for a, b in zip(got, expected, strict=True))


def test_linear_schedule_default_k_reaches_one_on_the_last_step():
    schedule = ReplacementSchedule.from_config(TheseusConfig.curriculum(), total_steps=8)
    assert math.isclose(schedule.k, 0.1)  # (1 − 0.3) / 7
    assert (
        math.isclose(schedule.at(0), 0.3)
        and math.isclose(schedule.at(6), 0.9)
        and schedule.at(7) == 1.0
    )
    assert all(schedule.at(t) < schedule.at(t + 1) for t in range(7))


def test_config_errors_name_the_flag():
    with pytest.raises(SlimbertError, match="--replace-rate 0"):
        TheseusConfig(replace_rate=0.0)
    with pytest.raises(SlimbertError, match="--schedule 'cosine'"):
        TheseusConfig(schedule="cosine")


def _hybrid(tiny_teacher, layers=3):
    teacher = load_classifier(tiny_teacher).eval()
    modules = split_modules(4, layers)  # [[0], [1], [2, 3]]
    student = build_student(teacher, StudentShape(layers), [m[-1] for m in modules])[0]
    successors = hybrid_encoder(student, teacher, modules)
    batch = dict(
        load_tokenizer(tiny_teacher)(
            ["the movie was good", "bad plot"], padding=True, return_tensors="pt"
        )
    )
    return teacher, student, successors, batch


def test_hybrid_is_the_teacher_at_p0_and_the_student_at_p1(tiny_teacher):
    teacher, student, successors, batch = _hybrid(tiny_teacher)
    hybrid = student.bert.encoder.layer
    generator = torch.Generator().manual_seed(0)
    student.train()
    for module in list(hybrid.modules()):
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # compare numbers, not dropout draws
    with torch.no_grad():
        assert set_draws(hybrid, 0.0, generator) == [False, False, False]
        as_teacher = student(**batch).logits
        assert torch.allclose(
            as_teacher, teacher(**batch).logits, atol=1e-6
        )  # every module is the teacher's
        assert set_draws(hybrid, 1.0, generator) == [True, True, True]
        as_student = student(**batch).logits
        student.eval()
        set_draws(hybrid, 0.0, generator)
        in_eval = student(**batch).logits  # evaluation always runs the successors
    restore_encoder(student, successors)
    with torch.no_grad():
        alone = student(**batch).logits
    assert torch.allclose(as_student, alone, atol=1e-6) and torch.allclose(
        in_eval, alone, atol=1e-6
    )
    assert (as_teacher - alone).abs().max() > 1e-5  # a 3-layer student is not the 4-layer teacher


def test_only_successor_layers_get_gradients(tiny_teacher):
    teacher, student, successors, batch = _hybrid(tiny_teacher)
    student.requires_grad_(
        False
    )  # as stage 1 does; the teacher's layers were frozen by hybrid_encoder
    successors.requires_grad_(True)
    student.train()
    draws = set_draws(student.bert.encoder.layer, 0.5, torch.Generator().manual_seed(1))
    assert draws == [False, True, True]  # pinned: seed 1
    loss = student(**batch, labels=torch.tensor([1, 0])).loss
    loss.backward()
    with_grad = {
        ".".join(name.split(".")[3:5])
        for name, p in student.named_parameters()
        if p.grad is not None
    }
    assert with_grad == {"1.successor", "2.successor"}  # module 0 ran the teacher's layer
    assert sum(p.requires_grad for p in student.parameters()) == sum(
        1 for _ in successors.parameters()
    )
    assert all(p.grad is None for p in teacher.parameters())


# First losses of the real CLI: 4-layer teacher split 4 → 3 as [0] [1] [2 3], linear curriculum
# from b = 0.3 over 3 replacing steps, then 3 fine-tuning steps; seed 0.
PINNED = {
    "replace": [
        {"loss": 0.6888768, "task": 0.6888768, "p": 0.3, "replaced": 1.0},
        {"loss": 0.6931760, "task": 0.6931760, "p": 0.65, "replaced": 3.0},
        {"loss": 0.6953381, "task": 0.6953381, "p": 1.0, "replaced": 3.0},
    ],
    "finetune": [
        {"loss": 0.6932017, "task": 0.6932017},
        {"loss": 0.6912437, "task": 0.6912437},
        {"loss": 0.6890664, "task": 0.6890664},
    ],
}


def test_cli_uneven_split_pins_first_losses(tmp_path, tiny_teacher, sst2_files):
    train, dev = sst2_files
    out = tmp_path / "student"
    args = [
        "compress",
        "theseus",
        "--teacher",
        str(tiny_teacher),
        "--out",
        str(out),
        "--train",
        str(train),
        "--eval",
        str(dev),
        "--layers",
        "3",
        "--schedule",
        "linear",
        "--replace-rate",
        "0.3",
        "--max-steps",
        "3",
        "--batch-size",
        "8",
        "--seed",
        "0",
        "--no-progress",
        "--no-group-by-length",  # pinned figures: random batches
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "slimbert.json").read_text())
    assert meta["schema_version"] == 1  # written through slimbert.record
    assert (
        meta["method"] == "theseus"
        and meta["modules"] == [[0], [1], [2, 3]]
        and meta["layer_map"] == [0, 1, 3]
    )
    assert math.isclose(meta["schedule"]["k"], 0.35) and meta["schedule"]["total_steps"] == 3
    for stage, rows in PINNED.items():
        got = meta["first_losses"][stage]
        assert [row["step"] for row in got] == [1, 2, 3]
        for row, expected in zip(got, rows, strict=True):
            for term, value in expected.items():
                assert math.isclose(row[term], value, rel_tol=1e-4, abs_tol=1e-9), (
                    stage,
                    row["step"],
                    term,
                    row[term],
                    value,
                )
    model, _, _ = load_model_dir(out)
    assert (
        type(model).__name__ == "BertForSequenceClassification"
        and model.config.num_hidden_layers == 3
    )
    assert not any("successor" in key or "predecessor" in key for key in model.state_dict())


def test_cli_init_first_starts_the_successor_from_the_teachers_bottom_layers(
    tmp_path, tiny_teacher, sst2_files
):
    """--init first: successor layer i is teacher layer i (0, 1, 2 of 4), not the top of module
    i (0, 1, 3). One replacing and one fine-tuning step at lr 1e-9 leave the copies where they
    were, to rounding."""
    train, dev = sst2_files
    out = tmp_path / "student"
    args = ["compress", "theseus", "--teacher", tiny_teacher, "--out", out, "--train", train]
    args += ["--eval", dev, "--layers", "3", "--init", "first", "--max-steps", "1"]
    args += ["--lr", "1e-9", "--batch-size", "8", "--seed", "0", "--no-progress"]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "slimbert.json").read_text())
    assert meta["modules"] == [[0], [1], [2, 3]] and meta["layer_map"] == [0, 1, 2]
    teacher = load_classifier(tiny_teacher).state_dict()
    student = load_model_dir(out)[0].state_dict()
    layer = "bert.encoder.layer.{}."
    copied = [key[len(layer.format(0)) :] for key in student if key.startswith(layer.format(0))]
    assert len(copied) == 16  # every tensor of a BERT layer
    for successor in range(3):
        for name in copied:
            torch.testing.assert_close(
                student[layer.format(successor) + name],
                teacher[layer.format(successor) + name],
                rtol=0,
                atol=1e-6,
            )
    # module 2's top, which the default start would have copied, is another layer
    query = "attention.self.query.weight"
    assert (student[layer.format(2) + query] - teacher[layer.format(3) + query]).abs().max() > 1e-2


def test_cli_survives_steps_where_only_the_teacher_ran(tmp_path, tiny_teacher, sst2_files):
    train, dev = sst2_files
    out = tmp_path / "student"
    args = [
        "compress",
        "theseus",
        "--teacher",
        str(tiny_teacher),
        "--out",
        str(out),
        "--train",
        str(train),
        "--eval",
        str(dev),
        "--layers",
        "2",
        "--replace-rate",
        "0.01",
        "--max-steps",
        "2",
        "--batch-size",
        "8",
        "--seed",
        "0",
        "--no-progress",
        "--no-group-by-length",  # pinned figures: random batches
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "slimbert.json").read_text())["first_losses"]["replace"]
    assert [row["replaced"] for row in rows] == [0.0, 0.0]
    assert [row["p"] for row in rows] == [0.01, 0.01]  # --schedule constant: p at every step
    assert all(math.isfinite(row["loss"]) for row in rows)


def test_help_names_the_schedules_and_the_first_layers_baseline():
    output = CliRunner().invoke(cli, ["compress", "theseus", "--help"]).output
    flat = " ".join(output.split())
    assert "compress kd --layers k --layer-map bottom --alpha 0" in flat
    assert "linear: the curriculum p(t) = min(1, k·t + b)" in flat
