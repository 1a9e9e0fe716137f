"""The one record every distillation loss reads, whatever model produced it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from slimbert.batches import model_inputs


@dataclass
class Outputs:
    """What a model produced for a batch.

    logits:         (B, C)            C = 1 for regression
    hidden_states:  L+1 × (B, T, H)   embeddings output first, when asked for
    attentions:     L × (B, nh, T, T) softmaxed attention maps, when asked for
    attention_mask: (B, T)            1 for real tokens
    """

    logits: torch.Tensor
    attention_mask: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


def forward(
    model, batch: dict[str, torch.Tensor], hidden_states: bool = False, attentions: bool = False
) -> Outputs:
    inputs = model_inputs(batch, model)
    result = model(**inputs, output_hidden_states=hidden_states, output_attentions=attentions)
    return Outputs(
        logits=result.logits,
        attention_mask=batch["attention_mask"],
        hidden_states=result.hidden_states if hidden_states else None,
        attentions=result.attentions if attentions else None,
    )
