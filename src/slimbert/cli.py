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
    # A key is a flag's long name without dashes (`eval`, `max-length` or `max_length`).
    known: dict[str, click.Parameter] = {}
    for param in ctx.command.params:
        if param.name in (None, "recipe"):
            continue
        for opt in param.opts:
            if opt.startswith("--"):
                known[opt[2:].replace("-", "_")] = param
    values = {}
    for key, item in payload.items():
        param = known.get(str(key).replace("-", "_"))
        if param is None:
            valid = sorted({k.replace("_", "-") for k in known})
            raise click.BadParameter(f"{path}: unknown key {key!r}; valid keys: {', '.join(valid)}")
        if isinstance(item, list) and not param.multiple:
            item = ",".join(str(v) for v in item)
        values[param.name] = item
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
        click.option("--sample-seed", type=int, help="Shuffle the training rows with this seed before --limit (a seeded subset)."),
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


def _data_spec(train, eval_file, text_column, text_pair_column, label_column, no_header, task, max_length, limit, sample_seed):
    from slimbert.data import Columns
    from slimbert.task import DataSpec

    columns = Columns(text_column, text_pair_column, label_column, header=not no_header)
    return DataSpec(Path(train), Path(eval_file), columns, task, max_length, limit, sample_seed)


def _train_config(epochs, max_steps, batch_size, lr, seed, eval_every, patience, mixed_precision, progress):
    from slimbert.compress.trainer import TrainConfig

    return TrainConfig(epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr, seed=seed, eval_every=eval_every, patience=patience, mixed_precision=mixed_precision, progress=progress)


def _split(kwargs: dict, names: tuple[str, ...]) -> dict:
    return {name: kwargs.pop(name) for name in names}


DATA_KEYS = ("train", "eval_file", "text_column", "text_pair_column", "label_column", "no_header", "task", "max_length", "limit", "sample_seed")
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
    click.echo(f"student saved to {out}: " + ", ".join(f"{k} {v:.2f}" for k, v in metadata["metric"].items()) + " (teacher: " + ", ".join(f"{k} {v:.2f}" for k, v in metadata["teacher_metric"].items()) + ")")


def _student_line(out, metadata: dict) -> str:
    def figures(values: dict) -> str:
        return ", ".join(f"{k} {v:.2f}" for k, v in values.items())

    return f"student saved to {out}: {figures(metadata['metric'])} (teacher: {figures(metadata['teacher_metric'])})"


