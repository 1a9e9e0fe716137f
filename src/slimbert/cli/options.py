"""What the commands share: one-line errors, --recipe files, and options generated from settings.

Every command exits 0 on success. A problem with what the flags name (a SlimbertError) prints one
`Error:` line on stderr naming the thing and the fix and exits 1; a command line click cannot parse
gets click's usage message (Usage, Try --help, a blank line, Error) and exits 2. Neither leaves a
half-written output behind. Ctrl-C and SIGTERM (a scheduler's stop, `kill`, the parent `auto`
dying) print one line and exit 130; a training command continues with --resume.
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
import types
import typing
from dataclasses import fields
from pathlib import Path

import click

from slimbert import settings
from slimbert.batches import DataSpec
from slimbert.data import Columns
from slimbert.errors import SlimbertError
from slimbert.export.runtime import PROVIDERS
from slimbert.training.config import TrainConfig


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def user_errors(command=None, *, sigterm: bool = True):
    """Turn SlimbertError (and Ctrl-C) into one clear line instead of a traceback. With
    `sigterm`, SIGTERM takes Ctrl-C's path too: a command started in the background (nohup,
    `&`, a job scheduler) has SIGINT ignored, and SIGTERM is what a scheduler sends before it
    kills. `serve` keeps uvicorn's own SIGTERM handling (`sigterm=False`)."""
    if command is None:
        return functools.partial(user_errors, sigterm=sigterm)

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        handled = sigterm and threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _interrupt) if handled else None
        try:
            return command(*args, **kwargs)
        except SlimbertError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo(
                "interrupted; no model was written (a training command continues from its last "
                "evaluation with --resume)",
                err=True,
            )
            sys.exit(130)
        finally:
            if handled:
                signal.signal(signal.SIGTERM, previous)

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


class NumberList(click.ParamType):
    """Comma-separated numbers ('3,4,5') as a list, or a tuple for tuple-typed settings; a list
    from a recipe file arrives joined with commas."""

    name = "LIST"

    def __init__(self, item: type, as_tuple: bool = False, none_word: str | None = None):
        self.item, self.as_tuple, self.none_word = item, as_tuple, none_word

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, list | tuple):
            return value if value is None or not self.as_tuple else tuple(value)
        words = [v.strip() for v in str(value).split(",") if v.strip()]
        try:
            items = [
                None if self.none_word and w.lower() == self.none_word else self.item(w)
                for w in words
            ]
        except ValueError:
            also = f" or {self.none_word!r}" if self.none_word else ""
            self.fail(f"{value!r}: give comma-separated numbers{also}, e.g. 3,4,5", param, ctx)
        return tuple(items) if self.as_tuple else items


def _click_type(hint, meta: settings.Setting):
    """The click type of a field's (non-None) type and its declared range or choices."""
    if meta.choices:
        return click.Choice(list(meta.choices))
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        item = _optional_inner(typing.get_args(hint)[0])
        return NumberList(item, as_tuple=origin is tuple, none_word=meta.none_word)
    if hint in (int, float) and (meta.min is not None or meta.max is not None):
        kind = click.IntRange if hint is int else click.FloatRange
        return kind(meta.min, meta.max, min_open=meta.min_open, max_open=meta.max_open)
    if hint is Path:
        return click.Path(path_type=Path)
    return hint


def _optional_inner(hint):
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return hint


def dataclass_options(cls: type, skip: tuple[str, ...] = (), only: tuple[str, ...] | None = None):
    """A decorator adding one click option per `setting` field of dataclass `cls` (or only the
    fields named in `only`): the flag, type, range, default and help all come from the field
    (slimbert.settings)."""
    hints = settings.field_types(cls)

    def option(f):
        meta = settings.describe(f)
        hint = _optional_inner(hints[f.name])
        default = settings.default_of(f)
        flag = meta.flag or "--" + f.name.replace("_", "-")
        if hint is bool:
            decls = [flag if "/" in flag or not meta.secondary else f"{flag}/--no-{flag[2:]}"]
            extra = {"is_flag": True} if not meta.secondary and "/" not in flag else {}
            return click.option(
                *decls, f.name, default=default, show_default=True, help=meta.help, **extra
            )
        if meta.multiple:  # a tuple of choices, one per repeated flag
            choices = click.Choice(list(meta.choices)) if meta.choices else str
            return click.option(
                flag, f.name, type=choices, multiple=True, default=default, show_default=True,
                help=meta.help,
            )  # fmt: skip
        if isinstance(default, list | tuple):
            words = [meta.none_word if v is None else str(v) for v in default]
            default = ",".join(words) or None  # an empty list: no default shown
        return click.option(
            flag,
            f.name,
            type=_click_type(hint, meta),
            default=default,
            show_default=default is not None,
            help=meta.help,
        )

    def decorate(command):
        for f in reversed(fields(cls)):
            wanted = f.name not in skip and (only is None or f.name in only)
            if wanted and settings.describe(f).cli and settings.KEY in f.metadata:
                command = option(f)(command)
        return command

    return decorate


