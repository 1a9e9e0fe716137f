"""From files to batches: prepare's label maps, checks and seeded subsets; tokenised items;
padding to each batch's longest row; length-grouped batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_tokenizer
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from slimbert.batches import (
    DataSpec,
    EncodedDataset,
    LengthGroupedBatches,
    collate,
    make_loader,
    predict_logits,
    prepare,
)
from slimbert.data import CLASSIFICATION, Examples, LabelMap, read_examples
from slimbert.errors import SlimbertError

# ids in conftest's vocabulary: [PAD] 0, [CLS] 2, [SEP] 3, then the words in order
CLS, SEP, GOOD, MOVIE, BAD, PLOT = 2, 3, 5, 23, 13, 25


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def write_tsv(path, header, rows):
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows))
    return path


@pytest.fixture
def files(tmp_path):
    """Ten training rows (labels pos / neg) and three eval rows."""
    train = write_tsv(
        tmp_path / "train.tsv",
        ["sentence", "label"],
        [(f"good movie {'very ' * i}".strip(), "pos" if i % 2 else "neg") for i in range(10)],
    )
    dev = write_tsv(
        tmp_path / "dev.tsv",
        ["sentence", "label"],
        [("bad plot", "neg"), ("good movie", "pos"), ("the film", "pos")],
    )
    return train, dev


def test_label_map_comes_from_the_training_labels(files, tokenizer):
    train, dev = files
    data = prepare(DataSpec(train, dev, max_length=16), tokenizer)
    assert data.task == CLASSIFICATION
    assert data.label_map.id2label == {0: "neg", 1: "pos"}
    assert data.eval_targets == [0, 1, 1]
    assert data.train_set.labels == [0, 1] * 5
    assert (len(data.train_set), len(data.eval_set)) == (10, 3)
    described = data.describe()
    assert described["train"]["rows"] == 10 and described["eval"]["rows"] == 3
    assert described["pair"] is False and described["max_length"] == 16


def test_a_given_label_map_wins_over_the_training_labels(files, tokenizer):
    """A fine-tuned model's own map: its ids, not the sorted training labels."""
    train, dev = files
    data = prepare(DataSpec(train, dev), tokenizer, label_map=LabelMap({0: "pos", 1: "neg"}))
    assert data.eval_targets == [1, 0, 0]


def test_pairs_against_single_texts_is_one_clear_error(files, tokenizer, tmp_path):
    train, _ = files
    pairs = write_tsv(
        tmp_path / "pairs.tsv", ["sentence1", "sentence2", "label"], [("good", "bad", "neg")]
    )
    with pytest.raises(SlimbertError, match="has pairs but .*train.tsv has single texts"):
        prepare(DataSpec(train, pairs), tokenizer)


def test_one_training_label_is_refused(tmp_path, tokenizer):
    train = write_tsv(tmp_path / "one.tsv", ["sentence", "label"], [("good", "pos")] * 3)
    with pytest.raises(SlimbertError, match="only one label \\('pos'\\)"):
        prepare(DataSpec(train, train), tokenizer)


def test_seeded_subset_is_reproducible_and_is_the_seeded_permutation(files, tokenizer):
    train, dev = files
    rows = read_examples(train).texts
    first = prepare(DataSpec(train, dev, limit=4, sample_seed=7), tokenizer)
    again = prepare(DataSpec(train, dev, limit=4, sample_seed=7), tokenizer)
    other = prepare(DataSpec(train, dev, limit=4, sample_seed=8), tokenizer)
    picked = np.random.default_rng(7).permutation(10)[:4]
    assert first.train.texts == again.train.texts == [rows[i] for i in picked]
    assert first.train.fingerprint() == again.train.fingerprint()
    assert other.train.texts != first.train.texts
    # no seed: the first rows, in file order
    plain = prepare(DataSpec(train, dev, limit=4), tokenizer)
    assert plain.train.texts == rows[:4]


def test_encoded_items_are_cls_text_sep_and_truncate(tokenizer):
    examples = Examples(
        texts=["good movie", "bad plot good movie"],
        text_pairs=None,
        labels=["pos", "neg"],
        task=CLASSIFICATION,
        path=Path("<memory>"),
    )
    dataset = EncodedDataset(tokenizer, examples, max_length=4, label_ids=[1, 0])
    assert dataset[0]["input_ids"] == [CLS, GOOD, MOVIE, SEP]
    assert dataset[1]["input_ids"] == [CLS, BAD, PLOT, SEP]  # cut to max_length
    assert (dataset[1]["idx"], dataset[1]["labels"]) == (1, 0)


