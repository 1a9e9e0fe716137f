"""The live table of trials a person watches while `auto` runs: one line per trial with its
shape, method, transfer set, state, evaluations, best metric and fastest latency.

On a terminal the table is redrawn in place after every event (a trial starts, evaluates, ends);
into a file or a pipe each event prints the one line that changed, so a log reads top to bottom.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from slimbert.auto.space import Choice
from slimbert.auto.trial import Outcome


def header(shape_width: int) -> str:
    return (
        f"{'trial':>5}  {'method':<9}{'shape':<{shape_width}}{'transfer':<9}{'state':<10}"
        f"{'evals':>5}"
    )


@dataclass
class Line:
    choice: Choice
    state: str = "running"
    evaluations: list[float] = field(default_factory=list)
    latency: str = "–"

    def text(self, number: int, shape_width: int = 9) -> str:
        best = f"{max(self.evaluations):.2f}" if self.evaluations else "–"
        transfer = "yes" if self.choice.transfer else "no"
        shape = self.choice.shape.name
        return (
            f"{number:>5}  {self.choice.method:<9}{shape:<{shape_width}}{transfer:<9}"
            f"{self.state:<10}{len(self.evaluations):>5}{best:>9}  {self.latency}"
        )


class Board:
    """The trials so far; `event` is the study runner's callback. `shape_width`: the shape
    column's, wide enough for the longest name ("6x384@minilm-l6")."""

    def __init__(self, metric_name: str, statistic: str, stream=None, shape_width: int = 9):
        self.stream = stream or sys.stdout
        self.lines: dict[int, Line] = {}
        self.width = shape_width
        self.header = f"{header(shape_width)}{metric_name:>9}  {statistic} ms"
        self.drawn = 0  # lines on the terminal from the last redraw
        self.statistic = statistic
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def event(
        self,
        number: int,
        choice: Choice,
        state: str,
        outcome: Outcome | None,
        evaluation: float | None,
    ) -> None:
        line = self.lines.setdefault(number, Line(choice))
        line.state = state
        if evaluation is not None and len(line.evaluations) < 10_000:
            line.evaluations.append(evaluation)
        if outcome is not None:
            line.evaluations = list(outcome.evaluations)
            rows = outcome.rows
            if rows:
                precision, row = min(rows.items(), key=lambda i: i[1][f"{self.statistic}_ms"])
                line.latency = f"{row[f'{self.statistic}_ms']:.2f} ({precision})"
        self.draw(number)

    def draw(self, changed: int) -> None:
        if not self.tty:
            if not self.drawn:
                self.stream.write(self.header + "\n")
                self.drawn = 1
            self.stream.write(self.lines[changed].text(changed, self.width) + "\n")
        else:
            if self.drawn:
                self.stream.write(f"\x1b[{self.drawn}F\x1b[J")  # up to the table, clear below
            lines = sorted(self.lines.items())
            text = [self.header, *(line.text(n, self.width) for n, line in lines)]
            self.stream.write("\n".join(text) + "\n")
            self.drawn = len(text)
        self.stream.flush()
