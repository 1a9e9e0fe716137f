"""TextCNN student (Kim 2014) distilled from a BERT-family teacher.

    student = TextCNN over the teacher's token ids, embeddings from the teacher's table
              (projected to --embedding-dim, see networks/modules.py: TeacherEmbedding); a
              sentence pair goes through the convolutions one text at a time (siamese, as
              Tang et al. encode pairs) unless --pair-encoding packed
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

from dataclasses import dataclass

from slimbert.compress.method import Job, Method
from slimbert.compress.teaching import EmbeddingStudentMethod, teach
from slimbert.networks.configs import PAIR_ENCODINGS, TextCNNConfig
from slimbert.record import ModelRecord
from slimbert.settings import setting
from slimbert.training.config import TrainResult


@dataclass
class TextCNNMethod(EmbeddingStudentMethod):
    """The flags of `slimbert compress textcnn` beyond data and training, one field each: the
    teacher signal and the embedding table (EmbeddingStudentMethod), then the network's sizes
    (see TextCNNConfig)."""

    kernel_sizes: list[int] = setting(
        help="Comma-separated n-gram widths of the convolutions.", factory=lambda: [3, 4, 5]
    )
    filters: int = setting(100, "Feature maps per width.", min=1)
    pair_encoding: str = setting(
        "auto",
        "Sentence pairs: siamese (each text through the convolutions apart, joined as "
        "[a, b, a⊙b, |a−b|]), packed (the pair as one sequence), or auto (siamese where the "
        "tokenizer gives token_type_ids).",
        choices=PAIR_ENCODINGS,
    )

    def student(self) -> TextCNNConfig:
        return TextCNNConfig(
            **self.embedding_sizes(),
            kernel_sizes=list(self.kernel_sizes),
            filters=self.filters,
            pair_encoding=self.pair_encoding,
        )


def run(job: Job, method: TextCNNMethod) -> tuple[TrainResult, ModelRecord]:
    """The first --teacher gives the tokenizer and embeddings; more teachers add their logits."""
    return teach(job, method.student(), method)


METHOD = Method(
    name="textcnn",
    config=TextCNNMethod,
    run=run,
    summary=(
        "TextCNN (Kim 2014) over the teacher's token ids, distilled offline, jointly or from "
        "several teachers."
    ),
    stages=("distil",),
    several_teachers=True,
    # these students train from scratch above the embeddings: a BERT fine-tuning rate is too low
    train_defaults={"lr": 1e-3},
)
