"""The method registry drives the CLI, recipes and experiments: every registered method has a
subcommand made from its settings, an example recipe that parses into that command's flags
with the exact command in its header, and a test file that imports its module. A toy method
registered here (its module is this file, its registry line a monkeypatch) is usable from
`slimbert compress`, a recipe and `slimbert experiment` without touching any other file."""

from __future__ import annotations

import dataclasses
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from slimbert.batches import evaluator
from slimbert.cli import cli
from slimbert.cli.compress import compress
from slimbert.compress.method import Job, Method, open_job, student_record
from slimbert.compress.registry import METHODS, get_method
from slimbert.compress.students import StudentShape, build_student, pick_layers
from slimbert.errors import SlimbertError
from slimbert.models import save_model
from slimbert.settings import setting
from slimbert.training.config import TrainResult, train_loader
from slimbert.training.loop import train
from slimbert.training.losses import LossTerm, combine, hard_loss
from slimbert.training.outputs import forward

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


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


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_module_is_imported_by_a_test(name):
    module = METHODS[name].run.__module__  # e.g. slimbert.compress.tinybert
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
# A toy method: one module (this one) and one registry line (the monkeypatch).


@dataclass
class ToyConfig:
    layers: int = setting(1, "Student depth.", min=1)
    weight: float = setting(1.0, "Weight of the hard loss.", min=0, min_open=True)


def toy_run(job: Job, toy: ToyConfig) -> tuple[TrainResult, dict]:
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
    metadata = {**student_record("toy", job, opening, toy, result), "layer_map": picked}
    save_model(student, opening.teacher.tokenizer, job.out, metadata)
    return result, metadata


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
