"""What a benchmark reports: figures measured once per repetition, paired with a baseline,
summarized as median, min and max."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction 0.5 = p50, 0.99 = p99) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def median_ms(call: Callable[[], object], times: int) -> float:
    """The median wall time of `times` calls of `call`, in milliseconds."""
    took = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took)


def summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


@dataclass
class Figure:
    """One measured quantity: FlowForge's value per repetition, and the baseline's.

    The ratio is FlowForge ÷ baseline, computed per repetition (the two are measured
    back to back, so each pair shares the machine's mood) and then summarized.
    """

    label: str
    unit: str
    flowforge: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    baseline_label: str = ""
    comparable: bool = True  # False: the baseline is context only (a CPU share), no ratio

    def add(self, flowforge: float, baseline: float | None = None) -> None:
        self.flowforge.append(flowforge)
        if baseline is not None:
            self.baseline.append(baseline)

    def ratios(self) -> list[float]:
        if not self.comparable:
            return []
        pairs = zip(self.flowforge, self.baseline, strict=False)
        return [ff / base for ff, base in pairs if base]

    def as_dict(self) -> dict:
        return {
            "label": self.label,
            "unit": self.unit,
            "flowforge": summary(self.flowforge),
            "baseline": summary(self.baseline),
            "baseline_label": self.baseline_label,
            "comparable": self.comparable,
            "ratio": summary(self.ratios()),
            "flowforge_values": self.flowforge,
            "baseline_values": self.baseline,
        }


@dataclass
class BenchResult:
    """Everything one benchmark measured, with how it measured it."""

    name: str
    title: str
    method: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # checks that failed: the run fails

    def figure(
        self, label: str, unit: str, baseline_label: str = "", comparable: bool = True
    ) -> Figure:
        """The figure with this label, created on first use."""
        for figure in self.figures:
            if figure.label == label:
                return figure
        figure = Figure(label, unit, baseline_label=baseline_label, comparable=comparable)
        self.figures.append(figure)
        return figure

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "title": self.title,
            "method": self.method,
            "figures": [figure.as_dict() for figure in self.figures],
            "notes": self.notes,
            "problems": self.problems,
            "details": self.details,
        }
