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


# --- parquet, save_to_disk folders and cached Hub datasets (the datasets extra) -------------

PAIRS = {
    "sentence1": ["a cat sat", "dogs bark loudly", "it rains", "the sun is out"],
    "sentence2": ["a cat was sitting", "a dog is quiet", "it is raining", "night fell"],
    "label": [1, 0, 1, 0],
    "idx": [0, 1, 2, 3],
}


def write_parquet(path, columns: dict):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), str(path))
    return path


def test_a_parquet_file_reads_like_a_tsv(tmp_path):
    path = write_parquet(tmp_path / "train.parquet", PAIRS)
    examples = read_examples(path)
    assert examples.texts == PAIRS["sentence1"]
    assert examples.text_pairs == PAIRS["sentence2"]
    assert examples.labels == ["1", "0", "1", "0"]  # integer labels as GLUE's TSV files give them
    assert examples.task == CLASSIFICATION
    assert examples.rows == [1, 2, 3, 4]
    assert examples.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    swapped = read_examples(path, Columns(text="sentence2", text_pair="sentence1"), limit=2)
    assert swapped.texts == ["a cat was sitting", "a dog is quiet"]
    assert swapped.text_pairs == ["a cat sat", "dogs bark loudly"]


def test_a_parquet_regression_and_its_errors_count_rows(tmp_path):
    path = write_parquet(
        tmp_path / "stsb.parquet", {"sentence": ["one", "two", ""], "score": [3.8, 0.5, 1.0]}
    )
    with pytest.raises(SlimbertError, match=r"stsb.parquet, row 3: empty or missing 'sentence'"):
        read_examples(path)
    examples = read_examples(path, limit=2)
    assert examples.task == REGRESSION and examples.labels == [3.8, 0.5]


def test_a_save_to_disk_folder_reads_with_its_class_labels(tmp_path):
    import datasets

    features = datasets.Features(
        {
            "text": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["negative", "positive"]),
        }
    )
    rows = {"text": ["good film", "awful plot", "lovely story"], "label": [1, 0, 1]}
    splits = datasets.DatasetDict(
        train=datasets.Dataset.from_dict(rows, features=features),
        validation=datasets.Dataset.from_dict(rows, features=features).select([2, 0]),
    )
    splits.save_to_disk(str(tmp_path / "sst"))
    examples = read_examples(tmp_path / "sst" / "validation")
    assert examples.texts == ["lovely story", "good film"]
    assert examples.labels == ["1", "1"]
    arrow = sorted((tmp_path / "sst" / "validation").glob("*.arrow"))
    assert len(arrow) == 1
    assert examples.sha256 == hashlib.sha256(arrow[0].read_bytes()).hexdigest()
    with pytest.raises(SlimbertError, match="holds the splits train, validation; give one of"):
        read_examples(tmp_path / "sst")
    (tmp_path / "plain").mkdir()
    with pytest.raises(SlimbertError, match="not one written by datasets' save_to_disk"):
        read_examples(tmp_path / "plain")


@pytest.fixture
def hub_datasets(tmp_path, monkeypatch):
    """A Hub dataset `tiny-org/pairs` (train and validation) in a datasets cache built offline,
    laid out as `load_dataset` leaves a downloaded one."""
    import datasets
    from datasets.packaged_modules.parquet.parquet import Parquet

    cache = tmp_path / "datasets-cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    # datasets reads HF_HUB_OFFLINE once, at import
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    source = write_parquet(tmp_path / "pairs.parquet", PAIRS)
    builder = Parquet(
        cache_dir=str(cache / "build"),
        dataset_name="pairs",
        data_files={"train": [str(source)], "validation": [str(source)]},
        hash="0" * 16,
    )
    builder.download_and_prepare()
    # where load_dataset leaves tiny-org/pairs: <org>___<name>/<config>/<version>/<hash>/
    (config,) = [p for p in (cache / "build" / "pairs").iterdir() if p.is_dir()]
    (cache / "tiny-org___pairs").mkdir(parents=True)
    config.rename(cache / "tiny-org___pairs" / "default")
    return cache


def test_a_cached_hub_dataset_reads_by_name_and_split(hub_datasets):
    examples = read_examples("hf:tiny-org/pairs:validation")
    assert examples.texts == PAIRS["sentence1"] and examples.labels == ["1", "0", "1", "0"]
    assert str(examples.path) == "hf:tiny-org/pairs:validation"
    (arrow,) = hub_datasets.glob("tiny-org___pairs/default/*/*/pairs-validation.arrow")
    assert examples.sha256 == hashlib.sha256(arrow.read_bytes()).hexdigest()
    assert read_examples("hf:tiny-org/pairs:default:train").texts == PAIRS["sentence1"]
    with pytest.raises(SlimbertError, match=r"hf:tiny-org/pairs:test: Unknown split \"test\""):
        read_examples("hf:tiny-org/pairs:test")
    with pytest.raises(SlimbertError, match="is not in the datasets cache"):
        read_examples("hf:tiny-org/absent:train")
    with pytest.raises(SlimbertError, match="give a Hub dataset as hf:NAME:SPLIT"):
        read_examples("hf:tiny-org/pairs")


def test_without_the_datasets_extra_parquet_is_one_line(tmp_path, monkeypatch):
    import sys

    path = write_parquet(tmp_path / "train.parquet", PAIRS)
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(SlimbertError) as excinfo:
        read_examples(path)
    assert str(excinfo.value) == (
        f"{path}: reading parquet needs the datasets extra; run `pip install -e .[datasets]`"
    )


def test_train_teacher_reads_parquet_and_a_hub_dataset(hub_datasets, tmp_path, tiny_base):
    from click.testing import CliRunner

    from slimbert.cli import cli

    train = write_parquet(tmp_path / "train.parquet", PAIRS)
    out = tmp_path / "teacher"
    args = ["train-teacher", "--base", tiny_base, "--train", train, "--eval",
            "hf:tiny-org/pairs:validation", "--out", out, "--max-steps", 1, "--max-length", 16,
            "--batch-size", 4, "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "slimbert.json").read_text())["data"]
    assert data["train"]["sha256"] == hashlib.sha256(train.read_bytes()).hexdigest()
    assert data["train"]["rows"] == 4 and data["pair"] is True
    assert data["eval"]["path"] == "hf:tiny-org/pairs:validation" and data["eval"]["rows"] == 4
