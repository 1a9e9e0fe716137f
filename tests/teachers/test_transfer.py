"""slimbert augment (the teacher-labelled transfer set) and --transfer on the training commands:
rows labelled by the teacher, the manifest's hashes, the guard, whole-word replacement, the
pair rules, unlabelled text, and students trained on train ∪ transfer."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import WORDS
from safetensors.torch import load_file

from slimbert.batches import DataSpec, prepare
from slimbert.cli import cli
from slimbert.compress.registry import METHODS
from slimbert.data import Columns, LabelMap, read_examples, text_key
from slimbert.errors import SlimbertError
from slimbert.files import sha256_file
from slimbert.models import load_classifier, load_tokenizer
from slimbert.teachers.transfer import TransferConfig, build_transfer, manifest_path
from slimbert.training.logits_cache import model_fingerprint
from tests.cli.test_cli_help import ALL, UNLABELLED, flags, training_commands

LABELS = LabelMap({0: "0", 1: "1"})
TRAIN_FLAGS = [
    "--max-length",
    "32",
    "--batch-size",
    "8",
    "--max-steps",
    "2",
    "--patience",
    "0",
    "--seed",
    "0",
    "--no-progress",
]


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def teacher_logits_on(teacher_dir: Path, texts: list[str], pairs: list[str] | None = None):
    """The teacher's logits on each row alone (no padding), (N, C)."""
    model, tokenizer = load_classifier(teacher_dir).eval(), load_tokenizer(teacher_dir)
    rows = []
    with torch.no_grad():
        for i, text in enumerate(texts):
            args = (text,) if pairs is None else (text, pairs[i])
            encoded = tokenizer(*args, truncation=True, max_length=32, return_tensors="pt")
            rows.append(model(**encoded).logits[0].numpy())
    return np.stack(rows)


