"""Two tokenizers, one sequence of word pieces: the alignment of a student's tokens to its
teacher's (compress/aligned.py), and minilm --student-base, which compares the two through it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import WORDS

from slimbert.batches import EncodedDataset, make_loader
from slimbert.cli import cli
from slimbert.compress.aligned import align_row, aligned_sets
from slimbert.data import Examples
from slimbert.errors import SlimbertError
from slimbert.models import load_model_dir
from slimbert.training.capture import (
    AttentionParts,
    TransformerOutputs,
    at_student_positions,
    at_student_tokens,
    teacher_view,
)

# BERT's and MPNet's readings of one pair: the same pieces, other special tokens
STUDENT = ["[CLS]", "the", "cat", "[SEP]", "a", "dog", "[SEP]"]
TEACHER = ["<s>", "the", "cat", "</s>", "</s>", "a", "dog", "</s>"]


def special(tokens):
    return [int(t.startswith(("[", "<"))) for t in tokens]


def test_a_pair_aligns_content_in_order_and_each_special_to_the_first_of_its_gap():
    align = align_row(STUDENT, special(STUDENT), TEACHER, special(TEACHER))
    assert align == [0, 1, 2, 3, 5, 6, 7]  # the teacher's second </s> (4) has no student token
    assert [TEACHER[i] for i in align][1:3] == STUDENT[1:3]
    single = ["[CLS]", "the", "cat", "[SEP]"]
    assert align_row(single, special(single), TEACHER[:3] + ["</s>"], [1, 0, 0, 1]) == [0, 1, 2, 3]


def test_other_pieces_or_a_missing_special_do_not_align():
    other = ["<s>", "the", "ca", "##t", "</s>", "</s>", "a", "dog", "</s>"]
    assert align_row(STUDENT, special(STUDENT), other, special(other)) is None
    no_separator = ["<s>", "the", "cat", "a", "dog", "</s>"]
    assert align_row(STUDENT, special(STUDENT), no_separator, special(no_separator)) is None


def test_gathering_at_student_tokens_is_indexing_by_the_alignment():
    torch.manual_seed(0)
    align = torch.tensor([[0, 1, 2, 3, 5, 6, 7], [0, 2, 4, 0, 0, 0, 0]])  # (B, T_s)
    qkv = torch.randn(2, 8, 6)  # (B, T_t, A)
    scores = torch.randn(2, 3, 8, 8)  # (B, H, T_t, T_t)
    batch = {"align": align}
    gathered = at_student_tokens(qkv, batch)
    assert gathered.shape == (2, 7, 6)
    for b in range(2):
        assert torch.equal(gathered[b], qkv[b, align[b]])
        expected = scores[b][:, align[b]][:, :, align[b]]  # (H, T_s, T_s)
        assert torch.equal(at_student_tokens(scores, batch, (2, 3))[b], expected)
    assert at_student_tokens(qkv, {}) is qkv  # one tokenizer: nothing to gather


def test_a_teachers_outputs_read_at_the_student_tokens_are_its_scores_and_states_there():
    """Q and K gathered first give the scores gathered after (with the relative-position terms
    gathered too); every hidden state is gathered; the mask becomes the student's."""
    torch.manual_seed(0)
    align = torch.tensor([[0, 1, 2, 3, 5, 6, 7], [0, 2, 4, 5, 0, 0, 0]])  # (B, T_s)
    mask = torch.tensor([[1] * 7, [1, 1, 1, 1, 0, 0, 0]])
    parts = AttentionParts(
        torch.randn(2, 8, 6), torch.randn(2, 8, 6), torch.randn(2, 8, 6), 3,
        torch.randn(2, 3, 8, 8),
    )  # fmt: skip
    hidden = tuple(torch.randn(2, 8, 6) for _ in range(2))
    teacher = TransformerOutputs(
        logits=torch.randn(2, 2), attention_mask=torch.ones(2, 8), hidden_states=hidden,
        attention_parts=(parts,),
    )  # fmt: skip
    batch = {"align": align, "attention_mask": mask}
    read = at_student_positions(teacher, batch)
    assert torch.equal(read.attention_mask, mask)
    scores = parts.scores()  # (B, H, T_t, T_t)
    for b in range(2):
        index = align[b]
        expected = scores[b][:, index][:, :, index]
        assert torch.allclose(read.attention_parts[0].scores()[b], expected, atol=1e-6)
        assert torch.equal(read.attention_parts[0].value[b], parts.value[b, index])
        for mine, theirs in zip(read.hidden_states, hidden, strict=True):
            assert torch.equal(mine[b], theirs[b, index])
    assert at_student_positions(teacher, {"attention_mask": mask}) is teacher


