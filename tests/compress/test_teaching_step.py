"""Joint teacher–student steps: the alternating update moves the teacher on its own CE first,
then the student reads the moved teacher's logits (with or without a gradient path back), and
the summed update stays one step; checked against an AdamW step and losses computed here."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from slimbert.cli import cli
from slimbert.compress.teaching import TeachingConfig, loss_terms
from slimbert.compress.teaching_step import SoftTargets, TeacherStep, batch_step
from slimbert.data import LabelMap
from slimbert.errors import SlimbertError
from slimbert.models import load_model_dir
from slimbert.networks.configs import TextCNNConfig
from slimbert.networks.files import build_network
from slimbert.training.config import TrainConfig

LR = 1e-2
# no warm-up (the first step moves at the peak rate), no decay, no clipping: one AdamW step from
# zero moments moves every weight by lr · g / (|g| + eps), which the test recomputes
PLAIN = TrainConfig(warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=0.0)


def _setup(tiny_teacher):
    teacher, tokenizer, _ = load_model_dir(tiny_teacher)  # a private copy: it is trained here
    torch.manual_seed(0)
    student = build_network(
        TextCNNConfig(embedding_dim=16, filters=4, dropout=0.0),
        teacher,
        tokenizer,
        LabelMap({0: "0", 1: "1"}),
        "classification",
        False,
    )
    texts = ["good great movie", "awful boring plot", "the film was fine", "sad and ugly"]
    batch = dict(tokenizer(texts, padding=True, return_tensors="pt"))
    batch["labels"], batch["idx"] = torch.tensor([1, 0, 1, 0]), torch.arange(4)
    return teacher, student, batch


def _inputs(batch):
    return {k: v for k, v in batch.items() if k not in ("labels", "idx")}


def _soft(student_logits, teacher_logits):  # T = 1: KL(teacher ‖ student), mean over rows
    t, s = F.log_softmax(teacher_logits, -1), F.log_softmax(student_logits, -1)
    return float((t.exp() * (t - s)).sum(-1).mean())


def _watch(student, teacher):
    """The teacher's classifier weight at the moment the student's forward starts."""
    seen = []
    student.register_forward_pre_hook(
        lambda module, args: seen.append(teacher.classifier.weight.detach().clone())
    )
    return seen


@pytest.mark.parametrize("isolated", [True, False])
def test_alternating_moves_the_teacher_then_the_student_reads_its_new_logits(
    tiny_teacher, isolated
):
    teacher, student, batch = _setup(tiny_teacher)
    teacher.train()  # the tiny teacher has no dropout: train-mode logits are deterministic
    before = copy.deepcopy(teacher)
    old_logits = before(**_inputs(batch)).logits  # (B, C)
    teacher_ce = F.cross_entropy(old_logits, batch["labels"])
    teacher_ce.backward()  # the gradient of the teacher's own CE, on the copy
    old_logits, teacher_ce = old_logits.detach(), float(teacher_ce.detach())
    with torch.no_grad():
        student_logits = student.eval()(**_inputs(batch)).logits  # dropout 0: as in training
    seen = _watch(student, teacher)

    soft_only = loss_terms(TeachingConfig(alpha=1.0, temperature=1.0))
    teacher_step = TeacherStep(teacher, LR, PLAIN, total_steps=10)
    step = batch_step(soft_only, SoftTargets([None], [1.0]), teacher, isolated, 0.0, teacher_step)
    loss, logged = step(student.train(), batch)

    # 1. the teacher stepped on its own CE alone: one AdamW step, lr · g / (|g| + eps)
    assert logged["teacher_hard"] == pytest.approx(teacher_ce, rel=1e-6)
    for (name, moved), (_, old) in zip(
        teacher.named_parameters(), before.named_parameters(), strict=True
    ):
        expected = old.detach() - LR * old.grad / (old.grad.abs() + 1e-8)
        torch.testing.assert_close(moved.detach(), expected, rtol=0, atol=2e-6, msg=name)
    # 2. it had moved before the student's forward ran, and nothing moved it after
    assert len(seen) == 1
    assert float((seen[0] - before.classifier.weight.detach()).abs().max()) == pytest.approx(
        LR, rel=1e-3
    )
    assert torch.equal(seen[0], teacher.classifier.weight.detach())
    # 3. the student's soft loss reads the moved teacher's logits, not the ones it stepped on
    with torch.no_grad():
        new_logits = teacher(**_inputs(batch)).logits
    assert logged["soft"] == pytest.approx(_soft(student_logits, new_logits), rel=1e-5)
    assert abs(logged["soft"] - _soft(student_logits, old_logits)) > 1e-3
    assert float(loss.detach()) == pytest.approx(logged["soft"], rel=1e-6)  # no teacher CE in it
    # isolation: the student's loss reaches the teacher's weights only when not isolated
    loss.backward()
    teacher_grads = [p.grad for p in teacher.parameters()]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    if isolated:
        assert all(g is None for g in teacher_grads)
    else:
        assert sum(float(g.abs().sum()) for g in teacher_grads if g is not None) > 0


def test_summed_reads_the_teacher_before_any_step_and_adds_its_ce(tiny_teacher):
    teacher, student, batch = _setup(tiny_teacher)
    teacher.train()
    with torch.no_grad():
        old_logits = teacher(**_inputs(batch)).logits
        student_logits = student.eval()(**_inputs(batch)).logits
    seen = _watch(student, teacher)
    soft_only = loss_terms(TeachingConfig(alpha=1.0, temperature=1.0))
    step = batch_step(soft_only, SoftTargets([None], [1.0]), teacher, True)
    loss, logged = step(student.train(), batch)
    assert torch.equal(seen[0], teacher.classifier.weight.detach())  # nothing stepped yet
    assert logged["soft"] == pytest.approx(_soft(student_logits, old_logits), rel=1e-5)
    teacher_ce = float(F.cross_entropy(old_logits, batch["labels"]))
    assert logged["teacher_hard"] == pytest.approx(teacher_ce, rel=1e-6)
    assert float(loss.detach()) == pytest.approx(logged["soft"] + teacher_ce, rel=1e-6)


def test_joint_update_refusals_are_one_line():
    with pytest.raises(SlimbertError, match="add --joint or drop it"):
        TeachingConfig(joint_update="alternating").check(1)
    alternating = TeachingConfig(joint=True, joint_update="alternating")
    alternating.check(1, TrainConfig())  # the defaults are fine
    for train, why in [
        (TrainConfig(grad_accum=2), "--grad-accum > 1"),
        (TrainConfig(resume=True), "--resume"),
        (TrainConfig(mixed_precision="fp16"), "--mixed-precision fp16"),
    ]:
        with pytest.raises(SlimbertError, match="^--joint-update alternating cannot run with") as e:
            alternating.check(1, train)
        assert why in str(e.value) and "\n" not in str(e.value)


# First losses of the real CLI, seed 0, textcnn student, teacher lr 1e-3, 3 steps of 8 rows.
# loss is the student's alone (alpha 0.5 on soft and hard); teacher_hard the CE the teacher
# stepped on.
PINNED_ALTERNATING_ISOLATED = [
    {"loss": 0.3435493, "soft": 0.0498180, "hard": 0.6372806, "teacher_hard": 0.6889234},
    {"loss": 0.5110146, "soft": 0.1316303, "hard": 0.8903989, "teacher_hard": 0.6934984},
    {"loss": 0.5182060, "soft": 0.0728528, "hard": 0.9635593, "teacher_hard": 0.7021800},
]


def _textcnn(tiny_teacher, sst2_files, out, *flags):
    train, dev = sst2_files
    argv = ["compress", "textcnn", "--teacher", str(tiny_teacher), "--train", str(train)]
    argv += ["--eval", str(dev), "--embedding-dim", "16", "--filters", "4", "--max-length", "32"]
    argv += ["--batch-size", "8", "--no-progress", "--no-group-by-length", "--seed", "0"]
    argv += ["--patience", "0", "--max-steps", "3", "--mixed-precision", "no"]
    argv += ["--joint", "--teacher-lr", "1e-3", "--out", str(out), *flags]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    return json.loads((out / "slimbert.json").read_text())


def test_cli_schemes_are_distinct(tiny_teacher, sst2_files, tmp_path):
    runs = {
        name: _textcnn(tiny_teacher, sst2_files, tmp_path / name, *flags)
        for name, flags in {
            "summed": ["--isolated"],
            "alternating": ["--joint-update", "alternating", "--isolated"],
            "alternating-coupled": ["--joint-update", "alternating", "--not-isolated"],
        }.items()
    }
    assert [m["teaching"]["mode"] for m in runs.values()] == [
        "joint-isolated",
        "alternating-isolated",
        "alternating-not-isolated",
    ]
    assert runs["alternating"]["teaching"]["joint_update"] == "alternating"
    summed, alternating, coupled = (m["first_losses"] for m in runs.values())
    # step 1: the same teacher CE (nothing has moved), but the alternating student reads the
    # teacher after its step, the summed one before it
    assert summed[0]["teacher_hard"] == pytest.approx(alternating[0]["teacher_hard"], rel=1e-6)
    assert abs(summed[0]["soft"] - alternating[0]["soft"]) > 1e-4
    # isolation changes nothing the first student reads; by step 3 the student's pull has moved
    # the not-isolated teacher's CE
    assert coupled[0]["soft"] == pytest.approx(alternating[0]["soft"], rel=1e-6)
    assert abs(coupled[2]["teacher_hard"] - alternating[2]["teacher_hard"]) > 1e-3
    for row, pinned in zip(alternating, PINNED_ALTERNATING_ISOLATED, strict=True):
        for term, value in pinned.items():
            assert row[term] == pytest.approx(value, rel=1e-4), (row["step"], term)


def test_textcnn_is_compared_with_the_previous_model(tiny_teacher, sst2_files, tmp_path):
    """Scheme 5's check: the previous model here is the teacher itself, so its figures must be
    the teacher's, and the counts must add up on the 24 dev rows."""
    train, dev = sst2_files
    out = tmp_path / "textcnn"
    argv = ["compress", "textcnn", "--teacher", str(tiny_teacher), "--train", str(train)]
    argv += ["--eval", str(dev), "--embedding-dim", "16", "--filters", "4", "--max-length", "32"]
    argv += ["--batch-size", "8", "--no-progress", "--seed", "0", "--max-steps", "2"]
    argv += ["--previous-model", str(tiny_teacher), "--out", str(out)]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "slimbert.json").read_text())
    record = meta["previous_model"]
    assert record["metric"] == pytest.approx(meta["teacher_metric"])
    assert record["rows"] == 24 and 0 <= record["agreement"] <= 100
    right = round(record["metric"]["accuracy"] * 24 / 100)
    assert record["new_errors"] == round(right * (1 - record["kept_correct"] / 100))
