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
    meta = json.loads((out / "slimbert.json").read_text())
    assert meta["schema_version"] == 1  # written through slimbert.record
    return meta


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


def test_a_narrower_student_has_fresh_weights_of_its_shape(sharp_teacher, sst2_files, tmp_path):
    flags = ["--layers", "2", "--hidden-size", "16", "--heads", "2", "--ffn-size", "24"]
    kd_once(sharp_teacher, *sst2_files, tmp_path / "narrow", *flags)
    student = load_model_dir(tmp_path / "narrow")[0]
    config = student.config
    assert (config.num_hidden_layers, config.hidden_size) == (2, 16)
    assert (config.num_attention_heads, config.intermediate_size) == (2, 24)
    # the same seed and shape again: the same fresh weights, drawn from the seed
    kd_once(sharp_teacher, *sst2_files, tmp_path / "again", *flags)
    again = load_model_dir(tmp_path / "again")[0].state_dict()
    for key, value in student.state_dict().items():
        torch.testing.assert_close(value, again[key], rtol=0, atol=0)


@pytest.mark.parametrize(
    "extra, start",
    [
        (["--student-base", "minilm-l6"], "--student-base"),
        (["--student-init", "x"], "--student-init"),
    ],
)
def test_a_shape_with_a_pre_trained_start_is_one_line(extra, start):
    flags = dict(zip(extra[::2], extra[1::2], strict=True))
    key = "student_base" if start == "--student-base" else "student_init"
    with pytest.raises(SlimbertError, match=f"--hidden-size shape a fresh student, but {start}"):
        KDConfig(hidden_size=16, **{key: flags[start]})


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


def test_first_layers_baseline_is_the_teachers_bottom_layers_on_the_labels_alone(
    loud_teacher, sst2_files, tmp_path
):
    """BERT-of-Theseus's baseline: teacher layers 0..k−1 under the teacher's embeddings and
    classifier, trained on CE to the gold labels; the soft term is logged but weighs nothing."""
    train, dev = sst2_files
    out = tmp_path / "first2"
    meta = kd_once(loud_teacher, train, dev, out, "--layers", "2", "--layer-map", "bottom",
                   "--alpha", "0")  # fmt: skip
    assert meta["layer_map"] == [0, 1] and meta["method_config"]["layer_map"] == "bottom"
    teacher, tokenizer, _ = load_model_dir(loud_teacher)
    student = load_model_dir(out)[0]
    key = "bert.encoder.layer.{}.attention.self.query.weight"
    for s in (0, 1):
        torch.testing.assert_close(
            student.state_dict()[key.format(s)],
            teacher.state_dict()[key.format(s)],
            rtol=0,
            atol=1e-6,
        )
    examples = read_examples(train)
    tokens = tokenizer(examples.texts, padding=True, truncation=True, max_length=32,
                       return_tensors="pt")  # fmt: skip
    gold = torch.tensor([int(label) for label in examples.labels])
    with torch.no_grad():
        hard = float(F.cross_entropy(student.eval()(**tokens).logits, gold))
    first = meta["first_losses"][0]
    assert first["hard"] == pytest.approx(hard, rel=1e-4)
    assert first["loss"] == pytest.approx(first["hard"], rel=1e-6)
    assert first["soft"] > 1e-2  # the teacher's logits are there, and the loss ignores them
    preset = KDConfig.first_layers(2)
    assert (preset.layers, preset.layer_map) == (2, "bottom")
    assert [term.weight for term in loss_terms(preset)] == [0.0, 1.0]


def test_first_layers_recipe_parses_as_kd_flags():
    from pathlib import Path

    from slimbert.cli.compress import method_command
    from slimbert.compress.registry import get_method

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "kd-first-layers.yaml"
    assert "slimbert compress kd --recipe recipes/kd-first-layers.yaml" in recipe.read_text()
    context = method_command(get_method("kd")).make_context("kd", ["--recipe", str(recipe)])
    assert (context.params["layer_map"], context.params["alpha"]) == ("bottom", 0.0)
    assert context.params["layers"] == 3


def test_a_layer_map_with_a_pretrained_student_is_one_line(tmp_path):
    with pytest.raises(SlimbertError, match="--layer-map bottom picks teacher layers, but "):
        KDConfig(layer_map="bottom", student_init=tmp_path)