def cli_fields(cls: type, skip: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The names `dataclass_options(cls, skip)` turns into options."""
    return tuple(
        f.name
        for f in fields(cls)
        if f.name not in skip and settings.KEY in f.metadata and settings.describe(f).cli
    )


def data_options(command, skip: tuple[str, ...] = ()):
    """--train/--eval, the column flags and DataSpec's own settings (max length, subset), less
    the fields in `skip` (a command that scores nothing takes no --metric)."""
    command = dataclass_options(DataSpec, skip=skip)(command)
    options = [
        click.option(
            "--train",
            "train",
            type=click.Path(path_type=Path),
            required=True,
            help="Training data: a .tsv (GLUE), .csv, .jsonl or .parquet file, a save_to_disk "
            "folder, or a cached Hub dataset hf:NAME[:CONFIG]:SPLIT.",
        ),
        click.option(
            "--eval",
            "eval_file",
            type=click.Path(path_type=Path),
            required=True,
            help="Evaluation file, same columns as --train.",
        ),
        *column_options(),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def column_options(labels: bool = True) -> list:
    """--text-column, --text-pair-column, --label-column and --no-header."""
    options = [
        click.option(
            "--text-column",
            help="Column with the text (default: found from GLUE headers: sentence, "
            "#1 String, sentence1, text, ...).",
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
            help="The files have no header row; name columns by 0-based position, "
            "e.g. --text-column 0.",
        ),
    ]
    return options if labels else [options[0], options[1], options[3]]


def column_flags(labels: bool = True):
    """A decorator adding column_options() to a command that reads a file outside data_options."""

    def decorate(command):
        for option in reversed(column_options(labels)):
            command = option(command)
        return command

    return decorate


train_options = dataclass_options(TrainConfig)
TRAIN_KEYS = cli_fields(TrainConfig)
DATA_KEYS = (
    "train",
    "eval_file",
    "text_column",
    "text_pair_column",
    "label_column",
    "no_header",
    *cli_fields(DataSpec),
)


def data_spec(kwargs: dict) -> DataSpec:
    """Pop the data flags from a command's keyword arguments into a DataSpec (a flag the
    command does not take keeps DataSpec's default)."""
    values = take(kwargs, tuple(name for name in DATA_KEYS if name in kwargs))
    columns = Columns(
        values.pop("text_column"),
        values.pop("text_pair_column"),
        values.pop("label_column"),
        header=not values.pop("no_header"),
    )
    return DataSpec(Path(values.pop("train")), Path(values.pop("eval_file")), columns, **values)


def train_config(kwargs: dict, **overrides) -> TrainConfig:
    """Pop the training flags from a command's keyword arguments into a TrainConfig."""
    return TrainConfig(**{**take(kwargs, TRAIN_KEYS), **overrides})


def from_cli(cls: type, kwargs: dict, **given):
    """Pop `cls`'s flags from a command's keyword arguments into an instance of it. A list flag
    whose default is empty arrives as None when not given: the field keeps its default."""
    values = take(kwargs, cli_fields(cls))
    empty = {f.name for f in fields(cls) if settings.default_of(f) in ([], ())}
    return cls(**{k: v for k, v in values.items() if not (k in empty and v is None)}, **given)


def take(kwargs: dict, names: tuple[str, ...]) -> dict:
    return {name: kwargs.pop(name) for name in names}


def provider_option(
    help: str = "ONNX Runtime provider; cuda fails clearly when CUDAExecutionProvider is missing.",
):
    """--provider, as every command that runs an ONNX graph takes it (cpu by default)."""
    return click.option(
        "--provider",
        type=click.Choice(list(PROVIDERS)),
        default="cpu",
        show_default=True,
        help=help,
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