def student_shape_options(command):
    """Depth and width of a transformer student; unset widths keep the teacher's."""
    options = [
        click.option("--layers", type=click.IntRange(1), default=3, show_default=True, help="Student depth."),
        click.option("--hidden-size", type=click.IntRange(1), help="Student hidden size (default: the teacher's); narrower students get fresh embeddings."),
        click.option("--heads", type=click.IntRange(1), help="Student attention heads (default: the teacher's); must divide the hidden size."),
        click.option("--ffn-size", type=click.IntRange(1), help="Student feed-forward size (default: the teacher's)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@compress.command("tinybert", context_settings=CONTEXT)
@recipe_option
@click.option("--teacher", type=click.Path(path_type=Path), required=True, help="Teacher directory (from train-teacher).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Directory to write the student to.")
@student_shape_options
@click.option("--layer-map", default="uniform", show_default=True, help="uniform, top, bottom, or explicit student:teacher pairs like 0:1,1:3,2:5 (0-based).")
@click.option("--temperature", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True, help="Temperature of the prediction-layer soft loss.")
@click.option("--embedding-weight", type=click.FloatRange(0), default=1.0, show_default=True, help="Weight of the embedding-output MSE.")
@click.option("--attention-weight", type=click.FloatRange(0), default=1.0, show_default=True, help="Weight of the pre-softmax attention-score MSE.")
@click.option("--hidden-weight", type=click.FloatRange(0), default=1.0, show_default=True, help="Weight of the hidden-state MSE.")
@click.option("--intermediate-epochs", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True, help="Epochs of intermediate-layer distillation (--epochs is the prediction stage's).")
@click.option("--intermediate-lr", type=click.FloatRange(0, min_open=True), help="Learning rate of the layer-distillation stages (default: --lr).")
@click.option("--general-text", type=click.Path(path_type=Path, dir_okay=False), help="Plain text file, one text per line: general distillation on it first.")
@click.option("--general-epochs", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True, help="Epochs of general distillation.")
@click.option("--augment/--no-augment", default=False, show_default=True, help="Add TinyBERT-style augmented copies of the training set, labelled by the teacher.")
@click.option("--augment-copies", type=click.IntRange(1), default=20, show_default=True, help="N augmented copies per training example.")
@click.option("--augment-prob", type=click.FloatRange(0, 1, min_open=True), default=0.4, show_default=True, help="Chance p that each replaceable word is replaced.")
@click.option("--augment-top-k", type=click.IntRange(1), default=15, show_default=True, help="Replacement candidates per word.")
@click.option("--augment-mlm", help="Base model with a masked-LM head for replacements (default: the teacher's embedding neighbours).")
@data_options
@train_options
@user_errors
def tinybert_cmd(teacher, out, layers, hidden_size, heads, ffn_size, layer_map, temperature, embedding_weight, attention_weight, hidden_weight, intermediate_epochs, intermediate_lr, general_text, general_epochs, augment, augment_copies, augment_prob, augment_top_k, augment_mlm, **kwargs):
    """TinyBERT: embedding, attention-score and hidden-state distillation, then soft logits.

    --max-steps caps every stage (general, intermediate, prediction).
    """
    from slimbert.compress import tinybert

    spec = _data_spec(**_split(kwargs, DATA_KEYS))
    config = _train_config(**_split(kwargs, TRAIN_KEYS))
    method = tinybert.TinyBERTConfig(layers, hidden_size, heads, ffn_size, layer_map, temperature, embedding_weight, attention_weight, hidden_weight, intermediate_epochs, intermediate_lr, general_text, general_epochs, augment, augment_copies, augment_prob, augment_top_k, augment_mlm)
    result, metadata = tinybert.run(teacher, spec, out, method, config)
    click.echo(_student_line(out, metadata))


@compress.command("theseus", context_settings=CONTEXT)
@recipe_option
@click.option("--teacher", type=click.Path(path_type=Path), required=True, help="Teacher directory (from train-teacher).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Directory to write the student to.")
@click.option("--layers", type=click.IntRange(1), default=3, show_default=True, help="Successor depth; the teacher is split into this many modules.")
@click.option("--replace-rate", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True, help="Replacement probability p (constant) or its start b (linear).")
@click.option("--schedule", type=click.Choice(["constant", "linear"]), default="constant", show_default=True, help="constant p, or the curriculum p(t) = min(1, k·t + b).")
@click.option("--linear-k", type=click.FloatRange(0, min_open=True), help="k of the linear curriculum (default: reach p = 1 on the last replacing step).")
@click.option("--finetune-epochs", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True, help="Most epochs of successor-only fine-tuning; it stops when the metric stops improving (--patience).")
@click.option("--init", type=click.Choice(["module-top", "first"]), default="module-top", show_default=True, help="Successor layer i copies the top layer of module i, or teacher layer i.")
@data_options
@train_options
@user_errors
def theseus_cmd(teacher, out, layers, replace_rate, schedule, linear_k, finetune_epochs, init, **kwargs):
    """BERT-of-Theseus: progressive module replacement, then successor-only fine-tuning.

    --epochs is the replacing stage's; --max-steps caps both stages.
    """
    from slimbert.compress import theseus

    spec = _data_spec(**_split(kwargs, DATA_KEYS))
    config = _train_config(**_split(kwargs, TRAIN_KEYS))
    result, metadata = theseus.run(teacher, spec, out, theseus.TheseusConfig(layers, replace_rate, schedule, linear_k, finetune_epochs, init), config)
    click.echo(_student_line(out, metadata))


@compress.command("minilm", context_settings=CONTEXT)
@recipe_option
@click.option("--teacher", type=click.Path(path_type=Path), required=True, help="Teacher directory (from train-teacher).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Directory to write the student to.")
@student_shape_options
@click.option("--teacher-layer", type=int, default=-1, show_default=True, help="0-based teacher layer whose Q/K/V relations are distilled; -1 = the last.")
@click.option("--relation-heads", type=click.IntRange(1), help="Relation heads R (default: the teacher's head count); must divide both hidden sizes.")
@click.option("--relation-epochs", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True, help="Epochs of relation distillation (--epochs is the prediction stage's).")
@click.option("--relation-lr", type=click.FloatRange(0, min_open=True), help="Learning rate of relation distillation (default: --lr).")
@click.option("--temperature", type=click.FloatRange(0, min_open=True), default=2.0, show_default=True, help="Temperature of the prediction-stage soft loss.")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Weight of the prediction-stage soft loss; 1 − alpha goes to the hard labels.")
@data_options
@train_options
@user_errors
def minilm_cmd(teacher, out, layers, hidden_size, heads, ffn_size, teacher_layer, relation_heads, relation_epochs, relation_lr, temperature, alpha, **kwargs):
    """MiniLMv2: Q-Q, K-K and V-V relation distillation of one teacher layer into the student's
    last layer, then soft-logit KD. Width and head count are free.

    --max-steps caps both stages.
    """
    from slimbert.compress import minilm

    spec = _data_spec(**_split(kwargs, DATA_KEYS))
    config = _train_config(**_split(kwargs, TRAIN_KEYS))
    method = minilm.MiniLMConfig(layers, hidden_size, heads, ffn_size, teacher_layer, relation_heads, relation_epochs, relation_lr, temperature, alpha)
    result, metadata = minilm.run(teacher, spec, out, method, config)
    click.echo(_student_line(out, metadata))


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


@cli.command("serve", context_settings=CONTEXT)
@recipe_option
@click.argument("export_dir", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 to accept connections from other machines.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--name", help="Model name in responses (default: the folder's name).")
@click.option("--provider", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="ONNX Runtime provider; cuda fails clearly when CUDAExecutionProvider is missing.")
@click.option("--threads", type=click.IntRange(1), help="ONNX Runtime intra-op threads (default: all cores).")
@click.option("--max-batch-size", type=click.IntRange(1), default=32, show_default=True, help="Most texts per model call, gathered across concurrent requests.")
@click.option("--max-wait-ms", type=click.FloatRange(0), default=2.0, show_default=True, help="Longest the oldest waiting text waits for a batch to fill.")
@click.option("--max-queue", type=click.IntRange(1), default=4096, show_default=True, help="Most texts waiting at once; beyond it requests get 503 overloaded.")
@click.option("--max-items", type=click.IntRange(1), default=256, show_default=True, help="Most texts (or pairs) in one request.")
@click.option("--max-body-bytes", type=click.IntRange(1), default=1 << 20, show_default=True, help="Largest request body.")
@click.option("--max-text-chars", type=click.IntRange(1), default=20_000, show_default=True, help="Longest text in characters (token overflow is truncated, not refused).")
@click.option("--warm-up/--no-warm-up", default=True, help="Run a batch before /readyz reports ready.")
@click.option("--graceful-timeout", type=click.FloatRange(0), default=30.0, show_default=True, help="Seconds to let in-flight requests finish after SIGTERM.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info", show_default=True)
@click.option("--access-log/--no-access-log", default=False, help="Log every request (costs throughput).")
@user_errors
def serve_cmd(export_dir, host, port, name, provider, threads, max_batch_size, max_wait_ms, max_queue, max_items, max_body_bytes, max_text_chars, warm_up, graceful_timeout, log_level, access_log):
    """Serve an export folder over HTTP: POST /v1/predict, /healthz, /readyz, /metrics, /docs.

    \b
    Example:
      slimbert serve runs/kd3-onnx --port 8000
      curl -s localhost:8000/v1/predict -H 'Content-Type: application/json' -d '{"texts": ["a gripping film"]}'
    """
    try:
        import uvicorn

        from slimbert.serve import ServeConfig, ServedModel, create_app
    except ImportError as exc:
        raise SlimbertError(f"serving needs {exc.name}; install it with `pip install -e .[serve]`") from None
    if max_queue < max_batch_size:
        raise SlimbertError(f"--max-queue {max_queue} is below --max-batch-size {max_batch_size}; raise --max-queue")
    model = ServedModel(export_dir, provider, threads, name)
    config = ServeConfig(max_batch_size, max_wait_ms, max_queue, max_items, max_body_bytes, max_text_chars, warm_up)
    click.echo(f"serving {model.identity.name} (sha256 {model.identity.sha256[:12]}, {model.identity.task}, inputs: {model.identity.inputs}) on http://{host}:{port}", err=True)
    uvicorn.run(create_app(model, config), host=host, port=port, log_level=log_level, access_log=access_log, timeout_graceful_shutdown=graceful_timeout, lifespan="on")


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
