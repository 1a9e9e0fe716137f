"""What `slimbert bench` times and how: the sweep's axes and the timing protocol, checked before
anything is timed. bench/run.py runs it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from slimbert.bench.decide import Slo
from slimbert.errors import SlimbertError

RUNTIMES = ("pytorch", "onnx")
TORCH_PRECISIONS = ("fp32", "fp16")  # PyTorch eager rows; fp16 on CUDA only


@dataclass
class BenchConfig:
    """What to time and how. The first eight fields keep their order for positional callers.

    provider:      cpu or cuda (never a silent fallback)
    batch_sizes:   examples per request, each a row
    threads:       intra-op threads when `thread_counts` is empty (None = all cores)
    warmup:        uncounted requests before timing
    limit:         only the first N eval examples
    max_length:    truncation for own-length requests (None = each model's training length)
    isolate:       a fresh process per row
    runtimes:      pytorch and/or onnx
    lengths:       None = each request's own length; an int L = every request padded to L
    thread_counts: intra-op thread counts to sweep (empty = [threads])
    repeats:       passes over all requests after warm-up; figures are medians over passes
    alternate:     time the passes in rounds, every row once a round (the protocol's
                   "alternating"), so that a machine's drift within a run falls on every row
                   alike; off: each row's passes back to back
    io_binding:    on CUDA, also time ONNX models through IO binding with pre-allocated buffers
    peak:          measure the matmul peak for the physical-limit column
    slo:           e.g. "p99<=10ms": marks the recommended model together with max_f1_drop
    max_f1_drop:   metric points a recommended model may lose against the teacher
    metric:        the figure vs Teacher and the recommendation use (None: f1 / pearson)
    positive_label: the class binary F1 is computed for (None: the label map's default)
    torch_precisions: the precisions of the PyTorch eager rows: fp32, and fp16 on CUDA (the
                   model's weights cast to half, as a team serving eager PyTorch on a GPU would)
    """

    provider: str = "cpu"
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    threads: int | None = None
    warmup: int = 20
    limit: int | None = None
    max_length: int | None = None
    isolate: bool = True
    runtimes: tuple[str, ...] = RUNTIMES
    lengths: list[int | None] = field(default_factory=lambda: [None])
    thread_counts: list[int] = field(default_factory=list)
    repeats: int = 3
    io_binding: bool = True
    peak: bool = True
    slo: str | None = None
    max_f1_drop: float | None = None
    metric: str | None = None
    positive_label: str | None = None
    torch_precisions: tuple[str, ...] = ("fp32",)
    alternate: bool = True

    def threads_to_sweep(self) -> list[int]:
        return list(self.thread_counts) or [self.threads or os.cpu_count() or 1]

    def check(self) -> None:
        """Raise SlimbertError on a value a user gave wrong, before anything is timed."""
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise SlimbertError(f"--batch-sizes {self.batch_sizes}: give whole numbers ≥ 1")
        if not self.lengths or any(n is not None and n < 4 for n in self.lengths):
            raise SlimbertError(
                f"--lengths {self.lengths}: "
                "give 'own' or whole numbers ≥ 4 (room for [CLS] and [SEP])"
            )
        if any(t < 1 for t in self.threads_to_sweep()):
            raise SlimbertError(f"--threads {self.threads_to_sweep()}: give whole numbers ≥ 1")
        if self.repeats < 1:
            raise SlimbertError(f"--repeats {self.repeats}: give at least 1")
        unknown = set(self.runtimes) - set(RUNTIMES)
        if not self.runtimes or unknown:
            raise SlimbertError(
                f"--runtime {sorted(unknown) or '(none)'}: choose from {', '.join(RUNTIMES)}"
            )
        unknown = set(self.torch_precisions) - set(TORCH_PRECISIONS)
        if not self.torch_precisions or unknown:
            raise SlimbertError(
                f"--torch-precision {sorted(unknown) or '(none)'}: "
                f"choose from {', '.join(TORCH_PRECISIONS)}"
            )
        if "fp16" in self.torch_precisions and self.provider != "cuda":
            raise SlimbertError(
                "--torch-precision fp16: PyTorch has no fast fp16 kernels on the CPU; time fp16 "
                "with --provider cuda (or an fp16 ONNX export on CUDA)"
            )
        if self.max_f1_drop is not None and self.max_f1_drop < 0:
            raise SlimbertError(f"--max-f1-drop {self.max_f1_drop}: give points ≥ 0")
        if self.slo is not None:
            Slo.parse(self.slo)
