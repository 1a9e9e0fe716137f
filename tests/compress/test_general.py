"""distill-general: a student of any shape taught on unlabelled text, and --student-init from it."""

from __future__ import annotations

import json
import re

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from slimbert.cli import cli
from slimbert.compress.general import GeneralConfig, distill_general
from slimbert.errors import SlimbertError
from slimbert.models import load_model_dir
from slimbert.training.config import TrainConfig

NARROW = {"layers": 2, "hidden_size": 16, "heads": 2, "ffn_size": 32}


def general_run(teacher, texts, out, objective="minilm", steps=24, **shape):
    config = TrainConfig(
        max_steps=steps,
        batch_size=8,
        lr=3e-3,
        eval_every=steps // 2,
        patience=0,
        seed=3,
        mixed_precision="no",
        progress=False,
    )
    general = GeneralConfig(**{**NARROW, **shape}, objective=objective, max_length=32, holdout=0.1)
    result, record = distill_general(teacher, texts, out, general, config)
    return result, record.to_json()  # slimbert.json as written


@pytest.fixture(scope="module")
def general_student(sharp_teacher, sst2_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("general") / "minilm-2x16"
    result, meta = general_run(sharp_teacher, [sst2_files[0]], out)
    return out, result, meta


def test_minilm_general_step_lowers_the_held_out_relation_loss(general_student):
    out, result, meta = general_student
    # 64 training sentences, 10% held out; the student is narrower than the teacher (32 wide,
    # 4 heads), so nothing is copied but the relation terms need no projection
    assert meta["examples"]["train"] + meta["examples"]["holdout"] == 64
    assert meta["shape"] == {"depth": 2, "width": 16, "heads": 2, "ffn": 32}
    assert meta["objective"] == {
        "relations": "v2",
        "teacher_layer": 3,
        "student_layer": 1,
        "relation_heads": 4,
    }
    before, best = meta["distill_loss_before"], meta["metric"]["distill_loss"]
    # the sharpened teacher's relations are far from a random student's: 24 steps at 3e-3 cut
    # the held-out KL by a tenth at least (measured: 1.118 → 0.891, 20%)
    assert best < 0.9 * before, (before, best)
    assert {"qq", "kk", "vv"} <= set(result.losses[0])
    assert meta["cost"]["tokens_seen"] > 0 and meta["cost"]["seconds_per_million_tokens"] > 0
    config = json.loads((out / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"]) == (2, 16)
    assert (out / "tokenizer.json").is_file() and meta["role"] == "general-student"


def test_tinybert_general_step_trains_projections_and_lowers_its_loss(
    sharp_teacher, sst2_files, tmp_path
):
    result, meta = general_run(sharp_teacher, [sst2_files[0]], tmp_path / "tiny", "tinybert")
    assert meta["objective"]["projection"] is True and meta["objective"]["layer_map"] == [1, 3]
    assert {"embedding", "hidden", "attention"} <= set(result.losses[0])
    # measured: 4.157 → 2.124 (the projections learn fast)
    assert meta["metric"]["distill_loss"] < 0.7 * meta["distill_loss_before"]


def test_every_method_starts_from_the_general_student(
    general_student, sharp_teacher, sst2_files, tmp_path
):
    out, _, _ = general_student
    train, dev = sst2_files
    general = load_file(str(out / "model.safetensors"))
    for method, extra in (
        ("kd", []),
        ("tinybert", ["--intermediate-epochs", "1"]),
        ("minilm", ["--relation-epochs", "1"]),
    ):
        student_dir = tmp_path / method
        result = CliRunner().invoke(
            cli,
            [
                "compress",
                method,
                "--teacher",
                str(sharp_teacher),
                "--student-init",
                str(out),
                "--layers",
                "2",
                "--train",
                str(train),
                "--eval",
                str(dev),
                "--max-length",
                "32",
                "--max-steps",
                "1",
                "--lr",
                "1e-9",
                "--no-progress",
                "--out",
                str(student_dir),
                *extra,
            ],
        )
        assert result.exit_code == 0, (method, result.output)
        student = load_model_dir(student_dir)[0]
        assert student.config.hidden_size == 16 and student.config.num_attention_heads == 2
        state = student.state_dict()
        # one step at lr 1e-9 moves nothing past rounding: the encoder is the general student's
        for key in (
            "bert.embeddings.word_embeddings.weight",
            "bert.encoder.layer.1.output.dense.weight",
        ):
            torch.testing.assert_close(state[key], general[key], rtol=0, atol=1e-6)
        meta = json.loads((student_dir / "slimbert.json").read_text())
        started = meta["student_init"]
        assert started["role"] == "general-student" and started["copied_tensors"] == 5 + 2 * 16
        assert len(started["weights_sha256"]) == 64


def test_student_init_refuses_another_shape_in_one_line(general_student, sharp_teacher, sst2_files):
    out, _, _ = general_student
    train, dev = sst2_files
    base = ["--teacher", str(sharp_teacher), "--student-init", str(out)]
    data = ["--train", str(train), "--eval", str(dev), "--out", "unused"]
    for argv, message in (
        (["compress", "kd", *base, "--layers", "3", *data], "has 2 layers; give --layers 2"),
        (
            ["compress", "tinybert", *base, "--layers", "2", "--hidden-size", "32", *data],
            "--hidden-size 32: --student-init .* has 16",
        ),
    ):
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        error = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(error) == 1 and re.search(message, error[0]), error


def test_minilm_v1_general_step_lowers_the_attention_and_value_terms(
    sharp_teacher, sst2_files, tmp_path
):
    # v1 matches each head's attention distribution: the student keeps the teacher's 4 heads
    result, meta = general_run(
        sharp_teacher, [sst2_files[0]], tmp_path / "v1", relations="v1", heads=4
    )
    assert meta["objective"]["relations"] == "v1"
    assert set(result.losses[0]) >= {"attention", "vv"} and "qq" not in result.losses[0]
    # 24 steps cut the held-out loss by a tenth at least (measured: 0.585 → 0.485, 17%)
    assert meta["metric"]["distill_loss"] < 0.9 * meta["distill_loss_before"], (
        meta["distill_loss_before"],
        meta["metric"]["distill_loss"],
    )


def test_general_step_refusals(sharp_teacher, sst2_files, tmp_path):
    with pytest.raises(SlimbertError, match="--relation-heads 3 does not divide"):
        general_run(sharp_teacher, [sst2_files[0]], tmp_path / "a", relation_heads=3)
    with pytest.raises(SlimbertError, match=r"^--relations v1 .* teacher's 4 heads \(it has 2\)"):
        general_run(sharp_teacher, [sst2_files[0]], tmp_path / "c", relations="v1")
    lonely = tmp_path / "one.txt"
    lonely.write_text("only one line\n\n")
    with pytest.raises(SlimbertError, match="1 distinct text.*needs at least two"):
        general_run(sharp_teacher, [lonely], tmp_path / "b")
    for name in "abc":
        assert not (tmp_path / name).exists()


def test_distill_general_cli_reads_a_text_file(sharp_teacher, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(["the movie was good", "the plot was awful", "a fine film"] * 4))
    out = tmp_path / "general"
    argv = ["distill-general", "--teacher", str(sharp_teacher), "--text", str(texts)]
    argv += ["--layers", "1", "--hidden-size", "16", "--heads", "2", "--ffn-size", "32"]
    argv += ["--max-steps", "2", "--batch-size", "4", "--no-progress", "--out", str(out)]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    assert "held-out distillation loss" in result.output and "s per million" in result.output
    meta = json.loads((out / "slimbert.json").read_text())
    assert meta["schema_version"] == 1  # written through slimbert.record
    # three distinct lines (the repeats are dropped); one is held out
    assert meta["examples"]["train"] == 2 and meta["examples"]["holdout"] == 1
    assert meta["texts"][0]["distinct"] == 3


def test_labelled_files_text_files_and_pairs_train_together(sharp_teacher, sst2_files, tmp_path):
    """What base_teacher.sh gives the general step: a labelled TSV of single texts, a text file
    and a labelled TSV of pairs (before, the labelled and the unlabelled single texts refused to
    merge). The singles are one group, the pairs another; every distinct text is trained on or
    held out once."""
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(["the movie was good", "the plot was awful", "a fine film"]))
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(
        "sentence1\tsentence2\tlabel\n"
        + "".join(f"a good film {i}\tthe plot {i}\t{i % 2}\n" for i in range(5))
    )
    out = tmp_path / "general"
    argv = ["distill-general", "--teacher", str(sharp_teacher), "--text", str(sst2_files[0])]
    argv += ["--text", str(texts), "--text", str(pairs), "--layers", "1", "--hidden-size", "16"]
    argv += ["--heads", "2", "--ffn-size", "32", "--max-steps", "2", "--batch-size", "4"]
    argv += ["--no-progress", "--out", str(out)]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "slimbert.json").read_text())
    distinct = [source["distinct"] for source in meta["texts"]]
    assert distinct[1:] == [3, 5] and distinct[0] > 0
    assert meta["examples"]["train"] + meta["examples"]["holdout"] == sum(distinct)


