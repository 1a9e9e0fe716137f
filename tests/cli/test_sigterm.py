"""SIGTERM stops a training command the way Ctrl-C does: one line, exit 130, the state of its
last evaluation kept for --resume. A command started in the background (nohup, `&`, a job
scheduler) has SIGINT ignored, and SIGTERM is what schedulers and `kill` send."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from slimbert.files import STATE_DIR


def evaluated(model: Path) -> bool:
    log = model / "train_log.jsonl"
    if not log.is_file():
        return False
    rows = []
    for line in log.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line being written
    return any(any(key.startswith("eval/") for key in row) for row in rows)


def test_sigterm_stops_a_background_training_command_to_resume_later(
    tiny_teacher, sst2_files, tmp_path
):
    train, dev = sst2_files
    model = tmp_path / "kd"
    command = [
        sys.executable, "-m", "slimbert", "compress", "kd", "--teacher", str(tiny_teacher),
        "--train", str(train), "--eval", str(dev), "--out", str(model), "--layers", "1",
        "--max-length", "32", "--batch-size", "8", "--max-steps", "3000",
        "--eval-every", "100", "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # as a job started with `&` in a script: SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        deadline = time.monotonic() + 300
        while not (evaluated(model) and (model / STATE_DIR).is_dir()):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no evaluation within 300 s"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)  # ignored, as in the background ...
        time.sleep(0.2)
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)  # ... SIGTERM is not
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted; no model was written")
    assert "Traceback" not in stderr
    assert (model / STATE_DIR).is_dir() and not (model / "slimbert.json").exists()
    # the same command with --resume continues from the saved evaluation
    resumed = subprocess.run(
        [*command, "--resume"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at step" in resumed.stdout + resumed.stderr
