"""`slimbert compress <method>`: one subcommand per registered distillation method.

Nothing here names a method: each subcommand is made from its registry entry
(compress/registry.py) when click asks for it, with the method's settings as flags, the data
and training flags every method shares, --teacher/--out and --recipe.
"""

from __future__ import annotations

from pathlib import Path

import click

from slimbert.cli import CONTEXT
from slimbert.cli.options import (
    cli_fields,
    data_options,
    data_spec,
    dataclass_options,
    recipe_option,
    take,
    train_config,
    train_options,
    user_errors,
)
from slimbert.compress.method import Job, Method
from slimbert.compress.registry import METHODS
from slimbert.record import ModelRecord


def figures(values: dict) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in values.items())


def student_line(out: Path, record: ModelRecord) -> str:
    teacher = figures(record.teacher_metric)
    return f"student saved to {out}: {figures(record.metric)} (teacher: {teacher})"


def refuse_student_base(method: Method):
    """A hidden --student-base on the methods that cannot take one: one line says why."""

    def refuse(ctx, param, value):
        if value is not None:
            raise click.ClickException(
                f"compress {method.name} cannot take --student-base: kd teaches a student that "
                "reads another tokenizer (its soft labels are per example), minilm and "
                "tinybert one whose word pieces align with the teacher's; "
                f"{method.name} builds its student from the teacher's own modules or "
                "embeddings; use compress kd --student-base"
            )
        return value

    return click.option("--student-base", hidden=True, expose_value=False, callback=refuse)


def method_command(method: Method) -> click.Command:
    """The click command for one registry entry."""
    method_keys = cli_fields(method.config)

    @user_errors
    def callback(teacher, out, **kwargs):
        config = method.config(**take(kwargs, method_keys))
        job = Job(
            tuple(Path(t) for t in teacher), data_spec(kwargs), Path(out), train_config(kwargs)
        )
        _, record = method.run(job, config)
        click.echo(student_line(out, record))

    teacher_help = (
        "Teacher directory (from train-teacher), a professor (professor boost's ensemble, "
        "or a PS-DA teacher), or a fine-tuned classifier's Hub name (org/name, from the "
        "Hugging Face cache)."
    )
    if method.several_teachers:
        teacher_help += (
            " Repeat for several teachers (e.g. the previous production model the new student "
            "must stay close to); the first gives the tokenizer and the input embeddings."
        )
    command = callback
    for decorate in reversed(
        [
            recipe_option,
            click.option(
                "--teacher",
                type=click.Path(path_type=Path),
                multiple=method.several_teachers,
                required=True,
                callback=lambda ctx, param, value: value if isinstance(value, tuple) else (value,),
                help=teacher_help,
            ),
            click.option(
                "--out",
                type=click.Path(path_type=Path),
                required=True,
                help="Directory to write the student to (replaced only on success).",
            ),
            dataclass_options(method.config),
            data_options,
            train_options,
            *([] if "student_base" in method_keys else [refuse_student_base(method)]),
        ]
    ):
        command = decorate(command)
    stages = " → ".join(method.stages)
    example = (
        f"slimbert compress {method.name} --teacher runs/teacher --train train.tsv "
        f"--eval dev.tsv --out runs/{method.name}-student"
    )
    notes = f"{method.notes}\n\n" if method.notes else ""
    help_text = f"{method.summary}\n\nStages: {stages}.\n\n{notes}\b\nExample:\n  {example}"
    context = {**CONTEXT, "default_map": dict(method.train_defaults)}
    return click.command(method.name, context_settings=context, help=help_text)(command)


class MethodGroup(click.Group):
    """Subcommands made from the registry at the moment click asks for them."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(METHODS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        method = METHODS.get(name)
        return method_command(method) if method is not None else None


@click.group("compress", cls=MethodGroup, context_settings=CONTEXT)
def compress():
    """Distil a teacher into a smaller student. One subcommand per method; each takes
    --recipe FILE with its flags as keys.

    \b
    Example:
      slimbert compress kd --teacher runs/teacher --train train.tsv --eval dev.tsv \\
        --layers 3 --out runs/kd3
    """
