"""TinyBERT: captured pre-softmax scores, its loss terms against hand values, narrow students,
augmentation (embedding neighbours and masked LM, cached), and the real CLI's first losses."""

from __future__ import annotations

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
from slimbert.teachers.logits import model_fingerprint
from slimbert.teachers.word_augment import AugmentConfig, augment
from slimbert.training.capture import AttentionParts, TransformerOutputs, forward_internals
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
