"""`slimbert compress <method>`: one subcommand per distillation method."""

from __future__ import annotations

from pathlib import Path

import click

from slimbert.cli.options import (
    CONTEXT,
    DATA_KEYS,
    TRAIN_KEYS,
    data_options,
    data_spec,
    float_list,
    int_list,
    recipe_option,
    take,
    train_config,
    train_options,
    user_errors,
)


@click.group(context_settings=CONTEXT)
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

    spec = data_spec(**take(kwargs, DATA_KEYS))
    config = train_config(**take(kwargs, TRAIN_KEYS))
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

    spec = data_spec(**take(kwargs, DATA_KEYS))
    config = train_config(**take(kwargs, TRAIN_KEYS))
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

    spec = data_spec(**take(kwargs, DATA_KEYS))
    config = train_config(**take(kwargs, TRAIN_KEYS))
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

    spec = data_spec(**take(kwargs, DATA_KEYS))
    config = train_config(**take(kwargs, TRAIN_KEYS))
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
            callback=float_list,
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
    spec = data_spec(**take(kwargs, DATA_KEYS))
    config = train_config(**take(kwargs, TRAIN_KEYS))
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
    callback=lambda ctx, param, value: int_list(ctx, param, value),
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
