"""From files to batches: the data a command reads (DataSpec → TaskData), tokenised datasets,
length-grouped samplers, collation, and running a model over the batches."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from slimbert.data import (
    REGRESSION,
    Columns,
    Examples,
    LabelMap,
    concat,
    read_examples,
    read_subset,
    read_transfer,
)
from slimbert.errors import SlimbertError
from slimbert.families import forward_inputs
from slimbert.metrics import METRICS, Metrics, Scoring, compute_metrics
from slimbert.settings import setting


class EncodedDataset(Dataset):
    """Tokenised examples; each item keeps its index so cached teacher logits can be looked up."""

    def __init__(
        self, tokenizer, examples: Examples, max_length: int, label_ids: list | None = None
    ):
        if examples.is_pair:
            encoded = tokenizer(
                examples.texts, examples.text_pairs, truncation=True, max_length=max_length
            )
        else:
            encoded = tokenizer(examples.texts, truncation=True, max_length=max_length)
        self.features = [{k: encoded[k][i] for k in encoded} for i in range(len(examples))]
        self.labels = label_ids
        self.pad_id = tokenizer.pad_token_id or 0

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.features[index])
        item["idx"] = index
        if self.labels is not None:
            item["labels"] = self.labels[index]
        return item


def collate(items: list[dict], pad_id: int = 0, pads: dict | None = None) -> dict:
    """Pad each key of the encoded items to its own longest in the batch (a teacher's reading,
    compress/aligned.py, may be longer); `pads`: the fill of other keys that hold token ids."""
    batch, fills = {}, {"input_ids": pad_id, **(pads or {})}
    for key in items[0]:
        if key in ("idx", "labels"):
            values = [item[key] for item in items]
            dtype = torch.float32 if isinstance(values[0], float) else torch.long
            batch[key] = torch.tensor(values, dtype=dtype)
            continue
        longest = max(len(item[key]) for item in items)
        fill = fills.get(key, 0)
        batch[key] = torch.tensor(
            [item[key] + [fill] * (longest - len(item[key])) for item in items], dtype=torch.long
        )
    return batch


def label_targets(examples: Examples, label_map: LabelMap, task: str) -> list:
    if task == REGRESSION:
        return [float(v) for v in examples.labels]
    return label_map.encode(examples)


class LengthGroupedBatches(Sampler[list[int]]):
    """Shuffled batches of similar length, so padding to each batch's longest costs little.

    Each pass draws a fresh permutation, cuts it into windows of `window` batches, sorts each
    window by length, cuts it into batches and shuffles the batch order: every example is seen
    once per pass, batches stay random in composition across windows, and the padded tokens
    drop (MRPC at 128 tokens, batch 32: 80 → ~55 tokens a row, a third less compute).

    What a pass covers: every row once (default); the rows of `pool` (N',), repeats kept, e.g.
    a boosting bag; or len(lengths) rows drawn anew every pass with replacement in proportion
    to `weights` (N,) — boosting by resampling.
    """

    def __init__(
        self,
        lengths: list[int],
        batch_size: int,
        generator: torch.Generator,
        window: int = 50,
        pool: list[int] | None = None,
        weights: list[float] | None = None,
    ):
        if pool is not None and weights is not None:
            raise ValueError("give a pool of rows or sampling weights, not both")
        self.lengths = torch.as_tensor(lengths)
        self.batch_size = batch_size
        self.generator = generator
        self.window = window * batch_size
        self.pool = None if pool is None else torch.as_tensor(pool, dtype=torch.long)
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)

    def _rows(self) -> int:
        return len(self.lengths) if self.pool is None else len(self.pool)

    def __len__(self) -> int:
        return math.ceil(self._rows() / self.batch_size)

    def _pass(self) -> torch.Tensor:
        """This pass's row indices, in random order."""
        if self.weights is not None:
            return torch.multinomial(
                self.weights, len(self.lengths), replacement=True, generator=self.generator
            )
        order = torch.randperm(self._rows(), generator=self.generator)
        return order if self.pool is None else self.pool[order]

    def __iter__(self) -> Iterator[list[int]]:
        order = self._pass()
        batches: list[list[int]] = []
        for start in range(0, len(order), self.window):
            chunk = order[start : start + self.window]
            chunk = chunk[torch.argsort(self.lengths[chunk], descending=True, stable=True)]
            batches.extend(
                chunk[i : i + self.batch_size].tolist()
                for i in range(0, len(chunk), self.batch_size)
            )
        for index in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[index]


def make_loader(
    dataset: EncodedDataset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    group_by_length: bool = False,
) -> DataLoader:
    """Batches padded to their own longest row. `group_by_length` batches rows of similar
    length together: shuffled, LengthGroupedBatches; in order, sorted by length (for inference:
    predict_logits returns rows in dataset order whatever the batch order)."""
    generator = torch.Generator().manual_seed(seed)
    pads = getattr(dataset, "pads", None)  # a teacher's reading's pad id (compress/aligned.py)
    collate_fn = lambda items: collate(items, dataset.pad_id, pads)  # noqa: E731
    if group_by_length:
        lengths = [len(f["input_ids"]) for f in dataset.features]
        if shuffle:
            return DataLoader(
                dataset,
                batch_sampler=LengthGroupedBatches(lengths, batch_size, generator),
                collate_fn=collate_fn,
            )
        # longest last; predict_logits puts rows back by idx
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        return DataLoader(
            dataset,
            batch_sampler=[order[i : i + batch_size] for i in range(0, len(order), batch_size)],
            collate_fn=collate_fn,
        )
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=collate_fn
    )


