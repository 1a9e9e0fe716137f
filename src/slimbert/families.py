"""Encoder families: where each keeps its parts, what its config calls their sizes, which inputs
its forward takes, and whether ONNX Runtime fuses its attention.

Every method reads a teacher through its `Family` record, found by `config.model_type`; nothing
else in slimbert asks which family a model is. Paths are attribute paths from the base model
(`model.<base_model_prefix>`) or, for `attention`, from one layer:

    family                   layers                        Q, K, V (attention: projections)
    BERT                     encoder.layer                 attention.self: query key value
    RoBERTa, XLM-R, ELECTRA  encoder.layer                 attention.self: query key value
    DeBERTa-v2/v3            encoder.layer                 attention.self: query_proj key_proj ...
                             (+ disentangled_attention_bias: the relative-position scores)
    MPNet                    encoder.layer                 attention.attn: q k v
                             (+ its position_bias argument: the relative-position scores)
    ModernBERT               layers                        attn: Wqkv (one fused Linear)
    ALBERT                   encoder.albert_layer_groups   attention: query key value
                             (one layer, run at every depth)
    DistilBERT               transformer.layer             attention: q_lin k_lin v_lin

Sizes are BERT's config names (hidden_size, num_attention_heads, intermediate_size,
num_hidden_layers) everywhere but DistilBERT (dim, n_heads, hidden_dim, n_layers).

The model's inputs are what the tokenizer makes and its forward takes (`model_input_names`),
less token_type_ids where the config has no token types (`type_vocab_size` 0, DeBERTa-v3):
those models ignore them in PyTorch, and an ONNX export drops the unused input.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from torch import nn

from slimbert.errors import SlimbertError

# What a tokenizer can make that an encoder reads; anything else is not a model input.
TOKENIZER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class PositionTerms:
    """Where an attention module with relative positions gets the position terms it adds to
    Q·Kᵀ, so `training.capture` can catch them as the model computes them and the scores it
    rebuilds are the model's own: scores = Q·Kᵀ / √(f·hs) + terms, per head.

    argument: the attention forward's argument that carries the terms, (B, nh, T, T), with
              f = 1 (MPNet's position_bias, computed once by the encoder)
    method:   the attention module's method that returns them, (B·nh, T, T) (DeBERTa's
              disentangled_attention_bias: content→position and position→content scores)
    scale:    the method's argument holding f (DeBERTa divides by √(hs·(1 + one per c2p, p2c)))
    needs:    a config flag without which the method never runs (its scale is then unseen)
    """

    argument: str | None = None
    method: str | None = None
    scale: str | None = None
    needs: str | None = None


@dataclass(frozen=True)
class Family:
    """One encoder family's layout.

    name:         shown in messages and docs
    model_types:  the `config.model_type` values it covers
    layers:       path from the base model to the encoder's layer list
    attention:    path from one layer to the module holding the Q/K/V projections
    projections:  the query, key and value Linear names, or one name for a fused QKV Linear
                  (its output is [Q | K | V] along the last axis)
    width, heads, ffn, depth: what the config calls hidden size, attention heads, FFN size and
                  layer count
    positions:    "absolute", "relative" (relative-position terms join Q·Kᵀ) or "rotary" (Q and
                  K are rotated after the projections); only absolute positions leave the
                  pre-softmax scores equal to Q·Kᵀ/√d recomputed from the projections
    position_terms: where the relative-position terms are caught (`PositionTerms`); with them
                  the scores are rebuilt exactly for relative positions too (DeBERTa, MPNet)
    shared_layers: one layer's weights run at every depth (ALBERT): there are no layers to pick
                  or replace, a shallower student runs the shared layer fewer times
    mlm_head:     the masked-LM model's module from final hidden states to vocabulary logits
                  (None: masked-LM loss runs the whole model)
    follows_width: other config sizes that equal the hidden size and must narrow with it
    per_layer:    config entries holding one value per layer (ModernBERT's layer_types on
                  transformers 5): a student keeps the entries of the layers it keeps
    fusion:       onnxruntime.transformers optimizer model type whose attention fusion matches
                  this family's exported graph, or None
    fusion_note:  why it does or does not fuse
    """

    name: str
    model_types: tuple[str, ...]
    layers: str
    attention: str
    projections: tuple[str, str, str] | str
    fusion: str | None
    fusion_note: str
    width: str = "hidden_size"
    heads: str = "num_attention_heads"
    ffn: str = "intermediate_size"
    depth: str = "num_hidden_layers"
    positions: str = "absolute"
    position_terms: PositionTerms | None = None
    shared_layers: bool = False
    mlm_head: str | None = None
    follows_width: tuple[str, ...] = ()
    per_layer: tuple[str, ...] = ()

    def base(self, model: nn.Module) -> nn.Module:
        return getattr(model, model.base_model_prefix, model)

    def layer_list(self, model: nn.Module) -> nn.ModuleList:
        """The encoder's layers (ALBERT: its layer groups) of a task or base model."""
        return _walk(self.base(model), self.layers)

    def set_layer_list(self, model: nn.Module, layers: nn.ModuleList) -> None:
        parent, _, name = self.layers.rpartition(".")
        setattr(_walk(self.base(model), parent) if parent else self.base(model), name, layers)

    def layer_key_prefix(self, model: nn.Module) -> str:
        """State-dict prefix of layer k's tensors is this plus "k."."""
        return f"{model.base_model_prefix}.{self.layers}."

    def attention_modules(self, model: nn.Module) -> list[nn.Module]:
        """The modules holding each layer's Q/K/V projections, in layer order. A shared layer
        appears once and runs once per depth."""
        if self.shared_layers:
            return [
                _walk(layer, self.attention)
                for group in self.layer_list(model)
                for layer in group.albert_layers
            ]
        return [_walk(layer, self.attention) for layer in self.layer_list(model)]

    def size(self, config, which: str) -> int:
        """The config's value for "width", "heads", "ffn" or "depth"."""
        return int(getattr(config, getattr(self, which)))

    def position_kind(self, config) -> str:
        kind = getattr(config, "position_embedding_type", "absolute") or "absolute"
        return self.positions if kind == "absolute" else "relative"

    def scores_readable(self, config) -> bool:
        """Whether the scores `training.capture` rebuilds are the model's own pre-softmax
        scores: absolute positions, or relative-position terms caught where they are made."""
        kind = self.position_kind(config)
        if kind == "absolute":
            return True
        terms = self.position_terms
        return (
            kind == "relative"
            and terms is not None
            and getattr(config, "position_embedding_type", "absolute") in ("absolute", None)
            and (terms.needs is None or bool(getattr(config, terms.needs, False)))
        )

    def check_attention_scores(self, config) -> None:
        """Refuse methods that match pre-softmax scores on a family where the rebuilt scores are
        not the model's own (rotary positions, relative terms slimbert does not catch)."""
        if self.scores_readable(config):
            return
        kind = self.position_kind(config)
        terms = self.position_terms
        if kind == "relative" and terms is not None and terms.needs is not None:
            why = f"with {terms.needs} off never computes its position scores"
        else:
            why = {
                "relative": "adds relative-position terms to Q·Kᵀ that slimbert does not catch",
                "rotary": "rotates Q and K by position after the projections",
            }[kind]
        raise SlimbertError(
            f"{self.name} attention {why}, so the recomputed scores Q·Kᵀ/√d are not its "
            "attention scores; pass --attention-weight 0 to distil embeddings and hidden "
            "states only, or use compress minilm (relations need no positions)"
        )


