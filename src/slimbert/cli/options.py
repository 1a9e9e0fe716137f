"""slimbert's command line: train a teacher, distil students, export, bench, serve, demo.

Every command exits 0 on success and, on a problem the user can fix, prints one line on stderr
naming the thing and the fix, exits non-zero and leaves no half-written output behind.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from slimbert.errors import SlimbertError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def user_errors(command):
    """Turn SlimbertError (and Ctrl-C) into one clear line instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except SlimbertError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted; nothing was written", err=True)
            sys.exit(130)

    return wrapper


def _load_recipe(ctx: click.Context, param: click.Parameter, value: str | None):
    """A YAML recipe whose keys are the command's own flags (dashes or underscores)."""
    if value is None:
        return None
    import yaml

    path = Path(value)
    try:
        payload = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise click.BadParameter(f"{path}: cannot read the recipe ({exc})") from None
    if not isinstance(payload, dict):
        raise click.BadParameter(f"{path}: a recipe is a mapping of flag names to values")
    # A key is a flag's long name without dashes (`eval`, `max-length` or `max_length`).
    known: dict[str, click.Parameter] = {}
    for param in ctx.command.params:
        if param.name in (None, "recipe"):
            continue
        for opt in param.opts:
            if opt.startswith("--"):
                known[opt[2:].replace("-", "_")] = param
    values = {}
    for key, item in payload.items():
        param = known.get(str(key).replace("-", "_"))
        if param is None:
            valid = sorted({k.replace("_", "-") for k in known})
            raise click.BadParameter(f"{path}: unknown key {key!r}; valid keys: {', '.join(valid)}")
        if isinstance(item, list) and not param.multiple:
            item = ",".join(str(v) for v in item)
        elif param.multiple and not isinstance(item, list):
            item = [item]  # `teacher: runs/t` for a repeatable flag
        values[param.name] = item
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return path


def recipe_option(command):
    return click.option(
        "--recipe",
        type=click.Path(dir_okay=False, exists=True),
        callback=_load_recipe,
        is_eager=True,
        expose_value=False,
        help="YAML file whose keys are this command's flags; flags given on the command line win.",
    )(command)


