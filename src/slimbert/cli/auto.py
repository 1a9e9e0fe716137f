"""`slimbert auto`: from a teacher and a latency objective to the model to ship."""

from __future__ import annotations

from pathlib import Path

import click

from slimbert.auto.settings import TRIAL_TRAIN_FLAGS, AutoSettings
from slimbert.cli import CONTEXT
from slimbert.cli.options import (
    data_options,
    data_spec,
    dataclass_options,
    from_cli,
    provider_option,
    recipe_option,
    take,
    user_errors,
)
from slimbert.training.config import TrainConfig


@click.command("auto", context_settings=CONTEXT)
@recipe_option
@click.option(
    "--teacher",
    type=click.Path(path_type=Path),
    required=True,
    help="Teacher directory (from train-teacher) the students are distilled from.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Search folder: probe.json, study.db, trials/<n>/, trials.md, report/, winner/. Run "
    "the same command again to resume it.",
)
@provider_option("Where the shipped model runs: the probes, exports and timings use it.")
@data_options
@dataclass_options(TrainConfig, only=TRIAL_TRAIN_FLAGS)
@dataclass_options(AutoSettings)
@user_errors
def auto_cmd(teacher, out, provider, **kwargs):
    """Search students of a teacher for the one to ship under a latency objective: time every
    candidate shape first, train only those that can meet it, and report the winner.

    \b
    1. Shapes (depth cuts of the teacher, narrower widths) are built with random weights,
       exported at each precision (fp32 and dynamic int8 on the CPU, fp16 on CUDA) and timed
       at the SLO's batch size on this machine; shapes that miss --slo never train.
    2. An Optuna study (OUT/study.db) picks method x shape x transfer set; every trial is a
       normal `slimbert compress` run in OUT/trials/<n>/, exported with its parity gate and
       timed at every precision. A trial whose evaluations trail the others is pruned.
    3. The end: OUT/trials.md (every trial), OUT/report/ (bench's table and latency-vs-metric
       plot), OUT/winner/ (the export to serve), OUT/winner-triton/ (it as a Triton model
       repository) and one line: what to ship and why.

    Killed, the same command resumes: finished trials are kept, the interrupted one continues
    from its training state. --dry-run prints the plan and trains nothing; --report-only
    reports the trials finished so far and trains nothing.

    \b
    Examples:
      slimbert auto --teacher runs/teacher --train train.tsv --eval dev.tsv \\
        --slo "p99<=2ms@batch1" --max-drop 0.5 --budget 4h --out runs/auto
      slimbert auto --teacher runs/teacher --train train.tsv --eval dev.tsv \\
        --slo "p50<=1ms" --method kd --method tinybert --dry-run --out runs/auto
    """
    from slimbert.auto.run import Inputs, search

    settings = from_cli(AutoSettings, kwargs)
    spec = data_spec(kwargs)
    train = TrainConfig(**take(kwargs, TRIAL_TRAIN_FLAGS))
    click.echo(search(Inputs(teacher, spec, train, settings, provider, out), say=click.echo))
