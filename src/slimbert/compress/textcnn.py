"""TextCNN student (Kim 2014) distilled from a BERT-family teacher.

    student = TextCNN over the teacher's token ids, embeddings from the teacher's table
              (projected to --embedding-dim, see compress/students.py)
    loss    = alpha · T² · KL(teacher ‖ student at T) + (1 − alpha) · CE(student, gold)

The teacher signal is offline (cached logits), joint (the first teacher trains alongside,
isolated or not) or several teachers at once (mean or weighted logits); --alpha 0 trains on
the labels alone for the baseline row. All of it lives in compress/teaching.py; this file says
what the student is.

Reference: Kim, "Convolutional Neural Networks for Sentence Classification" (EMNLP 2014):
widths 3, 4, 5 with 100 feature maps each and dropout 0.5 are the paper's defaults (its
max-norm weight constraint is not used: AdamW's weight decay stands in for it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from slimbert.batches import DataSpec
from slimbert.compress.networks import TextCNNConfig
from slimbert.compress.teaching import TeachingConfig, teach, teacher_dirs
from slimbert.training.loop import TrainConfig, TrainResult


@dataclass
class TextCNNMethod(TeachingConfig):
    """The flags of `slimbert compress textcnn` beyond data and training, one field each: the
    teacher signal (TeachingConfig) and the network's sizes (see TextCNNConfig)."""

    embedding_dim: int = 300
    projection: str = "pca"
    freeze_embeddings: bool = False
    dropout: float = 0.5
    kernel_sizes: list[int] = field(default_factory=lambda: [3, 4, 5])
    filters: int = 100

    def student(self) -> TextCNNConfig:
        return TextCNNConfig(
            embedding_dim=self.embedding_dim,
            projection=self.projection,
            freeze_embeddings=self.freeze_embeddings,
            dropout=self.dropout,
            kernel_sizes=list(self.kernel_sizes),
            filters=self.filters,
        )


def run(
    teacher_dir: Path | Sequence[Path],
    spec: DataSpec,
    out: Path,
    method: TextCNNMethod,
    config: TrainConfig,
) -> tuple[TrainResult, dict]:
    """`teacher_dir`: one teacher, or several (the first gives tokenizer and embeddings)."""
    return teach(teacher_dirs(teacher_dir), spec, out, method.student(), method, config)
