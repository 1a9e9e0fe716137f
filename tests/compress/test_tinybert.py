"""TinyBERT: captured pre-softmax scores, its loss terms against hand values, narrow students,
augmentation (embedding neighbours and masked LM, cached), and the real CLI's first losses."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from click.testing import CliRunner

from slimbert.cli import cli
from slimbert.compress.students import StudentShape, build_student
from slimbert.compress.tinybert import (
    Projections,
    TinyBERTConfig,
    attention_score_mse,
    intermediate_terms,
)
from slimbert.data import read_examples
from slimbert.errors import SlimbertError
from slimbert.models import load_classifier, load_model_dir, load_tokenizer
from slimbert.teachers.word_augment import AugmentConfig, augment
from slimbert.training.capture import AttentionParts, TransformerOutputs, forward_internals
from slimbert.training.logits_cache import model_fingerprint
from slimbert.training.losses import attention_kl, hidden_cosine_loss, hint_loss
from tests.conftest import build_tokenizer


def _batch(tokenizer, texts):
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    return dict(encoded)


def test_recomputed_scores_softmax_to_the_models_attention(tiny_teacher):
    teacher = load_classifier(tiny_teacher).eval()
    batch = _batch(
        load_tokenizer(tiny_teacher), ["the movie was very good", "bad"]
    )  # second row padded
    with torch.no_grad():
        out = forward_internals(teacher, batch, attentions=True)
    assert len(out.attention_parts) == 4
    padded = (batch["attention_mask"] == 0)[:, None, None, :]  # (B, 1, 1, T)
    for parts, probabilities in zip(out.attention_parts, out.attentions, strict=True):
        scores = parts.scores()  # (B, nh, T, T)
        assert scores.shape == probabilities.shape == (2, 4, 7, 7)
        rebuilt = scores.masked_fill(padded, torch.finfo(scores.dtype).min).softmax(-1)
        assert torch.allclose(rebuilt, probabilities, atol=1e-6)
    # the hooks are gone afterwards
    assert all(
        not layer.attention.self.query._forward_hooks for layer in teacher.bert.encoder.layer
    )


def _outputs(parts, mask, hidden=None, attentions=None) -> TransformerOutputs:
    mask = torch.tensor(mask)
    return TransformerOutputs(
        logits=torch.zeros(mask.shape[0], 2),
        attention_mask=mask,
        hidden_states=hidden,
        attentions=attentions,
        attention_parts=parts,
    )


def test_attention_score_mse_against_hand_value_and_ignores_padding():
    # one head of size 2, three tokens, the third is padding
    def parts(query, key):
        q, k = torch.tensor([query], dtype=torch.float), torch.tensor([key], dtype=torch.float)
        return (AttentionParts(q, k, torch.zeros_like(q), heads=1),)

    student = _outputs(parts([[1, 0], [0, 1], [5, 5]], [[1, 1], [0, 1], [9, 9]]), [[1, 1, 0]])
    teacher = _outputs(parts([[1, 0], [0, 1], [7, 7]], [[0, 1], [1, 1], [3, 3]]), [[1, 1, 0]])
    # real 2×2 scores ·√2: student [[1, 0], [1, 1]], teacher [[0, 1], [1, 1]]
    # → ((1/√2)² + (1/√2)²) / 4
    value = attention_score_mse([0])(student, teacher, {})
    assert math.isclose(float(value), 0.25, rel_tol=1e-6)
    moved = _outputs(parts([[1, 0], [0, 1], [-50, 2]], [[1, 1], [0, 1], [4, -40]]), [[1, 1, 0]])
    assert math.isclose(float(attention_score_mse([0])(moved, teacher, {})), 0.25, rel_tol=1e-6)


def test_hint_cosine_and_attention_kl_terms_against_hand_values():
    mask = [[1, 1, 0]]
    student_states = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [9.0, 9.0]]])
    teacher_states = torch.tensor([[[0.0, 1.0], [2.0, 2.0], [0.0, 0.0]]])
    student = _outputs(None, mask, hidden=(student_states,))
    teacher = _outputs(None, mask, hidden=(teacher_states,))
    # MSE over the two real tokens: ((1)² + (1)² + (1)² + (1)²) / 4 = 1
    assert math.isclose(float(hint_loss([(0, 0)])(student, teacher, {})), 1.0, rel_tol=1e-6)
    double = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        double.weight.copy_(2 * torch.eye(2))
    # 2·student: [[2, 0], [2, 2]] vs [[0, 1], [2, 2]] → (4 + 1 + 0 + 0) / 4
    assert math.isclose(
        float(hint_loss([(0, 0)], double)(student, teacher, {}).detach()), 1.25, rel_tol=1e-6
    )
    # cosine: token 1 orthogonal (1 − 0), token 2 parallel (1 − 1): mean 0.5
    assert math.isclose(float(hidden_cosine_loss(0, 0)(student, teacher, {})), 0.5, rel_tol=1e-6)

    student_map = torch.tensor([0.25, 0.75, 0.0]).expand(1, 1, 3, 3)
    teacher_map = torch.tensor([0.5, 0.5, 0.0]).expand(1, 1, 3, 3)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # 0.1438, each real row
    kl = attention_kl([(0, 0)])(
        _outputs(None, mask, attentions=(student_map,)),
        _outputs(None, mask, attentions=(teacher_map,)),
        {},
    )
    assert math.isclose(float(kl), expected, rel_tol=1e-5)
    assert math.isclose(expected, 0.143841, rel_tol=1e-5)


def test_student_at_teacher_width_copies_the_mapped_layers(tiny_teacher):
    teacher = load_classifier(tiny_teacher)
    student, init = build_student(teacher, StudentShape(layers=2), [1, 3])
    assert init.random == [] and len(init.copied) == len(student.state_dict())
    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    for key, value in student_state.items():
        source = key.replace("encoder.layer.0.", "encoder.layer.1.", 1)
        if source == key:
            source = key.replace("encoder.layer.1.", "encoder.layer.3.", 1)
        assert torch.equal(teacher_state[source], value), (key, source)


def test_narrow_student_copies_only_matching_shapes(tiny_teacher):
    teacher = load_classifier(tiny_teacher)
    narrow, init = build_student(
        teacher, StudentShape(layers=2, hidden=16, heads=2, ffn=24), [1, 3]
    )
    assert type(narrow).__name__ == "BertForSequenceClassification"
    assert (
        narrow.config.hidden_size,
        narrow.config.num_attention_heads,
        narrow.config.intermediate_size,
    ) == (16, 2, 24)
    assert init.copied == ["classifier.bias"]  # the only tensor not sized by the hidden width
    ffn_only, init = build_student(teacher, StudentShape(layers=2, ffn=24), [1, 3])
    assert sorted({k.split(".", 4)[-1] for k in init.random}) == [
        "intermediate.dense.bias",
        "intermediate.dense.weight",
        "output.dense.weight",
    ]
    assert (
        len(init.random) == 6
    )  # 3 FFN tensors × 2 layers; output.dense.bias and LayerNorms keep H
    with pytest.raises(SlimbertError, match="not a multiple of --heads 3"):
        build_student(teacher, StudentShape(layers=2, hidden=16, heads=3), [1, 3])


def test_tinybert4_preset_is_the_papers_tinybert4_shape():
    """TinyBERT-4 (Jiao et al., section 4.1): M = 4 layers, d' = 312, d'_i = 1200, h = 12 heads;
    every setting besides the shape keeps its default."""
    preset, default = TinyBERTConfig.tinybert4(), TinyBERTConfig()
    assert preset.shape() == StudentShape(layers=4, hidden=312, heads=12, ffn=1200)
    changed = {
        f.name
        for f in dataclasses.fields(preset)
        if getattr(preset, f.name) != getattr(default, f.name)
    }
    assert changed == {"layers", "hidden_size", "heads", "ffn_size"}


def test_projections_only_for_a_narrower_student():
    assert Projections.between(32, 32).modules() == []
    wide = Projections.between(16, 32)
    assert [tuple(m.weight.shape) for m in wide.modules()] == [(32, 16), (32, 16)]
    names = [t.name for t in intermediate_terms(TinyBERTConfig(), [1, 3], wide)]
    assert names == ["embedding", "attention", "hidden"]


def test_embedding_augmentation_draws_neighbours_and_caches(tiny_teacher, sst2_files):
    teacher = load_classifier(tiny_teacher)
    tokenizer = load_tokenizer(tiny_teacher)
    examples = read_examples(sst2_files[0]).subset(range(6))
    fingerprint = model_fingerprint(tiny_teacher)
    config = AugmentConfig(copies=3, prob=1.0, top_k=2, seed=7)
    result = augment(examples, teacher, tokenizer, fingerprint, config)
    assert result.mode == "embedding" and not result.from_cache
    assert len(result.examples) == 18 and result.sources == [i for i in range(6) for _ in range(3)]
    assert result.examples.labels == [examples.labels[i] for i in result.sources]
    # p = 1: every word is replaced by one of its 2 nearest whole-word input embeddings
    weights = torch.nn.functional.normalize(teacher.get_input_embeddings().weight.detach(), dim=-1)
    vocab = tokenizer.convert_ids_to_tokens(list(range(weights.shape[0])))
    pool = [
        i
        for i, t in enumerate(vocab)
        if t.isalpha() and len(t) > 1 and i not in tokenizer.all_special_ids
    ]
    for copy, source in zip(result.examples.texts, result.sources, strict=True):
        for old, new in zip(examples.texts[source].split(), copy.split(), strict=True):
            old_id = vocab.index(old)
            ranked = [
                pool[j]
                for j in (weights[[old_id]] @ weights[pool].T)[0].topk(3).indices.tolist()
                if pool[j] != old_id
            ][:2]
            assert new in [vocab[i] for i in ranked], (old, new)
    assert result.replaced_words == sum(len(examples.texts[s].split()) for s in result.sources)
    again = augment(examples, teacher, tokenizer, fingerprint, config)
    assert (
        again.from_cache
        and again.examples.texts == result.examples.texts
        and again.cache_file == result.cache_file
    )
    fewer = augment(
        examples,
        teacher,
        tokenizer,
        fingerprint,
        AugmentConfig(copies=3, prob=0.3, top_k=2, seed=7),
    )
    assert fewer.cache_file != result.cache_file
    assert fewer.replaced_words == 31  # pinned: seed 7, 90 replaceable words, p = 0.3


def test_mlm_augmentation_uses_masked_predictions(tmp_path, tiny_teacher, tiny_base, sst2_files):
    from transformers import BertConfig, BertForMaskedLM

    folder = tmp_path / "mlm"
    tokenizer = build_tokenizer(folder)
    torch.manual_seed(3)
    mlm = BertForMaskedLM(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=64,
        )
    )
    mlm.save_pretrained(str(folder), safe_serialization=True)
    examples = read_examples(sst2_files[0]).subset(range(4))
    teacher = load_classifier(tiny_teacher)
    result = augment(
        examples,
        teacher,
        load_tokenizer(tiny_teacher),
        "unused",
        AugmentConfig(copies=2, prob=1.0, top_k=3, mlm=str(folder)),
    )
    assert result.mode == "mlm" and result.source_model == str(folder)
    # the first word of example 0, masked in its own sentence: the copy holds one of its top
    # predictions
    words = examples.texts[0].split()
    masked = " ".join(["[MASK]", *words[1:]])
    encoded = tokenizer(masked, return_tensors="pt")
    with torch.no_grad():
        logits = mlm.eval()(**encoded).logits[0, 1]  # position 1: after [CLS]
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    ranked = [
        vocab[i]
        for i in logits.topk(12).indices.tolist()
        if vocab[i].isalpha()
        and len(vocab[i]) > 1
        and i not in tokenizer.all_special_ids
        and vocab[i] != words[0]
    ][:3]
    assert result.examples.texts[0].split()[0] in ranked
    with pytest.raises(SlimbertError, match="has no masked-LM head"):
        augment(
            examples,
            teacher,
            load_tokenizer(tiny_teacher),
            "unused",
            AugmentConfig(copies=1, mlm=str(tiny_base)),
        )


# First losses of the real CLI on the sharp 4-layer teacher: a 2-layer, hidden-16, 2-head student,
# general distillation on 3 lines, augmentation (2 copies, p 0.3), 2 steps per stage, seed 0.
PINNED = {
    "general": [
        {"loss": 4.387170, "embedding": 1.412623, "attention": 0.4400741, "hidden": 2.534472},
        {"loss": 4.378666, "embedding": 1.411019, "attention": 0.4399906, "hidden": 2.527657},
    ],
    "intermediate": [
        {"loss": 4.272801, "embedding": 1.345871, "attention": 0.4233240, "hidden": 2.503606},
        {"loss": 4.279827, "embedding": 1.363459, "attention": 0.4097842, "hidden": 2.506584},
    ],
    "prediction": [
        {"loss": 6.202079e-5, "soft": 6.202079e-5},
        {"loss": 5.513913e-5, "soft": 5.513913e-5},
    ],
}


def test_cli_narrow_student_pins_first_losses_and_exports(tmp_path, sharp_teacher, sst2_files):
    train, dev = sst2_files
    text = tmp_path / "general.txt"
    text.write_text("the movie was good\n\nthe plot was bad\nawful film , great actor\n")
    out = tmp_path / "student"
    args = [
        "compress",
        "tinybert",
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
        "--general-text",
        str(text),
        "--augment",
        "--augment-copies",
        "2",
        "--augment-prob",
        "0.3",
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
    assert "student saved to" in result.output
    meta = json.loads((out / "slimbert.json").read_text())
    assert meta["schema_version"] == 1  # written through slimbert.record
    assert (
        meta["method"] == "tinybert" and meta["layer_map"] == [1, 3] and meta["projection"] is True
    )
    assert meta["attention_heads"] == "head-mean" and meta["augmentation"]["mode"] == "embedding"
    assert meta["train_rows"] == 64 * 3 and meta["stages"]["general"]["texts"] == 3
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
    model, _, saved = load_model_dir(out)
    assert (
        type(model).__name__ == "BertForSequenceClassification" and model.config.hidden_size == 16
    )
    assert saved.parameters == sum(p.numel() for p in model.parameters())

    exported = CliRunner().invoke(
        cli, ["export", "--model", str(out), "--eval", str(dev), "--out", str(tmp_path / "onnx")]
    )
    assert exported.exit_code == 0, exported.output
    manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    assert (
        manifest["validation"]["max_abs_diff"] < 1e-4
        and manifest["validation"]["label_agreement"] == 100.0
    )


# --- relative positions: DeBERTa-v2/v3's disentangled scores, caught where the model makes them


def _deberta(folder, style: str, seed: int = 0, dropout: float = 0.0, layers: int = 4):
    """A tiny random DeBERTa classifier saved in `folder`: "v2" (separate position projections,
    no buckets) or "v3" (shared keys, log buckets, normed relative embeddings)."""
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    from tests.conftest import WORDS
    from tests.family_models import build_tokenizer as family_tokenizer

    texts = [" ".join(WORDS[i : i + 6]) for i in range(len(WORDS) - 5)]
    tokenizer = family_tokenizer("deberta-v3", folder, texts, vocab_size=120)
    style_config = {
        "v2": dict(share_att_key=False, position_buckets=-1, norm_rel_ebd="none"),
        "v3": dict(share_att_key=True, position_buckets=16, norm_rel_ebd="layer_norm"),
    }[style]
    config = DebertaV2Config(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=66,
        type_vocab_size=0,
        relative_attention=True,
        max_relative_positions=-1,
        pos_att_type=["p2c", "c2p"],
        position_biased_input=False,
        num_labels=2,
        id2label={0: "0", 1: "1"},
        label2id={"0": 0, "1": 1},
        initializer_range=0.2,  # scores of a few units, as a trained model's (0.02 gives ~0)
        **style_config,
    )
    torch.manual_seed(seed)
    DebertaV2ForSequenceClassification(config).save_pretrained(str(folder), safe_serialization=True)
    return folder


def _real_rows(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) True where query and key are both real tokens."""
    return (mask[:, None, :, None] * mask[:, None, None, :]).bool()


