"""Tiny random classifiers of every encoder family, each with an offline tokenizer of its kind.

    family        tokenizer (trained here on the given texts)    model_input_names
    bert          WordPiece from the texts' words                 input_ids token_type_ids mask
    distilbert    WordPiece                                       input_ids mask
    roberta       byte-level BPE                                  input_ids mask
    xlm-roberta   Unigram (SentencePiece-like)                    input_ids mask
    electra       WordPiece                                       input_ids token_type_ids mask
    deberta-v3    Unigram; config type_vocab_size 0               input_ids token_type_ids mask
    mpnet         WordPiece with <s> </s> specials                input_ids mask
    modernbert    byte-level BPE                                  input_ids mask
    albert        Unigram                                         input_ids token_type_ids mask

Used by tests/test_families.py and benchmarks/families_parity.py; nothing is downloaded.
"""

from __future__ import annotations

import collections
from pathlib import Path

import torch

FAMILY_NAMES = (
    "bert",
    "distilbert",
    "roberta",
    "xlm-roberta",
    "electra",
    "deberta-v3",
    "mpnet",
    "modernbert",
    "albert",
)

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def _words(texts: list[str], limit: int) -> list[str]:
    counts = collections.Counter(w for t in texts for w in t.lower().split())
    return [w for w, _ in counts.most_common(limit)]


def _wordpiece(texts: list[str], specials: list[str], vocab_size: int):
    """A WordPiece vocabulary: the specials, every character seen, then the commonest words."""
    chars = sorted({c for t in texts for c in t.lower() if not c.isspace()})
    words = [w for w in _words(texts, vocab_size) if w not in chars]
    vocab = list(dict.fromkeys(specials + chars + ["##" + c for c in chars] + words))
    return vocab[: max(vocab_size, len(specials) + 2 * len(chars))]


