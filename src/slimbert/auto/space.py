"""What `slimbert auto` may train: student shapes cut from the teacher or started from a
pre-trained compact model, the methods that can teach each shape, and the transfer set on or off.

    teacher 6 × 384 (12 heads, FFN 1536)
      depth cuts at its width     4 × 384   3 × 384   2 × 384   1 × 384    kd, theseus, tinybert,
                                                                           minilm
      narrower widths             6 × 312   4 × 312   ...   2 × 128        tinybert, minilm
                                  (heads: the most ≤ the teacher's that divide the width;
                                   FFN: the teacher's FFN / width ratio)

    starting points (`auto --student-base`, `--student-init`)
      a pre-trained compact model   6 × 384@minilm-l6  4 × 384@minilm-l6 ...   kd (its own
                                    (its depth cuts, its tokenizer)              tokenizer);
                                                                                 minilm, tinybert
                                                                                 when it cuts the
                                                                                 teacher's pieces
      a general student             6 × 384@general-6x384 (its shape)         kd, tinybert, minilm

Which method teaches which shape is read from its settings dataclass, not from a list of
names: a method whose settings are compress/students.ShapeSettings builds a student of any
width; another with `layers` keeps the teacher's width; one with `student_base` or
`student_init` starts from a pre-trained model; the TextCNN, BiLSTM and tree students have no
transformer shape to search and are refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from slimbert.compress.registry import METHODS, get_method
from slimbert.compress.students import ShapeSettings
from slimbert.compress.teaching import EmbeddingStudentMethod
from slimbert.errors import SlimbertError
from slimbert.families import family_of
from slimbert.models import resolve_base

# Widths that published compact encoders use (BERT-base, -medium, MiniLM, TinyBERT, -small,
# -mini); a teacher's narrower students are the ones below its own width.
WIDTHS = (768, 512, 384, 312, 256, 128)
# Depth cuts: below the teacher's depth at its width, up to its depth when narrower.
DEPTHS = (12, 8, 6, 4, 3, 2, 1)


@dataclass(frozen=True, order=True)
class Shape:
    """A student's size: depth, hidden size, attention heads, FFN size. `narrow`: narrower than
    the teacher, so the student gets fresh embeddings and layers (at the teacher's width the
    method copies the teacher's layers and only --layers is passed). `start`: "base:NAME" (cut
    from that pre-trained model, --student-base) or "init:DIR" (that general student,
    --student-init); empty for a student built from the teacher. `aligned`: a --student-base
    whose tokenizer cuts every row into the teacher's pieces (`compress.aligned`), so methods
    with layer-to-layer losses can teach it too."""

    layers: int
    hidden: int
    heads: int
    ffn: int
    narrow: bool = False
    start: str = ""
    aligned: bool = False

    @property
    def kind(self) -> str:
        """ "base" or "init" (a starting point), "narrow", or "" (the teacher's depth cuts)."""
        if self.start:
            return self.start.split(":", 1)[0]
        return "narrow" if self.narrow else ""

    @property
    def source(self) -> str:
        """The starting point's model: a bundled name, a Hub name or a directory."""
        return self.start.split(":", 1)[1] if self.start else ""

    @property
    def name(self) -> str:
        size = f"{self.layers}x{self.hidden}"
        return f"{size}@{Path(self.source).name}" if self.start else size

    def flags(self) -> list[str]:
        """The `slimbert compress` flags that build this shape."""
        size = ["--layers", str(self.layers)]
        if self.start:
            return size + [f"--student-{self.kind}", self.source]
        if not self.narrow:
            return size
        return size + [
            "--hidden-size",
            str(self.hidden),
            "--heads",
            str(self.heads),
            "--ffn-size",
            str(self.ffn),
        ]

    def cost(self) -> int:
        """Weights in the encoder layers, to order shapes from cheap to dear."""
        return self.layers * (4 * self.hidden * self.hidden + 2 * self.hidden * self.ffn)


@dataclass(frozen=True)
class Choice:
    """One trial's training: a method, a shape and whether the transfer set joins the data."""

    method: str
    shape: Shape
    transfer: bool

    @property
    def key(self) -> str:
        return f"{self.method}/{self.shape.name}" + ("/transfer" if self.transfer else "")


def teacher_shape(config) -> Shape:
    family = family_of(config)
    return Shape(
        family.size(config, "depth"),
        family.size(config, "width"),
        family.size(config, "heads"),
        family.size(config, "ffn"),
    )


def model_shape(source: str, flag: str) -> Shape:
    """The shape of a pre-trained model (a bundled name, a Hub name or a directory)."""
    from transformers import AutoConfig

    folder = resolve_base(source, flag)
    return teacher_shape(AutoConfig.from_pretrained(str(folder), trust_remote_code=False))


def start_shapes(
    bases: list[str], inits: list[Path], depths: list[int] | None = None
) -> list[Shape]:
    """The starting points' shapes: each --student-base cut to every depth of the ladder (or
    `depths`) up to its own, at its own width; each --student-init as it is."""
    shapes = []
    for base in bases:
        own = model_shape(base, "--student-base")
        ladder = depths or list(DEPTHS)
        for layers in sorted({d for d in ladder if 1 <= d <= own.layers}):
            shapes.append(Shape(layers, own.hidden, own.heads, own.ffn, start=f"base:{base}"))
    for init in inits:
        folder = Path(init).resolve()
        if not (folder / "config.json").is_file():
            raise SlimbertError(f"--student-init {init}: no model directory (no config.json)")
        config = json.loads((folder / "config.json").read_text())
        if config.get("slimbert_architecture"):
            raise SlimbertError(
                f"--student-init {init}: a {config['slimbert_architecture']} student has no "
                "encoder to start from; give a distill-general or pretrain-student folder"
            )
        own = model_shape(str(folder), "--student-init")
        shapes.append(Shape(own.layers, own.hidden, own.heads, own.ffn, start=f"init:{folder}"))
    names = [shape.name for shape in shapes]
    clash = next((name for name in names if names.count(name) > 1), None)
    if clash:
        raise SlimbertError(
            f"two starting points are both named {clash.split('@')[1]!r}; give folders of "
            "different names"
        )
    return shapes


def heads_for(width: int, teacher_heads: int) -> int:
    """The most attention heads, no more than the teacher's, that divide `width`."""
    return next(h for h in range(min(teacher_heads, width), 0, -1) if width % h == 0)


def narrower_widths(teacher_width: int) -> list[int]:
    """The WIDTHS below the teacher's; half its width when none is (a tiny teacher)."""
    below = [w for w in WIDTHS if w < teacher_width]
    return below or ([teacher_width // 2] if teacher_width >= 16 else [])


def candidate_shapes(
    teacher: Shape, depths: list[int] | None = None, widths: list[int] | None = None
) -> list[Shape]:
    """Every student shape to probe, cheapest first: the depth cuts at the teacher's width and
    the narrower widths at every depth up to the teacher's. `depths` and `widths` replace the
    ladders (a width equal to the teacher's is the depth cuts)."""
    widths = sorted(set(widths or [teacher.hidden, *narrower_widths(teacher.hidden)]))
    shapes = []
    for width in reversed(widths):
        if width > teacher.hidden:
            raise SlimbertError(
                f"--widths {width}: wider than the teacher ({teacher.hidden}); a student is "
                "no wider than its teacher"
            )
        narrow = width < teacher.hidden
        deepest = teacher.layers if narrow else teacher.layers - 1
        ladder = depths or [d for d in DEPTHS if d >= (2 if narrow else 1)]
        for layers in sorted({d for d in ladder if 1 <= d <= deepest}):
            if narrow:
                heads = heads_for(width, teacher.heads)
                ffn = width * teacher.ffn // teacher.hidden
                shapes.append(Shape(layers, width, heads, ffn, narrow=True))
            else:
                shapes.append(Shape(layers, width, teacher.heads, teacher.ffn))
    if not shapes:
        raise SlimbertError(
            f"no student shape fits a {teacher.layers}-layer teacher with --depths "
            f"{depths} and --widths {widths}; give depths below {teacher.layers}"
        )
    return sorted(shapes, key=Shape.cost)


def reach(method: str) -> str | None:
    """What shapes a registered method builds: "any" (its settings are ShapeSettings'),
    "depth" (a `layers` setting: the teacher's layers at the teacher's width), or None (a
    student with embeddings of its own, TextCNN or BiLSTM, or no depth at all)."""
    config = get_method(method).config
    if issubclass(config, ShapeSettings):
        return "any"
    if issubclass(config, EmbeddingStudentMethod):
        return None
    return "depth" if "layers" in {f.name for f in fields(config)} else None


def searchable_methods() -> list[str]:
    return [name for name in METHODS if reach(name) is not None]


def check_methods(methods: list[str]) -> None:
    for name in methods:
        if reach(name) is None:
            raise SlimbertError(
                f"--method {name}: not a transformer student with a depth to cut; "
                f"choose from {', '.join(searchable_methods())}"
            )


def trains(method: str, shape: Shape) -> bool:
    """Whether `method` can train `shape`: a narrow shape needs a method of any width, a
    starting point one that takes it (--student-init: every method with that setting;
    --student-base: kd, whose soft labels need no aligned tokens, and minilm and tinybert when
    the two tokenizers cut every row alike — `auto` checks that before it plans, so no trial
    is spent on a refusal)."""
    if shape.start:
        if shape.kind == "base" and reach(method) == "any" and not shape.aligned:
            return False
        return f"student_{shape.kind}" in {f.name for f in fields(get_method(method).config)}
    return reach(method) == "any" if shape.narrow else reach(method) is not None


def choices(methods: list[str], shapes: list[Shape], transfer: bool) -> list[Choice]:
    """Every (method, shape, transfer) the search may train, for the shapes the SLO kept."""
    found = []
    for shape in shapes:
        for method in methods:
            if not trains(method, shape):
                continue
            for with_transfer in (False, True) if transfer else (False,):
                found.append(Choice(method, shape, with_transfer))
    return found
