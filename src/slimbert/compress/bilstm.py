"""BiLSTM student (Tang et al. 2019) distilled from a BERT-family teacher.

    student = BiLSTM over the teacher's token ids, embeddings from the teacher's table
              (projected to --embedding-dim, see compress/students.py); sentence pairs are
              encoded side by side and joined as [a, b, a ⊙ b, |a − b|]
    loss    = alpha · T² · KL(teacher ‖ student at T) + (1 − alpha) · CE(student, gold)

Tang et al. distil with the MSE between logits: --soft-loss mse; the default is the Hinton
soft cross-entropy at temperature T that every slimbert method shares.
The teacher signal is offline, joint (isolated or not) or several teachers at once; --alpha 0
trains on the labels alone. All of it lives in compress/teaching.py.

Reference: Tang, Lu, Liu, Mou, Vechtomova & Lin, "Distilling Task-Specific Knowledge from BERT
into Simple Neural Networks" (2019).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from slimbert.batches import DataSpec
from slimbert.compress.networks import BiLSTMConfig
from slimbert.compress.teaching import TeachingConfig, teach, teacher_dirs
from slimbert.training.loop import TrainConfig, TrainResult


@dataclass
class BiLSTMMethod(TeachingConfig):
    """The flags of `slimbert compress bilstm` beyond data and training, one field each: the
    teacher signal (TeachingConfig) and the network's sizes (see BiLSTMConfig)."""

    embedding_dim: int = 300
    projection: str = "pca"
    freeze_embeddings: bool = False
    dropout: float = 0.5
    hidden_size: int = 150
    fc_size: int = 200

    def student(self) -> BiLSTMConfig:
        return BiLSTMConfig(
            embedding_dim=self.embedding_dim,
            projection=self.projection,
            freeze_embeddings=self.freeze_embeddings,
            dropout=self.dropout,
            hidden_size=self.hidden_size,
            fc_size=self.fc_size,
        )


def run(
    teacher_dir: Path | Sequence[Path],
    spec: DataSpec,
    out: Path,
    method: BiLSTMMethod,
    config: TrainConfig,
) -> tuple[TrainResult, dict]:
    """`teacher_dir`: one teacher, or several (the first gives tokenizer and embeddings)."""
    return teach(teacher_dirs(teacher_dir), spec, out, method.student(), method, config)
