"""One sequence of word pieces read by two tokenizers: each student token's teacher token.

A student cut from another pre-trained model (`--student-base`) reads its own tokenizer. Logit
distillation needs nothing more: the soft labels are per example. A loss between layers
compares the two models token by token, so it needs to know which teacher token each student
token is. Two tokenizers that share a word-piece vocabulary (MPNet's and BERT's uncased, for
example) cut every text into the same pieces and differ only in their special tokens:

    student  [CLS] the cat [SEP] a dog [SEP]
    teacher  <s>   the cat </s> </s> a dog </s>
    align    0     1   2   3         5 6   7        (the teacher position of each student token)

Content pieces pair off in order; a special token pairs with the teacher's first special in the
same gap between content pieces (the second `</s>` above has no student token and is left
out). The teacher's Q/K/V gathered at `align` are then (B, T_student, A): relations over the
student's own sequence. The teacher reads each row at `max_length` plus the special tokens it
adds beyond the student's, so truncation keeps the same content pieces on both sides.

`aligned_sets` checks every training and eval row and refuses in one line when a row is cut
into other pieces (another vocabulary, another normaliser): then only logit distillation can
teach that student.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from slimbert.batches import EncodedDataset, TaskData
from slimbert.data import Examples
from slimbert.errors import SlimbertError
from slimbert.training.capture import TEACHER_KEYS


def align_row(
    student_tokens: list[str],
    student_special: list[int],
    teacher_tokens: list[str],
    teacher_special: list[int],
) -> list[int] | None:
    """The teacher position of every student position, or None when the content pieces differ
    or a gap of special tokens on the student's side has none on the teacher's."""
    content = [[t for t, s in zip(tokens, special, strict=True) if not s]
               for tokens, special in ((student_tokens, student_special),
                                       (teacher_tokens, teacher_special))]  # fmt: skip
    if content[0] != content[1]:
        return None
    teacher_content: list[int] = []
    teacher_gaps: dict[int, int] = {}  # gap (content pieces before it) -> first special there
    for position, special in enumerate(teacher_special):
        if special:
            teacher_gaps.setdefault(len(teacher_content), position)
        else:
            teacher_content.append(position)
    align, seen = [], 0
    for special in student_special:
        if special:
            if seen not in teacher_gaps:
                return None
            align.append(teacher_gaps[seen])
        else:
            align.append(teacher_content[seen])
            seen += 1
    return align


@dataclass
class Aligned:
    """The rows as the student reads them, each carrying the teacher's reading and `align`."""

    train: EncodedDataset
    eval: EncodedDataset
    teacher_max_length: int

    def describe(self) -> dict:
        return {
            "rows": len(self.train) + len(self.eval),
            "teacher_max_length": self.teacher_max_length,
        }


def _encode(tokenizer, examples: Examples, max_length: int):
    pairs = (examples.text_pairs,) if examples.is_pair else ()
    return tokenizer(
        examples.texts,
        *pairs,
        truncation=True,
        max_length=max_length,
        return_special_tokens_mask=True,
    )


def teacher_length(max_length: int, student_tokenizer, teacher_tokenizer, pair: bool) -> int:
    """The length the teacher reads a row at: `max_length` plus the special tokens it adds
    beyond the student's, so truncation keeps the same content pieces on both sides."""
    extra = teacher_tokenizer.num_special_tokens_to_add(pair=pair) - (
        student_tokenizer.num_special_tokens_to_add(pair=pair)
    )
    return max_length + max(extra, 0)


def _alignments(examples: Examples, student_tokenizer, teacher_tokenizer, lengths):
    """(student reading, teacher reading, each row's alignment or None)."""
    ours = _encode(student_tokenizer, examples, lengths[0])
    theirs = _encode(teacher_tokenizer, examples, lengths[1])
    aligns = [
        align_row(
            student_tokenizer.convert_ids_to_tokens(ours["input_ids"][row]),
            ours["special_tokens_mask"][row],
            teacher_tokenizer.convert_ids_to_tokens(theirs["input_ids"][row]),
            theirs["special_tokens_mask"][row],
        )
        for row in range(len(ours["input_ids"]))
    ]
    return ours, theirs, aligns


def misaligned_row(
    examples: Examples, student_tokenizer, teacher_tokenizer, max_length: int
) -> int | None:
    """The first row the two tokenizers cut into other pieces, read as `aligned_sets` reads
    it; None when every row aligns (layer-to-layer losses can then teach that student)."""
    lengths = (
        max_length,
        teacher_length(max_length, student_tokenizer, teacher_tokenizer, examples.is_pair),
    )
    aligns = _alignments(examples, student_tokenizer, teacher_tokenizer, lengths)[2]
    return next((row for row, align in enumerate(aligns) if align is None), None)


def _aligned_set(
    student_set: EncodedDataset,
    examples: Examples,
    student_tokenizer,
    teacher_tokenizer,
    max_length: int,
    teacher_max_length: int,
    what: str,
) -> EncodedDataset:
    ours, theirs, aligns = _alignments(
        examples, student_tokenizer, teacher_tokenizer, (max_length, teacher_max_length)
    )
    features = []
    for row, feature in enumerate(student_set.features):
        assert feature["input_ids"] == ours["input_ids"][row]
        align = aligns[row]
        if align is None:
            text = examples.texts[row][:60]
            raise SlimbertError(
                f"the student's tokenizer and the teacher's cut {what} row {row} ({text!r}) into "
                "other word pieces, so no student token has one teacher token to be compared "
                "with; use compress kd --student-base, whose soft labels need no aligned tokens"
            )
        extra = {f"teacher_{k}": theirs[k][row] for k in TEACHER_KEYS if k in theirs}
        features.append({**feature, **extra, "align": align})
    aligned = copy.copy(student_set)
    aligned.features = features
    aligned.pads = {"teacher_input_ids": teacher_tokenizer.pad_token_id or 0}
    return aligned


def aligned_sets(
    data: TaskData, student: TaskData, student_tokenizer, teacher_tokenizer
) -> Aligned:
    """`student` (the rows of `data` encoded by the student's tokenizer) with the teacher's
    reading of each row and its alignment; refuses in one line when a row's pieces differ."""
    teacher_max_length = teacher_length(
        data.max_length, student_tokenizer, teacher_tokenizer, data.train.is_pair
    )
    sets = [
        _aligned_set(
            student_set,
            examples,
            student_tokenizer,
            teacher_tokenizer,
            data.max_length,
            teacher_max_length,
            what,
        )  # fmt: skip
        for student_set, examples, what in (
            (student.train_set, data.train, "training"),
            (student.eval_set, data.eval, "eval"),
        )
    ]
    return Aligned(sets[0], sets[1], teacher_max_length)
