"""Training on several processes (`torchrun --nproc_per_node N -m slimbert ...`): the batches are
dealt out over the processes, so N processes at batch B train exactly as one process at batch B
with --grad-accum N, and only the first process writes and reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file

from slimbert.cli import cli

FLAGS = ["--max-length", "32", "--max-steps", "4", "--eval-every", "4", "--patience", "0"]
FLAGS += ["--lr", "1e-3", "--mixed-precision", "no", "--no-progress"]


def teacher_args(tiny_base, sst2_files, out, *extra):
    train, dev = sst2_files
    return ["train-teacher", "--base", str(tiny_base), "--train", str(train), "--eval", str(dev),
            *FLAGS, "--out", str(out), *extra]  # fmt: skip


@pytest.fixture(scope="module")
def two_processes(tiny_base, sst2_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "teacher"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    argv = [*launch, "2", "-m", "slimbert", *teacher_args(tiny_base, sst2_files, out)]
    argv += ["--batch-size", "8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout


def one_process(tiny_base, sst2_files, out, *extra):
    result = CliRunner().invoke(cli, teacher_args(tiny_base, sst2_files, out, *extra))
    assert result.exit_code == 0, result.output
    return out


def test_two_processes_train_as_one_with_the_same_global_batch(
    two_processes, tiny_base, sst2_files, tmp_path
):
    ddp, _ = two_processes
    same = one_process(tiny_base, sst2_files, tmp_path / "accum", "--batch-size", "8",
                       "--grad-accum", "2")  # fmt: skip
    other = one_process(tiny_base, sst2_files, tmp_path / "b8", "--batch-size", "8")
    weights = {name: load_file(str(d / "model.safetensors")) for name, d in
               (("ddp", ddp), ("same", same), ("other", other))}  # fmt: skip

    def gap(a: str, b: str) -> float:
        return max(float((weights[a][k] - weights[b][k]).abs().max()) for k in weights[a])

    # Each optimiser step averages the gradients of the same 16 rows: all-reduced over two
    # processes, or accumulated over two batches in one. Measured: equal to the bit; allowed:
    # float32 rounding of a sum taken in another order.
    assert gap("ddp", "same") <= 1e-6
    assert gap("ddp", "other") > 1e-3  # half the batch per step: another run (measured ~9e-3)
    losses = [[json.loads(line)["loss"] for line in open(d / "train_log.jsonl")]
              for d in (ddp, same)]  # fmt: skip
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)  # the mean over both processes
    ddp_meta = json.loads((ddp / "slimbert.json").read_text())
    same_meta = json.loads((same / "slimbert.json").read_text())
    assert ddp_meta["metric"] == pytest.approx(same_meta["metric"])


def test_the_first_process_alone_writes_and_reports(two_processes):
    ddp, stdout = two_processes
    rows = [json.loads(line) for line in open(ddp / "train_log.jsonl")]
    assert [row["step"] for row in rows] == [1, 2, 3, 4]  # once each, not once per process
    # 64 rows, batch 8, two processes: four steps are one epoch
    assert rows[-1]["epoch"] == 1.0
    assert stdout.count("teacher saved to") == 1 and stdout.count("] step 4:") == 1, stdout
    assert json.loads((ddp / "slimbert.json").read_text())["steps"] == 4
    # one model folder, no staging folder left by a second writer
    assert (ddp / "model.safetensors").is_file() and not list(ddp.parent.glob(".*"))