def _last_states(model, tokens):
    with torch.no_grad():
        return model.eval()(**tokens, output_hidden_states=True).hidden_states[-1]  # (N, T, H)


# 1 − cos(student, teacher) of the last hidden states over the real tokens of the 64 training
# rows: the sharp teacher's layer 3 alone against its four layers (pinned to catch a change in
# which states or which tokens the term reads; the mean over padding too would be 0.008456)
PINNED_COSINE = 0.0082216


def test_the_cosine_term_is_distilberts_computed_by_hand(sharp_teacher, sst2_files, tmp_path):
    """loss = alpha · soft + (1 − alpha) · hard + w · mean over real tokens of
    1 − cos(student's last hidden state, teacher's); rows of 1 to 5 words, so padding is there
    to be left out."""
    from conftest import sentiment_rows, write_sst2

    rows = [(" ".join(text.split()[: 1 + i % 5]), label)
            for i, (text, label) in enumerate(sentiment_rows(64, 1))]  # fmt: skip
    train, dev = write_sst2(tmp_path / "train.tsv", rows), sst2_files[1]
    out = tmp_path / "kd-cos"
    meta = kd_once(sharp_teacher, train, dev, out, "--layers", "1", "--cosine-weight", "2.0")
    examples = read_examples(train)
    teacher, tokenizer, _ = load_model_dir(sharp_teacher)
    student = load_model_dir(out)[0]
    tokens = tokenizer(examples.texts, padding=True, truncation=True, max_length=32,
                       return_tensors="pt")  # fmt: skip
    cosine = F.cosine_similarity(
        _last_states(student, tokens), _last_states(teacher, tokens), dim=-1
    )  # (N, T)
    mask = tokens["attention_mask"].float()
    by_hand = float(((1 - cosine) * mask).sum() / mask.sum())
    first = meta["first_losses"][0]
    assert first["cosine"] == pytest.approx(by_hand, rel=1e-4)
    assert first["cosine"] == pytest.approx(PINNED_COSINE, rel=1e-3)
    # padding never counts: the unmasked mean over every position differs
    assert abs(float((1 - cosine).mean()) - by_hand) > 1e-2 * by_hand
    assert first["loss"] == pytest.approx(
        0.5 * first["soft"] + 0.5 * first["hard"] + 2.0 * first["cosine"], rel=1e-5
    )
    assert [t.name for t in loss_terms(KDConfig(cosine_weight=2.0))] == ["soft", "hard", "cosine"]


def test_the_full_depth_student_has_no_cosine_to_close(sharp_teacher, sst2_files, tmp_path):
    meta = kd_once(sharp_teacher, *sst2_files, tmp_path / "kd4", "--layers", "4",
                   "--cosine-weight", "1")  # fmt: skip
    assert meta["first_losses"][0]["cosine"] == pytest.approx(0.0, abs=1e-6)  # the teacher itself


def test_the_cosine_term_refusals_are_one_line(sharp_teacher):
    from slimbert.compress.kd import cosine_teacher
    from slimbert.compress.students import StudentShape, build_student

    with pytest.raises(SlimbertError, match="^--cosine-weight .* --student-base reads other"):
        KDConfig(cosine_weight=1.0, student_base="minilm-l6")
    with pytest.raises(SlimbertError, match="^--cosine-weight .* --teacher-route"):
        KDConfig(cosine_weight=1.0, teacher_route="runs/route")
    teacher = load_model_dir(sharp_teacher)[0]
    narrow = build_student(teacher, StudentShape(2, hidden=16, heads=2, ffn=32), [1, 3], seed=0)[0]
    with pytest.raises(SlimbertError, match="the student is 16 wide .* the teacher 32"):
        cosine_teacher(teacher, narrow, KDConfig(cosine_weight=1.0), torch.device("cpu"))
    assert cosine_teacher(teacher, narrow, KDConfig(), torch.device("cpu")) is None