def _byte_bpe(texts: list[str], specials: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def _unigram(texts: list[str], specials: list[str], unk: str, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=specials, unk_token=unk, show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def _template(tokenizer, cls: str, sep: str, pair_sep: str, type_ids: bool) -> None:
    from tokenizers import processors

    second = 1 if type_ids else 0
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {pair_sep}:0 $B:{second} {sep}:{second}",
        special_tokens=[(t, tokenizer.token_to_id(t)) for t in dict.fromkeys([cls, sep])],
    )


def build_tokenizer(family: str, folder: Path, texts: list[str], vocab_size: int = 400):
    """The family's fast tokenizer, trained on `texts` and saved in `folder`."""
    import transformers as tf

    folder.mkdir(parents=True, exist_ok=True)
    if family in ("bert", "distilbert", "electra", "mpnet"):
        specials = (
            ["<s>", "<pad>", "</s>", "[UNK]", "<mask>"] if family == "mpnet" else BERT_SPECIALS
        )
        (folder / "vocab.txt").write_text("\n".join(_wordpiece(texts, specials, vocab_size)) + "\n")
        kind = {
            "bert": tf.BertTokenizerFast,
            "distilbert": tf.DistilBertTokenizerFast,
            "electra": tf.ElectraTokenizerFast,
            "mpnet": tf.MPNetTokenizerFast,
        }[family]
        # from_pretrained, not kind(vocab_file=...): transformers 5 ignores vocab_file
        tokenizer = kind.from_pretrained(str(folder), do_lower_case=True)
    elif family == "roberta":
        trained = _byte_bpe(texts, ROBERTA_SPECIALS, vocab_size)
        trained.model.save(str(folder))
        tokenizer = tf.RobertaTokenizerFast.from_pretrained(str(folder))
    elif family == "modernbert":
        trained = _byte_bpe(texts, ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"], vocab_size)
        _template(trained, "[CLS]", "[SEP]", "[SEP]", type_ids=False)
        tokenizer = tf.PreTrainedTokenizerFast(
            tokenizer_object=trained,
            unk_token="[UNK]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            pad_token="[PAD]",
            mask_token="[MASK]",
            model_input_names=["input_ids", "attention_mask"],
        )
    elif family == "xlm-roberta":
        trained = _unigram(texts, ROBERTA_SPECIALS, "<unk>", vocab_size)
        _template(trained, "<s>", "</s>", "</s> </s>", type_ids=False)
        tokenizer = tf.XLMRobertaTokenizerFast(tokenizer_object=trained)
    elif family in ("deberta-v3", "albert"):
        specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
        trained = _unigram(texts, specials, "[UNK]", vocab_size)
        _template(trained, "[CLS]", "[SEP]", "[SEP]", type_ids=True)
        kind = tf.DebertaV2TokenizerFast if family == "deberta-v3" else tf.AlbertTokenizerFast
        tokenizer = kind(
            tokenizer_object=trained,
            unk_token="[UNK]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            pad_token="[PAD]",
            mask_token="[MASK]",
        )
    else:
        raise ValueError(f"unknown family {family!r}")
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def build_config(family: str, tokenizer, layers: int, hidden: int, heads: int, max_length: int):
    import transformers as tf

    common = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        num_labels=2,
        id2label={0: "0", 1: "1"},
        label2id={"0": 0, "1": 1},
    )
    sizes = dict(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    positions = max_length + 2  # RoBERTa and MPNet count positions from pad_token_id + 1
    if family == "bert":
        return tf.BertConfig(**common, **sizes, max_position_embeddings=positions)
    if family == "distilbert":
        return tf.DistilBertConfig(
            **common,
            dim=hidden,
            n_layers=layers,
            n_heads=heads,
            hidden_dim=2 * hidden,
            dropout=0.0,
            attention_dropout=0.0,
            max_position_embeddings=positions,
        )
    if family == "roberta":
        return tf.RobertaConfig(
            **common, **sizes, max_position_embeddings=positions, type_vocab_size=1
        )
    if family == "xlm-roberta":
        return tf.XLMRobertaConfig(
            **common, **sizes, max_position_embeddings=positions, type_vocab_size=1
        )
    if family == "electra":
        return tf.ElectraConfig(
            **common, **sizes, embedding_size=hidden // 2, max_position_embeddings=positions
        )
    if family == "deberta-v3":
        return tf.DebertaV2Config(
            **common,
            **sizes,
            max_position_embeddings=positions,
            type_vocab_size=0,
            relative_attention=True,
            position_buckets=16,
            max_relative_positions=-1,
            pos_att_type=["p2c", "c2p"],
            position_biased_input=False,
            norm_rel_ebd="layer_norm",
            share_att_key=True,
        )
    if family == "mpnet":
        return tf.MPNetConfig(**common, **sizes, max_position_embeddings=positions)
    if family == "modernbert":
        return tf.ModernBertConfig(
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            cls_token_id=tokenizer.cls_token_id,
            sep_token_id=tokenizer.sep_token_id,
            bos_token_id=tokenizer.cls_token_id,
            eos_token_id=tokenizer.sep_token_id,
            num_labels=2,
            id2label={0: "0", 1: "1"},
            label2id={"0": 0, "1": 1},
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=2 * hidden,
            max_position_embeddings=positions,
            global_attn_every_n_layers=2,
            local_attention=8,  # a window shorter than the texts, so it matters
            attention_dropout=0.0,
            embedding_dropout=0.0,
            mlp_dropout=0.0,
            classifier_pooling="mean",
        )
    if family == "albert":
        return tf.AlbertConfig(
            **common,
            **sizes,
            embedding_size=hidden // 2,
            max_position_embeddings=positions,
            classifier_dropout_prob=0.0,
        )
    raise ValueError(f"unknown family {family!r}")


def build_family(
    family: str,
    folder: Path,
    texts: list[str],
    layers: int = 4,
    hidden: int = 32,
    heads: int = 4,
    max_length: int = 64,
    seed: int = 0,
    vocab_size: int = 400,
) -> Path:
    """A random `family` sequence classifier (two labels) with its tokenizer, in `folder`."""
    from transformers import AutoModelForSequenceClassification

    tokenizer = build_tokenizer(family, folder, texts, vocab_size)
    config = build_config(family, tokenizer, layers, hidden, heads, max_length)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder
