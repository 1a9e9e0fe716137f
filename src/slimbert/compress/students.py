"""Which teacher layer supervises (and initialises) which student layer, and the student built
from it.

Every layer-wise method shares these maps. Layers are 0-based encoder layers; the embedding
output is "layer −1" and always maps to the teacher's embedding output.

Layer maps for a 6-layer teacher and a 3-layer student (student layer s ← teacher layer t):

    uniform (default)       top                     bottom                  explicit "0:0,1:2,2:5"
    teacher   student       teacher   student       teacher   student       teacher   student
      5 ───────► 2            5 ───────► 2            5                       5 ───────► 2
      4                       4 ───────► 1            4                       4
      3 ───────► 1            3 ───────► 0            3                       3
      2                       2                       2 ───────► 2            2 ───────► 1
      1 ───────► 0            1                       1 ───────► 1            1
      0                       0                       0 ───────► 0            0 ───────► 0
     emb ──────► emb         emb ──────► emb         emb ──────► emb         emb ──────► emb

uniform is TinyBERT's g(m) = m·N/M (1-based), the same choice `slimbert.models.pick_layers`
makes for kd, so the top teacher layer is always matched. When N is not a multiple of M the
steps are uneven: 6 → 4 gives [0, 2, 3, 5].

BERT-of-Theseus splits the teacher into M consecutive modules that end at those same layers
(`split_modules`), so every module's top layer is the one uniform matches:

    6 → 3: [0 1][2 3][4 5]          6 → 4: [0][1 2][3][4 5]          5 → 2: [0 1][2 3 4]
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from slimbert.errors import SlimbertError
from slimbert.families import family_of
from slimbert.settings import setting

STRATEGIES = ("uniform", "top", "bottom")


def map_layers(teacher_layers: int, student_layers: int, strategy: str = "uniform") -> list[int]:
    """The teacher layer for each student layer: a list of length `student_layers`, increasing.

    strategy: "uniform", "top", "bottom", or explicit pairs "s:t,s:t,..." (student:teacher,
    0-based) or a plain list "t,t,..." (one teacher layer per student layer, in order).
    """
    if not 1 <= student_layers <= teacher_layers:
        raise SlimbertError(
            f"--layers {student_layers}: a student needs between 1 and {teacher_layers} layers "
            f"(the teacher has {teacher_layers})"
        )
    if strategy == "uniform":
        return pick_layers(teacher_layers, student_layers)
    if strategy == "top":
        return list(range(teacher_layers - student_layers, teacher_layers))
    if strategy == "bottom":
        return list(range(student_layers))
    return _explicit(strategy, teacher_layers, student_layers)


def _explicit(text: str, teacher_layers: int, student_layers: int) -> list[int]:
    hint = (
        f"give one of {', '.join(STRATEGIES)}, pairs like '0:1,1:3' (student:teacher) "
        "or teacher layers like '1,3'"
    )
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        if all(":" in item for item in items):
            pairs = dict(tuple(int(side) for side in item.split(":", 1)) for item in items)
            if len(pairs) != len(items):
                raise SlimbertError(f"--layer-map {text!r}: a student layer appears twice; {hint}")
            if sorted(pairs) != list(range(student_layers)):
                raise SlimbertError(
                    f"--layer-map {text!r}: pairs must cover student layers "
                    f"0..{student_layers - 1} once each; {hint}"
                )
            mapped = [pairs[s] for s in range(student_layers)]
        else:
            mapped = [int(item) for item in items]
    except ValueError:
        raise SlimbertError(f"--layer-map {text!r}: not a layer map; {hint}") from None
    if len(mapped) != student_layers:
        raise SlimbertError(
            f"--layer-map {text!r}: names {len(mapped)} teacher layers "
            f"for a {student_layers}-layer student; {hint}"
        )
    if any(not 0 <= t < teacher_layers for t in mapped):
        raise SlimbertError(
            f"--layer-map {text!r}: teacher layers run from 0 to {teacher_layers - 1}"
        )
    return mapped


def split_modules(teacher_layers: int, student_layers: int) -> list[list[int]]:
    """Theseus modules: consecutive teacher layers, one module per student layer.

    Module i ends at teacher layer pick_layers(N, M)[i]; with N = q·M + r the sizes are q or q + 1
    and always sum to N (6 → 4: [[0], [1, 2], [3], [4, 5]]).
    """
    ends = pick_layers(teacher_layers, student_layers)
    starts = [0] + [end + 1 for end in ends[:-1]]
    return [list(range(start, end + 1)) for start, end in zip(starts, ends, strict=True)]


@dataclass
class StudentShape:
    """The student's size; None keeps the teacher's value.

    layers:     encoder depth
    hidden:     hidden size H (a narrower student gets fresh embeddings, pooler and classifier)
    heads:      attention heads; must divide the hidden size
    ffn:        feed-forward (intermediate) size
    """

    layers: int = 3
    hidden: int | None = None
    heads: int | None = None
    ffn: int | None = None


def hidden_size_setting(
    help: str = "Student hidden size (default: the teacher's); narrower students get fresh "
    "embeddings.",
):
    """The --hidden-size field of a settings dataclass (each method says what narrower means)."""
    return setting(None, help, min=1)


def heads_setting():
    return setting(
        None,
        "Student attention heads (default: the teacher's); must divide the hidden size.",
        min=1,
    )


def ffn_size_setting():
    return setting(None, "Student feed-forward size (default: the teacher's).", min=1)


def student_init_setting():
    return setting(
        None,
        "Start from a pre-trained student (distill-general or pretrain-student of this "
        "teacher's family): its shape, embeddings and encoder; --layers must be its depth.",
    )


@dataclass
class ShapeSettings:
    """The student-shape flags of the methods that may narrow a student (tinybert, minilm): a
    method's settings dataclass inherits these fields first."""

    layers: int = setting(3, "Student depth.", min=1)
    hidden_size: int | None = hidden_size_setting()
    heads: int | None = heads_setting()
    ffn_size: int | None = ffn_size_setting()
    student_init: Path | None = student_init_setting()

    def shape(self) -> StudentShape:
        return StudentShape(self.layers, self.hidden_size, self.heads, self.ffn_size)