@pytest.mark.parametrize("style", ["v2", "v3"])
def test_deberta_scores_with_caught_position_terms_softmax_to_its_attention(tmp_path, style):
    # dropout on the relative embeddings (train mode, seeded): only terms caught as the model
    # computed them, not recomputed ones, can rebuild its attention
    folder = _deberta(tmp_path / style, style, dropout=0.5)
    model, tokenizer = load_classifier(folder).train(), load_tokenizer(folder)
    batch = _batch(tokenizer, ["the movie was very good", "bad"])  # second row padded
    torch.manual_seed(1)
    with torch.no_grad():
        out = forward_internals(model, batch, attentions=True)
    real = _real_rows(batch["attention_mask"])
    without_terms = 0.0
    for parts, probabilities in zip(out.attention_parts, out.attentions, strict=True):
        assert parts.scale == 3.0 and parts.terms is not None  # 1 + c2p + p2c
        scores = parts.scores()  # (B, nh, T, T)
        assert scores.shape == probabilities.shape
        rebuilt = scores.masked_fill(~real, torch.finfo(scores.dtype).min).softmax(-1)
        # DeBERTa masks padded query rows too (uniform there); real rows are what TinyBERT reads
        torch.testing.assert_close(
            rebuilt.masked_fill(~real, 0), probabilities.masked_fill(~real, 0), atol=1e-6, rtol=0
        )
        plain = AttentionParts(parts.query, parts.key, parts.value, heads=parts.heads)
        bare = plain.scores().masked_fill(~real, torch.finfo(scores.dtype).min).softmax(-1)
        without_terms = max(
            without_terms, float((bare - probabilities).masked_fill(~real, 0).abs().max())
        )
    assert without_terms > 0.3  # Q·Kᵀ/√d alone, the old recomputation, is not its attention
    # the wrapper is gone afterwards: the class's own method again
    attention = model.deberta.encoder.layer[0].attention.self
    assert "disentangled_attention_bias" not in attention.__dict__
    assert not attention.query_proj._forward_hooks and not attention._forward_pre_hooks


