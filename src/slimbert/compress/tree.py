"""Soft decision tree student (Frosst & Hinton 2017) distilled from a BERT-family teacher.

    student = a depth-d soft tree over the mean of the text's token vectors, the vectors from
              the teacher's embedding table (projected to --embedding-dim, see
              networks/modules.py: TeacherEmbedding); its output is the mixture of leaf
              distributions
    loss    = alpha · T² · KL(teacher ‖ student at T) + (1 − alpha) · CE(student, gold)
              + balance · C,  C the paper's penalty that keeps each inner node using both
              branches (decayed by 2^−depth)

The smallest and most inspectable student: every inner node is one hyperplane in the
embedding space, so the tokens whose vectors lie furthest along it say what sends a text right
or left. `inspect_tree` lists them with each leaf's distribution; the saved slimbert.json
carries that listing under "tree". The teacher signal is offline, joint or several teachers
at once, as for textcnn and bilstm (compress/teaching.py); --alpha 0 trains on the labels alone.

Reference: Frosst & Hinton, "Distilling a Neural Network Into a Soft Decision Tree" (2017).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from slimbert.compress.method import Job, Method
from slimbert.compress.teaching import (
    EmbeddingStudentMethod,
    dropout_setting,
    embedding_dim_setting,
    teach,
)
from slimbert.errors import SlimbertError
from slimbert.networks.configs import TreeConfig
from slimbert.networks.tree import SoftTree
from slimbert.record import ModelRecord
from slimbert.settings import setting
from slimbert.training.config import TrainResult


@dataclass
class TreeMethod(EmbeddingStudentMethod):
    """The flags of `slimbert compress tree` beyond data and training, one field each: the
    teacher signal and the embedding table (EmbeddingStudentMethod; the tree's default width is
    128 and it drops nothing), the tree's sizes (see TreeConfig) and balance, the weight λ of
    the balance penalty (the paper's λ at the root)."""

    embedding_dim: int = embedding_dim_setting(128)
    dropout: float = dropout_setting(0.0)
    depth: int = setting(4, "Levels of inner nodes (2^depth leaves).", min=1, max=12)
    inverse_temperature: float = setting(
        1.0, "β in each inner node's σ(β · (x·w + b)).", min=0, min_open=True
    )
    balance: float = setting(
        0.1, "Weight of the penalty that keeps every inner node using both branches.", min=0
    )

    def student(self) -> TreeConfig:
        return TreeConfig(
            **self.embedding_sizes(),
            depth=self.depth,
            inverse_temperature=self.inverse_temperature,
        )


@torch.no_grad()
def inspect_tree(tree: SoftTree, tokenizer, top_k: int = 8) -> dict:
    """What each inner node tests and what each leaf predicts.

    nodes[i]: the top_k tokens whose vectors push a text furthest right (p_i up) and left, by
    w_i · e(token) over the first text's block of w_i; leaves[ℓ]: its class distribution
    (regression: its value). Breadth-first order, as in SoftTree.
    """
    vectors = tree.embeddings(torch.arange(tree.config.vocab_size).unsqueeze(0)).squeeze(
        0
    )  # (V, E)
    weights = tree.inner.weight[:, : tree.config.embedding_dim]  # (N, E)
    scores = weights @ vectors.T  # (N, V)
    tokens = tokenizer.convert_ids_to_tokens(list(range(tree.config.vocab_size)))
    k = min(top_k, tree.config.vocab_size)
    nodes = []
    for i, row in enumerate(scores):
        nodes.append(
            {
                "node": i,
                "depth": int(torch.log2(torch.tensor(i + 1.0)).floor()),
                "right": [tokens[j] for j in row.topk(k).indices.tolist()],
                "left": [tokens[j] for j in (-row).topk(k).indices.tolist()],
            }
        )
    if tree.config.num_labels == 1:
        leaves = [{"leaf": i, "value": float(v)} for i, v in enumerate(tree.leaves.squeeze(-1))]
    else:
        distributions = torch.softmax(tree.leaves, dim=-1)
        leaves = [
            {"leaf": i, **{tree.config.id2label[c]: round(float(p), 4) for c, p in enumerate(d)}}
            for i, d in enumerate(distributions)
        ]
    return {"nodes": nodes, "leaves": leaves}


def run(job: Job, method: TreeMethod) -> tuple[TrainResult, ModelRecord]:
    """The first --teacher gives the tokenizer and embeddings; more teachers add their logits."""
    if method.balance < 0:
        raise SlimbertError(f"--balance {method.balance}: give a weight ≥ 0")
    return teach(
        job,
        method.student(),
        method,
        penalty_weight=method.balance,
        inspect=inspect_tree,
    )


METHOD = Method(
    name="tree",
    config=TreeMethod,
    run=run,
    summary="Soft decision tree (Frosst & Hinton 2017) over the mean of the teacher's embeddings.",
    stages=("distil",),
    several_teachers=True,
    # these students train from scratch above the embeddings: a BERT fine-tuning rate is too low
    train_defaults={"lr": 1e-3},
)