def data_options(command):
    options = [
        click.option(
            "--train",
            "train",
            type=click.Path(path_type=Path),
            required=True,
            help="Training file: .tsv (GLUE), .csv or .jsonl.",
        ),
        click.option(
            "--eval",
            "eval_file",
            type=click.Path(path_type=Path),
            required=True,
            help="Evaluation file, same columns as --train.",
        ),
        click.option(
            "--text-column",
            help="Column with the text (default: found from GLUE headers: sentence, #1 String, sentence1, text, ...).",
        ),
        click.option(
            "--text-pair-column",
            help="Column with the second text of a pair (default: #2 String, sentence2, ...).",
        ),
        click.option(
            "--label-column",
            help="Column with the label (default: label, Quality, score, sentiment).",
        ),
        click.option(
            "--no-header",
            is_flag=True,
            help="The files have no header row; name columns by 0-based position, e.g. --text-column 0.",
        ),
        click.option(
            "--task",
            type=click.Choice(["classification", "regression"]),
            help="Default: regression when labels are decimals (STS-B).",
        ),
        click.option(
            "--max-length",
            type=click.IntRange(8, 4096),
            default=128,
            show_default=True,
            help="Tokens per example after truncation.",
        ),
        click.option("--limit", type=click.IntRange(1), help="Use only the first N training rows."),
        click.option(
            "--sample-seed",
            type=int,
            help="Shuffle the training rows with this seed before --limit (a seeded subset).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def train_options(command):
    options = [
        click.option(
            "--epochs",
            type=click.FloatRange(0, min_open=True),
            default=3.0,
            show_default=True,
            help="Passes over the training set.",
        ),
        click.option(
            "--max-steps",
            type=click.IntRange(1),
            help="Stop after N optimiser steps (overrides --epochs).",
        ),
        click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True),
        click.option(
            "--lr",
            type=click.FloatRange(0, min_open=True),
            default=5e-5,
            show_default=True,
            help="Peak learning rate (AdamW, linear warm-up and decay).",
        ),
        click.option("--seed", type=int, default=42, show_default=True),
        click.option(
            "--eval-every",
            type=click.IntRange(0),
            default=0,
            show_default=True,
            help="Evaluate every N steps; 0 = once per epoch.",
        ),
        click.option(
            "--patience",
            type=click.IntRange(0),
            default=2,
            show_default=True,
            help="Early stop after N evaluations without improvement; 0 = never.",
        ),
        click.option(
            "--mixed-precision",
            type=click.Choice(["no", "fp16", "bf16"]),
            default="no",
            show_default=True,
            help="Mixed precision through Accelerate: fp16 on GPUs; bf16 on GPUs and on CPUs with AVX-512 BF16 or AMX (about 2x faster training there).",
        ),
        click.option(
            "--group-by-length/--no-group-by-length",
            default=False,
            show_default=True,
            help="Batch training rows of similar length together: less padding, a third less compute on MRPC.",
        ),
        click.option("--progress/--no-progress", default=True, help="Show the progress bar."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def data_spec(
    train,
    eval_file,
    text_column,
    text_pair_column,
    label_column,
    no_header,
    task,
    max_length,
    limit,
    sample_seed,
):
    from slimbert.batches import DataSpec
    from slimbert.data import Columns

    columns = Columns(text_column, text_pair_column, label_column, header=not no_header)
    return DataSpec(Path(train), Path(eval_file), columns, task, max_length, limit, sample_seed)


def train_config(
    epochs,
    max_steps,
    batch_size,
    lr,
    seed,
    eval_every,
    patience,
    mixed_precision,
    group_by_length,
    progress,
):
    from slimbert.training.loop import TrainConfig

    return TrainConfig(
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        eval_every=eval_every,
        patience=patience,
        mixed_precision=mixed_precision,
        group_by_length=group_by_length,
        progress=progress,
    )


def take(kwargs: dict, names: tuple[str, ...]) -> dict:
    return {name: kwargs.pop(name) for name in names}


DATA_KEYS = (
    "train",
    "eval_file",
    "text_column",
    "text_pair_column",
    "label_column",
    "no_header",
    "task",
    "max_length",
    "limit",
    "sample_seed",
)
TRAIN_KEYS = (
    "epochs",
    "max_steps",
    "batch_size",
    "lr",
    "seed",
    "eval_every",
    "patience",
    "mixed_precision",
    "group_by_length",
    "progress",
)


def float_list(ctx, param, value):
    """'0.7,0.3' -> (0.7, 0.3)."""
    if value is None or isinstance(value, tuple):
        return value
    try:
        return tuple(float(v) for v in str(value).split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: give comma-separated numbers, e.g. 0.7,0.3") from None


def int_list(ctx, param, value):
    if value is None or isinstance(value, list):
        return value
    try:
        sizes = [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: give comma-separated whole numbers, e.g. 1,8"
        ) from None
    if not sizes or any(s < 1 for s in sizes):
        raise click.BadParameter(f"{value!r}: sizes must be ≥ 1")
    return sizes


def length_list(ctx, param, value):
    """'own,64,128' -> [None, 64, 128]: None is each request's own length."""
    if value is None or isinstance(value, list):
        return value
    lengths = []
    for item in (v.strip() for v in str(value).split(",") if v.strip()):
        if item.lower() == "own":
            lengths.append(None)
        elif item.isdigit() and int(item) >= 4:
            lengths.append(int(item))
        else:
            raise click.BadParameter(
                f"{item!r}: give 'own' or whole numbers ≥ 4, comma-separated, e.g. own,64,128"
            )
    return lengths or [None]
