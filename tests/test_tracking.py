"""What a training run records: train_log.jsonl always (each loss term, lr, examples/s, eval
figures), an Accelerate tracker with --report-to (TensorBoard read back from its event file),
a one-line error naming the extra when the tracker is not installed; and --grad-accum."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.utils.data import DataLoader

from slimbert.cli import cli
from slimbert.metrics import Metrics
from slimbert.training.loop import TrainConfig, planned_steps, train


def kd_args(teacher, train_file, dev_file, out, *extra) -> list[str]:
    args = ["compress", "kd", "--teacher", teacher, "--layers", "1", "--max-steps", "4",
            "--eval-every", "2", "--batch-size", "8", "--train", train_file, "--eval", dev_file,
            "--out", out, "--seed", "0", "--no-progress", *extra]  # fmt: skip
    return [str(a) for a in args]


def test_every_step_is_logged_with_each_loss_term_lr_speed_and_eval(
    tiny_teacher, sst2_files, tmp_path
):
    out = tmp_path / "kd"
    result = CliRunner().invoke(cli, kd_args(tiny_teacher, *sst2_files, out))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "train_log.jsonl").open()]
    meta = json.loads((out / "slimbert.json").read_text())
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and {r["stage"] for r in rows} == {"kd-1L"}
    assert [r["epoch"] for r in rows] == [0.125, 0.25, 0.375, 0.5]  # 8 batches an epoch
    for row, first in zip(rows, meta["first_losses"], strict=False):
        assert row["loss"] == pytest.approx(first["loss"], abs=1e-7)
        assert row["loss/soft"] == pytest.approx(first["soft"], abs=1e-7)
        assert row["loss/hard"] == pytest.approx(first["hard"], abs=1e-7)
        assert row["loss"] == pytest.approx(0.5 * row["loss/soft"] + 0.5 * row["loss/hard"])
    # linear warm-up over 10% of 4 steps (0 steps), then linear decay from 5e-5
    assert [r["lr"] for r in rows] == pytest.approx([5e-5, 3.75e-5, 2.5e-5, 1.25e-5])
    assert all(r["examples_per_s"] > 0 for r in rows)
    evaluated = [r for r in rows if "eval/f1" in r]
    assert [r["step"] for r in evaluated] == [2, 4]
    assert [r["eval/f1"] for r in evaluated] == [h["f1"] for h in meta["history"]]
    assert not (out / "training-state").exists() and not (out / "tracking").exists()


def test_tensorboard_gets_the_same_figures(tiny_teacher, sst2_files, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "kd"
    args = kd_args(tiny_teacher, *sst2_files, out, "--report-to", "tensorboard")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    runs = sorted((out / "tracking").iterdir())
    assert [r.name for r in runs] == ["kd-1L"]  # one run per stage, kept in the artifact
    events = EventAccumulator(str(runs[0]))
    events.Reload()
    rows = [json.loads(line) for line in (out / "train_log.jsonl").open()]
    losses = events.Scalars("loss")
    assert [e.step for e in losses] == [1, 2, 3, 4]
    assert [e.value for e in losses] == pytest.approx([r["loss"] for r in rows], abs=1e-6)
    assert [e.value for e in events.Scalars("loss/soft")] == pytest.approx(
        [r["loss/soft"] for r in rows], abs=1e-6
    )
    f1 = events.Scalars("eval/f1")
    assert [(e.step, round(e.value, 4)) for e in f1] == [
        (r["step"], round(r["eval/f1"], 4)) for r in rows if "eval/f1" in r
    ]


@pytest.mark.parametrize("tracker", ["tensorboard", "mlflow", "wandb"])
def test_a_missing_tracker_is_one_line_naming_the_extra(
    tracker, tiny_teacher, sst2_files, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, tracker, None)  # find_spec answers "not installed"
    out = tmp_path / "kd"
    args = kd_args(tiny_teacher, *sst2_files, out, "--report-to", tracker)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: --report-to {tracker}: the {tracker} package is not installed; "
        f"pip install 'slimbert[{tracker}]' (or --report-to none)"
    )
    assert not (out / "slimbert.json").exists()


def test_the_tracker_extras_are_declared():
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    for tracker in ("tensorboard", "mlflow", "wandb"):
        assert any(req.startswith(tracker) for req in extras[tracker]), tracker


# ---------------------------------------------------------------------------------------------
# --grad-accum


def rows(n: int = 20) -> list[dict]:
    return [
        {"x": torch.randn(4, generator=torch.Generator().manual_seed(i)), "y": torch.tensor(i % 3)}
        for i in range(n)
    ]


def shuffled(batch_size: int) -> DataLoader:
    """The same permutation whatever the batch size: batches of 8 are pairs of batches of 4."""
    return DataLoader(rows(), batch_size, shuffle=True, generator=torch.Generator().manual_seed(1))


def step(model, batch):
    loss = nn.functional.cross_entropy(model(batch["x"]), batch["y"])
    return loss, {"ce": float(loss.detach())}


def constant(model) -> Metrics:
    return Metrics(0.0, {"zero": 0.0}, "zero")


def linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))  # no dropout


def gap(a: nn.Module, b: nn.Module) -> float:
    """The largest weight difference between two models of one shape."""
    first, second = a.state_dict(), b.state_dict()
    return max(float((first[k] - second[k]).abs().max()) for k in first)


def test_two_accumulated_batches_of_4_step_like_one_batch_of_8():
    settings = dict(epochs=3, eval_every=0, patience=0, progress=False, lr=5e-2)
    big, small = linear(), linear()
    one = train(big, shuffled(8), step, constant, TrainConfig(batch_size=8, **settings))
    two = train(
        small, shuffled(4), step, constant, TrainConfig(batch_size=4, grad_accum=2, **settings)
    )
    # 20 rows: 8 + 8 + 4 a pass, against (4 + 4) + (4 + 4) + 4 — the short step is averaged
    # over its own single batch, as the batch of 4 at the end of the pass is
    assert one.steps == two.steps == 9 == planned_steps(TrainConfig(grad_accum=2, epochs=3), 5)
    assert [r["loss"] for r in two.losses] == pytest.approx([r["loss"] for r in one.losses], 1e-5)
    assert gap(big, small) <= 1e-5
    assert gap(big, linear()) > 1e-2  # it trained: the match is not two untouched models


def test_without_accumulation_a_batch_of_4_differs():
    settings = dict(epochs=3, eval_every=0, patience=0, progress=False, lr=5e-2)
    big, small = linear(), linear()
    train(big, shuffled(8), step, constant, TrainConfig(batch_size=8, **settings))
    train(small, shuffled(4), step, constant, TrainConfig(batch_size=4, **settings))
    assert gap(big, small) > 1e-3
