"""slimbert's command line: train a teacher, distil students, export, bench, serve, demo.

Every command exits 0 on success. A problem with what the flags name (a SlimbertError) prints one
`Error:` line on stderr naming the thing and the fix and exits 1; a command line click cannot parse
gets click's usage message (Usage, Try --help, a blank line, Error) and exits 2. Neither leaves a
half-written output behind.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import sys

import click

# every command's click settings (cli/options.py hands them on to the command modules)
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# every command: the module that defines it and its name there. A module is imported only when
# its command runs (or its --help is asked for): `slimbert --help` loads no torch.
COMMANDS = {
    "train-teacher": ("slimbert.cli.teachers", "train_teacher_cmd"),
    "compress": ("slimbert.cli.compress", "compress"),
    "professor": ("slimbert.cli.teachers", "professor"),
    "pretrain-student": ("slimbert.cli.teachers", "pretrain_student_cmd"),
    "distill-general": ("slimbert.cli.general", "distill_general_cmd"),
    "augment": ("slimbert.cli.teachers", "augment_cmd"),
    "export": ("slimbert.cli.export", "export_cmd"),
    "bench": ("slimbert.cli.bench", "bench_cmd"),
    "serve": ("slimbert.cli.serve", "serve_cmd"),
    "demo": ("slimbert.cli.demo", "demo_cmd"),
    "experiment": ("slimbert.cli.demo", "experiment_cmd"),
    "auto": ("slimbert.cli.auto", "auto_cmd"),
}


def docstring_of(module: str, name: str) -> str:
    """The docstring of function `name` in `module`, read from its source without importing it."""
    tree = ast.parse(open(importlib.util.find_spec(module).origin, encoding="utf-8").read())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return inspect.cleandoc(ast.get_docstring(node, clean=False) or "")
    raise LookupError(f"{module} defines no command function {name}")


class LazyGroup(click.Group):
    """The top-level group: commands load on use; their help lines come from their docstrings."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name]
        return getattr(importlib.import_module(module), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        listed = [
            click.Command(n, help=docstring_of(*COMMANDS[n])) for n in self.list_commands(ctx)
        ]
        width = formatter.width - 6 - max(len(command.name) for command in listed)
        with formatter.section("Commands"):
            formatter.write_dl([(c.name, c.get_short_help_str(width)) for c in listed])


@click.group(cls=LazyGroup, context_settings=CONTEXT)
@click.version_option(package_name="slimbert")
def cli():
    """Distil a fine-tuned BERT-family classifier into smaller students, export them to ONNX,
    and measure latency against F1.

    \b
    A typical path:
      slimbert train-teacher --base minilm-l6 --train train.tsv --eval dev.tsv --out runs/teacher
      slimbert compress kd --teacher runs/teacher --train train.tsv --eval dev.tsv \\
        --layers 3 --out runs/kd3
      slimbert export --model runs/kd3 --eval dev.tsv --out runs/kd3-onnx
      slimbert bench --model runs/teacher --model runs/kd3 --eval dev.tsv --out runs/bench
    """
    _quiet_weight_bars()
    click.get_current_context().call_on_close(_release_process_group)
    if int(os.environ.get("RANK", "0")) != 0:
        # under a launcher (torchrun, accelerate launch) the first process reports for all: the
        # others train and stay quiet on stdout (errors still reach stderr)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process


def _release_process_group() -> None:
    """Under a launcher, tear the process group down before the interpreter exits (PyTorch's
    documented shutdown): left to the interpreter's exit, gloo's threads can outlive what they
    reference and abort a process that has already done its work."""
    error = sys.exc_info()[1]
    if error is not None and not (isinstance(error, click.exceptions.Exit) and not error.exit_code):
        # a command that failed (an error, a stop) leaves the group to its process's exit: a
        # peer may be waiting inside a collective with this process, and destroying the group
        # under it hangs both (the peer then fails when this process is gone, and the
        # launcher stops the rest)
        return
    distributed = sys.modules.get("torch.distributed")  # never imports torch for --help
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


# transformers 5 draws a progress bar each time it loads or saves a model's weights: on the
# command line that is a dozen bars per command, and noise in front of a one-line error.
WEIGHT_BARS = ("Loading weights", "Writing model shards")


def _drop_weight_bars(factory, args, kwargs):
    if kwargs.get("desc") in WEIGHT_BARS:
        kwargs = {**kwargs, "disable": True}
    return factory(*args, **kwargs)


def _quiet_weight_bars() -> None:
    from transformers.utils import logging as transformers_logging

    if hasattr(transformers_logging, "set_tqdm_hook"):  # transformers 5; 4.x draws no such bars
        transformers_logging.set_tqdm_hook(_drop_weight_bars)


def main() -> None:
    cli(prog_name="slimbert")


if __name__ == "__main__":
    main()
