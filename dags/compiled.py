"""A DagVersion's spec in the shape the engine reads on every task: cached per process.

Versions never change once written, so caching by id is always safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .dag_spec import DagSpec, TaskSpec
from .models import DagVersion


@dataclass(frozen=True)
class CompiledDag:
    version_id: int
    dag_id: str
    spec: DagSpec
    tasks: dict[str, TaskSpec]  # task id -> task spec
    downstream: dict[str, tuple[str, ...]]  # task id -> direct downstream task ids
    # Tasks with the all_success trigger rule: the engine queues them as it releases them.
    all_success_tasks: frozenset[str]

    def queues_all_downstream(self, task_id: str) -> bool:
        """Whether every direct downstream task of `task_id` is all_success."""
        return all(task in self.all_success_tasks for task in self.downstream[task_id])


def compile_spec(version_id: int, spec: Mapping[str, Any] | DagSpec) -> CompiledDag:
    """The engine's view of a spec, given typed or as stored (DagVersion.spec)."""
    if not isinstance(spec, DagSpec):
        spec = DagSpec.from_json(spec)
    return CompiledDag(
        version_id=version_id,
        dag_id=spec.id,
        spec=spec,
        tasks={task.id: task for task in spec.tasks},
        downstream=spec.downstream,
        all_success_tasks=frozenset(
            task.id for task in spec.tasks if task.trigger_rule == "all_success"
        ),
    )


@lru_cache(maxsize=512)
def compiled_version(version_id: int) -> CompiledDag:
    spec = DagVersion.objects.values_list("spec", flat=True).get(id=version_id)
    return compile_spec(version_id, spec)
