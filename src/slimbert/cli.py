"""slimbert's command line: train a teacher, distil students, export, bench, serve, demo.

Every command exits 0 on success and, on a problem the user can fix, prints one line on stderr
naming the thing and the fix, exits non-zero and leaves no half-written output behind.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from slimbert.errors import SlimbertError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def user_errors(command):
    """Turn SlimbertError (and Ctrl-C) into one clear line instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except SlimbertError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted; nothing was written", err=True)
            sys.exit(130)

    return wrapper


def _load_recipe(ctx: click.Context, param: click.Parameter, value: str | None):
    """A YAML recipe whose keys are the command's own flags (dashes or underscores)."""
    if value is None:
        return None
    import yaml

    path = Path(value)
    try:
        payload = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise click.BadParameter(f"{path}: cannot read the recipe ({exc})") from None
    if not isinstance(payload, dict):
        raise click.BadParameter(f"{path}: a recipe is a mapping of flag names to values")
    known = {p.name: p for p in ctx.command.params if p.name and p.name != "recipe"}
    values = {}
    for key, item in payload.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise click.BadParameter(f"{path}: unknown key {key!r}; valid keys: {', '.join(sorted(known))}")
        if isinstance(item, list) and not known[name].multiple:
            item = ",".join(str(v) for v in item)
        values[name] = item
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return path


def recipe_option(command):
    return click.option(
        "--recipe",
        type=click.Path(dir_okay=False, exists=True),
        callback=_load_recipe,
        is_eager=True,
        expose_value=False,
        help="YAML file whose keys are this command's flags; flags given on the command line win.",
    )(command)


