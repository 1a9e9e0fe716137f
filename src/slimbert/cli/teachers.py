"""Commands that make the teacher: train-teacher, professor boost and augment, pretrain-student;
and what the teacher makes: augment, its transfer set."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from slimbert.batches import DataSpec
from slimbert.cli import CONTEXT
from slimbert.cli.options import (
    cli_fields,
    column_flags,
    column_options,
    data_options,
    data_spec,
    dataclass_options,
    recipe_option,
    take,
    train_config,
    train_options,
    user_errors,
)
from slimbert.compress.pretrain import PretrainConfig, pretrain_student
from slimbert.data import Columns
from slimbert.teachers.boost import BoostConfig, boost, round_error
from slimbert.teachers.pair_augment import PairAugmentConfig, augment_pairs
from slimbert.teachers.train import train_teacher
from slimbert.teachers.transfer import TransferConfig, build_transfer, manifest_path, summary_lines


@click.command("train-teacher", context_settings=CONTEXT)
@recipe_option
@click.option(
    "--base",
    required=True,
    help="Base checkpoint: a local Hugging Face directory, a Hub name (org/name, from the "
    "Hugging Face cache), or 'minilm-l6' for the bundled MiniLM.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Directory to write the teacher to (replaced only on success).",
)
@click.option(
    "--save-route",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help=(
        "Also keep K checkpoints at evenly spaced steps under OUT/route/step-N, "
        "for --teacher-route (route-constrained distillation)."
    ),
)
@data_options
@train_options
@user_errors
def train_teacher_cmd(base, out, save_route, **kwargs):
    """Fine-tune a base checkpoint into the teacher.

    Saves an HF model directory (config.json with id2label, model.safetensors, tokenizer) and
    slimbert.json (data hashes, metric, seed, library versions). The best checkpoint on --eval is
    kept. Runs through Accelerate: `accelerate launch -m slimbert train-teacher ...` scales to GPUs.

    \b
    Example:
      slimbert train-teacher --base minilm-l6 --train train.tsv --eval dev.tsv --max-length 64 \\
        --epochs 3 --lr 1e-4 --group-by-length --mixed-precision auto --out runs/teacher
    """
    spec = data_spec(kwargs)
    config = train_config(kwargs)
    result, metadata = train_teacher(base, spec, out, config, save_route=save_route)
    click.echo(
        f"teacher saved to {out}: "
        + ", ".join(f"{k} {v:.2f}" for k, v in metadata.metric.items())
        + f" (best at step {result.best_step} of {result.steps})"
    )


@click.group(context_settings=CONTEXT)
def professor():
    """Make the teacher stronger before it teaches: a boosted ensemble, or augmented pairs.

    \b
    Example:
      slimbert professor boost --base minilm-l6 --train train.tsv --eval dev.tsv \\
        --out runs/professor-boost
    """


@professor.command("boost", context_settings=CONTEXT)
@recipe_option
@click.option(
    "--base",
    required=True,
    help="Checkpoint every member is fine-tuned from: a local HF directory, or 'minilm-l6'.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Ensemble directory (members, ensemble.json); any --teacher flag takes it.",
)
@dataclass_options(BoostConfig)
@data_options
@train_options
@user_errors
def professor_boost_cmd(base, out, **kwargs):
    """PS-Boosting: K teachers fine-tuned in sequence on SAMME sample weights, combined by
    vote-weighted logits.

    \b
    Example:
      slimbert professor boost --base minilm-l6 --train train.tsv --eval dev.tsv --rounds 3 \\
        --out runs/professor-boost
      slimbert compress kd --teacher runs/professor-boost --train train.tsv --eval dev.tsv \\
        --layers 3 --out runs/kd3-boost
    """
    spec = data_spec(kwargs)
    config = train_config(kwargs)
    settings = BoostConfig(**take(kwargs, cli_fields(BoostConfig)))
    metadata = boost(base, spec, out, settings, config)
    for r in metadata.details["rounds"]:
        click.echo(
            f"round {r['round'] + 1}: {round_error(r)}, "
            f"alpha {r['alpha']:.3f}, member {r['eval_main']:.2f}"
            + ("" if r["kept"] else " (tried again)" if r.get("retried") else " (dropped)")
        )
    click.echo(
        f"professor saved to {out}: {metadata.members} members ({metadata.details['stopped']}); "
        + ", ".join(f"{k} {v:.2f}" for k, v in metadata.metric.items())
    )


@professor.command("augment", context_settings=CONTEXT)
@recipe_option
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="TSV of the original plus the new pairs; the report goes beside it (<stem>.report.json).",
)
@click.option(
    "--symmetry/--no-symmetry",
    default=True,
    show_default=True,
    help="Add b–a for every training pair a–b.",
)
@click.option(
    "--transitivity/--no-transitivity",
    default=True,
    show_default=True,
    help="Compose paths of training pairs into new pairs.",
)
@click.option(
    "--max-path",
    type=click.IntRange(2, 4),
    default=2,
    show_default=True,
    help="Most training pairs one new pair composes.",
)
@click.option(
    "--per-pair",
    type=click.IntRange(0),
    default=4,
    show_default=True,
    help="Most transitive pairs credited to one source pair.",
)
@click.option(
    "--max-transitive",
    type=click.IntRange(0),
    help="Most transitive pairs in all (default: no cap).",
)
@click.option(
    "--similar-label", help="The label meaning similar (default: the positive class, '1' in GLUE)."
)
@click.option(
    "--filter-teacher",
    type=click.Path(path_type=Path),
    help="Teacher (or professor) whose confident contradictions are dropped.",
)
@click.option(
    "--filter-confidence",
    type=click.FloatRange(0.5, 1.0),
    help="Drop a new pair the teacher labels the other way with at least this probability.",
)
@functools.partial(data_options, skip=("task", "metric", "positive_label"))  # nothing is scored
@user_errors
def professor_augment_cmd(
    out,
    symmetry,
    transitivity,
    max_path,
    per_pair,
    max_transitive,
    similar_label,
    filter_teacher,
    filter_confidence,
    **kwargs,
):
    """PS-DA data: sentence pairs implied by symmetry and transitivity of the training labels,
    none containing an eval sentence.

    \b
    Example:
      slimbert professor augment --train train.tsv --eval dev.tsv --out runs/train-augmented.tsv
      slimbert train-teacher --base minilm-l6 --train runs/train-augmented.tsv --eval dev.tsv \\
        --out runs/professor-da
    """
    spec = data_spec(kwargs)
    config = PairAugmentConfig(
        symmetry, transitivity, max_path, per_pair, max_transitive, similar_label, filter_confidence
    )
    report = augment_pairs(spec, out, config, teacher=filter_teacher)
    click.echo("\n".join(report.lines()))
    click.echo(f"augmented pairs written to {out}")


@click.command("pretrain-student", context_settings=CONTEXT)
@recipe_option
@click.option(
    "--teacher",
    required=True,
    help=(
        "Whose encoder the student is cut from: a teacher or professor directory, "
        "or a base checkpoint ('minilm-l6')."
    ),
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Masked-LM model directory for `compress kd --student-init`.",
)
@dataclass_options(PretrainConfig)
@click.option(
    "--train",
    "train",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The task's training file: its texts (labels unused) are the default pre-training text.",
)
@click.option(
    "--text",
    "texts",
    type=click.Path(path_type=Path, dir_okay=False),
    multiple=True,
    help="More unlabelled text (.tsv/.csv/.jsonl, same columns); repeat for several.",
)
@column_flags(labels=False)
@dataclass_options(DataSpec, only=("limit", "sample_seed"))
@train_options
@user_errors
def pretrain_student_cmd(
    teacher,
    out,
    train,
    texts,
    text_column,
    text_pair_column,
    no_header,
    limit,
    sample_seed,
    **kwargs,
):
    """Continued masked-LM pre-training of the layer-truncated student on in-domain text.

    \b
    Example:
      slimbert pretrain-student --teacher runs/professor-da --layers 3 --train train.tsv \\
        --out runs/mlm-3L
      slimbert compress kd --teacher runs/professor-da --student-init runs/mlm-3L --layers 3 \\
        --train train.tsv --eval dev.tsv --out runs/kd3-star
    """
    config = train_config(kwargs)
    columns = Columns(text_column, text_pair_column, None, header=not no_header)
    result, metadata = pretrain_student(
        teacher,
        [train, *texts],
        out,
        PretrainConfig(**take(kwargs, cli_fields(PretrainConfig))),
        config,
        columns,
        limit,
        sample_seed,
    )
    click.echo(
        f"pre-trained student saved to {out}: held-out masked-LM loss "
        f"{metadata.details['mlm_loss_before']:.3f} → "
        f"{metadata.metric.get('mlm_loss', float('nan')):.3f} "
        f"(best at step {result.best_step} of {result.steps})"
    )


def _column_options(command):
    for option in reversed(column_options()):
        command = option(command)
    return command


@click.command("augment", context_settings=CONTEXT)
@recipe_option
@click.option(
    "--teacher",
    type=click.Path(path_type=Path),
    required=True,
    help="Teacher (or professor) directory whose labels and logits every row gets.",
)
@click.option(
    "--train",
    "train",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Training file: its rows are copied with words replaced (and, with --pair-rules, "
    "composed); none is copied as it is.",
)
@click.option(
    "--eval",
    "eval_file",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Evaluation file: no text in it (nor either side of a pair) enters the transfer set.",
)
@_column_options
@click.option(
    "--text",
    "texts",
    type=click.Path(path_type=Path, dir_okay=False),
    multiple=True,
    help="Unlabelled text to add (.tsv/.csv/.jsonl, same columns); repeat for several.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The transfer set, a .jsonl; its manifest goes beside it (<stem>.manifest.json).",
)
@dataclass_options(DataSpec, only=("max_length", "limit", "sample_seed"))
@dataclass_options(TransferConfig)
@user_errors
def augment_cmd(
    teacher,
    train,
    eval_file,
    text_column,
    text_pair_column,
    label_column,
    no_header,
    texts,
    out,
    max_length,
    limit,
    sample_seed,
    **kwargs,
):
    """A teacher-labelled transfer set from the training file, for `--transfer` on any
    training command: word-replaced copies of the training rows, the pairs their labels imply
    (--pair-rules) and unlabelled text (--text), minus eval texts, training rows and
    duplicates; each row carries the teacher's label and logits.

    \b
    Example:
      slimbert augment --teacher runs/teacher --train train.tsv --eval dev.tsv --copies 4 \\
        --text unlabelled.tsv --out runs/transfer.jsonl
      slimbert compress kd --teacher runs/teacher --train train.tsv --eval dev.tsv \\
        --transfer runs/transfer.jsonl --layers 3 --out runs/kd3-transfer
    """
    columns = Columns(text_column, text_pair_column, label_column, header=not no_header)
    spec = DataSpec(
        train, eval_file, columns, max_length=max_length, limit=limit, sample_seed=sample_seed
    )
    config = TransferConfig(**take(kwargs, cli_fields(TransferConfig)))
    manifest = build_transfer(teacher, spec, texts, out, config)
    click.echo("\n".join(summary_lines(manifest)))
    click.echo(f"transfer set written to {out} (manifest: {manifest_path(out)})")
