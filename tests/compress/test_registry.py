"""The method registry drives the CLI, recipes and experiments: every module of
slimbert.compress that defines a `METHOD` is registered (a module dropped into the package is
found with no other file touched), and every registered method has a subcommand made from its
settings, an example recipe that parses into that command's flags with the exact command in
its header, and a test that trains it through `slimbert compress NAME` and reads its first
losses. A toy method put into the registry here (a monkeypatch) is usable from `slimbert
compress`, a recipe and `slimbert experiment`."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import slimbert.compress
from slimbert.batches import evaluator
from slimbert.cli import cli
from slimbert.cli.compress import compress
from slimbert.compress.method import Job, Method, open_job, student_record
from slimbert.compress.registry import FIRST, METHODS, discover, get_method
from slimbert.compress.students import StudentShape, build_student, pick_layers
from slimbert.errors import SlimbertError
from slimbert.models import save_model
from slimbert.record import ModelRecord
from slimbert.settings import setting
from slimbert.training.config import TrainResult, train_loader
from slimbert.training.loop import train
from slimbert.training.losses import LossTerm, combine, hard_loss
from slimbert.training.outputs import forward

ROOT = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parents[1]


def command(name: str):
    return compress.get_command(None, name)


def test_registry_entries_share_one_run_signature():
    assert {"kd", "tinybert", "theseus", "minilm", "textcnn", "bilstm", "tree"} <= set(METHODS)
    for name, method in METHODS.items():
        assert method.name == name
        assert list(inspect.signature(method.run).parameters) == [
            "job",
            method.run.__code__.co_varnames[1],
        ]
        assert dataclasses.is_dataclass(method.config), name


def test_unknown_method_is_one_line():
    with pytest.raises(SlimbertError, match="unknown method 'nope'; choose one of kd, tinybert"):
        get_method("nope")


# ---------------------------------------------------------------------------------------------
# Discovery: a method is a module of slimbert.compress with a module-level METHOD.

DROPPED = """
from dataclasses import dataclass

from slimbert.compress.method import Method
from slimbert.settings import setting


@dataclass
class DroppedConfig:
    depth: int = setting(1, "Student depth of the dropped method.", min=1)


def run(job, config):
    raise NotImplementedError


METHOD = Method(name={name!r}, config=DroppedConfig, run=run, summary="Dropped in: {name}.")
"""


@pytest.fixture
def dropped(tmp_path, monkeypatch):
    """A folder added to slimbert.compress's package path, as a file saved into
    src/slimbert/compress/ would be; `drop(file, method)` writes a method module into it."""
    folder = tmp_path / "more-methods"
    folder.mkdir()
    monkeypatch.setattr(slimbert.compress, "__path__", [*slimbert.compress.__path__, str(folder)])
    written: list[str] = []

    def drop(stem: str, method: str | None) -> None:
        source = DROPPED.format(name=method) if method else '"""A helper, no METHOD."""\n'
        (folder / f"{stem}.py").write_text(source)
        written.append(f"slimbert.compress.{stem}")

    yield drop
    for module in written:
        sys.modules.pop(module, None)


def test_the_shipped_methods_are_found_in_their_order_and_nothing_else():
    assert list(METHODS)[: len(FIRST)] == list(FIRST)
    assert discover(slimbert.compress) == METHODS
    # modules of the package that define no METHOD are not methods
    assert not {"general", "pretrain", "students", "teaching", "method"} & set(METHODS)


def test_a_module_dropped_into_the_package_is_found(dropped):
    dropped("zz_second", "beta")
    dropped("aa_first", "alpha")
    dropped("helper_module", None)
    found = discover(slimbert.compress)
    assert list(found) == [*FIRST, "alpha", "beta"]  # the shipped ones first, then by name
    assert found["alpha"].summary == "Dropped in: alpha." and found["alpha"].name == "alpha"
    assert found["alpha"].run.__module__ == "slimbert.compress.aa_first"


def test_two_modules_claiming_one_name_are_refused(dropped):
    dropped("kd_again", "kd")
    with pytest.raises(SlimbertError, match="slimbert.compress.kd and slimbert.compress.kd_again"):
        discover(slimbert.compress)


def test_a_dropped_method_is_a_subcommand_in_a_fresh_process(tmp_path):
    """End to end, with nothing patched in the registry: a new interpreter whose
    slimbert.compress path holds one more module lists it under `slimbert compress`."""
    folder = tmp_path / "more-methods"
    folder.mkdir()
    (folder / "dropped.py").write_text(DROPPED.format(name="dropped"))
    script = textwrap.dedent(
        f"""
        import slimbert.compress
        slimbert.compress.__path__.append({str(folder)!r})
        from click.testing import CliRunner
        from slimbert.cli import cli
        listing = CliRunner().invoke(cli, ["compress", "--help"]).output
        own = CliRunner().invoke(cli, ["compress", "dropped", "--help"]).output
        print(listing, own, sep="\\n---\\n")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    listing, own = done.stdout.split("\n---\n")
    assert "dropped" in listing and "Dropped in: dropped." in listing
    assert "--depth INTEGER RANGE" in own and "Student depth of the dropped method." in own


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_has_an_example_recipe_that_parses(name):
    recipe = ROOT / "recipes" / f"{name}.yaml"
    assert recipe.is_file(), f"add recipes/{name}.yaml"
    text = recipe.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any(
        f"slimbert compress {name} --recipe recipes/{name}.yaml" in line for line in header
    ), "the header comment gives the exact command"
    flags = {
        opt[2:] for param in command(name).params for opt in param.opts if opt.startswith("--")
    }
    keys = set(yaml.safe_load(text))
    assert keys <= flags, f"keys that are not flags of `compress {name}`: {sorted(keys - flags)}"
    # click parses the recipe as the command would (types, choices, required flags)
    context = command(name).make_context(name, ["--recipe", str(recipe)])
    assert context.params["teacher"] and context.params["out"] is not None


