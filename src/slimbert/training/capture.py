"""Reading an encoder's self-attention internals during an ordinary forward pass.

Hugging Face's `output_attentions` gives softmaxed probabilities, but TinyBERT matches the
pre-softmax scores and MiniLMv2 matches query/key/value relations. Both are recomputed here from
the outputs of each layer's `query`, `key` and `value` projections, caught with forward hooks:

    hidden (B, T, H) ──► query ──► Q (B, T, A) ─┐
                     ├─► key   ──► K (B, T, A) ─┼─► scores = Q·Kᵀ / √hs ──► (+mask) ──► softmax
                     └─► value ──► V (B, T, A) ─┘        ▲ recomputed here, mask left out

Relative positions add terms to Q·Kᵀ that the projections do not show. Where a family says
where they are made (`families.PositionTerms`), they are caught there too, as the model computes
them (same values, same dropout, same autograd graph), and added back:

    MPNet    position_bias (B, nh, T, T), an argument of every layer's attention
             scores = Q·Kᵀ/√hs + position_bias
    DeBERTa  disentangled_attention_bias(...) → content→position + position→content (B·nh, T, T)
             scores = Q·Kᵀ/√(f·hs) + terms, f = 1 + one per c2p, p2c (the method's scale_factor)

Hooks work the same under eager and SDPA attention and leave the model untouched: they are
registered for one forward pass and removed after it (DeBERTa's method is wrapped on the module
instance for that pass and unwrapped after it). Where each family keeps its projections is
`slimbert.families`' business. The rebuilt scores are the model's own with absolute positions
and with caught relative terms, not with rotary positions (`check_attention_scores`); relations
between Q, K and V (MiniLM) need no positions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
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
    terms:             (B, nh, T, T) relative-position terms the model adds to Q·Kᵀ, caught where
                       it computes them (`families.PositionTerms`); None with absolute positions
    scale:             f in the scores' divisor √(f·hs) (DeBERTa: 1 + one per c2p, p2c)
    """

    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    heads: int
    terms: torch.Tensor | None = None
    scale: float = 1.0

    def scores(self) -> torch.Tensor:
        """Pre-softmax attention scores Q·Kᵀ/√(f·hs) (+ the caught position terms) per head,
        without the padding mask: (B, nh, T, T)."""
        query = split_heads(self.query, self.heads)  # (B, nh, T, hs)
        key = split_heads(self.key, self.heads)  # (B, nh, T, hs)
        scores = query @ key.transpose(-1, -2) / math.sqrt(self.scale * query.shape[-1])
        if self.terms is not None:
            scores = scores + self.terms.view(-1, self.heads, *self.terms.shape[-2:])
        return scores


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
    """Refuse to match attention scores where the rebuilt scores are not the model's own (rotary
    positions, relative terms not caught): one line naming the family and what to use instead."""
    family_of(model.config).check_attention_scores(model.config)


@contextlib.contextmanager
def record_attention(model: nn.Module) -> Iterator[list[AttentionParts]]:
    """Collect every encoder layer's Q, K, V during the forward passes inside the block.

    Hooks sit on the family's projections (`families.Family.projections`); a fused QKV Linear
    (ModernBERT) is split into thirds. A shared layer (ALBERT) runs once per depth, so each
    hooked module keeps a list of its calls, and the calls in order are the layers in order.
    Relative-position terms are caught where the family makes them (`PositionTerms`).
    """
    family = family_of(model.config)
    heads = family.size(model.config, "heads")
    sites = family.attention_modules(model)
    terms = family.position_terms
    calls: list[list[dict]] = [[] for _ in sites]
    inputs: list[torch.Tensor | None] = [None] * len(sites)
    handles = []

    def opened(index: int, signature: inspect.Signature | None):
        def hook(module, args, kwargs):
            inputs[index] = args[0] if args else kwargs.get("hidden_states", kwargs.get("query"))
            calls[index].append({})
            if signature is not None:  # the terms are an argument of the attention's forward
                bias = signature.bind(*args, **kwargs).arguments.get(terms.argument)
                if bias is not None:
                    calls[index][-1]["terms"] = bias  # (B, nh, T, T)

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
        signature = None
        if terms is not None and terms.argument is not None:
            signature = inspect.signature(attention.forward)
        handles.append(
            attention.register_forward_pre_hook(opened(index, signature), with_kwargs=True)
        )
        if isinstance(family.projections, str):
            projection = getattr(attention, family.projections)
            handles.append(projection.register_forward_hook(caught(index, None)))
            continue
        for name, attribute in zip(RELATIONS, family.projections, strict=True):
            handles.append(getattr(attention, attribute).register_forward_hook(caught(index, name)))
    parts: list[AttentionParts] = []
    try:
        if terms is not None and terms.method is not None:
            with caught_method(sites, terms.method, terms.scale, calls):
                yield parts
        else:
            yield parts
    finally:
        for handle in handles:
            handle.remove()
    parts.extend(AttentionParts(heads=heads, **found) for site in calls for found in site)


