"""What `slimbert auto` may train: student shapes cut from the teacher, the methods that can
teach each shape, and the transfer set on or off.

    teacher 6 × 384 (12 heads, FFN 1536)
      depth cuts at its width     4 × 384   3 × 384   2 × 384   1 × 384    kd, theseus, tinybert,
                                                                           minilm
      narrower widths             6 × 312   4 × 312   ...   2 × 128        tinybert, minilm
                                  (heads: the most ≤ the teacher's that divide the width;
                                   FFN: the teacher's FFN / width ratio)

Which method teaches which shape is read from its settings dataclass, not from a list of
names: a method whose settings are compress/students.ShapeSettings builds a student of any
width; another with `layers` keeps the teacher's width; the TextCNN, BiLSTM and tree students
have no transformer shape to search and are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from slimbert.compress.registry import METHODS, get_method
from slimbert.compress.students import ShapeSettings
from slimbert.compress.teaching import EmbeddingStudentMethod
from slimbert.errors import SlimbertError
from slimbert.families import family_of

# Widths that published compact encoders use (BERT-base, -medium, MiniLM, TinyBERT, -small,
# -mini); a teacher's narrower students are the ones below its own width.
WIDTHS = (768, 512, 384, 312, 256, 128)
# Depth cuts: below the teacher's depth at its width, up to its depth when narrower.
DEPTHS = (12, 8, 6, 4, 3, 2, 1)


@dataclass(frozen=True, order=True)
class Shape:
    """A student's size: depth, hidden size, attention heads, FFN size. `narrow`: narrower than
    the teacher, so the student gets fresh embeddings and layers (at the teacher's width the
    method copies the teacher's layers and only --layers is passed)."""

    layers: int
    hidden: int
    heads: int
    ffn: int
    narrow: bool = False

    @property
    def name(self) -> str:
        return f"{self.layers}x{self.hidden}"

    def flags(self) -> list[str]:
        """The `slimbert compress` flags that build this shape."""
        size = ["--layers", str(self.layers)]
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


def choices(methods: list[str], shapes: list[Shape], transfer: bool) -> list[Choice]:
    """Every (method, shape, transfer) the search may train, for the shapes the SLO kept."""
    found = []
    for shape in shapes:
        for method in methods:
            if shape.narrow and reach(method) != "any":
                continue
            for with_transfer in (False, True) if transfer else (False,):
                found.append(Choice(method, shape, with_transfer))
    return found
