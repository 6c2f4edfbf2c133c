"""Creating and resizing pools: the one writer of a pool's name, slots and description,
which the API, the admin and `manage.py pool` call. `running` is the engine's alone."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from . import boundary
from .models import Pool
from .spec import ID_PATTERN

MAX_SLOTS = 1_000_000


class PoolError(ValueError):
    """Input a pool cannot take; the message names the problem and the fix, `field` the
    input it is about (name, slots or description)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def create_or_update_pool(
    name: str, slots: int, description: str | None = None
) -> tuple[Pool, bool]:
    """The pool `name` with `slots` (and `description`, when given), created when there is
    none; returns it and whether it was created. An update never touches `running`, and
    refuses slots below it."""
    check_name(name)
    check_slots(name, slots)
    if description is not None:
        check_description(name, description)
    pool, created = Pool.objects.get_or_create(
        name=name, defaults={"slots": slots, "description": description or ""}
    )
    if created:
        return pool, True
    changes: dict[str, object] = {"slots": slots}
    if description is not None:
        changes["description"] = description
    try:
        # Guarded on `running`, which the engine moves concurrently; the CHECK constraint
        # (running <= slots) would refuse the same, so its error says the same.
        with transaction.atomic():
            resized = Pool.objects.filter(pk=pool.pk, running__lte=slots).update(**changes)
    except IntegrityError:
        resized = 0
    if not resized:
        raise PoolError(too_few_slots(pool, slots), "slots")
    pool.refresh_from_db()
    return pool, False


def check_name(name: object) -> None:
    if not isinstance(name, str) or not ID_PATTERN.fullmatch(name):
        raise PoolError(
            f"pool name {shown(name)} must match {ID_PATTERN.pattern}: lower-case letters, "
            "digits, '_', '.' and '-', starting with a letter or digit, at most 100 characters",
            "name",
        )


def check_slots(name: str, slots: object) -> None:
    if isinstance(slots, bool) or not isinstance(slots, int) or not 0 <= slots <= MAX_SLOTS:
        raise PoolError(
            f"pool '{name}': slots must be a whole number from 0 to {MAX_SLOTS:,}, "
            f"got {shown(slots)}",
            "slots",
        )


def check_description(name: str, description: object) -> None:
    if not isinstance(description, str):
        raise PoolError(
            f"pool '{name}': the description must be text, got {shown(description)}",
            "description",
        )
    if problems := boundary.unstorable(description, "description"):
        raise PoolError(f"pool '{name}': {boundary.describe(problems)[0]}", "description")


def too_few_slots(pool: Pool, slots: int) -> str:
    running = Pool.objects.filter(pk=pool.pk).values_list("running", flat=True).first()
    if running is None:
        return f"pool '{pool.name}' was deleted while being changed; create it again"
    tasks = "task" if running == 1 else "tasks"
    return (
        f"pool '{pool.name}' has {running} {tasks} running; its slots cannot go below that "
        f"(asked for {slots}): give at least {running}, or lower them once those tasks "
        "have finished"
    )


def shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"
