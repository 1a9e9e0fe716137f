"""`slimbert auto`'s own flags as one settings dataclass (the data flags are DataSpec's and the
optimisation flags a few of TrainConfig's), the SLO with its batch size, and the budget."""

from __future__ import annotations

import re
from dataclasses import dataclass

from slimbert.auto.space import searchable_methods
from slimbert.bench.decide import Slo
from slimbert.errors import SlimbertError
from slimbert.settings import setting

PRUNERS = ("halving", "median", "none")
SAMPLERS = ("tpe", "exhaustive")
# the TrainConfig fields `auto` passes on to every trial (the rest keep their defaults; the
# steps, evaluations and patience are the search's)
TRIAL_TRAIN_FLAGS = ("batch_size", "lr", "seed", "device", "mixed_precision")


@dataclass
class AutoSettings:
    """What the search may try, how long it may take and how each trial is measured."""

    slo: str | None = setting(
        None,
        'Latency objective of one request, e.g. "p99<=2ms@batch1" (statistic avg, p50, p90 '
        "or p99; @batchN: requests of N examples, default 1), or a speed-up over the teacher's "
        'PyTorch eager time, e.g. "speedup>=10x@batch1": judged at the end in one alternating '
        "run of the teacher and every student, as the machine's speed drifts between runs. "
        "Shapes that cannot meet it are never trained.",
    )
    max_drop: float = setting(
        0.5, "Metric points the shipped model may lose against the teacher.", min=0
    )
    budget: str = setting(
        "4h",
        "Wall-clock the search may spend, over every resumed run (e.g. 4h, 90m, 1h30m), the "
        "probes and the teacher's scoring included; no trial starts that the time left cannot "
        "hold, priced from the trials of its method so far (the one running finishes). The "
        "final timing of every student (minutes) follows it.",
    )
    methods: tuple[str, ...] = setting(
        ("kd", "minilm"),
        "Methods to search; repeat the flag. Methods that keep the teacher's width (kd, "
        "theseus) train the depth cuts, tinybert and minilm every shape.",
        flag="--method",
        choices=tuple(searchable_methods()),
        multiple=True,
    )
    student_bases: tuple[str, ...] = setting(
        ("auto",),
        "Pre-trained compact models to start students from (a directory, a Hub name or "
        "minilm-l6), cut to every depth up to theirs, reading their own tokenizer: taught by "
        "kd, and by minilm and tinybert too when that tokenizer cuts every row into the "
        "teacher's word pieces (checked first); repeat the flag. auto: the bundled minilm-l6 "
        "(6 × 384) when the teacher is wider and the demo extra is installed; none: no such "
        "start.",
        flag="--student-base",
        multiple=True,
    )
    student_inits: tuple[str, ...] = setting(
        (),
        "General students of this teacher (distill-general) to start students from, at their "
        "shape, with every searched method that takes --student-init; repeat the flag.",
        flag="--student-init",
        multiple=True,
    )
    depths: list[int] = setting(
        factory=list,
        help="Comma-separated student depths to probe (default: 8,6,4,3,2,1 below the "
        "teacher's depth; narrower widths from 2 up to it).",
    )
    widths: list[int] = setting(
        factory=list,
        help="Comma-separated student widths to probe (default: the teacher's and the "
        "narrower of 768,512,384,312,256,128).",
    )
    trials: int | None = setting(
        None, "Most trials to train (default: every kept choice once, within --budget).", min=1
    )
    trial_steps: int | None = setting(
        None,
        "Optimiser steps of each training stage of a trial (default: one pass over the "
        "training rows).",
        min=1,
    )
    evaluations: int = setting(
        4,
        "Evaluations per training stage: the rungs at which the pruner stops a trial whose "
        "metric trails the others.",
        min=1,
    )
    pruner: str = setting(
        "halving",
        "halving: successive halving, a trial goes on past an evaluation only if it is in the "
        "best third there; median: stop below the median of earlier trials; none: train "
        "every trial to its end.",
        choices=PRUNERS,
    )
    sampler: str = setting(
        "tpe",
        "tpe: Optuna's TPE, guided by the trials so far (constrained to the SLO), after four "
        "trials of the most promising choices (students that start from trained weights "
        "first, then the larger shape); exhaustive: every choice once in that order.",
        choices=SAMPLERS,
    )
    probe_requests: int = setting(
        100,
        "Eval rows each latency probe times (random weights: the labels do not count).",
        min=1,
    )
    timing_requests: int | None = setting(
        None, "Eval rows each trained student is timed on (default: all).", min=1
    )
    repeats: int = setting(3, "Timed passes over the requests; figures are medians.", min=1)
    threads: int | None = setting(
        None,
        "Intra-op threads of every timing, the teacher's included (default: all cores): the "
        "serving machine's, e.g. 1 for a one-vCPU container or beside another job.",
        min=1,
    )
    warmup: int = setting(10, "Uncounted requests before timing.", min=0)
    optimize: bool = setting(
        True,
        "Fuse every export with ONNX Runtime's transformer optimizer, as a shipped model "
        "would be (--no-optimize: the plain graph).",
    )
    qat_steps: int = setting(
        300,
        "When a trial's int8 export loses more than --max-drop and its fp32 export does not, "
        "tune the student for this many steps under simulated int8 (compress qat: the "
        "teacher's soft labels, the same int8 graph after) and time that int8 export too; "
        "0: never.",
        min=0,
    )
    promote_steps: int | None = setting(
        None,
        "When the search ends, train its leaders (the best students that meet the SLO, "
        "--promotions of them) again from the start with this many steps a stage, under one "
        "schedule, if the budget left holds them; their exports join the table (default: "
        "three times --trial-steps; 0: never).",
        min=0,
    )
    promotions: int = setting(
        2,
        "How many of the best students the promotion trains again, best first, each while the "
        "budget left holds it (one pass ranks the choices only roughly); 0: none.",
        min=0,
    )
    dry_run: bool = setting(
        False,
        "Probe the latencies and print the plan (shapes kept and dropped, trials, estimated "
        "time); train nothing.",
        secondary=False,
    )
    report_only: bool = setting(
        False,
        "Write the report of the trials finished so far (trials.md, report/, winner/ and the "
        "verdict, after timing them again) and train nothing: the results of a search stopped "
        "before its end, or its trials judged under another --slo or --max-drop (e.g. "
        "speedup>=8x). The same command without it resumes the search.",
        secondary=False,
    )

    def objective(self) -> tuple[Slo, int]:
        return parse_slo(self.slo)

    def seconds(self) -> float:
        return parse_budget(self.budget)