def data_options(command):
    options = [
        click.option("--train", "train", type=click.Path(path_type=Path), required=True, help="Training file: .tsv (GLUE), .csv or .jsonl."),
        click.option("--eval", "eval_file", type=click.Path(path_type=Path), required=True, help="Evaluation file, same columns as --train."),
        click.option("--text-column", help="Column with the text (default: found from GLUE headers: sentence, #1 String, sentence1, text, ...)."),
        click.option("--text-pair-column", help="Column with the second text of a pair (default: #2 String, sentence2, ...)."),
        click.option("--label-column", help="Column with the label (default: label, Quality, score, sentiment)."),
        click.option("--no-header", is_flag=True, help="The files have no header row; name columns by 0-based position, e.g. --text-column 0."),
        click.option("--task", type=click.Choice(["classification", "regression"]), help="Default: regression when labels are decimals (STS-B)."),
        click.option("--max-length", type=click.IntRange(8, 4096), default=128, show_default=True, help="Tokens per example after truncation."),
        click.option("--limit", type=click.IntRange(1), help="Use only the first N training rows."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def train_options(command):
    options = [
        click.option("--epochs", type=click.FloatRange(0, min_open=True), default=3.0, show_default=True, help="Passes over the training set."),
        click.option("--max-steps", type=click.IntRange(1), help="Stop after N optimiser steps (overrides --epochs)."),
        click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True),
        click.option("--lr", type=click.FloatRange(0, min_open=True), default=5e-5, show_default=True, help="Peak learning rate (AdamW, linear warm-up and decay)."),
        click.option("--seed", type=int, default=42, show_default=True),
        click.option("--eval-every", type=click.IntRange(0), default=0, show_default=True, help="Evaluate every N steps; 0 = once per epoch."),
        click.option("--patience", type=click.IntRange(0), default=2, show_default=True, help="Early stop after N evaluations without improvement; 0 = never."),
        click.option("--mixed-precision", type=click.Choice(["no", "fp16", "bf16"]), default="no", show_default=True, help="GPU mixed precision (through Accelerate)."),
        click.option("--progress/--no-progress", default=True, help="Show the progress bar."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _data_spec(train, eval_file, text_column, text_pair_column, label_column, no_header, task, max_length, limit):
    from slimbert.data import Columns
    from slimbert.task import DataSpec

    columns = Columns(text_column, text_pair_column, label_column, header=not no_header)
    return DataSpec(Path(train), Path(eval_file), columns, task, max_length, limit)


def _train_config(epochs, max_steps, batch_size, lr, seed, eval_every, patience, mixed_precision, progress):
    from slimbert.compress.trainer import TrainConfig

    return TrainConfig(epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr, seed=seed, eval_every=eval_every, patience=patience, mixed_precision=mixed_precision, progress=progress)


def _split(kwargs: dict, names: tuple[str, ...]) -> dict:
    return {name: kwargs.pop(name) for name in names}


DATA_KEYS = ("train", "eval_file", "text_column", "text_pair_column", "label_column", "no_header", "task", "max_length", "limit")
TRAIN_KEYS = ("epochs", "max_steps", "batch_size", "lr", "seed", "eval_every", "patience", "mixed_precision", "progress")


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="slimbert")
def cli():
    """Distil a fine-tuned BERT-family classifier into smaller students, export them to ONNX,
    and measure latency against F1.

    \b
    A typical path:
      slimbert train-teacher --base minilm-l6 --train train.tsv --eval dev.tsv --out runs/teacher
      slimbert compress kd --teacher runs/teacher --train train.tsv --eval dev.tsv --layers 3 --out runs/kd3
      slimbert export --model runs/kd3 --eval dev.tsv --out runs/kd3-onnx
      slimbert bench --model runs/teacher --model runs/kd3 --eval dev.tsv --out runs/bench
    """


@cli.command("train-teacher", context_settings=CONTEXT)
@recipe_option
@click.option("--base", required=True, help="Base checkpoint: a local Hugging Face directory, or 'minilm-l6' for the bundled MiniLM.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Directory to write the teacher to (replaced only on success).")
@data_options
@train_options
@user_errors
def train_teacher_cmd(base, out, **kwargs):
    """Fine-tune a base checkpoint into the teacher.

    Saves an HF model directory (config.json with id2label, model.safetensors, tokenizer) and
    slimbert.json (data hashes, metric, seed, library versions). The best checkpoint on --eval is
    kept. Runs through Accelerate: `accelerate launch -m slimbert train-teacher ...` scales to GPUs.
    """
    from slimbert.teacher import train_teacher

    spec = _data_spec(**_split(kwargs, DATA_KEYS))
    config = _train_config(**_split(kwargs, TRAIN_KEYS))
    result, metadata = train_teacher(base, spec, out, config)
    click.echo(f"teacher saved to {out}: " + ", ".join(f"{k} {v:.2f}" for k, v in metadata["metric"].items()) + f" (best at step {result.best_step} of {result.steps})")


@cli.group(context_settings=CONTEXT)
def compress():
    """Distil a teacher into a smaller student. One subcommand per method."""


@compress.command("kd", context_settings=CONTEXT)
@recipe_option
@click.option("--teacher", type=click.Path(path_type=Path), required=True, help="Teacher directory (from train-teacher).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Directory to write the student to.")
@click.option("--layers", type=click.IntRange(1), default=3, show_default=True, help="Student depth; layers are picked evenly from the teacher, top layer kept (6→3 keeps 1, 3, 5).")
@click.option("--temperature", type=click.FloatRange(0, min_open=True), default=2.0, show_default=True, help="Softmax temperature T of the soft loss (scaled by T²).")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Weight of the soft loss; 1 − alpha goes to the hard labels.")
@data_options
@train_options
@user_errors
def kd_cmd(teacher, out, layers, temperature, alpha, **kwargs):
    """Hinton logit distillation into a student built from the teacher's own layers."""
    from slimbert.compress import kd

    spec = _data_spec(**_split(kwargs, DATA_KEYS))
    config = _train_config(**_split(kwargs, TRAIN_KEYS))
    result, metadata = kd.run(teacher, spec, out, kd.KDConfig(layers, temperature, alpha), config)
    click.echo(f"student saved to {out}: " + ", ".join(f"{k} {v:.2f}" for k, v in metadata["metric"].items()) + f" (teacher: " + ", ".join(f"{k} {v:.2f}" for k, v in metadata["teacher_metric"].items()) + ")")


@cli.command("export", context_settings=CONTEXT)
@recipe_option
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True, help="Model directory to export.")
@click.option("--eval", "eval_file", type=click.Path(path_type=Path), required=True, help="Eval file for the parity check (every row is used).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Export folder (loads in ONNX Runtime and optimum's ORTModel).")
@click.option("--text-column")
@click.option("--text-pair-column")
@click.option("--label-column")
@click.option("--no-header", is_flag=True)
@click.option("--max-length", type=click.IntRange(8, 4096), help="Default: the model's training max length.")
@click.option("--opset", type=click.IntRange(11), help="ONNX opset (default: optimum's choice).")
@click.option("--max-abs-diff", type=float, default=1e-4, show_default=True, help="Fail if any |ONNX − PyTorch| logit exceeds this.")
@click.option("--min-agreement", type=click.FloatRange(0, 100), default=100.0, show_default=True, help="Fail below this label agreement, in percent.")
@click.option("--max-f1-drop", type=click.FloatRange(0), default=0.0, show_default=True, help="Fail if the metric drops by more points than this.")
@user_errors
def export_cmd(model_dir, eval_file, out, text_column, text_pair_column, label_column, no_header, max_length, opset, max_abs_diff, min_agreement, max_f1_drop):
    """Export a model to ONNX and validate it against PyTorch on the whole eval file.

    The manifest.json in the folder records inputs, outputs, opset, parity figures and file
    hashes. Past any tolerance the command fails and writes nothing.
    """
    from slimbert.data import Columns
    from slimbert.export.onnx import Tolerances, export

    if not model_dir.is_dir():
        raise SlimbertError(f"--model {model_dir}: no such directory")
    manifest = export(model_dir, eval_file, out, Columns(text_column, text_pair_column, label_column, header=not no_header), max_length, Tolerances(max_abs_diff, min_agreement, max_f1_drop), opset)
    v = manifest["validation"]
    click.echo(f"exported to {out}: max |Δlogit| {v['max_abs_diff']:.2e}, label agreement {v['label_agreement']:.2f}%, Δ{v['metric_name']} {v['delta_metric']:+.2f} on {v['examples']} examples")


def _int_list(ctx, param, value):
    if value is None or isinstance(value, list):
        return value
    try:
        sizes = [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give comma-separated whole numbers, e.g. 1,8") from None
    if not sizes or any(s < 1 for s in sizes):
        raise click.BadParameter(f"{value!r}: sizes must be ≥ 1")
    return sizes


@cli.command("bench", context_settings=CONTEXT)
@recipe_option
@click.option("--model", "models", type=click.Path(path_type=Path), multiple=True, required=True, help="Model or export directory; repeat for several. HF directories are timed in PyTorch and as a validated ONNX export.")
@click.option("--eval", "eval_file", type=click.Path(path_type=Path), required=True, help="Eval file: one request per example, in file order.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Report folder: report.md, report.json, report.csv, pareto.png.")
@click.option("--provider", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="ONNX Runtime provider; cuda fails clearly when CUDAExecutionProvider is missing.")
@click.option("--batch-sizes", callback=_int_list, default="1", show_default=True, help="Comma-separated request sizes.")
@click.option("--threads", type=click.IntRange(1), help="Intra-op threads (default: all cores).")
@click.option("--warmup", type=click.IntRange(0), default=20, show_default=True, help="Uncounted requests before timing.")
@click.option("--limit", type=click.IntRange(1), help="Only the first N eval examples.")
@click.option("--max-length", type=click.IntRange(8, 4096), help="Default: each model's training max length.")
@click.option("--runtime", "runtimes", type=click.Choice(["pytorch", "onnx"]), multiple=True, help="Runtimes to time (default: both).")
@click.option("--text-column")
@click.option("--text-pair-column")
@click.option("--label-column")
@click.option("--no-header", is_flag=True)
@click.option("--in-process", is_flag=True, help="Time every model in this process (faster, but peak memory is shared).")
@user_errors
def bench_cmd(models, eval_file, out, provider, batch_sizes, threads, warmup, limit, max_length, runtimes, text_column, text_pair_column, label_column, no_header, in_process):
    """Time each model one request at a time and report latency against F1.

    \b
    Example:
      slimbert bench --model runs/teacher --model runs/kd3 --eval dev.tsv --out runs/bench --batch-sizes 1,8
    """
    from slimbert.bench import BenchConfig, bench
    from slimbert.data import Columns
    from slimbert.report import write_report

    config = BenchConfig(provider, batch_sizes, threads, warmup, limit, max_length, not in_process, tuple(runtimes) or ("pytorch", "onnx"))
    report = bench([Path(m) for m in models], eval_file, out, Columns(text_column, text_pair_column, label_column, header=not no_header), config)
    path = write_report(report, out)
    click.echo(path.read_text().split("\n## Details")[0].split("\n\n", 2)[-1])
    click.echo(f"report written to {path}")


@cli.command("demo", context_settings=CONTEXT)
@click.option("--quick", is_flag=True, help="A small run that finishes within 10 minutes on 2 CPU cores.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True, help="Where the data split, models, exports and report go.")
@click.option("--seed", type=int, default=42, show_default=True)
@user_errors
def demo_cmd(quick, out, seed):
    """Offline end to end on the bundled MiniLM and tweet corpus: teacher, 3/2/1-layer kd
    students, ONNX exports, bench report."""
    from slimbert.demo import run_demo

    report_path = run_demo(out, quick=quick, seed=seed)
    click.echo(f"demo report: {report_path}")


def main() -> None:
    cli(prog_name="slimbert")


if __name__ == "__main__":
    main()
