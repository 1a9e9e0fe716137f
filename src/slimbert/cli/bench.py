"""`slimbert bench` and `slimbert bench compare`."""

from __future__ import annotations

from pathlib import Path

import click

from slimbert.bench.config import BenchConfig
from slimbert.cli import CONTEXT
from slimbert.cli.options import (
    column_flags,
    dataclass_options,
    from_cli,
    provider_option,
    recipe_option,
    user_errors,
)


@click.group("bench", context_settings=CONTEXT, invoke_without_command=True)
@recipe_option
@click.option(
    "--model",
    "models",
    type=click.Path(path_type=Path),
    multiple=True,
    help="[required] Model or export directory, or a Hub name (org/name) in the local "
    "Hugging Face cache; repeat for several. HF models are timed in PyTorch and as a validated "
    "ONNX export.",
)
@click.option(
    "--eval",
    "eval_file",
    type=click.Path(path_type=Path),
    help="[required] Eval file: one request per example, in file order.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="[required] Report folder: report.md, report.html, report.json, report.csv and the plots.",
)
@provider_option()
@dataclass_options(BenchConfig)
@column_flags()
@click.pass_context
@user_errors
def bench_cmd(
    ctx, models, eval_file, out, provider, text_column, text_pair_column, label_column,
    no_header, **kwargs,
):  # fmt: skip
    """Time each model over a sweep and report latency against F1; `bench compare` gates releases.

    \b
    Examples:
      slimbert bench --model runs/teacher --model runs/kd3 --eval dev.tsv --out runs/bench \\
        --batch-sizes 1,8
      slimbert bench --model runs/teacher --model runs/kd3 --eval dev.tsv --out runs/bench \\
        --slo "p99<=10ms" --max-f1-drop 1.0
      slimbert bench --model runs/teacher --model runs/kd3 --eval dev.tsv --out runs/bench \\
        --slo "speedup>=10x" --max-f1-drop 1.0    # ten times the teacher, both timed here
      slimbert bench compare runs/bench-old/report.json runs/bench/report.json --threshold 5%
    """
    if ctx.invoked_subcommand is not None:
        if models or eval_file or out:
            raise click.UsageError(
                f"give either bench's own options or `bench {ctx.invoked_subcommand}`, not both"
            )
        return
    missing = [
        flag
        for flag, value in (("--model", models), ("--eval", eval_file), ("--out", out))
        if not value
    ]
    if missing:
        raise click.UsageError(f"Missing option {', '.join(missing)}.")
    # the bench stack (onnxruntime, matplotlib) loads only when a bench runs
    from slimbert.bench.render import request_table, write_report
    from slimbert.bench.run import bench
    from slimbert.data import Columns

    config = from_cli(BenchConfig, kwargs, provider=provider)
    report = bench(
        [Path(m) for m in models],
        eval_file,
        out,
        Columns(text_column, text_pair_column, label_column, header=not no_header),
        config,
    )
    path = write_report(report, out)
    click.echo(request_table(report).markdown())
    recommendation = report.extra.get("recommendation")
    if recommendation:
        click.echo(
            "\n".join([recommendation["summary"], *recommendation["passed_over"].values()]) + "\n"
        )
    click.echo(f"report written to {path} and {path.with_suffix('.html')}")


def _threshold(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A malformed --threshold is a usage error (exit 2), caught before any report is read."""
    from slimbert.bench.compare import Threshold
    from slimbert.errors import SlimbertError

    try:
        Threshold(value).allowed_ms(1.0)
    except SlimbertError as exc:
        raise click.BadParameter(f"{value!r}: {str(exc).split(': ', 1)[-1]}") from None
    return value


@bench_cmd.command("compare", context_settings=CONTEXT)
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@click.option(
    "--threshold",
    default="5%",
    show_default=True,
    callback=_threshold,
    help="Latency a row may gain beyond both runs' spread: "
    "a percentage of OLD (5%) or a time (0.5ms).",
)
@click.option(
    "--metric-threshold",
    type=click.FloatRange(0),
    default=0.5,
    show_default=True,
    help="Metric (F1) points a row may lose.",
)
@click.option(
    "--statistic",
    type=click.Choice(["avg", "p50", "p90", "p99"]),
    default="p50",
    show_default=True,
    help="Latency figure compared.",
)
@click.pass_context
@user_errors
def bench_compare_cmd(ctx, old, new, threshold, metric_threshold, statistic):
    """List what got slower or less accurate from OLD to NEW (report.json files or report
    folders), so CI can gate a release on the exit status.

    \b
    Exit status:
      0  nothing regressed
      3  a regression was found (slower or less accurate beyond the thresholds)
      2  usage error: a missing argument, an unknown or malformed flag
      1  any other error, such as a missing or unreadable report

    \b
    Example:
      slimbert bench compare release-1.2/report.json runs/bench/report.json \\
        --threshold 5% --metric-threshold 0.5
    """
    # only what comparing two report.json files needs: no onnxruntime, no matplotlib
    from slimbert.bench.compare import (
        REGRESSION_EXIT,
        Threshold,
        compare_reports,
        machine_differences,
    )
    from slimbert.bench.report import Report

    before, after = Report.read(old), Report.read(new)
    changes = compare_reports(before, after, Threshold(threshold, metric_threshold, statistic))
    for difference in machine_differences(before, after):
        click.echo(
            f"note: the runs differ in {difference}; latency changes may be the machine's", err=True
        )
    for change in changes:
        click.echo(change.sentence())
    regressed = [c for c in changes if c.regressed]
    matched = len({r.key() for r in before.rows} & {r.key() for r in after.rows})
    click.echo(
        f"{len(regressed)} regression{'s' if len(regressed) != 1 else ''} in {matched} matching "
        f"rows ({statistic}, threshold {threshold} beyond noise, "
        f"{metric_threshold:g} metric points)"
    )
    if regressed:
        ctx.exit(REGRESSION_EXIT)
