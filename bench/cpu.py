"""Where the CPU went while a workload ran: PostgreSQL, Redis, the workers, gunicorn, the
bench itself, and the machine as a whole, read from /proc (psutil is not a dependency).

A process's time includes that of its reaped children (cutime, cstime), so PostgreSQL's
short-lived backends count through the postmaster and shell attempts through the pool
process that ran them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

TICKS = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


def _processes() -> dict[int, tuple[str, float]]:
    """pid -> (command name, CPU seconds of it and its reaped children)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        # Fields 14-17 of proc(5): utime, stime, cutime, cstime (here from index 11).
        ticks = sum(int(value) for value in fields[11:15])
        table[int(entry.name)] = (name, ticks / TICKS)
    return table


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    total = sum(values[:8])
    idle = values[3] + values[4]  # idle + iowait
    return (total - idle) / TICKS, total / TICKS


@dataclass(frozen=True)
class CpuSample:
    wall: float
    machine_busy: float
    groups: dict[str, float]


Groups = dict[str, Callable[[], Iterable[int]]]


def sample(groups: Groups) -> CpuSample:
    """CPU seconds so far of PostgreSQL, Redis, this process, and each named pid group."""
    table = _processes()
    totals = {
        "postgres": sum(cpu for name, cpu in table.values() if name == "postgres"),
        "redis": sum(cpu for name, cpu in table.values() if name.startswith("redis-server")),
        "bench": table.get(os.getpid(), ("", 0.0))[1],
    }
    for group, pids in groups.items():
        totals[group] = sum(table[pid][1] for pid in pids() if pid in table)
    return CpuSample(time.monotonic(), _machine_busy()[0], totals)


def cores_used(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """Average cores each group kept busy between two samples, the machine's included."""
    wall = after.wall - before.wall
    used = {name: (after.groups[name] - before.groups[name]) / wall for name in after.groups}
    used["machine"] = (after.machine_busy - before.machine_busy) / wall
    used["other"] = used["machine"] - sum(
        value for name, value in used.items() if name != "machine"
    )
    return {name: round(value, 2) for name, value in used.items()}


def measured(groups: Groups, action: Callable[[], T]) -> tuple[T, dict[str, float]]:
    """What `action()` returns, and the cores each group used while it ran."""
    before = sample(groups)
    outcome = action()
    return outcome, cores_used(before, sample(groups))


def busiest(used: dict[str, float]) -> str:
    """A one-line reading: how busy the machine was and which group took most of it."""
    groups = {name: value for name, value in used.items() if name not in ("machine", "other")}
    top = max(groups, key=groups.get)
    cores = os.cpu_count() or 1
    state = "saturated" if used["machine"] >= 0.9 * cores else "not saturated"
    return f"machine {used['machine']:.2f}/{cores} cores ({state}); most: {top} {groups[top]:.2f}"
