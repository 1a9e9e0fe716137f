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

from dataclasses import dataclass, field
from pathlib import Path

from slimbert.compress.students import BiLSTMConfig
from slimbert.compress.teaching import TeachingConfig, teach
from slimbert.compress.trainer import TrainConfig, TrainResult
from slimbert.task import DataSpec


@dataclass
class BiLSTMMethod:
    """student: the network's sizes; teaching: where its soft targets come from."""

    student: BiLSTMConfig = field(default_factory=BiLSTMConfig)
    teaching: TeachingConfig = field(default_factory=TeachingConfig)


def run(teacher_dir: Path, spec: DataSpec, out: Path, method: BiLSTMMethod, config: TrainConfig) -> tuple[TrainResult, dict]:
    return teach(teacher_dir, spec, out, method.student, method.teaching, config)
