"""`slimbert export`: ONNX, optimised, quantised and Triton artifacts, each validated."""

from __future__ import annotations

from pathlib import Path

import click

from slimbert.cli import CONTEXT
from slimbert.cli.options import column_flags, provider_option, recipe_option, user_errors
from slimbert.errors import SlimbertError


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
@click.option(
    "--max-length", type=click.IntRange(8, 4096), help="Default: the model's training max length."
)
@click.option("--opset", type=click.IntRange(11), help="ONNX opset (default: optimum's choice).")
@click.option(
    "--max-abs-diff",
    type=click.FloatRange(0),
    help="Fail if any |ONNX − PyTorch| logit exceeds this (default per artifact: fp32 1e-4, "
    "--optimize 1e-3, fp16 5e-2, int8 not gated).",
)
@click.option(
    "--min-agreement",
    type=click.FloatRange(0, 100),
    help="Fail below this label agreement, in percent (default: fp32 100, --optimize 99.5, "
    "fp16 99, int8 97).",
)
@click.option(
    "--max-f1-drop",
    type=click.FloatRange(0),
    help="Fail if the metric drops by more points than this (default: fp32 0, --optimize 0.1, "
    "fp16 0.5, int8 1).",
)
@provider_option("Provider to optimize for and validate on; cuda never falls back to the CPU.")
@click.option(
    "--optimize",
    is_flag=True,
    help="Fuse with ONNX Runtime's transformer optimizer (Attention, EmbedLayerNorm, BiasGelu; "
    "SkipLayerNorm on cuda) and report fusion counts.",
)
@click.option(
    "--quantize",
    type=click.Choice(["dynamic", "static"]),
    help="int8 on the CPU: dynamic (no data) or static (calibrated on --calibration-data).",
)
@click.option(
    "--per-channel/--per-tensor",
    default=True,
    show_default=True,
    help="int8: one weight scale per output column, or one per weight.",
)
@click.option(
    "--reduce-range", is_flag=True, help="int8: 7-bit weights, for CPUs without AVX-512 VNNI."
)
@click.option(
    "--quantize-ops",
    help="int8: comma-separated op types (default: dynamic MatMul,Attention; static MatMul).",
)
@click.option(
    "--calibration-data",
    type=click.Path(path_type=Path),
    help="--quantize static: training file to draw calibration examples from (same columns as "
    "--eval).",
)
@click.option(
    "--calibration-method",
    type=click.Choice(["minmax", "percentile", "entropy"]),
    default="minmax",
    show_default=True,
    help="--quantize static: how each activation's int8 range is set from the calibration "
    "examples: minmax spans every value seen, entropy the range that keeps the values' "
    "distribution (least KL divergence), percentile clips the outer 0.001%. On the SST-2 MiniLM "
    "teacher they kept 97.9, 98.1 and 95.6% label agreement: clipping BERT's activation "
    "outliers flips labels.",
)
@click.option(
    "--calibration-examples",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="--quantize static: rows drawn from --calibration-data (a seeded shuffle) to measure "
    "the activation ranges on; more rows give ranges closer to the data's and a slower export.",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16"]),
    default="fp32",
    show_default=True,
    help="fp16 needs --provider cuda (LayerNorm/Softmax kept in fp32).",
)
@click.option(
    "--attention",
    type=click.Choice(["eager", "sdpa"]),
    default="eager",
    show_default=True,
    help="Attention implementation traced into the graph.",
)
@click.option(
    "--triton",
    "triton_repo",
    type=click.Path(path_type=Path),
    help="Also write a Triton model repository here: ONNX model, tokenizer, raw-text ensemble, "
    "client.py.",
)
@click.option(
    "--triton-max-batch-size",
    type=click.IntRange(0),
    default=32,
    show_default=True,
    help="--triton: the largest batch Triton's dynamic batcher forms from requests waiting "
    "together (config.pbtxt max_batch_size); 0 turns batching off, each request runs alone.",
)
@user_errors
def export_cmd(
    model_dir,
    eval_file,
    out,
    text_column,
    text_pair_column,
    label_column,
    no_header,
    max_length,
    opset,
    max_abs_diff,
    min_agreement,
    max_f1_drop,
    provider,
    optimize,
    quantize,
    per_channel,
    reduce_range,
    quantize_ops,
    calibration_data,
    calibration_method,
    calibration_examples,
    precision,
    attention,
    triton_repo,
    triton_max_batch_size,
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
    # onnx, onnxruntime and optimum load only when an export runs, not for every other command
    from slimbert.data import Columns
    from slimbert.export.onnx import ExportOptions, export
    from slimbert.export.optimize import OptimizeConfig
    from slimbert.export.quantize import DynamicQuantConfig, StaticQuantConfig
    from slimbert.export.triton import TritonConfig

    if not model_dir.is_dir():
        raise SlimbertError(f"--model {model_dir}: no such directory")
    ops = (
        {"op_types": tuple(o.strip() for o in quantize_ops.split(",") if o.strip())}
        if quantize_ops
        else {}
    )
    if quantize == "dynamic":
        quantizer = DynamicQuantConfig(per_channel=per_channel, reduce_range=reduce_range, **ops)
    elif quantize == "static":
        quantizer = StaticQuantConfig(
            method=calibration_method,
            calibration_file=calibration_data,
            examples=calibration_examples,
            per_channel=per_channel,
            reduce_range=reduce_range,
            **ops,
        )
    else:
        quantizer = None
    options = ExportOptions(
        optimize=OptimizeConfig.for_provider(provider) if optimize else None,
        quantize=quantizer,
        precision=precision,
        triton=TritonConfig(
            triton_repo,
            kind="gpu" if provider == "cuda" else "cpu",
            max_batch_size=triton_max_batch_size,
        )
        if triton_repo
        else None,
        attention=attention,
    )
    tolerances = options.final_tolerances().override(max_abs_diff, min_agreement, max_f1_drop)
    columns = Columns(text_column, text_pair_column, label_column, header=not no_header)
    manifest = export(
        model_dir, eval_file, out, columns, max_length, tolerances, opset, provider, options
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
    if triton_repo:
        click.echo(f"Triton repository in {triton_repo}: see its README.md")