def write_tsv(path: Path, header: list[str], rows: list[tuple]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def balanced_teacher(tmp_path_factory, sst2_files) -> Path:
    """A random classifier whose head is shifted and sharpened so that it predicts both labels
    on the training texts (random heads predict one label everywhere)."""
    from conftest import build_bert

    folder = build_bert(tmp_path_factory.mktemp("balanced"), num_labels=2, seed=3)
    model = load_classifier(folder).eval()
    logits = teacher_logits_on(folder, read_examples(sst2_files[0]).texts)  # (64, 2)
    margin = logits[:, 1] - logits[:, 0]
    with torch.no_grad():
        model.classifier.bias[1] -= float(np.median(margin))
        model.classifier.weight.mul_(20.0)
        model.classifier.bias.mul_(20.0)
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder


def test_rows_are_labelled_by_the_teacher_and_the_manifest_hashes_every_file(
    tmp_path, balanced_teacher, sst2_files
):
    train, dev = sst2_files
    out = tmp_path / "transfer.jsonl"
    config = TransferConfig(copies=2, prob=0.5, top_k=3, seed=0)
    manifest = build_transfer(
        balanced_teacher, DataSpec(train, dev, max_length=32), [], out, config
    )
    rows = read_rows(out)
    words = manifest["counts"]["words"]
    assert words["made"] == 64 * 2 and len(rows) == manifest["rows"] == words["kept"] > 100
    assert words["made"] == words["eval_leak"] + words["in_train"] + words["duplicate"] + len(rows)
    assert words["in_train"] > 0  # a copy where no word was drawn is its training row again
    assert {row["source"] for row in rows} == {"words"} and "text_pair" not in rows[0]
    logits = np.array([row["logits"] for row in rows])  # (N, 2)
    assert [row["label"] for row in rows] == [str(i) for i in logits.argmax(-1)]
    assert len(set(row["label"] for row in rows)) == 2
    expected = teacher_logits_on(balanced_teacher, [row["text"] for row in rows])
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    assert manifest["labels"] == {
        label: sum(row["label"] == label for row in rows) for label in ("0", "1")
    }
    # no row is a training row, an eval text or another row
    train_texts = {text_key(t) for t in read_examples(train).texts}
    dev_texts = {text_key(t) for t in read_examples(dev).texts}
    keys = [text_key(row["text"]) for row in rows]
    assert len(set(keys)) == len(keys) and not set(keys) & (train_texts | dev_texts)
    on_disk = json.loads(manifest_path(out).read_text())
    assert manifest_path(out).name == "transfer.manifest.json" and on_disk == manifest
    assert on_disk["sha256"] == sha256_file(out) and on_disk["rows"] == len(rows)
    assert on_disk["train"]["sha256"] == sha256_file(train) and on_disk["train"]["rows"] == 64
    assert on_disk["eval"]["sha256"] == sha256_file(dev)
    assert on_disk["teacher"]["fingerprint"] == model_fingerprint(balanced_teacher)
    assert on_disk["settings"]["copies"] == 2 and on_disk["settings"]["max_length"] == 32
    assert on_disk["word_replacement"]["mode"] == "embedding"
    # the reader takes it as the training rows it is
    again = read_examples(out, Columns("text", None, "label"))
    assert again.texts == [row["text"] for row in rows]


def test_guard_drops_eval_texts_training_rows_and_duplicates_and_reads_unlabelled_text(
    tmp_path, tiny_teacher, sst2_files
):
    train_file, dev_file = sst2_files
    train, dev = read_examples(train_file), read_examples(dev_file)
    # training rows: 10 of the file and one eval sentence, whose copy must not get in either
    leaky = write_tsv(
        tmp_path / "train.tsv",
        ["sentence", "label"],
        [*zip(train.texts[:10], train.labels[:10], strict=True), (dev.texts[0], dev.labels[0])],
    )
    text = write_tsv(
        tmp_path / "unlabelled.tsv",
        ["sentence"],
        [
            ("  " + dev.texts[1].upper() + " ",),  # eval text, spelled differently
            (dev.texts[2],),  # eval text
            (train.texts[5],),  # a training row
            ("good good great movie",),
            ("Good good  great movie",),  # the same text again
            ("bad awful plot",),
        ],
    )
    out = tmp_path / "t.jsonl"
    config = TransferConfig(copies=1, prob=1.0, top_k=2, seed=0)
    manifest = build_transfer(
        tiny_teacher, DataSpec(leaky, dev_file, max_length=32), [text], out, config
    )
    counts = manifest["counts"]
    assert counts["text"] == {
        "made": 6,
        "eval_leak": 2,
        "in_train": 1,
        "duplicate": 1,
        "conflict": 0,
        "cap": 0,
        "kept": 2,
    }
    assert counts["words"]["made"] == 11 and counts["words"]["eval_leak"] >= 1
    rows = read_rows(out)
    assert [r["text"] for r in rows if r["source"] == "text"] == [
        "good good great movie",
        "bad awful plot",
    ]
    # the eval row's copy is dropped: every kept word copy comes from one of the 10 clean rows
    copies = [r["text"] for r in rows if r["source"] == "words"]
    assert len(copies) == counts["words"]["kept"] <= 10
    assert manifest["texts"] == [{"path": str(text), "sha256": sha256_file(text), "rows": 6}]
    expected = teacher_logits_on(tiny_teacher, [r["text"] for r in rows])
    np.testing.assert_allclose([r["logits"] for r in rows], expected, atol=1e-5)


def _piece_teacher(folder: Path) -> Path:
    """A random classifier whose vocabulary splits 'movies', 'sadly' and 'plots' into pieces."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "sad", "##s", "##ly", "."]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    tokenizer = BertTokenizerFast.from_pretrained(str(folder), do_lower_case=True)
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(5)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
        id2label={0: "0", 1: "1"},
        label2id={"0": 0, "1": 1},
    )
    BertForSequenceClassification(config).save_pretrained(str(folder), safe_serialization=True)
    return folder


def test_whole_words_of_several_pieces_are_replaced_by_whole_words(tmp_path, sst2_files):
    teacher_dir = _piece_teacher(tmp_path / "teacher")
    tokenizer = load_tokenizer(teacher_dir)
    assert tokenizer.tokenize("movies sadly") == ["movie", "##s", "sad", "##ly"]
    train = write_tsv(
        tmp_path / "train.tsv",
        ["sentence", "label"],
        [("the movies was sadly good", 1), ("plots zzz bad", 0)],
    )
    out = tmp_path / "t.jsonl"
    config = TransferConfig(copies=1, prob=1.0, top_k=1)
    build_transfer(teacher_dir, DataSpec(train, sst2_files[1], max_length=32), [], out, config)
    rows = [row["text"].split() for row in read_rows(out)]

    # top_k = 1: each word becomes the nearest whole-word token to the mean of its pieces'
    # unit embeddings, its own pieces excluded
    weights = load_classifier(teacher_dir).get_input_embeddings().weight.detach()
    unit = torch.nn.functional.normalize(weights, dim=-1)  # (V, H)
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    pool = [i for i, t in enumerate(vocab) if t.isalpha() and len(t) > 1 and i > 4]

    def nearest(word: str) -> str:
        pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
        ranked = (unit[pieces].mean(0) @ unit[pool].T).argsort(descending=True).tolist()
        return next(vocab[pool[j]] for j in ranked if pool[j] not in pieces)

    assert rows[0] == [nearest(w) for w in "the movies was sadly good".split()]
    assert rows[1] == [nearest("plots"), "zzz", nearest("bad")]  # an unknown word stays
    assert all("#" not in word for row in rows for word in row)


def test_masked_lm_replaces_a_word_of_several_pieces_through_one_mask(tmp_path, sst2_files):
    from transformers import BertConfig, BertForMaskedLM

    teacher_dir = _piece_teacher(tmp_path / "teacher")
    mlm_dir = _piece_teacher(tmp_path / "mlm")
    tokenizer = load_tokenizer(mlm_dir)
    torch.manual_seed(11)
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
    (mlm_dir / "model.safetensors").unlink()
    mlm.save_pretrained(str(mlm_dir), safe_serialization=True)
    train = write_tsv(
        tmp_path / "train.tsv", ["sentence", "label"], [("the movies was sadly good", 1)]
    )
    out = tmp_path / "t.jsonl"
    config = TransferConfig(copies=1, prob=1.0, top_k=1, mlm=str(mlm_dir))
    manifest = build_transfer(
        teacher_dir, DataSpec(train, sst2_files[1], max_length=32), [], out, config
    )
    assert manifest["word_replacement"]["mode"] == "mlm"
    copy = read_rows(out)[0]["text"].split()
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    words = "the movies was sadly good".split()
    for position in (1, 3):  # movies, sadly: one [MASK] for the whole word
        masked = " ".join(["[MASK]" if i == position else w for i, w in enumerate(words)])
        encoded = tokenizer(masked, return_tensors="pt")
        at = encoded["input_ids"][0].tolist().index(tokenizer.mask_token_id)
        with torch.no_grad():
            ranked = mlm.eval()(**encoded).logits[0, at].argsort(descending=True).tolist()
        best = next(
            vocab[i]
            for i in ranked
            if vocab[i].isalpha() and len(vocab[i]) > 1 and i > 4 and vocab[i] != words[position]
        )
        assert copy[position] == best, (words[position], copy)


# A ~ B ~ C ≁ D and E ≁ F, where F is an eval sentence
A, B, C, D = "the movie was good", "the film was great", "it is a fine film", "the plot was awful"
E, F = "this actor is bad", "the story is boring"


def test_pair_rules_add_the_implied_pairs_labelled_by_the_teacher(tmp_path, tiny_teacher):
    header = ["sentence1", "sentence2", "label"]
    train = write_tsv(tmp_path / "train.tsv", header, [(A, B, 1), (B, C, 1), (C, D, 0), (E, F, 0)])
    dev = write_tsv(tmp_path / "dev.tsv", header, [(F, "a very nice movie", 1)])
    out = tmp_path / "pairs.jsonl"
    config = TransferConfig(copies=0, pair_rules=True)
    manifest = build_transfer(tiny_teacher, DataSpec(train, dev, max_length=32), [], out, config)
    rows = read_rows(out)
    assert [(r["text"], r["text_pair"], r["source"]) for r in rows] == [
        (B, A, "symmetry"),
        (C, B, "symmetry"),
        (D, C, "symmetry"),
        (A, C, "transitivity-similar"),
        (B, D, "transitivity-dissimilar"),
    ]
    assert manifest["counts"]["symmetry"] == {
        "made": 4,
        "eval_leak": 1,  # F–E
        "in_train": 0,
        "duplicate": 0,
        "conflict": 0,
        "cap": 0,
        "kept": 3,
    }
    assert manifest["pair"] is True and manifest["counts"]["transitivity-similar"]["kept"] == 1
    expected = teacher_logits_on(
        tiny_teacher, [r["text"] for r in rows], [r["text_pair"] for r in rows]
    )
    logits = np.array([r["logits"] for r in rows])
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    assert [r["label"] for r in rows] == [str(i) for i in logits.argmax(-1)]
    # the pairs' file goes straight into a pair task's training rows
    data = prepare(
        DataSpec(train, dev, max_length=32, transfer=out),
        load_tokenizer(tiny_teacher),
        label_map=LABELS,
    )
    assert len(data.train) == 4 + 5 and data.train.text_pairs[4:] == [A, B, C, C, D]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"out": "t.tsv"}, "end it in .jsonl"),
        ({"copies": 0}, "give --copies N, --pair-rules or --text FILE"),
        ({"pair_rules": True}, "--pair-rules: .* has single texts"),
        ({"texts": ["missing.tsv"]}, "missing.tsv: no such file"),
        ({"texts": ["pairs.tsv"]}, "pairs.tsv: has sentence pairs but .* has single texts"),
        ({"texts": ["dev"], "copies": 0}, "no row is left for the transfer set"),
    ],
)
def test_nothing_is_written_on_error(tmp_path, tiny_teacher, sst2_files, change, message):
    train, dev = sst2_files
    write_tsv(tmp_path / "pairs.tsv", ["sentence1", "sentence2"], [("good movie", "bad film")])
    out = tmp_path / change.get("out", "t.jsonl")
    texts = [dev if t == "dev" else tmp_path / t for t in change.get("texts", [])]
    settings = {k: v for k, v in change.items() if k not in ("out", "texts")}
    config = TransferConfig(**{"copies": 1, "prob": 0.5, **settings})
    with pytest.raises(SlimbertError, match=message):
        build_transfer(tiny_teacher, DataSpec(train, dev, max_length=32), texts, out, config)
    # the word replacement's own cache aside, nothing: no set, no manifest, no temporary file
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == ["pairs.tsv"]


def test_augment_cli_writes_the_set_and_refuses_in_one_line(tmp_path, tiny_teacher, sst2_files):
    train, dev = sst2_files
    out = tmp_path / "sets" / "transfer.jsonl"
    common = ["augment", "--teacher", tiny_teacher, "--train", train, "--eval", dev]
    args = [*common, "--copies", "1", "--limit", "20", "--max-length", "32", "--out", out]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    manifest = json.loads(manifest_path(out).read_text())
    assert "words" in result.output and f"transfer set written to {out}" in result.output
    assert manifest["train"]["rows"] == 20 and manifest["counts"]["words"]["made"] == 20
    assert manifest["settings"]["limit"] == 20 and len(read_rows(out)) == manifest["rows"]
    bad = CliRunner().invoke(cli, [str(a) for a in [*common, "--out", tmp_path / "x.csv"]])
    assert bad.exit_code == 1 and bad.output.count("\n") == 1 and "end it in .jsonl" in bad.output
    assert not (tmp_path / "x.csv").exists()


@pytest.fixture
def transfer_set(tmp_path, balanced_teacher, sst2_files) -> Path:
    train, dev = sst2_files
    out = tmp_path / "transfer.jsonl"
    config = TransferConfig(copies=1, prob=0.5, top_k=3, seed=1)
    build_transfer(balanced_teacher, DataSpec(train, dev, max_length=32), [], out, config)
    return out


SIZES = {
    "kd": ["--layers", "2"],
    "textcnn": ["--embedding-dim", "16", "--filters", "4"],
    "tinybert": ["--layers", "2"],
    "minilm": ["--layers", "2"],
    "theseus": ["--layers", "2"],
    "bilstm": ["--embedding-dim", "16", "--hidden-size", "6", "--fc-size", "8"],
    "tree": ["--embedding-dim", "8", "--depth", "2"],
}


@pytest.mark.parametrize("method, sizes", SIZES.items())
def test_students_train_on_train_and_transfer_from_the_teachers_logits(
    tmp_path, balanced_teacher, sst2_files, transfer_set, method, sizes
):
    train, dev = sst2_files
    rows = read_rows(transfer_set)
    out = tmp_path / method
    args = ["compress", method, "--teacher", balanced_teacher, "--train", train, "--eval", dev]
    args += ["--transfer", transfer_set, "--out", out, *sizes, *TRAIN_FLAGS]
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "slimbert.json").read_text())["data"]
    assert data["train"]["rows"] == 64 + len(rows)
    assert data["transfer"] == {
        "path": str(transfer_set),
        "sha256": sha256_file(transfer_set),
        "rows": len(rows),
    }
    caches = list((Path(tmp_path) / "cache" / "logits").glob("*.safetensors"))
    if method == "theseus":  # no soft loss: it learns the teacher's labels stored in the file
        # the one entry is what augment left for the transfer rows; theseus added none
        assert [load_file(str(c))["logits"].shape[0] for c in caches] == [len(rows)]
        return
    # the teacher's cached logits: the training rows and the transfer rows (augment's), each its
    # own entry
    parts = sorted(
        (load_file(str(cache))["logits"].numpy() for cache in caches), key=len, reverse=True
    )
    assert [part.shape for part in parts] == [(64, 2), (len(rows), 2)]
    on_train, on_transfer = parts
    np.testing.assert_allclose(on_transfer, [r["logits"] for r in rows], atol=1e-5)
    by_hand = teacher_logits_on(balanced_teacher, read_examples(train).texts)
    np.testing.assert_allclose(on_train, by_hand, atol=1e-5)


def test_a_transfer_set_holding_an_eval_sentence_is_refused_in_one_line(
    tmp_path, tiny_teacher, sst2_files
):
    train, dev = sst2_files
    leaked = read_examples(dev).texts[3]
    bad = write_jsonl(
        tmp_path / "bad.jsonl",
        [{"text": "good good great movie", "label": "1"}, {"text": leaked.upper(), "label": "0"}],
    )
    out = tmp_path / "student"
    args = ["compress", "kd", "--teacher", tiny_teacher, "--train", train, "--eval", dev]
    args += ["--transfer", bad, "--out", out, "--layers", "2", *TRAIN_FLAGS]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert f"--transfer {bad}, line 2: {leaked.upper()!r} is in the eval file {dev}" in (
        result.output
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "records, message",
    [
        ([{"text": "good movie", "text_pair": "bad film", "label": "1"}], "holds sentence pairs"),
        ([{"text": "good movie", "label": "maybe"}], "line 1: label 'maybe' is unknown"),
        ([{"text": "good movie"}], "its rows have no label field"),
        (None, "no such file; make one with `slimbert augment`"),
    ],
)
def test_prepare_checks_the_transfer_rows(tmp_path, tiny_teacher, sst2_files, records, message):
    train, dev = sst2_files
    path = tmp_path / "t.jsonl"
    if records is not None:
        write_jsonl(path, records)
    spec = DataSpec(train, dev, max_length=32, transfer=path)
    with pytest.raises(SlimbertError, match=message) as caught:
        prepare(spec, load_tokenizer(tiny_teacher), label_map=LABELS)
    assert str(path) in str(caught.value)


# Commands that take the shared data flags, --transfer among them, without training a model on
# them: auto searches over the transfer set (with it and without); professor augment derives
# pairs from the gold labels alone and refuses it in one line (test_pair_augment.py).
NOT_TRAINED_ON = {"auto", "professor augment"}


def test_every_command_that_trains_on_labels_takes_the_transfer_flag():
    """Walks the whole click tree: train-teacher, professor boost and every compress method take
    --transfer; the commands that train on unlabelled text read a transfer set by --text; no
    other command offers --transfer but those of NOT_TRAINED_ON."""
    trained = training_commands()
    assert {f"compress {name}" for name in METHODS} | {"train-teacher", "professor boost"} <= set(
        trained
    )
    for name, command in trained.items():
        output = CliRunner().invoke(cli, [*name.split(), "--help"]).output
        if name in UNLABELLED:
            assert "--transfer" not in flags(command) and "--text " in output, name
        else:
            assert "--transfer PATH" in output, name
    offered = {" ".join(path) for path, command in ALL if "--transfer" in flags(command)}
    assert offered - set(trained) == NOT_TRAINED_ON
