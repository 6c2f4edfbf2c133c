"""A DAG's params (CONTRACT section 8): a plain value is a default; a mapping with
`default` or `type` is a typed parameter whose other keys are JSON Schema keywords. A
trigger's params overlay the defaults and are validated against the typed ones; an
unknown name is refused. Validation is the `jsonschema` package's (Draft 2020-12).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

SCHEMA_KEYS = (
    "type",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "items",
    "description",
)
TYPED_KEYS = ("default", *SCHEMA_KEYS)


class ParamsError(ValueError):
    """A trigger's params do not fit the DAG's: `problems` maps each bad param's name to
    what is wrong with it."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__(
            "params: " + "; ".join(f"{name}: {problem}" for name, problem in problems.items())
        )


def is_typed(declared: Any) -> bool:
    """A typed param: a mapping with `default` or `type`."""
    return isinstance(declared, Mapping) and ("default" in declared or "type" in declared)


def declaration_problems(params: Mapping[str, Any]) -> Iterator[str]:
    """What is wrong with a DAG's declared params, each line naming the param: a key no
    typed param takes, a schema JSON Schema refuses, a default its own schema refuses."""
    for name, declared in params.items():
        if not is_typed(declared):
            continue
        for key in declared:
            if key not in TYPED_KEYS:
                close = difflib.get_close_matches(str(key), TYPED_KEYS, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"use {', '.join(TYPED_KEYS)}"
                yield f"params.{name}: unknown key '{key}' for a typed param ({hint})"
        schema = _schema(declared)
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            yield f"params.{name}: {exc.message}"
            continue
        if "default" in declared:
            for message in _errors(schema, declared["default"]):
                yield f"params.{name}: the default {message}"


def required(params: Mapping[str, Any]) -> list[str]:
    """The typed params without a default: a trigger must give them."""
    return [
        name
        for name, declared in params.items()
        if is_typed(declared) and "default" not in declared
    ]


def defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    """Each param's default: a plain value itself, a typed param's `default` (none for a
    required one)."""
    return {
        name: declared["default"] if is_typed(declared) else declared
        for name, declared in params.items()
        if not is_typed(declared) or "default" in declared
    }


def resolve(params: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """A run's params: the defaults overlaid by `given`, each given value checked against
    its typed param. Raises ParamsError naming every unknown, invalid or missing param."""
    problems: dict[str, str] = {}
    for name in given:
        if name not in params:
            known = ", ".join(params) if params else "none"
            problems[name] = f"unknown parameter (this DAG's params: {known})"
    for name, declared in params.items():
        if not is_typed(declared):
            continue
        if name in given:
            if errors := list(_errors(_schema(declared), given[name])):
                problems[name] = "; ".join(errors)
        elif "default" not in declared:
            problems[name] = "required: it has no default"
    if problems:
        raise ParamsError(problems)
    return {**defaults(params), **given}


def _schema(declared: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in declared.items() if key in SCHEMA_KEYS}


def _errors(schema: Mapping[str, Any], value: Any) -> Iterator[str]:
    try:
        validator = Draft202012Validator(schema)
        for error in validator.iter_errors(value):
            where = "".join(f"[{part!r}]" for part in error.path)
            yield f"{where} {error.message}".strip() if where else error.message
    except SchemaError as exc:  # a version stored before its schema was checked
        yield f"its schema is invalid: {exc.message}"
