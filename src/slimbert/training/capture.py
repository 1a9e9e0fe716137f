"""Reading a BERT's self-attention internals during an ordinary forward pass.

Hugging Face's `output_attentions` gives softmaxed probabilities, but TinyBERT matches the
pre-softmax scores and MiniLMv2 matches query/key/value relations. Both are recomputed here from
the outputs of each layer's `query`, `key` and `value` projections, caught with forward hooks:

    hidden (B, T, H) ──► query ──► Q (B, T, A) ─┐
                     ├─► key   ──► K (B, T, A) ─┼─► scores = Q·Kᵀ / √hs ──► (+mask) ──► softmax
                     └─► value ──► V (B, T, A) ─┘        ▲ recomputed here, mask left out

Hooks work the same under eager and SDPA attention and leave the model untouched: they are
registered for one forward pass and removed after it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from slimbert.batches import model_inputs
from slimbert.errors import SlimbertError
from slimbert.models import encoder_layers
from slimbert.training.outputs import Outputs


@dataclass
class AttentionParts:
    """One layer's self-attention projections, before the split into heads.

    query, key, value: (B, T, A)  A = heads · head size (the layer's all_head_size)
    heads:             the layer's attention-head count
    """

    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    heads: int

    def scores(self) -> torch.Tensor:
        """Pre-softmax attention scores Q·Kᵀ/√hs per head, without the padding mask:
        (B, nh, T, T)."""
        query = split_heads(self.query, self.heads)  # (B, nh, T, hs)
        key = split_heads(self.key, self.heads)  # (B, nh, T, hs)
        return query @ key.transpose(-1, -2) / math.sqrt(query.shape[-1])


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, A) → (B, heads, T, A / heads), the same split BERT's attention uses."""
    batch, length, width = x.shape
    if width % heads:
        raise SlimbertError(
            f"cannot split width {width} into {heads} heads; pick a head count that divides it"
        )
    return x.view(batch, length, heads, width // heads).transpose(1, 2)


@dataclass
class TransformerOutputs(Outputs):
    """`Outputs` plus each layer's attention projections (one entry per encoder layer)."""

    attention_parts: tuple[AttentionParts, ...] | None = None


def check_absolute_positions(model: nn.Module) -> None:
    kind = getattr(model.config, "position_embedding_type", "absolute")
    if kind != "absolute":
        raise SlimbertError(
            f"{type(model).__name__} uses {kind!r} position embeddings; "
            "recomputed attention scores cover absolute positions only — "
            "use a teacher with position_embedding_type 'absolute'"
        )


@contextlib.contextmanager
def record_attention(model: nn.Module) -> Iterator[list[AttentionParts]]:
    """Collect every encoder layer's Q, K, V during the forward passes inside the block."""
    check_absolute_positions(model)
    found: list[dict[str, torch.Tensor]] = []
    handles = []
    layers = encoder_layers(model)
    for index, layer in enumerate(layers):
        attention = layer.attention.self
        found.append({})
        for name in ("query", "key", "value"):

            def hook(module, args, output, index=index, name=name):
                found[index][name] = output

            handles.append(getattr(attention, name).register_forward_hook(hook))
    parts: list[AttentionParts] = []
    try:
        yield parts
    finally:
        for handle in handles:
            handle.remove()
    for index, layer in enumerate(layers):
        if found[index]:
            parts.append(
                AttentionParts(heads=layer.attention.self.num_attention_heads, **found[index])
            )


def forward_internals(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    hidden_states: bool = True,
    attentions: bool = False,
) -> TransformerOutputs:
    """Run `model` on `batch` and return logits, hidden states and every layer's Q/K/V."""
    parts: list[AttentionParts]
    with record_attention(model) as parts:
        result = model(
            **model_inputs(batch), output_hidden_states=hidden_states, output_attentions=attentions
        )
    return TransformerOutputs(
        logits=result.logits,
        attention_mask=batch["attention_mask"],
        hidden_states=result.hidden_states if hidden_states else None,
        attentions=result.attentions if attentions else None,
        attention_parts=tuple(parts),
    )
