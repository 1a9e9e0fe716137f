"""Students without attention: TextCNN and BiLSTM (the soft decision tree in networks/tree.py).

All three read the teacher's token ids (its tokenizer is saved with them) and start from the
teacher's input embedding table, brought to the student's width E by a fixed projection:

    teacher table W (V, H)  ──►  W · P  (V, E),   P = s · [v_1 … v_E]  (H, E)

v_1 … v_E are the top right singular vectors of W (truncated SVD, the directions that keep the
most of W; each sign fixed so its largest entry is positive, for runs that repeat exactly) and s
scales the projected table to unit standard deviation, the input scale the students' default
initialisation expects. With E = H, P is s · I (the teacher's table, rescaled).

    projection="pca"     the student owns a (V, E) table initialised to W · P and trains it
                         (unless freeze_embeddings)
    projection="learned" the student keeps W frozen and learns P, initialised as above

Padding never changes a prediction: every student masks it out, so one request gives the same
logits alone or padded inside a batch (which is what ONNX parity and batched serving need).

Their settings live in networks/configs.py; networks/files.py builds a student
from a teacher, saves it and loads it back.

References: Kim, "Convolutional Neural Networks for Sentence Classification" (2014); Tang et al.,
"Distilling Task-Specific Knowledge from BERT into Simple Neural Networks" (2019); Frosst &
Hinton, "Distilling a Neural Network Into a Soft Decision Tree" (2017).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from slimbert.errors import SlimbertError
from slimbert.networks.configs import BiLSTMConfig, StudentConfig, TextCNNConfig


@dataclass
class StudentOutput:
    """logits: (B, C). penalty: the architecture's own regulariser, unweighted (the tree's
    balance term), else None. hidden_states/attentions: always None (no layers to match)."""

    logits: torch.Tensor
    penalty: torch.Tensor | None = None
    hidden_states: None = None
    attentions: None = None


# ---------------------------------------------------------------------------------------------
# shared pieces


def principal_directions(table: torch.Tensor, dim: int) -> torch.Tensor:
    """The fixed projection P (H, E) described in the module docstring, for a table (V, H)."""
    table = table.detach().float()
    source_dim = table.shape[1]
    if dim == source_dim:
        directions = torch.eye(source_dim)
    else:
        _, _, right = torch.linalg.svd(
            table, full_matrices=False
        )  # right: (H, H), rows = directions
        directions = right[:dim].T.contiguous()  # (H, E)
        # SVD directions are defined up to sign; pin it so two runs give the same table
        largest = directions.abs().argmax(dim=0)  # (E,)
        signs = torch.sign(directions[largest, torch.arange(dim)])
        directions = directions * torch.where(signs == 0, torch.ones_like(signs), signs)
    scale = 1.0 / (table @ directions).std().clamp_min(1e-12)
    return directions * scale


class TeacherEmbedding(nn.Module):
    """Token ids (B, T) → vectors (B, T, E), from the teacher's table (see module docstring)."""

    def __init__(self, config: StudentConfig):
        super().__init__()
        self.learned = config.projection == "learned"
        if self.learned:
            self.table = nn.Embedding(config.vocab_size, config.source_dim)
            self.table.weight.requires_grad_(False)
            self.project = nn.Linear(config.source_dim, config.embedding_dim, bias=False)
        else:
            self.table = nn.Embedding(config.vocab_size, config.embedding_dim)
            self.table.weight.requires_grad_(not config.freeze_embeddings)
            self.project = None

    @torch.no_grad()
    def initialise(self, teacher_table: torch.Tensor) -> None:
        """Copy in the teacher's table (V, H), projected or kept for a learned projection."""
        vocab, source_dim = teacher_table.shape
        assert vocab == self.table.num_embeddings, (vocab, self.table.num_embeddings)
        width = self.project.out_features if self.project is not None else self.table.embedding_dim
        directions = principal_directions(teacher_table, width)  # (H, E)
        if self.project is not None:
            assert self.table.weight.shape == teacher_table.shape, (
                self.table.weight.shape,
                teacher_table.shape,
            )
            self.table.weight.copy_(teacher_table)
            self.project.weight.copy_(directions.T)
        else:
            self.table.weight.copy_(teacher_table.float() @ directions)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        vectors = self.table(input_ids)  # (B, T, E) or (B, T, H)
        return self.project(vectors) if self.project is not None else vectors


