"""BiLSTM student (Tang et al. 2019) distilled from a BERT-family teacher.

    student = BiLSTM over the teacher's token ids, embeddings from the teacher's table
              (projected to --embedding-dim, see networks/modules.py: TeacherEmbedding);
              sentence pairs are encoded side by side and joined as [a, b, a ⊙ b, |a − b|]
    loss    = alpha · T² · KL(teacher ‖ student at T) + (1 − alpha) · CE(student, gold)

Tang et al. distil with the MSE between logits: --soft-loss mse; the default is the Hinton
soft cross-entropy at temperature T that every slimbert method shares.
The teacher signal is offline, joint (isolated or not) or several teachers at once; --alpha 0
trains on the labels alone. All of it lives in compress/teaching.py.

Reference: Tang, Lu, Liu, Mou, Vechtomova & Lin, "Distilling Task-Specific Knowledge from BERT
into Simple Neural Networks" (2019).
"""

from __future__ import annotations

from dataclasses import dataclass

from slimbert.compress.method import Job, Method
from slimbert.compress.teaching import EmbeddingStudentMethod, teach
from slimbert.networks.configs import BiLSTMConfig
from slimbert.record import ModelRecord
from slimbert.settings import setting
from slimbert.training.config import TrainResult


@dataclass
class BiLSTMMethod(EmbeddingStudentMethod):
    """The flags of `slimbert compress bilstm` beyond data and training, one field each: the
    teacher signal and the embedding table (EmbeddingStudentMethod), then the network's sizes
    (see BiLSTMConfig)."""

    hidden_size: int = setting(150, "LSTM units per direction.", min=1)
    fc_size: int = setting(200, "Units of the ReLU layer before the classifier.", min=1)

    def student(self) -> BiLSTMConfig:
        return BiLSTMConfig(
            **self.embedding_sizes(),
            hidden_size=self.hidden_size,
            fc_size=self.fc_size,
        )


def run(job: Job, method: BiLSTMMethod) -> tuple[TrainResult, ModelRecord]:
    """The first --teacher gives the tokenizer and embeddings; more teachers add their logits."""
    return teach(job, method.student(), method)


METHOD = Method(
    name="bilstm",
    config=BiLSTMMethod,
    run=run,
    summary="BiLSTM over the teacher's token ids (Tang et al., 2019); pairs encoded side by side.",
    stages=("distil",),
    several_teachers=True,
    # these students train from scratch above the embeddings: a BERT fine-tuning rate is too low
    train_defaults={"lr": 1e-3},
)
