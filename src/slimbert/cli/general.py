"""`slimbert distill-general`: a student of any shape taught on unlabelled text, once per teacher
and shape, for every method's --student-init."""

from __future__ import annotations

from pathlib import Path

import click

from slimbert.batches import DataSpec
from slimbert.cli import CONTEXT
from slimbert.cli.options import (
    cli_fields,
    column_flags,
    dataclass_options,
    recipe_option,
    take,
    train_config,
    train_options,
    user_errors,
)
from slimbert.compress.general import GeneralConfig, distill_general
from slimbert.data import Columns


@click.command("distill-general", context_settings=CONTEXT)
@recipe_option
@click.option(
    "--teacher",
    required=True,
    help=(
        "Whose encoder the student learns to imitate: a base checkpoint (a directory, a Hub "
        "name, 'minilm-l6') or a teacher directory."
    ),
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Directory for the student (a classifier folder whose head is untrained; replaced only "
    "on success).",
)
@click.option(
    "--text",
    "texts",
    type=click.Path(path_type=Path, dir_okay=False),
    multiple=True,
    required=True,
    help=(
        "Unlabelled text: a .txt file (one text per line), or a .tsv/.csv/.jsonl/.parquet file "
        "or transfer set read with the column flags (labels ignored, pairs kept). Repeat for "
        "several; duplicates are dropped."
    ),
)
@dataclass_options(GeneralConfig, skip=("student_init",))
@column_flags(labels=False)
@dataclass_options(DataSpec, only=("limit", "sample_seed"))
@train_options
@user_errors
def distill_general_cmd(
    teacher, out, texts, text_column, text_pair_column, no_header, limit, sample_seed, **kwargs
):
    """Task-agnostic distillation: teach a student of any depth, width and head count to be an
    encoder like the teacher's, on unlabelled text, before any task.

    A student narrower than its teacher copies none of its weights; trained on one task's rows
    from random weights it learns little. This step (MiniLMv2's relation distillation by
    default, TinyBERT's general distillation, or DistilBERT's triple loss from a teacher saved
    with its masked-LM head) runs once per teacher and student shape; every
    method then starts from its output with --student-init, for every task. --limit and
    --sample-seed cut the first --text file only. The held-out distillation loss picks the
    checkpoint; slimbert.json records the texts' hashes, the tokens seen and the wall-clock per
    million tokens.

    \b
    Example (MPNet-base → 6 × 384, then a task):
      slimbert distill-general --teacher runs/all-mpnet-base-v2 --layers 6 --hidden-size 384 \\
        --heads 12 --ffn-size 1536 --text sst2/train.tsv --text mrpc/train.tsv \\
        --max-length 64 --epochs 2 --lr 5e-4 --out runs/general-6x384
      slimbert compress kd --teacher runs/sst2-teacher --student-init runs/general-6x384 \\
        --layers 6 --train sst2/train.tsv --eval sst2/dev.tsv --out runs/kd-6x384
    """
    config = train_config(kwargs)
    columns = Columns(text_column, text_pair_column, None, header=not no_header)
    result, metadata = distill_general(
        teacher,
        list(texts),
        out,
        GeneralConfig(**take(kwargs, cli_fields(GeneralConfig, skip=("student_init",)))),
        config,
        columns,
        limit,
        sample_seed,
    )
    cost = metadata.details["cost"]
    click.echo(
        f"general student saved to {out}: held-out distillation loss "
        f"{metadata.details['distill_loss_before']:.4f} → "
        f"{metadata.metric.get('distill_loss', float('nan')):.4f} "
        f"(best at step {result.best_step} of {result.steps}; "
        f"{cost['tokens_seen'] / 1e6:.2f}M tokens, "
        f"{cost['seconds_per_million_tokens'] or 0:.0f} s per million)"
    )
