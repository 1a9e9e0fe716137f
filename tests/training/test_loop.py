"""The training loop: which checkpoint is kept (the chosen metric, degenerate checkpoints
flagged and passed over within the tie margin), and --metric end to end."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.utils.data import DataLoader

from slimbert.cli import cli
from slimbert.compress.registry import METHODS
from slimbert.errors import SlimbertError
from slimbert.metrics import Metrics
from slimbert.training.config import TrainConfig, better, training_record
from slimbert.training.loop import train
from tests.cli.test_cli_help import UNLABELLED, flags, training_commands


def score(main: float, degenerate: str | None = None) -> Metrics:
    return Metrics(main, {"f1": main}, "f1", degenerate)


def test_higher_wins_between_two_ordinary_checkpoints():
    assert better(score(80.0), score(79.9), 0.5)
    assert not better(score(79.9), score(80.0), 0.5)
    assert better(score(1.0), None, 0.5)


def test_a_degenerate_checkpoint_must_beat_the_best_by_more_than_the_margin():
    majority = score(81.2, "predicts only 1")
    assert not better(majority, score(80.8), 0.5)  # within the margin: the real model stays
    assert better(majority, score(80.0), 0.5)  # 1.2 points ahead: it wins, flagged
    assert better(score(80.8), majority, 0.5)  # a real model within the margin replaces it
    assert not better(score(80.6), majority, 0.5)
    assert better(score(81.3, "predicts only 0"), majority, 0.5)  # both degenerate: plain max


class Scripted:
    """An evaluator that returns the given figures in turn, and the steps it was called at."""

    def __init__(self, figures: list[Metrics]):
        self.figures, self.calls = list(figures), 0

    def __call__(self, model) -> Metrics:
        self.calls += 1
        return self.figures[self.calls - 1]


def test_the_loop_keeps_the_real_checkpoint_over_a_majority_class_one_and_records_both():
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    loader = DataLoader([{"x": torch.randn(2)} for _ in range(8)], batch_size=2)

    def step(m, batch):
        loss = m(batch["x"]).pow(2).mean()
        return loss, {"l2": float(loss.detach())}

    evaluate = Scripted([score(70.0), score(80.8), score(81.2, "predicts only 1"), score(75.0)])
    config = TrainConfig(max_steps=4, eval_every=1, patience=0, progress=False, lr=1e-2)
    result = train(model, loader, step, evaluate, config)
    assert result.best_step == 2 and result.best.main == 80.8
    assert [row.get("degenerate") for row in result.history] == [
        None,
        None,
        "predicts only 1",
        None,
    ]
    assert [row["improved"] for row in result.history] == [True, True, False, False]

    evaluate = Scripted([score(70.0), score(81.2, "predicts only 1"), score(80.0), score(75.0)])
    result = train(nn.Linear(2, 2), loader, step, evaluate, config)
    assert result.best_step == 2 and result.best.degenerate == "predicts only 1"


def test_metric_mcc_trains_selects_and_records_mcc(tiny_base, sst2_files, tmp_path):
    train_file, dev_file = sst2_files
    out = tmp_path / "teacher"
    args = [
        "train-teacher",
        "--base",
        str(tiny_base),
        "--train",
        str(train_file),
        "--eval",
        str(dev_file),
        "--out",
        str(out),
        "--metric",
        "mcc",
        "--max-steps",
        "2",
        "--eval-every",
        "1",
        "--no-progress",
        "--seed",
        "0",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "slimbert.json").read_text())
    assert meta["metric_name"] == "mcc" and meta["data"]["metric"] == "mcc"
    assert set(meta["metric"]) == {"accuracy", "f1", "macro-f1", "mcc"}
    best = max(meta["history"], key=lambda row: row["mcc"])
    assert meta["best_step"] == best["step"] or best.get("degenerate")
    assert "degenerate" in meta  # flagged (or None) in slimbert.json either way


def test_a_metric_of_the_wrong_kind_is_one_line(tiny_base, sst2_files, tmp_path):
    train_file, dev_file = sst2_files
    args = [
        "train-teacher",
        "--base",
        str(tiny_base),
        "--train",
        str(train_file),
        "--eval",
        str(dev_file),
        "--out",
        str(tmp_path / "t"),
        "--metric",
        "pearson",
        "--max-steps",
        "1",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "--metric pearson: a classification task is scored by accuracy, f1" in result.output
    assert not (tmp_path / "t").exists()


def test_training_record_says_whether_the_kept_checkpoint_is_degenerate():
    from slimbert.training.config import TrainResult

    class Data:
        def describe(self):
            return {"task": "classification"}

    kept = TrainResult(best=score(81.2, "predicts only 1"), best_step=3, steps=4)
    record = training_record(kept, TrainConfig(), Data())
    assert record["degenerate"] == "predicts only 1" and record["metric"] == {"f1": 81.2}


def test_every_command_that_trains_on_labels_takes_the_scoring_flags():
    """Walks the whole click tree: a new training command without the flags fails here."""
    trained = training_commands()
    # train-teacher, professor boost and every compress method, beside the unlabelled two
    assert {"train-teacher", "professor boost", "compress kd"} | UNLABELLED <= set(trained)
    assert len(trained) >= 2 + len(METHODS) + len(UNLABELLED)
    scoring = {"--metric", "--positive-label", "--tie-margin"}
    for name, command in trained.items():
        if name in UNLABELLED:  # they keep the checkpoint with the lowest held-out loss
            assert not {"--metric", "--positive-label"} & flags(command), name
        else:
            assert scoring <= flags(command), (name, scoring - flags(command))
        result = CliRunner().invoke(cli, [*name.split(), "--help"])
        assert ("--metric" in result.output) == (name not in UNLABELLED), name


def test_auto_precision_is_bf16_only_where_the_hardware_computes_it(monkeypatch):
    from slimbert.training import precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    assert precision.resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    assert precision.resolve_precision("auto", cpu) == "no"
    with pytest.warns(UserWarning, match="bf16 is emulated"):  # kept, but the user is told
        assert precision.resolve_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert precision.resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(SlimbertError, match="fp16 needs a GPU"):
        precision.autocast_for("fp16", cpu)


# ---------------------------------------------------------------------------------------------
# --device: CUDA, MPS or XPU when present; a requested device that is absent is an error.


@pytest.fixture
def present(monkeypatch):
    """Declare which accelerators this machine has, whatever it really has."""
    from slimbert import models

    def declare(*kinds: str) -> None:
        monkeypatch.setattr(models.torch.cuda, "is_available", lambda: "cuda" in kinds)
        monkeypatch.setattr(models.torch.backends.mps, "is_available", lambda: "mps" in kinds)
        if hasattr(torch, "xpu"):
            monkeypatch.setattr(models.torch.xpu, "is_available", lambda: "xpu" in kinds)
        else:
            monkeypatch.setattr(models.torch, "xpu", SimpleXpu(kinds), raising=False)

    return declare


class SimpleXpu:
    def __init__(self, kinds):
        self.kinds = kinds

    def is_available(self) -> bool:
        return "xpu" in self.kinds


@pytest.mark.parametrize(
    ("kinds", "picked"),
    [
        ((), "cpu"),
        (("cuda",), "cuda"),
        (("mps",), "mps"),
        (("xpu",), "xpu"),
        (("cuda", "xpu"), "cuda"),
    ],
)
def test_auto_picks_the_accelerator_that_is_present(present, kinds, picked):
    from slimbert.models import device

    present(*kinds)
    assert device("auto") == torch.device(picked)
    assert device("cpu") == torch.device("cpu")  # the CPU can always be forced


@pytest.mark.parametrize("kind", ["cuda", "mps", "xpu"])
def test_a_requested_device_that_is_absent_is_one_line_never_the_cpu(present, kind):
    from slimbert.models import device

    present()
    with pytest.raises(SlimbertError, match=rf"^--device {kind}: no {kind.upper()} device is "
                       r"available to this torch build \(available: cpu\); pick one of those "
                       r"or --device auto$"):  # fmt: skip
        device(kind)
    present(kind)
    assert device(kind) == torch.device(kind)


def test_training_forced_onto_an_absent_device_stops_before_writing(
    present, tiny_base, sst2_files, tmp_path
):
    present()
    train_file, dev_file = sst2_files
    out = tmp_path / "t"
    args = ["train-teacher", "--base", tiny_base, "--train", train_file, "--eval", dev_file,
            "--out", out, "--max-steps", "1", "--device", "mps"]  # fmt: skip
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 1
    assert "Error: --device mps: no MPS device is available" in result.output
    assert not (out / "slimbert.json").exists()


def test_the_loop_never_trains_silently_elsewhere_than_the_device_picked(present):
    """Where slimbert's pick and Accelerate's placement disagree (here: MPS declared present,
    Accelerate finding none), the loop stops with one line instead of training on the CPU."""
    from slimbert.training.tracking import make_accelerator

    present("mps")
    with pytest.raises(SlimbertError, match="--device auto: Accelerate placed training on cpu"):
        make_accelerator(TrainConfig(), None)
    present()
    assert make_accelerator(TrainConfig(device="cpu"), None).device.type == "cpu"
