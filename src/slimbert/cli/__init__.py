"""slimbert's command line: train a teacher, distil students, export, bench, serve, demo.

Every command exits 0 on success. A problem with what the flags name (a SlimbertError) prints one
`Error:` line on stderr naming the thing and the fix and exits 1; a command line click cannot parse
gets click's usage message (Usage, Try --help, a blank line, Error) and exits 2. Neither leaves a
half-written output behind.
"""

from __future__ import annotations

import click

from slimbert.cli.bench import bench_cmd
from slimbert.cli.compress import compress
from slimbert.cli.demo import demo_cmd, experiment_cmd
from slimbert.cli.export import export_cmd
from slimbert.cli.general import distill_general_cmd
from slimbert.cli.options import CONTEXT
from slimbert.cli.serve import serve_cmd
from slimbert.cli.teachers import augment_cmd, pretrain_student_cmd, professor, train_teacher_cmd


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="slimbert")
def cli():
    """Distil a fine-tuned BERT-family classifier into smaller students, export them to ONNX,
    and measure latency against F1.

    \b
    A typical path:
      slimbert train-teacher --base minilm-l6 --train train.tsv --eval dev.tsv --out runs/teacher
      slimbert compress kd --teacher runs/teacher --train train.tsv --eval dev.tsv \\
        --layers 3 --out runs/kd3
      slimbert export --model runs/kd3 --eval dev.tsv --out runs/kd3-onnx
      slimbert bench --model runs/teacher --model runs/kd3 --eval dev.tsv --out runs/bench
    """
    _quiet_weight_bars()


# transformers 5 draws a progress bar each time it loads or saves a model's weights: on the
# command line that is a dozen bars per command, and noise in front of a one-line error.
WEIGHT_BARS = ("Loading weights", "Writing model shards")


def _drop_weight_bars(factory, args, kwargs):
    if kwargs.get("desc") in WEIGHT_BARS:
        kwargs = {**kwargs, "disable": True}
    return factory(*args, **kwargs)


def _quiet_weight_bars() -> None:
    from transformers.utils import logging as transformers_logging

    if hasattr(transformers_logging, "set_tqdm_hook"):  # transformers 5; 4.x draws no such bars
        transformers_logging.set_tqdm_hook(_drop_weight_bars)


for command in (
    train_teacher_cmd,
    compress,
    professor,
    pretrain_student_cmd,
    distill_general_cmd,
    augment_cmd,
    export_cmd,
    bench_cmd,
    serve_cmd,
    demo_cmd,
    experiment_cmd,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="slimbert")


if __name__ == "__main__":
    main()
