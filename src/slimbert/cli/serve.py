"""`slimbert serve`: an export folder over HTTP."""

from __future__ import annotations

from pathlib import Path

import click

from slimbert.cli.options import CONTEXT, recipe_option, user_errors
from slimbert.errors import SlimbertError


@click.command("serve", context_settings=CONTEXT)
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
      curl -s localhost:8000/v1/predict -H 'Content-Type: application/json' \\
        -d '{"texts": ["a gripping film"]}'
    """
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
        f"inputs: {identity.inputs}) on http://{host}:{port}",
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
