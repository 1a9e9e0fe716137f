"""The KD loss against hand-computed values."""

from __future__ import annotations

import math

import torch

from slimbert.compress.kd import KDConfig, loss_terms
from slimbert.training.losses import combine, soft_cross_entropy
from slimbert.training.outputs import Outputs


def _softmax(values, t):
    exps = [math.exp(v / t) for v in values]
    return [e / sum(exps) for e in exps]


def test_soft_cross_entropy_matches_hand_computation():
    student, teacher, t = [1.0, 0.0], [2.0, -1.0], 2.0
    p, q = _softmax(teacher, t), _softmax(student, t)
    expected = sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True)) * t * t
    got = soft_cross_entropy(torch.tensor([student]), torch.tensor([teacher]), t)
    assert math.isclose(float(got), expected, rel_tol=1e-6)
    assert math.isclose(
        expected, 0.3610, abs_tol=1e-3
    )  # 4 · (0.8176·ln(0.8176/0.6225) + 0.1824·ln(0.1824/0.3775))


def test_soft_loss_is_zero_at_a_match_and_kd_mixes_with_alpha():
    logits = torch.tensor([[0.3, -0.2, 1.0]])
    assert float(soft_cross_entropy(logits, logits, 3.0)) < 1e-7
    student = Outputs(logits=torch.tensor([[1.0, 0.0]]), attention_mask=torch.ones(1, 4))
    teacher = Outputs(logits=torch.tensor([[2.0, -1.0]]), attention_mask=torch.ones(1, 4))
    batch = {"labels": torch.tensor([1])}
    total, terms = combine(
        loss_terms(KDConfig(temperature=2.0, alpha=0.25)), student, teacher, batch
    )
    hard = -math.log(_softmax([1.0, 0.0], 1.0)[1])
    assert math.isclose(terms["hard"], hard, rel_tol=1e-6)
    assert math.isclose(float(total), 0.25 * terms["soft"] + 0.75 * hard, rel_tol=1e-6)


def test_regression_uses_mse_to_teacher():
    student = Outputs(logits=torch.tensor([[1.0], [3.0]]), attention_mask=torch.ones(2, 4))
    teacher = Outputs(logits=torch.tensor([[2.0], [3.0]]), attention_mask=torch.ones(2, 4))
    batch = {"labels": torch.tensor([0.0, 5.0])}
    _, terms = combine(loss_terms(KDConfig(alpha=0.5)), student, teacher, batch)
    assert math.isclose(terms["soft"], 0.5, rel_tol=1e-6)  # ((1-2)² + 0) / 2
    assert math.isclose(terms["hard"], 2.5, rel_tol=1e-6)  # ((1-0)² + (3-5)²) / 2