def test_several_teachers_teach_their_weighted_mean(loud_teacher, sharp_teacher, sst2_files,
                                                    tmp_path):  # fmt: skip
    """Soft labels Σ w_k z_k / Σ w from every --teacher; the first gives the student's layers."""
    train, dev = sst2_files
    out = tmp_path / "kd-two"
    meta = kd_once(loud_teacher, train, dev, out, "--teacher", str(sharp_teacher),
                   "--teacher-weights", "3,1", "--layers", "2", "--temperature", "2")  # fmt: skip
    assert meta["teachers"] == [str(loud_teacher), str(sharp_teacher)]
    assert meta["weights_used"] == [0.75, 0.25]
    assert set(meta["teacher_metrics"]) == {str(sharp_teacher)}
    examples = read_examples(train)
    loud, tokenizer, _ = load_model_dir(loud_teacher)
    sharp = load_model_dir(sharp_teacher)[0]
    student = load_model_dir(out)[0]
    tokens = tokenizer(examples.texts, padding=True, truncation=True, max_length=32,
                       return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        mean = 0.75 * loud.eval()(**tokens).logits + 0.25 * sharp.eval()(**tokens).logits
        loud_only = loud(**tokens).logits
        logits = student.eval()(**tokens).logits
    s = F.log_softmax(logits / 2, -1)

    def soft(target):
        t = F.log_softmax(target / 2, -1)
        return float((t.exp() * (t - s)).sum(-1).mean() * 4)

    assert meta["first_losses"][0]["soft"] == pytest.approx(soft(mean), rel=1e-4)
    assert abs(soft(mean) - soft(loud_only)) > 1e-2  # the second teacher moved the target


def test_the_student_is_compared_with_the_previous_model(loud_teacher, sharp_teacher, sst2_files,
                                                         tmp_path):  # fmt: skip
    train, dev = sst2_files
    out = tmp_path / "kd-prev"
    meta = kd_once(loud_teacher, train, dev, out, "--layers", "1",
                   "--previous-model", str(sharp_teacher))  # fmt: skip
    examples = read_examples(dev)
    previous, tokenizer, _ = load_model_dir(sharp_teacher)
    student = load_model_dir(out)[0]
    tokens = tokenizer(examples.texts, padding=True, truncation=True, max_length=32,
                       return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        before = previous.eval()(**tokens).logits.argmax(-1)
        now = student.eval()(**tokens).logits.argmax(-1)
    gold = torch.tensor([int(label) for label in examples.labels])
    record = meta["previous_model"]
    assert record["path"] == str(sharp_teacher) and record["rows"] == 24
    assert record["agreement"] == pytest.approx(float((now == before).float().mean()) * 100)
    right = before == gold
    kept = float((now[right] == gold[right]).float().mean()) * 100
    assert record["kept_correct"] == pytest.approx(kept)
    assert record["new_errors"] == int((right & (now != gold)).sum())
    assert record["metric"]["accuracy"] == pytest.approx(float(right.float().mean()) * 100)


def test_agreement_figures_by_hand():
    import numpy as np

    from slimbert.teachers.others import agreement

    got = agreement(
        np.array([1, 0, 1, 1, 0]), np.array([1, 1, 1, 0, 0]), np.array([1, 1, 0, 0, 0]), positive=1
    )
    # previous predicts 1 on rows 0-2, the student keeps 2; previous is right on rows 0, 1, 3, 4
    # and the student on 0 and 4 of them
    assert got == {"agreement": 60.0, "recall": pytest.approx(200 / 3), "kept_correct": 50.0,
                   "new_errors": 2, "rows": 5}  # fmt: skip
    assert agreement(np.array([0, 2]), np.array([0, 1]), np.array([0, 1]), None)["recall"] is None


def test_several_teacher_and_previous_model_refusals(sharp_teacher, sst2_files, tmp_path):
    from types import SimpleNamespace

    from slimbert.teachers.others import open_previous

    train, dev = sst2_files
    base = ["compress", "kd", "--teacher", str(sharp_teacher), "--teacher", str(sharp_teacher)]
    base += ["--train", str(train), "--eval", str(dev), "--out", str(tmp_path / "x")]
    for flags, line in [
        (["--alpha", "0"], "--alpha 0 trains on the gold labels alone, so a second --teacher"),
        (["--teacher-weights", "1,2,3"], "--teacher-weights gives 3 weights for 2 --teacher"),
    ]:
        result = CliRunner().invoke(cli, [*base, *flags])
        assert result.exit_code == 1 and line in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    with pytest.raises(SlimbertError, match="this task is regression; drop --previous-model"):
        open_previous(tmp_path, SimpleNamespace(task="regression"))
