"""A DAG's versions on its page: the list, and a unified diff of two versions' YAML."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime

from django.http import QueryDict

from dags.models import Dag, DagVersion


@dataclass(frozen=True)
class VersionDiff:
    """A unified diff of two versions' YAML source: (kind, line) pairs, kind one of
    "file", "hunk", "add", "del", "same"; no lines when the sources are equal."""

    from_version: int
    to_version: int
    lines: list[tuple[str, str]]


def versions(dag: Dag) -> list[tuple[int, datetime]]:
    """(version, created_at) of every version of the DAG, newest first: one query."""
    return list(
        DagVersion.objects.filter(dag=dag).order_by("-version").values_list("version", "created_at")
    )


def version_diff(dag: Dag, numbers: list[int], query: QueryDict) -> VersionDiff | None:
    """The diff between versions `?from=` and `?to=` (default: the two newest of
    `numbers`, newest first); None when there is one version. One query."""
    if len(numbers) < 2:
        return None
    old = _chosen_version(query.get("from"), numbers, default=numbers[1])
    new = _chosen_version(query.get("to"), numbers, default=numbers[0])
    sources = dict(
        DagVersion.objects.filter(dag=dag, version__in={old, new})
        .order_by()
        .values_list("version", "source")
    )
    lines = difflib.unified_diff(
        sources[old].splitlines(),
        sources[new].splitlines(),
        fromfile=f"version {old}",
        tofile=f"version {new}",
        lineterm="",
    )
    return VersionDiff(old, new, [(_diff_kind(line), line) for line in lines])


def _chosen_version(text: str | None, numbers: list[int], default: int) -> int:
    """The version a GET param names, or `default` when it names none that exists."""
    try:
        number = int(text or "")
    except ValueError:
        return default
    return number if number in numbers else default


def _diff_kind(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "file"
    return {"@": "hunk", "+": "add", "-": "del"}.get(line[:1], "same")


# --- trigger and backfill -----------------------------------------------------------------
