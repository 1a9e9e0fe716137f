"""`slimbert export`: ONNX, optimised, quantised and Triton artifacts, each validated."""

from __future__ import annotations

from pathlib import Path

import click

from slimbert.cli import CONTEXT
from slimbert.cli.options import (
    cli_fields,
    column_flags,
    dataclass_options,
    provider_option,
    recipe_option,
    take,
    user_errors,
)
from slimbert.data import Columns
from slimbert.errors import SlimbertError
from slimbert.export.onnx import export
from slimbert.export.settings import ExportSettings


@click.command("export", context_settings=CONTEXT)
@recipe_option
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Model directory to export.",
)
@click.option(
    "--eval",
    "eval_file",
    type=click.Path(path_type=Path),
    required=True,
    help="Eval file for the parity check (every row is used).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Export folder (loads in ONNX Runtime and optimum's ORTModel).",
)
@column_flags()
@provider_option("Provider to optimize for and validate on; cuda never falls back to the CPU.")
@dataclass_options(ExportSettings)
@user_errors
def export_cmd(
    model_dir,
    eval_file,
    out,
    text_column,
    text_pair_column,
    label_column,
    no_header,
    provider,
    **kwargs,
):
    """Export a model to ONNX, optionally fuse / quantize / halve it, and validate every artifact
    against PyTorch on the whole eval file.

    \b
    Examples:
      slimbert export --model runs/kd3 --eval dev.tsv --out runs/kd3-int8 \\
        --optimize --quantize dynamic
      slimbert export --model runs/kd3 --eval dev.tsv --out runs/kd3-static \\
        --optimize --quantize static --calibration-data train.tsv
      slimbert export --model runs/kd3 --eval dev.tsv --out runs/kd3-fp16 \\
        --optimize --precision fp16 --provider cuda
      slimbert export --model runs/kd3 --eval dev.tsv --out runs/kd3-int8 \\
        --quantize dynamic --triton runs/triton

    The manifest.json in the folder records inputs, outputs, opset, exporter, precision, the
    steps with their fusion counts, every step's validation figures and file hashes. Past any
    gate the command fails and writes nothing.
    """
    if not model_dir.is_dir():
        raise SlimbertError(f"--model {model_dir}: no such directory")
    settings = ExportSettings(**take(kwargs, cli_fields(ExportSettings)))
    options = settings.options(provider)
    tolerances = options.final_tolerances().override(
        settings.max_abs_diff, settings.min_agreement, settings.max_f1_drop
    )
    columns = Columns(text_column, text_pair_column, label_column, header=not no_header)
    manifest = export(
        model_dir,
        eval_file,
        out,
        columns,
        settings.max_length,
        tolerances,
        settings.opset,
        provider,
        options,
    )
    for step in manifest["optimizations"]:
        fusions = step.get("fusions")
        if fusions:
            click.echo(
                "fused: "
                + (", ".join(f"{op} {n}" for op, n in fusions["counts"].items() if n) or "nothing")
            )
            if fusions.get("attention"):
                click.echo(fusions["attention"])
            for warning in fusions["warnings"]:
                click.echo(f"warning: {warning}", err=True)
    v = manifest["validation"]
    click.echo(
        f"exported {manifest['precision']} to {out}: max |Δlogit| {v['max_abs_diff']:.2e}, "
        f"label agreement {v['label_agreement']:.2f}%, Δ{v['metric_name']} "
        f"{v['delta_metric']:+.2f} on {v['examples']} examples ({v['provider']})"
    )
    if settings.triton:
        click.echo(f"Triton repository in {settings.triton}: see its README.md")
