"""Tiny random BERTs, a small WordPiece tokenizer and small data files, built offline."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
import torch

WORDS = (
    "good great fine lovely superb happy nice best bad awful poor sad worst terrible boring ugly "
    "the a movie film plot actor story was is very not really quite and but it this that"
).split()
POSITIVE = WORDS[:8]
NEGATIVE = WORDS[8:16]
FILLER = WORDS[16:]


def build_tokenizer(folder: Path):
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, ".", ","]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # from_pretrained, not BertTokenizerFast(vocab_file=...): transformers 5 ignores vocab_file
    tokenizer = BertTokenizerFast.from_pretrained(str(folder), do_lower_case=True)
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def build_bert(
    folder: Path,
    layers: int = 4,
    hidden: int = 32,
    heads: int = 4,
    num_labels: int | None = 2,
    seed: int = 0,
) -> Path:
    """A random BertModel (num_labels=None) or BertForSequenceClassification saved as
    safetensors."""
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(folder)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 2,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    if num_labels is None:
        model = BertModel(config)
    else:
        config.num_labels = num_labels
        config.id2label = {i: str(i) for i in range(num_labels)}
        config.label2id = {str(i): i for i in range(num_labels)}
        model = BertForSequenceClassification(config)
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder


def sentiment_rows(n: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = rng.sample(POSITIVE if label else NEGATIVE, 2) + rng.sample(FILLER, 3)
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def write_sst2(path: Path, rows: list[tuple[str, int]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerow(["sentence", "label"])
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A 4-layer, hidden-32 random BERT encoder with no head (like the bundled MiniLM)."""
    return build_bert(tmp_path_factory.mktemp("base"), num_labels=None)


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    """A 4-layer, hidden-32 random BERT classifier with two labels."""
    return build_bert(tmp_path_factory.mktemp("teacher"), num_labels=2)


@pytest.fixture(scope="session")
def sst2_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("sst2")
    return write_sst2(folder / "train.tsv", sentiment_rows(64, 1)), write_sst2(
        folder / "dev.tsv", sentiment_rows(24, 2)
    )


@pytest.fixture(scope="session")
def sharp_teacher(tmp_path_factory) -> Path:
    """The tiny teacher with query/key/value weights ×8, so attention maps and relations are far
    from uniform (on the plain random teacher those losses are ~1e-4, too small to pin)."""
    from slimbert.models import load_classifier

    folder = build_bert(tmp_path_factory.mktemp("sharp"), num_labels=2)
    model = load_classifier(folder)
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            for linear in (
                layer.attention.self.query,
                layer.attention.self.key,
                layer.attention.self.value,
            ):
                linear.weight.mul_(8.0)
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def loud_teacher(sharp_teacher, tmp_path_factory) -> Path:
    """The sharp teacher with its classifier ×300: logits of a few units that differ from row
    to row, not hundredths, so a soft loss computed by hand is far from rounding."""
    import shutil

    from slimbert.models import load_classifier

    folder = tmp_path_factory.mktemp("loud") / "teacher"
    shutil.copytree(sharp_teacher, folder)
    model = load_classifier(folder)
    with torch.no_grad():
        model.classifier.weight.mul_(300.0)
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder


# Tiny models run fastest on one thread, and a shared 2-core machine stops thrashing.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMBERT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _fp32_training():
    """--mixed-precision auto means bf16 on a CPU with AVX-512 BF16 or AMX: tests train in fp32
    on every machine, so their figures do not depend on the processor (a test of auto patches
    this back). Session-wide, so that fixtures shared by several tests train in fp32 too."""
    from slimbert.training import precision

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
        yield
