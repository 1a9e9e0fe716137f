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

from dataclasses import dataclass, field
from pathlib import Path

from slimbert.compress.students import TextCNNConfig
from slimbert.compress.teaching import TeachingConfig, teach
from slimbert.compress.trainer import TrainConfig, TrainResult
from slimbert.task import DataSpec


@dataclass
class TextCNNMethod:
    """student: the network's sizes; teaching: where its soft targets come from."""

    student: TextCNNConfig = field(default_factory=TextCNNConfig)
    teaching: TeachingConfig = field(default_factory=TeachingConfig)


def run(teacher_dir: Path, spec: DataSpec, out: Path, method: TextCNNMethod, config: TrainConfig) -> tuple[TrainResult, dict]:
    return teach(teacher_dir, spec, out, method.student, method.teaching, config)