def model_inputs(batch: dict[str, torch.Tensor], model=None) -> dict[str, torch.Tensor]:
    """The batch's model inputs (B, T): without `idx` and `labels`, and with `model` given, only
    those its forward takes (`families.forward_inputs`: a tokenizer may make token_type_ids
    that a DistilBERT, RoBERTa or DeBERTa-v3 does not read)."""
    taken = forward_inputs(model) if model is not None else None
    return {
        k: v
        for k, v in batch.items()
        if k not in ("idx", "labels") and (taken is None or k in taken)
    }


@torch.inference_mode()
def predict_logits(
    model, loader: DataLoader, device: torch.device | str = "cpu", progress: bool = False
) -> np.ndarray:
    """Logits for every example, shape (N, C) (C = 1 for regression): in dataset order when the
    batches carry `idx` (EncodedDataset's do, so a length-sorted loader is fine), else in loader
    order."""
    model.eval()
    chunks, indices = [], []
    iterator: Iterator = iter(loader)
    if progress:
        iterator = tqdm(iterator, total=len(loader), desc="predict", leave=False)
    for batch in iterator:
        inputs = {k: v.to(device) for k, v in model_inputs(batch, model).items()}
        chunks.append(model(**inputs).logits.float().cpu())
        if "idx" in batch:
            indices.append(batch["idx"])
    logits = torch.cat(chunks)
    if len(indices) == len(chunks) and chunks:
        logits = logits[torch.argsort(torch.cat(indices))]
    return logits.numpy()


@dataclass(frozen=True)
class DataSpec:
    """Where the examples come from and how they are cut.

    train/eval:  files (TSV, CSV, JSONL)
    columns:     which columns hold text, second text and label (found from GLUE headers if unset)
    task:        "classification" or "regression"; inferred from the training labels if None
    max_length:  tokens per example after truncation
    limit:       use only the first N training rows
    sample_seed: shuffle the training rows with this seed before taking `limit` (a seeded subset)
    transfer:    a teacher-labelled transfer set (`slimbert augment`'s JSONL) added to the
                 training rows
    """

    train: Path
    eval: Path
    columns: Columns = Columns()
    task: str | None = setting(
        None,
        "Default: regression when labels are decimals (STS-B).",
        choices=("classification", "regression"),
    )
    max_length: int = setting(128, "Tokens per example after truncation.", min=8, max=4096)
    limit: int | None = setting(None, "Use only the first N training rows.", min=1)
    sample_seed: int | None = setting(
        None, "Shuffle the training rows with this seed before --limit (a seeded subset)."
    )
    metric: str | None = setting(
        None,
        "The figure that picks the best checkpoint and leads reports (default: f1; regression: "
        "pearson). Use mcc on a skewed task, where always answering the majority class scores "
        "a high F1.",
        choices=METRICS,
    )
    positive_label: str | None = setting(
        None, "The class binary F1 is computed for (default: '1', 'positive', or the second label)."
    )
    transfer: Path | None = setting(
        None,
        "Teacher-labelled transfer set (the .jsonl `slimbert augment` writes): its rows join the "
        "training rows, and the teacher's logits on them teach the student.",
    )

    @property
    def scoring(self) -> Scoring:
        return Scoring(self.metric, self.positive_label)


@dataclass
class TaskData:
    train: Examples
    eval: Examples
    label_map: LabelMap
    task: str
    train_set: EncodedDataset
    eval_set: EncodedDataset
    eval_targets: list
    max_length: int
    scoring: Scoring = Scoring()
    transfer: Examples | None = None  # its rows are also the last rows of `train`

    def describe(self) -> dict:
        return {
            "train": {
                "path": str(self.train.path),
                "sha256": self.train.sha256,
                "rows": len(self.train),
                "subset_sha256": self.train.fingerprint(),
            },
            "eval": {
                "path": str(self.eval.path),
                "sha256": self.eval.sha256,
                "rows": len(self.eval),
            },
            "task": self.task,
            "max_length": self.max_length,
            "metric": self.scoring.main_metric(self.task),
            "pair": self.train.is_pair,
            "transfer": None
            if self.transfer is None
            else {
                "path": str(self.transfer.path),
                "sha256": self.transfer.sha256,
                "rows": len(self.transfer),
            },
        }


