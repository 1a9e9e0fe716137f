"""The command line's manners: every command's --help shows an example that its own parser
accepts, and `bench compare` tells a regression (3) from a usage error (2) and any other error
(1) by its exit status."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from slimbert.bench.compare import REGRESSION_EXIT
from slimbert.bench.report import Report
from slimbert.cli import cli
from tests.bench.test_report import row


def commands(command: click.Command = cli, path: tuple[str, ...] = ()):
    """(path, command) for the root and every command under it, generated ones included."""
    yield path, command
    if isinstance(command, click.Group):
        context = click.Context(command)
        for name in command.list_commands(context):
            yield from commands(command.get_command(context, name), (*path, name))


def examples(help_text: str) -> list[str]:
    """The `slimbert ...` command lines in a help text, continuation lines joined."""
    found, current = [], None
    for line in help_text.splitlines():
        text = line.strip()
        if current is None and text.startswith("slimbert "):
            current = text
        elif current is not None:
            current += " " + text
        else:
            continue
        if current.endswith("\\"):
            current = current[:-1].rstrip()
        else:
            found.append(current)
            current = None
    return found


def parses(line: str) -> None:
    """Parse an example with the parser of the command it names (nothing runs)."""
    args = shlex.split(line)[1:]
    command: click.Command = cli
    parent = None
    while (
        isinstance(command, click.Group)
        and args
        and args[0] in command.list_commands(click.Context(command))
    ):
        parent = click.Context(command, info_name=command.name, parent=parent)
        command, args = command.get_command(parent, args[0]), args[1:]
    with command.make_context(command.name, list(args), parent=parent):
        pass


ALL = list(commands())

# Commands that train on unlabelled text (masked-LM pre-training, task-agnostic distillation):
# with no labels there is no metric to choose, and a transfer set's texts come in by --text.
UNLABELLED = {"pretrain-student", "distill-general"}


def flags(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in param.opts}


def training_commands() -> dict[str, click.Command]:
    """Every command of the tree that trains a model (it takes --epochs), by its path."""
    return {" ".join(path): c for path, c in ALL if "--epochs" in flags(c)}


def test_the_walk_reaches_every_command():
    names = {" ".join(path) for path, _ in ALL}
    expected = {
        "",
        "train-teacher",
        "compress",
        "compress kd",
        "compress tinybert",
        "professor",
        "professor boost",
        "professor augment",
        "pretrain-student",
        "augment",
        "export",
        "bench",
        "bench compare",
        "serve",
        "demo",
        "experiment",
        "auto",
    }
    assert expected <= names, expected - names
    assert len(names) >= len(expected) + 4  # the other registered compress methods


@pytest.mark.parametrize("path", [path for path, _ in ALL], ids=lambda p: " ".join(p) or "root")
def test_every_help_has_an_example_its_parser_accepts(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    lines = examples(result.output)
    assert lines, f"`slimbert {' '.join(path)} --help` shows no example"
    # the example is for this command (or, for a group, one of its subcommands)
    assert any(shlex.split(line)[1 : 1 + len(path)] == list(path) for line in lines), lines
    for line in lines:
        try:
            parses(line)
        except click.UsageError as exc:
            pytest.fail(f"example {line!r} does not parse: {exc.format_message()}")


@pytest.mark.parametrize("path", [path for path, _ in ALL], ids=lambda p: " ".join(p) or "root")
def test_every_option_says_what_it_does(path):
    command = dict(ALL)[path]
    bare = [
        "/".join(p.opts)
        for p in command.params
        if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()
    ]
    assert not bare, f"`slimbert {' '.join(path)}`: options without help text: {bare}"


def test_a_user_error_is_one_line_and_a_usage_error_is_click_s_four():
    """What the README promises about stderr and exit statuses, as a user meets them."""
    runner = CliRunner()
    usage = runner.invoke(cli, ["export", "--nope"])
    assert usage.exit_code == 2
    lines = usage.output.splitlines()  # all of it on stderr (nothing is printed to stdout)
    assert len(lines) == 4 and lines[0].startswith("Usage: ") and lines[2] == ""
    assert lines[1].startswith("Try '") and lines[3].startswith("Error: No such option '--nope'")
    user = runner.invoke(
        cli, ["export", "--model", "/absent", "--eval", "/absent.tsv", "--out", "/absent-out"]
    )
    assert user.exit_code == 1
    assert user.output == "Error: --model /absent: no such directory\n"


def test_examples_reads_continued_lines():
    text = "Example:\n  slimbert bench --model a \\\n    --eval b --out c\n  curl -s x\n"
    assert examples(text) == ["slimbert bench --model a --eval b --out c"]
    with pytest.raises(click.UsageError, match="No such option '--nope'"):
        parses("slimbert export --model m --out o --nope")


# ---------------------------------------------------------------------------------------------
# bench compare's exit status


@pytest.fixture
def reports(tmp_path):
    def write(name: str, p99: float, metric: float = 90.0):
        path = tmp_path / f"{name}.json"
        report = Report(name, [row("kd-2L", p99=p99, spread=0.1, metric=metric)], {})
        path.write_text(json.dumps(report.to_dict()))
        return str(path)

    return write


def test_compare_exit_status_tells_regressions_from_errors(reports, tmp_path):
    old, same, slower = reports("old", 20), reports("same", 20.2), reports("slower", 30)
    less_accurate = reports("less-accurate", 20, metric=88.0)

    def status(*args):
        return CliRunner().invoke(cli, ["bench", "compare", *args]).exit_code

    assert REGRESSION_EXIT == 3
    assert status(old, same) == 0
    assert status(old, slower) == 3  # p50 10 → 15 ms, beyond 5% and the spread
    assert status(old, less_accurate) == 3  # 2 F1 points, beyond 0.5
    assert status(old, slower, "--threshold", "10ms") == 0
    assert status(old, slower, "--threshold", "fast") == 2  # malformed flag: usage
    assert status(old, slower, "--statistic", "p95") == 2
    assert status(old) == 2  # NEW missing
    assert status(old, str(tmp_path / "absent.json")) == 1  # a SlimbertError
    help_text = CliRunner().invoke(cli, ["bench", "compare", "--help"]).output
    assert "3  a regression was found" in help_text and "2  usage error" in help_text


def test_top_level_help_loads_no_command_and_lists_each_commands_own_summary():
    """`slimbert --help` reads the command summaries from their docstrings without importing
    the command modules (which bring in torch and transformers), and shows what each command's
    own help would."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from slimbert.cli import cli\n"
        "result = CliRunner().invoke(cli, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'onnxruntime') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    from slimbert.cli import COMMANDS, docstring_of

    context = click.Context(cli)
    assert cli.list_commands(context) == sorted(COMMANDS)
    for name in COMMANDS:
        summary = click.Command(name, help=docstring_of(*COMMANDS[name])).get_short_help_str(999)
        assert summary == cli.get_command(context, name).get_short_help_str(999), name