def _walk(module: nn.Module, path: str) -> nn.Module:
    for name in path.split(".") if path else ():
        module = getattr(module, name)
    return module


BERT_FUSES = "the exported graph is BERT's; the optimizer's bert Attention fusion matches it"

FAMILIES = (
    Family(
        "BERT",
        ("bert",),
        "encoder.layer",
        "attention.self",
        ("query", "key", "value"),
        "bert",
        BERT_FUSES,
        mlm_head="cls",
    ),
    Family(
        "DistilBERT",
        ("distilbert",),
        "transformer.layer",
        "attention",
        ("q_lin", "k_lin", "v_lin"),
        None,
        "on transformers 4.x its eager graph masks the scores with Where(mask, -max) instead "
        "of adding the mask, which the bert Attention fusion does not match; transformers 5 "
        "adds the mask and the fusion matches",
        width="dim",
        heads="n_heads",
        ffn="hidden_dim",
        depth="n_layers",
    ),
    Family(
        "RoBERTa",
        ("roberta", "xlm-roberta", "camembert"),
        "encoder.layer",
        "attention.self",
        ("query", "key", "value"),
        "bert",
        BERT_FUSES,
        mlm_head="lm_head",
    ),
    Family(
        "ELECTRA",
        ("electra",),
        "encoder.layer",
        "attention.self",
        ("query", "key", "value"),
        "bert",
        BERT_FUSES,
    ),
    Family(
        "DeBERTa-v2/v3",
        ("deberta-v2",),
        "encoder.layer",
        "attention.self",
        ("query_proj", "key_proj", "value_proj"),
        None,
        "disentangled attention adds content-to-position and position-to-content scores, "
        "which no ONNX Runtime attention fusion matches",
        positions="relative",
        position_terms=PositionTerms(
            method="disentangled_attention_bias", scale="scale_factor", needs="relative_attention"
        ),
        follows_width=("pooler_hidden_size",),
    ),
    Family(
        "MPNet",
        ("mpnet",),
        "encoder.layer",
        "attention.attn",
        ("q", "k", "v"),
        None,
        "a relative-position bias is added to the scores before the softmax, which the bert "
        "Attention fusion does not match",
        positions="relative",
        position_terms=PositionTerms(argument="position_bias"),
        mlm_head="lm_head",
    ),
    Family(
        "ModernBERT",
        ("modernbert",),
        "layers",
        "attn",
        "Wqkv",
        None,
        "rotary position embeddings and a fused QKV projection without bias: no ONNX Runtime "
        "encoder attention fusion matches them",
        positions="rotary",
        per_layer=("layer_types",),
    ),
    Family(
        "ALBERT",
        ("albert",),
        "encoder.albert_layer_groups",
        "attention",
        ("query", "key", "value"),
        "bert",
        "ALBERT's attention is BERT's (its shared weights are one initializer read at every "
        "depth) and fuses at every depth but the first, whose input is the embedding "
        "projection (a Linear) where the fusion looks for a LayerNormalization",
        shared_layers=True,
        mlm_head="predictions",
    ),
)

