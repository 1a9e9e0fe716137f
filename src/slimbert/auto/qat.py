"""`auto`'s distillation-aware int8: when a trial's int8 export loses more than --max-drop against
the teacher and its fp32 export does not, the trial's student is tuned under simulated int8
(`slimbert compress qat`, a child process as the trial's own training is) and the int8 export of
the tuned student is timed as one more row of the trial:

    OUT/trials/<n>/
      qat-model/   slimbert compress qat --student model/ (--qat-steps steps, qat's own lr)
      int8-qat/    its `slimbert export`, int8 as int8/ is: the same graph, at the same speed,
                   with its own parity gate
      qat.log      the command's output

Its row's method is the trial's with "+qat", which is how the report finds its folder. A run
killed while it tunes starts the command again with --resume; an export already written is kept.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from slimbert.auto.probe import Timing, export_once, onnx_target
from slimbert.errors import SlimbertError
from slimbert.files import RECORD_FILE

QAT_FOLDER = "int8-qat"
QAT_SUFFIX = "+qat"
# the trial's training flags qat does not take over: it tunes at its own small learning rate,
# in fp32 (bf16 would round the simulated int8 products again)
NOT_PASSED = ("--lr", "--mixed-precision")


def passed_flags(flags: tuple[str, ...]) -> list[str]:
    """`flags` (pairs of --flag value) without those in NOT_PASSED."""
    pairs = zip(flags[::2], flags[1::2], strict=True)
    return [item for flag, value in pairs if flag not in NOT_PASSED for item in (flag, value)]


def run_logged(command: list[str], log_path: Path, what: str) -> None:
    """Run a child command with its output appended to `log_path` (after the command line);
    SlimbertError with its last line if it fails."""
    with open(log_path, "a", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        tail = log_path.read_text().strip().splitlines()[-1:]
        raise SlimbertError(f"{what}: exit {done.returncode}: {tail[0] if tail else ''}")


@dataclass(frozen=True)
class QatRescue:
    """When and how a trial's int8 export is tuned: the teacher's metric and --max-drop decide
    (int8 over the drop, fp32 within it), `steps` is --qat-steps."""

    teacher: Path
    data_flags: tuple[str, ...]
    train_flags: tuple[str, ...]
    timing: Timing
    optimize: bool
    teacher_metric: float
    max_drop: float
    steps: int

    def wanted(self, rows: dict[str, dict]) -> bool:
        """Whether a trial's rows (precision → bench Row as a dict) call for it."""
        int8, fp32 = rows.get("int8"), rows.get("fp32")
        if int8 is None or fp32 is None:
            return False
        lost = self.teacher_metric - int8["metric"], self.teacher_metric - fp32["metric"]
        return lost[0] > self.max_drop + 1e-9 and lost[1] <= self.max_drop + 1e-9

    def command(self, folder: Path) -> list[str]:
        out = folder / "qat-model"
        return [
            sys.executable, "-m", "slimbert", "compress", "qat",
            "--teacher", str(self.teacher), "--student", str(folder / "model"),
            "--out", str(out), *self.data_flags, *passed_flags(self.train_flags),
            "--max-steps", str(self.steps), "--eval-every", str(max(1, self.steps // 3)),
            "--patience", "0", "--no-progress",
            *(["--resume"] if (out / "training-state").is_dir() else []),
        ]  # fmt: skip

    def tune(self, folder: Path) -> None:
        """Train folder/qat-model unless it is there; SlimbertError with the command's last
        line if it fails."""
        if (folder / "qat-model" / RECORD_FILE).is_file():
            return
        run_logged(self.command(folder), folder / "qat.log", "compress qat")

    def row(self, method: str, folder: Path, name: str) -> dict:
        """Tune, export (gated) and time the trial's student; its bench Row as a dict."""
        self.tune(folder)
        exported = folder / QAT_FOLDER
        export_once(folder / "qat-model", exported, self.timing, "int8", self.optimize)
        target = onnx_target(f"{name} qat", exported, method + QAT_SUFFIX, "int8")
        return asdict(self.timing.time(target))