def _hand_deberta_scores(layer, hidden, rel_embeddings, heads: int) -> torch.Tensor:
    """DeBERTa-v2 disentangled scores written out (He et al. 2021, eq. 4, no buckets):
    A_ij = (Q_i·K_j + Q_i·Kr_{δ(i,j)} + K_j·Qr_{δ(i,j)}) / √(3d), δ(i,j) = i − j + k, k the
    span (rows of the relative embeddings / 2). hidden (B, T, H) → (B, nh, T, T)."""
    attention = layer.attention.self

    def heads_of(x):  # (..., H) → (..., nh, d)
        return x.view(*x.shape[:-1], heads, -1)

    query = heads_of(attention.query_proj(hidden))  # (B, T, nh, d)
    key = heads_of(attention.key_proj(hidden))
    position_key = heads_of(attention.pos_key_proj(rel_embeddings))  # (2k, nh, d)
    position_query = heads_of(attention.pos_query_proj(rel_embeddings))
    length, span = hidden.shape[1], rel_embeddings.shape[0] // 2
    delta = torch.arange(length)[:, None] - torch.arange(length)[None, :] + span  # (T, T)
    content = torch.einsum("bind,bjnd->bnij", query, key)
    c2p = torch.einsum("bind,ijnd->bnij", query, position_key[delta])
    p2c = torch.einsum("bjnd,ijnd->bnij", key, position_query[delta])
    return (content + c2p + p2c) / math.sqrt(3 * query.shape[-1])


