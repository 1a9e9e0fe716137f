"""A professor ensemble on disk and in memory: members' logits combined by their votes.

`professor boost` (teachers/boost.py) writes the directory; `load_teacher` (teachers/load.py)
reads it back through `load_ensemble`, so every `--teacher` flag takes an ensemble.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from slimbert.errors import SlimbertError
from slimbert.families import forward_inputs
from slimbert.training.logits_cache import model_fingerprint

ENSEMBLE_FORMAT = "slimbert-ensemble/1"


COMBINES = ("logits", "probabilities")


class EnsembleClassifier(nn.Module):
    """Members' logits weighted by their votes: logits (B, C) = Σ_k weights[k] · logits_k (B, C),
    or with combine="probabilities" log Σ_k weights[k] · softmax(logits_k) (B, C).

    It gives logits only; hidden states and attentions come from `Teacher.layers` (one member).
    """

    def __init__(self, members: list[nn.Module], weights: list[float], combine: str = "logits"):
        super().__init__()
        if len(members) != len(weights) or not members:
            raise ValueError(f"{len(members)} members but {len(weights)} weights")
        if combine not in COMBINES:
            raise ValueError(f"combine {combine!r} is not one of {COMBINES}")
        self.combine = combine
        self.members = nn.ModuleList(members)
        normalised = torch.tensor(weights, dtype=torch.float32)
        self.register_buffer("weights", normalised / normalised.sum())  # (K,)
        self.config = members[0].config  # labels and task, as one member's

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        **_,
    ):
        if output_hidden_states or output_attentions:
            raise SlimbertError(
                "an ensemble teacher gives logits only; build layer-matching losses on "
                "Teacher.layers (its best member)"
            )
        given = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
        }
        logits = torch.stack(
            [member(**member_inputs(given, member)).logits for member in self.members]
        )  # (K, B, C)
        weights = self.weights.to(logits.dtype)
        if self.combine == "logits":
            combined = torch.einsum("k,kbc->bc", weights, logits)  # (B, C)
        else:
            log_mixture = (
                torch.log_softmax(logits, dim=-1) + weights.log()[:, None, None]
            )  # (K, B, C)
            combined = torch.logsumexp(log_mixture, dim=0)  # (B, C)
        return SequenceClassifierOutput(logits=combined)


def member_inputs(given: dict, member: nn.Module) -> dict:
    """The inputs one member reads (`families.forward_inputs`), of those given (each (B, T))."""
    taken = forward_inputs(member)
    return {k: v for k, v in given.items() if v is not None and k in taken}


def combine_logits(
    member_logits: list[np.ndarray], weights: list[float], combine: str = "logits"
) -> np.ndarray:
    """The ensemble's logits (N, C) from each member's (N, C), as EnsembleClassifier does."""
    stacked = torch.from_numpy(np.stack(member_logits)).double()  # (K, N, C)
    norm = torch.tensor(weights, dtype=torch.float64) / float(np.sum(weights))  # (K,)
    if combine == "logits":
        combined = torch.einsum("k,knc->nc", norm, stacked)
    else:
        combined = torch.logsumexp(
            torch.log_softmax(stacked, dim=-1) + norm.log()[:, None, None], dim=0
        )
    return combined.float().numpy()


def ensemble_fingerprint(path: Path, ensemble: dict) -> str:
    """Cache key of an ensemble: its combination record and every member's weights."""
    digest = hashlib.sha256(
        json.dumps(
            {k: ensemble[k] for k in ("format", "combine", "members", "weights")}, sort_keys=True
        ).encode()
    )
    for member in ensemble["members"]:
        digest.update(model_fingerprint(path / member).encode())
    return digest.hexdigest()


ENSEMBLE_FILE = "ensemble.json"
