"""The settings of the students without attention (TextCNN, BiLSTM, soft tree), saved whole in
their config.json; modules.py holds the networks, files.py builds, saves and
loads them.

Their config.json also carries a `model_type` ("slimbert-textcnn", "slimbert-bilstm",
"slimbert-tree") registered with transformers' AutoConfig when this module is imported (as
`import slimbert.models` does), so `AutoConfig.from_pretrained(folder)` reads one — sizes and
labels included. The networks are not transformers models: AutoModel and optimum's ORTModel
classes have no class for these types and refuse them; `slimbert.models.load_classifier` loads
the student, `slimbert.load` its ONNX export.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from transformers import AutoConfig, PretrainedConfig

from slimbert.errors import SlimbertError

ARCHITECTURE_KEY = "slimbert_architecture"
MODEL_TYPE_PREFIX = "slimbert-"


PROJECTIONS = ("pca", "learned")


@dataclass
class StudentConfig:
    """What every non-transformer student shares; saved whole in config.json.

    vocab_size:        rows of the teacher's embedding table (its tokenizer's ids)
    source_dim:        the teacher's embedding width H
    embedding_dim:     the student's embedding width E (≤ H for projection="pca")
    projection:        "pca" (own table W·P, trained) or "learned" (W frozen, P trained)
    freeze_embeddings: keep the student's own table fixed (projection="pca" only)
    num_labels:        classes C (1 for regression)
    id2label:          class id → label name
    problem_type:      "single_label_classification" or "regression"
    pad_token_id:      the tokenizer's padding id
    pair:              inputs are sentence pairs split by token_type_ids, each side encoded
                       apart (siamese); a TextCNN with pair_encoding "packed" keeps this off
                       and reads the packed pair as one sequence
    dropout:           dropout before the classifier during training
    """

    architecture: ClassVar[str] = ""

    vocab_size: int = 0
    source_dim: int = 0
    embedding_dim: int = 300
    projection: str = "pca"
    freeze_embeddings: bool = False
    num_labels: int = 2
    id2label: dict[int, str] = field(default_factory=lambda: {0: "0", 1: "1"})
    problem_type: str = "single_label_classification"
    pad_token_id: int = 0
    pair: bool = False
    dropout: float = 0.5

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in self.id2label.items()}

    def check(self) -> None:
        """Raise SlimbertError on sizes a user can get wrong."""
        if self.projection not in PROJECTIONS:
            raise SlimbertError(
                f"--projection {self.projection!r}: choose one of {', '.join(PROJECTIONS)}"
            )
        if self.embedding_dim < 1:
            raise SlimbertError(f"--embedding-dim {self.embedding_dim}: give a width of at least 1")
        if self.projection == "pca" and self.source_dim and self.embedding_dim > self.source_dim:
            raise SlimbertError(
                f"--embedding-dim {self.embedding_dim} is wider than the teacher's embeddings "
                f"({self.source_dim}); a fixed projection cannot add directions: "
                f"use --embedding-dim ≤ {self.source_dim} or --projection learned"
            )
        if not 0 <= self.dropout < 1:
            raise SlimbertError(f"--dropout {self.dropout}: give a probability in [0, 1)")

    def to_json(self) -> dict[str, Any]:
        """config.json: the model type and architecture keys, HF-style label fields, then every
        size."""
        values = asdict(self)
        values["id2label"] = {str(k): v for k, v in self.id2label.items()}
        return {
            "model_type": MODEL_TYPE_PREFIX + self.architecture,
            ARCHITECTURE_KEY: self.architecture,
            **values,
            "label2id": self.label2id,
        }


PAIR_ENCODINGS = ("auto", "siamese", "packed")


@dataclass
class TextCNNConfig(StudentConfig):
    """Kim (2014): kernel_sizes: n-gram widths; filters: feature maps per width.

    pair_encoding: sentence pairs as "siamese" (each text through the convolutions apart, joined
    as [a, b, a ⊙ b, |a − b|]; needs token_type_ids), "packed" (the pair as one sequence) or
    "auto" (siamese where the tokenizer gives token_type_ids); build_network saves the resolved
    choice. The network reads `pair` alone, so folders saved before the option (pair off) still
    read a pair packed, as they were trained."""

    architecture: ClassVar[str] = "textcnn"
    kernel_sizes: list[int] = field(default_factory=lambda: [3, 4, 5])
    filters: int = 100
    pair_encoding: str = "auto"

    def check(self) -> None:
        super().check()
        if self.pair_encoding not in PAIR_ENCODINGS:
            raise SlimbertError(
                f"--pair-encoding {self.pair_encoding!r}: choose one of {', '.join(PAIR_ENCODINGS)}"
            )
        if not self.kernel_sizes or any(k < 1 for k in self.kernel_sizes) or self.filters < 1:
            raise SlimbertError(
                f"--kernel-sizes {self.kernel_sizes} / --filters {self.filters}: "
                "give widths ≥ 1 and at least one filter"
            )


@dataclass
class BiLSTMConfig(StudentConfig):
    """Tang et al. (2019): hidden_size: units per direction; fc_size: the ReLU layer before the
    classifier."""

    architecture: ClassVar[str] = "bilstm"
    hidden_size: int = 150
    fc_size: int = 200

    def check(self) -> None:
        super().check()
        if self.hidden_size < 1 or self.fc_size < 1:
            raise SlimbertError(
                f"--hidden-size {self.hidden_size} / --fc-size {self.fc_size}: give sizes ≥ 1"
            )


@dataclass
class TreeConfig(StudentConfig):
    """Frosst & Hinton (2017): depth: levels of inner nodes (2^depth leaves);
    inverse_temperature: β in each inner node's σ(β · (x·w + b))."""

    architecture: ClassVar[str] = "tree"
    embedding_dim: int = 128
    dropout: float = 0.0
    depth: int = 4
    inverse_temperature: float = 1.0

    def check(self) -> None:
        super().check()
        if not 1 <= self.depth <= 12:
            raise SlimbertError(
                f"--depth {self.depth}: give a depth between 1 and 12 (2^depth leaves)"
            )
        if self.inverse_temperature <= 0:
            raise SlimbertError(
                f"--inverse-temperature {self.inverse_temperature}: give a positive number"
            )


# ---------------------------------------------------------------------------------------------
# config.json as transformers reads it.


class TextCNNPretrainedConfig(PretrainedConfig):
    """A TextCNN student's config.json for AutoConfig: labels and sizes as attributes."""

    model_type = MODEL_TYPE_PREFIX + TextCNNConfig.architecture


class BiLSTMPretrainedConfig(PretrainedConfig):
    """A BiLSTM student's config.json for AutoConfig: labels and sizes as attributes."""

    model_type = MODEL_TYPE_PREFIX + BiLSTMConfig.architecture


class TreePretrainedConfig(PretrainedConfig):
    """A soft-tree student's config.json for AutoConfig: labels and sizes as attributes."""

    model_type = MODEL_TYPE_PREFIX + TreeConfig.architecture


PRETRAINED_CONFIGS = (TextCNNPretrainedConfig, BiLSTMPretrainedConfig, TreePretrainedConfig)

for _config in PRETRAINED_CONFIGS:
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
