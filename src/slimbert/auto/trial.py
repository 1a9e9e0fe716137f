"""One trial: a normal `slimbert compress` run in its own folder, watched, exported and timed.

    OUT/trials/<n>/
      choice.json      method, shape, transfer set
      launches.jsonl   one row per start of the training command (resume: true after a kill)
      train.log        the command's output
      model/           `slimbert compress METHOD --out` (slimbert.json, train_log.jsonl, and
                       while it trains the training-state a --resume continues from)
      fp32/ int8/      `slimbert export` of the student at each precision, with its parity gate
      qat-model/ int8-qat/  when int8 loses more than --max-drop and fp32 does not: the student
                       tuned under simulated int8 and its int8 export (auto/qat.py)
      promoted-model/ promoted-<precision>/  the search's leader trained further, and its
                       exports (auto/promote.py)
      result.json      each precision's timed bench Row, or why it has none

The command runs in a child process (the same one a person would type), so a trial is exactly
what `compress` makes, and the watcher reads its train_log.jsonl for the evaluations the pruner
judges: a pruned trial's process is stopped. A trial started again (its `auto` was killed)
runs the command with --resume and continues from the training state; a trained model is never
trained again, and an export already written is kept.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from slimbert import settings as settings_module
from slimbert.auto.probe import Timing, export_once, onnx_target, precisions
from slimbert.auto.qat import QAT_FOLDER, QAT_SUFFIX, QatRescue
from slimbert.auto.space import Choice, Shape
from slimbert.batches import DataSpec
from slimbert.errors import SlimbertError
from slimbert.files import RECORD_FILE, STATE_DIR, write_json_atomic

RESULT_FILE = "result.json"
POLL_S = 0.5
# the rows of a student trained further after the search (auto/promote.py)
PROMOTED_SUFFIX = "+promoted"


def promoted_folder(precision: str) -> str:
    return f"promoted-{precision}"


def export_folder(method: str, precision: str) -> str:
    """The folder of a trial that holds the export a row of `method` at `precision` timed."""
    if method.endswith(QAT_SUFFIX):
        return QAT_FOLDER
    if method.endswith(PROMOTED_SUFFIX):
        return promoted_folder(precision)
    return precision


def setting_flags(instance, names: tuple[str, ...] | None = None) -> list[str]:
    """The command-line flags that give `instance`'s settings fields their values (those that
    differ from the default), as `slimbert compress` reads them."""
    flags = []
    for f in fields(instance):
        meta = settings_module.describe(f)
        if settings_module.KEY not in f.metadata or not meta.cli:
            continue
        if names is not None and f.name not in names:
            continue
        value, default = getattr(instance, f.name), settings_module.default_of(f)
        if value == default or value is None:
            continue
        flag = settings_module.flag_name(f).split("/")[0]
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{flag[2:]}")
        else:
            flags += [flag, str(value)]
    return flags


def data_flags(spec: DataSpec) -> list[str]:
    """--train, --eval, the columns and DataSpec's settings, the transfer set left out (each
    trial's choice says whether it joins)."""
    columns = spec.columns
    named = [
        ("--text-column", columns.text),
        ("--text-pair-column", columns.text_pair),
        ("--label-column", columns.label),
    ]
    flags = ["--train", str(spec.train), "--eval", str(spec.eval)]
    flags += [item for flag, value in named if value is not None for item in (flag, str(value))]
    flags += [] if columns.header else ["--no-header"]
    names = tuple(f.name for f in fields(spec) if f.name != "transfer")
    return flags + setting_flags(spec, names)