@contextlib.contextmanager
def caught_method(sites: list[nn.Module], method: str, scale: str, calls: list[list[dict]]):
    """Inside the block, each attention module's `method` (DeBERTa's disentangled_attention_bias)
    runs as before and its result, the position terms (B·nh, T, T), joins the module's current
    call record with the scale factor f passed as its `scale` argument. The wrapper sits on the
    module instance and is taken off afterwards, leaving the class's method."""

    def wrapped(index: int, bound):
        signature = inspect.signature(bound)

        def catch(*args, **kwargs):
            made = bound(*args, **kwargs)  # (B·nh, T, T), or 0 with no position terms
            factor = signature.bind(*args, **kwargs).arguments[scale]
            calls[index][-1]["scale"] = float(factor)
            if torch.is_tensor(made):
                calls[index][-1]["terms"] = made
            return made

        return catch

    before = [attention.__dict__.get(method) for attention in sites]
    for index, attention in enumerate(sites):
        setattr(attention, method, wrapped(index, getattr(attention, method)))
    try:
        yield
    finally:
        for attention, previous in zip(sites, before, strict=True):
            if previous is None:
                delattr(attention, method)
            else:
                setattr(attention, method, previous)


TEACHER_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def teacher_view(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The teacher's inputs of a batch: its own reading of the rows when the batch carries one
    (`teacher_input_ids`, ...: a student that reads another tokenizer, compress/aligned.py),
    else the batch itself (teacher and student read the same tokens)."""
    if "teacher_input_ids" not in batch:
        return batch
    return {k: batch[f"teacher_{k}"] for k in TEACHER_KEYS if f"teacher_{k}" in batch}


def at_student_tokens(x: torch.Tensor, batch: dict, dims: tuple[int, ...] = (1,)) -> torch.Tensor:
    """`x` (a teacher tensor over its own positions) gathered at each student token's teacher
    position (`batch["align"]`: (B, T_student), compress/aligned.py) along `dims`; unchanged
    when the batch carries no alignment."""
    align = batch.get("align")
    if align is None:
        return x
    for dim in dims:
        shape = [1] * x.dim()
        shape[0], shape[dim] = align.shape
        index = align.view(shape).expand(*[n if d != dim else align.shape[1]
                                           for d, n in enumerate(x.shape)])  # fmt: skip
        x = x.gather(dim, index)
    return x


def at_student_positions(outputs: TransformerOutputs, batch: dict) -> TransformerOutputs:
    """A teacher's outputs over its own reading of the rows, read at the student's tokens:
    hidden states and Q/K/V gathered along the sequence, relative-position terms and attention
    maps along both of theirs, the student's attention mask. Every layer-to-layer loss then
    compares the two models token by token as when they read the same tokens; unchanged when
    the batch carries no alignment."""
    if batch.get("align") is None:
        return outputs
    rows = batch["align"].shape[0]

    def pairwise(x: torch.Tensor) -> torch.Tensor:  # (B, nh, T, T) or (B·nh, T, T)
        return at_student_tokens(x.reshape(rows, -1, *x.shape[-2:]), batch, (2, 3))

    parts = outputs.attention_parts and tuple(
        dataclasses.replace(
            part,
            query=at_student_tokens(part.query, batch),
            key=at_student_tokens(part.key, batch),
            value=at_student_tokens(part.value, batch),
            terms=None if part.terms is None else pairwise(part.terms),
        )
        for part in outputs.attention_parts
    )
    hidden = outputs.hidden_states and tuple(
        at_student_tokens(h, batch) for h in outputs.hidden_states
    )
    maps = outputs.attentions and tuple(pairwise(a) for a in outputs.attentions)
    return dataclasses.replace(
        outputs,
        attention_mask=batch["attention_mask"],
        hidden_states=hidden,
        attentions=maps,
        attention_parts=parts,
    )


def teacher_internals(
    teacher: nn.Module, batch: dict[str, torch.Tensor], hidden_states: bool = True
) -> TransformerOutputs:
    """`forward_internals` of the teacher on its own reading of `batch` (`teacher_view`), read
    at the student's tokens (`at_student_positions`)."""
    return at_student_positions(
        forward_internals(teacher, teacher_view(batch), hidden_states=hidden_states), batch
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
                teacher_internals(teacher, batch, hidden_states=hidden_states),
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
