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


FOREIGN_LABELS = {0: "negative", 1: "positive"}
FOREIGN_MAX_LENGTH = 24


def foreign_export(root: Path) -> Path:
    """An ONNX folder slimbert did not write: a 2-layer DistilBERT (no token_type_ids) exported
    with plain torch.onnx.export beside its config.json (id2label) and tokenizer files; no
    manifest.json, no slimbert.json. The tokenizer says model_max_length 24, the config 64."""
    import torch
    from conftest import build_tokenizer
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    folder = root / "foreign"
    tokenizer = build_tokenizer(folder)
    tokenizer.model_max_length = FOREIGN_MAX_LENGTH
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(5)
    config = DistilBertConfig(
        vocab_size=len(tokenizer),
        dim=32,
        n_layers=2,
        n_heads=4,
        hidden_dim=64,
        max_position_embeddings=64,
        dropout=0.0,
        attention_dropout=0.0,
        id2label=FOREIGN_LABELS,
        label2id={v: k for k, v in FOREIGN_LABELS.items()},
    )
    model = DistilBertForSequenceClassification(config).eval()
    with torch.no_grad():
        # a random head answers about the same for every text: sharpen it, and centre it on
        # the median text so that both labels occur
        model.pre_classifier.weight.mul_(8.0)
        model.classifier.weight.mul_(400.0)
        probe = tokenizer([text for text, _ in sentiment_rows(24, 11)], padding=True)
        logits = model(
            input_ids=torch.tensor(probe["input_ids"]),
            attention_mask=torch.tensor(probe["attention_mask"]),
        ).logits  # (24, 2)
        model.classifier.bias.sub_(logits.median(dim=0).values)
    model.config.save_pretrained(str(folder))

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    ids = torch.tensor([[2, 5, 6, 3, 0], [2, 7, 8, 9, 3]])  # (2, 5), the first padded
    mask = (ids != 0).long()
    dynamic = {0: "batch_size", 1: "sequence_length"}
    with torch.no_grad():
        torch.onnx.export(
            Logits(),
            (ids, mask),
            str(folder / "model.onnx"),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": dynamic,
                "attention_mask": dynamic,
                "logits": {0: "batch_size"},
            },
            opset_version=17,
            dynamo=False,
        )
    return folder


def foreign_offline(folder: Path, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
    """Probabilities (N, C) of the foreign folder: transformers' tokenizer and a bare ONNX
    Runtime session fed input_ids and attention_mask, one example at a time."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    rows = []
    for index, text in enumerate(texts):
        encoded = tokenizer(
            text,
            pairs[index] if pairs else None,
            truncation=True,
            max_length=FOREIGN_MAX_LENGTH,
            return_tensors="np",
        )
        feed = {name: encoded[name] for name in ("input_ids", "attention_mask")}
        rows.append(softmax(session.run(None, feed)[0])[0])
    return np.stack(rows)


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
