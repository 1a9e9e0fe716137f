"""The soft decision tree student (Frosst & Hinton, "Distilling a Neural Network Into a Soft
Decision Tree", 2017) over the teacher's embeddings, as networks/modules.py sets them up."""

from __future__ import annotations

import torch
from torch import nn

from slimbert.networks.configs import TreeConfig
from slimbert.networks.modules import (
    StudentOutput,
    TeacherEmbedding,
    join_pair,
    masked_mean,
    pair_masks,
    token_mask,
)


class SoftTree(nn.Module):
    """Frosst & Hinton (2017): a complete binary tree of depth d over x, the mean of the text's
    token vectors (pairs: [a, b, a ⊙ b, |a − b|] of the two texts' means).

    Inner node i (breadth first, children 2i+1 left and 2i+2 right) goes right with
    p_i(x) = σ(β · (x·w_i + b_i)); leaf ℓ holds a distribution Q_ℓ = softmax(φ_ℓ) (regression:
    a value v_ℓ); P_ℓ(x) is the product of the branch probabilities on the path to ℓ:

                    node 0: p_0
                   /           \\
           (1 − p_0)            p_0
            node 1: p_1         node 2: p_2          depth 2: 4 leaves
            /       \\           /       \\
        leaf 0    leaf 1      leaf 2    leaf 3       P_1 = (1 − p_0) · p_1, ...

    Output: logits = log Σ_ℓ P_ℓ(x) Q_ℓ, the log of the mixture of leaf distributions, so the
    softmax of the logits is that mixture (regression: Σ_ℓ P_ℓ v_ℓ). The paper trains each leaf
    as an expert and predicts with the single most probable leaf; the mixture is smooth in x,
    trains with the same soft and hard losses as the other students, and exports as it is.

    `penalty` is the paper's balance regulariser on the batch, unweighted:
        C = −Σ_i 2^(−depth(i)) · ½ (log α_i + log(1 − α_i)),   α_i = Σ_x P_i(x) p_i(x) / Σ_x P_i(x)
    (P_i: probability of reaching node i); its minimum, every α_i = ½, is Σ_i 2^(−depth(i)) · log 2.
    """

    def __init__(self, config: TreeConfig):
        super().__init__()
        config.check()
        self.config = config
        self.embeddings = TeacherEmbedding(config)
        features = config.embedding_dim * (4 if config.pair else 1)
        self.dropout = nn.Dropout(config.dropout)
        self.inner = nn.Linear(features, 2**config.depth - 1)  # one (w_i, b_i) per inner node
        self.leaves = nn.Parameter(
            0.1 * torch.randn(2**config.depth, config.num_labels)
        )  # φ_ℓ or v_ℓ

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.table

    def features(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """x (B, D): the mean token vector, or the pair features."""
        mask = token_mask(input_ids, attention_mask)
        vectors = self.embeddings(input_ids)  # (B, T, E)
        if not self.config.pair:
            return masked_mean(vectors, mask)  # (B, E)
        first_mask, second_mask = pair_masks(mask, token_type_ids)
        first, second = masked_mean(vectors, first_mask), masked_mean(vectors, second_mask)
        return join_pair(first, second)  # (B, 4E)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, D) → right-branch probabilities p (B, N), reach probabilities of the inner nodes
        (B, N) and of the leaves (B, 2^d); N = 2^d − 1, all breadth first."""
        right = torch.sigmoid(self.config.inverse_temperature * self.inner(x))  # (B, N)
        reach = x.new_ones(x.shape[0], 1)  # (B, 1): the root is always reached
        reached = []
        for level in range(self.config.depth):
            p = right[:, 2**level - 1 : 2 ** (level + 1) - 1]  # (B, 2^level)
            reached.append(reach)
            # node j of this level feeds leaves 2j (left) and 2j+1 (right) of the next level
            reach = torch.stack([reach * (1 - p), reach * p], dim=-1).reshape(
                x.shape[0], 2 ** (level + 1)
            )
        return right, torch.cat(reached, dim=1), reach

    def balance_penalty(self, right: torch.Tensor, reached: torch.Tensor) -> torch.Tensor:
        levels = torch.cat(
            [torch.full((2**level,), float(level)) for level in range(self.config.depth)]
        ).to(right.device)  # (N,)
        alpha = (reached * right).sum(dim=0) / reached.sum(dim=0).clamp_min(1e-12)  # (N,)
        alpha = alpha.clamp(1e-6, 1 - 1e-6)
        return -(torch.pow(2.0, -levels) * 0.5 * (alpha.log() + (1 - alpha).log())).sum()

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        output_hidden_states=False,
        output_attentions=False,
    ) -> StudentOutput:
        x = self.dropout(self.features(input_ids, attention_mask, token_type_ids))  # (B, D)
        right, reached, leaf_reach = self.route(x)  # (B, N), (B, N), (B, 2^d)
        if self.config.num_labels == 1:
            logits = leaf_reach @ self.leaves  # (B, 1)
        else:
            mixture = leaf_reach @ torch.softmax(self.leaves, dim=-1)  # (B, C)
            logits = mixture.clamp_min(1e-30).log()
        penalty = self.balance_penalty(right, reached) if self.training else None
        return StudentOutput(logits=logits, penalty=penalty)


# ---------------------------------------------------------------------------------------------
# building, saving and loading
