"""`slimbert auto`'s distillation-aware int8 (auto/qat.py): when it runs, what command it runs,
and the trial row and winner folder it gives. Latencies are fixed by the shape as in
tests/test_auto.py; training, export, parity gate and scoring are real."""

from __future__ import annotations

import json
import shutil

import pytest

from slimbert.auto import trial as trials
from slimbert.auto.probe import Timing
from slimbert.auto.qat import QatRescue, passed_flags
from slimbert.auto.report import copy_winner
from slimbert.auto.space import Choice, Shape
from slimbert.auto.trial import export_folder
from slimbert.bench.report import Row
from slimbert.data import Columns
from tests.auto.test_auto import fixed_latency, shape_ms


def rescue(teacher, files, metric: float = 90.0, drop: float = 0.5) -> QatRescue:
    train, dev = files
    timing = Timing(dev, Columns(), "cpu", 1, 8, 1, 1, 32, "p99")
    return QatRescue(
        teacher,
        ("--train", str(train), "--eval", str(dev), "--max-length", "32"),
        ("--batch-size", "8", "--lr", "1e-3", "--seed", "0", "--mixed-precision", "auto"),
        timing,
        True,
        metric,
        drop,
        6,
    )


@pytest.mark.parametrize(
    ("fp32", "int8", "wanted"),
    [
        (89.8, 89.2, True),  # int8 loses 0.8 > 0.5, fp32 0.2
        (89.8, 89.6, False),  # int8 within the drop: nothing to recover
        (89.0, 88.0, False),  # fp32 already misses: int8 tuning cannot make the model good
        (89.5, 89.4, True),  # fp32 exactly at the drop still meets it
    ],
)
def test_it_runs_when_int8_alone_misses_the_drop(tiny_teacher, sst2_files, fp32, int8, wanted):
    rows = {"fp32": {"metric": fp32}, "int8": {"metric": int8}}
    assert rescue(tiny_teacher, sst2_files).wanted(rows) is wanted
    assert rescue(tiny_teacher, sst2_files).wanted({"fp32": {"metric": fp32}}) is False


def test_the_command_keeps_qats_learning_rate_and_precision(tiny_teacher, sst2_files, tmp_path):
    assert passed_flags(("--batch-size", "8", "--lr", "1e-3", "--seed", "0")) == [
        "--batch-size", "8", "--seed", "0",
    ]  # fmt: skip
    command = rescue(tiny_teacher, sst2_files).command(tmp_path)
    tail = command[command.index("compress") :]
    assert tail[:6] == ["compress", "qat", "--teacher", str(tiny_teacher), "--student",
                        str(tmp_path / "model")]  # fmt: skip
    assert "--lr" not in tail and "--mixed-precision" not in tail and "--resume" not in tail
    assert (
        tail[tail.index("--max-steps") + 1] == "6" and tail[tail.index("--eval-every") + 1] == "2"
    )
    assert export_folder("kd+qat", "int8") == "int8-qat" and export_folder("kd", "int8") == "int8"


def test_a_trial_whose_int8_loses_too_much_gets_a_tuned_int8_row(
    tiny_teacher, sst2_files, tmp_path, monkeypatch
):
    folder = tmp_path / "trials" / "0"
    shutil.copytree(tiny_teacher, folder / "model")
    monkeypatch.setattr(Timing, "time", fixed_latency)
    tuning = rescue(tiny_teacher, sst2_files)
    # the tiny model's int8 loses nothing; the rule itself is tested above
    monkeypatch.setattr(QatRescue, "wanted", lambda self, rows: True)
    setup = trials.TrialSetup(
        tiny_teacher, tuning.data_flags, None, tuning.train_flags, 6, 2, tuning.timing, True,
        "f1", tuning,
    )  # fmt: skip
    choice = Choice("kd", Shape(4, 32, 4, 64), False)
    outcome = trials.export_and_time(setup, choice, folder, "#0 kd/4x32")
    assert outcome.state == "complete" and not outcome.errors
    assert sorted(outcome.rows) == ["fp32", "int8", "int8-qat"]
    row = outcome.rows["int8-qat"]
    assert row["method"] == "kd+qat" and row["precision"] == "int8"
    assert row["model"] == "#0 kd/4x32 qat" and row["p99_ms"] == shape_ms(4, 32, "int8")
    tuned = json.loads((folder / "qat-model" / "slimbert.json").read_text())
    assert tuned["method"] == "qat" and tuned["steps"] == 6
    assert tuned["train_config"]["lr"] == 1e-5 and tuned["train_config"]["mixed_precision"] == "no"
    assert tuned["parent"]["path"] == str(folder / "model")
    manifest = json.loads((folder / "int8-qat" / "manifest.json").read_text())
    assert manifest["precision"] == "int8"
    assert manifest["optimizations"][-1]["quantized_ops"]["QAttention"] == 4
    # the report copies the tuned export when it wins
    winner = copy_winner(tmp_path, Row(**row))
    assert (winner / "manifest.json").read_text() == (
        folder / "int8-qat" / "manifest.json"
    ).read_text()
    # run again (a resumed trial): nothing is tuned or exported twice
    log = (folder / "qat.log").read_text()
    again = trials.export_and_time(setup, choice, folder, "#0 kd/4x32")
    assert again.rows["int8-qat"]["metric"] == row["metric"]
    assert (folder / "qat.log").read_text() == log
