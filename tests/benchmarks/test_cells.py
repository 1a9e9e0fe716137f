"""benchmarks/cells.sh, the resumable training cell of the long benchmark scripts: its budget
counts every leg of a cell that a kill stopped and a rerun resumed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

CELLS = Path(__file__).resolve().parents[2] / "benchmarks" / "cells.sh"

# a stand-in for a slimbert command: writes the finished model's two files to --out
FAKE_TRAINER = """#!/usr/bin/env bash
while [ $# -gt 0 ]; do [ "$1" = --out ] && out=$2; shift; done
mkdir -p "$out" && echo '{"method": "kd"}' > "$out/slimbert.json" && echo '{}' > "$out/config.json"
"""

pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or not Path("/usr/bin/time").exists(),
    reason="cells.sh needs bash and GNU time",
)


def run_cell(tmp_path: Path, name: str) -> subprocess.CompletedProcess:
    trainer = tmp_path / "fake-trainer"
    trainer.write_text(FAKE_TRAINER)
    trainer.chmod(0o755)
    script = f'source "{CELLS}"; cell {name} "$RUNS/{name}" "{trainer}" --seed 1'
    env = {
        "RUNS": str(tmp_path / "runs"),
        "RESULTS": str(tmp_path / "results"),
        "ONLY": ".*",
        "TAG": "test",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, check=True
    )


def budget(tmp_path: Path, name: str) -> dict:
    return json.loads((tmp_path / "results" / "cells" / f"{name}.budget.json").read_text())


def test_a_fresh_cell_records_its_budget_and_its_files(tmp_path):
    run_cell(tmp_path, "fresh")
    record = budget(tmp_path, "fresh")
    assert record["resumed"] is False and record["orphaned"] is False
    assert 0 <= record["wall_seconds"] < 60
    assert (tmp_path / "results" / "cells" / "fresh.json").exists()
    assert (tmp_path / "results" / "cells" / "fresh.config.json").exists()


def test_a_resumed_cell_counts_the_leg_a_kill_ended(tmp_path):
    """A killed leg left its heartbeat (started at 1000, last alive at 1600) and its training
    state: the rerun resumes and its wall-clock is that leg's 600 s plus its own."""
    runs = tmp_path / "runs"
    (runs / "resumed" / "training-state").mkdir(parents=True)
    (runs / "resumed.legs.now").write_text("1000 1600\n")
    result = run_cell(tmp_path, "resumed")
    assert "(resuming)" in result.stdout
    record = budget(tmp_path, "resumed")
    assert record["resumed"] is True
    assert 600 <= record["wall_seconds"] < 660
    assert not (runs / "resumed.legs.now").exists()
    assert len((runs / "resumed.legs").read_text().splitlines()) == 2


def test_a_fresh_start_forgets_the_legs_of_an_earlier_run(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "again.legs").write_text("1000 5000\n")
    run_cell(tmp_path, "again")
    assert budget(tmp_path, "again")["wall_seconds"] < 60


def test_a_cell_that_outlived_its_script_is_recorded_from_its_heartbeat(tmp_path):
    """The script was killed while its command trained on and finished (slimbert.json written
    at 2000 by a leg that started at 1000, after an earlier leg of 300 s): the next run records
    the cell's budget without training it again."""
    runs = tmp_path / "runs"
    model = runs / "orphan"
    model.mkdir(parents=True)
    (model / "slimbert.json").write_text('{"method": "kd"}')
    (model / "config.json").write_text("{}")
    os.utime(model / "slimbert.json", (2000, 2000))
    (runs / "orphan.legs").write_text("100 400\n")
    (runs / "orphan.legs.now").write_text("1000 1900\n")
    (runs / "orphan.maxrss").write_text("2048000\n")
    result = run_cell(tmp_path, "orphan")
    assert "its budget recorded from its heartbeat" in result.stdout
    record = budget(tmp_path, "orphan")
    assert record["wall_seconds"] == 300 + 1000
    assert record["orphaned"] is True and record["resumed"] is True
    assert record["peak_rss_mib"] == 2000
    assert record["command"].endswith("--seed 1")
    assert not (runs / "orphan.legs.now").exists()
    assert (tmp_path / "results" / "cells" / "orphan.json").exists()
    # a second run finds it recorded and leaves it alone
    assert "done, skipped" in run_cell(tmp_path, "orphan").stdout
    assert budget(tmp_path, "orphan")["wall_seconds"] == 1300
