"""Two runs of the same benchmark, OLD and NEW: which rows got slower or less accurate beyond a
threshold and beyond both runs' own noise (`slimbert bench compare`, a release gate), and
whether the two ran on different machines."""

from __future__ import annotations

import re
from dataclasses import dataclass

from slimbert.bench.report import STATISTICS, Report
from slimbert.errors import SlimbertError

# `slimbert bench compare`'s exit status when a row regressed: apart from click's 2 (usage) and
# 1 (any other error), so CI can tell "the release is slower" from "the gate is broken"
REGRESSION_EXIT = 3


@dataclass(frozen=True)
class Threshold:
    """What counts as a regression between two runs of the same rows.

    latency: "5%" (relative to OLD) or "0.5ms" (absolute); a row is slower only when NEW − OLD
      exceeds this plus the spread of both runs, so run-to-run noise never trips it.
    metric_points: metric points NEW may lose against OLD.
    statistic: which latency figure is compared (p50: the median, the steadiest).
    """

    latency: str = "5%"
    metric_points: float = 0.5
    statistic: str = "p50"

    def allowed_ms(self, old_ms: float) -> float:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(%|ms)?\s*", self.latency)
        if not match:
            raise SlimbertError(
                f"--threshold {self.latency!r}: "
                "give a percentage such as 5% or a time such as 0.5ms"
            )
        value = float(match[1])
        return value if match[2] == "ms" else old_ms * value / 100


@dataclass(frozen=True)
class Change:
    """One row's difference between OLD and NEW that is beyond the threshold (or a row that
    appears in only one of them)."""

    label: str
    kind: str  # slower, less accurate, faster, more accurate, missing, new
    old: float | None = None
    new: float | None = None
    allowed: float | None = None
    unit: str = "ms"

    @property
    def regressed(self) -> bool:
        return self.kind in ("slower", "less accurate")

    def sentence(self) -> str:
        if self.kind in ("missing", "new"):
            side = "OLD" if self.kind == "missing" else "NEW"
            return f"{self.kind.upper()}: {self.label} is only in {side}"
        delta = self.new - self.old
        relative = f" ({delta / self.old * 100:+.1f}%)" if self.unit == "ms" and self.old else ""
        return (
            f"{self.kind.upper()}: {self.label}: {self.old:.2f} → {self.new:.2f} {self.unit}"
            f"{relative}, beyond the {self.allowed:.2f} {self.unit} allowed"
        )


# regressions first, then rows only one run has, then improvements
_ORDER = {"slower": 0, "less accurate": 1, "missing": 2, "new": 3, "faster": 4, "more accurate": 5}


def compare_reports(old: Report, new: Report, threshold: Threshold = Threshold()) -> list[Change]:
    """Rows of NEW against the rows of OLD with the same key: regressions first."""
    if threshold.statistic not in STATISTICS:
        raise SlimbertError(
            f"--statistic {threshold.statistic!r}: choose one of {', '.join(STATISTICS)}"
        )
    threshold.allowed_ms(1.0)  # a malformed threshold fails before anything is listed
    statistic = threshold.statistic
    old_rows, new_rows = {r.key(): r for r in old.rows}, {r.key(): r for r in new.rows}
    changes: list[Change] = []
    for key, before in old_rows.items():
        after = new_rows.get(key)
        if after is None:
            changes.append(Change(before.label(full=True), "missing"))
            continue
        label = f"{before.label(full=True)} {statistic}"
        allowed = (
            threshold.allowed_ms(before.latency(statistic))
            + before.spread(statistic)
            + after.spread(statistic)
        )
        delta = after.latency(statistic) - before.latency(statistic)
        if abs(delta) > allowed:
            changes.append(
                Change(
                    label,
                    "slower" if delta > 0 else "faster",
                    before.latency(statistic),
                    after.latency(statistic),
                    allowed,
                )
            )
        lost = before.metric - after.metric
        if abs(lost) > threshold.metric_points + 1e-9:
            changes.append(
                Change(
                    f"{before.label(full=True)} {before.metric_name}",
                    "less accurate" if lost > 0 else "more accurate",
                    before.metric,
                    after.metric,
                    threshold.metric_points,
                    "points",
                )
            )
    changes += [
        Change(r.label(full=True), "new") for key, r in new_rows.items() if key not in old_rows
    ]
    return sorted(changes, key=lambda c: _ORDER[c.kind])


def machine_differences(old: Report, new: Report) -> list[str]:
    """Environment entries that differ between two runs: latency measured on two machines is
    not a regression."""
    differences = []
    for name in ("cpu", "cores", "gpu", "threads"):
        a, b = old.environment.get(name), new.environment.get(name)
        if a != b:
            differences.append(f"{name}: OLD {a} vs NEW {b}")
    return differences
