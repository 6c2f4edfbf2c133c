"""The states of runs and task instances and the moves between them (CONTRACT section 2).

The two tables below are the one source of truth. Every statement that changes a `state`
column declares itself here as a `Transition` (its name, the states it leaves, the states
it enters); a declaration the tables do not allow fails when the module is imported, and
`runs/tests/test_transitions.py` runs every declared statement against every (from, to)
pair of the tables, so a pair added to a table without a statement fails the suite.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from ..enums import RunState, TaskState

__all__ = [
    "RUN_TRANSITIONS",
    "TASK_TRANSITIONS",
    "TRANSITIONS",
    "RunState",
    "TaskState",
    "Transition",
    "TransitionRefused",
]


# What a repair does by hand (CONTRACT section 9): `mark` sets any task success or failed
# (an unfinished one is stopped first, so it is marked from pending or cancelled); `clear`
# and `rerun` send any final task back to pending, to wait on its upstream tasks again.
_MARKED = frozenset({TaskState.SUCCESS, TaskState.FAILED})
_CLEARED = frozenset({TaskState.PENDING})

TASK_TRANSITIONS: dict[str, frozenset[str]] = {
    TaskState.PENDING: frozenset(
        {TaskState.QUEUED, TaskState.UPSTREAM_FAILED, TaskState.SKIPPED, TaskState.CANCELLED}
    )
    | _MARKED,
    # queued | up_for_retry -> upstream_failed: the run timed out (CONTRACT section 7).
    TaskState.QUEUED: frozenset(
        {TaskState.RUNNING, TaskState.CANCELLED, TaskState.UPSTREAM_FAILED}
    ),
    # running -> queued: an attempt handed back by FlowForge's own shutdown (CONTRACT
    # section 5), its try number given back with it.
    TaskState.RUNNING: frozenset(
        {
            TaskState.SUCCESS,
            TaskState.UP_FOR_RETRY,
            TaskState.FAILED,
            TaskState.CANCELLED,
            TaskState.QUEUED,
        }
    ),
    TaskState.UP_FOR_RETRY: frozenset(
        {TaskState.QUEUED, TaskState.CANCELLED, TaskState.UPSTREAM_FAILED}
    ),
    TaskState.SUCCESS: _CLEARED | {TaskState.FAILED},
    TaskState.FAILED: _CLEARED | {TaskState.SUCCESS},
    TaskState.UPSTREAM_FAILED: _CLEARED | _MARKED,
    TaskState.SKIPPED: _CLEARED | _MARKED,
    TaskState.CANCELLED: _CLEARED | _MARKED,
}

RUN_TRANSITIONS: dict[str, frozenset[str]] = {
    RunState.QUEUED: frozenset({RunState.RUNNING, RunState.CANCELLED}),
    RunState.RUNNING: frozenset({RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED}),
    # A finished run that a repair revives (CONTRACT section 9).
    RunState.SUCCESS: frozenset({RunState.RUNNING}),
    RunState.FAILED: frozenset({RunState.RUNNING}),
    RunState.CANCELLED: frozenset({RunState.RUNNING}),
}

_TABLES = {"task": TASK_TRANSITIONS, "run": RUN_TRANSITIONS}


class TransitionRefused(ValueError):
    """A transition the state machine does not allow was asked for."""


@dataclass(frozen=True)
class Transition:
    """One named, guarded statement that moves rows of `table` ("task" instances or
    "run"s) from any state of `sources` to one of `targets`.

    A source that is also a target is a row the statement may leave in its state (a
    running run whose countdown grows stays running); every other (source, target) pair
    must be in the table. The statement's SQL takes the states as parameters: `guard()`
    renders `state IN (...)` over the sources and `params()` gives their values.
    """

    name: str
    table: Literal["task", "run"]
    sources: tuple[str, ...]
    targets: tuple[str, ...]

    def pairs(self) -> Iterable[tuple[str, str]]:
        """Every (source, target) move this statement can make."""
        return ((s, t) for s in self.sources for t in self.targets if s != t)

    def check(self, target: str) -> None:
        """Raise TransitionRefused unless this statement may enter `target`."""
        if target not in self.targets:
            raise TransitionRefused(
                f"{self.name} moves a {self.table} to {' | '.join(self.targets)}, not {target}"
            )

    def guard(self, column: str = "state") -> str:
        """`state IN (%(name_from_0)s, ...)`: the SQL condition on the source states."""
        names = ", ".join(f"%({key})s" for key in self._source_keys())
        return f"{column} IN ({names})"

    def params(self) -> dict[str, str]:
        """The values of guard()'s parameters."""
        return dict(zip(self._source_keys(), (str(s) for s in self.sources), strict=True))

    def _source_keys(self) -> list[str]:
        return [f"{self.name}_from_{n}" for n in range(len(self.sources))]


TRANSITIONS: dict[str, Transition] = {}


def transition(
    name: str, table: Literal["task", "run"], sources: Iterable[str], targets: Iterable[str]
) -> Transition:
    """Declare a statement's transition. Raises TransitionRefused (at import) when the
    table does not allow one of its moves, and ValueError on a name used twice."""
    declared = Transition(name, table, tuple(sources), tuple(targets))
    allowed = _TABLES[table]
    for source, target in declared.pairs():
        if target not in allowed.get(source, ()):
            raise TransitionRefused(f"{name}: a {table} cannot go from {source} to {target}")
    if name in TRANSITIONS:
        raise ValueError(f"transition {name!r} is declared twice")
    TRANSITIONS[name] = declared
    return declared
