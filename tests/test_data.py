"""The reader on the quirks of real GLUE files, CSV, JSONL, headerless files and bad input."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from slimbert.data import CLASSIFICATION, REGRESSION, Columns, LabelMap, read_examples, read_subset
from slimbert.errors import SlimbertError


def test_mrpc_bom_and_stray_quotes(tmp_path):
    # MRPC: a byte-order mark before the header and unbalanced quotes inside sentences.
    path = tmp_path / "mrpc.tsv"
    path.write_bytes(
        "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        '1\t1\t2\tHe said " the pie business does not fit .\t'
        "The pie business does not fit our strategy .\n"
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
        "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\t"
        "A plane is taking off.\tAn air plane is taking off.\t5.000\n"
        "1\tmain-captions\tMSRvid\t2012test\t0004\tnone\tnone\t"
        "A man plays a flute.\tA man plays a large flute.\t3.800\n"
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
    assert LabelMap.from_labels(["neg", "pos"]).positive_id() == 1  # no known name: id 1
    assert LabelMap.from_labels(["no", "yes"]).positive_id() == 1
    assert LabelMap({0: "yes", 1: "no"}).positive_id() == 0
    assert LabelMap.from_labels(["a", "b", "c"]).positive_id() is None  # not binary
    assert LabelMap.from_labels(["negative", "positive"]).positive_id() == 1
    path = tmp_path / "e.tsv"
    path.write_text("sentence\tlabel\na\t0\nb\t7\nc\t1\n")
    with pytest.raises(SlimbertError, match=r"line 3: label '7' is unknown"):
        LabelMap.from_labels(["0", "1"]).encode(read_examples(path))
    assert len(read_examples(path, limit=1)) == 1


def test_read_subset_takes_the_first_rows_or_a_seeded_shuffle(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\n" + "".join(f"row {i}\t{i % 2}\n" for i in range(8)))
    assert read_subset(path, limit=3).texts == ["row 0", "row 1", "row 2"]
    shuffled = read_subset(path, limit=3, sample_seed=1)
    order = np.random.default_rng(1).permutation(8)[:3]
    assert shuffled.texts == [f"row {i}" for i in order]
    assert shuffled.rows == [int(i) + 2 for i in order]  # file lines survive the shuffle
    assert read_subset(path, sample_seed=1).texts == [
        f"row {i}" for i in np.random.default_rng(1).permutation(8)
    ]
    assert shuffled.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
