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
        elif param.multiple and not isinstance(item, list):
            item = [item]  # `teacher: runs/t` for a repeatable flag
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
        click.option(
            "--train",
            "train",
            type=click.Path(path_type=Path),
            required=True,
            help="Training file: .tsv (GLUE), .csv or .jsonl.",
        ),
        click.option(
            "--eval",
            "eval_file",
            type=click.Path(path_type=Path),
            required=True,
            help="Evaluation file, same columns as --train.",
        ),
        click.option(
            "--text-column",
            help="Column with the text (default: found from GLUE headers: sentence, #1 String, sentence1, text, ...).",
        ),
        click.option(
            "--text-pair-column",
            help="Column with the second text of a pair (default: #2 String, sentence2, ...).",
        ),
        click.option(
            "--label-column",
            help="Column with the label (default: label, Quality, score, sentiment).",
        ),
        click.option(
            "--no-header",
            is_flag=True,
            help="The files have no header row; name columns by 0-based position, e.g. --text-column 0.",
        ),
        click.option(
            "--task",
            type=click.Choice(["classification", "regression"]),
            help="Default: regression when labels are decimals (STS-B).",
        ),
        click.option(
            "--max-length",
            type=click.IntRange(8, 4096),
            default=128,
            show_default=True,
            help="Tokens per example after truncation.",
        ),
        click.option("--limit", type=click.IntRange(1), help="Use only the first N training rows."),
        click.option(
            "--sample-seed",
            type=int,
            help="Shuffle the training rows with this seed before --limit (a seeded subset).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def train_options(command):
    options = [
        click.option(
            "--epochs",
            type=click.FloatRange(0, min_open=True),
            default=3.0,
            show_default=True,
            help="Passes over the training set.",
        ),
        click.option(
            "--max-steps",
            type=click.IntRange(1),
            help="Stop after N optimiser steps (overrides --epochs).",
        ),
        click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True),
        click.option(
            "--lr",
            type=click.FloatRange(0, min_open=True),
            default=5e-5,
            show_default=True,
            help="Peak learning rate (AdamW, linear warm-up and decay).",
        ),
        click.option("--seed", type=int, default=42, show_default=True),
        click.option(
            "--eval-every",
            type=click.IntRange(0),
            default=0,
            show_default=True,
            help="Evaluate every N steps; 0 = once per epoch.",
        ),
        click.option(
            "--patience",
            type=click.IntRange(0),
            default=2,
            show_default=True,
            help="Early stop after N evaluations without improvement; 0 = never.",
        ),
        click.option(
            "--mixed-precision",
            type=click.Choice(["no", "fp16", "bf16"]),
            default="no",
            show_default=True,
            help="Mixed precision through Accelerate: fp16 on GPUs; bf16 on GPUs and on CPUs with AVX-512 BF16 or AMX (about 2x faster training there).",
        ),
        click.option(
            "--group-by-length/--no-group-by-length",
            default=False,
            show_default=True,
            help="Batch training rows of similar length together: less padding, a third less compute on MRPC.",
        ),
        click.option("--progress/--no-progress", default=True, help="Show the progress bar."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _data_spec(
    train,
    eval_file,
    text_column,
    text_pair_column,
    label_column,
    no_header,
    task,
    max_length,
    limit,
    sample_seed,
):
    from slimbert.batches import DataSpec
    from slimbert.data import Columns

    columns = Columns(text_column, text_pair_column, label_column, header=not no_header)
    return DataSpec(Path(train), Path(eval_file), columns, task, max_length, limit, sample_seed)


def _train_config(
    epochs,
    max_steps,
    batch_size,
    lr,
    seed,
    eval_every,
    patience,
    mixed_precision,
    group_by_length,
    progress,
):
    from slimbert.training.loop import TrainConfig

    return TrainConfig(
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        eval_every=eval_every,
        patience=patience,
        mixed_precision=mixed_precision,
        group_by_length=group_by_length,
        progress=progress,
    )


def _split(kwargs: dict, names: tuple[str, ...]) -> dict:
    return {name: kwargs.pop(name) for name in names}


DATA_KEYS = (
    "train",
    "eval_file",
    "text_column",
    "text_pair_column",
    "label_column",
    "no_header",
    "task",
    "max_length",
    "limit",
    "sample_seed",
)
TRAIN_KEYS = (
    "epochs",
    "max_steps",
    "batch_size",
    "lr",
    "seed",
    "eval_every",
    "patience",
    "mixed_precision",
    "group_by_length",
    "progress",
)


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
@click.option(
    "--base",
    required=True,
    help="Base checkpoint: a local Hugging Face directory, or 'minilm-l6' for the bundled MiniLM.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Directory to write the teacher to (replaced only on success).",
)
@click.option(
    "--save-route",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Also keep K checkpoints at evenly spaced steps under OUT/route/step-N, for --teacher-route (route-constrained distillation).",
)
@data_options
@train_options
@user_errors
def train_teacher_cmd(base, out, save_route, **kwargs):
    """Fine-tune a base checkpoint into the teacher.

    Saves an HF model directory (config.json with id2label, model.safetensors, tokenizer) and
    slimbert.json (data hashes, metric, seed, library versions). The best checkpoint on --eval is
    kept. Runs through Accelerate: `accelerate launch -m slimbert train-teacher ...` scales to GPUs.
    """
    from slimbert.teachers.train import train_teacher

    spec = _data_spec(**_split(kwargs, DATA_KEYS))
    config = _train_config(**_split(kwargs, TRAIN_KEYS))
    result, metadata = train_teacher(base, spec, out, config, save_route=save_route)
    click.echo(
        f"teacher saved to {out}: "
        + ", ".join(f"{k} {v:.2f}" for k, v in metadata["metric"].items())
        + f" (best at step {result.best_step} of {result.steps})"
    )


@cli.group(context_settings=CONTEXT)
def compress():
    """Distil a teacher into a smaller student. One subcommand per method."""


@compress.command("kd", context_settings=CONTEXT)
@recipe_option
@click.option(
    "--teacher",
    type=click.Path(path_type=Path),
    required=True,
    help="Teacher directory (from train-teacher), or a professor (professor boost's ensemble, or a PS-DA teacher).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Directory to write the student to.",
)
@click.option(
    "--layers",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Student depth; layers are picked evenly from the teacher, top layer kept (6→3 keeps 1, 3, 5).",
)
@click.option(
    "--temperature",
    type=click.FloatRange(0, min_open=True),
    default=2.0,
    show_default=True,
    help="Softmax temperature T of the soft loss (scaled by T²).",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Weight of the soft loss; 1 − alpha goes to the hard labels.",
)
@click.option(
    "--student-init",
    type=click.Path(path_type=Path),
    help="Start the student's embeddings and encoder from this pre-trained student (from pretrain-student, same --layers).",
)
@click.option(
    "--teacher-route",
    type=click.Path(path_type=Path),
    help="The teacher's route (train-teacher --save-route): distil from its checkpoints in order, splitting the step budget, before the teacher.",
)
@data_options
@train_options
@user_errors
def kd_cmd(teacher, out, layers, temperature, alpha, student_init, teacher_route, **kwargs):
    """Hinton logit distillation into a student built from the teacher's own layers."""
    from slimbert.compress import kd

    spec = _data_spec(**_split(kwargs, DATA_KEYS))
    config = _train_config(**_split(kwargs, TRAIN_KEYS))
    result, metadata = kd.run(
        teacher,
        spec,
        out,
        kd.KDConfig(layers, temperature, alpha),
        config,
        student_init=student_init,
        route=teacher_route,
    )
    click.echo(
        f"student saved to {out}: "
        + ", ".join(f"{k} {v:.2f}" for k, v in metadata["metric"].items())
        + " (teacher: "
        + ", ".join(f"{k} {v:.2f}" for k, v in metadata["teacher_metric"].items())
        + ")"
    )


def _student_line(out, metadata: dict) -> str:
    def figures(values: dict) -> str:
        return ", ".join(f"{k} {v:.2f}" for k, v in values.items())

    return f"student saved to {out}: {figures(metadata['metric'])} (teacher: {figures(metadata['teacher_metric'])})"


def student_shape_options(command):
    """Depth and width of a transformer student; unset widths keep the teacher's."""
    options = [
        click.option(
            "--layers", type=click.IntRange(1), default=3, show_default=True, help="Student depth."
        ),
        click.option(
            "--hidden-size",
            type=click.IntRange(1),
            help="Student hidden size (default: the teacher's); narrower students get fresh embeddings.",
        ),
        click.option(
            "--heads",
            type=click.IntRange(1),
            help="Student attention heads (default: the teacher's); must divide the hidden size.",
        ),
        click.option(
            "--ffn-size",
            type=click.IntRange(1),
            help="Student feed-forward size (default: the teacher's).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@compress.command("tinybert", context_settings=CONTEXT)
@recipe_option
@click.option(
    "--teacher",
    type=click.Path(path_type=Path),
    required=True,
    help="Teacher directory (from train-teacher).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Directory to write the student to.",
)
@student_shape_options
@click.option(
    "--layer-map",
    default="uniform",
    show_default=True,
    help="uniform, top, bottom, or explicit student:teacher pairs like 0:1,1:3,2:5 (0-based).",
)
@click.option(
    "--temperature",
    type=click.FloatRange(0, min_open=True),
    default=1.0,
    show_default=True,
    help="Temperature of the prediction-layer soft loss.",
)
@click.option(
    "--embedding-weight",
    type=click.FloatRange(0),
    default=1.0,
    show_default=True,
    help="Weight of the embedding-output MSE.",
)
@click.option(
    "--attention-weight",
    type=click.FloatRange(0),
    default=1.0,
    show_default=True,
    help="Weight of the pre-softmax attention-score MSE.",
)
@click.option(
    "--hidden-weight",
    type=click.FloatRange(0),
    default=1.0,
    show_default=True,
    help="Weight of the hidden-state MSE.",
)
@click.option(
    "--intermediate-epochs",
    type=click.FloatRange(0, min_open=True),
    default=10.0,
    show_default=True,
    help="Epochs of intermediate-layer distillation (--epochs is the prediction stage's).",
)
@click.option(
    "--intermediate-lr",
    type=click.FloatRange(0, min_open=True),
    help="Learning rate of the layer-distillation stages (default: --lr).",
)
@click.option(
    "--general-text",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Plain text file, one text per line: general distillation on it first.",
)
@click.option(
    "--general-epochs",
    type=click.FloatRange(0, min_open=True),
    default=1.0,
    show_default=True,
    help="Epochs of general distillation.",
)
@click.option(
    "--augment/--no-augment",
    default=False,
    show_default=True,
    help="Add TinyBERT-style augmented copies of the training set, labelled by the teacher.",
)
@click.option(
    "--augment-copies",
    type=click.IntRange(1),
    default=20,
    show_default=True,
    help="N augmented copies per training example.",
)
@click.option(
    "--augment-prob",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.4,
    show_default=True,
    help="Chance p that each replaceable word is replaced.",
)
@click.option(
    "--augment-top-k",
    type=click.IntRange(1),
    default=15,
    show_default=True,
    help="Replacement candidates per word.",
)
@click.option(
    "--augment-mlm",
    help="Base model with a masked-LM head for replacements (default: the teacher's embedding neighbours).",
)
@click.option(
    "--teacher-route",
    type=click.Path(path_type=Path),
    help="The teacher's route (train-teacher --save-route): the prediction stage distils from its checkpoints in order, splitting its step budget, before the teacher.",
)
@data_options
@train_options
@user_errors
def tinybert_cmd(
    teacher,
    out,
    layers,
    hidden_size,
    heads,
    ffn_size,
    layer_map,
    temperature,
    embedding_weight,
    attention_weight,
    hidden_weight,
    intermediate_epochs,
    intermediate_lr,
    general_text,
    general_epochs,
    augment,
    augment_copies,
    augment_prob,
    augment_top_k,
    augment_mlm,
    teacher_route,
    **kwargs,
):
    """TinyBERT: embedding, attention-score and hidden-state distillation, then soft logits.

    --max-steps caps every stage (general, intermediate, prediction).
    """
    from slimbert.compress import tinybert

    spec = _data_spec(**_split(kwargs, DATA_KEYS))
    config = _train_config(**_split(kwargs, TRAIN_KEYS))
    method = tinybert.TinyBERTConfig(
        layers,
        hidden_size,
        heads,
        ffn_size,
        layer_map,
        temperature,
        embedding_weight,
        attention_weight,
        hidden_weight,
        intermediate_epochs,
        intermediate_lr,
        general_text,
        general_epochs,
        augment,
        augment_copies,
        augment_prob,
        augment_top_k,
        augment_mlm,
    )
    result, metadata = tinybert.run(teacher, spec, out, method, config, route=teacher_route)
    click.echo(_student_line(out, metadata))


@compress.command("theseus", context_settings=CONTEXT)
@recipe_option
@click.option(
    "--teacher",
    type=click.Path(path_type=Path),
    required=True,
    help="Teacher directory (from train-teacher).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Directory to write the student to.",
)
@click.option(
    "--layers",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Successor depth; the teacher is split into this many modules.",
)
@click.option(
    "--replace-rate",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.5,
    show_default=True,
    help="Replacement probability p (constant) or its start b (linear).",
)
@click.option(
    "--schedule",
    type=click.Choice(["constant", "linear"]),
    default="constant",
    show_default=True,
    help="constant p, or the curriculum p(t) = min(1, k·t + b).",
)
@click.option(
    "--linear-k",
    type=click.FloatRange(0, min_open=True),
    help="k of the linear curriculum (default: reach p = 1 on the last replacing step).",
)
@click.option(
    "--finetune-epochs",
    type=click.FloatRange(0, min_open=True),
    default=10.0,
    show_default=True,
    help="Most epochs of successor-only fine-tuning; it stops when the metric stops improving (--patience).",
)
@click.option(
    "--init",
    type=click.Choice(["module-top", "first"]),
    default="module-top",
    show_default=True,
    help="Successor layer i copies the top layer of module i, or teacher layer i.",
)
@data_options
@train_options
@user_errors
def theseus_cmd(
    teacher, out, layers, replace_rate, schedule, linear_k, finetune_epochs, init, **kwargs
):
    """BERT-of-Theseus: progressive module replacement, then successor-only fine-tuning.

    --epochs is the replacing stage's; --max-steps caps both stages.
    """
    from slimbert.compress import theseus

    spec = _data_spec(**_split(kwargs, DATA_KEYS))
    config = _train_config(**_split(kwargs, TRAIN_KEYS))
    result, metadata = theseus.run(
        teacher,
        spec,
        out,
        theseus.TheseusConfig(layers, replace_rate, schedule, linear_k, finetune_epochs, init),
        config,
    )
    click.echo(_student_line(out, metadata))


@compress.command("minilm", context_settings=CONTEXT)
@recipe_option
@click.option(
    "--teacher",
    type=click.Path(path_type=Path),
    required=True,
    help="Teacher directory (from train-teacher).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Directory to write the student to.",
)
@student_shape_options
@click.option(
    "--teacher-layer",
    type=int,
    default=-1,
    show_default=True,
    help="0-based teacher layer whose Q/K/V relations are distilled; -1 = the last.",
)
@click.option(
    "--relation-heads",
    type=click.IntRange(1),
    help="Relation heads R (default: the teacher's head count); must divide both hidden sizes.",
)
@click.option(
    "--relation-epochs",
    type=click.FloatRange(0, min_open=True),
    default=10.0,
    show_default=True,
    help="Epochs of relation distillation (--epochs is the prediction stage's).",
)
@click.option(
    "--relation-lr",
    type=click.FloatRange(0, min_open=True),
    help="Learning rate of relation distillation (default: --lr).",
)
@click.option(
    "--temperature",
    type=click.FloatRange(0, min_open=True),
    default=2.0,
    show_default=True,
    help="Temperature of the prediction-stage soft loss.",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Weight of the prediction-stage soft loss; 1 − alpha goes to the hard labels.",
)
@click.option(
    "--teacher-route",
    type=click.Path(path_type=Path),
    help="The teacher's route (train-teacher --save-route): the prediction stage distils from its checkpoints in order, splitting its step budget, before the teacher.",
)
@data_options
@train_options
@user_errors
def minilm_cmd(
    teacher,
    out,
    layers,
    hidden_size,
    heads,
    ffn_size,
    teacher_layer,
    relation_heads,
    relation_epochs,
    relation_lr,
    temperature,
    alpha,
    teacher_route,
    **kwargs,
):
    """MiniLMv2: Q-Q, K-K and V-V relation distillation of one teacher layer into the student's
    last layer, then soft-logit KD. Width and head count are free.

    --max-steps caps both stages.
    """
    from slimbert.compress import minilm

    spec = _data_spec(**_split(kwargs, DATA_KEYS))
    config = _train_config(**_split(kwargs, TRAIN_KEYS))
    method = minilm.MiniLMConfig(
        layers,
        hidden_size,
        heads,
        ffn_size,
        teacher_layer,
        relation_heads,
        relation_epochs,
        relation_lr,
        temperature,
        alpha,
    )
    result, metadata = minilm.run(teacher, spec, out, method, config, route=teacher_route)
    click.echo(_student_line(out, metadata))


def _float_list(ctx, param, value):
    """'0.7,0.3' -> (0.7, 0.3)."""
    if value is None or isinstance(value, tuple):
        return value
    try:
        return tuple(float(v) for v in str(value).split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: give comma-separated numbers, e.g. 0.7,0.3") from None


def teaching_options(command):
    """The teacher signal and embeddings of a student without attention (compress/teaching.py)."""
    options = [
        click.option(
            "--teacher",
            type=click.Path(path_type=Path),
            multiple=True,
            required=True,
            help="Teacher directory; repeat for several teachers (e.g. the previous production model the new student must stay close to). The first gives the tokenizer and the input embeddings.",
        ),
        click.option(
            "--out",
            type=click.Path(path_type=Path),
            required=True,
            help="Directory to write the student to.",
        ),
        click.option(
            "--teacher-weights",
            callback=_float_list,
            help="One weight per --teacher, in order, for a weighted mean of their logits (default: the plain mean).",
        ),
        click.option(
            "--joint",
            is_flag=True,
            help="Train the first teacher alongside the student on the labels (default: its cached logits).",
        ),
        click.option(
            "--isolated/--not-isolated",
            default=True,
            show_default=True,
            help="With --joint: keep the student's soft loss from reaching the teacher (its logits are detached).",
        ),
        click.option(
            "--teacher-lr",
            type=click.FloatRange(0, min_open=True),
            default=2e-5,
            show_default=True,
            help="With --joint: the teacher's peak learning rate.",
        ),
        click.option(
            "--temperature",
            type=click.FloatRange(0, min_open=True),
            default=2.0,
            show_default=True,
            help="Softmax temperature T of the soft loss (scaled by T²).",
        ),
        click.option(
            "--alpha",
            type=click.FloatRange(0, 1),
            default=0.5,
            show_default=True,
            help="Weight of the soft loss; 1 − alpha goes to the labels; 0 trains on the labels alone (the baseline).",
        ),
        click.option(
            "--soft-loss",
            type=click.Choice(["kl", "mse"]),
            default="kl",
            show_default=True,
            help="kl: Hinton's soft cross-entropy; mse: MSE between logits (Tang et al.).",
        ),
        click.option(
            "--teacher-route",
            type=click.Path(path_type=Path),
            help="The first teacher's route (train-teacher --save-route): distil from its checkpoints in order, splitting the step budget, first.",
        ),
        click.option(
            "--embedding-dim",
            type=click.IntRange(1),
            help="Student embedding width E (default: 300; tree: 128); the teacher's table is projected to it.",
        ),
        click.option(
            "--projection",
            type=click.Choice(["pca", "learned"]),
            default="pca",
            show_default=True,
            help="pca: own table = teacher table × fixed top-E SVD directions, trained; learned: teacher table frozen, projection trained.",
        ),
        click.option(
            "--freeze-embeddings",
            is_flag=True,
            help="Keep the student's projected table fixed (--projection pca).",
        ),
        click.option(
            "--dropout",
            type=click.FloatRange(0, 1, max_open=True),
            help="Dropout before the classifier (default: 0.5; tree: 0).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


# these students train from scratch above the embeddings: a BERT fine-tuning rate is far too low
STUDENT_CONTEXT = {**CONTEXT, "default_map": {"lr": 1e-3}}


def _teach(kwargs: dict, module, method_type) -> None:
    """Shared body of compress textcnn/bilstm/tree: the flags left after data and training are
    the method config's fields, one to one (unset ones keep the method's defaults)."""
    teacher, out = kwargs.pop("teacher"), kwargs.pop("out")
    spec = _data_spec(**_split(kwargs, DATA_KEYS))
    config = _train_config(**_split(kwargs, TRAIN_KEYS))
    method = method_type(**{k: v for k, v in kwargs.items() if v is not None})
    result, metadata = module.run(list(teacher), spec, out, method, config)
    click.echo(_student_line(out, metadata))


@compress.command("textcnn", context_settings=STUDENT_CONTEXT)
@recipe_option
@teaching_options
@click.option(
    "--kernel-sizes",
    default="3,4,5",
    show_default=True,
    callback=lambda ctx, param, value: _int_list(ctx, param, value),
    help="Comma-separated n-gram widths of the convolutions.",
)
@click.option(
    "--filters",
    type=click.IntRange(1),
    default=100,
    show_default=True,
    help="Feature maps per width.",
)
@data_options
@train_options
@user_errors
def textcnn_cmd(**kwargs):
    """TextCNN (Kim 2014) over the teacher's token ids, distilled offline, jointly or from several
    teachers; --alpha 0 for the labels-only baseline."""
    from slimbert.compress import textcnn

    _teach(kwargs, textcnn, textcnn.TextCNNMethod)


@compress.command("bilstm", context_settings=STUDENT_CONTEXT)
@recipe_option
@teaching_options
@click.option(
    "--hidden-size",
    type=click.IntRange(1),
    default=150,
    show_default=True,
    help="LSTM units per direction.",
)
@click.option(
    "--fc-size",
    type=click.IntRange(1),
    default=200,
    show_default=True,
    help="Units of the ReLU layer before the classifier.",
)
@data_options
@train_options
@user_errors
def bilstm_cmd(**kwargs):
    """BiLSTM (Tang et al. 2019) over the teacher's token ids, distilled offline, jointly or from
    several teachers; sentence pairs are encoded side by side. --alpha 0 for the baseline."""
    from slimbert.compress import bilstm

    _teach(kwargs, bilstm, bilstm.BiLSTMMethod)


@compress.command("tree", context_settings=STUDENT_CONTEXT)
@recipe_option
@teaching_options
@click.option(
    "--depth",
    type=click.IntRange(1, 12),
    default=4,
    show_default=True,
    help="Levels of inner nodes (2^depth leaves).",
)
@click.option(
    "--inverse-temperature",
    type=click.FloatRange(0, min_open=True),
    default=1.0,
    show_default=True,
    help="β in each inner node's σ(β · (x·w + b)).",
)
@click.option(
    "--balance",
    type=click.FloatRange(0),
    default=0.1,
    show_default=True,
    help="Weight of the penalty that keeps every inner node using both branches.",
)
@data_options
@train_options
@user_errors
def tree_cmd(**kwargs):
    """Soft decision tree (Frosst & Hinton 2017) over the mean of the teacher's input embeddings;
    slimbert.json lists what each node tests. --alpha 0 for the baseline."""
    from slimbert.compress import tree

    _teach(kwargs, tree, tree.TreeMethod)


@cli.command("export", context_settings=CONTEXT)
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
@click.option("--text-column")
@click.option("--text-pair-column")
@click.option("--label-column")
@click.option("--no-header", is_flag=True)
@click.option(
    "--max-length", type=click.IntRange(8, 4096), help="Default: the model's training max length."
)
@click.option("--opset", type=click.IntRange(11), help="ONNX opset (default: optimum's choice).")
@click.option(
    "--max-abs-diff",
    type=click.FloatRange(0),
    help="Fail if any |ONNX − PyTorch| logit exceeds this (default per artifact: fp32 1e-4, --optimize 1e-3, fp16 5e-2, int8 not gated).",
)
@click.option(
    "--min-agreement",
    type=click.FloatRange(0, 100),
    help="Fail below this label agreement, in percent (default: fp32 100, --optimize 99.5, fp16 99, int8 97).",
)
@click.option(
    "--max-f1-drop",
    type=click.FloatRange(0),
    help="Fail if the metric drops by more points than this (default: fp32 0, --optimize 0.1, fp16 0.5, int8 1).",
)
@click.option(
    "--provider",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="Provider to optimize for and validate on; cuda never falls back to the CPU.",
)
@click.option(
    "--optimize",
    is_flag=True,
    help="Fuse with ONNX Runtime's transformer optimizer (Attention, EmbedLayerNorm, BiasGelu; SkipLayerNorm on cuda) and report fusion counts.",
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
    help="--quantize static: training file to draw calibration examples from (same columns as --eval).",
)
@click.option(
    "--calibration-method",
    type=click.Choice(["minmax", "percentile", "entropy"]),
    default="minmax",
    show_default=True,
)
@click.option("--calibration-examples", type=click.IntRange(1), default=256, show_default=True)
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
    help="Also write a Triton model repository here: ONNX model, tokenizer, raw-text ensemble, client.py.",
)
@click.option("--triton-max-batch-size", type=click.IntRange(0), default=32, show_default=True)
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
      slimbert export --model runs/kd3 --eval dev.tsv --out runs/kd3-int8 --optimize --quantize dynamic
      slimbert export --model runs/kd3 --eval dev.tsv --out runs/kd3-static --optimize --quantize static --calibration-data train.tsv
      slimbert export --model runs/kd3 --eval dev.tsv --out runs/kd3-fp16 --optimize --precision fp16 --provider cuda
      slimbert export --model runs/kd3 --eval dev.tsv --out runs/kd3-int8 --quantize dynamic --triton runs/triton

    The manifest.json in the folder records inputs, outputs, opset, exporter, precision, the
    steps with their fusion counts, every step's validation figures and file hashes. Past any
    gate the command fails and writes nothing.
    """
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
            for warning in fusions["warnings"]:
                click.echo(f"warning: {warning}", err=True)
    v = manifest["validation"]
    click.echo(
        f"exported {manifest['precision']} to {out}: max |Δlogit| {v['max_abs_diff']:.2e}, label agreement {v['label_agreement']:.2f}%, "
        f"Δ{v['metric_name']} {v['delta_metric']:+.2f} on {v['examples']} examples ({v['provider']})"
    )
    if triton_repo:
        click.echo(f"Triton repository in {triton_repo}: see its README.md")


def _int_list(ctx, param, value):
    if value is None or isinstance(value, list):
        return value
    try:
        sizes = [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: give comma-separated whole numbers, e.g. 1,8"
        ) from None
    if not sizes or any(s < 1 for s in sizes):
        raise click.BadParameter(f"{value!r}: sizes must be ≥ 1")
    return sizes


def _length_list(ctx, param, value):
    """'own,64,128' -> [None, 64, 128]: None is each request's own length."""
    if value is None or isinstance(value, list):
        return value
    lengths = []
    for item in (v.strip() for v in str(value).split(",") if v.strip()):
        if item.lower() == "own":
            lengths.append(None)
        elif item.isdigit() and int(item) >= 4:
            lengths.append(int(item))
        else:
            raise click.BadParameter(
                f"{item!r}: give 'own' or whole numbers ≥ 4, comma-separated, e.g. own,64,128"
            )
    return lengths or [None]


@cli.group("bench", context_settings=CONTEXT, invoke_without_command=True)
@recipe_option
@click.option(
    "--model",
    "models",
    type=click.Path(path_type=Path),
    multiple=True,
    help="[required] Model or export directory; repeat for several. HF directories are timed in PyTorch and as a validated ONNX export.",
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
@click.option(
    "--provider",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="ONNX Runtime provider; cuda fails clearly when CUDAExecutionProvider is missing.",
)
@click.option(
    "--batch-sizes",
    callback=_int_list,
    default="1",
    show_default=True,
    help="Comma-separated request sizes.",
)
@click.option(
    "--lengths",
    callback=_length_list,
    default="own",
    show_default=True,
    help="Comma-separated: 'own' pads each request to its own longest example; a number L pads (and truncates) every request to L.",
)
@click.option(
    "--threads",
    callback=_int_list,
    help="Comma-separated intra-op thread counts to sweep (default: all cores).",
)
@click.option(
    "--warmup",
    type=click.IntRange(0),
    default=20,
    show_default=True,
    help="Uncounted requests before timing.",
)
@click.option(
    "--repeats",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Timed passes over all requests; figures are medians ± half the range.",
)
@click.option("--limit", type=click.IntRange(1), help="Only the first N eval examples.")
@click.option(
    "--max-length",
    type=click.IntRange(8, 4096),
    help="Truncation of own-length requests (default: each model's training max length).",
)
@click.option(
    "--runtime",
    "runtimes",
    type=click.Choice(["pytorch", "onnx"]),
    multiple=True,
    help="Runtimes to time (default: both).",
)
@click.option(
    "--slo",
    help='Latency objective, e.g. "p99<=10ms"; with --max-f1-drop marks the recommended model.',
)
@click.option(
    "--max-f1-drop",
    type=click.FloatRange(0),
    help="Metric points a recommended model may lose against the teacher.",
)
@click.option(
    "--no-io-binding", is_flag=True, help="On CUDA, skip the ONNX rows fed through IO binding."
)
@click.option(
    "--no-peak",
    is_flag=True,
    help="Skip measuring the matmul peak (the physical-limit column keeps FLOPs only).",
)
@click.option("--text-column")
@click.option("--text-pair-column")
@click.option("--label-column")
@click.option("--no-header", is_flag=True)
@click.option(
    "--in-process",
    is_flag=True,
    help="Time every model in this process (faster, but peak memory is shared).",
)
@click.pass_context
@user_errors
def bench_cmd(
    ctx,
    models,
    eval_file,
    out,
    provider,
    batch_sizes,
    lengths,
    threads,
    warmup,
    repeats,
    limit,
    max_length,
    runtimes,
    slo,
    max_f1_drop,
    no_io_binding,
    no_peak,
    text_column,
    text_pair_column,
    label_column,
    no_header,
    in_process,
):
    """Time each model over a sweep and report latency against F1; `bench compare` gates releases.

    \b
    Examples:
      slimbert bench --model runs/teacher --model runs/kd3 --eval dev.tsv --out runs/bench --batch-sizes 1,8
      slimbert bench --model runs/teacher --model runs/kd3 --eval dev.tsv --out runs/bench --slo "p99<=10ms" --max-f1-drop 1.0
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
    from slimbert.bench.report import request_table, write_report
    from slimbert.bench.run import BenchConfig, bench
    from slimbert.data import Columns

    threads = threads or []
    config = BenchConfig(
        provider=provider,
        batch_sizes=batch_sizes,
        threads=threads[0] if len(threads) == 1 else None,
        warmup=warmup,
        limit=limit,
        max_length=max_length,
        isolate=not in_process,
        runtimes=tuple(runtimes) or ("pytorch", "onnx"),
        lengths=lengths,
        thread_counts=threads if len(threads) > 1 else [],
        repeats=repeats,
        io_binding=not no_io_binding,
        peak=not no_peak,
        slo=slo,
        max_f1_drop=max_f1_drop,
    )
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


@bench_cmd.command("compare", context_settings=CONTEXT)
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@click.option(
    "--threshold",
    default="5%",
    show_default=True,
    help="Latency a row may gain beyond both runs' spread: a percentage of OLD (5%) or a time (0.5ms).",
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
    folders); exit status 1 when anything regressed, so CI can gate a release on it.

    \b
    Example:
      slimbert bench compare release-1.2/report.json runs/bench/report.json --threshold 5% --metric-threshold 0.5
    """
    from slimbert.bench.report import Report, Threshold, compare_reports, machine_differences

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
        f"{len(regressed)} regression{'s' if len(regressed) != 1 else ''} in {matched} matching rows ({statistic}, threshold {threshold} beyond noise, {metric_threshold:g} metric points)"
    )
    if regressed:
        ctx.exit(1)


@cli.command("serve", context_settings=CONTEXT)
@recipe_option
@click.argument("export_dir", type=click.Path(path_type=Path))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; 0.0.0.0 to accept connections from other machines.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--name", help="Model name in responses (default: the folder's name).")
@click.option(
    "--provider",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="ONNX Runtime provider; cuda fails clearly when CUDAExecutionProvider is missing.",
)
@click.option(
    "--threads", type=click.IntRange(1), help="ONNX Runtime intra-op threads (default: all cores)."
)
@click.option(
    "--max-batch-size",
    type=click.IntRange(1),
    default=32,
    show_default=True,
    help="Most texts per model call, gathered across concurrent requests.",
)
@click.option(
    "--max-wait-ms",
    type=click.FloatRange(0),
    default=2.0,
    show_default=True,
    help="Longest the oldest waiting text waits for a batch to fill.",
)
@click.option(
    "--max-queue",
    type=click.IntRange(1),
    default=4096,
    show_default=True,
    help="Most texts waiting at once; beyond it requests get 503 overloaded.",
)
@click.option(
    "--max-items",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Most texts (or pairs) in one request.",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(1),
    default=1 << 20,
    show_default=True,
    help="Largest request body.",
)
@click.option(
    "--max-text-chars",
    type=click.IntRange(1),
    default=20_000,
    show_default=True,
    help="Longest text in characters (token overflow is truncated, not refused).",
)
@click.option(
    "--warm-up/--no-warm-up", default=True, help="Run a batch before /readyz reports ready."
)
@click.option(
    "--graceful-timeout",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="Seconds to let in-flight requests finish after SIGTERM.",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
)
@click.option(
    "--access-log/--no-access-log", default=False, help="Log every request (costs throughput)."
)
@user_errors
def serve_cmd(
    export_dir,
    host,
    port,
    name,
    provider,
    threads,
    max_batch_size,
    max_wait_ms,
    max_queue,
    max_items,
    max_body_bytes,
    max_text_chars,
    warm_up,
    graceful_timeout,
    log_level,
    access_log,
):
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
        raise SlimbertError(
            f"serving needs {exc.name}; install it with `pip install -e .[serve]`"
        ) from None
    if max_queue < max_batch_size:
        raise SlimbertError(
            f"--max-queue {max_queue} is below --max-batch-size {max_batch_size}; raise --max-queue"
        )
    model = ServedModel(export_dir, provider, threads, name)
    config = ServeConfig(
        max_batch_size, max_wait_ms, max_queue, max_items, max_body_bytes, max_text_chars, warm_up
    )
    click.echo(
        f"serving {model.identity.name} (sha256 {model.identity.sha256[:12]}, {model.identity.task}, inputs: {model.identity.inputs}) on http://{host}:{port}",
        err=True,
    )
    uvicorn.run(
        create_app(model, config),
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=graceful_timeout,
        lifespan="on",
    )


@cli.command("demo", context_settings=CONTEXT)
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
@click.option("--seed", type=int, default=42, show_default=True)
@user_errors
def demo_cmd(quick, out, seed):
    """Offline end to end on the bundled MiniLM and tweet corpus: teacher, 3/2/1-layer kd
    students, ONNX exports, bench report."""
    from slimbert.demo import run_demo

    report_path = run_demo(out, quick=quick, seed=seed)
    click.echo(f"demo report: {report_path}")


@cli.group(context_settings=CONTEXT)
def professor():
    """Make the teacher stronger before it teaches: a boosted ensemble, or augmented pairs."""


@professor.command("boost", context_settings=CONTEXT)
@recipe_option
@click.option(
    "--base",
    required=True,
    help="Checkpoint every member is fine-tuned from: a local HF directory, or 'minilm-l6'.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Ensemble directory (members, ensemble.json); any --teacher flag takes it.",
)
@click.option(
    "--rounds",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="K, the most members; boosting stops early at a chance-level or error-free member.",
)
@click.option(
    "--shrinkage",
    type=click.FloatRange(0, min_open=True),
    default=1.0,
    show_default=True,
    help="ν scaling every member's vote α (1.0 is plain SAMME).",
)
@click.option(
    "--weighting",
    type=click.Choice(["loss", "resample"]),
    default="loss",
    show_default=True,
    help="Sample weights as per-example loss weights, or as weighted resampling.",
)
@click.option(
    "--first-member",
    type=click.Path(path_type=Path),
    help="An already fine-tuned teacher (same base) to use as round 1.",
)
@click.option(
    "--combine",
    type=click.Choice(["logits", "probabilities"]),
    default="logits",
    show_default=True,
    help="Members' vote-weighted logits, or their vote-weighted probability mixture.",
)
@data_options
@train_options
@user_errors
def professor_boost_cmd(base, out, rounds, shrinkage, weighting, first_member, combine, **kwargs):
    """PS-Boosting: K teachers fine-tuned in sequence on SAMME sample weights, combined by
    vote-weighted logits.

    \b
    Example:
      slimbert professor boost --base minilm-l6 --train train.tsv --eval dev.tsv --rounds 3 --out runs/professor-boost
      slimbert compress kd --teacher runs/professor-boost --train train.tsv --eval dev.tsv --layers 3 --out runs/kd3-boost
    """
    from slimbert.teachers.boost import BoostConfig, boost

    spec = _data_spec(**_split(kwargs, DATA_KEYS))
    config = _train_config(**_split(kwargs, TRAIN_KEYS))
    metadata = boost(
        base, spec, out, BoostConfig(rounds, shrinkage, weighting, first_member, combine), config
    )
    for r in metadata["rounds"]:
        click.echo(
            f"round {r['round'] + 1}: weighted error {r['weighted_error']:.4f}, alpha {r['alpha']:.3f}, member {r['eval_main']:.2f}"
            + ("" if r["kept"] else " (dropped)")
        )
    click.echo(
        f"professor saved to {out}: {metadata['members']} members ({metadata['stopped']}); "
        + ", ".join(f"{k} {v:.2f}" for k, v in metadata["metric"].items())
    )


@professor.command("augment", context_settings=CONTEXT)
@recipe_option
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="TSV of the original plus the new pairs; the report goes beside it (<stem>.report.json).",
)
@click.option(
    "--symmetry/--no-symmetry",
    default=True,
    show_default=True,
    help="Add b–a for every training pair a–b.",
)
@click.option(
    "--transitivity/--no-transitivity",
    default=True,
    show_default=True,
    help="Compose paths of training pairs into new pairs.",
)
@click.option(
    "--max-path",
    type=click.IntRange(2, 4),
    default=2,
    show_default=True,
    help="Most training pairs one new pair composes.",
)
@click.option(
    "--per-pair",
    type=click.IntRange(0),
    default=4,
    show_default=True,
    help="Most transitive pairs credited to one source pair.",
)
@click.option(
    "--max-transitive",
    type=click.IntRange(0),
    help="Most transitive pairs in all (default: no cap).",
)
@click.option(
    "--similar-label", help="The label meaning similar (default: the positive class, '1' in GLUE)."
)
@click.option(
    "--filter-teacher",
    type=click.Path(path_type=Path),
    help="Teacher (or professor) whose confident contradictions are dropped.",
)
@click.option(
    "--filter-confidence",
    type=click.FloatRange(0.5, 1.0),
    help="Drop a new pair the teacher labels the other way with at least this probability.",
)
@data_options
@user_errors
def professor_augment_cmd(
    out,
    symmetry,
    transitivity,
    max_path,
    per_pair,
    max_transitive,
    similar_label,
    filter_teacher,
    filter_confidence,
    **kwargs,
):
    """PS-DA data: sentence pairs implied by symmetry and transitivity of the training labels,
    none containing an eval sentence.

    \b
    Example:
      slimbert professor augment --train train.tsv --eval dev.tsv --out runs/train-augmented.tsv
      slimbert train-teacher --base minilm-l6 --train runs/train-augmented.tsv --eval dev.tsv --out runs/professor-da
    """
    from slimbert.teachers.pair_augment import PairAugmentConfig, augment_pairs

    spec = _data_spec(**_split(kwargs, DATA_KEYS))
    config = PairAugmentConfig(
        symmetry, transitivity, max_path, per_pair, max_transitive, similar_label, filter_confidence
    )
    report = augment_pairs(spec, out, config, teacher=filter_teacher)
    click.echo("\n".join(report.lines()))
    click.echo(f"augmented pairs written to {out}")


@cli.command("pretrain-student", context_settings=CONTEXT)
@recipe_option
@click.option(
    "--teacher",
    required=True,
    help="Whose encoder the student is cut from: a teacher or professor directory, or a base checkpoint ('minilm-l6').",
)
@click.option(
    "--layers",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Student depth (teacher layers picked as compress kd picks them).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Masked-LM model directory for `compress kd --student-init`.",
)
@click.option(
    "--train",
    "train",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The task's training file: its texts (labels unused) are the default pre-training text.",
)
@click.option(
    "--text",
    "texts",
    type=click.Path(path_type=Path, dir_okay=False),
    multiple=True,
    help="More unlabelled text (.tsv/.csv/.jsonl, same columns); repeat for several.",
)
@click.option("--text-column")
@click.option("--text-pair-column")
@click.option("--no-header", is_flag=True)
@click.option("--max-length", type=click.IntRange(8, 4096), default=128, show_default=True)
@click.option("--limit", type=click.IntRange(1), help="Use only the first N rows of --train.")
@click.option("--sample-seed", type=int, help="Shuffle --train with this seed before --limit.")
@click.option(
    "--mlm-probability",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.15,
    show_default=True,
    help="Share of tokens masked.",
)
@click.option(
    "--holdout",
    type=click.FloatRange(0, 0.5, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="Share of texts held out to pick the best checkpoint.",
)
@train_options
@user_errors
def pretrain_student_cmd(
    teacher,
    layers,
    out,
    train,
    texts,
    text_column,
    text_pair_column,
    no_header,
    max_length,
    limit,
    sample_seed,
    mlm_probability,
    holdout,
    **kwargs,
):
    """Continued masked-LM pre-training of the layer-truncated student on in-domain text.

    \b
    Example:
      slimbert pretrain-student --teacher runs/professor-da --layers 3 --train train.tsv --out runs/mlm-3L
      slimbert compress kd --teacher runs/professor-da --student-init runs/mlm-3L --layers 3 --train train.tsv --eval dev.tsv --out runs/kd3-star
    """
    from slimbert.compress.pretrain import PretrainConfig, pretrain_student
    from slimbert.data import Columns

    config = _train_config(**_split(kwargs, TRAIN_KEYS))
    columns = Columns(text_column, text_pair_column, None, header=not no_header)
    result, metadata = pretrain_student(
        teacher,
        [train, *texts],
        out,
        PretrainConfig(layers, mlm_probability, holdout, max_length),
        config,
        columns,
        limit,
        sample_seed,
    )
    click.echo(
        f"pre-trained student saved to {out}: held-out masked-LM loss {metadata['mlm_loss_before']:.3f} → {metadata['metric'].get('mlm_loss', float('nan')):.3f} (best at step {result.best_step} of {result.steps})"
    )


@cli.command("experiment", context_settings=CONTEXT)
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
    from slimbert.experiment import run_experiment

    experiment = run_experiment(recipe, out, echo=lambda line: click.echo(line, err=True))
    click.echo(experiment.table("f1").markdown())
    click.echo(f"experiment written to {experiment.out / 'experiment.md'}")


def main() -> None:
    cli(prog_name="slimbert")


if __name__ == "__main__":
    main()
