"""pretrain-student: the masked-LM student's weight surgery, a short pre-training with pinned
losses, and `compress kd --student-init` starting from it."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from click.testing import CliRunner
from safetensors.torch import load_file

from slimbert.cli import cli
from slimbert.compress.pretrain import PretrainConfig, mlm_student, pretrain_student
from slimbert.compress.start import init_student
from slimbert.compress.students import StudentShape, build_student, pick_layers
from slimbert.data import Columns
from slimbert.errors import SlimbertError
from slimbert.models import load_model_dir
from slimbert.texts import unlabelled_texts
from slimbert.training.config import TrainConfig


def test_mlm_student_copies_picked_layers_and_ties_the_decoder(tiny_teacher):
    teacher = load_model_dir(tiny_teacher)[0]
    mlm, picked = mlm_student(teacher, 2)
    assert picked == pick_layers(4, 2) == [1, 3]
    source, target = teacher.state_dict(), mlm.state_dict()
    for student_layer, teacher_layer in enumerate(picked):
        for name in ("attention.self.query.weight", "output.dense.weight", "output.LayerNorm.bias"):
            torch.testing.assert_close(
                target[f"bert.encoder.layer.{student_layer}.{name}"],
                source[f"bert.encoder.layer.{teacher_layer}.{name}"],
                rtol=0,
                atol=0,
            )
    torch.testing.assert_close(
        target["bert.embeddings.word_embeddings.weight"],
        source["bert.embeddings.word_embeddings.weight"],
        rtol=0,
        atol=0,
    )
    assert mlm.cls.predictions.decoder.weight is mlm.bert.embeddings.word_embeddings.weight
    assert not any(k.startswith(("bert.pooler", "classifier")) for k in target)
    assert float(mlm.cls.predictions.bias.detach().abs().sum()) == 0.0  # a fresh head: zero bias


def test_unlabelled_texts_dedups_and_keeps_pairs(tmp_path):
    first = tmp_path / "a.tsv"
    first.write_text(
        "sentence1\tsentence2\tlabel\n"
        "good movie\tgreat film\t1\ngood movie\tgreat film\t0\nbad plot\tthe story\t0\n"
    )
    second = tmp_path / "b.tsv"
    second.write_text("sentence1\tsentence2\nbad plot\tthe story\nnice actor\tthe plot\n")
    sources = unlabelled_texts([first, second], Columns())
    assert [len(s) for s in sources] == [2, 1]
    assert sources[1].texts == ["nice actor"] and sources[1].text_pairs == ["the plot"]


# transformers major version → (holdout MLM loss before training, first two step losses, best
# holdout loss after 4 steps)
MLM_LOSSES = {
    4: (3.7874, [3.748, 3.798], 3.7304),
    5: (3.6194, [3.681, 3.776], 3.7032),
}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, tiny_teacher, sst2_files):
    out = tmp_path_factory.mktemp("mlm") / "student-2L"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result, meta = pretrain_student(
            tiny_teacher,
            [sst2_files[0]],
            out,
            PretrainConfig(layers=2, max_length=32),
            TrainConfig(
                max_steps=4,
                batch_size=16,
                lr=5e-3,
                patience=0,
                eval_every=2,
                progress=False,
                seed=3,
            ),
        )
    finally:
        torch.set_num_threads(threads)
    return out, result, meta.to_json()  # slimbert.json as written


def test_pretraining_pins_first_losses_and_saves_an_mlm_dir(pretrained):
    out, result, meta = pretrained
    assert meta["examples"] == {"train": 61, "holdout": 3} and meta["layer_map"] == [1, 3]
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertForMaskedLM"] and config["num_hidden_layers"] == 2
    # Pinned on CPU: conftest's seed-0 tiny BERT, masking seeded by the train seed (3). The fresh
    # MLM head is drawn from the same seed, but transformers 5 draws a new model's weights in
    # another order, so each line has its own numbers. Four steps on 61 toy sentences do not
    # reliably lower a 3-sentence holdout loss (on transformers 5's draw it starts lower), so the
    # best holdout loss is pinned rather than its direction.
    before, first, best = MLM_LOSSES[int(transformers.__version__.split(".")[0])]
    assert meta["mlm_loss_before"] == pytest.approx(before, abs=2e-3)  # ≈ ln 44, the vocabulary
    assert [round(row["mlm"], 3) for row in result.losses[:2]] == pytest.approx(first, abs=2e-3)
    assert meta["metric"]["mlm_loss"] == pytest.approx(best, abs=2e-3)
    assert len(result.history) == 2


def test_kd_student_init_takes_encoder_from_the_pretrained_student(
    pretrained, tiny_teacher, sst2_files, tmp_path
):
    out, _, _ = pretrained
    train, dev = sst2_files
    student_dir = tmp_path / "kd"
    result = CliRunner().invoke(
        cli,
        [
            "compress",
            "kd",
            "--teacher",
            str(tiny_teacher),
            "--student-init",
            str(out),
            "--layers",
            "2",
            "--train",
            str(train),
            "--eval",
            str(dev),
            "--out",
            str(student_dir),
            "--max-length",
            "32",
            "--max-steps",
            "1",
            "--lr",
            "1e-9",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    student = load_model_dir(student_dir)[0].state_dict()
    mlm = load_file(str(out / "model.safetensors"))
    teacher = load_model_dir(tiny_teacher)[0].state_dict()
    for key in (
        "bert.embeddings.word_embeddings.weight",
        "bert.encoder.layer.1.output.dense.weight",
    ):
        torch.testing.assert_close(student[key], mlm[key], rtol=0, atol=1e-6)
    for key in ("bert.pooler.dense.weight", "classifier.weight"):
        torch.testing.assert_close(student[key], teacher[key], rtol=0, atol=1e-6)
    meta = json.loads((student_dir / "slimbert.json").read_text())
    assert meta["schema_version"] == 1  # written through slimbert.record
    assert meta["student_init"]["copied_tensors"] == 5 + 2 * 16 and meta["student_init"][
        "layer_map"
    ] == [1, 3]


def test_student_init_refuses_another_depth(pretrained, tiny_teacher):
    out, _, _ = pretrained
    teacher = load_model_dir(tiny_teacher)[0]
    student = build_student(
        teacher, StudentShape(3), pick_layers(teacher.config.num_hidden_layers, 3)
    )[0]
    with pytest.raises(SlimbertError, match="num_hidden_layers 2 but this student has 3"):
        init_student(student, out)


def test_pretrain_student_cli(tiny_teacher, sst2_files, tmp_path):
    out = tmp_path / "mlm"
    result = CliRunner().invoke(
        cli,
        [
            "pretrain-student",
            "--teacher",
            str(tiny_teacher),
            "--layers",
            "1",
            "--train",
            str(sst2_files[0]),
            "--out",
            str(out),
            "--max-length",
            "32",
            "--max-steps",
            "1",
            "--batch-size",
            "8",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "held-out masked-LM loss" in result.output
        and json.loads((out / "slimbert.json").read_text())["role"] == "pretrained-student"
    )
    missing = CliRunner().invoke(
        cli,
        [
            "pretrain-student",
            "--teacher",
            str(tmp_path / "nope"),
            "--train",
            str(sst2_files[0]),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert missing.exit_code == 1 and "Traceback" not in missing.output and "nope" in missing.output


def test_a_narrow_student_learns_the_masked_lm_from_fresh_weights_then_starts_kd(
    tiny_teacher, sst2_files, tmp_path
):
    """Turc et al.'s pre-trained compact model: a 2 × 16 masked LM from fresh weights (nothing
    of the 32-wide teacher fits), whose loss falls, then the start of a kd student."""
    train, dev = sst2_files
    # a corpus with something to learn: four fixed phrases, so a masked word follows from its
    # neighbours (the sentiment rows are shuffled words, whose best guess is their frequency)
    phrases = ["the movie was very good", "this plot is really bad", "a fine actor and story"]
    phrases.append("that film was not boring")
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(f"{p} {i}" for i in range(60) for p in phrases) + "\n")
    out = tmp_path / "mlm-2x16"
    argv = ["pretrain-student", "--teacher", str(tiny_teacher), "--train", str(texts)]
    argv += ["--layers", "2", "--hidden-size", "16", "--heads", "2", "--ffn-size", "32"]
    argv += ["--max-length", "32", "--max-steps", "120", "--batch-size", "16", "--lr", "3e-3"]
    argv += ["--eval-every", "40", "--patience", "0", "--seed", "3", "--no-progress"]
    result = CliRunner().invoke(cli, [*argv, "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]) == (
        2,
        16,
        32,
    )
    meta = json.loads((out / "slimbert.json").read_text())
    # fresh weights start near ln(vocabulary); 120 steps at 3e-3 learn the phrases
    assert meta["metric"]["mlm_loss"] < 0.9 * meta["mlm_loss_before"], meta["metric"]
    student = tmp_path / "kd"
    kd = ["compress", "kd", "--teacher", str(tiny_teacher), "--student-init", str(out)]
    kd += ["--layers", "2", "--train", str(train), "--eval", str(dev), "--max-length", "32"]
    kd += ["--max-steps", "2", "--batch-size", "8", "--no-progress", "--out", str(student)]
    result = CliRunner().invoke(cli, kd)
    assert result.exit_code == 0, result.output
    assert json.loads((student / "config.json").read_text())["hidden_size"] == 16
