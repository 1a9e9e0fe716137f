"""What a training run records: train_log.jsonl always (each loss term, lr, examples/s, eval
figures), an Accelerate tracker with --report-to (TensorBoard, MLflow and offline W&B, each read
back from what it stored), a one-line error naming the extra when the tracker is not installed;
and --grad-accum."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.utils.data import DataLoader

from slimbert.cli import cli
from slimbert.metrics import Metrics
from slimbert.training.config import TrainConfig, planned_steps
from slimbert.training.loop import train


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
    losses = events.Scalars("loss/total")  # trackers get the total as loss/total
    assert [e.step for e in losses] == [1, 2, 3, 4]
    assert [e.value for e in losses] == pytest.approx([r["loss"] for r in rows], abs=1e-6)
    assert [e.value for e in events.Scalars("loss/soft")] == pytest.approx(
        [r["loss/soft"] for r in rows], abs=1e-6
    )
    f1 = events.Scalars("eval/f1")
    assert [(e.step, round(e.value, 4)) for e in f1] == [
        (r["step"], round(r["eval/f1"], 4)) for r in rows if "eval/f1" in r
    ]


def train_reporting_to(tracker: str, teacher, files, tmp_path) -> Path:
    """The output folder of the tiny kd run (4 steps, eval at 2 and 4) with --report-to."""
    out = tmp_path / "kd"
    result = CliRunner().invoke(cli, kd_args(teacher, *files, out, "--report-to", tracker))
    assert result.exit_code == 0, result.output
    return out


def series(out: Path) -> dict[str, list[tuple[int, float]]]:
    """Each figure train_log.jsonl holds as (step, value) pairs: what a tracker should hold
    (the total loss, "loss" in the log, as "loss/total")."""
    figures: dict[str, list[tuple[int, float]]] = {}
    for line in (out / "train_log.jsonl").open():
        row = json.loads(line)
        for key, value in row.items():
            if key not in ("stage", "step", "epoch"):
                name = "loss/total" if key == "loss" else key
                figures.setdefault(name, []).append((row["step"], float(value)))
    return figures


def test_mlflow_gets_every_figure_at_every_step(tiny_teacher, sst2_files, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")  # mlflow-skinny's sqlite store needs it and alembic
    from mlflow import MlflowClient

    # sqlite, not file://: MLflow 3 refuses a file store unless told (the test below tells it)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = train_reporting_to("mlflow", tiny_teacher, sst2_files, tmp_path)
    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("slimbert").experiment_id])
    assert (run.info.run_name, run.info.status) == ("kd/kd-1L", "FINISHED")
    assert run.data.params["report_to"] == "mlflow" and run.data.params["max_steps"] == "4"
    recorded = {
        key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        for key in run.data.metrics
    }
    assert [step for step, _ in recorded["loss/total"]] == [1, 2, 3, 4]
    assert [step for step, _ in recorded["eval/f1"]] == [2, 4]
    assert recorded == series(out)  # the same Python floats went to both


# a file store keeps each metric as a file: "loss/soft" beside a metric "loss" would need
# metrics/loss to be a file and a folder (NotADirectoryError), hence "loss/total"
def test_mlflow_file_store_takes_loss_beside_its_terms(
    tiny_teacher, sst2_files, tmp_path, monkeypatch
):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    uri = f"file://{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 2's default store
    out = train_reporting_to("mlflow", tiny_teacher, sst2_files, tmp_path)
    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("slimbert").experiment_id])
    assert {"loss/total", "loss/soft", "loss/hard"} <= set(run.data.metrics)
    assert run.data.metrics["loss/total"] == series(out)["loss/total"][-1][1]


def test_a_tracker_that_cannot_open_its_store_is_one_line(
    tiny_teacher, sst2_files, tmp_path, monkeypatch
):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://nowhere")
    out = tmp_path / "kd"
    result = CliRunner().invoke(
        cli, kd_args(tiny_teacher, *sst2_files, out, "--report-to", "mlflow")
    )
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: --report-to mlflow: the tracker did not start (")
    assert "MLFLOW_TRACKING_URI" in lines[-1]
    assert not (out / "model.safetensors").exists()


def wandb_history(path: Path) -> list[dict]:
    """The history rows of an offline W&B run file (run-*.wandb): a 7-byte header, then
    LevelDB-log chunks (crc32 u32, length u16, kind u8: 1 full, 2 first, 3 middle, 4 last) in
    32 KiB blocks, each record a wandb_internal Record protobuf."""
    from wandb.proto.wandb_internal_pb2 import Record

    data, block, position, part, rows = path.read_bytes(), 32 * 1024, 7, b"", []
    assert data[:7] == b":W&B\xe1\xbe\x00"
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        part += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = Record.FromString(part)
            part = b""
            items = record.history.item if record.HasField("history") else []
            if items:
                rows.append(
                    {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}
                )
    return rows


def test_offline_wandb_gets_every_figure_at_every_step(
    tiny_teacher, sst2_files, tmp_path, monkeypatch
):
    pytest.importorskip("wandb")
    for name, value in {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DISABLE_GIT": "true",
        "WANDB_DISABLE_CODE": "true",
        "WANDB_INIT_TIMEOUT": "60",  # a stuck wandb-core service fails the test, not hangs it
        **{f"WANDB_{kind}_DIR": str(tmp_path / kind) for kind in ("CONFIG", "CACHE", "DATA")},
    }.items():
        monkeypatch.setenv(name, value)
    out = train_reporting_to("wandb", tiny_teacher, sst2_files, tmp_path)
    # one run per stage, kept in the artifact as TensorBoard's is
    [run] = (out / "tracking" / "wandb").glob("offline-run-*/run-*.wandb")
    rows = wandb_history(run)
    assert [row["_step"] for row in rows] == [1, 2, 3, 4]
    recorded: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        for key, value in row.items():
            if not key.startswith("_"):  # _step, _runtime, _timestamp: W&B's own
                recorded.setdefault(key, []).append((row["_step"], value))
    assert [step for step, _ in recorded["eval/f1"]] == [2, 4]
    assert recorded == series(out)


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

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
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