def test_cli_tinybert_on_deberta_v2_pins_the_attention_loss_by_hand(tmp_path, sst2_files):
    """The CLI's first attention loss on a DeBERTa-v2 teacher (4 layers) and its 2-layer student
    (teacher layers 1 and 3, copied) equals Σ_m MSE over real query/key pairs of the hand-written
    disentangled scores: one batch holds all 64 training rows, so the step-1 loss is over them."""
    teacher_dir = _deberta(tmp_path / "teacher", "v2", seed=3)
    train, dev = sst2_files
    out = tmp_path / "student"
    args = ["compress", "tinybert", "--teacher", str(teacher_dir), "--out", str(out)]
    args += ["--train", str(train), "--eval", str(dev), "--layers", "2", "--max-steps", "1"]
    args += ["--batch-size", "64", "--max-length", "32", "--seed", "0", "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "slimbert.json").read_text())
    assert meta["layer_map"] == [1, 3] and meta["attention_heads"] == "per-head"
    logged = meta["first_losses"]["intermediate"][0]["attention"]

    teacher = load_classifier(teacher_dir).eval()
    student, init = build_student(teacher, StudentShape(layers=2), [1, 3])
    assert init.random == []
    texts = read_examples(train).texts
    batch = load_tokenizer(teacher_dir)(
        texts, padding=True, truncation=True, max_length=32, return_tensors="pt"
    )
    real = _real_rows(batch["attention_mask"])  # (B, 1, T, T)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    total = 0.0
    with torch.no_grad():
        states = {
            "teacher": teacher(**inputs, output_hidden_states=True).hidden_states,
            "student": student.eval()(**inputs, output_hidden_states=True).hidden_states,
        }
        scores = {}
        for name, model in (("teacher", teacher), ("student", student)):
            rel = model.deberta.encoder.rel_embeddings.weight  # norm_rel_ebd "none": as stored
            scores[name] = [
                _hand_deberta_scores(layer, states[name][index], rel, heads=4)
                for index, layer in enumerate(model.deberta.encoder.layer)
            ]
        for s, t in enumerate([1, 3]):
            squared = (scores["student"][s] - scores["teacher"][t]).pow(2) * real
            total += float(squared.sum() / (real.sum() * 4))
    # the student's layer 0 reads the embeddings where teacher layer 1 read layer 0's output
    assert total > 1.0
    assert math.isclose(logged, total, rel_tol=1e-4), (logged, total)
    assert math.isclose(total, 1.688, rel_tol=1e-3)  # 1.68849 on transformers 4.57, 1.68813 on 5
    # the hand scores are the model's: their softmax is its attention map on real rows
    with torch.no_grad():
        maps = teacher(**inputs, output_attentions=True).attentions
    hand = scores["teacher"][2].masked_fill(~real, torch.finfo(torch.float32).min).softmax(-1)
    torch.testing.assert_close(
        hand.masked_fill(~real, 0), maps[2].masked_fill(~real, 0), atol=1e-6, rtol=0
    )


def test_deberta_without_relative_attention_is_refused_in_one_line():
    from transformers import DebertaV2Config

    from slimbert.families import family_of

    config = DebertaV2Config(relative_attention=False, pos_att_type=["c2p"])
    family = family_of(config)
    assert not family.scores_readable(config)
    with pytest.raises(SlimbertError, match="with relative_attention off never computes") as info:
        family.check_attention_scores(config)
    assert "\n" not in str(info.value) and "--attention-weight 0" in str(info.value)
    relative = DebertaV2Config(relative_attention=True, pos_att_type=["c2p", "p2c"])
    assert family.scores_readable(relative)
    family.check_attention_scores(relative)  # no refusal


def test_prediction_loss_labels_replaces_only_the_last_stage(tmp_path, sharp_teacher, sst2_files):
    """--prediction-loss labels (TinyBERT's 'w/o Pred' ablation): the intermediate stage is the
    same run to the bit, the last stage's one term is the cross-entropy on the gold labels (on a
    fresh 2-class head, about ln 2), and a teacher route is refused with it in one line."""
    train, dev = sst2_files

    def run(name, *extra):
        args = ["compress", "tinybert", "--teacher", str(sharp_teacher), "--out",
                str(tmp_path / name), "--train", str(train), "--eval", str(dev), "--layers", "1",
                "--max-steps", "2", "--batch-size", "8", "--seed", "0", "--no-progress",
                *extra]  # fmt: skip
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        return json.loads((tmp_path / name / "slimbert.json").read_text())

    soft, labels = run("soft"), run("labels", "--prediction-loss", "labels")
    assert labels["method_config"]["prediction_loss"] == "labels"
    assert labels["first_losses"]["intermediate"] == soft["first_losses"]["intermediate"]
    first_soft = soft["first_losses"]["prediction"][0]
    first_hard = labels["first_losses"]["prediction"][0]
    assert "soft" in first_soft and "hard" not in first_soft
    assert "hard" in first_hard and "soft" not in first_hard
    assert abs(first_hard["hard"] - math.log(2)) < 0.05, first_hard
    refused = CliRunner().invoke(cli, ["compress", "tinybert", "--teacher", str(sharp_teacher),
                                       "--out", str(tmp_path / "r"), "--train", str(train),
                                       "--eval", str(dev), "--prediction-loss", "labels",
                                       "--teacher-route", str(tmp_path)])  # fmt: skip
    assert refused.exit_code != 0
    assert "with --prediction-loss labels there are none to walk" in refused.output