@dataclass(frozen=True)
class TrialSetup:
    """What every trial shares: the teacher, the command's data and training flags, the steps
    and evaluations of a stage, and how an exported student is timed."""

    teacher: Path
    data_flags: tuple[str, ...]  # --train, --eval, columns, max length, metric, ...
    transfer: Path | None
    train_flags: tuple[str, ...]  # --batch-size, --lr, --seed, ...
    steps: int
    evaluations: int
    timing: Timing
    optimize: bool
    metric_name: str  # the eval/<name> figure of train_log.jsonl the pruner judges
    qat: QatRescue | None = None  # tune the student for int8 when int8 alone loses too much

    def command(self, choice: Choice, out: Path, resume: bool) -> list[str]:
        """The `slimbert compress` command line of a trial."""
        eval_every = max(1, self.steps // self.evaluations)
        return [
            sys.executable,
            "-m",
            "slimbert",
            "compress",
            choice.method,
            "--teacher",
            str(self.teacher),
            "--out",
            str(out),
            *choice.shape.flags(),
            *self.data_flags,
            *(["--transfer", str(self.transfer)] if choice.transfer else []),
            *self.train_flags,
            "--max-steps",
            str(self.steps),
            "--eval-every",
            str(eval_every),
            "--patience",
            "0",
            "--no-progress",
            *(["--resume"] if resume else []),
        ]


@dataclass
class Outcome:
    """How a trial ended: its timed rows by precision, the figures the study is told, and the
    state (complete, pruned or failed, with the reason)."""

    state: str
    rows: dict[str, dict] = field(default_factory=dict)  # precision -> bench Row as a dict
    errors: dict[str, str] = field(default_factory=dict)  # precision -> why it has no row
    evaluations: list[float] = field(default_factory=list)
    message: str = ""

    def value(self) -> float | None:
        metrics = [row["metric"] for row in self.rows.values()]
        return max(metrics) if metrics else None

    def best_latency(self, statistic: str) -> float | None:
        figures = [row[f"{statistic}_ms"] for row in self.rows.values()]
        return min(figures) if figures else None


def trial_dir(out: Path, number: int) -> Path:
    return out / "trials" / str(number)


def trial_folders(out: Path) -> list[Path]:
    """The folders of every trial that began (its choice.json written), by number."""
    found = (out / "trials").glob("*/choice.json") if (out / "trials").is_dir() else []
    folders = [path.parent for path in found if path.parent.name.isdigit()]
    return sorted(folders, key=lambda folder: int(folder.name))


def read_choice(folder: Path) -> Choice:
    payload = json.loads((folder / "choice.json").read_text())
    return Choice(payload["method"], Shape(**payload["shape"]), payload["transfer"])


def read_outcome(folder: Path) -> Outcome | None:
    path = folder / RESULT_FILE
    return Outcome(**json.loads(path.read_text())) if path.is_file() else None


def launches(folder: Path) -> list[dict]:
    path = folder / "launches.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


def evaluations(model_dir: Path, metric_name: str) -> list[float]:
    """The task metric at each evaluation in the run's train_log.jsonl, in order (the layer
    stages of tinybert and minilm evaluate a distillation loss instead and are passed over)."""
    path = model_dir / "train_log.jsonl"
    if not path.is_file():
        return []
    key = f"eval/{metric_name}"
    found = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line being written
        if key in row:
            found.append(float(row[key]))
    return found


def _die_with_parent() -> None:
    """In the child: be sent SIGTERM if `auto` dies, so no orphan trains on (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        # the command's own "interrupted" path (SIGINT may be ignored in a background job)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# (evaluation index from 0, metric) -> True to stop the trial
Judge = Callable[[int, float], bool]


def train(setup: TrialSetup, choice: Choice, folder: Path, judge: Judge, on_eval=None) -> str:
    """Run (or continue) the trial's training command; "trained", "pruned" or "failed: ..."."""
    model_dir = folder / "model"
    if (model_dir / RECORD_FILE).is_file():
        return "trained"  # saved by an earlier run: never trained twice
    resume = (model_dir / STATE_DIR).is_dir()
    with open(folder / "launches.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"resume": resume, "time": time.time()}) + "\n")
    command = setup.command(choice, model_dir, resume)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(folder / "train.log", "a", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        judged = 0
        try:
            while True:
                finished = process.poll() is not None
                seen = evaluations(model_dir, setup.metric_name)
                for index in range(judged, len(seen)):
                    judged = index + 1
                    if on_eval is not None:
                        on_eval(index, seen[index])
                    if judge(index, seen[index]) and not finished:
                        stop(process)
                        return "pruned"
                if finished:
                    break
                time.sleep(POLL_S)
        finally:
            stop(process)
    if process.returncode != 0:
        tail = (folder / "train.log").read_text().strip().splitlines()[-1:]
        return f"failed: exit {process.returncode}: {tail[0] if tail else ''}"
    return "trained"


def export_and_time(setup: TrialSetup, choice: Choice, folder: Path, name: str) -> Outcome:
    """Export the trained student at every precision (each gated against PyTorch) and time
    each export as bench would."""
    outcome = Outcome("complete")
    for precision in precisions(setup.timing.provider):
        exported = folder / precision
        try:
            export_once(folder / "model", exported, setup.timing, precision, setup.optimize)
            row = setup.timing.time(onnx_target(name, exported, choice.method, precision))
        except SlimbertError as exc:
            outcome.errors[precision] = str(exc)
            continue
        outcome.rows[precision] = asdict(row)
    if setup.qat is not None and setup.qat.wanted(outcome.rows):
        try:
            outcome.rows["int8-qat"] = setup.qat.row(choice.method, folder, name)
        except SlimbertError as exc:
            outcome.errors["int8-qat"] = str(exc)
    if not outcome.rows:
        outcome.state = "failed"
        outcome.message = "; ".join(f"{p}: {e}" for p, e in outcome.errors.items())
    return outcome


def run_trial(
    setup: TrialSetup, choice: Choice, folder: Path, name: str, judge: Judge, on_eval=None
) -> Outcome:
    """Train, export and time one trial, or finish what an earlier run of it left; the outcome
    is also written to result.json."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "choice.json").is_file():
        write_json_atomic(
            folder / "choice.json",
            {
                "method": choice.method,
                "shape": asdict(choice.shape),
                "transfer": choice.transfer,
            },
        )
    status = train(setup, choice, folder, judge, on_eval)
    seen = evaluations(folder / "model", setup.metric_name)
    if status == "trained":
        outcome = export_and_time(setup, choice, folder, name)
    else:
        state = "pruned" if status == "pruned" else "failed"
        outcome = Outcome(state, message=status)
    outcome.evaluations = seen
    write_json_atomic(folder / RESULT_FILE, asdict(outcome))
    return outcome