def same_model_other_tokenizer(teacher_dir, folder):
    """The teacher's own weights behind a tokenizer that numbers the words the other way round
    (the same words, other ids), its word-embedding rows moved to match: on every text it
    computes exactly the teacher's logits from other token ids."""
    from conftest import WORDS
    from transformers import BertTokenizerFast

    teacher, teacher_tokenizer, _ = load_model_dir(teacher_dir)
    folder.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *reversed(WORDS), ".", ","]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast.from_pretrained(str(folder), do_lower_case=True)
    tokenizer.save_pretrained(str(folder))
    old_ids = teacher_tokenizer.convert_tokens_to_ids(vocab)  # (V,): new id -> teacher's id
    with torch.no_grad():
        table = teacher.bert.embeddings.word_embeddings.weight
        table.copy_(table[old_ids].clone())
    teacher.save_pretrained(str(folder), safe_serialization=True)
    return folder, tokenizer


def test_kd_teaches_a_student_that_reads_another_tokenizer(loud_teacher, sst2_files, tmp_path):
    from slimbert.models import load_tokenizer

    sharp_teacher = loud_teacher
    base, base_tokenizer = same_model_other_tokenizer(sharp_teacher, tmp_path / "other")
    train, dev = sst2_files
    out = tmp_path / "kd-other"
    argv = ["compress", "kd", "--teacher", str(sharp_teacher), "--student-base", str(base)]
    argv += ["--layers", "4", "--train", str(train), "--eval", str(dev), "--max-length", "32"]
    argv += ["--alpha", "1", "--temperature", "2", "--batch-size", "64", "--max-steps", "1"]
    argv += ["--lr", "1e-9", "--mixed-precision", "no", "--no-progress", "--out", str(out)]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    student, tokenizer, _ = load_model_dir(out)
    assert (student.config.num_hidden_layers, student.config.hidden_size) == (4, 32)
    assert (
        tokenizer.get_vocab()
        == base_tokenizer.get_vocab()
        != load_tokenizer(sharp_teacher).get_vocab()
    )
    meta = json.loads((out / "slimbert.json").read_text())
    assert meta["student_base"]["path"] == str(base) and meta["layer_map"] == [0, 1, 2, 3]
    # The one step saw all 64 rows in one batch. The student computes the teacher's function
    # from other token ids, so with each row's soft label taken from the teacher's reading of
    # that same row the soft loss is 0; labels paired one row off would cost `shifted`.
    from slimbert.data import read_examples

    texts = read_examples(train).texts
    teacher = load_model_dir(sharp_teacher)[0].eval()
    teacher_tokens = load_tokenizer(sharp_teacher)(texts, padding=True, return_tensors="pt")
    student_tokens = tokenizer(texts, padding=True, return_tensors="pt")
    assert not torch.equal(teacher_tokens["input_ids"], student_tokens["input_ids"])
    with torch.no_grad():
        t = torch.log_softmax(teacher(**teacher_tokens).logits / 2, -1)  # (N, 2)
        s = torch.log_softmax(student.eval()(**student_tokens).logits / 2, -1)  # (N, 2)
    torch.testing.assert_close(s, t, rtol=1e-4, atol=1e-4)
    shifted = float(((t.exp() * (t - t.roll(1, 0))).sum(-1) * 4).mean())
    # (measured: shifted 5.8e-3 against a paired loss of 0.0: the same floats)
    assert shifted > 1e-3
    assert meta["first_losses"][0]["soft"] < shifted / 100, (meta["first_losses"][0], shifted)


