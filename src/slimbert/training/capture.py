"""Reading an encoder's self-attention internals during an ordinary forward pass.

Hugging Face's `output_attentions` gives softmaxed probabilities, but TinyBERT matches the
pre-softmax scores and MiniLMv2 matches query/key/value relations. Both are recomputed here from
the outputs of each layer's `query`, `key` and `value` projections, caught with forward hooks:

    hidden (B, T, H) ──► query ──► Q (B, T, A) ─┐
                     ├─► key   ──► K (B, T, A) ─┼─► scores = Q·Kᵀ / √hs ──► (+mask) ──► softmax
                     └─► value ──► V (B, T, A) ─┘        ▲ recomputed here, mask left out

Hooks work the same under eager and SDPA attention and leave the model untouched: they are
registered for one forward pass and removed after it. Where each family keeps its projections
is `slimbert.families`' business. The recomputed scores are the model's own only with absolute
positions (`check_attention_scores`); relations between Q, K and V (MiniLM) need no positions.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from slimbert.batches import model_inputs, processes
from slimbert.errors import SlimbertError
from slimbert.families import family_of
from slimbert.metrics import Metrics
from slimbert.training.losses import LossTerm, combine
from slimbert.training.outputs import Outputs

RELATIONS = ("query", "key", "value")


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


def check_attention_scores(model: nn.Module) -> None:
    """Refuse to match attention scores where Q·Kᵀ/√d is not the model's score (relative or
    rotary positions): one line naming the family and what to use instead."""
    family_of(model.config).check_attention_scores(model.config)


@contextlib.contextmanager
def record_attention(model: nn.Module) -> Iterator[list[AttentionParts]]:
    """Collect every encoder layer's Q, K, V during the forward passes inside the block.

    Hooks sit on the family's projections (`families.Family.projections`); a fused QKV Linear
    (ModernBERT) is split into thirds. A shared layer (ALBERT) runs once per depth, so each
    hooked module keeps a list of its calls, and the calls in order are the layers in order.
    """
    family = family_of(model.config)
    heads = family.size(model.config, "heads")
    sites = family.attention_modules(model)
    calls: list[list[dict[str, torch.Tensor]]] = [[] for _ in sites]
    inputs: list[torch.Tensor | None] = [None] * len(sites)
    handles = []

    def opened(index: int):
        def hook(module, args, kwargs):
            inputs[index] = args[0] if args else kwargs.get("hidden_states", kwargs.get("query"))
            calls[index].append({})

        return hook

    def caught(index: int, name: str | None):
        def hook(module, args, output):
            # DeBERTa also runs key_proj/query_proj on its relative-position embeddings: only
            # projections of the attention's own input are the layer's Q, K, V
            if args[0] is not inputs[index]:
                return
            if name is None:  # a fused QKV Linear: [Q | K | V] along the last axis
                query, key, value = output.chunk(3, dim=-1)  # (B, T, A) each
                calls[index][-1].update(query=query, key=key, value=value)
            else:
                calls[index][-1][name] = output  # (B, T, A)

        return hook

    for index, attention in enumerate(sites):
        handles.append(attention.register_forward_pre_hook(opened(index), with_kwargs=True))
        if isinstance(family.projections, str):
            projection = getattr(attention, family.projections)
            handles.append(projection.register_forward_hook(caught(index, None)))
            continue
        for name, attribute in zip(RELATIONS, family.projections, strict=True):
            handles.append(getattr(attention, attribute).register_forward_hook(caught(index, name)))
    parts: list[AttentionParts] = []
    try:
        yield parts
    finally:
        for handle in handles:
            handle.remove()
    parts.extend(AttentionParts(heads=heads, **found) for site in calls for found in site)


def forward_internals(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    hidden_states: bool = True,
    attentions: bool = False,
) -> TransformerOutputs:
    """Run `model` on `batch` and return logits, hidden states and every layer's Q/K/V."""
    parts: list[AttentionParts]
    with record_attention(model) as parts:
        inputs = model_inputs(batch, model)
        result = model(**inputs, output_hidden_states=hidden_states, output_attentions=attentions)
    return TransformerOutputs(
        logits=result.logits,
        attention_mask=batch["attention_mask"],
        hidden_states=result.hidden_states if hidden_states else None,
        attentions=result.attentions if attentions else None,
        attention_parts=tuple(parts),
    )


def distill_loss_evaluator(
    teacher: nn.Module,
    terms: list[LossTerm],
    loader,
    name: str = "distill_loss",
    hidden_states: bool = True,
):
    """The weighted distillation loss of `terms` on held-out batches, per example, as the
    layer-distillation stages pick their checkpoint (lower is better: Metrics.main is −loss).
    Under several processes each takes every world-th batch and the sums are all-reduced."""

    @torch.no_grad()
    def evaluate(model) -> Metrics:
        model.eval()
        dev = next(model.parameters()).device
        rank, world = processes()
        total, count = 0.0, 0
        for number, batch in enumerate(loader):
            if number % world != rank:
                continue
            batch = {k: v.to(dev) for k, v in batch.items()}
            loss, _ = combine(
                terms,
                forward_internals(model, batch, hidden_states=hidden_states),
                forward_internals(teacher, batch, hidden_states=hidden_states),
                batch,
            )
            total += float(loss) * len(batch["input_ids"])
            count += len(batch["input_ids"])
        if world > 1:
            sums = torch.tensor([total, float(count)], dtype=torch.float64, device=dev)
            torch.distributed.all_reduce(sums)
            total, count = float(sums[0]), int(sums[1])
        value = total / max(count, 1)
        return Metrics(-value, {name: value}, name)

    return evaluate
