"""Timing, statistics and the result table.

Rates are medians over repetitions (after a discarded warm-up), with the spread (min-max) shown;
every section has a deadline, and a section that fails or runs out of time reports so in its rows
instead of stopping the run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stat:
    """A figure: the median of repetitions, with its spread."""

    median: float
    low: float
    high: float
    unit: str
    samples: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, values: list[float], unit: str) -> Stat:
        return cls(statistics.median(values), min(values), max(values), unit, list(values))

    @classmethod
    def single(cls, value: float, unit: str) -> Stat:
        return cls(value, value, value, unit, [value])

    def text(self) -> str:
        body = fmt(self.median)
        if len(self.samples) > 1 and self.high > self.low:
            body += f" ({fmt(self.low)}-{fmt(self.high)})"
        return f"{body} {self.unit}"


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def rate(fn: Callable[[int], Any], n: int, reps: int, warmup: int | None = None) -> Stat:
    """ops/s of ``fn(n)`` (which performs n operations), median over ``reps`` after a warm-up."""
    fn(warmup if warmup is not None else max(1, n // 10))
    values = []
    for _ in range(reps):
        start = time.perf_counter()
        fn(n)
        values.append(n / (time.perf_counter() - start))
    return Stat.of(values, "/s")


async def arate(
    fn: Callable[[int], Awaitable[Any]], n: int, reps: int, warmup: int | None = None
) -> Stat:
    """The async twin of ``rate``."""
    await fn(warmup if warmup is not None else max(1, n // 10))
    values = []
    for _ in range(reps):
        start = time.perf_counter()
        await fn(n)
        values.append(n / (time.perf_counter() - start))
    return Stat.of(values, "/s")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Row:
    """One line of the table: ClawSite's figure, its reference, the ratio and the target."""

    section: str
    figure: str
    value: Stat | None
    reference_name: str = ""
    reference: Stat | None = None
    target: str = ""
    # For ratio targets: the minimum ratio; for absolute ones, a check on the value.
    min_ratio: float | None = None
    check: Callable[[Stat], bool] | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or self.reference is None or not self.reference.median:
            return None
        if self.value.unit == "ms":  # lower is better: the ratio is how many times faster
            return self.reference.median / self.value.median if self.value.median else None
        return self.value.median / self.reference.median

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "n/a"
        if self.min_ratio is not None:
            ratio = self.ratio
            if ratio is None:
                return "n/a"
            return "pass" if ratio >= self.min_ratio else "miss"
        if self.check is not None:
            return "pass" if self.check(self.value) else "miss"
        return ""

    def cells(self) -> list[str]:
        ratio = self.ratio
        return [
            self.section,
            self.figure,
            self.value.text() if self.value else (self.note or "n/a"),
            f"{self.reference_name}: {self.reference.text()}"
            if self.reference
            else self.reference_name,
            f"{ratio:.2f}x" if ratio is not None else "",
            self.target,
            self.verdict,
        ]


HEADERS = [
    "section",
    "ClawSite figure",
    "ClawSite",
    "reference (same run)",
    "ratio",
    "target",
    "verdict",
]


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += [
        "| " + " | ".join(cell.replace("|", "/") for cell in row.cells()) + " |" for row in rows
    ]
    notes = [f"- {row.figure}: {row.note}" for row in rows if row.note and row.value]
    return "\n".join(lines + (["", *notes] if notes else []))


class Deadline:
    """A section's time budget: loops ask ``left()`` and stop early rather than overrun."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.end


def wait_until(
    condition: Callable[[], Any], timeout: float, interval: float = 0.02, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what or condition}")
        time.sleep(interval)
