"""What `slimbert bench` times and how: the sweep's axes and the timing protocol, checked before
anything is timed. bench/run.py runs it."""

from __future__ import annotations

import os
from dataclasses import dataclass

from slimbert.bench.decide import Slo
from slimbert.errors import SlimbertError
from slimbert.metrics import METRICS
from slimbert.settings import setting

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
    slo:           e.g. "p99<=10ms" or "speedup>=10x" (over the teacher, in the same run): marks
                   the recommended model together with max_f1_drop
    max_f1_drop:   metric points a recommended model may lose against the teacher
    metric:        the figure vs Teacher and the recommendation use (None: f1 / pearson)
    positive_label: the class binary F1 is computed for (None: the label map's default)
    torch_precisions: the precisions of the PyTorch eager rows: fp32, and fp16 on CUDA (the
                   model's weights cast to half, as a team serving eager PyTorch on a GPU would)
    """

    provider: str = setting("cpu", "cpu or cuda (the command's --provider).", cli=False)
    batch_sizes: list[int] = setting(
        factory=lambda: [1], help="Comma-separated request sizes.", flag="--batch-sizes"
    )
    threads: int | None = setting(None, "One intra-op thread count (None: all cores).", cli=False)
    warmup: int = setting(20, "Uncounted requests before timing.", min=0)
    limit: int | None = setting(None, "Only the first N eval examples.", min=1)
    max_length: int | None = setting(
        None,
        "Truncation of own-length requests (default: each model's training max length).",
        min=8,
        max=4096,
    )
    isolate: bool = setting(
        True,
        "Time each model in a fresh process (peak memory its own), or every model in this "
        "process (faster, but peak memory is shared).",
        flag="--isolate/--in-process",
    )
    runtimes: tuple[str, ...] = setting(
        RUNTIMES,
        "Runtimes to time; repeat for both.",
        flag="--runtime",
        choices=RUNTIMES,
        multiple=True,
    )
    lengths: list[int | None] = setting(
        factory=lambda: [None],
        help="Comma-separated: 'own' pads each request to its own longest example; a number L "
        "pads (and truncates) every request to L.",
        none_word="own",
    )
    thread_counts: list[int] = setting(
        factory=list,
        help="Comma-separated intra-op thread counts to sweep (default: all cores).",
        flag="--threads",
    )
    repeats: int = setting(
        3, "Timed passes over all requests; figures are medians ± half the range.", min=1
    )
    io_binding: bool = setting(
        True,
        "On CUDA, also time the ONNX rows fed through IO binding (pre-allocated buffers).",
        flag="--io-binding/--no-io-binding",
    )
    peak: bool = setting(
        True,
        "Measure the matmul peak (--no-peak: the physical-limit column keeps FLOPs only).",
        flag="--peak/--no-peak",
    )
    slo: str | None = setting(
        None,
        'Latency objective, e.g. "p99<=10ms", or a speed-up over the teacher benched in the '
        'same run, e.g. "speedup>=10x"; with --max-f1-drop marks the recommended model.',
    )
    max_f1_drop: float | None = setting(
        None, "Metric points a recommended model may lose against the teacher.", min=0
    )
    metric: str | None = setting(
        None,
        "The figure vs Teacher and the recommendation use (default: f1; regression: pearson); "
        "the F1 column stays.",
        choices=METRICS,
    )
    positive_label: str | None = setting(
        None, "The class binary F1 is computed for (default: '1', 'positive', or the second label)."
    )
    torch_precisions: tuple[str, ...] = setting(
        ("fp32",),
        "Precisions of the PyTorch eager rows; fp16 casts the weights to half and needs "
        "--provider cuda. Repeat for both.",
        flag="--torch-precision",
        choices=TORCH_PRECISIONS,
        multiple=True,
    )
    alternate: bool = setting(
        True,
        "Time the passes in rounds, one pass of every row a round, so that a ratio between rows "
        "is measured alternating (the benchmark protocol); --in-order times each row's passes "
        "back to back.",
        flag="--alternate/--in-order",
    )

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