def literal_values(node: ast.expr | None, module: ast.Module) -> set[str]:
    """The strings an expression of a test module stands for: a literal, a module-level name
    bound to one, a dict's keys, and list(), sorted(), .items() and .keys() of those."""
    if node is None:
        return set()
    if isinstance(node, ast.Constant):
        return {node.value} if isinstance(node.value, str) else set()
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return set().union(*(literal_values(e, module) for e in node.elts))
    if isinstance(node, ast.Dict):
        return set().union(*(literal_values(k, module) for k in node.keys))
    if isinstance(node, ast.Name):
        bound = [
            a.value
            for a in module.body
            if isinstance(a, ast.Assign)
            and any(getattr(t, "id", None) == node.id for t in a.targets)
        ]
        return set().union(*(literal_values(v, module) for v in bound))
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name) and node.func.id in ("list", "sorted", "tuple"):
            return literal_values(node.args[0], module) if node.args else set()
        if isinstance(node.func, ast.Attribute) and node.func.attr in ("items", "keys"):
            return literal_values(node.func.value, module)
    return set()


def name_values(name: str, function: ast.FunctionDef, module: ast.Module) -> set[str]:
    """What a variable of a test function stands for: its pytest.mark.parametrize values, or
    the iterable of a `for` loop that binds it (the first name of a tuple target)."""
    values: set[str] = set()
    for decorator in function.decorator_list:
        if not (
            isinstance(decorator, ast.Call)
            and getattr(decorator.func, "attr", None) == "parametrize"
            and len(decorator.args) >= 2
        ):
            continue
        names, cases = decorator.args[:2]
        if isinstance(names, ast.Constant):
            names = [n.strip() for n in str(names.value).split(",")]
        else:
            names = [getattr(n, "value", None) for n in getattr(names, "elts", [])]
        if name not in names:
            continue
        if len(names) == 1:
            values |= literal_values(cases, module)
        else:  # one tuple per case: the item at the name's position
            position = names.index(name)
            for case in getattr(cases, "elts", []):
                if isinstance(case, ast.Tuple | ast.List) and len(case.elts) > position:
                    values |= literal_values(case.elts[position], module)
    for loop in ast.walk(function):
        if isinstance(loop, ast.For):
            target = loop.target.elts[0] if isinstance(loop.target, ast.Tuple) else loop.target
            if getattr(target, "id", None) == name:
                values |= literal_values(loop.iter, module)
    return values


def compress_runs(function: ast.FunctionDef, module: ast.Module) -> set[str]:
    """The methods a test or fixture runs as `compress NAME` through the CLI: the item after
    "compress" in an argument list or a list of arguments."""
    found: set[str] = set()
    for node in ast.walk(function):
        items = node.args if isinstance(node, ast.Call) else getattr(node, "elts", None)
        if not isinstance(node, ast.Call | ast.List | ast.Tuple):
            continue
        for first, second in zip(items, items[1:], strict=False):
            if not (isinstance(first, ast.Constant) and first.value == "compress"):
                continue
            if isinstance(second, ast.Name):
                found |= name_values(second.id, function, module)
            else:
                found |= literal_values(second, module)
    return found


