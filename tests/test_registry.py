"""Every registered method has a CLI subcommand, an example recipe that parses into that command's
flags with the exact command in its header, and a test file that imports its module."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from slimbert.cli import compress
from slimbert.compress.registry import METHODS

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def test_registry_holds_the_transformer_methods():
    assert {"kd", "tinybert", "theseus", "minilm"} <= set(METHODS)
    for name, run in METHODS.items():
        assert callable(run), name
        assert list(inspect.signature(run).parameters)[:3] == ["teacher_dir", "spec", "out"], name


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_has_a_cli_subcommand(name):
    assert name in compress.commands, f"add `slimbert compress {name}` to cli.py"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_has_an_example_recipe_that_parses(name):
    recipe = ROOT / "recipes" / f"{name}.yaml"
    assert recipe.is_file(), f"add recipes/{name}.yaml"
    text = recipe.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any(
        f"slimbert compress {name} --recipe recipes/{name}.yaml" in line for line in header
    ), "the header comment gives the exact command"
    command = compress.commands[name]
    flags = {opt[2:] for param in command.params for opt in param.opts if opt.startswith("--")}
    keys = set(yaml.safe_load(text))
    assert keys <= flags, f"keys that are not flags of `compress {name}`: {sorted(keys - flags)}"
    # click parses the recipe as the command would (types, choices, required flags)
    context = command.make_context(name, ["--recipe", str(recipe)])
    assert context.params["teacher"] is not None and context.params["out"] is not None


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_module_is_imported_by_a_test(name):
    module = METHODS[name].__module__  # e.g. slimbert.compress.tinybert
    short = module.rsplit(".", 1)[-1]
    patterns = (
        f"from {module} import",
        f"import {module}",
        f"from slimbert.compress import {short}",
    )
    tested = [
        p.name
        for p in TESTS.glob("test_*.py")
        if p.name != Path(__file__).name and any(s in p.read_text() for s in patterns)
    ]
    assert tested, f"no test imports {module}; add tests/test_{name}.py"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_config_fields_map_one_to_one_onto_flags(name):
    import dataclasses
    import typing

    from slimbert.batches import DataSpec
    from slimbert.training.loop import TrainConfig

    hints = typing.get_type_hints(METHODS[name])
    configs = [
        t
        for t in hints.values()
        if dataclasses.is_dataclass(t) and t not in (TrainConfig, DataSpec)
    ]
    assert len(configs) == 1, f"{name}: run() takes one method config dataclass"
    flags = {
        opt[2:]
        for param in compress.commands[name].params
        for opt in param.opts
        if opt.startswith("--")
    }
    fields = {f.name.replace("_", "-") for f in dataclasses.fields(configs[0])}
    assert fields <= flags, f"{configs[0].__name__} fields without a flag: {sorted(fields - flags)}"
