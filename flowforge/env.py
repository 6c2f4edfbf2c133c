"""Reading settings from the environment, strictly: a value that is not what the variable
takes is an ImproperlyConfigured naming the variable and what it takes, never a default
read in its place (a typo must not turn a setting off)."""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def _refuse(name: str, value: str, takes: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{name}={value!r} is not {takes}")


def env_bool(name: str, default: bool) -> bool:
    """true/false, yes/no, on/off, 1/0 (any case); unset: `default`."""
    value = os.environ.get(name)
    if value is None:
        return default
    if value.strip().lower() not in TRUE | FALSE:
        raise _refuse(name, value, "a boolean: use true or false")
    return value.strip().lower() in TRUE


def env_int(name: str, default: int, minimum: int = 0) -> int:
    """A whole number of at least `minimum`; unset or empty: `default`."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise _refuse(name, value, f"a whole number (at least {minimum})") from None
    if number < minimum:
        raise _refuse(name, value, f"at least {minimum}")
    return number


def env_float(name: str, default: float, minimum: float = 0.0) -> float:
    """A number (seconds, mostly) of at least `minimum`; unset or empty: `default`."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise _refuse(name, value, f"a number (at least {minimum:g})") from None
    if not number >= minimum:  # NaN too
        raise _refuse(name, value, f"at least {minimum:g}")
    return number


def env_list(name: str, default: str) -> list[str]:
    """Comma-separated values; blanks are dropped."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (any case, given back as written there); unset: `default`."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise _refuse(name, value, f"one of {', '.join(choices)}")


def env_rate(name: str, default: str) -> str:
    """A DRF throttle rate, `N/period` (period s, m, h, d or their longer names)."""
    value = os.environ.get(name, "").strip() or default
    count, _, period = value.partition("/")
    if not (count.isdigit() and period[:1] in ("s", "m", "h", "d")):
        raise _refuse(name, value, "a rate such as 1000/min (N per s, min, hour or day)")
    return value
