"""compress kd: the student it builds from the teacher's layers and the loss it trains on,
checked against numbers computed here by hand."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from slimbert.cli import cli
from slimbert.compress.kd import KDConfig, loss_terms
from slimbert.compress.students import pick_layers
from slimbert.data import read_examples
from slimbert.errors import SlimbertError
from slimbert.models import load_model_dir


def kd_once(teacher, train, dev, out, *extra):
    """One optimiser step at lr 1e-9 over the whole 64-row training file in one batch: the saved
    student is the one that stepped, to rounding, and the step's loss covers every row."""
    argv = ["compress", "kd", "--teacher", str(teacher), "--train", str(train)]
    argv += ["--eval", str(dev), "--max-length", "32", "--batch-size", "64", "--max-steps", "1"]
    argv += ["--lr", "1e-9", "--mixed-precision", "no", "--no-progress", "--out", str(out)]
    result = CliRunner().invoke(cli, [*argv, *extra])
    assert result.exit_code == 0, result.output
    return json.loads((out / "slimbert.json").read_text())


def test_the_student_is_the_teachers_picked_layers(sharp_teacher, sst2_files, tmp_path):
    meta = kd_once(sharp_teacher, *sst2_files, tmp_path / "kd2", "--layers", "2")
    teacher = load_model_dir(sharp_teacher)[0].state_dict()
    student = load_model_dir(tmp_path / "kd2")[0]
    assert meta["layer_map"] == pick_layers(4, 2) == [1, 3]
    assert student.config.num_hidden_layers == 2
    state = student.state_dict()
    for s, t in enumerate([1, 3]):
        key = "bert.encoder.layer.{}.attention.self.query.weight"
        torch.testing.assert_close(state[key.format(s)], teacher[key.format(t)], rtol=0, atol=1e-6)
    for key in ("bert.embeddings.word_embeddings.weight", "classifier.weight"):
        torch.testing.assert_close(state[key], teacher[key], rtol=0, atol=1e-6)


@pytest.mark.parametrize("temperature, alpha", [(2.0, 0.5), (1.0, 0.8)])
def test_the_first_loss_is_the_hinton_mix_computed_by_hand(
    loud_teacher, sst2_files, tmp_path, temperature, alpha
):
    """loss = alpha · T² · KL(teacher/T ‖ student/T) + (1 − alpha) · CE(student, gold), mean
    over the rows; the teacher's logits come from its own forward pass on the same rows."""
    train, dev = sst2_files
    out = tmp_path / "kd"
    flags = ["--layers", "2", "--temperature", str(temperature), "--alpha", str(alpha)]
    meta = kd_once(loud_teacher, train, dev, out, *flags)
    examples = read_examples(train)
    teacher, tokenizer, _ = load_model_dir(loud_teacher)
    student = load_model_dir(out)[0]
    tokens = tokenizer(examples.texts, padding=True, truncation=True, max_length=32,
                       return_tensors="pt")  # fmt: skip
    gold = torch.tensor([int(label) for label in examples.labels])
    with torch.no_grad():
        t = F.log_softmax(teacher.eval()(**tokens).logits / temperature, -1)  # (N, 2)
        logits = student.eval()(**tokens).logits  # (N, 2)
    s = F.log_softmax(logits / temperature, -1)
    soft = float((t.exp() * (t - s)).sum(-1).mean() * temperature**2)
    hard = float(F.cross_entropy(logits, gold))
    first = meta["first_losses"][0]
    assert soft > 1e-3  # two layers of four: the student's logits are not the teacher's
    assert first["soft"] == pytest.approx(soft, rel=1e-4)
    assert first["hard"] == pytest.approx(hard, rel=1e-4)
    assert first["loss"] == pytest.approx(alpha * soft + (1 - alpha) * hard, rel=1e-4)
    assert [term.weight for term in loss_terms(KDConfig(temperature=temperature, alpha=alpha))] == [
        alpha,
        pytest.approx(1 - alpha),
    ]


def test_a_student_deeper_than_its_teacher_is_one_clear_line(sharp_teacher, sst2_files, tmp_path):
    with pytest.raises(SlimbertError, match="--layers 5: a student needs between 1 and 4"):
        pick_layers(4, 5)
    train, dev = sst2_files
    result = CliRunner().invoke(
        cli,
        ["compress", "kd", "--teacher", str(sharp_teacher), "--train", str(train), "--eval"]
        + [str(dev), "--layers", "5", "--out", str(tmp_path / "deep")],
    )
    assert result.exit_code == 1 and "--layers 5" in result.output, result.output
    assert not (tmp_path / "deep").exists()
