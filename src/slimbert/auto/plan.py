"""The plan `auto` prints before anything trains (and all `--dry-run` does): each probed shape
with its latency per precision and whether the SLO kept it, the choices the search draws from,
the number of trials and their estimated time.

The estimate adds, per trial, the training steps of each of its method's stages at the
probe's measured step time (one forward and backward of a random-weight student), its
evaluations, its exports and its timing: a rough figure, not a bound (the teacher's soft labels,
the optimiser and the process start are not in it; on tiny models the step time dominates and
overshoots).
"""

from __future__ import annotations

from dataclasses import dataclass

from slimbert.auto.probe import Probe, precisions
from slimbert.auto.space import Choice
from slimbert.bench.decide import Slo
from slimbert.bench.report import Row
from slimbert.compress.registry import get_method

# --promote-steps by default, in --trial-steps: the leader's choice trained again for three
# passes a stage, the schedule of the hand-run students (auto/promote.py)
PROMOTE_PASSES = 3


def training_stages(method: str) -> int:
    """Stages a trial of `method` trains (tinybert's general stage needs a text file `auto`
    does not give it)."""
    return len([s for s in get_method(method).stages if s != "general"])


def trial_seconds(
    choice: Choice,
    probe: Probe,
    steps: int,
    evaluations: int,
    eval_rows: int,
    timed_rows: int,
    repeats: int,
) -> float:
    """A rough figure for one trial's wall-clock, from its shape's probe."""
    stages = training_stages(choice.method)
    fp32_s = probe.avg_ms.get("fp32", 0.0) / 1000
    training = stages * steps * (probe.step_s or 0.0)
    evaluating = stages * evaluations * eval_rows * fp32_s * 3  # PyTorch, about 3x ONNX
    exporting = len(probe.latency_ms) * (probe.export_s or 0.0)
    timing = sum(probe.avg_ms.values()) / 1000 * timed_rows * (repeats + 1)
    return training + evaluating + exporting + timing


def duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{seconds:.0f}s"
    return f"{minutes // 60}h {minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


@dataclass
class Plan:
    """What the search will do, before it does it."""

    slo: Slo
    batch: int
    provider: str
    teacher: Row
    probes: list[Probe]
    choices: list[Choice]
    trials: int
    steps: int
    estimate_s: float
    budget_s: float
    promote_steps: int = 0  # a stage's steps of the leaders trained again (auto/promote.py)
    promote_s: float = 0.0  # all of them
    promotions: int = 1

    @property
    def bound(self) -> Slo:
        """The SLO as a limit in ms, what probes and trials are held to while the search runs
        (a relative SLO at the teacher's probe timing); the verdict reads `slo` itself."""
        return self.slo.against(self.teacher)

    def kept(self) -> list[Probe]:
        return [p for p in self.probes if p.meets(self.slo, self.teacher)]

    def verdict(self, probe: Probe) -> str:
        if probe.skipped_because:
            return f"dropped: {probe.skipped_because}"
        ratio = (
            f", {max(probe.speedup.values()):.1f}× the teacher"
            if self.slo.relative and probe.speedup
            else ""
        )
        if probe.meets(self.slo, self.teacher):
            fastest = probe.fastest()
            return f"kept ({fastest[0]} {fastest[1]:.2f} ms{ratio})"
        if ratio:
            return f"dropped: under {self.slo.speedup:g}× at every precision ({ratio[2:]})"
        return f"dropped: over {self.bound.limit_ms:.3g} ms at every precision"

    def lines(self) -> list[str]:
        """The plan as a person reads it."""
        statistic = self.slo.statistic
        shown = precisions(self.provider)
        width = max(10, *(len(p.shape.name) + 1 for p in self.probes))
        lines = [
            f"SLO {self.slo} at batch {self.batch} on {self.provider}; teacher (PyTorch fp32): "
            f"{statistic} {self.teacher.latency(statistic):.2f} ms, "
            f"{self.teacher.metric_name} {self.teacher.metric:.2f} on the probes' "
            f"{self.teacher.requests} request{'s' if self.teacher.requests != 1 else ''}",
            *(
                [
                    "each probe timed in rounds with the teacher and kept on its speed-up in "
                    f"them; trials held to {self.bound} (the teacher's avg here over "
                    f"{self.slo.speedup:g}) while the search runs; the verdict reads the speed-up "
                    "in one alternating run of the teacher and every student at the end"
                ]
                if self.slo.relative
                else []
            ),
            "",
            f"{'shape':<{width}}"
            + "".join(f"{p + ' ' + statistic:>13}" for p in shown)
            + "  verdict",
        ]
        for probe in self.probes:
            cells = "".join(
                f"{probe.latency_ms[p]:>10.2f} ms" if p in probe.latency_ms else f"{'–':>13}"
                for p in shown
            )
            lines.append(f"{probe.shape.name:<{width}}{cells}  {self.verdict(probe)}")
        leaders = "the leader" if self.promotions == 1 else f"the {self.promotions} best"
        promotion = (
            f", then {leaders} trained again with {self.promote_steps} steps a stage, about "
            f"{duration(self.promote_s)}"
            if self.promote_steps and self.promotions
            else ""
        )
        methods = sorted({c.method for c in self.choices})
        transfer = any(c.transfer for c in self.choices)
        lines += [
            "",
            f"{len(self.kept())} of {len(self.probes)} shapes kept; {len(self.choices)} "
            f"choice{'s' if len(self.choices) != 1 else ''} "
            f"({', '.join(methods)}{', transfer set on and off' if transfer else ''}); "
            f"{self.trials} trial{'s' if self.trials != 1 else ''} of {self.steps} steps a "
            f"stage; estimated {duration(self.estimate_s)}{promotion} "
            f"(budget {duration(self.budget_s)})",
        ]
        return lines


def make_plan(
    slo: Slo,
    batch: int,
    provider: str,
    teacher: Row,
    probes: list[Probe],
    choices: list[Choice],
    trials: int | None,
    steps: int,
    evaluations: int,
    eval_rows: int,
    timed_rows: int,
    repeats: int,
    budget_s: float,
    promote_steps: int | None = 0,
    promotions: int = 1,
) -> Plan:
    """The plan: `trials` (default every choice) at most, priced from each shape's probe, and
    the promotion of `promotions` leaders (`promote_steps` a stage; None: PROMOTE_PASSES times
    the trial's steps), each priced as the mean trial scaled by its steps."""
    count = min(trials or len(choices), len(choices))
    by_shape = {p.shape.name: p for p in probes}
    costs = [
        trial_seconds(c, by_shape[c.shape.name], steps, evaluations, eval_rows, timed_rows, repeats)
        for c in choices
    ]
    mean = sum(costs) / len(costs) if costs else 0.0
    promote = PROMOTE_PASSES * steps if promote_steps is None else promote_steps
    return Plan(
        slo,
        batch,
        provider,
        teacher,
        probes,
        choices,
        count,
        steps,
        mean * count,
        budget_s,
        promote,
        mean * promote / steps * min(promotions, count),
        promotions,
    )