@pytest.mark.parametrize(
    "command, settings_class",
    [(("bench",), "slimbert.bench.config:BenchConfig"),
     (("export",), "slimbert.export.settings:ExportSettings"),
     (("auto",), "slimbert.auto.settings:AutoSettings")],
)  # fmt: skip
def test_bench_and_export_flags_come_from_their_settings_dataclass(command, settings_class):
    """Every setting field of the dataclass is an option of the command, with the field's help
    and default: defaults are written once, in the field."""
    import importlib
    from dataclasses import fields

    from slimbert import settings
    from slimbert.cli.options import cli_fields

    module, name = settings_class.split(":")
    cls = getattr(importlib.import_module(module), name)
    context = click.Context(cli)
    group = cli.get_command(context, command[0])
    options = {p.name: p for p in group.params}
    wanted = cli_fields(cls)
    assert len(wanted) >= 15 and set(wanted) <= set(options)
    for field in (f for f in fields(cls) if f.name in wanted):
        option, default = options[field.name], settings.default_of(field)
        assert option.help == settings.describe(field).help, field.name
        if isinstance(default, list | tuple) and not option.multiple:
            word = settings.describe(field).none_word
            default = ",".join(word if v is None else str(v) for v in default) or None
        assert option.default == default, (field.name, option.default, default)


def test_a_command_that_scores_nothing_takes_no_metric_flags():
    """professor augment writes pairs and scores none: --metric, --positive-label and --task
    are not its options (they were accepted and ignored), while the data flags it reads are."""
    context = click.Context(cli)
    augment = cli.get_command(context, "professor").get_command(context, "augment")
    names = {p.name for p in augment.params}
    assert {"metric", "positive_label", "task"}.isdisjoint(names)
    assert {"train", "eval_file", "max_length", "limit"} <= names
    result = CliRunner().invoke(cli, ["professor", "augment", "--metric", "f1"])
    assert result.exit_code == 2 and "No such option '--metric'" in result.output


# ---------------------------------------------------------------------------------------------
# the README's command lines


def readme_commands() -> list[str]:
    """Every `slimbert ...` line of the README's bash blocks, continuations joined and the
    block's own `NAME="..."` assignments expanded; a line with `...` (elided flags) is skipped."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    found = []
    for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S):
        values = dict(re.findall(r'^([A-Z_]+)="([^"]*)"$', block, flags=re.M))
        for line in examples(block):
            for name, value in values.items():
                line = line.replace(f"${name}", value)
            if "..." not in line and "$" not in line:
                found.append(line)
    return found


README_COMMANDS = readme_commands()


def test_the_readme_has_commands_to_check():
    assert len(README_COMMANDS) >= 10  # the regex still finds the blocks


@pytest.mark.parametrize("line", README_COMMANDS, ids=[c[:60] for c in README_COMMANDS])
def test_every_readme_command_parses(line):
    """A flag renamed or removed fails here, not on the reader who copies the README."""
    parses(line.split(" #")[0])
