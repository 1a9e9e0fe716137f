"""The reader on the quirks of real GLUE files, CSV, JSONL, headerless files and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slimbert.data import CLASSIFICATION, REGRESSION, Columns, LabelMap, read_examples
from slimbert.errors import SlimbertError


def test_mrpc_bom_and_stray_quotes(tmp_path):
    # MRPC: a byte-order mark before the header and unbalanced quotes inside sentences.
    path = tmp_path / "mrpc.tsv"
    path.write_bytes(
        "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        '1\t1\t2\tHe said " the pie business does not fit .\tThe pie business does not fit our strategy .\n'
        '0\t3\t4\tHis wife said he was " 100 percent behind .\tIt was raining .\n'.encode()
    )
    examples = read_examples(path)
    assert len(examples) == 2  # quoting disabled: the stray quote does not swallow the next row
    assert examples.texts[0].startswith('He said " the pie')
    assert examples.text_pairs == [
        "The pie business does not fit our strategy .",
        "It was raining .",
    ]
    assert examples.labels == ["1", "0"]
    assert examples.task == CLASSIFICATION
    assert examples.rows == [2, 3]


def test_stsb_picks_columns_by_name_and_is_regression(tmp_path):
    path = tmp_path / "stsb.tsv"
    path.write_text(
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
        "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\tAn air plane is taking off.\t5.000\n"
        "1\tmain-captions\tMSRvid\t2012test\t0004\tnone\tnone\tA man plays a flute.\tA man plays a large flute.\t3.800\n"
    )
    examples = read_examples(path)
    assert examples.task == REGRESSION
    assert examples.labels == [5.0, 3.8]
    assert examples.texts[1] == "A man plays a flute."


def test_csv_jsonl_and_headerless(tmp_path):
    csv_path = tmp_path / "d.csv"
    csv_path.write_text('text,label\n"hello, world",pos\nbad day,neg\n')
    examples = read_examples(csv_path)
    assert examples.texts == ["hello, world", "bad day"] and examples.labels == ["pos", "neg"]

    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(
        json.dumps({"q": "a", "p": "b", "y": 1})
        + "\n\n"
        + json.dumps({"q": "c", "p": "d", "y": 0})
        + "\n"
    )
    examples = read_examples(jsonl, Columns(text="q", text_pair="p", label="y"))
    assert examples.text_pairs == ["b", "d"] and examples.labels == ["1", "0"]

    headerless = tmp_path / "h.tsv"
    headerless.write_text("great film\t1\nawful film\t0\n")
    examples = read_examples(headerless, Columns(text="0", label="1", header=False))
    assert examples.texts == ["great film", "awful film"] and examples.labels == ["1", "0"]


@pytest.mark.parametrize(
    ("content", "columns", "message"),
    [
        ("sentence\tlabel\n", Columns(), "empty"),
        ("words\tlabel\nhi\t1\n", Columns(), "cannot tell which column holds the text"),
        ("sentence\tlabel\nhi\t1\n", Columns(label="gold"), "no column 'gold'"),
        ("sentence\tlabel\nhi\t1\n\t0\n", Columns(), "line 3: empty or missing 'sentence'"),
        ("sentence\tlabel\nhi\t1\nthere\t1\textra\n", Columns(), "line 3: 3 fields"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path, content, columns, message):
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(SlimbertError, match=message) as info:
        read_examples(path, columns)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_and_bad_json(tmp_path):
    with pytest.raises(SlimbertError, match="no such file"):
        read_examples(tmp_path / "nope.tsv")
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{oops\n')
    with pytest.raises(SlimbertError, match="line 2: not valid JSON"):
        read_examples(path)


def test_label_map_order_unknown_label_and_limit(tmp_path):
    label_map = LabelMap.from_labels(["10", "2", "2", "1"])
    assert label_map.id2label == {0: "1", 1: "2", 2: "10"}  # numeric labels sort numerically
    assert (
        LabelMap.from_labels(["neg", "pos"]).positive_id() is None
        or LabelMap.from_labels(["neg", "pos"]).positive_id() == 1
    )
    assert LabelMap.from_labels(["negative", "positive"]).positive_id() == 1
    path = tmp_path / "e.tsv"
    path.write_text("sentence\tlabel\na\t0\nb\t7\nc\t1\n")
    with pytest.raises(SlimbertError, match=r"line 3: label '7' is unknown"):
        LabelMap.from_labels(["0", "1"]).encode(read_examples(path))
    assert len(read_examples(path, limit=1)) == 1


def test_length_grouped_batches_cover_every_row_once_and_cut_padding():
    import torch

    from slimbert.batches import LengthGroupedBatches

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
        assert sorted(i for batch in batches for i in batch) == list(
            range(1000)
        )  # each row once per pass
        padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)
        assert padded < 0.8 * random_padded
    assert passes[0] != passes[1]  # a fresh order every pass
    again = LengthGroupedBatches(lengths, 32, torch.Generator().manual_seed(0), window=5)
    assert list(again) == passes[0]  # seeded


def test_make_loader_groups_by_length_only_when_shuffling(tiny_base):
    from transformers import AutoTokenizer

    from slimbert.batches import EncodedDataset, make_loader
    from slimbert.data import Examples

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
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from slimbert.batches import EncodedDataset, make_loader, predict_logits
    from slimbert.data import Examples

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