def prepare(
    spec: DataSpec, tokenizer, label_map: LabelMap | None = None, task: str | None = None
) -> TaskData:
    """Read both files; the label map comes from the model if it has one, else from the train
    set. A transfer set's rows follow the training rows (`read_transfer` checks them)."""
    train = read_subset(
        spec.train, spec.columns, spec.limit, spec.sample_seed, task=task or spec.task
    )
    resolved = task or train.task
    evaluation = read_examples(spec.eval, spec.columns, task=resolved)
    if train.is_pair != evaluation.is_pair:
        kinds = {True: "pairs", False: "single texts"}
        raise SlimbertError(
            f"{spec.eval}: has {kinds[evaluation.is_pair]} but {spec.train} has "
            f"{kinds[train.is_pair]}; name the same columns for both"
        )
    if resolved == REGRESSION:
        label_map = LabelMap({0: "score"})
    elif label_map is None:
        label_map = LabelMap.from_labels(train.labels)
        if label_map.num_labels < 2:
            raise SlimbertError(
                f"{spec.train}: only one label ({label_map.id2label[0]!r}) in the training "
                "data; a classifier needs at least two"
            )
    spec.scoring.main_metric(resolved)  # a metric of the other kind of task stops here
    spec.scoring.positive_id(label_map, label_map.num_labels)  # an unknown label stops here
    train_targets = label_targets(train, label_map, resolved)
    transfer = None
    if spec.transfer is not None:
        transfer = read_transfer(spec.transfer, evaluation, resolved)
        train_targets += label_targets(transfer, label_map, resolved)  # unknown labels stop here
        train = concat(train, transfer)
    eval_targets = label_targets(evaluation, label_map, resolved)
    return TaskData(
        train=train,
        eval=evaluation,
        label_map=label_map,
        task=resolved,
        train_set=EncodedDataset(tokenizer, train, spec.max_length, train_targets),
        eval_set=EncodedDataset(tokenizer, evaluation, spec.max_length, eval_targets),
        eval_targets=eval_targets,
        max_length=spec.max_length,
        scoring=spec.scoring,
        transfer=transfer,
    )


def processes() -> tuple[int, int]:
    """(rank, world size) of the process group a run trains in (torchrun, accelerate launch);
    (0, 1) for a process alone."""
    distributed = torch.distributed
    if distributed.is_available() and distributed.is_initialized():
        return distributed.get_rank(), distributed.get_world_size()
    return 0, 1


def shard_loader(dataset: EncodedDataset, batch_size: int, rank: int, world: int) -> DataLoader:
    """This process's share of an in-order pass: every `world`-th row of the length-sorted order
    from `rank` on, so each process gets rows of every length (and about the same work)."""
    lengths = [len(f["input_ids"]) for f in dataset.features]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)[rank::world]
    return DataLoader(
        dataset,
        batch_sampler=[order[i : i + batch_size] for i in range(0, len(order), batch_size)],
        collate_fn=lambda items: collate(items, dataset.pad_id),
    )


def gathered_logits(model, dataset: EncodedDataset, batch_size: int, device) -> np.ndarray:
    """Logits (N, C) in dataset order, each process scoring its shard and every process
    receiving all of them (the same array everywhere, so every process takes the same
    best-checkpoint and early-stop decisions)."""
    rank, world = processes()
    shard = shard_loader(dataset, batch_size, rank, world)
    ours = predict_logits(model, shard, device)  # in ascending dataset index
    indices = sorted(i for batch in shard.batch_sampler for i in batch)
    everyone: list = [None] * world
    # objects, not tensors: the shards differ in length by a row; over NCCL the pickles travel
    # on the current CUDA device, which Accelerate has set
    torch.distributed.all_gather_object(everyone, (indices, ours))
    logits = np.empty((len(dataset), ours.shape[1]), dtype=ours.dtype)
    for their_indices, theirs in everyone:
        logits[their_indices] = theirs
    return logits


def evaluator(data: TaskData, batch_size: int = 64) -> Callable[[Any], Metrics]:
    """Scores a model on the eval set, as the task's scoring says (batches sorted by length).
    Under several processes each scores its share and the logits are gathered."""
    loader = make_loader(data.eval_set, batch_size, shuffle=False, group_by_length=True)

    def evaluate(model) -> Metrics:
        dev = next(model.parameters()).device
        if processes()[1] > 1:
            logits = gathered_logits(model, data.eval_set, batch_size, dev)
        else:
            logits = predict_logits(model, loader, dev)
        return compute_metrics(logits, data.eval_targets, data.task, data.label_map, data.scoring)

    return evaluate