def reads_first_losses(function: ast.FunctionDef) -> bool:
    return any(
        isinstance(n, ast.Constant) and n.value == "first_losses" for n in ast.walk(function)
    )


def trained_and_pinned() -> dict[str, list[str]]:
    """method → the tests that train it through `slimbert compress NAME` and read its
    first_losses: in the same function, or in a test that takes the training function as a
    fixture."""
    found: dict[str, list[str]] = {}
    for path in sorted(TESTS.rglob("test_*.py")):
        if path.name == Path(__file__).name:
            continue
        module = ast.parse(path.read_text())
        functions = [f for f in module.body if isinstance(f, ast.FunctionDef)]
        for function in functions:
            readers = [
                f.name
                for f in functions
                if reads_first_losses(f)
                and (f is function or function.name in [a.arg for a in f.args.args])
            ]
            for method in compress_runs(function, module):
                found.setdefault(method, []).extend(f"{path.name}::{r}" for r in readers)
    return {method: sorted(set(tests)) for method, tests in found.items()}


def test_the_training_finder_reads_literals_parameters_and_loops():
    source = textwrap.dedent(
        """
        SIZES = {"alpha": 1, "beta": 2}

        def test_literal():
            invoke("compress", "gamma", "--out", "o")
            meta["first_losses"]

        @pytest.mark.parametrize("method", list(SIZES))
        def test_parametrized(method):
            args = ["compress", method, "--out", "o"]

        def test_looped():
            for name, size in SIZES.items():
                invoke("compress", name)
        """
    )
    module = ast.parse(source)
    literal, parametrized, looped = module.body[1:]
    assert compress_runs(literal, module) == {"gamma"} and reads_first_losses(literal)
    assert compress_runs(parametrized, module) == {"alpha", "beta"}
    assert compress_runs(looped, module) == {"alpha", "beta"}
    assert not reads_first_losses(looped)


def test_every_method_is_trained_by_a_test_that_reads_its_first_losses():
    """Importing a method's module proves nothing; training it through its subcommand and
    reading the losses it starts with is what each method's test must do."""
    found = trained_and_pinned()
    missing = [name for name in METHODS if not found.get(name)]
    assert not missing, (
        f"no test trains {missing} with `slimbert compress NAME` and reads its first_losses; "
        "add one that pins them (tests/test_NAME.py)"
    )


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_config_field_is_a_flag_with_the_dataclass_default(name):
    config = METHODS[name].config
    params = {p.name: p for p in command(name).params}
    for f in dataclasses.fields(config):
        assert f.name in params, f"{config.__name__}.{f.name} has no flag"
        default = params[f.name].default
        expected = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(expected, list | tuple):
            expected = ",".join(map(str, expected))
        assert default == expected, (name, f.name, default, expected)


def test_training_flags_keep_method_defaults():
    """Students trained from scratch default to a higher learning rate; --lr still wins."""
    context = command("textcnn").make_context(
        "textcnn", ["--teacher", "t", "--out", "o", "--train", "a", "--eval", "b"]
    )
    assert context.params["lr"] == 1e-3
    context = command("kd").make_context(
        "kd", ["--teacher", "t", "--out", "o", "--train", "a", "--eval", "b"]
    )
    assert context.params["lr"] == 5e-5


# ---------------------------------------------------------------------------------------------
# A toy method put into the registry (a monkeypatch): usable everywhere a method is.


@dataclass
class ToyConfig:
    layers: int = setting(1, "Student depth.", min=1)
    weight: float = setting(1.0, "Weight of the hard loss.", min=0, min_open=True)


def toy_run(job: Job, toy: ToyConfig) -> tuple[TrainResult, ModelRecord]:
    opening = open_job(job)
    teacher = opening.teacher.layers
    picked = pick_layers(teacher.config.num_hidden_layers, toy.layers)
    student, _ = build_student(teacher, StudentShape(toy.layers), picked, seed=job.train.seed)
    terms = [LossTerm("hard", toy.weight, hard_loss)]
    result = train(
        student,
        train_loader(opening.data.train_set, job.train),
        lambda model, batch: combine(terms, forward(model, batch), None, batch),
        evaluator(opening.data),
        job.train,
        description="toy",
    )
    record = student_record("toy", job, opening, toy, result, layer_map=picked)
    return result, save_model(student, opening.teacher.tokenizer, job.out, record)


