"""distill-general --objective distilbert: DistilBERT's triple loss on a masked-LM teacher — BERT's
masking, each term against a hand value, the held-out loss of the real CLI against the three
terms written out, the student saved with its MLM head, and the refusal of a teacher without one."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from slimbert.batches import make_loader
from slimbert.cli import cli
from slimbert.compress.general import GeneralConfig, _corpus
from slimbert.compress.students import StudentShape, build_student
from slimbert.compress.triple import mask_tokens, student_mlm_loss, triple_terms
from slimbert.data import Columns
from slimbert.training.losses import combine
from slimbert.training.outputs import Outputs
from tests.conftest import build_tokenizer


@pytest.fixture(scope="module")
def mlm_teacher(tmp_path_factory):
    """A random 4-layer BertForMaskedLM (hidden 32) with its head, over the test vocabulary;
    initializer 0.2 so its MLM distributions are far from uniform."""
    from transformers import BertConfig, BertForMaskedLM

    folder = tmp_path_factory.mktemp("mlm-teacher")
    tokenizer = build_tokenizer(folder)
    torch.manual_seed(5)
    BertForMaskedLM(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=64,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            initializer_range=0.2,
        )
    ).save_pretrained(str(folder), safe_serialization=True)
    return folder


def test_masking_is_berts(tmp_path):
    tokenizer = build_tokenizer(tmp_path / "tok")
    words = torch.randint(5, len(tokenizer), (64, 50), generator=torch.Generator().manual_seed(0))
    cls = torch.full((64, 1), tokenizer.cls_token_id)
    sep = torch.full((64, 1), tokenizer.sep_token_id)
    padding = torch.full((64, 9), tokenizer.pad_token_id)
    ids = torch.cat([cls, words, sep, padding], dim=1)  # (64, 61)
    mask = (ids != tokenizer.pad_token_id).long()
    batch = {"input_ids": ids, "attention_mask": mask}
    masked = mask_tokens(batch, tokenizer, 0.15, torch.Generator().manual_seed(1))
    picked = masked["labels"] != -100
    # specials and padding are never picked; labels hold the original ids where picked
    assert not picked[:, 0].any() and not picked[:, 51:].any()
    assert torch.equal(masked["labels"][picked], ids[picked])
    assert torch.equal(masked["input_ids"][~picked], ids[~picked])
    became_mask = masked["input_ids"][picked] == tokenizer.mask_token_id
    kept = masked["input_ids"][picked] == ids[picked]
    total = int(picked.sum())
    # pinned (generator seed 1): 473 of the 64 × 50 words picked (14.8 %); of them 366 became
    # [MASK] (77 %) and 54 were left as they were (11 %: the 10 % kept, plus random draws that
    # hit the same id)
    assert (total, int(became_mask.sum()), int(kept.sum())) == (473, 366, 54)
    again = mask_tokens(batch, tokenizer, 0.15, torch.Generator().manual_seed(1))
    assert torch.equal(again["input_ids"], masked["input_ids"])


def test_each_term_against_its_hand_value():
    # one text, three tokens, the third padding, vocabulary of 3
    ln2, ln3 = math.log(2), math.log(3)
    teacher_logits = torch.tensor([[[2 * ln2, 0.0, 0.0], [0.0, ln3, 0.0], [0.0, 0.0, 0.0]]])
    student_logits = torch.tensor([[[0.0, 0.0, 0.0], [0.0, ln3, 0.0], [50.0, -9.0, 3.0]]])
    mask = torch.tensor([[1, 1, 0]])
    student = Outputs(
        student_logits,
        mask,
        hidden_states=(torch.tensor([[[1.0, 0.0], [1.0, 1.0], [9.0, 9.0]]]),),
    )
    teacher = Outputs(
        teacher_logits,
        mask,
        hidden_states=(torch.tensor([[[0.0, 1.0], [2.0, 2.0], [-1.0, 5.0]]]),),
    )
    batch = {"labels": torch.tensor([[-100, 2, -100]])}
    loss, logged = combine(triple_terms(2.0, 5.0, 2.0, 1.0), student, teacher, batch)
    # soft, T = 2: token 0 teacher softmax(t/2) = (1/2, 1/4, 1/4) against a uniform student:
    # KL = ½ln(3/2) + ½ln(3/4) = ½ln(9/8), times T² = 4; token 1 matches (0); padding ignored;
    # mean over the 2 real tokens: ln(9/8)
    assert math.isclose(logged["soft"], math.log(9 / 8), rel_tol=1e-6)
    # mlm: token 1 only, softmax(0, ln3, 0) = (1/5, 3/5, 1/5), label 2: −ln(1/5)
    assert math.isclose(logged["mlm"], math.log(5), rel_tol=1e-6)
    # cosine: token 0 orthogonal (1 − 0), token 1 parallel (1 − 1), padding ignored: 0.5
    assert math.isclose(logged["cosine"], 0.5, rel_tol=1e-6)
    expected = 5 * math.log(9 / 8) + 2 * math.log(5) + 0.5  # 4.3578
    assert math.isclose(float(loss), expected, rel_tol=1e-6)
    nothing = {"labels": torch.full((1, 3), -100)}
    assert float(student_mlm_loss(student, teacher, nothing)) == 0.0  # no masked token: 0


def _hand_triple(student, teacher, batch, temperature=2.0):
    """The three terms written out, token by token (weights applied by the caller)."""
    with torch.no_grad():
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
        s = student(**inputs, output_hidden_states=True)
        t = teacher(**inputs, output_hidden_states=True)
    soft, cosine, real = 0.0, 0.0, 0
    mlm, masked = 0.0, 0
    for b, row in enumerate(batch["attention_mask"]):
        for i in range(int(row.sum())):  # right padding: the real tokens come first
            p_t = torch.softmax(t.logits[b, i] / temperature, -1)
            p_s = torch.softmax(s.logits[b, i] / temperature, -1)
            soft += float((p_t * (p_t.log() - p_s.log())).sum()) * temperature**2
            h_s, h_t = s.hidden_states[-1][b, i], t.hidden_states[-1][b, i]
            cosine += 1 - float(h_s @ h_t / (h_s.norm() * h_t.norm()))
            real += 1
            label = int(batch["labels"][b, i])
            if label != -100:
                mlm -= float(torch.log_softmax(s.logits[b, i], -1)[label])
                masked += 1
    return soft / real, mlm / masked, cosine / real


def test_cli_distilbert_objective_pins_the_held_out_loss_and_keeps_the_head(
    mlm_teacher, tiny_teacher, sst2_files, tmp_path
):
    from transformers import AutoModelForMaskedLM

    train, dev = sst2_files
    out = tmp_path / "distilbert-2L"
    argv = ["distill-general", "--teacher", str(mlm_teacher), "--objective", "distilbert"]
    argv += ["--text", str(train), "--layers", "2", "--holdout", "0.1", "--max-length", "32"]
    argv += ["--max-steps", "2", "--batch-size", "8", "--seed", "3", "--mixed-precision", "no"]
    argv += ["--no-progress", "--out", str(out)]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "slimbert.json").read_text())
    assert meta["objective"] == {
        "layer_map": [1, 3],
        "projection": False,
        "temperature": 2.0,
        "weights": {"soft": 5.0, "mlm": 2.0, "cosine": 1.0},
        "mlm_probability": 0.15,
    }
    first = meta["first_losses"][0]
    assert {"soft", "mlm", "cosine"} <= set(first) and all(
        math.isfinite(first[k]) and first[k] > 0 for k in ("soft", "mlm", "cosine")
    )

    # the held-out loss before training, from the three terms written out: the student is
    # teacher layers 1 and 3 with the teacher's embeddings and MLM head, all copied
    teacher = AutoModelForMaskedLM.from_pretrained(str(mlm_teacher)).eval()
    student, init = build_student(teacher, StudentShape(layers=2), [1, 3])
    assert init.random == [] and type(student).__name__ == "BertForMaskedLM"
    tokenizer = build_tokenizer(tmp_path / "tok")
    general = GeneralConfig(objective="distilbert", max_length=32, holdout=0.1)
    corpus = _corpus([train], Columns(), None, None, tokenizer, general, 3)  # --seed 3
    (batch,) = list(make_loader(corpus.held_set, 64, shuffle=False))
    # held-out masks: drawn once from a generator seeded with --seed + 1
    batch = mask_tokens(batch, tokenizer, 0.15, torch.Generator().manual_seed(4))
    assert meta["examples"]["holdout"] == len(corpus.held_set) == 6
    soft, mlm, cosine = _hand_triple(student.eval(), teacher, batch)
    assert soft > 0.01 and cosine > 0.01  # layer 1 where layer 0 was: far from the teacher
    hand = 5 * soft + 2 * mlm + cosine
    assert math.isclose(meta["distill_loss_before"], hand, rel_tol=1e-4), (
        meta["distill_loss_before"],
        hand,
        (soft, mlm, cosine),
    )

    # saved with its MLM head (usable as --augment-mlm), and kd starts from its encoder
    saved, info = AutoModelForMaskedLM.from_pretrained(str(out), output_loading_info=True)
    assert not info["missing_keys"] and saved.config.num_hidden_layers == 2
    kd = tmp_path / "kd"
    argv = ["compress", "kd", "--teacher", str(tiny_teacher), "--student-init", str(out)]
    argv += ["--layers", "2", "--train", str(train), "--eval", str(dev), "--max-steps", "1"]
    argv += ["--max-length", "32", "--no-progress", "--out", str(kd)]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    started = json.loads((kd / "slimbert.json").read_text())["student_init"]
    assert started["role"] == "general-student" and started["method"] == "general-distilbert"
    assert started["copied_tensors"] == 5 + 2 * 16  # embeddings and 2 layers, no pooler


def test_a_teacher_without_a_masked_lm_head_is_refused_in_one_line(
    tiny_teacher, sst2_files, tmp_path
):
    argv = ["distill-general", "--teacher", str(tiny_teacher), "--objective", "distilbert"]
    argv += ["--text", str(sst2_files[0]), "--layers", "2", "--out", str(tmp_path / "s")]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    error = [line for line in result.output.splitlines() if line.strip()]
    assert len(error) == 1, result.output
    assert f"--teacher {tiny_teacher} has no masked-LM head" in error[0]
    assert "BertForMaskedLM head weights missing, e.g. cls.predictions." in error[0]
    assert "--objective minilm or tinybert" in error[0]
    assert not (tmp_path / "s").exists()


def test_narrow_student_learns_through_a_projection(mlm_teacher, sst2_files, tmp_path):
    from slimbert.compress.general import distill_general
    from slimbert.training.config import TrainConfig

    general = GeneralConfig(
        layers=2, hidden_size=16, heads=2, ffn_size=32, objective="distilbert", max_length=32
    )
    config = TrainConfig(
        max_steps=24, batch_size=8, lr=3e-3, eval_every=12, patience=0, seed=3, progress=False
    )
    result, record = distill_general(mlm_teacher, [sst2_files[0]], tmp_path / "n", general, config)
    meta = record.to_json()  # the slimbert.json it wrote: the details beside the fields
    assert meta["objective"]["projection"] is True
    assert meta["shape"] == {"depth": 2, "width": 16, "heads": 2, "ffn": 32}
    before, best = meta["distill_loss_before"], meta["metric"]["distill_loss"]
    # a random narrow student, its MLM head fresh: 24 steps at 3e-3 cut the held-out triple
    # loss by a fifth at least (measured: 13.23 → 9.55)
    assert best < 0.8 * before, (before, best)
    assert {"soft", "mlm", "cosine"} <= set(result.losses[0])
