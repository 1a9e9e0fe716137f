"""Shared by the serve tests: tiny exports to serve, an in-process client with the app's
lifespan running, offline reference predictions, and a Prometheus text reader."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import httpx
import numpy as np
from conftest import build_bert, sentiment_rows, write_sst2

from slimbert.export.onnx import export
from slimbert.export.runtime import OnnxClassifier
from slimbert.models import load_tokenizer
from slimbert.serve import ServeConfig, ServedModel, create_app
from slimbert.serve.model import softmax

MAX_LENGTH = 16


def export_model(root: Path, pair: bool, dev: Path) -> Path:
    """A 2-layer classifier (seed 3) whose metadata says single texts or pairs, exported with
    max_length 16 and validated on `dev`."""
    model_dir = build_bert(root / "model", layers=2, hidden=32, num_labels=2, seed=3)
    (model_dir / "slimbert.json").write_text(
        json.dumps({"method": "kd", "data": {"pair": pair, "max_length": MAX_LENGTH}})
    )
    export(model_dir, dev, root / "export")
    return root / "export"


def single_export(root: Path) -> dict:
    """A single-text classifier's export folder and its 24-row dev file."""
    dev = write_sst2(root / "dev.tsv", sentiment_rows(24, 2))
    return {"export": export_model(root, False, dev), "dev": dev}


def paired_export(root: Path) -> dict:
    """The same kind of model trained (as its metadata says) on sentence pairs."""
    rows = sentiment_rows(12, 5)
    dev = root / "dev.tsv"
    with open(dev, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["sentence1", "sentence2", "label"])
        for (first, label), (second, _) in zip(rows, reversed(rows), strict=True):
            writer.writerow([first, second, label])
    return {"export": export_model(root, True, dev), "dev": dev}


def serve(model: ServedModel, scenario, **config):
    """Run `scenario(client, app)` against the app with its lifespan running and the model warm."""
    app = create_app(model, ServeConfig(**config))

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://serve.test"
            ) as client:
                for _ in range(500):  # until warm-up has finished, either way
                    if (await client.get("/readyz")).json()["status"] not in (
                        "starting",
                        "warming",
                    ):
                        break
                    await asyncio.sleep(0.01)
                return await scenario(client, app)

    return asyncio.run(main())


def offline(model_path: Path, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
    """Probabilities (N, C) from a bare ONNX Runtime session, one example at a time, unpadded."""
    tokenizer = load_tokenizer(model_path)
    session = OnnxClassifier(model_path / "model.onnx", "cpu", 1)
    rows = []
    for i, text in enumerate(texts):
        encoded = tokenizer(
            text,
            pairs[i] if pairs else None,
            truncation=True,
            max_length=MAX_LENGTH,
            return_tensors="np",
        )
        rows.append(softmax(session(dict(encoded)))[0])
    return np.stack(rows)


def metric_value(text: str, name: str, **labels) -> float:
    """A sample's value from Prometheus text, 0 when absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        sample, _, label_text = key.partition("{")
        found = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        if sample == name and found == wanted:
            return float(value)
    return 0.0
