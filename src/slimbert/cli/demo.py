"""`slimbert demo` and `slimbert experiment`: whole paths from one command."""

from __future__ import annotations

from pathlib import Path

import click

from slimbert.cli import CONTEXT
from slimbert.cli.options import user_errors
from slimbert.demo import run_demo
from slimbert.experiment.cells import run_experiment


@click.command("demo", context_settings=CONTEXT)
@click.option(
    "--quick", is_flag=True, help="A small run that finishes within 10 minutes on 2 CPU cores."
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("demo-out"),
    show_default=True,
    help="Where the data split, models, exports and report go.",
)
@click.option(
    "--seed",
    type=int,
    default=42,
    show_default=True,
    help="Seed of the tweets' train/eval split, the training shuffles and the students' "
    "initialisation: the same seed on the same machine repeats the run.",
)
@user_errors
def demo_cmd(quick, out, seed):
    """Offline end to end on the bundled MiniLM and tweet corpus: teacher, 3/2/1-layer kd
    students, ONNX exports, bench report.

    \b
    Example:
      slimbert demo --quick --out demo-out
    """
    report_path = run_demo(out, quick=quick, seed=seed)
    click.echo(f"demo report: {report_path}")


@click.command("experiment", context_settings=CONTEXT)
@click.argument("recipe", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Experiment folder (default: the recipe's `out`).",
)
@user_errors
def experiment_cmd(recipe, out):
    """Run (TS, PS-Boosting, PS-DA, PS-DA*) × student depths × seeds from one recipe and write
    the matrix table and the latency-vs-F1 plot. Finished cells are read back, so an
    interrupted run continues where it stopped.

    \b
    Example:
      slimbert experiment recipes/experiment-mrpc.yaml
    """
    experiment = run_experiment(recipe, out, echo=lambda line: click.echo(line, err=True))
    click.echo(experiment.table("f1").markdown())
    click.echo(f"experiment written to {experiment.out / 'experiment.md'}")
