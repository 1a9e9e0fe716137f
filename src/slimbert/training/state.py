"""What a training command keeps in its output folder while it runs: the per-step log, the
trackers' files and the state `--resume` continues from.

    out/
      train_log.jsonl          one row per optimiser step of every stage (kept in the artifact)
      tracking/<stage>/        TensorBoard events (--report-to tensorboard; kept in the artifact)
      training-state/<stage>/  the last saved state of each stage (dropped when the artifact is
        state.json              saved: the final save replaces the folder, see files.atomic_dir)
        model.safetensors       the weights being trained (and extra modules as extra<i>.*)
        optimizer.safetensors   AdamW's moments, keyed by parameter index
        best.safetensors        the best checkpoint so far
        rng.safetensors         torch/CUDA/loader generator states (python and numpy in JSON)

Everything loaded back is safetensors or JSON: no pickle ever reads a user's folder. A state is
written to a staging folder and swapped in whole (files.atomic_dir), so an interrupted write
leaves the previous state intact.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from slimbert.errors import SlimbertError
from slimbert.files import (
    RUN_LOG,
    RUN_TRACKING,
    STATE_DIR,
    WEIGHTS_FILE,
    atomic_dir,
    write_text_atomic,
)

STATE_FORMAT = 1


def stage_key(description: str) -> str:
    """A stage's folder name from the loop's description ("kd-3L route-1" → "kd-3L-route-1")."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", description).strip("-") or "train"


class RunFiles:
    """The log, tracking folder and resumable state of one training command writing to `out`.

    A command makes one and hands it to every `train` call it makes (one per stage). Without
    `resume`, the previous run's log and states are cleared when the first stage starts; with
    it, a stage whose state says finished is restored instead of trained, and the stage that was
    interrupted continues from its last saved state.
    """

    def __init__(self, out: str | Path, resume: bool = False):
        self.out = Path(out)
        self.resume = resume
        self._started = False

    @property
    def log_path(self) -> Path:
        return self.out / RUN_LOG

    @property
    def tracking_dir(self) -> Path:
        return self.out / RUN_TRACKING

    def state_dir(self, stage: str) -> Path:
        return self.out / STATE_DIR / stage

    def start(self) -> None:
        """Clear the previous run's files unless resuming; once per command."""
        if self._started:
            return
        self._started = True
        if not self.resume:
            shutil.rmtree(self.out / STATE_DIR, ignore_errors=True)
            shutil.rmtree(self.tracking_dir, ignore_errors=True)
            self.log_path.unlink(missing_ok=True)

    def log(self, row: dict) -> None:
        """Append one JSON row to train_log.jsonl."""
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, default=str) + "\n")

    def truncate_log(self, stage: str, after_step: int) -> None:
        """Drop the rows of `stage` past `after_step` (written after the state resumed from), so a
        resumed run's log has every step once."""
        if not self.log_path.is_file():
            return
        kept = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row.get("stage") == stage and row.get("step", 0) > after_step:
                continue
            kept.append(line)
        write_text_atomic(self.log_path, "".join(line + "\n" for line in kept))


# ---------------------------------------------------------------------------------------------
# Random number generators: torch (CPU and accelerators), python, numpy and the loader's own.


def loader_generators(*loaders: Any) -> list[torch.Generator]:
    """The torch.Generators a DataLoader (and Accelerate's wrapper of it) shuffles with, once
    each, in a fixed order."""
    found: list[torch.Generator] = []
    for loader in loaders:
        candidates = [loader, getattr(loader, "base_dataloader", None)]
        for holder in list(candidates):
            for name in ("sampler", "batch_sampler"):
                inner = getattr(holder, name, None)
                candidates += [inner, getattr(inner, "sampler", None)]
                candidates.append(getattr(inner, "batch_sampler", None))
        for holder in candidates:
            generator = getattr(holder, "generator", None)
            if isinstance(generator, torch.Generator) and all(g is not generator for g in found):
                found.append(generator)
    return found