def parse_slo(text: str | None) -> tuple[Slo, int]:
    """'p99<=2ms@batch1' -> (Slo p99 ≤ 2 ms, batch 1); 'speedup>=10x' -> (≥ 10× the
    teacher, batch 1)."""
    if not text:
        raise SlimbertError('--slo is required: the latency to meet, e.g. "p99<=2ms@batch1"')
    head, _, batch = text.partition("@")
    slo = Slo.parse(head)
    if not batch:
        return slo, 1
    match = re.fullmatch(r"\s*batch\s*([0-9]+)\s*", batch, re.IGNORECASE)
    if not match or int(match[1]) < 1:
        raise SlimbertError(
            f'--slo {text!r}: after @ give the request size, e.g. "p99<=2ms@batch1"'
        )
    return slo, int(match[1])


UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_budget(text: str) -> float:
    """'4h', '90m', '1h30m', '45s' -> seconds."""
    parts = re.findall(r"([0-9]*\.?[0-9]+)\s*([hms])", text.lower())
    rebuilt = "".join(f"{n}{u}" for n, u in parts)
    if not parts or rebuilt != re.sub(r"\s+", "", text.lower()):
        raise SlimbertError(f"--budget {text!r}: give a time such as 4h, 90m or 1h30m")
    seconds = sum(float(n) * UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise SlimbertError(f"--budget {text!r}: give a time above zero")
    return seconds
