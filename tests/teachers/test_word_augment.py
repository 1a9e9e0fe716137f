"""Tang et al.'s masking and n-gram sampling on top of the word-replaced copies: each rule as the
paper states it, off by default without changing a copy or a cache key made before the rules."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from slimbert.cli import cli
from slimbert.data import read_examples
from slimbert.errors import SlimbertError
from slimbert.models import load_classifier, load_tokenizer
from slimbert.teachers.word_augment import AugmentConfig, augment, cache_key
from slimbert.training.logits_cache import model_fingerprint

NEVER = 1e-12  # a replacement probability no draw falls under: the copies keep their words


def _augment(teacher_dir, sst2_files, **settings):
    examples = read_examples(sst2_files[0]).subset(range(8))
    teacher, tokenizer = load_classifier(teacher_dir), load_tokenizer(teacher_dir)
    config = AugmentConfig(**{"copies": 4, "top_k": 2, "seed": 7, **settings})
    made = augment(examples, teacher, tokenizer, model_fingerprint(teacher_dir), config)
    return examples, made


def test_with_the_rules_off_the_cache_key_is_the_one_made_before_them(sst2_files):
    examples = read_examples(sst2_files[0]).subset(range(6))
    config = AugmentConfig(copies=3, prob=0.3, top_k=2, seed=7)
    # pinned from the module before masking and n-grams existed: old caches stay valid
    assert cache_key(examples, "embedding:abc", config) == "0e3a442cce96c30cff50534ad03f941c"
    masked = AugmentConfig(copies=3, prob=0.3, top_k=2, seed=7, mask_prob=0.1)
    assert cache_key(examples, "embedding:abc", masked) != cache_key(
        examples, "embedding:abc", config
    )


def test_masking_puts_the_mask_token_in_place_of_words_not_replaced(tiny_teacher, sst2_files):
    examples, made = _augment(tiny_teacher, sst2_files, prob=NEVER, mask_prob=1.0)
    for copy, source in zip(made.examples.texts, made.sources, strict=True):
        assert copy.split() == ["[MASK]"] * len(examples.texts[source].split())
    # a replaced word is not masked: at p = 1 every word is replaced, none masked
    _, replaced = _augment(tiny_teacher, sst2_files, prob=1.0, mask_prob=1.0)
    assert not any("[MASK]" in text for text in replaced.examples.texts)
    # at p_mask 0.1 about a tenth of the words (pinned: seed 7)
    _, tenth = _augment(tiny_teacher, sst2_files, prob=NEVER, mask_prob=0.1)
    words = [w for text in tenth.examples.texts for w in text.split()]
    assert (words.count("[MASK]"), len(words)) == (13, 160)


def test_ngram_sampling_keeps_n_consecutive_words_of_each_copy(tiny_teacher, sst2_files):
    examples, made = _augment(tiny_teacher, sst2_files, prob=NEVER, ngram_prob=1.0)
    shorter = 0
    for copy, source in zip(made.examples.texts, made.sources, strict=True):
        original, kept = examples.texts[source].split(), copy.split()
        assert 1 <= len(kept) <= max(5, len(original)) and len(kept) <= len(original)
        starts = [i for i in range(len(original)) if original[i : i + len(kept)] == kept]
        assert starts, (copy, examples.texts[source])  # consecutive words of the original
        shorter += len(kept) < len(original)
    assert shorter > len(made.sources) // 2
    _, none = _augment(tiny_teacher, sst2_files, prob=NEVER, ngram_prob=0.0)
    assert none.examples.texts == [examples.texts[s] for s in none.sources]


def test_a_tokenizer_without_a_mask_token_is_refused_in_one_line(tiny_teacher, sst2_files):
    examples = read_examples(sst2_files[0]).subset(range(2))
    tokenizer = load_tokenizer(tiny_teacher)
    tokenizer.mask_token = None
    config = AugmentConfig(copies=1, prob=0.5, mask_prob=0.1)
    with pytest.raises(SlimbertError, match=r"^--mask-prob 0.1: the teacher's tokenizer has no"):
        augment(examples, load_classifier(tiny_teacher), tokenizer, "fingerprint", config)
    with pytest.raises(SlimbertError, match=r"^--ngram-prob 1.5: give a probability in \[0, 1\]"):
        AugmentConfig(ngram_prob=1.5)


def test_slimbert_augment_takes_the_rules_and_its_manifest_records_them(
    tiny_teacher, sst2_files, tmp_path
):
    train, dev = sst2_files
    out = tmp_path / "transfer.jsonl"
    argv = ["augment", "--teacher", str(tiny_teacher), "--train", str(train), "--eval", str(dev)]
    argv += ["--copies", "2", "--prob", "0.1", "--mask-prob", "0.3", "--ngram-prob", "0.5"]
    result = CliRunner().invoke(cli, [*argv, "--max-length", "32", "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads(out.with_name("transfer.manifest.json").read_text())
    assert (manifest["settings"]["mask_prob"], manifest["settings"]["ngram_prob"]) == (0.3, 0.5)
    texts = [json.loads(line)["text"] for line in out.read_text().splitlines()]
    assert any("[MASK]" in text for text in texts)