@dataclass
class RngState:
    """Every random number generator a training step or a shuffle reads."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    python: list | None = None
    numpy: dict | None = None

    @classmethod
    def capture(cls, generators: list[torch.Generator]) -> RngState:
        tensors = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"cuda.{i}"] = state
        if torch.backends.mps.is_available():
            tensors["mps"] = torch.mps.get_rng_state()
        for i, generator in enumerate(generators):
            tensors[f"generator.{i}"] = generator.get_state()
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        version, internal, gauss = random.getstate()
        return cls(
            tensors=tensors,
            python=[version, list(internal), gauss],
            numpy={"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss),
                   "cached": float(cached), "keys": [int(k) for k in keys]},
        )  # fmt: skip

    def restore(self, generators: list[torch.Generator]) -> None:
        torch.set_rng_state(self.tensors["torch"])
        cuda = sorted(k for k in self.tensors if k.startswith("cuda."))
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([self.tensors[k] for k in cuda])
        if "mps" in self.tensors and torch.backends.mps.is_available():
            torch.mps.set_rng_state(self.tensors["mps"])
        for i, generator in enumerate(generators):
            if f"generator.{i}" in self.tensors:
                generator.set_state(self.tensors[f"generator.{i}"])
        if self.python is not None:
            version, internal, gauss = self.python
            random.setstate((version, tuple(internal), gauss))
        if self.numpy is not None:
            n = self.numpy
            keys = np.asarray(n["keys"], dtype=np.uint32)
            np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached"]))

    def flat(self, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {f"{prefix}.{k}": v.contiguous() for k, v in self.tensors.items()}
        return tensors, {"python": self.python, "numpy": self.numpy}

    @classmethod
    def unflat(cls, tensors: dict[str, torch.Tensor], prefix: str, record: dict) -> RngState:
        start = prefix + "."
        own = {k[len(start) :]: v for k, v in tensors.items() if k.startswith(start)}
        return cls(tensors=own, python=record.get("python"), numpy=record.get("numpy"))


# ---------------------------------------------------------------------------------------------
# Optimizer state as safetensors (tensors by parameter index) plus JSON (everything else).


def optimizer_flat(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """torch.optim state_dict → ({"state.<param>.<name>": tensor}, JSON-able rest)."""
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_unflat(tensors: dict[str, torch.Tensor], record: dict) -> dict:
    """The inverse of `optimizer_flat`, as torch.optim's load_state_dict takes it."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, values in record["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [
        {k: tuple(v) if k == "betas" else v for k, v in group.items()}
        for group in record["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


# ---------------------------------------------------------------------------------------------
# One stage's saved state.


@dataclass
class SavedState:
    """A stage's state as read back: the JSON record and the tensors of each file."""

    record: dict
    model: dict[str, torch.Tensor]
    optimizer: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor] | None
    rng: dict[str, torch.Tensor]


def cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached, contiguous CPU copy, with tensors that share storage (tied weights) cloned
    apart so safetensors can write them."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def write_state(
    folder: Path,
    record: dict,
    model: dict[str, torch.Tensor],
    optimizer: dict[str, torch.Tensor] | None,
    best: dict[str, torch.Tensor] | None,
    rng: dict[str, torch.Tensor],
) -> None:
    """Write one stage's state whole, replacing the previous one only once complete."""
    with atomic_dir(folder) as staging:
        save_file(cpu_copy(model), str(staging / WEIGHTS_FILE))
        if optimizer is not None:
            save_file(optimizer, str(staging / "optimizer.safetensors"))
        if best is not None:
            save_file(cpu_copy(best), str(staging / "best.safetensors"))
        save_file(rng, str(staging / "rng.safetensors"))
        write_text_atomic(
            staging / "state.json",
            json.dumps({"format": STATE_FORMAT, **record}, indent=1, default=str) + "\n",
        )


def read_state(folder: Path) -> SavedState | None:
    """A stage's saved state, or None where there is none."""
    record_path = folder / "state.json"
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SlimbertError(
            f"{record_path}: cannot read the saved training state ({exc}); "
            "rerun without --resume to start over"
        ) from None
    if record.get("format") != STATE_FORMAT:
        raise SlimbertError(
            f"{record_path}: training state format {record.get('format')!r}, this slimbert "
            f"reads {STATE_FORMAT}; rerun without --resume to start over"
        )

    def tensors(name: str) -> dict[str, torch.Tensor] | None:
        path = folder / name
        return load_file(str(path)) if path.is_file() else None

    return SavedState(
        record=record,
        model=tensors(WEIGHTS_FILE) or {},
        optimizer=tensors("optimizer.safetensors") or {},
        best=tensors("best.safetensors"),
        rng=tensors("rng.safetensors") or {},
    )


def check_same_run(saved: dict, current: dict, where: Path) -> None:
    """Refuse to resume a state written with other settings or other data, in one line."""
    differ = [
        f"{k} {saved.get(k)!r} → {current[k]!r}" for k in current if saved.get(k) != current[k]
    ]
    if differ:
        raise SlimbertError(
            f"--resume: the state in {where} was saved with other settings or data "
            f"({'; '.join(differ)}); give the same flags, or rerun without --resume"
        )