def test_collate_pads_each_batch_to_its_own_longest_row():
    items = [
        {"input_ids": [2, 5, 3], "attention_mask": [1, 1, 1], "idx": 4, "labels": 1},
        {"input_ids": [2, 5, 23, 13, 3], "attention_mask": [1] * 5, "idx": 9, "labels": 0},
    ]
    batch = collate(items, pad_id=7)
    assert batch["input_ids"].tolist() == [[2, 5, 3, 7, 7], [2, 5, 23, 13, 3]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["idx"].tolist() == [4, 9] and batch["labels"].dtype == torch.long
    regression = collate([{"input_ids": [2], "labels": 0.5}, {"input_ids": [2, 3], "labels": 4.0}])
    assert regression["labels"].dtype == torch.float32
    assert regression["input_ids"].tolist() == [[2, 0], [2, 3]]


def test_loader_batches_are_as_long_as_their_longest_row(files, tokenizer):
    train, dev = files
    data = prepare(DataSpec(train, dev), tokenizer)
    widths = [b["input_ids"].shape[1] for b in make_loader(data.train_set, 3, shuffle=False)]
    # rows are "good movie" + i × "very": 4 + i tokens, batches of rows 0-2, 3-5, 6-8, 9
    assert widths == [6, 9, 12, 13]


def test_length_grouped_batches_cover_every_row_once_and_sort_within_a_window():
    lengths = [5, 1, 9, 3, 7, 2, 8, 4, 6, 10]
    sampler = LengthGroupedBatches(lengths, 3, torch.Generator().manual_seed(0), window=10)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 4
    assert sorted(i for batch in batches for i in batch) == list(range(10))
    # one window holds everything: batches are runs of the length-sorted order
    runs = sorted(sorted(lengths[i] for i in batch) for batch in batches)
    assert runs == [[1], [2, 3, 4], [5, 6, 7], [8, 9, 10]]
    same = LengthGroupedBatches(lengths, 3, torch.Generator().manual_seed(0), window=10)
    assert list(same) == batches


def test_length_grouped_batches_cover_every_row_once_and_cut_padding():
    lengths = [(i * 37) % 101 + 1 for i in range(1000)]
    grouped = LengthGroupedBatches(lengths, 32, torch.Generator().manual_seed(0), window=5)
    random_order = torch.randperm(1000, generator=torch.Generator().manual_seed(0)).tolist()
    random_padded = sum(
        max(lengths[i] for i in random_order[s : s + 32]) * len(random_order[s : s + 32])
        for s in range(0, 1000, 32)
    )
    passes = [list(grouped), list(grouped)]
    for batches in passes:
        assert len(batches) == len(grouped) == 32
        # each row once per pass
        assert sorted(i for batch in batches for i in batch) == list(range(1000))
        padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)
        assert padded < 0.8 * random_padded
    assert passes[0] != passes[1]  # a fresh order every pass
    again = LengthGroupedBatches(lengths, 32, torch.Generator().manual_seed(0), window=5)
    assert list(again) == passes[0]  # seeded


def test_length_grouped_batches_over_a_pool_or_weighted_draws():
    lengths = [(i * 37) % 101 + 1 for i in range(200)]
    generator = torch.Generator().manual_seed(0)
    pool = [3, 3, 3, 10, 50, 50, 199] * 10  # a boosting bag: repeats kept
    grouped = LengthGroupedBatches(lengths, 8, generator, window=4, pool=pool)
    for _ in range(2):
        batches = list(grouped)
        assert len(batches) == len(grouped) == 9
        assert sorted(i for batch in batches for i in batch) == sorted(pool)  # the pool, once
    weights = [0.0] * 200
    weights[7], weights[120] = 0.25, 0.75
    drawn = LengthGroupedBatches(lengths, 8, generator, window=4, weights=weights)
    passes = [[i for batch in drawn for i in batch] for _ in range(2)]
    for rows in passes:
        assert len(rows) == 200 and set(rows) <= {7, 120}  # n draws; a zero weight never comes
        assert 0.6 < rows.count(120) / 200 < 0.9
    assert passes[0] != passes[1]  # drawn anew every pass
    with pytest.raises(ValueError, match="not both"):
        LengthGroupedBatches(lengths, 8, generator, pool=pool, weights=weights)


def test_make_loader_groups_by_length_only_when_shuffling(tiny_base):
    texts = ["a " * n for n in (1, 30, 2, 29, 3, 28, 4, 27)]
    examples = Examples(
        texts=texts,
        text_pairs=None,
        labels=["0", "1"] * 4,
        task="classification",
        path=Path("x.tsv"),
    )
    dataset = EncodedDataset(AutoTokenizer.from_pretrained(tiny_base), examples, 64, [0, 1] * 4)
    grouped = [
        batch["input_ids"].shape[1]
        for batch in make_loader(dataset, 4, shuffle=True, group_by_length=True)
    ]
    assert sorted(grouped) == [6, 32]  # the short rows together, the long ones together
    plain = [batch["idx"].tolist() for batch in make_loader(dataset, 4, shuffle=False)]
    assert plain == [[0, 1, 2, 3], [4, 5, 6, 7]]
    by_length = [
        batch["idx"].tolist()
        for batch in make_loader(dataset, 4, shuffle=False, group_by_length=True)
    ]
    assert by_length == [[0, 2, 4, 6], [7, 5, 3, 1]]  # sorted by length for inference


def test_predict_logits_returns_dataset_order_from_length_sorted_batches(tiny_teacher):
    texts = ["good " * n for n in (9, 1, 7, 2, 5, 3)]
    examples = Examples(
        texts=texts,
        text_pairs=None,
        labels=["0", "1"] * 3,
        task="classification",
        path=Path("x.tsv"),
    )
    dataset = EncodedDataset(AutoTokenizer.from_pretrained(tiny_teacher), examples, 32, [0, 1] * 3)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_teacher)
    one_by_one = predict_logits(model, make_loader(dataset, 1, shuffle=False))
    sorted_batches = predict_logits(
        model, make_loader(dataset, 4, shuffle=False, group_by_length=True)
    )
    assert abs(one_by_one - sorted_batches).max() < 1e-5