def token_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    return torch.ones_like(input_ids) if attention_mask is None else attention_mask


def pair_masks(
    attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Real-token masks (B, T) of the first and second text of a packed pair."""
    if token_type_ids is None:
        raise SlimbertError(
            "this student reads sentence pairs and needs token_type_ids from the tokenizer; "
            "pass the tokenizer's full output"
        )
    first = attention_mask * (token_type_ids == 0).to(attention_mask.dtype)
    second = attention_mask * (token_type_ids == 1).to(attention_mask.dtype)
    return first, second


def join_pair(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """The siamese students' pair features: a, b (B, D) → [a, b, a ⊙ b, |a − b|] (B, 4D)."""
    return torch.cat([first, second, first * second, (first - second).abs()], dim=-1)


def masked_mean(vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of vectors (B, T, E) over positions where mask (B, T) is 1 → (B, E)."""
    weights = mask.to(vectors.dtype).unsqueeze(-1)  # (B, T, 1)
    return (vectors * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def left_align(vectors: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift one contiguous run of real tokens to the front: vectors (B, T, E), mask (B, T) →
    (B, T, E) starting with the run, and its lengths (B,). Used for a pair's second text."""
    steps = vectors.shape[1]
    positions = torch.arange(steps, device=vectors.device).unsqueeze(0)  # (1, T)
    start = mask.float().argmax(dim=1)  # (B,) first real token of the run
    lengths = mask.sum(dim=1)  # (B,)
    index = (positions + start.unsqueeze(1)).clamp(max=steps - 1)  # (B, T)
    aligned = vectors.gather(1, index.unsqueeze(-1).expand(-1, -1, vectors.shape[-1]))
    return aligned, lengths


# ---------------------------------------------------------------------------------------------
# TextCNN


class TextCNN(nn.Module):
    """Kim (2014): parallel 1-D convolutions over the token vectors, max over time, a linear
    classifier.

        ids (B, T) ─► E (B, T, E) ──┬─ conv k=3 ─ ReLU ─ max over time ─┐
                                    ├─ conv k=4 ─ ReLU ─ max over time ─┼─ concat (B, 3F) ─┐
                                    └─ conv k=5 ─ ReLU ─ max over time ─┘                  │
                                                               (B, C) ◄─ linear ─ dropout ─┘

    Convolutions are "wide" (padding k−1) so a text shorter than k still has windows, and only
    windows that touch a real token take part in the max: a window over padding alone is zeroed
    (ReLU output is ≥ 0, so a zero never wins over a real window's maximum).

    Sentence pairs (config.pair, TextCNNConfig.pair_encoding "siamese"): the same convolutions
    read each text apart — the other text's positions are zeroed like padding — and the two
    pooled vectors a, b (B, 3F) are joined as [a, b, a ⊙ b, |a − b|] (B, 12F) for the
    classifier. Without it, a packed pair is one sequence.
    """

    def __init__(self, config: TextCNNConfig):
        super().__init__()
        config.check()
        self.config = config
        self.embeddings = TeacherEmbedding(config)
        self.convolutions = nn.ModuleList(
            nn.Conv1d(config.embedding_dim, config.filters, k, padding=k - 1)
            for k in config.kernel_sizes
        )
        self.dropout = nn.Dropout(config.dropout)
        pooled = config.filters * len(config.kernel_sizes) * (4 if config.pair else 1)
        self.classifier = nn.Linear(pooled, config.num_labels)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.table

    def encode(self, vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """vectors (B, T, E) and the mask (B, T) of the tokens to read → pooled (B, 3F)."""
        vectors = vectors * mask.unsqueeze(-1).to(
            vectors.dtype
        )  # padding (and the other text) zeroed
        vectors = vectors.transpose(1, 2)  # (B, E, T)
        mask_row = mask.to(vectors.dtype).unsqueeze(1)  # (B, 1, T)
        features = []
        for convolution in self.convolutions:
            width = convolution.kernel_size[0]
            maps = F.relu(convolution(vectors))  # (B, F, T + k − 1)
            window = torch.ones(1, 1, width, dtype=vectors.dtype, device=vectors.device)
            touches_text = (F.conv1d(mask_row, window, padding=width - 1) > 0).to(
                maps.dtype
            )  # (B, 1, T + k − 1)
            features.append((maps * touches_text).amax(dim=2))  # (B, F)
        return torch.cat(features, dim=1)  # (B, len(kernel_sizes) · F)

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        output_hidden_states=False,
        output_attentions=False,
    ) -> StudentOutput:
        mask = token_mask(input_ids, attention_mask)  # (B, T)
        vectors = self.embeddings(input_ids)  # (B, T, E)
        if self.config.pair:
            first_mask, second_mask = pair_masks(mask, token_type_ids)
            first, second = self.encode(vectors, first_mask), self.encode(vectors, second_mask)
            pooled = join_pair(first, second)  # (B, 4 · 3F)
        else:
            pooled = self.encode(vectors, mask)  # (B, 3F)
        return StudentOutput(logits=self.classifier(self.dropout(pooled)))


# ---------------------------------------------------------------------------------------------
# BiLSTM


class BiLSTM(nn.Module):
    """Tang et al. (2019): a bidirectional LSTM whose last forward and backward states feed a
    ReLU layer and the classifier. Sentence pairs go through the same encoder one side at a
    time (siamese) and are joined as [a, b, a ⊙ b, |a − b|].

        single:  ids ─► E ─► BiLSTM ─► [h→_n, h←_1] (B, 2U) ─► head
        pair:    a = BiLSTM(first), b = BiLSTM(second) ─► [a, b, a⊙b, |a−b|] (B, 8U) ─► head
        head:    dropout ─► ReLU(fc) ─► linear ─► (B, C)

    The two directions are two unidirectional LSTMs; the backward one reads each text reversed
    within its own length, so padding after the text never reaches either final state (no
    packed sequences, which export poorly to ONNX).
    """

    def __init__(self, config: BiLSTMConfig):
        super().__init__()
        config.check()
        self.config = config
        self.embeddings = TeacherEmbedding(config)
        self.forward_lstm = nn.LSTM(config.embedding_dim, config.hidden_size, batch_first=True)
        self.backward_lstm = nn.LSTM(config.embedding_dim, config.hidden_size, batch_first=True)
        encoded = 2 * config.hidden_size * (4 if config.pair else 1)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(encoded, config.fc_size)
        self.classifier = nn.Linear(config.fc_size, config.num_labels)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.table

    def _run(self, lstm: nn.LSTM, vectors: torch.Tensor) -> torch.Tensor:
        # explicit zero states sized from the input keep the batch axis dynamic in ONNX
        state = vectors.new_zeros(1, vectors.shape[0], lstm.hidden_size)  # (1, B, U)
        outputs, _ = lstm(vectors, (state, state))  # (B, T, U)
        return outputs

    def encode(self, vectors: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Text vectors (B, T, E) with its first `lengths` (B,) positions real → (B, 2U)."""
        steps = vectors.shape[1]
        positions = torch.arange(steps, device=vectors.device).unsqueeze(0)  # (1, T)
        last = (lengths - 1).clamp(min=0).unsqueeze(1)  # (B, 1)
        reverse = torch.where(
            positions < lengths.unsqueeze(1), last - positions, positions
        )  # (B, T)
        reversed_vectors = vectors.gather(
            1, reverse.unsqueeze(-1).expand(-1, -1, vectors.shape[-1])
        )  # (B, T, E)
        pick = last.unsqueeze(-1).expand(-1, 1, self.config.hidden_size)  # (B, 1, U)
        forward_state = self._run(self.forward_lstm, vectors).gather(1, pick)  # (B, 1, U)
        backward_state = self._run(self.backward_lstm, reversed_vectors).gather(
            1, pick
        )  # (B, 1, U)
        return torch.cat([forward_state, backward_state], dim=-1).squeeze(1)  # (B, 2U)

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        output_hidden_states=False,
        output_attentions=False,
    ) -> StudentOutput:
        mask = token_mask(input_ids, attention_mask)  # (B, T)
        vectors = self.embeddings(input_ids)  # (B, T, E)
        if self.config.pair:
            first_mask, second_mask = pair_masks(mask, token_type_ids)
            first = self.encode(
                vectors, first_mask.sum(dim=1)
            )  # the first text starts at position 0
            second = self.encode(*left_align(vectors, second_mask))
            encoded = join_pair(first, second)  # (B, 8U)
        else:
            encoded = self.encode(vectors, mask.sum(dim=1))  # (B, 2U)
        hidden = F.relu(self.fc(self.dropout(encoded)))  # (B, fc)
        return StudentOutput(logits=self.classifier(self.dropout(hidden)))


# ---------------------------------------------------------------------------------------------
# soft decision tree
