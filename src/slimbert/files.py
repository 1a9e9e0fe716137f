"""Atomic artifact writing: nothing half-written is ever left at the destination."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# The files of a model folder (what `models.save_model` and every command that saves a model
# write), and of an export folder (`slimbert export`), named once here.
RECORD_FILE = "slimbert.json"  # the folder's record, slimbert.record.ModelRecord
CONFIG_FILE = "config.json"  # the Hugging Face config (labels, sizes; a student's architecture)
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"  # the model card, slimbert.cards
WEIGHTS_INDEX = "model.safetensors.index.json"  # sharded weights: which shard holds a tensor
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
# every file a tokenizer of the supported families may be saved as
TOKENIZER_FILES = (
    TOKENIZER_FILE,
    TOKENIZER_CONFIG_FILE,
    SPECIAL_TOKENS_FILE,
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
ONNX_FILE = "model.onnx"  # an export folder's graph
MANIFEST_FILE = "manifest.json"  # an export folder's parity record, slimbert.export.manifest

# What a training command writes into its output folder while it runs (training/state.py) and
# the artifact saved over that folder keeps: the per-step log and the trackers' files; the
# resumable state (STATE_DIR) goes when the artifact is saved.
RUN_LOG = "train_log.jsonl"
RUN_TRACKING = "tracking"
RUN_RECORDS = (RUN_LOG, RUN_TRACKING)
STATE_DIR = "training-state"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _umask_mode(mode: int = 0o666) -> int:
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def write_json_atomic(path: str | Path, payload: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=False, default=str)
            handle.write("\n")
        os.chmod(tmp, _umask_mode())  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """Yield a staging directory beside `out`; on success it replaces `out`, on error it vanishes.

    An existing `out` is swapped out only after the new one is complete, so a failed run never
    destroys a good previous result. The run records a training command wrote into `out` while
    it trained (RUN_RECORDS: train_log.jsonl, tracking/) are copied into the new one unless it
    has its own; anything else in the old `out`, the resumable training state included, goes.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".staging"))
    os.chmod(staging, _umask_mode(0o777))
    try:
        yield staging
        for name in RUN_RECORDS:
            kept, fresh = out / name, staging / name
            if fresh.exists() or not kept.exists():
                continue
            if kept.is_dir():
                shutil.copytree(kept, fresh)
            else:
                shutil.copy2(kept, fresh)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
