"""MiniLMv2 relation distillation: the relation loss against hand values, masking, relation
heads, width freedom, and the real CLI's first losses with a narrower student."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from slimbert.cli import cli
from slimbert.compress.relations import (
    attention_term,
    relation_kl,
    relation_terms,
    resolve_teacher_layer,
)
from slimbert.errors import SlimbertError
from slimbert.models import load_classifier, load_model_dir, load_tokenizer
from slimbert.training.capture import AttentionParts, TransformerOutputs, forward_internals
from slimbert.training.losses import attention_kl


def _softmax(values):
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def _kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))


def test_relation_loss_against_hand_computation():
    # student width 2, teacher width 4, one relation head, two tokens
    student = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # X·Xᵀ/√2 = [[.707, 0], [0, .707]]
    teacher = torch.tensor(
        [[[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]]]
    )  # X·Xᵀ/√4 = [[2, 1], [1, 1]]
    r = 1 / math.sqrt(2)
    expected = (
        _kl(_softmax([2, 1]), _softmax([r, 0])) + _kl(_softmax([1, 1]), _softmax([0, r]))
    ) / 2
    got = relation_kl(student, teacher, torch.tensor([[1, 1]]), relation_heads=1)
    assert math.isclose(float(got), expected, rel_tol=1e-6)
    assert math.isclose(expected, 0.0350202, rel_tol=1e-5)  # pinned
    assert float(relation_kl(teacher, teacher, torch.tensor([[1, 1]]), 1)) < 1e-7


def test_padded_tokens_change_nothing():
    student = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [7.0, -3.0]]])
    teacher = torch.tensor([[[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0], [0.0, 5.0, 2.0, 9.0]]])
    padded = relation_kl(student, teacher, torch.tensor([[1, 1, 0]]), relation_heads=1)
    unpadded = relation_kl(student[:, :2], teacher[:, :2], torch.tensor([[1, 1]]), relation_heads=1)
    assert math.isclose(float(padded), float(unpadded), rel_tol=1e-6)


def test_relation_heads_split_both_widths_the_same_way():
    torch.manual_seed(0)
    student, teacher, mask = (
        torch.randn(2, 5, 6),
        torch.randn(2, 5, 12),
        torch.tensor([[1] * 5, [1, 1, 1, 0, 0]]),
    )
    two = relation_kl(student, teacher, mask, relation_heads=2)
    halves = [
        relation_kl(student[..., i * 3 : (i + 1) * 3], teacher[..., i * 6 : (i + 1) * 6], mask, 1)
        for i in range(2)
    ]
    assert math.isclose(float(two), sum(float(h) for h in halves) / 2, rel_tol=1e-5)
    with pytest.raises(
        SlimbertError, match="--relation-heads 4 does not divide the student's attention width 6"
    ):
        relation_kl(student, teacher, mask, relation_heads=4)


def test_terms_read_the_students_last_layer_and_the_chosen_teacher_layer():
    torch.manual_seed(1)

    def outputs(widths):
        parts = tuple(
            AttentionParts(
                torch.randn(1, 3, w), torch.randn(1, 3, w), torch.randn(1, 3, w), heads=2
            )
            for w in widths
        )
        return TransformerOutputs(
            logits=torch.zeros(1, 2),
            attention_mask=torch.ones(1, 3, dtype=torch.long),
            attention_parts=parts,
        )

    student, teacher = outputs([4, 4]), outputs([8, 8, 8])
    terms = relation_terms(teacher_layer=1, relation_heads=2)
    assert [t.name for t in terms] == ["qq", "kk", "vv"]
    for term, kind in zip(terms, ("query", "key", "value"), strict=True):
        expected = relation_kl(
            getattr(student.attention_parts[-1], kind),
            getattr(teacher.attention_parts[1], kind),
            student.attention_mask,
            2,
        )
        assert math.isclose(float(term.fn(student, teacher, {})), float(expected), rel_tol=1e-6)
    assert resolve_teacher_layer(-1, 6) == 5 and resolve_teacher_layer(2, 6) == 2
    with pytest.raises(SlimbertError, match="--teacher-layer 6"):
        resolve_teacher_layer(6, 6)


def test_v1_attention_term_is_the_kl_of_the_models_own_attention_maps(tiny_teacher, sharp_teacher):
    """MiniLM's attention transfer, read from the rebuilt scores, equals the KL between the
    attention probabilities the models themselves return (padding in the batch)."""
    student, teacher = (load_classifier(folder).eval() for folder in (tiny_teacher, sharp_teacher))
    encoded = load_tokenizer(sharp_teacher)(
        ["the movie was very good", "bad"], padding=True, return_tensors="pt"
    )
    batch = {key: encoded[key] for key in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        s, t = (forward_internals(m, batch, attentions=True) for m in (student, teacher))
    got = attention_term(teacher_layer=2)(s, t, batch)
    expected = attention_kl([(3, 2)])(s, t, batch)  # student's last layer (3) against layer 2
    assert float(expected) > 0.05  # the sharp teacher's maps are far from the random student's
    assert math.isclose(float(got), float(expected), rel_tol=1e-4)
    terms = relation_terms(teacher_layer=2, relation_heads=4, relations="v1")
    assert [term.name for term in terms] == ["attention", "vv"]


# First losses of the real CLI: teacher layer 2 of the sharp 4-layer, hidden-32, 4-head teacher into
# the last layer of a 2-layer, hidden-16, 2-head student through 4 relation heads; seed 0.
PINNED = {
    "relation": [
        {"loss": 1.159931, "qq": 0.3835451, "kk": 0.3514282, "vv": 0.4249573},
        {"loss": 1.272501, "qq": 0.4006775, "kk": 0.4041019, "vv": 0.4677219},
    ],
    "prediction": [
        {"loss": 0.3466070, "soft": 6.093166e-5, "hard": 0.6931530},
        {"loss": 0.3470898, "soft": 5.667191e-5, "hard": 0.6941229},
    ],
}


def test_cli_narrow_student_pins_first_losses(tmp_path, sharp_teacher, sst2_files):
    train, dev = sst2_files
    out = tmp_path / "student"
    args = [
        "compress",
        "minilm",
        "--teacher",
        str(sharp_teacher),
        "--out",
        str(out),
        "--train",
        str(train),
        "--eval",
        str(dev),
        "--layers",
        "2",
        "--hidden-size",
        "16",
        "--heads",
        "2",
        "--ffn-size",
        "32",
        "--relation-heads",
        "4",
        "--teacher-layer",
        "2",
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
    meta = json.loads((out / "slimbert.json").read_text())
    assert meta["schema_version"] == 1  # written through slimbert.record
    assert meta["method"] == "minilm" and meta["relation"] == {
        "relations": "v2",
        "teacher_layer": 2,
        "student_layer": 1,
        "relation_heads": 4,
    }
    for stage, rows in PINNED.items():
        got = meta["first_losses"][stage]
        assert [row["step"] for row in got] == [1, 2]
        for row, expected in zip(got, rows, strict=True):
            for term, value in expected.items():
                assert math.isclose(row[term], value, rel_tol=1e-4, abs_tol=1e-7), (
                    stage,
                    row["step"],
                    term,
                    row[term],
                    value,
                )
    model, _, _ = load_model_dir(out)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert (
        model.config.hidden_size,
        model.config.num_attention_heads,
        model.config.num_hidden_layers,
    ) == (16, 2, 2)


def _minilm_cli(teacher, files, out, *extra):
    train, dev = files
    argv = ["compress", "minilm", "--teacher", str(teacher), "--out", str(out)]
    argv += ["--train", str(train), "--eval", str(dev), "--layers", "2", "--max-steps", "2"]
    argv += ["--batch-size", "8", "--seed", "0", "--no-progress", *extra]
    return CliRunner().invoke(cli, argv)


def test_cli_v1_distils_attention_and_values_then_refuses_other_head_counts(
    tmp_path, sharp_teacher, sst2_files
):
    result = _minilm_cli(sharp_teacher, sst2_files, tmp_path / "v1", "--relations", "v1")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "v1" / "slimbert.json").read_text())
    assert meta["relation"]["relations"] == "v1"
    first = meta["first_losses"]["relation"][0]
    assert set(first) >= {"attention", "vv"} and "qq" not in first
    assert first["attention"] > 0 and first["vv"] > 0
    assert math.isclose(first["loss"], first["attention"] + first["vv"], rel_tol=1e-5)
    narrow = _minilm_cli(
        sharp_teacher, sst2_files, tmp_path / "narrow", "--relations", "v1", "--heads", "2"
    )
    assert narrow.exit_code != 0
    message = narrow.output.strip().splitlines()[-1]
    assert "--relations v1 matches each attention head's distribution" in message
    assert "teacher's 4 heads (it has 2)" in message
    assert not (tmp_path / "narrow").exists()


@pytest.mark.parametrize(
    ("teacher_heads", "teacher_width", "student_width", "heads"),
    [
        (12, 384, 384, 12),  # the teacher's count where it divides both
        (12, 384, 256, 8),  # gcd 128: its largest divisor up to 12
        (12, 768, 312, 12),  # gcd 24: 12 divides it
        (12, 384, 100, 4),  # gcd 4
        (4, 32, 24, 4),
    ],
)
def test_the_default_relation_heads_divide_both_widths(
    teacher_heads, teacher_width, student_width, heads
):
    from slimbert.compress.relations import default_relation_heads

    got = default_relation_heads(teacher_heads, teacher_width, student_width)
    assert got == heads
    assert teacher_width % got == 0 and student_width % got == 0


def test_a_student_width_the_teachers_heads_do_not_divide_trains_by_default(
    tmp_path, sharp_teacher, sst2_files
):
    """An 18-wide student of the 32-wide, 4-head teacher: no --relation-heads, and the run
    takes the largest common divisor of both widths below 4 (2) instead of refusing."""
    train, dev = sst2_files
    out = tmp_path / "student"
    args = ["compress", "minilm", "--teacher", str(sharp_teacher), "--out", str(out)]
    args += ["--train", str(train), "--eval", str(dev), "--layers", "1", "--hidden-size", "18"]
    args += ["--heads", "3", "--ffn-size", "36", "--max-steps", "1", "--batch-size", "8"]
    result = CliRunner().invoke(cli, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "slimbert.json").read_text())["relation"]["relation_heads"] == 2
