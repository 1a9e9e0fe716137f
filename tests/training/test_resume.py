"""--resume: a run stopped after step k and resumed ends with the weights of a run that was never
stopped (same seed), for the loop itself and for every training command, multi-stage ones
included; the state is safetensors and JSON, written atomically, and gone once the model is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import build_bert, sentiment_rows, write_sst2
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader

from slimbert.cli import cli
from slimbert.errors import SlimbertError
from slimbert.metrics import Metrics
from slimbert.training.config import TrainConfig
from slimbert.training.loop import train
from slimbert.training.state import STATE_DIR, RunFiles


class Stop(Exception):
    """Stands for a run killed mid-way."""


def toy_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 2))  # dropout draws


def toy_loader() -> DataLoader:
    rows = [
        {"x": torch.randn(4, generator=torch.Generator().manual_seed(i)), "y": torch.tensor(i % 2)}
        for i in range(20)
    ]  # 7 batches of 3: the last one short
    return DataLoader(rows, batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(1))


def toy_step(model, batch):
    loss = nn.functional.cross_entropy(model(batch["x"]), batch["y"])
    return loss, {"ce": float(loss.detach())}


def toy_eval(model) -> Metrics:
    value = -float(model[2].weight.detach().abs().sum())
    return Metrics(value, {"score": value}, "score")


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.mark.parametrize(
    ("eval_every", "grad_accum", "stop_after"),
    [(3, 1, 8), (3, 2, 5), (2, 2, 7), (0, 1, 9)],
    ids=["mid-epoch", "accumulated-mid-epoch", "accumulated-epoch-end", "per-epoch"],
)
def test_a_resumed_loop_ends_with_the_uninterrupted_weights(
    tmp_path, eval_every, grad_accum, stop_after
):
    config = TrainConfig(
        epochs=3,
        eval_every=eval_every,
        patience=0,
        progress=False,
        lr=1e-2,
        grad_accum=grad_accum,
    )
    whole = toy_model()
    expected = train(whole, toy_loader(), toy_step, toy_eval, config, run=RunFiles(tmp_path / "a"))

    def stop(done, total, model):
        if done == stop_after:
            raise Stop

    with pytest.raises(Stop):
        train(toy_model(), toy_loader(), toy_step, toy_eval, config, on_step=stop,
              run=RunFiles(tmp_path / "b"))  # fmt: skip
    state = json.loads((tmp_path / "b" / STATE_DIR / "train" / "state.json").read_text())
    assert 0 < state["steps"] < stop_after and not state["finished"]

    resumed = toy_model()  # a fresh process: new weights, the saved ones are loaded over them
    result = train(resumed, toy_loader(), toy_step, toy_eval, config,
                   run=RunFiles(tmp_path / "b", resume=True))  # fmt: skip
    assert max_difference(whole.state_dict(), resumed.state_dict()) <= 1e-6
    assert result.losses == expected.losses and result.history == expected.history
    assert (result.steps, result.best_step) == (expected.steps, expected.best_step)
    rows = [json.loads(line) for line in (tmp_path / "b" / "train_log.jsonl").open()]
    assert [r["step"] for r in rows] == list(range(1, expected.steps + 1))  # each step once
    again = [json.loads(line) for line in (tmp_path / "a" / "train_log.jsonl").open()]
    assert [r["loss"] for r in rows] == [r["loss"] for r in again]


def test_the_state_is_safetensors_and_json_and_a_finished_stage_is_not_trained_again(tmp_path):
    config = TrainConfig(max_steps=4, eval_every=2, patience=0, progress=False, lr=1e-2)
    model = toy_model()
    train(model, toy_loader(), toy_step, toy_eval, config, run=RunFiles(tmp_path))
    folder = tmp_path / STATE_DIR / "train"
    assert sorted(p.name for p in folder.iterdir()) == [
        "model.safetensors",
        "rng.safetensors",
        "state.json",
    ]  # finished: no optimizer kept
    assert json.loads((folder / "state.json").read_text())["finished"] is True

    calls = []
    again = toy_model()
    result = train(again, toy_loader(), lambda m, b: calls.append(1) or toy_step(m, b), toy_eval,
                   config, run=RunFiles(tmp_path, resume=True))  # fmt: skip
    assert calls == [] and result.steps == 4
    assert max_difference(model.state_dict(), again.state_dict()) == 0.0


def test_no_save_state_writes_no_state_and_leaves_nothing_to_resume(tmp_path, monkeypatch):
    import slimbert.training.checkpoint as checkpoint

    writes = []
    real = checkpoint.write_state
    monkeypatch.setattr(
        checkpoint, "write_state", lambda *a, **k: writes.append(1) or real(*a, **k)
    )
    config = TrainConfig(max_steps=4, eval_every=2, patience=0, progress=False, lr=1e-2)
    train(toy_model(), toy_loader(), toy_step, toy_eval, config, run=RunFiles(tmp_path / "on"))
    assert writes  # the default keeps a state at every improving evaluation and at the end

    writes.clear()
    off = TrainConfig(max_steps=4, eval_every=2, patience=0, progress=False, lr=1e-2,
                      save_state=False)  # fmt: skip
    run = RunFiles(tmp_path / "off")
    result = train(toy_model(), toy_loader(), toy_step, toy_eval, off, run=run)
    assert writes == [] and result.steps == 4
    assert not (tmp_path / "off" / STATE_DIR).exists()
    assert (tmp_path / "off" / "train_log.jsonl").is_file()  # the log is kept either way


def test_a_resume_that_finds_no_state_logs_every_step_once(tmp_path):
    """A run stopped before it saved a state has logged steps; --resume starts over and its
    log holds each step once (`slimbert auto` resumes a trial killed at its first evaluation,
    when the state may not have landed yet)."""
    unsaved = TrainConfig(max_steps=3, eval_every=2, patience=0, progress=False, lr=1e-2,
                          save_state=False)  # fmt: skip
    train(toy_model(), toy_loader(), toy_step, toy_eval, unsaved, run=RunFiles(tmp_path))
    assert not (tmp_path / STATE_DIR).exists()
    config = TrainConfig(max_steps=4, eval_every=2, patience=0, progress=False, lr=1e-2)
    train(toy_model(), toy_loader(), toy_step, toy_eval, config,
          run=RunFiles(tmp_path, resume=True))  # fmt: skip
    rows = [json.loads(line) for line in (tmp_path / "train_log.jsonl").open()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


def test_resuming_with_other_settings_is_one_line(tmp_path):
    config = TrainConfig(max_steps=4, eval_every=2, patience=0, progress=False, lr=1e-2)
    train(toy_model(), toy_loader(), toy_step, toy_eval, config, run=RunFiles(tmp_path))
    other = TrainConfig(max_steps=4, eval_every=2, patience=0, progress=False, lr=2e-2)
    with pytest.raises(SlimbertError, match=r"--resume: .* \(lr 0.01 → 0.02\); give the same"):
        train(toy_model(), toy_loader(), toy_step, toy_eval, other,
              run=RunFiles(tmp_path, resume=True))  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Every training command, through the CLI: stopped after step k of a stage, then --resume.


def command_args(name: str, base: Path, teacher: Path, train: Path, dev: Path) -> list[str]:
    data = ["--train", str(train), "--eval", str(dev), "--seed", "0", "--no-progress"]
    short = ["--batch-size", "8", "--max-steps", "6", "--eval-every", "2", *data]
    return {
        "train-teacher": ["train-teacher", "--base", str(base), "--epochs", "2",
                          "--eval-every", "3", "--batch-size", "8", "--save-route", "2", *data],
        "kd": ["compress", "kd", "--teacher", str(teacher), "--layers", "2",
               "--grad-accum", "2", "--batch-size", "4", "--max-steps", "6",
               "--eval-every", "2", *data],
        "theseus": ["compress", "theseus", "--teacher", str(teacher), "--layers", "2",
                    "--replace-rate", "0.5", *short],
        "tinybert": ["compress", "tinybert", "--teacher", str(teacher), "--layers", "2", *short],
        "minilm": ["compress", "minilm", "--teacher", str(teacher), "--layers", "2", *short],
        "textcnn": ["compress", "textcnn", "--teacher", str(teacher), "--embedding-dim", "16",
                    "--filters", "4", "--lr", "1e-3", *short],
        "pretrain-student": ["pretrain-student", "--teacher", str(teacher), "--layers", "1",
                             "--train", str(train), "--max-length", "32", "--batch-size", "8",
                             "--max-steps", "6", "--eval-every", "2", "--seed", "0",
                             "--no-progress"],
        "boost": ["professor", "boost", "--base", str(base), "--rounds", "2", "--retries", "0",
                  "--lr", "3e-3", "--patience", "0", "--batch-size", "16", "--max-steps", "24",
                  "--eval-every", "8", "--max-length", "32", *data],
    }[name]  # fmt: skip


# (command, the stage to stop in, the step to stop after)
STOPS = [
    ("train-teacher", "teacher", 7),  # mid-epoch, a route checkpoint before and one after
    ("kd", "kd-2L", 5),  # two batches a step
    ("theseus", "theseus-2L-replace", 3),  # the replacement draws continue where they were
    ("theseus", "theseus-2L-finetune", 5),  # stage 1 restored, not trained again
    ("tinybert", "tinybert-prediction", 3),
    ("minilm", "minilm-2L-prediction", 3),
    ("textcnn", "textcnn", 5),
    ("pretrain-student", "mlm-1L", 5),  # the collator's masks come from the saved generators
    ("boost", "boost-2-2", 12),  # member 1 restored, member 2 continued
]


def weights_of(out: Path) -> dict[str, torch.Tensor]:
    files = sorted(out.rglob("model.safetensors"))  # a professor: one per member; a route too
    assert files
    return {f"{f.relative_to(out)}:{k}": v for f in files for k, v in load_file(str(f)).items()}


@pytest.mark.parametrize(("command", "stage", "stop_after"), STOPS,
                         ids=[f"{c}-{s}" for c, s, _ in STOPS])  # fmt: skip
def test_every_training_command_resumes_to_the_same_weights(
    command, stage, stop_after, tmp_path, monkeypatch, tiny_base, tiny_teacher, sst2_files
):
    train_file, dev_file = sst2_files
    if command == "boost":  # six labels flipped: round 1 leaves errors for round 2
        rows = [(t, 1 - y if i < 6 else y) for i, (t, y) in enumerate(sentiment_rows(64, 1))]
        train_file = write_sst2(tmp_path / "flipped.tsv", rows)
        tiny_base = build_bert(tmp_path / "base", layers=2, num_labels=None)  # as test_professor
    args = command_args(command, tiny_base, tiny_teacher, train_file, dev_file)
    runner = CliRunner()
    whole = runner.invoke(cli, [*args, "--out", str(tmp_path / "whole")])
    assert whole.exit_code == 0, whole.output

    log = RunFiles.log

    def stop(self, row):
        log(self, row)
        if row["stage"] == stage and row["step"] == stop_after:
            raise KeyboardInterrupt

    out = tmp_path / "resumed"
    with monkeypatch.context() as patch:
        patch.setattr(RunFiles, "log", stop)
        stopped = runner.invoke(cli, [*args, "--out", str(out)])
    assert stopped.exit_code == 130, stopped.output
    assert "--resume" in stopped.output
    assert (out / STATE_DIR / stage / "state.json").is_file()
    assert not (out / "slimbert.json").exists()

    resumed = runner.invoke(cli, [*args, "--out", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert f"[{stage}" in resumed.output or "resuming at step" in resumed.output
    assert max_difference(weights_of(tmp_path / "whole"), weights_of(out)) <= 1e-6
    assert not (out / STATE_DIR).exists()  # the saved model replaced the state
    rows = [json.loads(line) for line in (out / "train_log.jsonl").open()]
    steps = [(r["stage"], r["step"]) for r in rows]
    assert len(steps) == len(set(steps))  # every step of every stage once
    expected = [json.loads(line) for line in (tmp_path / "whole" / "train_log.jsonl").open()]
    assert steps == [(r["stage"], r["step"]) for r in expected]
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in expected], abs=1e-6)


def test_resume_without_a_saved_state_says_so_and_starts_over(tmp_path, tiny_teacher, sst2_files):
    train_file, dev_file = sst2_files
    args = ["compress", "kd", "--teacher", tiny_teacher, "--layers", "1", "--max-steps", "2",
            "--batch-size", "8", "--train", train_file, "--eval", dev_file, "--out",
            tmp_path / "s", "--no-progress", "--resume"]  # fmt: skip
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "no saved state in" in result.output and "starting at step 0" in result.output


def test_experiment_cells_planned_before_these_settings_keep_their_keys():
    """A cell's key hashes its TrainConfig: the run-only settings (--resume, --device,
    --report-to) never change it, and --grad-accum only when it is not 1."""
    import hashlib
    from dataclasses import asdict

    from slimbert.experiment.cells import _key

    config = TrainConfig(epochs=2.0, lr=1e-4)
    before = {  # the fields TrainConfig had before them, as the key hashed them then
        k: v
        for k, v in asdict(config).items()
        if k
        not in (
            "progress",
            "resume",
            "save_state",
            "report_to",
            "device",
            "grad_accum",
            "fused_adamw",
        )
    }
    old = hashlib.sha256(json.dumps([before], sort_keys=True, default=str).encode()).hexdigest()
    assert _key(config) == old[:24]
    assert _key(TrainConfig(epochs=2.0, lr=1e-4, resume=True, device="cpu")) == old[:24]
    assert _key(TrainConfig(epochs=2.0, lr=1e-4, save_state=False)) == old[:24]
    assert _key(TrainConfig(epochs=2.0, lr=1e-4, grad_accum=2)) != old[:24]