def mpnet_tokenizer(folder, words):
    from transformers import MPNetTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["<s>", "<pad>", "</s>", "<unk>", "[UNK]", *words, ".", ",", "<mask>"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return MPNetTokenizerFast.from_pretrained(str(folder), do_lower_case=True)


def task_data(tokenizer, texts, pairs, max_length):
    from slimbert.batches import TaskData
    from slimbert.data import LabelMap

    examples = Examples(texts, pairs, ["0"] * len(texts), "classification", Path("rows.tsv"))
    encoded = EncodedDataset(tokenizer, examples, max_length, [0] * len(texts))
    label_map = LabelMap({0: "0", 1: "1"})
    return TaskData(
        examples, examples, label_map, "classification", encoded, encoded, [0], max_length
    )


def test_mpnet_and_bert_readings_of_pairs_align_even_when_truncated(tmp_path):
    """MPNet adds one more special token to a pair; read at max_length + 1, the teacher keeps the
    student's content pieces under truncation, and every gathered token is the student's."""
    from conftest import build_tokenizer

    bert = build_tokenizer(tmp_path / "bert")
    mpnet = mpnet_tokenizer(tmp_path / "mpnet", WORDS)
    texts = ["the movie was very good", "a bad film", "it is not boring but really quite fine"]
    pairs = ["the plot is fine", "awful and ugly story", "this actor was the best"]
    student = task_data(bert, texts, pairs, 10)
    teacher = task_data(mpnet, texts, pairs, 10)
    aligned = aligned_sets(teacher, student, bert, mpnet)
    assert aligned.teacher_max_length == 11
    batch = next(iter(make_loader(aligned.train, 3, shuffle=False)))
    view = teacher_view(batch)
    assert set(view) >= {"input_ids", "attention_mask"} and view["input_ids"].shape[1] == 11
    specials = {"[CLS]": "<s>", "[SEP]": "</s>", "[PAD]": "<s>"}
    for row in range(3):
        ours = bert.convert_ids_to_tokens(batch["input_ids"][row].tolist())
        theirs = mpnet.convert_ids_to_tokens(view["input_ids"][row][batch["align"][row]].tolist())
        real = batch["attention_mask"][row].bool().tolist()
        assert [specials.get(t, t) for t, r in zip(ours, real, strict=True) if r] == [
            t for t, r in zip(theirs, real, strict=True) if r
        ]
    assert len(bert(texts[2], pairs[2], truncation=True, max_length=10)["input_ids"]) == 10


def test_a_row_cut_into_other_pieces_is_refused_in_one_line(tmp_path):
    from conftest import build_tokenizer

    bert = build_tokenizer(tmp_path / "bert")
    mpnet = mpnet_tokenizer(tmp_path / "mpnet", [w for w in WORDS if w != "movie"])
    texts = ["the film was good", "the movie was bad"]
    with pytest.raises(SlimbertError, match=r"^the student's tokenizer and the teacher's cut") as e:
        aligned_sets(
            task_data(mpnet, texts, None, 16), task_data(bert, texts, None, 16), bert, mpnet
        )
    assert "\n" not in str(e.value) and "row 1 ('the movie was bad')" in str(e.value)


def other_tokenizer_run(method: str, teacher, files, tmp_path):
    """`compress METHOD --student-base` where the base is the teacher itself with its vocabulary
    in another order (every row aligns, every layer is the teacher's): one step at lr 1e-9;
    its slimbert.json, its folder and the base's tokenizer."""
    from test_general import same_model_other_tokenizer

    base, base_tokenizer = same_model_other_tokenizer(teacher, tmp_path / "other")
    train, dev = files
    out = tmp_path / f"{method}-other"
    argv = ["compress", method, "--teacher", str(teacher), "--student-base", str(base)]
    argv += ["--layers", "4", "--train", str(train), "--eval", str(dev), "--max-length", "32"]
    argv += ["--batch-size", "64", "--max-steps", "1", "--lr", "1e-9", "--mixed-precision", "no"]
    argv += ["--no-progress", "--out", str(out)]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "slimbert.json").read_text())
    assert meta["student_base"]["path"] == str(base)
    assert meta["student_base"]["aligned"]["teacher_max_length"] == 32
    student, tokenizer, _ = load_model_dir(out)
    assert tokenizer.get_vocab() == base_tokenizer.get_vocab()  # the student reads its own
    assert student.config.num_hidden_layers == 4
    return meta


def test_minilm_teaches_a_student_that_reads_another_tokenizer(loud_teacher, sst2_files, tmp_path):
    """Read through the alignment, the student's relations are the teacher's, so the first
    relation loss is zero."""
    meta = other_tokenizer_run("minilm", loud_teacher, sst2_files, tmp_path)
    first = meta["first_losses"]["relation"][0]
    assert first["loss"] < 1e-5, first


def test_tinybert_teaches_a_student_that_reads_another_tokenizer(
    loud_teacher, sst2_files, tmp_path
):
    """TinyBERT's embedding, attention-score and hidden-state losses through the alignment:
    every layer mapped to itself, so the first layer loss is zero; then the prediction stage
    trains the student on its own tokens."""
    meta = other_tokenizer_run("tinybert", loud_teacher, sst2_files, tmp_path)
    first = meta["stages"]["intermediate"]["first_losses"][0]
    assert first["loss"] < 1e-5 and {"embedding", "attention", "hidden"} <= set(first), first
    assert meta["stages"]["prediction"]["steps"] == 1
    assert meta["student_base"]["layers"] == [0, 1, 2, 3]


def test_minilm_student_base_refuses_a_shape_of_its_own():
    result = CliRunner().invoke(
        cli,
        ["compress", "minilm", "--teacher", "t", "--train", "a", "--eval", "b", "--out", "o"]
        + ["--student-base", "minilm-l6", "--hidden-size", "64"],
    )
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "--student-base brings the student's shape" in result.output
