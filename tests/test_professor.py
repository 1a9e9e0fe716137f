"""professor boost (SAMME, the ensemble artifact as a kd teacher) and professor augment (the
pair algebra, eval-leakage guard, dedup, caps, teacher filter)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import build_bert, sentiment_rows, write_sst2

from slimbert.batches import DataSpec
from slimbert.cli import cli
from slimbert.data import Columns, read_examples
from slimbert.errors import SlimbertError
from slimbert.teachers.boost import BoostConfig, boost, samme_step, weighted_hard_loss
from slimbert.teachers.ensemble import EnsembleClassifier, combine_logits
from slimbert.teachers.pair_augment import (
    PairAugmentConfig,
    augment_pairs,
    derive,
    report_path,
    sentence_key,
)
from slimbert.training.loop import TrainConfig

# ---------------------------------------------------------------------------------------------
# SAMME


def test_samme_three_classes_hand_computed():
    # err = 0.25; α = log(0.75 / 0.25) + log(3 − 1) = log 6; the one miss goes 0.25 → 0.25·6 = 1.5,
    # then everything is divided by 1.5 + 3·0.25 = 2.25.
    step = samme_step(np.full(4, 0.25), np.array([True, False, False, False]), num_classes=3)
    assert step.error == pytest.approx(0.25)
    assert step.alpha == pytest.approx(math.log(6.0))
    np.testing.assert_allclose(step.weights, [2 / 3, 1 / 9, 1 / 9, 1 / 9], rtol=1e-12)
    assert not step.chance and not step.perfect


def test_samme_binary_non_uniform_and_shrinkage():
    # err = 0.2 / 1.0; α = log(0.8 / 0.2) + log 1 = log 4; w = [0.1, 0.8, 0.3, 0.4] / 1.6.
    weights = np.array([0.1, 0.2, 0.3, 0.4])
    miss = np.array([False, True, False, False])
    step = samme_step(weights, miss, num_classes=2)
    assert step.error == pytest.approx(0.2)
    assert step.alpha == pytest.approx(math.log(4.0))
    np.testing.assert_allclose(step.weights, [0.0625, 0.5, 0.1875, 0.25], rtol=1e-12)
    # ν = 0.5: α = log 2, the miss doubles: [0.1, 0.4, 0.3, 0.4] / 1.2.
    half = samme_step(weights, miss, num_classes=2, shrinkage=0.5)
    assert half.alpha == pytest.approx(math.log(2.0))
    np.testing.assert_allclose(half.weights, np.array([0.1, 0.4, 0.3, 0.4]) / 1.2, rtol=1e-12)


def test_samme_chance_and_perfect_members():
    chance = samme_step(np.full(4, 0.25), np.array([True, True, False, False]), num_classes=2)
    assert chance.chance and chance.alpha == pytest.approx(0.0)
    np.testing.assert_allclose(chance.weights, np.full(4, 0.25))
    # No misses: err is clipped to half an example, 0.5 / 4, so α = log(0.875 / 0.125) = log 7.
    perfect = samme_step(np.full(4, 0.25), np.zeros(4, dtype=bool), num_classes=2)
    assert perfect.perfect and perfect.error == 0.0
    assert perfect.alpha == pytest.approx(math.log(7.0))
    np.testing.assert_allclose(perfect.weights, np.full(4, 0.25))


def test_weighted_hard_loss_matches_cross_entropy_at_uniform_weights():
    from slimbert.training.outputs import Outputs

    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-1.0, 1.0]])
    labels = torch.tensor([0, 1, 0])
    batch = {"idx": torch.tensor([0, 1, 2]), "labels": labels}
    outputs = Outputs(logits=logits, attention_mask=torch.ones(3, 2))
    uniform = weighted_hard_loss(torch.full((3,), 1 / 3))(outputs, None, batch)
    assert float(uniform) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, labels)), rel=1e-6
    )
    # All weight on example 2: n · w = [0, 0, 3], so the loss is CE_2 · 3 / 3 = CE_2.
    focused = weighted_hard_loss(torch.tensor([0.0, 0.0, 1.0]))(outputs, None, batch)
    assert float(focused) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits[2:], labels[2:])), rel=1e-6
    )


def test_ensemble_classifier_weights_logits(tmp_path):
    from slimbert.models import load_classifier

    first = load_classifier(build_bert(tmp_path / "a", layers=1, seed=1)).eval()
    second = load_classifier(build_bert(tmp_path / "b", layers=1, seed=2)).eval()
    inputs = {
        "input_ids": torch.tensor([[2, 5, 9, 3], [2, 7, 3, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
    }
    with torch.no_grad():
        a, b = first(**inputs).logits, second(**inputs).logits  # (2, 2) each
        mixed = EnsembleClassifier([first, second], [1.0, 3.0])(**inputs).logits
        mixture = EnsembleClassifier([first, second], [1.0, 3.0], combine="probabilities")(
            **inputs
        ).logits
    torch.testing.assert_close(mixed, 0.25 * a + 0.75 * b, rtol=0, atol=1e-6)
    torch.testing.assert_close(
        mixture.exp(), 0.25 * a.softmax(-1) + 0.75 * b.softmax(-1), rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(
        combine_logits([a.numpy(), b.numpy()], [1.0, 3.0]), mixed.numpy(), atol=1e-6
    )
    np.testing.assert_allclose(
        combine_logits([a.numpy(), b.numpy()], [1.0, 3.0], "probabilities"),
        mixture.numpy(),
        atol=1e-6,
    )


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory) -> tuple[Path, DataSpec, dict]:
    """A 2-round professor boosted from a tiny 2-layer base on the tiny sentiment files, six of
    whose training labels are flipped so that round 1 has errors to reweight."""
    folder = tmp_path_factory.mktemp("boost")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = build_bert(folder / "base", layers=2, num_labels=None)
        rows = [
            (text, 1 - label if i < 6 else label)
            for i, (text, label) in enumerate(sentiment_rows(64, 1))
        ]
        spec = DataSpec(
            write_sst2(folder / "train.tsv", rows),
            write_sst2(folder / "dev.tsv", sentiment_rows(24, 2)),
            max_length=32,
        )
        config = TrainConfig(
            max_steps=24, batch_size=16, lr=3e-3, patience=0, eval_every=24, progress=False, seed=42
        )
        meta = boost(str(base), spec, folder / "professor", BoostConfig(rounds=2), config)
    finally:
        torch.set_num_threads(threads)
    return folder / "professor", spec, meta


def test_boost_writes_an_ensemble_whose_rounds_follow_samme(ensemble):
    path, spec, meta = ensemble
    record = json.loads((path / "ensemble.json").read_text())
    assert record["format"] == "slimbert-ensemble/1" and record["members"] == [
        "member-0",
        "member-1",
    ]
    assert (path / "member-0" / "model.safetensors").is_file() and (path / "vocab.txt").is_file()
    assert sum(record["weights"]) == pytest.approx(1.0)
    first, second = meta["rounds"]
    # Round 1 trains on uniform weights; its vote follows SAMME from its own error (K = 2).
    assert first["largest_weight_x_n"] == pytest.approx(1.0)
    assert first["alpha"] == pytest.approx(
        math.log(
            (1 - max(first["weighted_error"], 0.5 / 64)) / max(first["weighted_error"], 0.5 / 64)
        )
    )
    assert first["train_errors"] == round(first["weighted_error"] * 64)
    # Round 2 trained on weights raised on round 1's misses: each miss weighs (1 − err) / err
    # times a hit, i.e. n · w = 1 / (2 · err) for a miss.
    assert first["train_errors"] > 0 and second["kept"]
    assert second["largest_weight_x_n"] == pytest.approx(1 / (2 * first["weighted_error"]))
    assert record["alphas"] == pytest.approx([first["alpha"], second["alpha"]])
    assert meta["best_member"] == f"member-{record['best_member']}"


def test_ensemble_is_a_kd_teacher(ensemble, tmp_path):
    """compress kd --teacher <ensemble>: the cached logits are the vote-weighted members', the
    teacher figure is the ensemble's, and the student is cut from the best member."""
    from safetensors.torch import load_file

    from slimbert.batches import make_loader, predict_logits, prepare
    from slimbert.compress.students import StudentShape, build_student, pick_layers
    from slimbert.models import load_model_dir
    from slimbert.teachers.load import load_teacher
    from slimbert.teachers.logits import cache_dir

    path, spec, meta = ensemble
    out = tmp_path / "student"
    result = CliRunner().invoke(
        cli,
        [
            "compress",
            "kd",
            "--teacher",
            str(path),
            "--train",
            str(spec.train),
            "--eval",
            str(spec.eval),
            "--out",
            str(out),
            "--layers",
            "1",
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
    student_meta = json.loads((out / "slimbert.json").read_text())
    assert student_meta["teacher_metric"]["f1"] == pytest.approx(meta["metric"]["f1"], abs=1e-6)

    record = json.loads((path / "ensemble.json").read_text())
    members = [load_model_dir(path / name)[0] for name in record["members"]]
    teacher = load_teacher(path)
    data = prepare(spec, teacher.tokenizer, label_map=teacher.label_map, task=teacher.task)
    loader = make_loader(data.train_set, 64, shuffle=False)
    expected = combine_logits(
        [predict_logits(m, loader) for m in members], record["weights"]
    )  # (N, C)
    cached = list((cache_dir() / "logits").glob("*.safetensors"))
    assert len(cached) == 1
    np.testing.assert_allclose(load_file(str(cached[0]))["logits"].numpy(), expected, atol=1e-5)

    # lr 1e-9 for one step leaves the student where build_student put it: the best member's layers.
    best = members[record["best_member"]]
    reference = build_student(best, StudentShape(1), pick_layers(2, 1))[0].state_dict()
    trained = load_model_dir(out)[0].state_dict()
    for key in (
        "bert.embeddings.word_embeddings.weight",
        "bert.encoder.layer.0.attention.self.query.weight",
        "classifier.weight",
    ):
        torch.testing.assert_close(trained[key], reference[key], rtol=0, atol=1e-6)


def test_ensemble_gives_logits_only(ensemble):
    from slimbert.teachers.load import load_teacher

    teacher = load_teacher(ensemble[0])
    assert teacher.is_ensemble and teacher.members == 2
    with pytest.raises(SlimbertError, match="logits only"):
        teacher.model(
            input_ids=torch.tensor([[2, 3]]),
            attention_mask=torch.ones(1, 2, dtype=torch.long),
            output_hidden_states=True,
        )


def test_boost_refuses_regression(tmp_path, tiny_base):
    path = tmp_path / "stsb.tsv"
    path.write_text(
        "sentence1\tsentence2\tscore\ngood movie\tgreat film\t4.5\nbad plot\tgood actor\t1.0\n"
    )
    with pytest.raises(SlimbertError, match="classification"):
        boost(
            str(tiny_base),
            DataSpec(path, path, max_length=16),
            tmp_path / "out",
            BoostConfig(rounds=2),
            TrainConfig(max_steps=1, progress=False),
        )
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# Augmentation on a hand-made pair graph
#
#   A ~ B ~ C ≁ D,  B ~ A again (spelled "SENTENCE B" / "sentence   a"),  C ~ A
#   E ≁ F ~ V,  W ~ E                      F is an eval sentence
#   P ~ Q ~ R ≁ S ~ P                      a cycle: P–R and Q–S derive both ways
#   H ~ I, H ~ J, H ~ K                    a hub, for the per-pair cap

GRAPH = [
    ("sentence a", "sentence b", "1"),  # line 2
    ("sentence b", "sentence c", "1"),
    ("sentence c", "sentence d", "0"),
    ("SENTENCE B", "sentence   a", "1"),  # line 5: the same pair reversed, spelled differently
    ("sentence e", "sentence f", "0"),
    ("sentence p", "sentence q", "1"),
    ("sentence q", "sentence r", "1"),
    ("sentence p", "sentence s", "1"),
    ("sentence s", "sentence r", "0"),
    ("sentence h", "sentence i", "1"),
    ("sentence h", "sentence j", "1"),
    ("sentence h", "sentence k", "1"),
    ("sentence f", "sentence v", "1"),
    ("sentence w", "sentence e", "1"),
    ("sentence c", "sentence a", "1"),  # line 16
]


def _letters(derivation, pair) -> tuple[str, str, bool]:
    return (
        derivation.sentences[pair.first][-1].lower(),
        derivation.sentences[pair.second][-1].lower(),
        pair.similar,
    )


def test_derive_rules_guard_dedup_and_cap():
    pairs = [(a, b, label == "1") for a, b, label in GRAPH]
    derivation = derive(pairs, {sentence_key("  Sentence F ")}, PairAugmentConfig(per_pair=1))
    by_rule = {}
    for pair in derivation.pairs:
        by_rule.setdefault(pair.rule, []).append((*_letters(derivation, pair), pair.source))
    # Mirrors of every pair except the two already present reversed (0 and 3) and the two with F.
    assert by_rule["symmetry"] == [
        ("c", "b", True, 1),
        ("d", "c", False, 2),
        ("q", "p", True, 5),
        ("r", "q", True, 6),
        ("s", "p", True, 7),
        ("r", "s", False, 8),
        ("i", "h", True, 9),
        ("j", "h", True, 10),
        ("k", "h", True, 11),
        ("e", "w", True, 13),
        ("a", "c", True, 14),
    ]
    # a~b~c ⇒ a–c is a training pair already (line 16): a duplicate, like b–c and a–b.
    # b~c≁d ⇒ b≁d; a~c≁d ⇒ a≁d; e≁f~v ⇒ e≁v (the path may pass through an eval sentence);
    # w~e≁f ⇒ w≁f contains f: dropped; p–r and q–s derive both ways: conflicts; i–j and i–k
    # are both credited to h~i, and the cap of 1 keeps i–j; j–k is h~j's.
    assert by_rule["transitivity-dissimilar"] == [
        ("b", "d", False, 1),
        ("d", "a", False, 2),
        ("e", "v", False, 4),
    ]
    assert by_rule["transitivity-similar"] == [("i", "j", True, 9), ("j", "k", True, 10)]
    counts = {
        rule: {k: v for k, v in vars(c).items() if v} for rule, c in derivation.counts.items()
    }
    assert counts == {
        "symmetry": {"derived": 15, "duplicate": 2, "eval_leak": 2},
        "transitivity-similar": {"derived": 8, "duplicate": 3, "conflict": 2, "cap": 1},
        "transitivity-dissimilar": {"derived": 6, "eval_leak": 1, "conflict": 2},
    }
    # Nothing new is a training pair or another new pair, in either order.
    trained = {frozenset((sentence_key(a), sentence_key(b))) for a, b, _ in GRAPH}
    new = [
        frozenset(
            (
                sentence_key(derivation.sentences[p.first]),
                sentence_key(derivation.sentences[p.second]),
            )
        )
        for p in derivation.pairs
        if p.rule != "symmetry"
    ]
    assert not set(new) & trained and len(set(new)) == len(new)


def test_derive_longer_paths_and_switches():
    pairs = [("a", "b", True), ("b", "c", True), ("c", "d", False)]
    two = derive(pairs, set(), PairAugmentConfig(symmetry=False))
    assert sorted(
        (two.sentences[p.first], two.sentences[p.second], p.similar) for p in two.pairs
    ) == [("a", "c", True), ("b", "d", False)]
    three = derive(pairs, set(), PairAugmentConfig(symmetry=False, max_path=3))
    assert sorted(
        (three.sentences[p.first], three.sentences[p.second], p.similar) for p in three.pairs
    ) == [("a", "c", True), ("a", "d", False), ("b", "d", False)]
    # Two dissimilar edges say nothing: a ≁ b ≁ c gives no a–c.
    assert (
        derive(
            [("a", "b", False), ("b", "c", False)],
            set(),
            PairAugmentConfig(symmetry=False, max_path=4),
        ).pairs
        == []
    )
    assert derive(pairs, set(), PairAugmentConfig(symmetry=False, transitivity=False)).pairs == []


def _write_mrpc(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    lines = ["\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
    lines += [f"{label}\t{i}\t{i + 1000}\t{a}\t{b}" for i, (a, b, label) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_augment_pairs_writes_a_tsv_the_reader_takes(tmp_path):
    train = _write_mrpc(tmp_path / "train.tsv", GRAPH)
    dev = _write_mrpc(tmp_path / "dev.tsv", [("Sentence  F", "sentence z", "1")])
    out = tmp_path / "aug" / "train-augmented.tsv"
    report = augment_pairs(DataSpec(train, dev), out, PairAugmentConfig(per_pair=1))
    back = read_examples(out, Columns())
    assert len(back) == report.output_rows == 15 + 11 + 5
    assert back.texts[:15] == [a for a, _, _ in GRAPH] and back.labels[:15] == [
        label for _, _, label in GRAPH
    ]
    assert (back.texts[15], back.text_pairs[15], back.labels[15]) == (
        "sentence c",
        "sentence b",
        "1",
    )
    assert (back.texts[-1], back.text_pairs[-1], back.labels[-1]) == (
        "sentence j",
        "sentence k",
        "1",
    )
    rules = [line.split("\t")[3] for line in out.read_text().splitlines()[1:]]
    assert (
        rules.count("original") == 15
        and rules.count("symmetry") == 11
        and rules.count("transitivity-dissimilar") == 3
    )
    assert (
        out.read_text().splitlines()[-1].split("\t")[4] == "12"
    )  # h~j sits on line 12 of train.tsv
    assert not any(sentence_key(t) == "sentence f" for t in back.texts[15:] + back.text_pairs[15:])
    saved = json.loads(report_path(out).read_text())
    assert (
        saved["added"] == 16
        and saved["labels_before"] == {"0": 3, "1": 12}
        and saved["labels_after"] == {"0": 8, "1": 23}
    )


def test_teacher_filter_counts_per_rule(tmp_path, monkeypatch):
    import slimbert.teachers.pair_augment as augment

    seen = {}

    def contradicts(
        teacher, first, second, similar, similar_label, dissimilar_label, confidence, max_length
    ):
        seen.update(
            teacher=teacher,
            n=len(first),
            labels=(similar_label, dissimilar_label),
            confidence=confidence,
        )
        return np.array(
            [
                "sentence h" in (a, b) or (a, b) == ("sentence b", "sentence d")
                for a, b in zip(first, second, strict=True)
            ]
        )

    monkeypatch.setattr(augment, "teacher_contradicts", contradicts)
    train = _write_mrpc(tmp_path / "train.tsv", GRAPH)
    dev = _write_mrpc(tmp_path / "dev.tsv", [("sentence f", "sentence z", "1")])
    report = augment_pairs(
        DataSpec(train, dev),
        tmp_path / "out.tsv",
        PairAugmentConfig(per_pair=1, filter_confidence=0.9),
        teacher=tmp_path / "teacher",
    )
    assert seen == {
        "teacher": tmp_path / "teacher",
        "n": 16,
        "labels": ("1", "0"),
        "confidence": 0.9,
    }
    assert (report.rules["symmetry"].filtered, report.rules["symmetry"].added) == (3, 8)
    assert (
        report.rules["transitivity-dissimilar"].filtered,
        report.rules["transitivity-dissimilar"].added,
    ) == (1, 2)
    assert report.output_rows == 15 + 8 + 2 + 2


def test_teacher_contradicts_with_a_real_teacher(tiny_teacher):
    from slimbert.models import load_model_dir
    from slimbert.teachers.pair_augment import teacher_contradicts

    first, second, similar = (
        ["good movie", "bad plot", "the film"],
        ["great film", "good actor", "a story"],
        [True, False, True],
    )
    model, tokenizer, _ = load_model_dir(tiny_teacher)
    with torch.no_grad():
        probabilities = model(
            **tokenizer(first, second, padding=True, return_tensors="pt")
        ).logits.softmax(-1)  # (3, 2)
    opposite = probabilities[
        torch.arange(3), torch.tensor([0, 1, 0])
    ]  # similar '1' ⇒ opposite id 0
    threshold = float(opposite.median())
    dropped = teacher_contradicts(tiny_teacher, first, second, similar, "1", "0", threshold, 32)
    assert dropped.tolist() == (opposite >= threshold).tolist() and dropped.sum() >= 1


def test_augment_refuses_single_sentences_and_bad_out(tmp_path, sst2_files):
    train, dev = sst2_files
    with pytest.raises(SlimbertError, match="TinyBERT"):
        augment_pairs(DataSpec(train, dev), tmp_path / "a.tsv", PairAugmentConfig())
    with pytest.raises(SlimbertError, match=r"\.tsv"):
        augment_pairs(DataSpec(train, dev), tmp_path / "a.csv", PairAugmentConfig())
    with pytest.raises(SlimbertError, match="together"):
        augment_pairs(
            DataSpec(train, dev), tmp_path / "a.tsv", PairAugmentConfig(filter_confidence=0.9)
        )


def test_professor_augment_cli(tmp_path):
    train = _write_mrpc(tmp_path / "train.tsv", GRAPH)
    dev = _write_mrpc(tmp_path / "dev.tsv", [("sentence f", "sentence z", "1")])
    result = CliRunner().invoke(
        cli,
        [
            "professor",
            "augment",
            "--train",
            str(train),
            "--eval",
            str(dev),
            "--out",
            str(tmp_path / "aug.tsv"),
            "--per-pair",
            "1",
            "--no-symmetry",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "transitivity-dissimilar" in result.output
        and len(read_examples(tmp_path / "aug.tsv")) == 15 + 5
    )
    bad = CliRunner().invoke(
        cli,
        [
            "professor",
            "augment",
            "--train",
            str(train),
            "--eval",
            str(dev),
            "--out",
            str(tmp_path / "x.tsv"),
            "--similar-label",
            "yes",
        ],
    )
    assert (
        bad.exit_code == 1
        and "--similar-label 'yes'" in bad.output
        and "Traceback" not in bad.output
    )


def test_boost_reuses_a_trained_teacher_as_round_one(ensemble, tmp_path):
    from slimbert.files import sha256_file

    path, spec, _ = ensemble
    base = path.parent / "base"
    config = TrainConfig(max_steps=1, progress=False)
    meta = boost(
        str(base),
        spec,
        tmp_path / "one",
        BoostConfig(rounds=1, first_member=path / "member-0"),
        config,
    )
    assert (
        meta["members"] == 1
        and meta["rounds"][0]["trained"] is False
        and meta["rounds"][0]["seed"] is None
    )
    assert sha256_file(tmp_path / "one" / "member-0" / "model.safetensors") == sha256_file(
        path / "member-0" / "model.safetensors"
    )
    assert meta["metric"] == meta["rounds"][0]["eval"]  # one member: the ensemble is that member