@dataclass
class InitReport:
    """How the student was initialised: tensor names copied from the teacher and left random."""

    copied: list[str]
    random: list[str]

    def describe(self) -> dict:
        return {
            "copied_tensors": len(self.copied),
            "random_tensors": len(self.random),
            "random": self.random[:20],
        }


def build_student(
    teacher: nn.Module, shape: StudentShape, layer_map: list[int], seed: int | None = 0
) -> tuple[nn.Module, InitReport]:
    """The one student builder: a student of `shape`, initialised from the teacher wherever a
    tensor's shape matches. Every transformer method (kd, tinybert, theseus, minilm) and
    masked-LM pre-training build their students here, for every family in `slimbert.families`.

    Student encoder layer j reads teacher layer layer_map[j]; embeddings, pooler and classifier
    read the teacher's own. A tensor whose shape differs (anything sized by a narrower hidden
    size, head layout or FFN) keeps the student's fresh random initialisation, drawn after
    seeding torch with `seed` (None: from torch's current state). At the teacher's width every
    tensor is copied (DistilBERT-style), which is asserted — except a layer tensor the teacher's
    layer does not have (ModernBERT's first layer has no attention LayerNorm). A family whose
    layers share one set of weights (ALBERT) copies them whole: the student runs the shared
    layer `shape.layers` times.
    """
    family = family_of(teacher.config)
    teacher_layers = family.size(teacher.config, "depth")
    if len(layer_map) != shape.layers or any(not 0 <= k < teacher_layers for k in layer_map):
        raise SlimbertError(
            f"layer map {layer_map} does not fit a {shape.layers}-layer student of a "
            f"{teacher_layers}-layer teacher"
        )
    config = copy.deepcopy(teacher.config)
    for which, value in (
        ("depth", shape.layers),
        ("width", shape.hidden),
        ("heads", shape.heads),
        ("ffn", shape.ffn),
    ):
        if value is not None:
            setattr(config, getattr(family, which), value)
    for name in family.per_layer:  # e.g. ModernBERT's layer_types on transformers 5
        values = getattr(teacher.config, name, None)
        if isinstance(values, (list, tuple)) and len(values) == teacher_layers:
            setattr(config, name, [values[k] for k in layer_map])
    for name in family.follows_width:  # e.g. DeBERTa's pooler_hidden_size
        if getattr(config, name, None) == family.size(teacher.config, "width"):
            setattr(config, name, family.size(config, "width"))
    hidden, heads = family.size(config, "width"), family.size(config, "heads")
    if hidden % heads:
        raise SlimbertError(
            f"--hidden-size {hidden} is not a multiple of --heads {heads}; "
            "pick a head count that divides the hidden size"
        )
    if seed is not None:
        torch.manual_seed(seed)
    student = type(teacher)(config)
    teacher_state = teacher.state_dict()
    prefix = family.layer_key_prefix(teacher)
    new_state, report = {}, InitReport([], [])
    absent_in_layer = []  # layer tensors the mapped teacher layer does not have
    for key, value in student.state_dict().items():
        source = key
        if key.startswith(prefix) and not family.shared_layers:
            index, rest = key[len(prefix) :].split(".", 1)
            source = f"{prefix}{layer_map[int(index)]}.{rest}"
        if source in teacher_state and teacher_state[source].shape == value.shape:
            new_state[key] = teacher_state[source].clone()
            report.copied.append(key)
        else:
            new_state[key] = value
            report.random.append(key)
            if source != key and source not in teacher_state:
                absent_in_layer.append(key)
    full_width = (shape.hidden, shape.heads, shape.ffn) == (None, None, None)
    unexpected = [key for key in report.random if key not in absent_in_layer]
    assert not (full_width and unexpected), f"teacher weights missing: {unexpected[:5]}"
    student.load_state_dict(new_state, strict=True)
    student.config.slimbert_layer_map = layer_map
    return student, report


def pick_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher layers a student keeps, spread evenly with the top layer always kept.

    Student layer i copies teacher layer ⌊(i + 1) · T / S⌋ − 1 (0-based), e.g.

        T=6 → S=3:  [1, 3, 5]        T=6 → S=2:  [2, 5]        T=6 → S=1:  [5]
        T=12 → S=6: [1, 3, 5, 7, 9, 11]                        T=6 → S=4:  [0, 2, 3, 5]
    """
    if not 1 <= student_layers <= teacher_layers:
        raise SlimbertError(
            f"--layers {student_layers}: a student needs between 1 and {teacher_layers} layers "
            f"(the teacher has {teacher_layers})"
        )
    return [((i + 1) * teacher_layers) // student_layers - 1 for i in range(student_layers)]
