"""Route-constrained distillation: the teacher keeps K checkpoints, students walk them in order."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner
from conftest import build_bert
from safetensors.torch import load_file

from slimbert.cli import cli
from slimbert.errors import SlimbertError
from slimbert.metrics import Metrics
from slimbert.training.config import TrainConfig, planned_steps
from slimbert.training.loop import train
from slimbert.training.route import plan, route_checkpoints, route_steps, split_budget

FLAGS = [
    "--max-length",
    "32",
    "--batch-size",
    "8",
    "--no-progress",
    "--seed",
    "0",
    "--patience",
    "0",
]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from two threads, and lose much on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_route_steps_are_evenly_spaced_and_before_the_end():
    assert route_steps(100, 3) == [25, 50, 75]
    assert route_steps(10, 4) == [2, 4, 6, 8]
    assert route_steps(6, 2) == [2, 4]
    assert route_steps(6, 0) == []
    with pytest.raises(SlimbertError, match="keep at most 4 checkpoints"):
        route_steps(5, 5)


def test_budget_split_and_plan(tmp_path):
    assert split_budget(7, 3) == [2, 2, 3]
    assert split_budget(9, 3) == [3, 3, 3]
    with pytest.raises(SlimbertError, match="at least 3 steps"):
        split_budget(2, 3)
    route = tmp_path / "teacher" / "route"
    for step in (10, 9, 100):  # numeric order, not string order
        (route / f"step-{step}").mkdir(parents=True)
        (route / f"step-{step}" / "config.json").write_text("{}")
    (route / "notes").mkdir()
    assert [p.name for p in route_checkpoints(route)] == ["step-9", "step-10", "step-100"]
    assert route_checkpoints(tmp_path / "teacher") == route_checkpoints(
        route
    )  # the teacher dir works too
    config = TrainConfig(epochs=2.0, patience=3)
    stages = plan(route, tmp_path / "teacher", config, steps_per_epoch=5)  # 10 steps over 4 stages
    assert [s.name for s in stages] == [
        "route/step-9",
        "route/step-10",
        "route/step-100",
        "teacher",
    ]
    assert [s.config.max_steps for s in stages] == [2, 2, 2, 4]
    assert [s.config.patience for s in stages] == [0, 0, 0, 3] and [s.final for s in stages] == [
        False,
        False,
        False,
        True,
    ]
    assert plan(None, tmp_path / "teacher", config, 5) == [
        dataclasses.replace(stages[-1], config=config)
    ]
    with pytest.raises(SlimbertError, match="no step-N checkpoints"):
        route_checkpoints(tmp_path / "teacher" / "route" / "notes")


def test_trainer_calls_on_step_and_honours_extra_learning_rates():
    """on_step sees every step with the planned total; an extra module at lr 0 never moves."""
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    model, extra = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    frozen = {k: v.clone() for k, v in extra.state_dict().items()}
    before = model.weight.detach().clone()
    loader = DataLoader([torch.randn(3) for _ in range(8)], batch_size=2)

    def step(m, batch):
        loss = (m(batch) ** 2).mean() + (extra(batch) ** 2).mean()
        return loss, {}

    calls = []
    config = TrainConfig(max_steps=5, progress=False, patience=0)
    train(
        model,
        loader,
        step,
        lambda m: Metrics(0.0, {"f1": 0.0}, "f1"),
        config,
        extra_modules=[extra],
        extra_lrs=[0.0],
        on_step=lambda s, total, m: calls.append((s, total, m is model)),
    )
    assert calls == [(s, 5, True) for s in range(1, 6)]
    assert not torch.equal(model.weight, before)
    assert all(torch.equal(extra.state_dict()[k], v) for k, v in frozen.items())
    assert (
        planned_steps(TrainConfig(epochs=1.5), 4) == 6
        and planned_steps(TrainConfig(max_steps=3), 4) == 3
    )


def test_mixed_precision_trains_in_bf16_but_evaluates_and_returns_fp32():
    """Under bf16 autocast the step's matmuls run in bf16; evaluation and the returned model do
    not."""
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
    seen: list[tuple[str, torch.dtype]] = []
    phase = ["step"]
    model[0].register_forward_hook(
        lambda module, inputs, output: seen.append((phase[0], output.dtype))
    )
    loader = DataLoader([torch.randn(8) for _ in range(8)], batch_size=4)

    def step(m, batch):
        phase[0] = "step"
        return (m(batch) ** 2).mean(), {}

    def evaluate(m):
        phase[0] = "eval"
        m(torch.randn(4, 8))
        return Metrics(0.0, {"f1": 0.0}, "f1")

    train(
        model,
        loader,
        step,
        evaluate,
        TrainConfig(
            max_steps=2, eval_every=1, progress=False, patience=0, mixed_precision="bf16", lr=1e-3
        ),
    )
    assert seen == [("step", torch.bfloat16), ("eval", torch.float32)] * 2
    phase[0] = "after"
    model(torch.randn(1, 8))
    assert seen[-1] == ("after", torch.float32) and "_original_forward" not in model.__dict__
    train(
        model, loader, step, evaluate, TrainConfig(max_steps=1, progress=False, patience=0, lr=1e-3)
    )  # another precision, same process
    assert seen[-2:] == [("step", torch.float32), ("eval", torch.float32)]


@pytest.fixture(scope="module")
def routed_teacher(tmp_path_factory, tiny_base, sst2_files):
    """6 steps of teacher training keeping 2 checkpoints: steps 2 and 4."""
    root = tmp_path_factory.mktemp("routed")
    train_file, dev = sst2_files
    result = invoke(
        "train-teacher",
        "--base",
        tiny_base,
        "--train",
        train_file,
        "--eval",
        dev,
        "--out",
        root / "teacher",
        "--max-steps",
        6,
        "--lr",
        "1e-3",
        "--save-route",
        2,
        *FLAGS,
    )
    assert result.exit_code == 0, result.output
    return root / "teacher"


def test_save_route_keeps_k_loadable_checkpoints(routed_teacher):
    from slimbert.models import load_model_dir

    route = routed_teacher / "route"
    assert sorted(p.name for p in route.iterdir()) == ["step-2", "step-4"]
    meta = json.loads((routed_teacher / "slimbert.json").read_text())
    assert meta["schema_version"] == 1  # written through slimbert.record
    assert meta["route"] == ["route/step-2", "route/step-4"] and meta["steps"] == 6
    weights = [
        load_file(str(d / "model.safetensors"))["classifier.weight"]
        for d in (route / "step-2", route / "step-4", routed_teacher)
    ]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    for step in (2, 4):
        model, _, checkpoint_meta = load_model_dir(route / f"step-{step}")
        assert (
            checkpoint_meta.role == "route"
            and checkpoint_meta.step == step
            and checkpoint_meta.total_steps == 6
        )
        assert model.config.id2label == {0: "0", 1: "1"}
    leftovers = [p.name for p in routed_teacher.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_kd_walks_the_route_in_order_before_the_teacher(
    routed_teacher, sst2_files, tmp_path, monkeypatch
):
    from slimbert.training import route

    seen = []
    original = route.route_logits

    def spy(stage, *args, **kwargs):
        seen.append(str(stage.teacher_dir))
        return original(stage, *args, **kwargs)

    # soft_targets reads route_logits at call time; the teacher's own logits are kd's cached
    # pass, not a route stage's (spying on teacher_logits itself would also catch that pass
    # whenever kd is first imported after the patch, as the lazy CLI does in a fresh process)
    monkeypatch.setattr(route, "route_logits", spy)
    train_file, dev = sst2_files
    result = invoke(
        "compress",
        "kd",
        "--teacher",
        routed_teacher,
        "--teacher-route",
        routed_teacher / "route",
        "--train",
        train_file,
        "--eval",
        dev,
        "--out",
        tmp_path / "kd",
        "--layers",
        1,
        "--max-steps",
        7,
        *FLAGS,
    )
    assert result.exit_code == 0, result.output
    assert seen == [
        str(routed_teacher / "route" / "step-2"),
        str(routed_teacher / "route" / "step-4"),
    ]
    meta = json.loads((tmp_path / "kd" / "slimbert.json").read_text())
    stages = meta["route"]
    assert [s["stage"] for s in stages] == ["route/step-2", "route/step-4", "teacher"]
    assert [s["steps"] for s in stages] == [2, 2, 3] and meta["steps"] == 7
    assert meta["first_losses"][:2] == stages[0]["first_losses"][:2]
    # each stage's soft targets are its own checkpoint's: the soft term jumps between stages
    first_soft = [s["first_losses"][0]["soft"] for s in stages]
    assert len({round(v, 6) for v in first_soft}) == 3


def test_students_without_attention_take_the_route_too(routed_teacher, sst2_files, tmp_path):
    train_file, dev = sst2_files
    result = invoke(
        "compress",
        "tree",
        "--teacher",
        routed_teacher,
        "--teacher-route",
        routed_teacher,
        "--train",
        train_file,
        "--eval",
        dev,
        "--out",
        tmp_path / "tree",
        "--embedding-dim",
        8,
        "--depth",
        2,
        "--max-steps",
        6,
        *FLAGS,
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "tree" / "slimbert.json").read_text())
    assert [(s["stage"], s["steps"]) for s in meta["route"]] == [
        ("route/step-2", 2),
        ("route/step-4", 2),
        ("teacher", 2),
    ]
    assert meta["teaching"]["teacher_route"] == str(routed_teacher)


@pytest.mark.parametrize(
    ("method", "flags"),
    [
        ("tinybert", ["--layers", "2", "--intermediate-epochs", "0.5", "--max-steps", "6"]),
        (
            "minilm",
            [
                "--layers",
                "2",
                "--relation-heads",
                "4",
                "--relation-epochs",
                "0.5",
                "--max-steps",
                "6",
            ],
        ),
    ],
)
def test_layer_methods_walk_the_route_in_their_prediction_stage(
    method, flags, routed_teacher, sst2_files, tmp_path
):
    train_file, dev = sst2_files
    result = invoke(
        "compress",
        method,
        "--teacher",
        routed_teacher,
        "--teacher-route",
        routed_teacher,
        "--train",
        train_file,
        "--eval",
        dev,
        "--out",
        tmp_path / method,
        *flags,
        *FLAGS,
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / method / "slimbert.json").read_text())
    assert [(s["stage"], s["steps"]) for s in meta["route"]] == [
        ("route/step-2", 2),
        ("route/step-4", 2),
        ("teacher", 2),
    ]
    assert [s["teacher"] for s in meta["route"]] == [
        str(routed_teacher / "route" / "step-2"),
        str(routed_teacher / "route" / "step-4"),
        str(routed_teacher),
    ]
    assert meta["stages"]["prediction"]["steps"] == 2  # the stage record is the final teacher's


def test_route_errors_are_one_line(routed_teacher, tiny_teacher, sst2_files, tmp_path):
    train_file, dev = sst2_files
    common = [
        "--train",
        str(train_file),
        "--eval",
        str(dev),
        "--out",
        str(tmp_path / "out"),
        *FLAGS,
    ]
    result = CliRunner().invoke(
        cli,
        [
            "compress",
            "kd",
            "--teacher",
            str(tiny_teacher),
            "--teacher-route",
            str(tiny_teacher),
            "--layers",
            "1",
            *common,
        ],
    )
    assert (
        result.exit_code != 0
        and "no step-N checkpoints" in result.output
        and "Traceback" not in result.output
    )
    result = CliRunner().invoke(
        cli,
        [
            "compress",
            "textcnn",
            "--teacher",
            str(routed_teacher),
            "--teacher-route",
            str(routed_teacher),
            "--alpha",
            "0",
            "--embedding-dim",
            "8",
            *common,
        ],
    )
    assert result.exit_code != 0 and "--teacher-route would do nothing" in result.output
    three = build_bert(
        tmp_path / "three-labels", num_labels=3
    )  # another run's teacher: its route does not fit
    result = CliRunner().invoke(
        cli,
        [
            "compress",
            "kd",
            "--teacher",
            str(three),
            "--teacher-route",
            str(routed_teacher),
            "--layers",
            "1",
            *common,
        ],
    )
    assert (
        result.exit_code != 0
        and "give the route saved by the same train-teacher run" in result.output
    )
    result = CliRunner().invoke(
        cli,
        [
            "train-teacher",
            "--base",
            str(tiny_teacher),
            "--save-route",
            "9",
            "--max-steps",
            "4",
            *common,
        ],
    )
    assert result.exit_code != 0 and "keep at most 3 checkpoints" in result.output
    assert not (tmp_path / "out").exists()