def test_only_kd_minilm_and_tinybert_take_a_student_base_and_not_with_an_init(tmp_path):
    refused = CliRunner().invoke(
        cli, ["compress", "theseus", "--teacher", "t", "--student-base", "minilm-l6", "--out", "o"]
    )
    assert refused.exit_code == 1 and refused.output.count("\n") == 1, refused.output
    assert "kd teaches a student that reads another tokenizer" in refused.output
    augmenting = CliRunner().invoke(
        cli,
        ["compress", "tinybert", "--teacher", "t", "--out", "o", "--train", "a", "--eval", "b"]
        + ["--student-base", "minilm-l6", "--augment"],
    )
    assert augmenting.exit_code == 1 and augmenting.output.count("\n") == 1, augmenting.output
    assert "give it as --transfer" in augmenting.output
    both = CliRunner().invoke(
        cli,
        ["compress", "kd", "--teacher", "t", "--out", "o", "--train", "a", "--eval", "b"]
        + ["--student-base", "minilm-l6", "--student-init", str(tmp_path)],
    )
    assert both.exit_code == 1 and "give one" in both.output, both.output


def test_the_shipped_recipe_is_read_and_its_flags_override(sharp_teacher, sst2_files, tmp_path):
    """recipes/distill-general.yaml parses as the command's flags; the command line wins."""
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "distill-general.yaml"
    out = tmp_path / "from-recipe"
    argv = ["distill-general", "--recipe", str(recipe), "--teacher", str(sharp_teacher)]
    argv += ["--text", str(sst2_files[0]), "--hidden-size", "16", "--heads", "2"]
    argv += ["--ffn-size", "32", "--relation-heads", "4", "--layers", "1", "--max-steps", "1"]
    argv += ["--mixed-precision", "no", "--no-progress", "--out", str(out)]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "slimbert.json").read_text())
    assert meta["method_config"]["objective"] == "minilm"  # from the recipe
    assert meta["method_config"]["max_length"] == 128  # from the recipe
    assert meta["train_config"]["lr"] == 5e-4 and meta["train_config"]["batch_size"] == 64
    assert [t["path"] for t in meta["texts"]] == [str(sst2_files[0])]  # the command line's


def test_a_general_student_teaches_the_next_one_as_minilms_assistant(
    sharp_teacher, sst2_files, tmp_path
):
    """MiniLM's teacher assistant: the teacher → a 3 × 24 assistant → a 2 × 16 student, each
    step a distill-general run whose --teacher is the folder the step before wrote."""
    assistant = tmp_path / "assistant"
    general_run(sharp_teacher, [sst2_files[0]], assistant, layers=3, hidden_size=24, heads=4)
    result, meta = general_run(assistant, [sst2_files[0]], tmp_path / "student")
    assert meta["source"] == str(assistant)
    assert meta["shape"] == {"depth": 2, "width": 16, "heads": 2, "ffn": 32}
    assert meta["objective"]["teacher_layer"] == 2  # the assistant's last layer
    assert meta["metric"]["distill_loss"] < meta["distill_loss_before"]
