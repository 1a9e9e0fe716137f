"""professor augment (PS-DA): the pair algebra on a hand-made graph, the eval-leakage guard,
dedup, caps, the teacher filter, and the TSV and report it writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from slimbert.batches import DataSpec
from slimbert.cli import cli
from slimbert.data import Columns, read_examples, text_key
from slimbert.errors import SlimbertError
from slimbert.teachers.pair_augment import PairAugmentConfig, augment_pairs, derive, report_path

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
    derivation = derive(pairs, {text_key("  Sentence F ")}, PairAugmentConfig(per_pair=1))
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
    trained = {frozenset((text_key(a), text_key(b))) for a, b, _ in GRAPH}
    new = [
        frozenset(
            (
                text_key(derivation.sentences[p.first]),
                text_key(derivation.sentences[p.second]),
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
    assert not any(text_key(t) == "sentence f" for t in back.texts[15:] + back.text_pairs[15:])
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


def test_professor_augment_refuses_a_transfer_set_in_one_line(tmp_path):
    """The shared data flags include --transfer, but the pair graph follows from the gold labels
    alone: a teacher-labelled transfer set is refused, not silently dropped."""
    train = _write_mrpc(tmp_path / "train.tsv", GRAPH)
    dev = _write_mrpc(tmp_path / "dev.tsv", [("sentence f", "sentence z", "1")])
    transfer = tmp_path / "transfer.jsonl"
    transfer.write_text(
        json.dumps({"text": "sentence x", "text_pair": "sentence y", "label": "1"}) + "\n"
    )
    out = tmp_path / "aug.tsv"
    args = ["professor", "augment", "--train", train, "--eval", dev, "--out", out]
    result = CliRunner().invoke(cli, [str(a) for a in [*args, "--transfer", transfer]])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert f"--transfer {transfer}: professor augment derives pairs from the training file's" in (
        result.output
    )
    assert "give it to the command that trains" in result.output
    assert not out.exists() and not report_path(out).exists()
    with pytest.raises(SlimbertError, match="reads no transfer set"):
        augment_pairs(DataSpec(train, dev, transfer=transfer), out, PairAugmentConfig())
