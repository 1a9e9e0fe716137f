"""`slimbert serve`: an export folder over HTTP."""

from __future__ import annotations

from pathlib import Path

import click

from slimbert.cli import CONTEXT
from slimbert.cli.options import provider_option, recipe_option, user_errors
from slimbert.errors import SlimbertError


@click.command("serve", context_settings=CONTEXT)
@recipe_option
@click.argument("export_dir", required=False, type=click.Path(path_type=Path))
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path),
    help="[required] Export folder to serve (from `slimbert export`, or any ONNX "
    "sequence-classification folder with config.json and tokenizer files). "
    "A positional EXPORT_DIR is accepted too.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; 0.0.0.0 to accept connections from other machines.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="TCP port to listen on; 0 takes any free port (uvicorn's start-up line names it).",
)
@click.option("--name", help="Model name in responses (default: the folder's name).")
@provider_option()
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
    help="The server's console log (uvicorn's start-up, shutdown and errors, and the request "
    "lines of --access-log): warning shows problems only, debug every connection event.",
)
@click.option(
    "--access-log/--no-access-log", default=False, help="Log every request (costs throughput)."
)
@user_errors(sigterm=False)  # uvicorn drains in-flight requests on SIGTERM
def serve_cmd(
    export_dir,
    model_dir,
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
    """Serve an export folder over HTTP: POST /v1/predict, /healthz, /readyz, /metrics, /docs,
    and the Open Inference Protocol (v2) routes Triton and KServe clients speak:
    /v2/health/ready, /v2/models/NAME (metadata), POST /v2/models/NAME/infer.

    A folder `slimbert export` did not write (no manifest.json, e.g. optimum's export) is served
    with a warning that slimbert has not validated it.

    \b
    Example:
      slimbert serve --model runs/kd3-onnx --port 8000
      curl -s localhost:8000/v1/predict -H 'Content-Type: application/json' \\
        -d '{"texts": ["a gripping film"]}'
      curl -s localhost:8000/v2/models/kd3-onnx/infer -H 'Content-Type: application/json' \\
        -d '{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                         "data": ["a gripping film"]}]}'
    """
    export_dir = _one_folder(export_dir, model_dir)
    try:  # the serve extra (fastapi, uvicorn, prometheus-client) is optional
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
    identity = model.identity
    config = ServeConfig(
        max_batch_size, max_wait_ms, max_queue, max_items, max_body_bytes, max_text_chars, warm_up
    )
    click.echo(
        f"serving {identity.name} (sha256 {identity.sha256[:12]}, {identity.task}, "
        f"inputs: {identity.inputs}"
        + ("" if identity.validated else ", not validated by slimbert")
        + f") on http://{host}:{port}",
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


def _one_folder(export_dir: Path | None, model_dir: Path | None) -> Path:
    """--model DIR, or the positional EXPORT_DIR older command lines give; both only when they
    name the same folder."""
    if export_dir is None and model_dir is None:
        raise click.UsageError("Missing option '--model'.")
    if export_dir is not None and model_dir is not None:
        if export_dir.resolve() != model_dir.resolve():
            raise click.UsageError(
                f"--model {model_dir} and EXPORT_DIR {export_dir} name different folders; "
                "give the folder once, as --model DIR"
            )
    return model_dir or export_dir
