"""A DAG drawn as SVG, laid out on the server: tasks in layers, left to right.

The layers are networkx's topological generations (a task sits one layer right of its
deepest upstream task); within a layer, tasks are ordered by the mean position of their
upstream tasks (one barycenter pass), which keeps most edges short and uncrossed. Every
node is a `<g>` carrying `data-task-id` and `data-state` (CONTRACT section 10), so the run
page's live refresh and the browser tests can find it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import networkx as nx
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from dags.compiled import CompiledDag

NODE_W, NODE_H = 168, 30  # pixels
GAP_X, GAP_Y = 56, 12
PAD = 12
LABEL_CHARS = 22  # a longer task id is cut (the full id is in the node's title)


@dataclass(frozen=True)
class Layout:
    """Where each task's node goes: task id -> (x, y) of its top-left corner, pixels."""

    positions: dict[str, tuple[int, int]]
    edges: tuple[tuple[str, str], ...]  # (upstream, downstream)
    width: int
    height: int


def layout(compiled: CompiledDag) -> Layout:
    """The layered layout of a compiled DAG (cached per version: versions never change)."""
    return _layout(compiled.version_id, tuple(compiled.tasks), _edges(compiled))


def _edges(compiled: CompiledDag) -> tuple[tuple[str, str], ...]:
    return tuple(
        (upstream, task_id)
        for task_id, task in compiled.tasks.items()
        for upstream in task.depends_on
    )


@lru_cache(maxsize=256)
def _layout(version_id: int, tasks: tuple[str, ...], edges: tuple[tuple[str, str], ...]) -> Layout:
    graph = nx.DiGraph()
    graph.add_nodes_from(tasks)
    graph.add_edges_from(edges)
    order = {task_id: n for n, task_id in enumerate(tasks)}  # file order breaks ties
    rows: dict[str, float] = {}
    positions: dict[str, tuple[int, int]] = {}
    tallest = 0
    for column, generation in enumerate(nx.topological_generations(graph)):

        def barycenter(task_id: str) -> tuple[float, int]:
            ups = [rows[u] for u in graph.predecessors(task_id)]
            return (sum(ups) / len(ups) if ups else order[task_id], order[task_id])

        for row, task_id in enumerate(sorted(generation, key=barycenter)):
            rows[task_id] = row
            positions[task_id] = (PAD + column * (NODE_W + GAP_X), PAD + row * (NODE_H + GAP_Y))
        tallest = max(tallest, len(generation))
    columns = max((x for x, _ in positions.values()), default=PAD) + NODE_W + PAD
    return Layout(
        positions=positions,
        edges=edges,
        width=columns,
        height=PAD * 2 + max(tallest, 1) * (NODE_H + GAP_Y) - GAP_Y,
    )


def render_svg(
    shape: Layout, states: Mapping[str, str], *, links: Mapping[str, str] | None = None
) -> SafeString:
    """The SVG of a layout, each node colored by `states` (task id -> state; a task not
    in it is `none`) and, with `links`, a link to each task's page."""
    parts = [
        f'<svg class="dag-graph" xmlns="http://www.w3.org/2000/svg" role="img"'
        f' width="{shape.width}" height="{shape.height}"'
        f' viewBox="0 0 {shape.width} {shape.height}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7"'
        ' markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z"'
        ' class="arrowhead"/></marker></defs><g class="edges">',
    ]
    for upstream, downstream in shape.edges:
        x1, y1 = shape.positions[upstream]
        x2, y2 = shape.positions[downstream]
        start, end = (x1 + NODE_W, y1 + NODE_H // 2), (x2, y2 + NODE_H // 2)
        bend = (start[0] + end[0]) // 2
        parts.append(
            f'<path class="edge" marker-end="url(#arrow)" d="M {start[0]} {start[1]}'
            f' C {bend} {start[1]}, {bend} {end[1]}, {end[0]} {end[1]}"/>'
        )
    parts.append('</g><g class="nodes">')
    for task_id, (x, y) in shape.positions.items():
        state = states.get(task_id) or "none"
        label = task_id if len(task_id) <= LABEL_CHARS else task_id[: LABEL_CHARS - 1] + "…"
        node = (
            f'<g class="node state-{escape(state)}" data-task-id="{escape(task_id)}"'
            f' data-state="{escape(state)}"><title>{escape(task_id)}: {escape(state)}</title>'
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
            f'<text x="{x + 10}" y="{y + NODE_H // 2 + 4}">{escape(label)}</text></g>'
        )
        if links and task_id in links:
            node = f'<a href="{escape(links[task_id])}">{node}</a>'
        parts.append(node)
    parts.append("</g></svg>")
    return mark_safe("".join(parts))  # noqa: S308  (every value above is escaped)