BY_MODEL_TYPE = {model_type: family for family in FAMILIES for model_type in family.model_types}


def family_of(config) -> Family:
    """The family of a transformers config (or a model's), by `model_type`; one line if unknown."""
    config = getattr(config, "config", config)
    model_type = getattr(config, "model_type", None)
    if model_type not in BY_MODEL_TYPE:
        known = ", ".join(sorted(BY_MODEL_TYPE))
        raise SlimbertError(
            f"model type {model_type!r} is not an encoder family slimbert knows ({known}); "
            "use a teacher of one of these families"
        )
    return BY_MODEL_TYPE[model_type]


def forward_inputs(model) -> tuple[str, ...]:
    """The tokenizer outputs `model.forward` takes, less token_type_ids where its config has no
    token types (type_vocab_size 0). A model wrapped for data-parallel training (DDP's
    `forward(*inputs, **kwargs)` names nothing) is read through the model it wraps."""
    model = getattr(model, "module", model)
    parameters = inspect.signature(model.forward).parameters
    names = [name for name in TOKENIZER_INPUTS if name in parameters]
    config = getattr(model, "config", None)
    if "token_type_ids" in names and getattr(config, "type_vocab_size", 1) == 0:
        names.remove("token_type_ids")
    return tuple(names)


def model_input_names(model, tokenizer) -> list[str]:
    """What the tokenizer makes and the model takes, in the tokenizer's order: the inputs of
    training, export, validation, bench and serving alike."""
    taken = forward_inputs(model)
    return [name for name in tokenizer.model_input_names if name in taken]