TOY = Method(name="toy", config=ToyConfig, run=toy_run, summary="A toy: hard labels only.")


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(METHODS, "toy", TOY)
    return TOY


def test_a_registered_method_is_a_subcommand_with_its_settings(toy):
    runner = CliRunner()
    listing = runner.invoke(cli, ["compress", "--help"])
    assert "toy" in listing.output and "A toy: hard labels only." in listing.output
    result = runner.invoke(cli, ["compress", "toy", "--help"])
    assert result.exit_code == 0
    assert "--weight FLOAT RANGE" in result.output and "Weight of the hard loss." in result.output
    args = ["--weight", "0", "--teacher", "t", "--out", "o", "--train", "a", "--eval", "b"]
    bad = runner.invoke(cli, ["compress", "toy", *args])
    assert bad.exit_code == 2 and "0.0 is not in the range x>0" in bad.output


def test_a_registered_method_trains_from_the_cli_and_a_recipe(
    toy, tiny_teacher, sst2_files, tmp_path
):
    train_file, dev_file = sst2_files
    recipe = tmp_path / "toy.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "teacher": str(tiny_teacher),
                "train": str(train_file),
                "eval": str(dev_file),
                "weight": 0.5,
                "layers": 2,
                "max-steps": 2,
                "progress": False,
                "seed": 3,
            }
        )
    )
    out = tmp_path / "toy-student"
    result = CliRunner().invoke(
        cli, ["compress", "toy", "--recipe", str(recipe), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "slimbert.json").read_text())
    assert meta["method"] == "toy" and meta["method_config"] == {"layers": 2, "weight": 0.5}
    assert meta["steps"] == 2 and meta["train_config"]["seed"] == 3
    assert meta["layer_map"] == [1, 3]
    bad = tmp_path / "bad.yaml"
    bad.write_text("weight: 0.5\nwieght: 2\n")
    result = CliRunner().invoke(cli, ["compress", "toy", "--recipe", str(bad)])
    assert result.exit_code == 2 and "unknown key 'wieght'" in result.output


def test_a_registered_method_teaches_an_experiment_s_students(
    toy, tiny_teacher, sst2_files, tmp_path
):
    """`distil: {method: toy}` in an experiment recipe runs the toy's own run() for every
    student; the teacher and latency cells are stand-ins so only the students train."""
    import shutil

    from slimbert.experiment.cells import run_experiment
    from slimbert.experiment.stages import Stages

    def teacher_stage(base, spec, out, config, save_route=0):
        shutil.copytree(tiny_teacher, out)
        return {
            "dir": str(out),
            "metric": {"accuracy": 50.0, "f1": 50.0},
            "metric_name": "f1",
            "best_step": 1,
            "steps": 1,
        }

    def bench_stage(model, eval_path, out, columns, settings):
        row = {
            "method": "toy",
            "model": model.name,
            "runtime": "pytorch",
            "provider": "cpu",
            "batch_size": 1,
            "requests": 1,
            "total_ms": 1.0,
            "avg_ms": 1.0,
            "p50_ms": 1.0,
            "p90_ms": 1.0,
            "p99_ms": 1.0,
            "qps": 1000.0,
            "metric_name": "f1",
            "metric": 0.0,
        }
        return {"row": row, "environment": {"cpu": "test", "cores": 1, "threads": 1}}

    train_file, dev_file = sst2_files
    recipe = tmp_path / "experiment.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "train": str(train_file),
                "eval": str(dev_file),
                "out": str(tmp_path / "exp"),
                "methods": ["TS"],
                "depths": [2, 1],
                "seeds": [5],
                "student": {"max_steps": 2, "progress": False},
                "distil": {"method": "toy", "weight": 0.25},
            }
        )
    )
    stages = Stages(train_teacher=teacher_stage, bench=bench_stage)
    experiment = run_experiment(recipe, stages=stages, echo=lambda line: None)
    for depth in (2, 1):
        student = experiment.out / "models" / "students" / f"student-ts-{depth}L-seed5"
        meta = json.loads((student / "slimbert.json").read_text())
        assert meta["method"] == "toy"
        assert meta["method_config"] == {"layers": depth, "weight": 0.25}
        assert meta["train_config"]["seed"] == 5 and meta["steps"] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe.read_text().replace("weight: 0.25", "wieght: 0.25"))
    with pytest.raises(SlimbertError, match="recipe key 'distil.wieght' is unknown"):
        run_experiment(bad, stages=stages, echo=lambda line: None)
